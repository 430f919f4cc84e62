//! Log importers: read a file in one of the supported formats and turn every record into a
//! [`Record`] with canonical (Unified Audit Log) member names.
//!
//! Formats ([`Format`]):
//!
//! * `keyscope`: Keyscope's own audit export (`keyscope audit export --format jsonl`) or raw
//!   log segments: JSON lines with `seq` (and `prev`); `{"checkpoint":…}` lines are skipped.
//! * `ual`: Microsoft 365 Unified Audit Log records as JSON lines, a JSON array (Management
//!   Activity API content, `ConvertTo-Json`), pretty-printed objects, Search-UnifiedAuditLog
//!   output (`AuditData` as a string or PowerShell property bag), Graph audit log query records
//!   (`{"value":[…]}` with `auditData`) or Sentinel `OfficeActivity` rows.
//! * `ual-csv`: the Purview / `Export-Csv` CSV export (an `AuditData` column), or a Sentinel
//!   `OfficeActivity` CSV export.
//! * `entra`: Entra ID sign-in logs: Graph (`{"value":[signIn…]}`), Azure Monitor diagnostic
//!   export (`{"records":[…]}`), JSON lines or arrays of either element, Log Analytics
//!   `SigninLogs` rows (JSON or CSV).
//! * `auto`: decided once per input from its first 64 KiB.
//!
//! Every input is treated as hostile: a JSON line or CSV record longer than
//! [`MAX_RECORD_BYTES`] is reported and skipped without being held in memory, a bad line is
//! reported and reading goes on, a broken JSON document (array or envelope) is reported once
//! and the records read before the break are kept. Only I/O errors end a read with an error.

mod csv_rows;
mod document;
mod entra;
mod fields;
mod input;
mod ual;

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::record::{Origin, Record};
use input::{Counting, Lines, Utf16, read_prefix};

/// Longest JSON line, JSON array element or CSV record accepted, in bytes.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// How much of the input `auto` looks at.
const SNIFF_BYTES: usize = 64 * 1024;

/// How often (in bytes read) progress is reported.
const PROGRESS_STEP: u64 = 1024 * 1024;

/// An input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Decide from the input's first bytes.
    #[default]
    Auto,
    /// Keyscope's own audit export or log segments.
    Keyscope,
    /// Microsoft 365 Unified Audit Log records as JSON (lines, array, objects).
    Ual,
    /// The Unified Audit Log CSV export (or a Sentinel `OfficeActivity` CSV).
    UalCsv,
    /// Entra ID sign-in logs.
    Entra,
}

impl Format {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Keyscope => "keyscope",
            Format::Ual => "ual",
            Format::UalCsv => "ual-csv",
            Format::Entra => "entra",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of `auto`, `keyscope`, `ual`, `ual-csv`, `entra`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown format {0:?}: use auto, keyscope, ual, ual-csv or entra")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Format::Auto),
            "keyscope" => Ok(Format::Keyscope),
            "ual" => Ok(Format::Ual),
            "ual-csv" => Ok(Format::UalCsv),
            "entra" => Ok(Format::Entra),
            _ => Err(UnknownFormat(text.to_owned())),
        }
    }
}

/// A line (or array element, or CSV record) that could not be read as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparseable {
    /// The input's name.
    pub source: Arc<str>,
    /// 1-based line (element number in a JSON array or envelope; a CSV record's first line).
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// What one read produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Records handed to `on_record`.
    pub records: u64,
    /// Lines or elements handed to `on_bad`.
    pub unparseable: u64,
    /// Bytes read from the input.
    pub bytes: u64,
}

/// Why a read stopped: only I/O errors do.
#[derive(Debug, Error)]
pub enum ImportError {
    /// Opening or reading the input failed.
    #[error("cannot read {input}: {error}")]
    Io {
        /// The input's name.
        input: String,
        /// The error.
        #[source]
        error: io::Error,
    },
}

