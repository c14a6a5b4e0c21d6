//! AWS IoT thing names (also Greengrass core device names).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::template::InvalidName;

/// An AWS IoT thing name: `[a-zA-Z0-9:_-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ThingName(String);

impl ThingName {
    pub const MAX_LEN: usize = 128;

    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        if name.is_empty() {
            return Err(InvalidName::new("must not be empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(InvalidName::new(format!(
                "is {} characters long; AWS IoT thing names have at most 128",
                name.len()
            )));
        }
        if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'))) {
            return Err(InvalidName::new(format!(
                "'{name}' contains {bad:?}; AWS IoT thing names use only ASCII letters, digits, ':', '_' and '-'"
            )));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ThingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ThingName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_names_follow_aws_rules() {
        for good in ["core-1", "Core_1:a", &"x".repeat(128)] {
            assert!(ThingName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "core 1", "core/1", "café", &"x".repeat(129)] {
            assert!(ThingName::parse(bad).is_err(), "{bad}");
        }
    }
}

/// What a thing ggprov provisioned is: a Greengrass core or a client device, never both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum ThingKind {
    Core,
    Device,
}

impl ThingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Core => "core",
            Self::Device => "device",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "core" => Some(Self::Core),
            "device" => Some(Self::Device),
            _ => None,
        }
    }

    /// The other kind.
    pub fn other(self) -> Self {
        match self {
            Self::Core => Self::Device,
            Self::Device => Self::Core,
        }
    }
}

impl std::fmt::Display for ThingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Core => "core",
            Self::Device => "client device",
        })
    }
}
