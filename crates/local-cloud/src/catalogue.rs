//! The Greengrass component catalogue: which component versions exist.

use std::collections::{BTreeMap, BTreeSet};

use ggprov_domain::software::{NUCLEUS, NUCLEUS_LITE, PlatformSupport, compare_versions};
use ggprov_domain::{ComponentName, ComponentVersion};

/// Set of `(component, version)` pairs that exist.
#[derive(Debug, Clone, Default)]
pub struct ComponentCatalogue {
    versions: BTreeMap<String, BTreeSet<String>>,
}

static PUBLIC: &str = include_str!("catalogue.txt");

impl ComponentCatalogue {
    /// The public AWS-provided components with their published versions.
    pub fn public() -> Self {
        let mut versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in PUBLIC.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (name, list) = line.split_once(':').expect("catalogue lines are `name: versions`");
            let entry = versions.entry(name.trim().to_owned()).or_default();
            for item in list.split_whitespace() {
                entry.extend(expand(item));
            }
        }
        Self { versions }
    }

    /// Adds components (e.g. the account's private ones).
    pub fn extend(&mut self, components: impl IntoIterator<Item = (ComponentName, ComponentVersion)>) {
        for (name, version) in components {
            self.versions.entry(name.as_str().to_owned()).or_default().insert(version.as_str().to_owned());
        }
    }

    pub fn contains(&self, name: &str, version: &str) -> bool {
        self.versions.get(name).is_some_and(|v| v.contains(version))
    }

    /// Component names with their versions, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, impl Iterator<Item = &str>)> {
        self.versions.iter().map(|(name, versions)| (name.as_str(), versions.iter().map(String::as_str)))
    }
}

impl ComponentCatalogue {
    /// The platforms a public nucleus version runs on, as its recipe's manifests say (a
    /// table: the Java nucleus on Linux everywhere and on Windows from 2.5.0; the nucleus lite
    /// on Linux only); other public components run anywhere.
    pub fn platforms(&self, name: &str, version: &str) -> Option<PlatformSupport> {
        if !self.contains(name, version) {
            return None;
        }
        let linux = |archs: &[&str]| {
            archs.iter().map(|a| (Some("linux".to_owned()), Some((*a).to_owned()))).collect::<Vec<_>>()
        };
        Some(PlatformSupport(match name {
            NUCLEUS => {
                let mut all = linux(&["amd64", "aarch64", "arm", "x86"]);
                if compare_versions(version, "2.5.0").is_ge() {
                    all.extend(["amd64", "x86"].map(|a| (Some("windows".to_owned()), Some(a.to_owned()))));
                }
                all
            }
            NUCLEUS_LITE => linux(&["amd64", "aarch64", "arm"]),
            _ => Vec::new(),
        }))
    }
}

/// `2.5.0-2.5.6` → every patch from 0 to 6; a single version → itself.
fn expand(item: &str) -> Vec<String> {
    let Some((from, to)) = item.split_once('-') else {
        return vec![item.to_owned()];
    };
    let (prefix, first) = from.rsplit_once('.').expect("range start is a.b.c");
    let (prefix_to, last) = to.rsplit_once('.').expect("range end is a.b.c");
    assert_eq!(prefix, prefix_to, "a catalogue range spans patches of one minor version: {item}");
    let (first, last): (u32, u32) = (first.parse().expect("patch number"), last.parse().expect("patch number"));
    (first..=last).map(|patch| format!("{prefix}.{patch}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_catalogue_has_the_versions_the_cdf_smoke_uses() {
        let catalogue = ComponentCatalogue::public();
        assert!(catalogue.contains("aws.greengrass.Cli", "2.4.0"));
        assert!(catalogue.contains("aws.greengrass.clientdevices.IPDetector", "2.1.1"));
        assert!(catalogue.contains("aws.greengrass.Nucleus", "2.5.6"));
        assert!(!catalogue.contains("aws.greengrass.Nucleus", "2.5.7"));
        assert!(!catalogue.contains("aws.greengrass.Nucleus", "9.9.9"));
        assert!(!catalogue.contains("com.example.Unknown", "1.0.0"));
    }

    #[test]
    fn the_nucleus_runs_on_windows_from_2_5_0_and_the_lite_on_linux_only() {
        let catalogue = ComponentCatalogue::public();
        let p = |os: &str, arch: &str| ggprov_domain::software::Platform { os: os.into(), architecture: arch.into() };
        assert!(catalogue.platforms(NUCLEUS, "2.12.0").unwrap().supports(&p("windows", "amd64")));
        assert!(!catalogue.platforms(NUCLEUS, "2.4.0").unwrap().supports(&p("windows", "amd64")));
        assert!(catalogue.platforms(NUCLEUS, "2.4.0").unwrap().supports(&p("linux", "arm")));
        assert!(!catalogue.platforms(NUCLEUS_LITE, "2.0.0").unwrap().supports(&p("windows", "amd64")));
        assert!(!catalogue.platforms(NUCLEUS, "2.12.0").unwrap().supports(&p("darwin", "amd64")));
        assert_eq!(catalogue.platforms(NUCLEUS, "9.9.9"), None);
    }

    #[test]
    fn every_public_version_is_a_valid_component_version() {
        for (name, versions) in ComponentCatalogue::public().iter() {
            ComponentName::parse(name).unwrap();
            for v in versions {
                ComponentVersion::parse(v).unwrap_or_else(|e| panic!("{name} {v}: {e}"));
            }
        }
    }
}
