//! Timestamps as the CDF API shows them: ISO-8601 UTC with milliseconds and `Z`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with millisecond precision, rendered as `2024-05-20T19:16:22.123Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

impl Timestamp {
    /// The current time, truncated to milliseconds so that a stored and re-read value compares equal.
    pub fn now() -> Self {
        Self(Utc::now().trunc_subsecs(3))
    }

    pub fn from_millis(millis: i64) -> Option<Self> {
        DateTime::from_timestamp_millis(millis).map(Self)
    }

    pub fn as_millis(&self) -> i64 {
        self.0.timestamp_millis()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(FORMAT))
    }
}

/// A text that is not an RFC 3339 timestamp.
#[derive(Debug, thiserror::Error)]
#[error("not an RFC 3339 timestamp: {0}")]
pub struct InvalidTimestamp(String);

impl FromStr for Timestamp {
    type Err = InvalidTimestamp;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| Self(t.with_timezone(&Utc).trunc_subsecs(3)))
            .map_err(|_| InvalidTimestamp(s.to_owned()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_milliseconds_and_z() {
        let t = Timestamp::from_millis(1_716_232_582_123).unwrap();
        assert_eq!(t.to_string(), "2024-05-20T19:16:22.123Z");
        assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
    }

    #[test]
    fn whole_seconds_still_show_three_digits() {
        let t = Timestamp::from_millis(1_716_232_582_000).unwrap();
        assert_eq!(t.to_string(), "2024-05-20T19:16:22.000Z");
    }
}
