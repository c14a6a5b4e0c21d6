//! Validated names. Each has a fallible `parse` and private contents.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a name was refused; the text is a complete sentence fragment naming the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(String);

impl InvalidName {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// Longest version suffix (`_` + decimal u32) a deployment thing-group name must leave room for.
const VERSION_SUFFIX_MAX: usize = 1 + 10;
/// Prefix of the thing group a template version deploys through.
pub const DEPLOYMENT_GROUP_PREFIX: &str = "cdf_ggv2_deploymentForTemplate_";
/// AWS IoT thing-group names are at most 128 characters.
const THING_GROUP_NAME_MAX: usize = 128;

/// A template name. It must fit in the thing-group name
/// `cdf_ggv2_deploymentForTemplate_<name>_<version>` for any version: ASCII letters, digits,
/// `_` and `-`, at most 86 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TemplateName(String);

impl TemplateName {
    pub const MAX_LEN: usize = THING_GROUP_NAME_MAX - DEPLOYMENT_GROUP_PREFIX.len() - VERSION_SUFFIX_MAX;

    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        if name.is_empty() {
            return Err(InvalidName("must not be empty".into()));
        }
        if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
            return Err(InvalidName(format!(
                "'{name}' contains {bad:?}; template names may use only ASCII letters, digits, '_' and '-' because they form the thing-group name {DEPLOYMENT_GROUP_PREFIX}<name>_<version>"
            )));
        }
        if name.len() > Self::MAX_LEN {
            return Err(InvalidName(format!(
                "is {} characters long; template names may have at most {} so that {DEPLOYMENT_GROUP_PREFIX}<name>_<version> fits AWS IoT's 128-character thing-group limit",
                name.len(),
                Self::MAX_LEN
            )));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The thing group that deploys `version` of this template to cores.
    pub fn deployment_group(&self, version: u32) -> String {
        format!("{DEPLOYMENT_GROUP_PREFIX}{}_{version}", self.0)
    }
}

/// A Greengrass component name, e.g. `aws.greengrass.Cli`: 1 to 128 printable ASCII
/// characters without spaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ComponentName(String);

impl ComponentName {
    pub const MAX_LEN: usize = 128;

    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        if name.is_empty() {
            return Err(InvalidName("must not be empty".into()));
        }
        if name.len() > Self::MAX_LEN {
            return Err(InvalidName(format!("is longer than {} characters", Self::MAX_LEN)));
        }
        if let Some(bad) = name.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(InvalidName(format!(
                "'{name}' contains {bad:?}; component names are printable ASCII without spaces"
            )));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A component version: a semantic version `MAJOR.MINOR.PATCH[-pre][+build]`, as Greengrass requires.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ComponentVersion(String);

impl ComponentVersion {
    pub const MAX_LEN: usize = 64;

    pub fn parse(version: &str) -> Result<Self, InvalidName> {
        let err = || {
            InvalidName(format!(
                "'{version}' is not a semantic version such as \"2.4.0\" (MAJOR.MINOR.PATCH, optionally -prerelease or +build)"
            ))
        };
        if version.is_empty() {
            return Err(InvalidName("must not be empty".into()));
        }
        if version.len() > Self::MAX_LEN {
            return Err(InvalidName(format!("is longer than {} characters", Self::MAX_LEN)));
        }
        let (core, rest) = match version.find(['-', '+']) {
            Some(i) => (&version[..i], &version[i + 1..]),
            None => (version, ""),
        };
        let numbers: Vec<&str> = core.split('.').collect();
        let numeric =
            |n: &&str| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && (n.len() == 1 || !n.starts_with('0'));
        if numbers.len() != 3 || !numbers.iter().all(numeric) {
            return Err(err());
        }
        let suffix_ok = rest
            .split(['.', '+'])
            .all(|ident| !ident.is_empty() && ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if core.len() < version.len() && !suffix_ok {
            return Err(err());
        }
        Ok(Self(version.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! name_impls {
    ($($ty:ident),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
name_impls!(TemplateName, ComponentName, ComponentVersion);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_template_name_fits_the_thing_group_limit() {
        let name = TemplateName::parse(&"a".repeat(TemplateName::MAX_LEN)).unwrap();
        assert_eq!(name.deployment_group(u32::MAX).len(), 128);
        assert!(TemplateName::parse(&"a".repeat(TemplateName::MAX_LEN + 1)).is_err());
    }

    #[test]
    fn template_names_refuse_colons_and_non_ascii() {
        for bad in ["a:b", "café", "a b", "a/b", ""] {
            assert!(TemplateName::parse(bad).is_err(), "{bad} should be refused");
        }
        for good in ["edge_cameras", "Smoke-Template_01", "x"] {
            assert!(TemplateName::parse(good).is_ok(), "{good} should be accepted");
        }
    }

    #[test]
    fn component_versions_are_semver() {
        for good in ["2.4.0", "0.0.1", "1.2.3-beta.1", "1.2.3+build.5", "10.20.30-rc-1+x"] {
            assert!(ComponentVersion::parse(good).is_ok(), "{good} should be accepted");
        }
        for bad in ["2.4", "2.4.0.1", "v2.4.0", "02.4.0", "2.4.0-", "2.4.0+", "", "latest"] {
            assert!(ComponentVersion::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn component_names_refuse_spaces() {
        assert!(ComponentName::parse("aws.greengrass.Cli").is_ok());
        assert!(ComponentName::parse("aws greengrass").is_err());
        assert!(ComponentName::parse("").is_err());
    }
}
