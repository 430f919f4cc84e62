//! CSV exports with a header row: the Purview / Search-UnifiedAuditLog `Export-Csv` export
//! (an `AuditData` column of JSON), Sentinel / Log Analytics exports (`OfficeActivity` or
//! `SigninLogs` columns). Each row becomes an object of its non-empty cells, named by the
//! header, and goes through the format's normaliser.

use std::io::{self, BufRead};

use serde_json::{Map, Value};

use super::input::Lines;
use super::{MAX_RECORD_BYTES, Sink, column_name};

/// Reads every record; rows are numbered by the line they start on.
pub(super) fn read(input: impl BufRead, sink: &mut Sink<'_>) -> io::Result<()> {
    let mut lines = Lines::new(input);
    let mut buf = Vec::new();
    let mut line = Vec::new();
    let mut header: Option<Vec<String>> = None;
    let mut row = csv::StringRecord::new();
    while let Some(info) = lines.next_csv_record(&mut buf, &mut line, MAX_RECORD_BYTES)? {
        if info.blank {
            continue;
        }
        if info.too_long {
            sink.bad(
                info.number,
                format!("CSV record is longer than {MAX_RECORD_BYTES} bytes"),
            );
            continue;
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(buf.as_slice());
        loop {
            match reader.read_record(&mut row) {
                Ok(false) => break,
                Ok(true) => {
                    let offset = row.position().map_or(1, csv::Position::line);
                    let number = info.number + offset.saturating_sub(1);
                    match &header {
                        None => {
                            let first = row.get(0).unwrap_or_default();
                            if row.len() <= 1 && first.trim().is_empty() {
                                continue;
                            }
                            if !first.starts_with("#TYPE") {
                                header =
                                    Some(row.iter().map(|c| column_name(c).to_owned()).collect());
                            }
                        }
                        Some(names) => {
                            let object = row_object(names, &row);
                            if object.is_empty() {
                                continue;
                            }
                            if names.iter().any(|n| n == "AuditData")
                                && !object.contains_key("AuditData")
                            {
                                sink.bad(number, "AuditData is empty");
                                continue;
                            }
                            sink.object(number, object);
                        }
                    }
                }
                Err(error) => {
                    let number = error
                        .position()
                        .map_or(info.number, |p| info.number + p.line().saturating_sub(1));
                    sink.bad(number, format!("invalid CSV: {error}"));
                    break;
                }
            }
        }
    }
    Ok(())
}

/// A row as an object: each non-empty cell under its column's name (cells beyond the header
/// are dropped; of two columns with the same name the first wins).
fn row_object(names: &[String], row: &csv::StringRecord) -> Map<String, Value> {
    let mut object = Map::new();
    for (name, cell) in names.iter().zip(row.iter()) {
        if name.is_empty() || cell.trim().is_empty() || object.contains_key(name) {
            continue;
        }
        object.insert(name.clone(), Value::String(cell.to_owned()));
    }
    object
}

#[cfg(test)]
mod tests {
    use crate::import::{Format, Unparseable, read_from};
    use crate::record::Record;

    fn run(input: &str, format: Format) -> (Format, Vec<Record>, Vec<Unparseable>) {
        let mut records = Vec::new();
        let mut bad = Vec::new();
        let (format, _) = read_from(
            input.as_bytes(),
            "csv",
            format,
            &mut |r| records.push(r),
            &mut |u| bad.push(u),
            &mut |_| {},
        )
        .unwrap();
        (format, records, bad)
    }

    #[test]
    fn audit_data_rows() {
        let input = concat!(
            "#TYPE Selected.System.Management.Automation.PSCustomObject\r\n",
            "\"CreationDate\",\"UserIds\",\"Operations\",\"AuditData\"\r\n",
            "\"6/15/2023 10:11:12 AM\",\"alice@contoso.com\",\"MailItemsAccessed\",\"{\"\"Operation\"\":\"\"MailItemsAccessed\"\",\"\"ClientIPAddress\"\":\"\"1.2.3.4:5\"\",\r\n\"\"OperationCount\"\":1}\"\r\n",
            "\r\n",
            "\"6/15/2023 10:11:13 AM\",\"bob@contoso.com\",\"Send\",\"{broken\"\r\n",
            "\"6/15/2023 10:11:14 AM\",\"carol@contoso.com\",\"Send\"\r\n",
            "\"6/15/2023 10:11:15 AM\",\"dave@contoso.com\",\"Send\",\"{\"\"Operation\"\":\"\"Send\"\"}\",\"extra\"\r\n",
        );
        let (format, records, bad) = run(input, Format::Auto);
        assert_eq!(format, Format::UalCsv);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].origin.line, 3);
        assert_eq!(records[0].str("ClientIPAddress"), Some("1.2.3.4"));
        assert_eq!(records[0].str("UserId"), Some("alice@contoso.com"));
        assert_eq!(records[0].time, Some(1_686_823_872_000_000));
        assert_eq!(records[1].origin.line, 8);
        assert_eq!(records[1].str("UserId"), Some("dave@contoso.com"));
        let lines: Vec<u64> = bad.iter().map(|u| u.line).collect();
        assert_eq!(lines, vec![6, 7]);
        assert!(bad[0].reason.contains("AuditData"), "{}", bad[0].reason);
        assert_eq!(bad[1].reason, "AuditData is empty");
    }

    #[test]
    fn invalid_utf8_and_long_records() {
        let mut input = b"Operation,UserId\nSend,a\n".to_vec();
        input.extend_from_slice(b"Send,\xFF\n");
        input.extend_from_slice(b"Send,\"");
        input.extend(std::iter::repeat_n(b'x', crate::import::MAX_RECORD_BYTES));
        input.extend_from_slice(b"\"\nSend,b\n");
        let mut records = Vec::new();
        let mut bad = Vec::new();
        read_from(
            input.as_slice(),
            "csv",
            Format::UalCsv,
            &mut |r| records.push(r),
            &mut |u| bad.push(u),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].origin.line, 5);
        let lines: Vec<u64> = bad.iter().map(|u| u.line).collect();
        assert_eq!(lines, vec![3, 4]);
    }
}
