//! The core software of a fleet: which nucleus (flavour and version) each core runs on which
//! platform, how a core's record learns it, what a core adds to the software summary, and the
//! rules of a nucleus update (version order, platform support, the components that move with
//! the nucleus).
//!
//! Where the inventory comes from (decision 65):
//! - provisioning: the nucleus version the installer config names (platform still unknown);
//! - Greengrass (`GetCoreDevice`): platform, architecture and nucleus version, read when a core
//!   is first moved into a deployment, when a status signal says it changed, and when a
//!   software update task checks a core whose platform is unknown;
//! - every successful deployment outcome: the nucleus version of the template version it
//!   deployed (Greengrass runs exactly the nucleus a successful deployment names).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cores::{Core, Event};
use crate::deployment_state::DeploymentState;
use crate::ports::CoreDevice;
use crate::template::Component;
use crate::time::Timestamp;

/// The Greengrass nucleus (Java).
pub const NUCLEUS: &str = "aws.greengrass.Nucleus";
/// The Greengrass nucleus lite (C, for small devices).
pub const NUCLEUS_LITE: &str = "aws.greengrass.NucleusLite";
/// What the summary shows for a value ggprov does not know yet.
pub const UNKNOWN: &str = "unknown";
pub const CORE_SOFTWARE_UPDATED_EVENT: &str = "Core Software Updated";

/// A nucleus component and version (what a template deploys, or what a core runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nucleus {
    pub component: String,
    pub version: String,
}

impl Nucleus {
    /// The nucleus a template version deploys, if it has one.
    pub fn of_components(components: &[Component]) -> Option<Self> {
        components
            .iter()
            .find(|c| is_nucleus(c.key.as_str()))
            .map(|c| Self { component: c.key.as_str().to_owned(), version: c.version.as_str().to_owned() })
    }
}

pub fn is_nucleus(component: &str) -> bool {
    component == NUCLEUS || component == NUCLEUS_LITE
}

/// What ggprov knows of the software a core runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CoreSoftware {
    /// `aws.greengrass.Nucleus` or `aws.greengrass.NucleusLite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nucleus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nucleus_version: Option<String>,
    /// Greengrass's `platform` of the core device, e.g. `linux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// Greengrass's `architecture` of the core device, e.g. `amd64`, `aarch64`, `arm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// The nucleus version the core's running deployment brings (absent when it brings none
    /// or the one the core runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updating_to: Option<String>,
    /// When Greengrass last described the core; absent while ggprov knows only what it
    /// provisioned and deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub observed_at: Option<Timestamp>,
}

impl CoreSoftware {
    /// What the installer config installs.
    pub fn installed(nucleus_version: &str) -> Self {
        Self {
            nucleus: Some(NUCLEUS.to_owned()),
            nucleus_version: (!nucleus_version.is_empty()).then(|| nucleus_version.to_owned()),
            ..Self::default()
        }
    }

    pub fn platform(&self) -> Option<Platform> {
        Some(Platform { os: self.os.clone()?, architecture: self.architecture.clone()? })
    }
}

/// An operating system and architecture, as Greengrass names them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Platform {
    pub os: String,
    pub architecture: String,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)
    }
}

/// Which platforms a nucleus version runs on: a recipe's manifests say `os` and
/// `architecture`, either possibly `*` or absent (any).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlatformSupport(pub Vec<(Option<String>, Option<String>)>);

impl PlatformSupport {
    pub fn supports(&self, platform: &Platform) -> bool {
        let matches = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w == "*" || w.eq_ignore_ascii_case(have) || same_arch(w, have))
        };
        self.0.iter().any(|(os, arch)| matches(os, &platform.os) && matches(arch, &platform.architecture))
    }

    /// `linux/amd64, linux/aarch64` for messages.
    pub fn describe(&self) -> String {
        let any = |v: &Option<String>| v.clone().unwrap_or_else(|| "*".into());
        self.0.iter().map(|(o, a)| format!("{}/{}", any(o), any(a))).collect::<Vec<_>>().join(", ")
    }
}

/// Greengrass and `uname` spell some architectures differently.
fn same_arch(a: &str, b: &str) -> bool {
    let canonical = |s: &str| match s.to_ascii_lowercase().as_str() {
        "x86_64" | "amd64" => "amd64".to_owned(),
        "arm64" | "aarch64" => "aarch64".to_owned(),
        "armv7l" | "armv7" | "arm" => "arm".to_owned(),
        "i386" | "i686" | "x86" => "x86".to_owned(),
        other => other.to_owned(),
    };
    canonical(a) == canonical(b)
}

