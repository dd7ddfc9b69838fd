//! Wall-clock time as the UTC text SCIM and our schema use.
//!
//! We only need "now" formatted as RFC 3339 with milliseconds, and the reverse for
//! filters on `meta.created`/`meta.lastModified`; a date crate would be more than that.
//! Formatting is fixed-width (`YYYY-MM-DDTHH:MM:SS.mmmZ`) so stored times compare as
//! strings, which is what SQLite's indexes and our filters rely on.

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
        let secs = self.0.div_euclid(1000);
        let millis = self.0.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }

    /// Parses RFC 3339 date-times (`Z` or `±HH:MM` offsets, optional fraction).
    pub fn parse_rfc3339(text: &str) -> Option<UtcMillis> {
        let b = text.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let s = text.get(r)?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let mut i = 19;
        let mut millis = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 3 {
                    millis = millis * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            for _ in (i - start)..3 {
                millis *= 10;
            }
        }
        let offset_secs = match b.get(i) {
            Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                let v = oh * 3600 + om * 60;
                if *sign == b'+' {
                    v
                } else {
                    -v
                }
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo, d);
        let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_secs;
        Some(UtcMillis(secs * 1000 + millis))
    }
}

/// Where the server reads the time. Tests inject one they can move forward (token expiry).
pub type Clock = std::sync::Arc<dyn Fn() -> UtcMillis + Send + Sync>;

pub fn system_clock() -> Clock {
    std::sync::Arc::new(UtcMillis::now)
}

// Howard Hinnant's civil-from-days / days-from-civil algorithms (public domain).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
        for bad in ["", "2026-13-01T00:00:00Z", "2026-11-23", "2026-11-23T10:59:00", "x026-11-23T10:59:00Z"] {
            assert_eq!(UtcMillis::parse_rfc3339(bad), None, "{bad}");
        }
    }
}