/// Streams every record of the file at `path` to `on_record`, reports each unreadable line or
/// element to `on_bad` (never fatal), reports the bytes read so far to `on_progress` now and
/// then (and once at the end), and returns the format actually used with the statistics.
/// Only I/O errors opening or reading the file are errors.
pub fn read_path(
    path: &Path,
    format: Format,
    on_record: &mut dyn FnMut(Record),
    on_bad: &mut dyn FnMut(Unparseable),
    on_progress: &mut dyn FnMut(u64),
) -> Result<(Format, ImportStats), ImportError> {
    let (file, name) = open(path)?;
    read_with(file, &name, format, None, on_record, on_bad, on_progress)
}

fn open(path: &Path) -> Result<(std::fs::File, String), ImportError> {
    let name = path.display().to_string();
    match std::fs::File::open(path) {
        Ok(file) => Ok((file, name)),
        Err(error) => Err(ImportError::Io { input: name, error }),
    }
}

/// Says whether a raw JSON line may matter (false: skip it unparsed).
pub type LineFilter<'f> = dyn Fn(&[u8]) -> bool + 'f;

/// Like [`read_path`], skipping unparsed the JSON lines (of `ual` and `keyscope` inputs)
/// for which `prefilter` says no rule can match (see [`crate::Prefilter`]). Skipped lines
/// are still checked to be JSON objects (unparseable ones are reported) and counted in
/// `records`, but not passed to `on_record`.
pub fn read_path_filtered(
    path: &Path,
    format: Format,
    prefilter: &LineFilter<'_>,
    on_record: &mut dyn FnMut(Record),
    on_bad: &mut dyn FnMut(Unparseable),
    on_progress: &mut dyn FnMut(u64),
) -> Result<(Format, ImportStats), ImportError> {
    let (file, name) = open(path)?;
    read_with(
        file,
        &name,
        format,
        Some(prefilter),
        on_record,
        on_bad,
        on_progress,
    )
}

/// Like [`read_path`], from any reader; `source` is the name put in each [`Origin`].
pub fn read_from(
    reader: impl Read,
    source: &str,
    format: Format,
    on_record: &mut dyn FnMut(Record),
    on_bad: &mut dyn FnMut(Unparseable),
    on_progress: &mut dyn FnMut(u64),
) -> Result<(Format, ImportStats), ImportError> {
    read_with(reader, source, format, None, on_record, on_bad, on_progress)
}

fn read_with(
    reader: impl Read,
    source: &str,
    format: Format,
    prefilter: Option<&LineFilter<'_>>,
    on_record: &mut dyn FnMut(Record),
    on_bad: &mut dyn FnMut(Unparseable),
    on_progress: &mut dyn FnMut(u64),
) -> Result<(Format, ImportStats), ImportError> {
    let bytes = Rc::new(Cell::new(0u64));
    let mut sink = Sink {
        prefilter,
        format,
        source: Arc::from(source),
        on_record,
        on_bad,
        on_progress,
        bytes: Rc::clone(&bytes),
        reported: 0,
        stats: ImportStats::default(),
    };
    let result = read_inner(reader, &mut sink);
    let result = result.map(|format| (format, sink.finish()));
    result.map_err(|error| ImportError::Io {
        input: source.to_owned(),
        error,
    })
}

/// The decoded input: as it is, or UTF-16 turned into UTF-8.
enum Decoded<R> {
    Plain(R),
    Utf16(Utf16<R>),
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Utf16(r) => r.read(buf),
        }
    }
}

/// How the bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One JSON value a line.
    Lines,
    /// JSON documents (arrays, envelopes, pretty-printed objects) read as a stream.
    Document,
    /// CSV with a header row.
    Csv,
}

fn read_inner(reader: impl Read, sink: &mut Sink<'_>) -> io::Result<Format> {
    let mut counting = Counting {
        inner: reader,
        count: Rc::clone(&sink.bytes),
    };
    let head = read_prefix(&mut counting, 3)?;
    let (skip, utf16) = match head.as_slice() {
        [0xEF, 0xBB, 0xBF, ..] => (3, None),
        [0xFF, 0xFE, ..] => (2, Some(false)),
        [0xFE, 0xFF, ..] => (2, Some(true)),
        _ => (0, None),
    };
    let rest = Cursor::new(head.get(skip..).unwrap_or_default().to_vec()).chain(counting);
    let mut body = match utf16 {
        Some(big_endian) => Decoded::Utf16(Utf16::new(rest, big_endian)),
        None => Decoded::Plain(rest),
    };
    let prefix = read_prefix(&mut body, SNIFF_BYTES)?;
    let complete = prefix.len() < SNIFF_BYTES;
    let (format, layout) = choose(sink.format, &prefix, complete);
    sink.format = format;
    let input = BufReader::with_capacity(64 * 1024, Cursor::new(prefix).chain(body));
    match layout {
        Layout::Lines => read_lines(input, sink)?,
        Layout::Document => document::read(input, sink)?,
        Layout::Csv => csv_rows::read(input, sink)?,
    }
    Ok(format)
}