/// Orders dotted versions numerically (`2.10.0` > `2.9.6`); a pre-release or build suffix
/// after `-`/`+` sorts before the plain version.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let split = |v: &str| {
        let (core, suffix) = match v.find(['-', '+']) {
            Some(i) => (&v[..i], Some(v[i..].to_owned())),
            None => (v, None),
        };
        let numbers: Vec<u64> = core.split('.').map(|p| p.parse().unwrap_or(0)).collect();
        (numbers, suffix)
    };
    let ((na, sa), (nb, sb)) = (split(a), split(b));
    let len = na.len().max(nb.len());
    for i in 0..len {
        match na.get(i).unwrap_or(&0).cmp(nb.get(i).unwrap_or(&0)) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    match (sa, sb) {
        (None, None) => Ordering::Equal,
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(&y),
    }
}

/// The components that move with the nucleus when a template's nucleus is updated (decision
/// 65): every other `aws.greengrass.*` component of the template whose version is the
/// nucleus's own. Those are released in lock step with the nucleus and declare a dependency on
/// its minor line (today `aws.greengrass.Cli`); every other component stays as it is.
pub fn moves_with_nucleus(component: &Component, nucleus: &Nucleus) -> bool {
    !is_nucleus(component.key.as_str())
        && component.key.as_str().starts_with("aws.greengrass.")
        && component.version.as_str() == nucleus.version
}

impl Core {
    /// Greengrass described the core: its platform and the nucleus it runs now.
    pub fn observe(&mut self, device: &CoreDevice, now: Timestamp) {
        let software = &mut self.software;
        software.os = device.platform.clone().or(software.os.take());
        software.architecture = device.architecture.clone().or(software.architecture.take());
        if let Some(version) = &device.core_version {
            software.nucleus_version = Some(version.clone());
            software.nucleus.get_or_insert_with(|| NUCLEUS.to_owned());
            if software.updating_to.as_ref() == Some(version) {
                software.updating_to = None;
            }
        }
        software.observed_at = Some(now);
    }

    /// A deployment bringing `nucleus` was assigned: the core is updating to it when it is not
    /// the version it runs.
    pub(crate) fn expect_nucleus(&mut self, nucleus: Option<&Nucleus>) {
        self.software.updating_to = nucleus
            .filter(|n| self.software.nucleus_version.as_deref() != Some(n.version.as_str()))
            .map(|n| n.version.clone());
    }

    /// A deployment bringing `nucleus` succeeded on the core.
    pub(crate) fn run_nucleus(&mut self, nucleus: Option<&Nucleus>) {
        if let Some(n) = nucleus {
            self.software.nucleus = Some(n.component.clone());
            self.software.nucleus_version = Some(n.version.clone());
            if self.software.updating_to.as_ref() == Some(&n.version) {
                self.software.updating_to = None;
            }
        }
    }

    /// What this core adds to the software summary.
    pub fn software_contribution(&self) -> (SoftwareKey, SoftwareCounts) {
        let s = &self.software;
        let known = |v: &Option<String>| v.clone().unwrap_or_else(|| UNKNOWN.to_owned());
        let key = SoftwareKey {
            nucleus: s.nucleus.clone().unwrap_or_else(|| NUCLEUS.to_owned()),
            version: known(&s.nucleus_version),
            os: known(&s.os),
            architecture: known(&s.architecture),
        };
        let updating = s.updating_to.is_some() && self.deployment_status.state() == DeploymentState::InProgress;
        (key, SoftwareCounts { cores: 1, updating: i64::from(updating) })
    }

    /// `Core Software Updated` when a core change moves its nucleus from one known version
    /// to another (what every store writes with such a change).
    pub fn software_event(before: Option<&Core>, after: Option<&Core>) -> Option<Event> {
        let (before, after) = (before?, after?);
        let (from, to) = (before.software.nucleus_version.as_ref()?, after.software.nucleus_version.as_ref()?);
        (from != to).then(|| Event {
            detail_type: CORE_SOFTWARE_UPDATED_EVENT.to_owned(),
            detail: serde_json::json!({
                "coreName": after.name.as_str(),
                "nucleus": after.software.nucleus.as_deref().unwrap_or(NUCLEUS),
                "fromVersion": from,
                "toVersion": to,
                "os": after.software.os,
                "architecture": after.software.architecture,
            }),
        })
    }
}

/// One row of the software summary: a nucleus version on a platform.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SoftwareKey {
    pub nucleus: String,
    pub version: String,
    pub os: String,
    pub architecture: String,
}

/// Cores on a row, and how many of them are updating their nucleus now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SoftwareCounts {
    pub cores: i64,
    pub updating: i64,
}

