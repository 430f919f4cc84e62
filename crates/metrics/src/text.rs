//! The Prometheus text exposition format, version 0.0.4: writing, and a strict reader.
//!
//! A family is `# HELP name text` (help with `\` and newline escaped), `# TYPE name kind`,
//! then one line per sample: `name{label="value",…} value`, label values with `\`, `"` and
//! newline escaped, values as Go's `ParseFloat` reads them (`+Inf`, `-Inf`, `NaN`, decimal).
//! A histogram series is cumulative `name_bucket{…,le="…"}` lines ending with `le="+Inf"`,
//! then `name_sum` and `name_count`. Lines end with `\n`.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt::Write as _;

use crate::value::HistogramSnapshot;
use crate::{valid_label_name, valid_metric_name};

/// The `Content-Type` of an exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Appends `text` with `\` and newline escaped (for `# HELP`).
pub fn escape_help(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `value` with `\`, `"` and newline escaped (for a label value).
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a sample value: `+Inf`, `-Inf`, `NaN`, or the shortest decimal that reads back as
/// the same `f64`.
pub fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Appends `# HELP` and `# TYPE` lines.
pub fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_help(out, help);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

fn write_series(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<f64>,
) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && le.is_none() {
        out.push(' ');
        return;
    }
    out.push('{');
    for (index, (label, value)) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    if let Some(le) = le {
        if !labels.is_empty() {
            out.push(',');
        }
        out.push_str("le=\"");
        write_value(out, le);
        out.push('"');
    }
    out.push_str("} ");
}

/// Appends one sample line with a float value.
pub fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    write_series(out, name, "", labels, None);
    write_value(out, value);
    out.push('\n');
}

/// Appends one sample line with an integer value (counts stay exact beyond 2^53).
pub fn write_sample_u64(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    write_series(out, name, "", labels, None);
    let _ = write!(out, "{value}");
    out.push('\n');
}

/// Appends a histogram series: cumulative buckets up to `+Inf`, `_sum`, `_count`.
pub fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    snapshot: &HistogramSnapshot,
) {
    for (le, count) in snapshot.buckets() {
        write_series(out, name, "_bucket", labels, Some(le));
        let _ = write!(out, "{count}");
        out.push('\n');
    }
    write_series(out, name, "_sum", labels, None);
    write_value(out, snapshot.sum);
    out.push('\n');
    write_series(out, name, "_count", labels, None);
    let _ = write!(out, "{}", snapshot.count());
    out.push('\n');
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// One sample read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (for a histogram: with `_bucket`, `_sum` or `_count`).
    pub name: String,
    /// Label pairs in the order written (unescaped).
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One family read back.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFamily {
    /// Its name.
    pub name: String,
    /// `# HELP` text, unescaped.
    pub help: Option<String>,
    /// `# TYPE` (`untyped` when absent).
    pub kind: String,
    /// Its samples in order.
    pub samples: Vec<Sample>,
}

/// Where and why a text is not a valid exposition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number (0: the text as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

const KINDS: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

/// Reads an exposition strictly: every line must be a `# HELP`, `# TYPE`, other comment or
/// sample line exactly as the 0.0.4 grammar has it (single spaces, no blank lines, a final
/// newline); names and label names valid; only `\\`, `\"` and `\n` escapes; `# HELP` and
/// `# TYPE` at most once per family and `# TYPE` before its samples; a family's samples
/// together; no series twice; counters not negative; each histogram series with increasing
/// `le` bounds ending in `+Inf`, non-decreasing counts, and `_count` equal to the `+Inf`
/// bucket, with `_sum` and `_count` present. Optional timestamps (integers) are accepted.
pub fn parse(text: &str) -> Result<Vec<ParsedFamily>, ParseError> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(ParseError {
            line: text.lines().count(),
            message: "the text does not end with a newline".to_owned(),
        });
    }
    let mut families: Vec<Open> = Vec::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut series: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    for (index, line) in text.split_terminator('\n').enumerate() {
        let number = index + 1;
        let fail = |message: String| ParseError {
            line: number,
            message,
        };
        if line.is_empty() {
            return Err(fail("blank line".to_owned()));
        }
        if line.contains('\r') {
            return Err(fail("carriage return".to_owned()));
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.splitn(4, ' ');
            let (first, keyword, name, rest) =
                (words.next(), words.next(), words.next(), words.next());
            let keyword = match (first, keyword) {
                (Some(""), Some(k @ ("HELP" | "TYPE"))) => k,
                _ => continue, // any other comment
            };
            let name = name.ok_or_else(|| fail(format!("# {keyword} without a name")))?;
            if !valid_metric_name(name) {
                return Err(fail(format!("invalid metric name {name:?}")));
            }
            let family = open_family(&mut families, &mut finished, name).map_err(fail)?;
            if keyword == "HELP" {
                if family.help.is_some() {
                    return Err(fail(format!("second # HELP for {name}")));
                }
                family.help = Some(unescape_help(rest.unwrap_or_default()).map_err(fail)?);
            } else {
                let kind = rest.ok_or_else(|| fail(format!("# TYPE {name} without a type")))?;
                if !KINDS.contains(&kind) {
                    return Err(fail(format!("unknown type {kind:?}")));
                }
                if !family.samples.is_empty() {
                    return Err(fail(format!("# TYPE for {name} after its samples")));
                }
                if family.kind != "untyped" || family.typed {
                    return Err(fail(format!("second # TYPE for {name}")));
                }
                family.kind = kind.to_owned();
                family.typed = true;
            }
            continue;
        }
        let sample = parse_sample(line).map_err(fail)?;
        // The family it belongs to: the current one if the name fits it, else a new untyped one.
        let belongs = families.last().is_some_and(|f| member_of(f, &sample.name));
        if !belongs {
            open_family(&mut families, &mut finished, &sample.name).map_err(fail)?;
        }
        let family = families
            .last_mut()
            .ok_or_else(|| fail("no family".to_owned()))?;
        if family.kind == "counter" && (sample.value.is_nan() || sample.value < 0.0) {
            return Err(fail(format!("counter {} is {}", sample.name, sample.value)));
        }
        if !series.insert((sample.name.clone(), sample.labels.clone())) {
            return Err(fail(format!(
                "series {} {:?} twice",
                sample.name, sample.labels
            )));
        }
        family.samples.push(sample);
    }
    let families: Vec<ParsedFamily> = families.into_iter().map(Open::close).collect();
    for family in &families {
        if family.kind == "histogram" {
            check_histogram(family).map_err(|message| ParseError { line: 0, message })?;
        }
    }
    Ok(families)
}

