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
            // Digit by digit: every write of a resource formats two to four of these, and
            // strftime's interpreter cost ten times as much.
            Ok(t) if self.0 >= YEAR_0 * 1000 => {
                let d = jiff::tz::Offset::UTC.to_datetime(t);
                let mut out = *b"0000-00-00T00:00:00.000Z";
                let mut put = |at: usize, width: usize, mut n: u32| {
                    for i in (at..at + width).rev() {
                        out[i] = b'0' + (n % 10) as u8;
                        n /= 10;
                    }
                };
                put(0, 4, d.year() as u32);
                put(5, 2, d.month() as u32);
                put(8, 2, d.day() as u32);
                put(11, 2, d.hour() as u32);
                put(14, 2, d.minute() as u32);
                put(17, 2, d.second() as u32);
                put(20, 3, d.millisecond() as u32);
                String::from_utf8_lossy(&out).into_owned()
            }
            Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            // Outside jiff's range (years -9999..=9999): the earliest or latest it has, so
            // the text still sorts where the time belongs.
            Err(_) if self.0 < 0 => "-009999-01-01T00:00:00.000Z".into(),
            Err(_) => "9999-12-31T23:59:59.999Z".into(),
        }
    }

    /// Whether `text` is an RFC 3339 date-time: `parse_rfc3339(text).is_some()`, answered
    /// without parsing for the one spelling scimd stores (`YYYY-MM-DDTHH:MM:SS.mmmZ`), which
    /// rendering checks for every stored dateTime value.
    pub fn is_rfc3339(text: &str) -> bool {
        is_canonical(text.as_bytes()) || UtcMillis::parse_rfc3339(text).is_some()
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
        // Rounded down, not towards the epoch (`as_millisecond`): 1969-12-31T23:59:59.9996Z
        // is .999, not the next millisecond.
        Some(UtcMillis(t.as_nanosecond().div_euclid(1_000_000) as i64))
    }
}

/// 0000-01-01T00:00:00Z in Unix seconds: from there on `to_rfc3339` writes four-digit years.
/// (A leap second, `:60`, is not canonical: `is_rfc3339` leaves it to jiff, which takes it.)
const YEAR_0: i64 = -62_167_219_200;

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` naming a time that exists (what `to_rfc3339` writes for
/// years 0000–9999).
fn is_canonical(b: &[u8]) -> bool {
    const SHAPE: &[u8; 24] = b"dddd-dd-ddTdd:dd:dd.dddZ";
    if b.len() != 24 || !b.iter().zip(SHAPE).all(|(c, s)| if *s == b'd' { c.is_ascii_digit() } else { c == s }) {
        return false;
    }
    let num = |at: usize, width: usize| b[at..at + width].iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0'));
    let (year, month, day) = (num(0, 4), num(5, 2), num(8, 2));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return false,
    };
    (1..=days).contains(&day) && num(11, 2) < 24 && num(14, 2) < 60 && num(17, 2) < 60
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
        // A fraction beyond milliseconds is cut off, before 1970 as after it.
        assert_eq!(UtcMillis::parse_rfc3339("2026-11-23T10:59:00.123999Z"), Some(UtcMillis(1_795_431_540_123)));
        assert_eq!(UtcMillis::parse_rfc3339("1969-12-31T23:59:59.9996Z"), Some(UtcMillis(-1)));
        assert_eq!(
            UtcMillis::parse_rfc3339("0999-12-31T23:59:59.123456+00:00").map(UtcMillis::to_rfc3339).as_deref(),
            Some("0999-12-31T23:59:59.123Z")
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00.000Z",
            "2026-02-29T00:00:00.000Z",
            "1900-02-29T00:00:00.000Z",
            "2026-11-00T00:00:00.000Z",
            "2026-11-23T10:60:00.000Z",
            "2026-11-23T10:59:00.000z0",
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
            assert!(!UtcMillis::is_rfc3339(bad), "{bad}");
        }
    }

    /// The digit-by-digit formatting writes what strftime writes, and the canonical check
    /// agrees with the parser, across years 0000–9999 and the edges of the range.
    #[test]
    fn fast_formatting_and_checking_agree_with_jiff() {
        let strftime = |m: i64| jiff::Timestamp::from_millisecond(m).unwrap().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let mut m = YEAR_0 * 1000;
        let mut samples = vec![YEAR_0 * 1000, YEAR_0 * 1000 - 1, 0, -1, 951_782_400_000, 253_402_207_199_999];
        while m < 253_402_207_199_999 {
            samples.push(m);
            m += 7_777_777_777_777 / 3 + 12_345;
        }
        for m in samples {
            let text = UtcMillis(m).to_rfc3339();
            assert_eq!(text, strftime(m), "{m}");
            // Before year 0 strftime's own spelling stays (and is not parsed back).
            let canonical = m >= YEAR_0 * 1000;
            assert_eq!(is_canonical(text.as_bytes()), canonical, "{text}");
            if canonical {
                assert_eq!(UtcMillis::parse_rfc3339(&text), Some(UtcMillis(m)), "{text}");
                assert!(UtcMillis::is_rfc3339(&text), "{text}");
            }
        }
        for leap in ["2000-02-29T00:00:00.000Z", "2024-02-29T23:59:59.999Z", "0000-02-29T00:00:00.000Z"] {
            assert!(is_canonical(leap.as_bytes()) && UtcMillis::parse_rfc3339(leap).is_some(), "{leap}");
        }
    }
}