fn read_lines(input: impl io::BufRead, sink: &mut Sink<'_>) -> io::Result<()> {
    let mut lines = Lines::new(input);
    let mut buf = Vec::new();
    while let Some(info) = lines.next_line(&mut buf, MAX_RECORD_BYTES)? {
        if info.blank {
            continue;
        }
        if info.too_long {
            sink.bad(
                info.number,
                format!("line is longer than {MAX_RECORD_BYTES} bytes"),
            );
            continue;
        }
        while buf.last() == Some(&0) {
            buf.pop();
        }
        if let Some(prefilter) = sink.prefilter
            && matches!(sink.format, Format::Ual | Format::Keyscope)
            && !prefilter(&buf)
        {
            // No rule can select it: check it is an object without building it.
            let object = buf.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            match serde_json::from_slice::<serde::de::IgnoredAny>(&buf) {
                Ok(_) if object => sink.skipped(),
                Ok(_) => sink.bad(info.number, "not a JSON object"),
                Err(e) => sink.bad(info.number, format!("invalid JSON: {e}")),
            }
            continue;
        }
        match serde_json::from_slice::<Value>(&buf) {
            Ok(value) => sink.value(info.number, value),
            Err(e) => sink.bad(info.number, format!("invalid JSON: {e}")),
        }
    }
    Ok(())
}

/// Where records and failures go, with the running statistics.
pub(crate) struct Sink<'a> {
    prefilter: Option<&'a LineFilter<'a>>,
    format: Format,
    source: Arc<str>,
    on_record: &'a mut dyn FnMut(Record),
    on_bad: &'a mut dyn FnMut(Unparseable),
    on_progress: &'a mut dyn FnMut(u64),
    bytes: Rc<Cell<u64>>,
    reported: u64,
    stats: ImportStats,
}

impl Sink<'_> {
    /// A line the pre-filter ruled out: read and counted, not parsed.
    fn skipped(&mut self) {
        self.stats.records += 1;
        self.tick();
    }

    fn bad(&mut self, line: u64, reason: impl Into<String>) {
        self.stats.unparseable += 1;
        (self.on_bad)(Unparseable {
            source: Arc::clone(&self.source),
            line,
            reason: reason.into(),
        });
        self.tick();
    }

    fn value(&mut self, line: u64, value: Value) {
        match value {
            Value::Object(object) => self.object(line, object),
            _ => self.bad(line, "not a JSON object"),
        }
    }

    fn object(&mut self, line: u64, mut object: Map<String, Value>) {
        if self.format != Format::Keyscope
            && let Some(elements) = take_envelope(&mut object)
        {
            for element in elements {
                self.value(line, element);
            }
            return;
        }
        match normalise_detailed(self.format, object) {
            Ok(Some(event)) => {
                let seq = if self.format == Format::Keyscope {
                    event.get("seq").and_then(Value::as_u64)
                } else {
                    None
                };
                let origin = Origin {
                    source: Arc::clone(&self.source),
                    line,
                    seq,
                };
                self.stats.records += 1;
                (self.on_record)(Record::new(event, origin));
                self.tick();
            }
            Ok(None) => self.tick(),
            Err(reason) => self.bad(line, reason),
        }
    }

    fn tick(&mut self) {
        let bytes = self.bytes.get();
        if bytes >= self.reported.saturating_add(PROGRESS_STEP) {
            self.reported = bytes;
            (self.on_progress)(bytes);
        }
    }

    fn finish(&mut self) -> ImportStats {
        let bytes = self.bytes.get();
        self.stats.bytes = bytes;
        self.reported = bytes;
        (self.on_progress)(bytes);
        self.stats
    }
}

