//! The time formats the importers meet, read into microseconds since the Unix epoch (UTC).
//!
//! Accepted ([`parse_any_time`]):
//!
//! * RFC 3339 / ISO 8601: `2023-06-15T10:11:12Z`, `2023-06-15T10:11:12.123456789+02:00`
//!   (0 to 9 fractional digits, `Z`, `UTC` or a numeric offset `±HH:MM` / `±HHMM`);
//! * the same without a zone, UTC implied, as the Unified Audit Log writes `CreationTime`:
//!   `2023-06-15T10:11:12`, `2023-06-15T10:11:12.1234567`; a space may replace the `T`;
//! * the US form of CSV exports and the Log Analytics portal: `6/15/2023 10:11:12 AM`,
//!   `6/15/2023, 10:11:12.123 PM`, or 24-hour `6/15/2023 10:11:12` (UTC implied);
//! * the .NET JSON form Windows PowerShell's `ConvertTo-Json` writes: `/Date(1686823872000)/`
//!   (milliseconds since the epoch, an optional `±HHMM` suffix being informational only).
//!
//! Invalid dates and times (February 30, month 13, hour 24, second 60) are refused.

use keyscope_audit::event::{days_from_civil, days_in_month};

/// Parses any of the formats above into microseconds since the Unix epoch, UTC.
pub fn parse_any_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix("/Date(") {
        return parse_dotnet(inner.strip_suffix(")/")?);
    }
    let mut scan = Scan {
        bytes: text.as_bytes(),
        pos: 0,
    };
    if text.as_bytes().get(4) == Some(&b'-') {
        parse_iso(&mut scan)
    } else {
        parse_us(&mut scan)
    }
}

/// Formats microseconds since the epoch as RFC 3339 UTC with six fractional digits
/// (`2023-06-15T10:11:12.000000Z`).
pub fn format_micros(micros: i64) -> String {
    keyscope_audit::event::format_time(micros)
}

/// A cursor over ASCII text.
struct Scan<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_spaces(&mut self) -> usize {
        let start = self.pos;
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        self.pos - start
    }

    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// Between `min` and `max` ASCII digits: their value and how many there were.
    fn digits(&mut self, min: usize, max: usize) -> Option<(i64, usize)> {
        let mut value = 0i64;
        let mut count = 0;
        while count < max {
            match self.peek() {
                Some(d) if d.is_ascii_digit() => {
                    value = value * 10 + i64::from(d - b'0');
                    count += 1;
                    self.pos += 1;
                }
                _ => break,
            }
        }
        (count >= min).then_some((value, count))
    }

    fn number(&mut self, min: usize, max: usize) -> Option<i64> {
        self.digits(min, max).map(|(value, _)| value)
    }

    /// An optional `.fffffffff` (or `,fff`): microseconds (digits past the sixth are dropped).
    fn fraction(&mut self) -> Option<i64> {
        if !(self.eat(b'.') || self.eat(b',')) {
            return Some(0);
        }
        let start = self.pos;
        self.digits(1, 9)?;
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = self.bytes.get(start..self.pos)?;
        let mut micros = 0;
        for i in 0..6 {
            micros = micros * 10 + digits.get(i).map_or(0, |d| i64::from(d - b'0'));
        }
        Some(micros)
    }

    /// Case-insensitive ASCII keyword.
    fn eat_word(&mut self, word: &str) -> bool {
        let end = self.pos + word.len();
        match self.bytes.get(self.pos..end) {
            Some(found) if found.eq_ignore_ascii_case(word.as_bytes()) => {
                self.pos = end;
                true
            }
            _ => false,
        }
    }
}

/// A calendar date and time of day, before validation.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    micros: i64,
    /// Seconds east of UTC.
    offset: i64,
}

impl Civil {
    fn to_micros(&self) -> Option<i64> {
        let valid = (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && (0..24).contains(&self.hour)
            && (0..60).contains(&self.minute)
            && (0..60).contains(&self.second);
        if !valid {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let seconds =
            days * 86_400 + self.hour * 3600 + self.minute * 60 + self.second - self.offset;
        Some(seconds * 1_000_000 + self.micros)
    }
}

fn parse_iso(scan: &mut Scan<'_>) -> Option<i64> {
    let year = scan.number(4, 4)?;
    scan.eat(b'-').then_some(())?;
    let month = scan.number(2, 2)?;
    scan.eat(b'-').then_some(())?;
    let day = scan.number(2, 2)?;
    if !(scan.eat(b'T') || scan.eat(b't') || scan.eat(b' ')) {
        return None;
    }
    let (hour, minute, second) = clock(scan, 2)?;
    let micros = scan.fraction()?;
    let spaced = scan.eat_spaces() > 0;
    let offset = if scan.eat(b'Z') || scan.eat(b'z') || scan.eat_word("UTC") {
        0
    } else if let Some(sign) = [(b'+', 1), (b'-', -1)]
        .into_iter()
        .find_map(|(c, sign)| scan.eat(c).then_some(sign))
    {
        let hours = scan.number(2, 2)?;
        scan.eat(b':');
        let minutes = scan.number(2, 2)?;
        if hours > 23 || minutes > 59 {
            return None;
        }
        sign * (hours * 3600 + minutes * 60)
    } else if spaced {
        return None;
    } else {
        0
    };
    if !scan.done() {
        return None;
    }
    Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micros,
        offset,
    }
    .to_micros()
}

fn parse_us(scan: &mut Scan<'_>) -> Option<i64> {
    let month = scan.number(1, 2)?;
    scan.eat(b'/').then_some(())?;
    let day = scan.number(1, 2)?;
    scan.eat(b'/').then_some(())?;
    let year = scan.number(4, 4)?;
    scan.eat(b',');
    if scan.eat_spaces() == 0 {
        return None;
    }
    let (hour, minute, second) = clock(scan, 1)?;
    let micros = scan.fraction()?;
    scan.eat_spaces();
    let hour = if scan.eat_word("AM") {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour % 12
    } else if scan.eat_word("PM") {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour % 12 + 12
    } else {
        hour
    };
    if !scan.done() {
        return None;
    }
    Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micros,
        offset: 0,
    }
    .to_micros()
}

