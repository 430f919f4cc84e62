#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The importers over fixture files written from the public schemas of each source: Keyscope's
//! export, Microsoft 365 Unified Audit Log records (JSON lines, arrays, Search-UnifiedAuditLog
//! output, the Purview CSV export, PowerShell property bags, Sentinel `OfficeActivity` in JSON
//! and CSV) and Entra ID sign-in logs (Graph and Azure Monitor).

use std::path::PathBuf;

use keyscope_detect::Record;
use keyscope_detect::import::{
    Format, ImportError, ImportStats, Unparseable, read_from, read_path,
};

/// 2023-06-15T10:11:12Z in microseconds.
const BASE: i64 = 1_686_823_872_000_000;
const SECOND: i64 = 1_000_000;
const TENANT: &str = "4a1b2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
const GRAPH_EXPLORER: &str = "de8bc8b5-d9f9-48b1-a8ad-b748da725064";
const OFFICE: &str = "d3590ed6-52b3-4102-aeff-aad2292ab01c";

struct Outcome {
    format: Format,
    stats: ImportStats,
    records: Vec<Record>,
    bad: Vec<Unparseable>,
}

impl Outcome {
    fn lines(&self) -> Vec<u64> {
        self.records.iter().map(|r| r.origin.line).collect()
    }