/// A family being read.
struct Open {
    name: String,
    help: Option<String>,
    kind: String,
    typed: bool,
    samples: Vec<Sample>,
}

impl Open {
    fn close(self) -> ParsedFamily {
        ParsedFamily {
            name: self.name,
            help: self.help,
            kind: self.kind,
            samples: self.samples,
        }
    }
}

/// The family `name` as the current one: continues the last if it has that name, else starts
/// it (a name whose family already ended is an error: its lines must be together).
fn open_family<'a>(
    families: &'a mut Vec<Open>,
    finished: &mut HashSet<String>,
    name: &str,
) -> Result<&'a mut Open, String> {
    let continues = families.last().is_some_and(|f| f.name == name);
    if !continues {
        if let Some(last) = families.last() {
            finished.insert(last.name.clone());
        }
        if finished.contains(name) {
            return Err(format!("family {name} appears again after other families"));
        }
        families.push(Open {
            name: name.to_owned(),
            help: None,
            kind: "untyped".to_owned(),
            typed: false,
            samples: Vec::new(),
        });
    }
    families.last_mut().ok_or_else(|| "no family".to_owned())
}

/// Whether a sample named `sample` belongs to `family`.
fn member_of(family: &Open, sample: &str) -> bool {
    let suffixes: &[&str] = match family.kind.as_str() {
        "histogram" => &["_bucket", "_sum", "_count"],
        "summary" => &["", "_sum", "_count"],
        _ => &[""],
    };
    suffixes
        .iter()
        .any(|suffix| sample.strip_suffix(suffix) == Some(&family.name))
}

