//! Wall-clock time as the UTC text SCIM and our schema use.
//!
//! Formatting is fixed-width (`YYYY-MM-DDTHH:MM:SS.mmmZ`) so stored times compare as
//! strings, which is what SQLite's indexes and our filters rely on. Parsing (filters on
//! `meta.created`/`meta.lastModified`, `scimd log --since`) is jiff's RFC 3339 parser: a
//! hand-written one accepted 2026-02-30 and turned it into March 2nd. jiff is already in the
//! build (env_logger's timestamps) with the same `std`-only features.

use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time as milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcMillis(pub i64);

impl UtcMillis {
    pub fn now() -> UtcMillis {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        UtcMillis(since.as_millis() as i64)
    }

    /// `2026-11-23T10:09:00.123Z`
    pub fn to_rfc3339(self) -> String {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            // Outside jiff's range (years -9999..=9999): the earliest or latest it has, so
            // the text still sorts where the time belongs.
            Err(_) if self.0 < 0 => "-009999-01-01T00:00:00.000Z".into(),
            Err(_) => "9999-12-31T23:59:59.999Z".into(),
        }
    }

    /// Parses an RFC 3339 date-time (`Z` or `±HH:MM` offset, optional fraction; a
    /// fraction beyond milliseconds is truncated). Impossible dates and times are `None`.
    pub fn parse_rfc3339(text: &str) -> Option<UtcMillis> {
        // RFC 3339 needs a full date, a time with seconds and an offset; jiff also takes
        // shorter ISO 8601 forms, which a filter literal must not silently become.
        let b = text.as_bytes();
        if b.len() < 20 || b.get(10).is_none_or(|c| !matches!(c, b'T' | b't' | b' ')) || b.get(16) != Some(&b':') {
            return None;
        }
        let t: jiff::Timestamp = text.parse().ok()?;
        Some(UtcMillis(t.as_millisecond()))
    }
}

/// Where the server reads the time. Tests inject one they can move forward (token expiry).
pub type Clock = std::sync::Arc<dyn Fn() -> UtcMillis + Send + Sync>;

pub fn system_clock() -> Clock {
    std::sync::Arc::new(UtcMillis::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_795_431_540_123, "2026-11-23T10:59:00.123Z"),
        ];
        for (millis, text) in cases {
            assert_eq!(UtcMillis(millis).to_rfc3339(), text);
            assert_eq!(UtcMillis::parse_rfc3339(text), Some(UtcMillis(millis)));
        }
        assert_eq!(
            UtcMillis::parse_rfc3339("2026-11-23T11:59:00.123+01:00"),
            Some(UtcMillis(1_795_431_540_123))
        );
        assert_eq!(UtcMillis::parse_rfc3339("2026-11-23T10:59:00Z"), Some(UtcMillis(1_795_431_540_000)));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-23",
            "2026-11-23T10:59:00",
            "x026-11-23T10:59:00Z",
            // Dates that do not exist (the hand-written parser took them as early March).
            "2026-02-30T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T10:59Z",
        ] {
            assert_eq!(UtcMillis::parse_rfc3339(bad), None, "{bad}");
        }
    }
}