impl SoftwareCounts {
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

/// Changes of the software counters (like [`crate::deployment_state::FleetDelta`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoftwareDelta(BTreeMap<SoftwareKey, SoftwareCounts>);

impl SoftwareDelta {
    pub fn between(before: Option<&Core>, after: Option<&Core>) -> Self {
        let mut delta = Self::default();
        let (from, to) = (before.map(Core::software_contribution), after.map(Core::software_contribution));
        if from != to {
            for (contribution, sign) in [(from, -1), (to, 1)] {
                if let Some((key, counts)) = contribution {
                    delta.add(key, counts, sign);
                }
            }
        }
        delta.0.retain(|_, c| !c.is_zero());
        delta
    }

    /// The counters of a whole fleet, counted from its core records.
    pub fn recount<'a>(cores: impl IntoIterator<Item = &'a Core>) -> BTreeMap<SoftwareKey, SoftwareCounts> {
        let mut total = Self::default();
        for core in cores {
            let (key, counts) = core.software_contribution();
            total.add(key, counts, 1);
        }
        total.0.retain(|_, c| !c.is_zero());
        total.0
    }

    fn add(&mut self, key: SoftwareKey, counts: SoftwareCounts, sign: i64) {
        let entry = self.0.entry(key).or_default();
        entry.cores += sign * counts.cores;
        entry.updating += sign * counts.updating;
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SoftwareKey, &SoftwareCounts)> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cores::TemplateRef;
    use crate::thing::ThingName;

    fn core() -> Core {
        let mut c = Core::new(ThingName::parse("c1").unwrap(), "p".into(), Timestamp::from_millis(1).unwrap());
        c.software = CoreSoftware::installed("2.12.0");
        c
    }

    fn nucleus(v: &str) -> Nucleus {
        Nucleus { component: NUCLEUS.into(), version: v.into() }
    }

    #[test]
    fn versions_order_numerically() {
        assert_eq!(compare_versions("2.10.0", "2.9.6"), Ordering::Greater);
        assert_eq!(compare_versions("2.12.0", "2.12.0"), Ordering::Equal);
        assert_eq!(compare_versions("2.12", "2.12.0"), Ordering::Equal);
        assert_eq!(compare_versions("2.13.0-rc1", "2.13.0"), Ordering::Less);
        assert_eq!(compare_versions("2.5.6", "2.13.0"), Ordering::Less);
    }

    #[test]
    fn platforms_match_recipe_manifests_with_wildcards_and_aliases() {
        let support = PlatformSupport(vec![
            (Some("linux".into()), Some("amd64".into())),
            (Some("linux".into()), Some("aarch64".into())),
            (Some("windows".into()), None),
        ]);
        let p = |os: &str, arch: &str| Platform { os: os.into(), architecture: arch.into() };
        assert!(support.supports(&p("linux", "x86_64")));
        assert!(support.supports(&p("linux", "arm64")));
        assert!(support.supports(&p("windows", "x86")));
        assert!(!support.supports(&p("linux", "arm")));
        assert!(!support.supports(&p("darwin", "amd64")));
    }

    #[test]
    fn an_update_counts_as_updating_until_the_core_reports_it() {
        let before = core();
        let mut after = before.clone();
        after.assign_deployment(
            &TemplateRef { name: "t".into(), version: 2 },
            "d2",
            Some(&nucleus("2.13.0")),
            after.created_at,
        );
        assert_eq!(after.software.updating_to.as_deref(), Some("2.13.0"));
        let delta = SoftwareDelta::between(Some(&before), Some(&after));
        let (key, counts) = delta.iter().next().unwrap();
        assert_eq!((key.version.as_str(), counts.updating), ("2.12.0", 1));
        assert!(Core::software_event(Some(&before), Some(&after)).is_none());
        let mut done = after.clone();
        done.run_nucleus(Some(&nucleus("2.13.0")));
        assert_eq!(
            (done.software.nucleus_version.as_deref(), done.software.updating_to.as_deref()),
            (Some("2.13.0"), None)
        );
        let event = Core::software_event(Some(&after), Some(&done)).unwrap();
        assert_eq!(
            (event.detail["fromVersion"].as_str(), event.detail["toVersion"].as_str()),
            (Some("2.12.0"), Some("2.13.0"))
        );
        let recount = SoftwareDelta::recount([&before, &done]);
        assert_eq!(recount.values().map(|c| c.cores).sum::<i64>(), 2);
    }

    #[test]
    fn a_deployment_of_the_running_nucleus_is_not_an_update() {
        let mut c = core();
        c.assign_deployment(
            &TemplateRef { name: "t".into(), version: 1 },
            "d1",
            Some(&nucleus("2.12.0")),
            c.created_at,
        );
        assert_eq!(c.software.updating_to, None);
    }
}