fn unescape_help(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => return Err(format!("invalid escape in # HELP: \\{other:?}")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("not a sample line: {line:?}"))?;
    let (name, mut rest) = line.split_at(name_end);
    if !valid_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        if let Some(after) = rest.strip_prefix('}') {
            rest = after;
        } else {
            loop {
                let (label, after) = rest
                    .split_once("=\"")
                    .ok_or_else(|| format!("expected label=\"value\" in {line:?}"))?;
                if !valid_label_name(label) {
                    return Err(format!("invalid label name {label:?}"));
                }
                if labels.iter().any(|(l, _)| l == label) {
                    return Err(format!("label {label} twice"));
                }
                let (value, after) = read_label_value(after)?;
                labels.push((label.to_owned(), value));
                if let Some(after) = after.strip_prefix(',') {
                    rest = after;
                } else if let Some(after) = after.strip_prefix('}') {
                    rest = after;
                    break;
                } else {
                    return Err(format!("expected , or }} after a label value in {line:?}"));
                }
            }
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("expected one space before the value in {line:?}"))?;
    let (value, timestamp) = match rest.split_once(' ') {
        Some((value, timestamp)) => (value, Some(timestamp)),
        None => (rest, None),
    };
    let value = parse_value(value).ok_or_else(|| format!("invalid value {value:?}"))?;
    if let Some(timestamp) = timestamp {
        let digits = timestamp.strip_prefix('-').unwrap_or(timestamp);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 19 {
            return Err(format!("invalid timestamp {timestamp:?}"));
        }
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Reads an escaped label value up to its closing quote; returns it and the rest.
fn read_label_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, text.get(at + 1..).unwrap_or_default())),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                other => {
                    return Err(format!(
                        "invalid escape in a label value: \\{:?}",
                        other.map(|(_, c)| c)
                    ));
                }
            },
            c => value.push(c),
        }
    }
    Err("unterminated label value".to_owned())
}

/// A value as Go's `ParseFloat` reads the ones Prometheus writes: `+Inf`, `-Inf`, `NaN`, or a
/// decimal with optional sign, fraction and exponent.
pub fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => return Some(f64::INFINITY),
        "-Inf" => return Some(f64::NEG_INFINITY),
        "NaN" => return Some(f64::NAN),
        _ => {}
    }
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(whole)
        && fraction.is_none_or(digits)
        && !(whole.is_empty() && fraction.is_none_or(str::is_empty));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if !mantissa_ok || !exponent_ok {
        return None;
    }
    text.parse().ok()
}