/// `HH:MM:SS` (the hour with at least `min_hour_digits` digits).
fn clock(scan: &mut Scan<'_>, min_hour_digits: usize) -> Option<(i64, i64, i64)> {
    let hour = scan.number(min_hour_digits, 2)?;
    scan.eat(b':').then_some(())?;
    let minute = scan.number(2, 2)?;
    scan.eat(b':').then_some(())?;
    let second = scan.number(2, 2)?;
    Some((hour, minute, second))
}

/// The inside of `/Date(…)/`: signed milliseconds, then an optional `±HHMM` that does not
/// change the instant.
fn parse_dotnet(inner: &str) -> Option<i64> {
    let mut scan = Scan {
        bytes: inner.as_bytes(),
        pos: 0,
    };
    let negative = scan.eat(b'-');
    let (millis, _) = scan.digits(1, 15)?;
    if scan.eat(b'+') || scan.eat(b'-') {
        scan.number(4, 4)?;
    }
    if !scan.done() {
        return None;
    }
    let millis = if negative { -millis } else { millis };
    millis.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-06-15T10:11:12Z.
    const BASE: i64 = 1_686_823_872_000_000;

    #[test]
    fn accepted_forms() {
        let cases = [
            ("2023-06-15T10:11:12Z", BASE),
            ("2023-06-15T10:11:12", BASE),
            ("2023-06-15 10:11:12", BASE),
            ("2023-06-15t10:11:12z", BASE),
            ("  2023-06-15T10:11:12Z ", BASE),
            ("2023-06-15T10:11:12.1234567", BASE + 123_456),
            ("2023-06-15T10:11:12.1Z", BASE + 100_000),
            ("2023-06-15T10:11:12.123456789Z", BASE + 123_456),
            ("2023-06-15T12:11:12+02:00", BASE),
            ("2023-06-15T12:11:12.5+0200", BASE + 500_000),
            ("2023-06-15T05:41:12-04:30", BASE),
            ("2023-06-15 10:11:12 UTC", BASE),
            ("2023-06-15 10:11:12 +00:00", BASE),
            ("6/15/2023 10:11:12 AM", BASE),
            ("06/15/2023 10:11:12 am", BASE),
            ("6/15/2023 10:11:12", BASE),
            ("6/15/2023, 10:11:12.000 AM", BASE),
            ("6/15/2023 10:11:12.25 AM", BASE + 250_000),
            ("6/15/2023 12:11:12 AM", BASE - 10 * 3_600_000_000),
            ("6/15/2023 12:11:12 PM", BASE + 2 * 3_600_000_000),
            ("6/15/2023 10:11:12 PM", BASE + 12 * 3_600_000_000),
            ("6/15/2023 22:11:12", BASE + 12 * 3_600_000_000),
            ("/Date(1686823872000)/", BASE),
            ("/Date(1686823872123+0200)/", BASE + 123_000),
            ("/Date(-1000)/", -1_000_000),
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T00:00:00Z", 951_782_400_000_000),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_any_time(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn refused_forms() {
        for text in [
            "",
            "yesterday",
            "2023-02-30T00:00:00Z",
            "2023-02-29T00:00:00",
            "2023-13-01T00:00:00Z",
            "2023-00-01T00:00:00Z",
            "2023-06-15T24:00:00Z",
            "2023-06-15T10:60:00Z",
            "2023-06-15T10:11:60Z",
            "2023-06-15T10:11:12.Z",
            "2023-06-15T10:11:12.1234567890Z",
            "2023-06-15T10:11:12+2:00",
            "2023-06-15T10:11:12+24:00",
            "2023-06-15T10:11:12Zjunk",
            "2023-06-15T10:11",
            "2023-06-15",
            "2023-6-15T10:11:12Z",
            "2/30/2023 10:11:12 AM",
            "13/15/2023 10:11:12 AM",
            "6/15/2023 13:11:12 PM",
            "6/15/2023 0:11:12 AM",
            "6/15/2023 10:11:12 XM",
            "6/15/23 10:11:12 AM",
            "6/15/2023",
            "/Date()/",
            "/Date(12a)/",
            "/Date(1686823872000",
        ] {
            assert_eq!(parse_any_time(text), None, "{text}");
        }
    }

    #[test]
    fn format_round_trips() {
        assert_eq!(format_micros(BASE + 1), "2023-06-15T10:11:12.000001Z");
        assert_eq!(parse_any_time(&format_micros(BASE + 1)), Some(BASE + 1));
    }
}