/// The envelope names of Graph (`value`) and Azure Monitor / Event Hubs (`records`).
const ENVELOPES: [&str; 2] = ["value", "records"];

/// When `object` is an envelope, its elements.
fn take_envelope(object: &mut Map<String, Value>) -> Option<Vec<Value>> {
    let key = ENVELOPES
        .into_iter()
        .find(|key| object.get(*key).is_some_and(Value::is_array))?;
    match object.remove(key) {
        Some(Value::Array(elements)) => Some(elements),
        _ => None,
    }
}

/// Normalises one source object into a canonical event: `None` when it is not a usable record
/// in that format (or, for Keyscope, a checkpoint line). With [`Format::Auto`] the object's
/// members decide the format.
pub fn normalise(format: Format, object: Map<String, Value>) -> Option<Map<String, Value>> {
    normalise_detailed(format, object).ok().flatten()
}

/// Like [`normalise`], with the reason a record is unusable; `Ok(None)` for records skipped
/// silently (Keyscope checkpoints).
fn normalise_detailed(
    format: Format,
    object: Map<String, Value>,
) -> Result<Option<Map<String, Value>>, String> {
    match format {
        Format::Auto => normalise_detailed(guess_object_format(&object), object),
        Format::Keyscope => {
            if is_checkpoint(&object) {
                Ok(None)
            } else {
                Ok(Some(object))
            }
        }
        Format::Ual | Format::UalCsv => ual::normalise(object).map(Some),
        Format::Entra => entra::normalise(object).map(Some),
    }
}

/// A Keyscope audit log checkpoint line.
fn is_checkpoint(object: &Map<String, Value>) -> bool {
    object.contains_key("checkpoint") && !object.contains_key("Operation")
}

/// Which format one object looks like.
fn guess_object_format(object: &Map<String, Value>) -> Format {
    let has = |names: &[&str]| names.iter().any(|n| object.contains_key(*n));
    if is_checkpoint(object)
        || (object.get("seq").is_some_and(Value::is_u64) && has(&["prev", "Operation"]))
    {
        return Format::Keyscope;
    }
    if let Some(first) = ENVELOPES
        .iter()
        .find_map(|key| object.get(*key)?.as_array()?.first()?.as_object())
    {
        return guess_object_format(first);
    }
    if has(&[
        "AuditData",
        "auditData",
        "Operation",
        "OfficeWorkload",
        "auditLogRecordType",
    ]) {
        return Format::Ual;
    }
    let sign_in_category = fields::first_str(object, &["category", "Category"])
        .is_some_and(|c| c.to_ascii_lowercase().ends_with("signinlogs"));
    let properties_sign_in = object
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key("createdDateTime") || p.contains_key("userPrincipalName"));
    if sign_in_category
        || properties_sign_in
        || has(&[
            "createdDateTime",
            "CreatedDateTime",
            "appDisplayName",
            "AppDisplayName",
            "userPrincipalName",
            "UserPrincipalName",
        ])
    {
        return Format::Entra;
    }
    Format::Ual
}

/// Picks the format (for `auto`) and the layout from the first bytes of the input (after any
/// byte order mark). `complete` when `prefix` is the whole input.
fn choose(requested: Format, prefix: &[u8], complete: bool) -> (Format, Layout) {
    let start = prefix
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(prefix.len());
    let text = prefix.get(start..).unwrap_or_default();
    if requested == Format::UalCsv {
        return (Format::UalCsv, Layout::Csv);
    }
    if !matches!(text.first(), Some(b'{' | b'[')) {
        let kind = csv_kind(csv_header(text));
        return match (requested, kind) {
            (Format::Auto, Some(kind)) => (kind, Layout::Csv),
            (Format::Auto, None) => (Format::Ual, Layout::Lines),
            (Format::Ual, Some(_)) => (Format::UalCsv, Layout::Csv),
            (Format::Entra, Some(_)) => (Format::Entra, Layout::Csv),
            (other, _) => (other, Layout::Lines),
        };
    }
    let (layout, first) = json_layout(text, complete);
    let format = match requested {
        Format::Auto => match &first {
            Some(object) => guess_object_format(object),
            None => sniff_text(text),
        },
        other => other,
    };
    (format, layout)
}