    fn bad_lines(&self) -> Vec<u64> {
        self.bad.iter().map(|u| u.line).collect()
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(name: &str, format: Format) -> Outcome {
    let path = fixture(name);
    let mut records = Vec::new();
    let mut bad = Vec::new();
    let mut progress = Vec::new();
    let (format, stats) = read_path(
        &path,
        format,
        &mut |r| records.push(r),
        &mut |u| bad.push(u),
        &mut |b| progress.push(b),
    )
    .unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(stats.bytes, size, "{name}");
    assert_eq!(progress.last().copied(), Some(size), "{name}");
    assert_eq!(stats.records, records.len() as u64, "{name}");
    assert_eq!(stats.unparseable, bad.len() as u64, "{name}");
    for record in &records {
        assert_eq!(&*record.origin.source, path.display().to_string(), "{name}");
        assert!(record.event.is_object());
    }
    Outcome {
        format,
        stats,
        records,
        bad,
    }
}

fn read_text(text: &str, format: Format) -> Outcome {
    let mut records = Vec::new();
    let mut bad = Vec::new();
    let (format, stats) = read_from(
        text.as_bytes(),
        "stdin",
        format,
        &mut |r| records.push(r),
        &mut |u| bad.push(u),
        &mut |_| {},
    )
    .unwrap();
    Outcome {
        format,
        stats,
        records,
        bad,
    }
}

/// The first `InternetMessageId` of `Folders`.
fn first_message_id(record: &Record) -> &str {
    record.event["Folders"][0]["FolderItems"][0]["InternetMessageId"]
        .as_str()
        .unwrap()
}

#[test]
fn auto_detection_picks_each_format() {
    for (name, format) in [
        ("keyscope.jsonl", Format::Keyscope),
        ("ual.jsonl", Format::Ual),
        ("ual-array.json", Format::Ual),
        ("ual-search-output.json", Format::Ual),
        ("ual-export.csv", Format::UalCsv),
        ("ual-powershell-bags.jsonl", Format::Ual),
        ("sentinel-officeactivity.json", Format::Ual),
        ("sentinel-officeactivity.csv", Format::UalCsv),
        ("entra-graph.json", Format::Entra),
        ("entra-azure-monitor.json", Format::Entra),
    ] {
        let auto = read(name, Format::Auto);
        assert_eq!(auto.format, format, "{name}");
        let forced = read(name, format);
        assert_eq!(forced.format, format, "{name}");
        assert_eq!(auto.stats, forced.stats, "{name}");
        assert_eq!(auto.records, forced.records, "{name}");
    }
}

#[test]
fn keyscope_export() {
    let out = read("keyscope.jsonl", Format::Auto);
    assert_eq!(out.lines(), vec![1, 2, 5]);
    let seqs: Vec<Option<u64>> = out.records.iter().map(|r| r.origin.seq).collect();
    assert_eq!(seqs, vec![Some(0), Some(1), Some(2)]);
    // The checkpoint (line 3) and the blank line (4) are skipped silently; the truncated last
    // line is reported.
    assert_eq!(out.bad_lines(), vec![6]);
    assert!(out.bad[0].reason.starts_with("invalid JSON"));
    let first = &out.records[0];
    assert_eq!(first.time, Some(1_795_359_121_123_456));
    assert_eq!(
        first.str("CreationTime"),
        Some("2026-11-22T14:52:01.123456Z")
    );
    assert_eq!(first.str("TokenId"), Some("jti-1"));
    assert!(first.event.get("prev").is_some());
    let access = &out.records[1];
    assert_eq!(access.str("MailAccessType"), Some("Bind"));
    assert_eq!(first_message_id(access), "<m1@contoso.example>");
    assert_eq!(out.records[2].str("Reason"), Some("bad_password"));
}

#[test]
fn ual_json_lines() {
    let out = read("ual.jsonl", Format::Auto);
    assert_eq!(out.lines(), vec![1, 2, 5, 7]);
    assert_eq!(out.bad_lines(), vec![4, 6]);
    assert_eq!(out.bad[0].reason, "not a JSON object");
    assert!(out.bad[1].reason.starts_with("invalid JSON"));

    let mia = &out.records[0];
    assert_eq!(mia.str("Operation"), Some("MailItemsAccessed"));
    assert_eq!(mia.time, Some(BASE));
    assert_eq!(mia.str("CreationTime"), Some("2023-06-15T10:11:12.000000Z"));
    assert_eq!(mia.str("ClientIPAddress"), Some("203.0.113.25"));
    assert_eq!(mia.str("MailAccessType"), Some("Bind"));
    assert_eq!(mia.str("IsThrottled"), Some("False"));
    assert_eq!(mia.str("AppId"), Some(GRAPH_EXPLORER));
    assert_eq!(mia.str("ClientAppId"), Some(OFFICE));
    assert_eq!(mia.str("MailboxOwnerUPN"), Some("alice@contoso.com"));
    assert_eq!(mia.str("OrganizationId"), Some(TENANT));
    assert_eq!(mia.str("Workload"), Some("Exchange"));
    assert_eq!(mia.event["RecordType"], 50);
    assert_eq!(mia.event["OperationCount"], 1);
    assert_eq!(
        first_message_id(mia),
        "<AM6PR04MB123401@AM6PR04MB1234.eurprd04.prod.outlook.com>"
    );
    assert_eq!(mia.event["Folders"][0]["Path"], "\\Inbox");
    assert_eq!(mia.origin.seq, None);

    let send = &out.records[1];
    assert_eq!(send.str("Operation"), Some("Send"));
    assert_eq!(send.str("ClientIPAddress"), Some("2001:db8::1"));
    assert_eq!(send.time, Some(BASE + 258 * SECOND));

    let logon = &out.records[2];
    assert_eq!(logon.str("Operation"), Some("UserLoginFailed"));
    assert_eq!(logon.str("ClientIPAddress"), Some("2001:db8::7"));
    assert_eq!(
        logon.str("AppId"),
        Some("00000002-0000-0ff1-ce00-000000000000")
    );
    assert_eq!(
        logon.str("ClientInfoString"),
        Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64)")
    );
    assert_eq!(logon.str("Reason"), Some("InvalidUserNameOrPassword"));
    assert_eq!(
        logon.str("SessionId"),
        Some("a8f6e2d1-4c3b-4a5e-9f8d-7c6b5a4e3d2c")
    );

    let sync = &out.records[3];
    assert_eq!(sync.str("MailAccessType"), Some("Sync"));
    assert_eq!(sync.time, Some(BASE + 1728 * SECOND + 123_456));
    assert_eq!(
        sync.str("CreationTime"),
        Some("2023-06-15T10:40:00.123456Z")
    );
}

#[test]
fn ual_json_array() {
    let out = read("ual-array.json", Format::Ual);
    assert_eq!(out.lines(), vec![1, 3]);
    assert_eq!(out.bad_lines(), vec![2]);
    assert_eq!(out.bad[0].reason, "not a JSON object");
    let mia = &out.records[0];
    assert_eq!(mia.str("UserId"), Some("carol@contoso.com"));
    assert_eq!(mia.str("ClientIPAddress"), Some("198.51.100.20"));
    assert_eq!(mia.str("MailAccessType"), Some("Bind"));
    assert_eq!(mia.time, Some(BASE + 2928 * SECOND));
    assert_eq!(out.records[1].str("Operation"), Some("Send"));
}

#[test]
fn ual_search_unified_audit_log_output() {
    let out = read("ual-search-output.json", Format::Auto);
    assert_eq!(out.lines(), vec![1, 2]);
    // The third row's AuditData is cut off.
    assert_eq!(out.bad_lines(), vec![3]);
    assert!(
        out.bad[0].reason.contains("AuditData"),
        "{}",
        out.bad[0].reason
    );

    let dave = &out.records[0];
    assert_eq!(dave.str("Operation"), Some("MailItemsAccessed"));
    assert_eq!(dave.str("UserId"), Some("dave@contoso.com"));
    assert_eq!(dave.str("MailAccessType"), Some("Bind"));
    assert_eq!(dave.str("ClientIPAddress"), Some("203.0.113.99"));
    // AuditData's own members win over the outer columns.
    assert_eq!(dave.event["RecordType"], 50);
    assert_eq!(dave.time, Some(1_686_830_400 * SECOND));
    assert_eq!(dave.str("ClientAppId"), Some(OFFICE));
    assert!(dave.event.get("AuditData").is_none());
    assert_eq!(dave.event["ResultIndex"], 1);

    // AuditData without Operation, CreationTime or UserId: the outer columns fill them in.
    let erin = &out.records[1];
    assert_eq!(erin.str("Operation"), Some("MailItemsAccessed"));
    assert_eq!(erin.str("UserId"), Some("erin@contoso.com"));
    assert_eq!(
        erin.str("CreationTime"),
        Some("2023-06-15T12:01:00.000000Z")
    );
    assert_eq!(erin.time, Some(1_686_830_460 * SECOND));
    assert_eq!(erin.str("MailAccessType"), Some("Sync"));
    assert_eq!(erin.str("Id"), Some("77777777-0000-4000-8000-000000000002"));
}

#[test]
fn ual_purview_csv_export() {
    let out = read("ual-export.csv", Format::Auto);
    // The second row's AuditData is pretty-printed over lines 3 to 26.
    assert_eq!(out.lines(), vec![2, 3, 28]);
    assert_eq!(out.bad_lines(), vec![27]);
    assert!(out.bad[0].reason.contains("AuditData is not valid JSON"));

    let grace = &out.records[0];
    assert_eq!(grace.str("UserId"), Some("grace@contoso.com"));
    assert_eq!(grace.str("ClientIPAddress"), Some("192.0.2.55"));
    assert_eq!(grace.str("MailAccessType"), Some("Bind"));
    assert_eq!(grace.str("MailboxOwnerUPN"), Some("grace@contoso.com"));
    assert_eq!(grace.event["RecordType"], 50);
    assert_eq!(grace.time, Some(BASE + 10_128 * SECOND));
    assert_eq!(
        first_message_id(grace),
        "<AM6PR04MB123405@AM6PR04MB1234.eurprd04.prod.outlook.com>"
    );
    assert_eq!(
        grace.str("RecordId"),
        Some("5c7e3f8a-1d2b-4c6e-9f0a-3b5d7e9f1a05")
    );

    let send = &out.records[1];
    assert_eq!(send.str("Operation"), Some("Send"));
    assert_eq!(send.str("ClientIPAddress"), Some("198.51.100.1"));
    assert_eq!(
        send.event["Item"]["InternetMessageId"],
        "<sent1@contoso.com>"
    );

    let heidi = &out.records[2];
    assert_eq!(heidi.str("UserId"), Some("heidi@contoso.com"));
    assert_eq!(heidi.str("MailAccessType"), Some("Sync"));
    assert_eq!(
        heidi.str("Id"),
        Some("cccc0000-0000-4000-8000-000000000008")
    );
}

#[test]
fn ual_powershell_property_bags() {
    let out = read("ual-powershell-bags.jsonl", Format::Auto);
    assert!(out.bad.is_empty(), "{:?}", out.bad);
    assert_eq!(out.lines(), vec![1, 2, 3]);

    let ivan = &out.records[0];
    assert_eq!(ivan.str("MailAccessType"), Some("Bind"));
    assert_eq!(ivan.str("IsThrottled"), Some("False"));
    assert_eq!(
        ivan.event["OperationProperties"][0]["Name"],
        "MailAccessType"
    );
    assert_eq!(ivan.event["Folders"][0]["Path"], "\\Inbox");
    assert_eq!(ivan.event["Folders"][0]["FolderItems"], "System.Object[]");
    assert_eq!(ivan.str("ClientIPAddress"), Some("203.0.113.60"));

    // The whole AuditData is a bag.
    let judy = &out.records[1];
    assert_eq!(judy.str("Operation"), Some("MailItemsAccessed"));
    assert_eq!(judy.str("UserId"), Some("judy@contoso.com"));
    assert_eq!(judy.str("ClientIPAddress"), Some("2001:db8::42"));
    assert_eq!(judy.str("OrganizationId"), Some(TENANT));
    assert_eq!(judy.str("AppId"), Some(GRAPH_EXPLORER));
    assert_eq!(judy.str("ClientAppId"), Some(OFFICE));
    assert_eq!(judy.event["OperationCount"], 4);
    assert_eq!(judy.event["RecordType"], 50);
    assert_eq!(judy.time, Some(BASE + 14_028 * SECOND));

    let ken = &out.records[2];
    assert_eq!(ken.str("MailAccessType"), Some("Sync"));
}

#[test]
fn sentinel_office_activity_json() {
    let out = read("sentinel-officeactivity.json", Format::Auto);
    assert!(out.bad.is_empty(), "{:?}", out.bad);
    assert_eq!(out.lines(), vec![1, 2]);
    let alice = &out.records[0];
    assert_eq!(
        alice.str("CreationTime"),
        Some("2023-06-15T15:00:00.123000Z")
    );
    assert_eq!(alice.time, Some(BASE + 17_328 * SECOND + 123_000));
    assert_eq!(alice.str("Workload"), Some("Exchange"));
    assert_eq!(alice.str("OrganizationId"), Some(TENANT));
    assert_eq!(
        alice.str("Id"),
        Some("eeee0000-0000-4000-8000-000000000001")
    );
    assert_eq!(alice.str("ClientIPAddress"), Some("203.0.113.25"));
    assert_eq!(alice.str("MailAccessType"), Some("Bind"));
    assert_eq!(alice.str("AppId"), Some(GRAPH_EXPLORER));
    assert_eq!(alice.str("ClientAppId"), Some(OFFICE));
    assert_eq!(alice.str("MailboxOwnerUPN"), Some("alice@contoso.com"));
    assert_eq!(
        first_message_id(alice),
        "<AM6PR04MB9999@AM6PR04MB9999.eurprd04.prod.outlook.com>"
    );
    // The Log Analytics workspace's TenantId is kept as it is, not taken for the tenant.
    assert_eq!(
        alice.str("TenantId"),
        Some("0f9e8d7c-6b5a-4f3e-9d2c-1b0a9f8e7d6c")
    );
    let bob = &out.records[1];
    assert_eq!(bob.str("ClientIPAddress"), Some("2001:db8::9"));
    assert_eq!(bob.str("MailAccessType"), Some("Sync"));
}

#[test]
fn sentinel_office_activity_csv() {
    let out = read("sentinel-officeactivity.csv", Format::Auto);
    assert_eq!(out.lines(), vec![2, 3]);
    assert_eq!(out.bad_lines(), vec![4]);
    assert!(out.bad[0].reason.contains("no Operation"));
    let alice = &out.records[0];
    assert_eq!(
        alice.str("CreationTime"),
        Some("2023-06-15T15:00:00.123000Z")
    );
    assert!(alice.event.get("TimeGenerated").is_some());
    assert_eq!(alice.str("Workload"), Some("Exchange"));
    assert_eq!(alice.str("ClientIPAddress"), Some("203.0.113.25"));
    assert_eq!(alice.str("MailAccessType"), Some("Bind"));
    assert_eq!(
        alice.str("Id"),
        Some("eeee0000-0000-4000-8000-000000000001")
    );
    assert_eq!(alice.str("RecordType"), Some("ExchangeItemAggregated"));
    assert_eq!(
        first_message_id(alice),
        "<AM6PR04MB9999@AM6PR04MB9999.eurprd04.prod.outlook.com>"
    );
    let bob = &out.records[1];
    assert_eq!(bob.str("ClientIPAddress"), Some("2001:db8::9"));
    assert_eq!(bob.time, Some(BASE + 17_628 * SECOND));
}

#[test]
fn entra_graph_sign_ins() {
    let out = read("entra-graph.json", Format::Auto);
    assert_eq!(out.lines(), vec![1, 2]);
    assert_eq!(out.bad_lines(), vec![3]);
    assert_eq!(out.bad[0].reason, "not a JSON object");

    let alice = &out.records[0];
    assert_eq!(alice.str("Operation"), Some("UserLoggedIn"));
    assert_eq!(alice.str("ResultStatus"), Some("Success"));
    assert!(alice.event.get("Reason").is_none());
    assert_eq!(alice.str("UserId"), Some("alice@contoso.com"));
    assert_eq!(alice.str("AppId"), Some(GRAPH_EXPLORER));
    assert_eq!(alice.str("ClientIPAddress"), Some("203.0.113.25"));
    assert_eq!(
        alice
            .str("ClientInfoString")
            .map(|s| s.starts_with("Mozilla/5.0")),
        Some(true)
    );
    assert_eq!(alice.str("OrganizationId"), Some(TENANT));
    assert_eq!(
        alice.str("SessionId"),
        Some("a8f6e2d1-4c3b-4a5e-9f8d-7c6b5a4e3d2c")
    );
    assert_eq!(
        alice.str("TokenId"),
        Some("ZTJmNGU5YjQtYzM3Ny00ZTJiLWE4MzgtMDUxMDcxYzg1NzAw")
    );
    assert_eq!(alice.str("Workload"), Some("AzureActiveDirectory"));
    assert_eq!(alice.time, Some(BASE - 791 * SECOND));
    // The source's own members stay.
    assert_eq!(alice.str("appDisplayName"), Some("Graph Explorer"));
    assert_eq!(
        alice.str("userId"),
        Some("d7cc485d-2c1b-422c-98fd-5ce52859a4a3")
    );

    let bob = &out.records[1];
    assert_eq!(bob.str("Operation"), Some("UserLoginFailed"));
    assert_eq!(bob.str("ResultStatus"), Some("Failure"));
    assert_eq!(
        bob.str("Reason"),
        Some("Error validating credentials due to invalid username or password.")
    );
    assert_eq!(bob.str("ErrorNumber"), Some("50126"));
    assert_eq!(bob.str("ClientIPAddress"), Some("2001:db8::7"));
    // No sessionId: the correlation id stands in; an empty token id is no token id.
    assert_eq!(
        bob.str("SessionId"),
        Some("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
    );
    assert!(bob.event.get("TokenId").is_none());
    assert_eq!(bob.time, Some(BASE - 687 * SECOND + 500_000));
}

#[test]
fn entra_azure_monitor_records() {
    let out = read("entra-azure-monitor.json", Format::Auto);
    assert_eq!(out.lines(), vec![1, 2]);
    assert_eq!(out.bad_lines(), vec![3]);
    assert!(
        out.bad[0].reason.contains("AuditLogs"),
        "{}",
        out.bad[0].reason
    );

    let alice = &out.records[0];
    assert_eq!(alice.str("Operation"), Some("UserLoggedIn"));
    assert_eq!(alice.str("ResultStatus"), Some("Success"));
    assert_eq!(alice.time, Some(BASE - 672 * SECOND + 123_456));
    assert_eq!(alice.str("OrganizationId"), Some(TENANT));
    assert_eq!(
        alice.str("SessionId"),
        Some("a8f6e2d1-4c3b-4a5e-9f8d-7c6b5a4e3d2c")
    );
    assert_eq!(alice.str("TokenId"), Some("Zm9vYmFyYmF6cXV4"));
    assert_eq!(alice.str("ClientInfoString"), Some("Mozilla/5.0"));
    // `properties` is flattened; its resourceId (the resource app) wins over the ARM path.
    assert!(alice.event.get("properties").is_none());
    assert_eq!(
        alice.str("resourceId"),
        Some("00000002-0000-0ff1-ce00-000000000000")
    );
    assert_eq!(alice.str("appDisplayName"), Some("Microsoft Office"));
    assert_eq!(alice.str("category"), Some("SignInLogs"));

    let bob = &out.records[1];
    assert_eq!(bob.str("Operation"), Some("UserLoginFailed"));
    assert_eq!(bob.str("ResultStatus"), Some("Failure"));
    assert_eq!(
        bob.str("Reason"),
        Some("Invalid username or password or Invalid on-premise username or password.")
    );
    assert_eq!(bob.str("ClientIPAddress"), Some("198.51.100.66"));
    assert_eq!(
        bob.str("SessionId"),
        Some("66666666-7777-4888-8999-000000000000")
    );
    assert_eq!(bob.str("category"), Some("NonInteractiveUserSignInLogs"));
}

#[test]
fn entra_json_lines_and_bare_arrays() {
    let lines = concat!(
        "{\"time\":\"2023-06-15T10:11:12Z\",\"category\":\"SignInLogs\",\"resultType\":\"0\",\"callerIpAddress\":\"192.0.2.1\",\"properties\":{\"userPrincipalName\":\"a@contoso.com\",\"status\":{\"errorCode\":0}}}\n",
        "{\"id\":\"x\",\"createdDateTime\":\"2023-06-15T10:11:13Z\",\"userPrincipalName\":\"b@contoso.com\",\"status\":{\"errorCode\":50053,\"failureReason\":\"Account is locked.\"}}\n",
        "{\"records\":[{\"time\":\"2023-06-15T10:11:14Z\",\"category\":\"SignInLogs\",\"resultType\":\"50126\",\"properties\":{}}]}\n",
    );
    let out = read_text(lines, Format::Auto);
    assert_eq!(out.format, Format::Entra);
    assert!(out.bad.is_empty(), "{:?}", out.bad);
    assert_eq!(out.lines(), vec![1, 2, 3]);
    assert_eq!(out.records[0].str("UserId"), Some("a@contoso.com"));
    assert_eq!(out.records[0].time, Some(BASE));
    assert_eq!(out.records[1].str("Reason"), Some("Account is locked."));
    assert_eq!(out.records[2].str("Operation"), Some("UserLoginFailed"));

    let array = "[{\"id\":\"1\",\"createdDateTime\":\"2023-06-15T10:11:12Z\",\"status\":{\"errorCode\":0}}]";
    let out = read_text(array, Format::Auto);
    assert_eq!(out.format, Format::Entra);
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.records[0].str("Operation"), Some("UserLoggedIn"));
}

#[test]
fn broken_documents_keep_records_read_before() {
    let text = std::fs::read_to_string(fixture("entra-graph.json")).unwrap();
    let cut = text.find("\"b01b1a2c").unwrap() + 20;
    let out = read_text(&text[..cut], Format::Auto);
    assert_eq!(out.format, Format::Entra);
    assert_eq!(out.lines(), vec![1]);
    assert_eq!(out.bad_lines(), vec![2]);
    assert!(out.bad[0].reason.contains("invalid JSON"));
}

#[test]
fn hostile_inputs_never_stop_a_read() {
    let long = format!("{{\"Operation\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let text = format!(
        "{{\"Operation\":\"Send\"}}\n{long}\n{deep}\n\u{0}\u{0}\n{{\"Operation\":\"Send\",\"CreationTime\":\"2023-02-30T00:00:00\"}}\nnull\n"
    );
    let out = read_text(&text, Format::Ual);
    assert_eq!(out.lines(), vec![1, 5]);
    assert_eq!(out.bad_lines(), vec![2, 3, 6]);
    // An invalid date is kept as it is, without a time.
    assert_eq!(out.records[1].time, None);
    assert_eq!(
        out.records[1].str("CreationTime"),
        Some("2023-02-30T00:00:00")
    );

    let empty = read_text("", Format::Auto);
    assert_eq!(empty.stats, ImportStats::default());
    let blank = read_text(" \n\n\t\n", Format::Auto);
    assert!(blank.records.is_empty() && blank.bad.is_empty());
}

#[test]
fn missing_files_are_errors() {
    let result = read_path(
        &fixture("no-such-file.json"),
        Format::Auto,
        &mut |_| {},
        &mut |_| {},
        &mut |_| {},
    );
    let Err(ImportError::Io { input, error }) = result else {
        panic!("expected an I/O error");
    };
    assert!(input.ends_with("no-such-file.json"));
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn normalise_is_public() {
    use keyscope_detect::import::normalise;
    let object = serde_json::json!({
        "CreationTime": "2023-06-15T10:11:12",
        "Operation": "MailItemsAccessed",
        "ClientIPAddress": "1.2.3.4:80",
        "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}]
    });
    let event = normalise(Format::Ual, object.as_object().cloned().unwrap()).unwrap();
    assert_eq!(event["MailAccessType"], "Bind");
    assert_eq!(event["ClientIPAddress"], "1.2.3.4");
}
