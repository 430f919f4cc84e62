//! The event vocabulary and the validation of incoming events.
//!
//! An event is a JSON object. Where Microsoft 365's Unified Audit Log (UAL) has a field for the
//! same thing, the UAL name is used (`Operation`, `OrganizationId`, `UserId`, `AppId`,
//! `ClientAppId`, `ClientIPAddress`, `ClientInfoString`, `SessionId`, `ResultStatus`,
//! `MailboxOwnerUPN`, `MailAccessType`, `Folders[].Path`,
//! `Folders[].FolderItems[].InternetMessageId`, `OperationCount`, `CreationTime`), so that
//! hunting queries and analysts' habits carry over. Keyscope's own token fields are `TokenId`
//! (the `jti`), `KeyId` (the `kid`), `Issuer` and `Reason` (a trust reason code).

use serde_json::{Map, Value};
use thiserror::Error;

/// Largest event accepted, in bytes of JSON.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Members the log sets itself; an event may not carry them.
pub const RESERVED_MEMBERS: [&str; 2] = ["seq", "prev"];

/// The operations Keyscope's own services record. Other systems may log operations of their
/// own (any name of 1–64 ASCII letters and digits, starting with a letter).
pub const KNOWN_OPERATIONS: [&str; 13] = [
    "TokenIssued",
    "TokenValidated",
    "SignIn",
    "MailItemsAccessed",
    "Send",
    "KeyCreated",
    "KeyActivated",
    "KeyRetired",
    "KeyRevoked",
    "AdminAction",
    "Alert",
    "AuditCheckpoint",
    "AuditPruned",
];

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    /// Larger than [`MAX_EVENT_BYTES`].
    #[error("event is {0} bytes, more than the {MAX_EVENT_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not one strict JSON object.
    #[error("event is not a JSON object: {0}")]
    NotJson(String),
    /// No `Operation`, or not a string.
    #[error("event has no \"Operation\" string")]
    MissingOperation,
    /// An `Operation` that is not a plain name.
    #[error(
        "invalid Operation {0:?}: use 1 to 64 ASCII letters and digits, starting with a letter"
    )]
    InvalidOperation(String),
    /// A member the log sets itself.
    #[error("member {0:?} is set by the log and may not be given")]
    Reserved(String),
    /// A malformed `CreationTime`.
    #[error("invalid CreationTime {0:?}: use RFC 3339 UTC, e.g. 2026-11-22T14:52:01.123456Z")]
    InvalidTime(String),
    /// A field with the wrong JSON type.
    #[error("member {0:?} must be a {1}")]
    WrongType(String, &'static str),
}

/// Fields that must be strings when present.
const STRING_FIELDS: [&str; 14] = [
    "OrganizationId",
    "UserId",
    "AppId",
    "ClientAppId",
    "ClientIPAddress",
    "ClientInfoString",
    "SessionId",
    "TokenId",
    "KeyId",
    "Issuer",
    "ResultStatus",
    "Reason",
    "MailboxOwnerUPN",
    "MailAccessType",
];

/// Parses and checks one incoming event, and fills in `CreationTime` (now, with
/// microseconds) when it is absent.
pub fn parse_event(line: &[u8], now_micros: i64) -> Result<Map<String, Value>, EventError> {
    if line.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge(line.len()));
    }
    let mut event =
        keyscope_jose::json::parse_object(line).map_err(|e| EventError::NotJson(e.to_string()))?;
    check_event(&event)?;
    if !event.contains_key("CreationTime") {
        event.insert(
            "CreationTime".to_owned(),
            Value::String(format_time(now_micros)),
        );
    }
    Ok(event)
}

