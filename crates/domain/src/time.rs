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
    /// Written field by field: every API answer and event carries timestamps, and chrono's
    /// `format` parses its pattern again on every call (a tenth of a `GET /cores/{name}`).
    /// Years outside 0000–9999 and leap seconds keep chrono's rendering.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use chrono::{Datelike as _, Timelike as _};
        let t = &self.0;
        let millis = t.timestamp_subsec_millis();
        if !(0..=9999).contains(&t.year()) || millis > 999 {
            return write!(f, "{}", t.format(FORMAT));
        }
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut value: u32| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, t.year().unsigned_abs());
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        put(20, 3, millis);
        f.write_str(std::str::from_utf8(&out).expect("ASCII digits"))
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
    fn renders_as_chrono_formats_it() {
        let mut rng = fastrand::Rng::with_seed(7);
        let year_0 = Timestamp::from_str("0000-01-01T00:00:00Z").unwrap().as_millis();
        let year_9999 = Timestamp::from_str("9999-12-31T23:59:59.999Z").unwrap().as_millis();
        let year_14645 = 400_000_000_000_000;
        let cases = (0..10_000).map(|_| rng.i64(year_0..=year_9999)).chain([year_0, year_9999, year_0 - 1, year_14645]);
        for millis in cases {
            let t = Timestamp::from_millis(millis).unwrap();
            assert_eq!(t.to_string(), t.0.format(FORMAT).to_string(), "{millis}");
        }
    }

    #[test]
    fn whole_seconds_still_show_three_digits() {
        let t = Timestamp::from_millis(1_716_232_582_000).unwrap();
        assert_eq!(t.to_string(), "2024-05-20T19:16:22.000Z");
    }
}