/// Lines or one document; and the first line's object when it is one.
fn json_layout(text: &[u8], complete: bool) -> (Layout, Option<Map<String, Value>>) {
    if text.first() == Some(&b'[') {
        return (Layout::Document, None);
    }
    let line = match memchr::memchr(b'\n', text) {
        Some(end) => text.get(..end).unwrap_or_default(),
        None if complete => text,
        None => return (Layout::Document, None),
    };
    let end = line
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | 0))
        .map_or(0, |i| i + 1);
    let line = line.get(..end).unwrap_or_default();
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(object)) => {
            let envelope = ENVELOPES
                .iter()
                .any(|key| object.get(*key).is_some_and(Value::is_array));
            let layout = if envelope {
                Layout::Document
            } else {
                Layout::Lines
            };
            (layout, Some(object))
        }
        Ok(_) => (Layout::Lines, None),
        Err(_)
            if line.last() == Some(&b'}')
                || (!matches!(line.last(), Some(b'[' | b'{' | b',' | b':'))
                    && next_line_is_object(text)) =>
        {
            (Layout::Lines, None)
        }
        Err(_) => (Layout::Document, None),
    }
}

/// Whether the second non-blank line of `text` is a whole line of its own that looks like a
/// JSON object (so a broken first line is one bad line of JSON lines, not the start of a
/// pretty-printed document).
fn next_line_is_object(text: &[u8]) -> bool {
    let mut lines = text
        .split(|b| *b == b'\n')
        .skip(1)
        .map(|line| line.trim_ascii());
    let Some(line) = lines.find(|line| !line.is_empty()) else {
        return false;
    };
    // The line must end inside the prefix: followed by another line.
    lines.next().is_some() && line.first() == Some(&b'{') && line.last() == Some(&b'}')
}

/// The format of a JSON input whose first line is not a whole object, from the member names in
/// its first bytes.
fn sniff_text(text: &[u8]) -> Format {
    let lower = text.to_ascii_lowercase();
    let has_key = |name: &str| {
        let quoted = format!("\"{}\"", name.to_ascii_lowercase());
        memchr::memmem::find_iter(&lower, quoted.as_bytes()).any(|at| {
            let after = lower.get(at + quoted.len()..).unwrap_or_default();
            after
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b':')
        })
    };
    let contains = |needle: &str| memchr::memmem::find(text, needle.as_bytes()).is_some();
    if has_key("seq") && (has_key("prev") || has_key("checkpoint")) {
        return Format::Keyscope;
    }
    if has_key("auditdata")
        || has_key("auditlogrecordtype")
        || has_key("officeworkload")
        || has_key("operation")
    {
        return Format::Ual;
    }
    if has_key("records")
        || has_key("createddatetime")
        || has_key("appdisplayname")
        || has_key("userprincipalname")
        || contains("SignInLogs\"")
    {
        return Format::Entra;
    }
    Format::Ual
}

/// The CSV header line: the first line, or the second after a `#TYPE` line of Windows
/// PowerShell's `Export-Csv`.
fn csv_header(text: &[u8]) -> &[u8] {
    let mut lines = text.split(|b| *b == b'\n');
    let first = lines.next().unwrap_or_default();
    if first.starts_with(b"#TYPE") {
        lines.next().unwrap_or_default()
    } else {
        first
    }
}

/// Which format a CSV header row names.
fn csv_kind(header: &[u8]) -> Option<Format> {
    let header = String::from_utf8_lossy(header);
    let columns: Vec<String> = header
        .split(',')
        .map(|c| column_name(c).to_ascii_lowercase())
        .collect();
    let has = |name: &str| columns.iter().any(|c| c == name);
    if has("auditdata") {
        return Some(Format::UalCsv);
    }
    if (has("timegenerated") || has("creationtime") || has("creationdate"))
        && (has("operation") || has("operations"))
    {
        return Some(Format::UalCsv);
    }
    if (has("userprincipalname") || has("createddatetime"))
        && (has("resulttype") || has("appdisplayname") || has("createddatetime"))
    {
        return Some(Format::Entra);
    }
    None
}