/// Checks an event already in memory (the services build events as maps).
pub fn check_event(event: &Map<String, Value>) -> Result<(), EventError> {
    let operation = match event.get("Operation") {
        Some(Value::String(op)) => op,
        _ => return Err(EventError::MissingOperation),
    };
    let plain = operation.len() <= 64
        && operation.starts_with(|c: char| c.is_ascii_alphabetic())
        && operation.chars().all(|c| c.is_ascii_alphanumeric());
    if !plain {
        return Err(EventError::InvalidOperation(operation.clone()));
    }
    if let Some(member) = RESERVED_MEMBERS.iter().find(|m| event.contains_key(**m)) {
        return Err(EventError::Reserved((*member).to_owned()));
    }
    if let Some(time) = event.get("CreationTime") {
        match time {
            Value::String(text) if parse_time(text).is_some() => {}
            other => return Err(EventError::InvalidTime(other.to_string())),
        }
    }
    for field in STRING_FIELDS {
        if event.get(field).is_some_and(|v| !v.is_string()) {
            return Err(EventError::WrongType(field.to_owned(), "string"));
        }
    }
    if event
        .get("OperationCount")
        .is_some_and(|v| v.as_u64().is_none())
    {
        return Err(EventError::WrongType(
            "OperationCount".to_owned(),
            "non-negative integer",
        ));
    }
    if event.get("Folders").is_some_and(|v| !v.is_array()) {
        return Err(EventError::WrongType("Folders".to_owned(), "array"));
    }
    Ok(())
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Formats microseconds since the epoch as RFC 3339 UTC with six fractional digits.
pub fn format_time(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:06}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` (UTC only) into microseconds since the epoch.
pub fn parse_time(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|(i, c)| bytes.get(*i) != Some(c)) || bytes.last() != Some(&b'Z') {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let mut micros = 0;
    match bytes.get(19) {
        Some(b'Z') if bytes.len() == 20 => {}
        Some(b'.') => {
            let digits = bytes.get(20..bytes.len() - 1)?;
            if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            for i in 0..6 {
                micros = micros * 10 + digits.get(i).map_or(0, |d| i64::from(d - b'0'));
            }
        }
        _ => return None,
    }
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3600 + minute * 60 + second) * 1_000_000 + micros)
}

/// Days in a month of the proleptic Gregorian calendar.
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's civil-calendar
/// algorithm, from its public description).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips() {
        for micros in [
            0,
            1_795_358_882_123_456,
            951_782_400_000_001, // 2000-02-29
            -1,
        ] {
            let text = format_time(micros);
            assert_eq!(parse_time(&text), Some(micros), "{text}");
        }
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            parse_time("2026-11-22T14:52:01Z"),
            Some(1_795_359_121_000_000)
        );
        for bad in [
            "2026-11-22 14:52:01Z",
            "2026-02-30T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T14:52:01+01:00",
            "2026-11-22T14:52:01.Z",
            "",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn events_are_checked() {
        let ok = parse_event(br#"{"Operation":"SignIn","UserId":"alice"}"#, 0).unwrap();
        assert_eq!(ok["CreationTime"], "1970-01-01T00:00:00.000000Z");
        let cases: [(&[u8], EventError); 7] = [
            (b"nope", EventError::NotJson(String::new())),
            (br#"{"UserId":"a"}"#, EventError::MissingOperation),
            (
                br#"{"Operation":"a b"}"#,
                EventError::InvalidOperation("a b".into()),
            ),
            (
                br#"{"Operation":"X","seq":1}"#,
                EventError::Reserved("seq".into()),
            ),
            (
                br#"{"Operation":"X","CreationTime":"yesterday"}"#,
                EventError::InvalidTime(String::new()),
            ),
            (
                br#"{"Operation":"X","UserId":7}"#,
                EventError::WrongType("UserId".into(), "string"),
            ),
            (
                br#"{"Operation":"X","Operation":"Y"}"#,
                EventError::NotJson(String::new()),
            ),
        ];
        for (line, expected) in cases {
            let got = parse_event(line, 0).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&expected),
                "{got:?}"
            );
        }
        let big = format!(
            r#"{{"Operation":"X","pad":"{}"}}"#,
            "a".repeat(MAX_EVENT_BYTES)
        );
        assert!(matches!(
            parse_event(big.as_bytes(), 0),
            Err(EventError::TooLarge(_))
        ));
    }
}