/// The checks of one histogram family (see [`parse`]).
fn check_histogram(family: &ParsedFamily) -> Result<(), String> {
    let name = &family.name;
    let bucket = format!("{name}_bucket");
    let sum = format!("{name}_sum");
    let count = format!("{name}_count");
    // Per series (labels without `le`): bounds and counts of its buckets, its sum, its count.
    type Seen = (Vec<(f64, f64)>, Option<f64>, Option<f64>);
    let mut seen: Vec<(Vec<(String, String)>, Seen)> = Vec::new();
    for sample in &family.samples {
        let mut labels = sample.labels.clone();
        let le = if sample.name == bucket {
            let at = labels
                .iter()
                .position(|(l, _)| l == "le")
                .ok_or_else(|| format!("{bucket} without le"))?;
            let (_, le) = labels.remove(at);
            Some(parse_value(&le).ok_or_else(|| format!("{bucket} le={le:?} is not a number"))?)
        } else {
            None
        };
        let at = match seen.iter().position(|(l, _)| *l == labels) {
            Some(at) => at,
            None => {
                seen.push((labels, (Vec::new(), None, None)));
                seen.len() - 1
            }
        };
        let Some((_, (buckets, sum_value, count_value))) = seen.get_mut(at) else {
            continue;
        };
        if let Some(le) = le {
            buckets.push((le, sample.value));
        } else if sample.name == sum {
            *sum_value = Some(sample.value);
        } else if sample.name == count {
            *count_value = Some(sample.value);
        }
    }
    for (labels, (buckets, sum_value, count_value)) in &seen {
        let what = format!("{name} {labels:?}");
        if buckets.windows(2).any(|w| {
            matches!(w, [(a, ca), (b, cb)]
                    if a.partial_cmp(b) != Some(Ordering::Less)
                        || !matches!(ca.partial_cmp(cb), Some(Ordering::Less | Ordering::Equal)))
        }) {
            return Err(format!(
                "{what}: buckets not in increasing le order with non-decreasing counts"
            ));
        }
        let last = buckets
            .last()
            .ok_or_else(|| format!("{what}: no buckets"))?;
        if last.0 != f64::INFINITY {
            return Err(format!("{what}: the last bucket is not le=\"+Inf\""));
        }
        if sum_value.is_none() {
            return Err(format!("{what}: no _sum"));
        }
        if *count_value != Some(last.1) {
            return Err(format!(
                "{what}: _count {count_value:?} is not the +Inf bucket {}",
                last.1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Buckets, Counter, Family, Gauge, Histogram, Registry};

    #[test]
    fn values() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (0.005, "0.005"),
            (1e-7, "0.0000001"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, text) in cases {
            let mut out = String::new();
            write_value(&mut out, value);
            assert_eq!(out, text);
            let back = parse_value(&out).unwrap();
            assert!(back == value || (back.is_nan() && value.is_nan()));
        }
        for good in ["1e3", "1E-3", "+1.5", ".5", "5.", "-0"] {
            assert!(parse_value(good).is_some(), "{good}");
        }
        for bad in [
            "", "inf", "Inf", "nan", "infinity", "1e", "0x10", "1_000", ".", "e5", "1 ",
        ] {
            assert!(parse_value(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn escaping() {
        let mut out = String::new();
        escape_label_value(&mut out, "a\\b\"c\nd");
        assert_eq!(out, r#"a\\b\"c\nd"#);
        let mut out = String::new();
        escape_help(&mut out, "a\\b\"c\nd");
        assert_eq!(out, r#"a\\b"c\nd"#);
    }

    #[test]
    fn histogram_lines() {
        let h = Histogram::new(&Buckets::new(&[0.1, 1.0]).unwrap());
        h.observe(0.05);
        h.observe(0.5);
        h.observe(3.0);
        let mut out = String::new();
        write_histogram(&mut out, "lat", &[("op", "x")], &h.snapshot());
        assert_eq!(
            out,
            "lat_bucket{op=\"x\",le=\"0.1\"} 1\nlat_bucket{op=\"x\",le=\"1\"} 2\n\
             lat_bucket{op=\"x\",le=\"+Inf\"} 3\nlat_sum{op=\"x\"} 3.55\nlat_count{op=\"x\"} 3\n"
        );
        let mut out = String::new();
        write_histogram(&mut out, "lat", &[], &h.snapshot());
        assert!(out.starts_with("lat_bucket{le=\"0.1\"} 1\n"));
        assert!(out.ends_with("lat_sum 3.55\nlat_count 3\n"));
    }

    /// Everything the writer produces reads back as the same families, series and values,
    /// hostile label values included.
    #[test]
    fn round_trip() {
        let registry = Registry::new("rt_refused_total").unwrap();
        let requests = registry
            .counter(
                "rt_requests_total",
                "Requests,\nby \\route\\.",
                &["route", "status"],
                8,
            )
            .unwrap();
        let temperature = registry
            .gauge("rt_temperature", "Degrees.", &["room"], 8)
            .unwrap();
        let latency = registry
            .histogram(
                "rt_latency_seconds",
                "Latency.",
                &["op"],
                8,
                Buckets::latency(),
            )
            .unwrap();
        let plain = registry
            .counter("rt_plain_total", "No labels.", &[], 1)
            .unwrap();
        let hostile = "a\"b\\c\nd}{,=é ";
        requests.inc(&["/t/{tenant}/token", "200"]);
        requests.inc(&["/t/{tenant}/token", "200"]);
        requests.inc(&[hostile, "401"]);
        temperature.set(&["lab"], -3.25);
        temperature.set(&["vault"], f64::INFINITY);
        temperature.set(&["void"], f64::NAN);
        latency.observe(&["append"], 0.0003);
        latency.observe(&["append"], 20.0);
        latency.with(&["empty"], |_: &Histogram| ()).unwrap();
        plain.inc(&[]);
        for n in 0..20 {
            requests.inc(&[&n.to_string(), "500"]);
        }
        let text = registry.render();
        let families = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "rt_requests_total",
                "rt_temperature",
                "rt_latency_seconds",
                "rt_plain_total",
                "rt_refused_total"
            ]
        );
        let requests_family = &families[0];
        assert_eq!(requests_family.kind, "counter");
        assert_eq!(
            requests_family.help.as_deref(),
            Some("Requests,\nby \\route\\.")
        );
        let find = |family: &ParsedFamily, name: &str, labels: &[(&str, &str)]| -> f64 {
            family
                .samples
                .iter()
                .find(|s| {
                    s.name == name
                        && s.labels.len() == labels.len()
                        && labels.iter().all(|(l, v)| s.label(l) == Some(v))
                })
                .unwrap_or_else(|| panic!("{name} {labels:?} in\n{text}"))
                .value
        };
        assert_eq!(
            find(
                requests_family,
                "rt_requests_total",
                &[("route", hostile), ("status", "401")]
            ),
            1.0
        );
        assert_eq!(
            find(
                requests_family,
                "rt_requests_total",
                &[("route", "/t/{tenant}/token"), ("status", "200")]
            ),
            2.0
        );
        // The cap: 8 series kept, the rest refused and reported.
        assert_eq!(requests_family.samples.len(), 8);
        assert_eq!(
            find(
                &families[4],
                "rt_refused_total",
                &[("family", "rt_requests_total")]
            ),
            14.0
        );
        assert_eq!(
            find(&families[1], "rt_temperature", &[("room", "lab")]),
            -3.25
        );
        assert_eq!(
            find(&families[1], "rt_temperature", &[("room", "vault")]),
            f64::INFINITY
        );
        assert!(find(&families[1], "rt_temperature", &[("room", "void")]).is_nan());
        let latency_family = &families[2];
        assert_eq!(latency_family.kind, "histogram");
        assert_eq!(
            find(
                latency_family,
                "rt_latency_seconds_count",
                &[("op", "append")]
            ),
            2.0
        );
        assert_eq!(
            find(
                latency_family,
                "rt_latency_seconds_bucket",
                &[("op", "append"), ("le", "0.0005")]
            ),
            1.0
        );
        assert_eq!(
            find(
                latency_family,
                "rt_latency_seconds_bucket",
                &[("op", "append"), ("le", "+Inf")]
            ),
            2.0
        );
        assert_eq!(
            find(
                latency_family,
                "rt_latency_seconds_count",
                &[("op", "empty")]
            ),
            0.0
        );
        assert_eq!(find(&families[3], "rt_plain_total", &[]), 1.0);
        // Each sample line is one line: the hostile newline stayed escaped.
        let samples: usize = families.iter().map(|f| f.samples.len()).sum();
        let comments = text.lines().filter(|l| l.starts_with('#')).count();
        assert_eq!(text.lines().count(), samples + comments);
    }

    #[test]
    fn the_reader_is_strict() {
        let ok = "# HELP a A.\n# TYPE a counter\na{x=\"1\"} 2\na{x=\"2\"} 3 1700000000000\n";
        assert!(parse(ok).is_ok());
        assert!(parse("").unwrap().is_empty());
        let bad = [
            ("a 1", "no final newline"),
            ("a 1\n\nb 2\n", "blank line"),
            ("a  1\n", "two spaces"),
            ("a{x=\"1\",} 1\n", "trailing comma"),
            ("a{x=\"\\t\"} 1\n", "bad escape"),
            ("a{x=\"1\"\n", "unterminated"),
            ("a{x=1} 1\n", "unquoted"),
            ("a{x=\"1\",x=\"2\"} 1\n", "label twice"),
            ("a{__x=\"1\"} 1\n", "reserved label"),
            ("9a 1\n", "bad name"),
            ("a inf\n", "bad value"),
            ("a 1 x\n", "bad timestamp"),
            ("a 1\na 2\n", "series twice"),
            ("a 1\nb 1\na 2\n", "family split"),
            ("# TYPE a counter\na -1\n", "negative counter"),
            ("a 1\n# TYPE a counter\n", "type after samples"),
            ("# TYPE a counter\n# TYPE a counter\n", "type twice"),
            ("# HELP a x\n# HELP a y\n", "help twice"),
            ("# TYPE a widget\n", "unknown type"),
            ("# HELP a bad\\t\n", "bad help escape"),
            ("a 1\r\n", "CR"),
            (
                "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
                "no +Inf bucket",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
                "decreasing",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 2\n",
                "count mismatch",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
                "no sum",
            ),
            (
                "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",
                "no le",
            ),
        ];
        for (text, why) in bad {
            assert!(parse(text).is_err(), "{why}: {text:?} accepted");
        }
    }

    #[test]
    fn families_render_standalone() {
        let f = Family::<Counter>::new("c_total", "C.", &[], 1).unwrap();
        f.inc(&[]);
        let g = Family::<Gauge>::new("g", "G.", &["k"], 1).unwrap();
        let mut out = String::new();
        f.render(&mut out);
        g.render(&mut out);
        let parsed = parse(&out).unwrap();
        assert_eq!(parsed.len(), 2);
        assert!(parsed[1].samples.is_empty());
    }
}