/// A CSV column name as a member name: trimmed, unquoted, without a `[UTC]` suffix.
pub(crate) fn column_name(raw: &str) -> &str {
    let name = raw
        .trim()
        .trim_start_matches('\u{feff}')
        .trim_matches('"')
        .trim();
    name.strip_suffix("[UTC]").map_or(name, str::trim_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], format: Format) -> (Format, Vec<Record>, Vec<Unparseable>) {
        let mut records = Vec::new();
        let mut bad = Vec::new();
        let (format, stats) = read_from(
            input,
            "test",
            format,
            &mut |r| records.push(r),
            &mut |u| bad.push(u),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(stats.records, records.len() as u64);
        assert_eq!(stats.unparseable, bad.len() as u64);
        assert_eq!(stats.bytes, input.len() as u64);
        (format, records, bad)
    }

    fn lines_of(bad: &[Unparseable]) -> Vec<u64> {
        bad.iter().map(|u| u.line).collect()
    }

    #[test]
    fn format_names() {
        for format in [
            Format::Auto,
            Format::Keyscope,
            Format::Ual,
            Format::UalCsv,
            Format::Entra,
        ] {
            assert_eq!(format.to_string().parse::<Format>().unwrap(), format);
        }
        assert_eq!("UAL-CSV".parse::<Format>().unwrap(), Format::UalCsv);
        assert!("json".parse::<Format>().is_err());
    }

    #[test]
    fn sniffing() {
        let cases: [(&str, Format, Layout); 12] = [
            (
                r#"{"CreationTime":"2023-06-15T10:11:12Z","Operation":"SignIn","prev":"x","seq":1}"#,
                Format::Keyscope,
                Layout::Lines,
            ),
            (
                r#"{"checkpoint":{"size":1}}"#,
                Format::Keyscope,
                Layout::Lines,
            ),
            (
                r#"{"CreationTime":"2023-06-15T10:11:12","Operation":"MailItemsAccessed"}"#,
                Format::Ual,
                Layout::Lines,
            ),
            (
                "[\n{\"Operation\":\"Send\"}]",
                Format::Ual,
                Layout::Document,
            ),
            (
                "{\n \"AuditData\": \"{}\"\n}",
                Format::Ual,
                Layout::Document,
            ),
            (
                r#"{"@odata.context":"x","value":[{"id":"1","createdDateTime":"2023-06-15T10:11:12Z"}]}"#,
                Format::Entra,
                Layout::Document,
            ),
            (
                "{\"records\": [\n{\"time\":\"x\",\"category\":\"SignInLogs\"}]}",
                Format::Entra,
                Layout::Document,
            ),
            (
                "[\n  {\n    \"createdDateTime\": \"2023-06-15T10:11:12Z\"}]",
                Format::Entra,
                Layout::Document,
            ),
            (
                "RecordId,CreationDate,RecordType,Operation,UserId,AuditData\n",
                Format::UalCsv,
                Layout::Csv,
            ),
            (
                "#TYPE Selected.System.Management.Automation.PSCustomObject\n\"CreationDate\",\"UserIds\",\"Operations\",\"AuditData\"\n",
                Format::UalCsv,
                Layout::Csv,
            ),
            (
                "TimeGenerated [UTC],Operation,UserId\n",
                Format::UalCsv,
                Layout::Csv,
            ),
            ("garbage\n", Format::Ual, Layout::Lines),
        ];
        for (text, format, layout) in cases {
            assert_eq!(
                choose(Format::Auto, text.as_bytes(), true),
                (format, layout),
                "{text}"
            );
        }
        assert_eq!(
            choose(Format::Ual, b"CreationDate,Operations,AuditData\n", true),
            (Format::UalCsv, Layout::Csv)
        );
        assert_eq!(
            choose(Format::UalCsv, b"{}", true),
            (Format::UalCsv, Layout::Csv)
        );
        // A broken first line followed by JSON lines is read as JSON lines.
        assert_eq!(
            choose(
                Format::Ual,
                b"{\"Operation\":\"Se\n{\"Operation\":\"Send\"}\n",
                true
            )
            .1,
            Layout::Lines
        );
        assert_eq!(
            choose(
                Format::Ual,
                b"{\"value\": [\n  {\"Operation\":\"Send\"},\n",
                true
            )
            .1,
            Layout::Document
        );
        assert_eq!(
            choose(
                Format::Ual,
                b"{\"value\":[\n{\"Operation\":\"Send\"}\n]}\n",
                true
            )
            .1,
            Layout::Document
        );
        // A first line longer than the sniffed prefix: read as a stream of documents.
        assert_eq!(
            choose(Format::Ual, b"{\"Operation\":\"Se", false).1,
            Layout::Document
        );
    }

    #[test]
    fn bad_lines_do_not_stop_reading() {
        let input = b"\xEF\xBB\xBF{\"Operation\":\"Send\",\"CreationTime\":\"2023-06-15T10:11:12\"}\n\n[1]\n{\"Operation\":\n   \n{\"Operation\":\"Send\"}\r\n{\"Operation\":\"Se";
        let (format, records, bad) = run(input, Format::Auto);
        assert_eq!(format, Format::Ual);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].origin.line, 1);
        assert_eq!(records[0].time, Some(1_686_823_872_000_000));
        assert_eq!(records[1].origin.line, 6);
        assert_eq!(lines_of(&bad), vec![3, 4, 7]);
        assert_eq!(bad[0].reason, "not a JSON object");
    }

    #[test]
    fn long_lines_are_skipped() {
        let mut input = b"{\"Operation\":\"Send\"}\n{\"Operation\":\"".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_RECORD_BYTES + 10));
        input.extend_from_slice(b"\"}\n{\"Operation\":\"Send\"}\n");
        let (_, records, bad) = run(&input, Format::Ual);
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].origin.line, 3);
        assert_eq!(lines_of(&bad), vec![2]);
        assert!(bad[0].reason.contains("longer than"), "{}", bad[0].reason);
    }

    #[test]
    fn keyscope_checkpoints_and_zero_padding() {
        let mut input =
            b"{\"Operation\":\"SignIn\",\"prev\":\"p\",\"seq\":7}\n{\"checkpoint\":{\"size\":8}}\n"
                .to_vec();
        input.extend(std::iter::repeat_n(0u8, 4096));
        let (format, records, bad) = run(&input, Format::Auto);
        assert_eq!(format, Format::Keyscope);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].origin.seq, Some(7));
        assert!(bad.is_empty(), "{bad:?}");
    }

    #[test]
    fn utf16_input() {
        let text = "[{\"Operation\":\"Send\",\"UserId\":\"é@contoso.com\"}]";
        let mut input = vec![0xFF, 0xFE];
        input.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let (format, records, bad) = run(&input, Format::Auto);
        assert_eq!(format, Format::Ual);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(records[0].str("UserId"), Some("é@contoso.com"));
    }

    #[test]
    fn progress_is_reported() {
        let line = b"{\"Operation\":\"Send\"}\n";
        let input: Vec<u8> = line
            .iter()
            .copied()
            .cycle()
            .take(line.len() * 200_000)
            .collect();
        let mut reports = Vec::new();
        let (_, stats) = read_from(
            input.as_slice(),
            "big",
            Format::Ual,
            &mut |_| {},
            &mut |_| {},
            &mut |b| reports.push(b),
        )
        .unwrap();
        assert_eq!(stats.records, 200_000);
        assert!(reports.len() >= 3, "{reports:?}");
        assert!(reports.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(reports.last().copied(), Some(input.len() as u64));
    }

    #[test]
    fn normalise_auto_guesses() {
        let object = |v: serde_json::Value| v.as_object().cloned().unwrap();
        let entra = normalise(
            Format::Auto,
            object(serde_json::json!({"createdDateTime": "2023-06-15T10:11:12Z", "status": {"errorCode": 0}})),
        )
        .unwrap();
        assert_eq!(entra["Operation"], "UserLoggedIn");
        assert!(
            normalise(
                Format::Keyscope,
                object(serde_json::json!({"checkpoint": {}}))
            )
            .is_none()
        );
        assert!(normalise(Format::Ual, object(serde_json::json!({"x": 1}))).is_none());
    }
}
