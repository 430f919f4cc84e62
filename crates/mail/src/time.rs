//! RFC 3339 dates as JMAP uses them: `UTCDate` (`2024-05-01T09:30:00Z`) out, and `Date` /
//! `UTCDate` in (with a numeric offset or `Z`, optional fraction), on top of the audit log's
//! calendar code.

use keyscope_audit::event::{format_time, parse_time};

/// Formats Unix seconds as a JMAP `UTCDate` (no fraction: RFC 8620 §1.4 omits a zero one).
pub fn utc_date(unix: i64) -> String {
    let text = format_time(unix.saturating_mul(1_000_000));
    match text.split_once('.') {
        Some((whole, _)) => format!("{whole}Z"),
        None => text,
    }
}

/// Parses an RFC 3339 date-time (`Z` or `±hh:mm`, optional fraction, which is dropped) into
/// Unix seconds. `T` and `Z` must be upper-case, as RFC 8620 §1.4 requires.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    // The calendar and clock checks are the audit log's; an offset is taken off first.
    let (local, offset) = match text.strip_suffix('Z') {
        Some(local) => (local, 0),
        None => {
            let split = text.len().checked_sub(6)?;
            let (local, zone) = (text.get(..split)?, text.get(split..)?);
            let sign = match zone.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let digits = |range: std::ops::Range<usize>| -> Option<i64> {
                let part = zone.get(range)?;
                part.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| part.parse().ok())?
            };
            if zone.as_bytes().get(3) != Some(&b':') {
                return None;
            }
            let (hours, minutes) = (digits(1..3)?, digits(4..6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            (local, sign * (hours * 3600 + minutes * 60))
        }
    };
    let micros = parse_time(&format!("{local}Z"))?;
    Some(micros.div_euclid(1_000_000) - offset)
}

/// Parses a JMAP `UTCDate`: RFC 3339 with `Z` only.
pub fn parse_utc_date(text: &str) -> Option<i64> {
    if !text.ends_with('Z') {
        return None;
    }
    parse_rfc3339(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for unix in [0, 951_782_400, 1_700_000_000, 4_102_444_800, -86_400] {
            assert_eq!(parse_utc_date(&utc_date(unix)), Some(unix), "{unix}");
        }
        assert_eq!(utc_date(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn offsets_and_fractions() {
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_utc_date("2023-11-14T23:13:20+01:00"), None);
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-11-14t22:13:20z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "+023-11-14T22:13:20Z",
            "2023-11-14T22:13:20+1:00",
            "2023-11-14T24:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_some());
    }
}
