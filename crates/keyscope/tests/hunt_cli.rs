#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! `keyscope hunt` through the real binary over every supported input format: the right rule
//! fires on the crafted records, benign files stay quiet, unparseable lines are listed with
//! their numbers and never stop the hunt, and the exit code says what happened.

mod common;

use common::*;
use serde_json::json;

const IOC_IP: &str = "51.89.156.153";

fn hunt(args: &[&str]) -> (i32, Vec<Value>, String) {
    let output = Command::new(BIN)
        .arg("hunt")
        .args(args)
        .env_remove("KEYSCOPE_RULES")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let findings = if args.contains(&"--json") {
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    } else {
        Vec::new()
    };
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (
        output.status.code().unwrap(),
        findings,
        if args.contains(&"--json") {
            stderr
        } else {
            stdout + &stderr
        },
    )
}

fn rules_of(findings: &[Value]) -> Vec<&str> {
    findings
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap())
        .collect()
}

fn ual_mail(time: &str, ip: &str, app: &str, user: &str) -> Value {
    json!({"CreationTime": time, "Id": "5c0e8a3a-0000-4000-8000-000000000001",
           "Operation": "MailItemsAccessed", "OrganizationId": "4a1b2c3d-0000-4000-8000-00000000c0de",
           "RecordType": 50, "ResultStatus": "Succeeded", "UserKey": "1003200000000001",
           "UserType": 0, "Version": 1, "Workload": "Exchange", "UserId": user,
           "AppId": app, "ClientAppId": app, "ClientIPAddress": ip,
           "ClientInfoString": "Client=OWA;Action=ViewAttachment", "ExternalAccess": false,
           "MailboxOwnerUPN": user, "OperationCount": 1,
           "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"},
                                    {"Name": "IsThrottled", "Value": "False"}],
           "Folders": [{"Path": "\\Inbox", "FolderItems": [{"InternetMessageId": "<a@b>"}]}]})
}

#[test]
fn every_format_is_hunted_with_the_built_in_pack() {
    let dir = TempDir::new("hunt");
    let path = |name: &str| dir.join(name);

    // UAL JSON lines: an IOC address with a port, a benign line, a broken line.
    let ual = path("ual.jsonl");
    fs::write(
        &ual,
        format!(
            "{}\n{}\nnot json at all\n\n{}\n",
            ual_mail(
                "2023-06-15T10:11:12",
                &format!("{IOC_IP}:51234"),
                "app-1",
                "alice@contoso.com"
            ),
            ual_mail(
                "2023-06-15T10:12:00",
                "198.51.100.7",
                "app-1",
                "bob@contoso.com"
            ),
            json!([1, 2]),
        ),
    )
    .unwrap();
    let (code, findings, stderr) = hunt(&["--json", s(&ual)]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(rules_of(&findings), vec!["ks-mail-ioc-ip"]);
    let f = &findings[0];
    assert_eq!(f["severity"], "high");
    assert_eq!(f["ip"], IOC_IP);
    assert_eq!(f["user"], "alice@contoso.com");
    assert_eq!(f["app"], "app-1");
    assert_eq!(f["tenant"], "4a1b2c3d-0000-4000-8000-00000000c0de");
    assert_eq!(f["time"], "2023-06-15T10:11:12.000000Z");
    assert_eq!(f["records"][0]["line"], 1);
    assert_eq!(f["records"][0]["source"], s(&ual));
    assert_eq!(f["records"][0]["event"]["MailAccessType"], "Bind");
    assert!(stderr.contains("2 unparseable line(s)"), "{stderr}");
    assert!(stderr.contains(&format!("{}:3:", s(&ual))), "{stderr}");
    assert!(stderr.contains(&format!("{}:5:", s(&ual))), "{stderr}");

    // The same records as a JSON array (element numbers), and as the portal's CSV export.
    let array = path("ual.json");
    fs::write(
        &array,
        json!([
            ual_mail(
                "2023-06-15T10:12:00",
                "198.51.100.7",
                "app-1",
                "bob@contoso.com"
            ),
            ual_mail("2023-06-15T10:11:12", IOC_IP, "app-1", "alice@contoso.com"),
        ])
        .to_string(),
    )
    .unwrap();
    let (code, findings, _) = hunt(&["--json", s(&array)]);
    assert_eq!((code, rules_of(&findings)), (1, vec!["ks-mail-ioc-ip"]));
    assert_eq!(findings[0]["records"][0]["line"], 2);

    let csv = path("export.csv");
    let audit_data = ual_mail("2023-06-15T10:11:12", IOC_IP, "app-1", "alice@contoso.com")
        .to_string()
        .replace('"', "\"\"");
    fs::write(
        &csv,
        format!(
            "RecordId,CreationDate,RecordType,Operation,UserId,AuditData\r\n\
             5c0e8a3a,2023-06-15T10:11:12.0000000Z,ExchangeItemAggregated,MailItemsAccessed,alice@contoso.com,\"{audit_data}\"\r\n\
             5c0e8a3b,2023-06-15T10:13:00.0000000Z,ExchangeItemAggregated,MailItemsAccessed,bob@contoso.com,\"{{broken\"\r\n"
        ),
    )
    .unwrap();
    let (code, findings, stderr) = hunt(&["--json", s(&csv)]);
    assert_eq!(
        (code, rules_of(&findings)),
        (1, vec!["ks-mail-ioc-ip"]),
        "{stderr}"
    );
    assert_eq!(findings[0]["records"][0]["line"], 2);
    assert!(stderr.contains(&format!("{}:3:", s(&csv))), "{stderr}");

    // Sentinel's OfficeActivity columns (ClientIP, TimeGenerated, OfficeTenantId).
    let sentinel = path("officeactivity.json");
    fs::write(
        &sentinel,
        json!([{"TimeGenerated": "2023-06-15T15:00:00.123Z", "Operation": "MailItemsAccessed",
                "OfficeWorkload": "Exchange", "UserId": "alice@contoso.com",
                "ClientIP": format!("{IOC_IP}:443"), "OfficeTenantId": "tenant-guid",
                "MailboxOwnerUPN": "alice@contoso.com",
                "OperationProperties": "[{\"Name\":\"MailAccessType\",\"Value\":\"Bind\"}]"}])
        .to_string(),
    )
    .unwrap();
    let (code, findings, _) = hunt(&["--json", s(&sentinel)]);
    assert_eq!((code, rules_of(&findings)), (1, vec!["ks-mail-ioc-ip"]));
    assert_eq!(findings[0]["tenant"], "tenant-guid");
    assert_eq!(findings[0]["records"][0]["event"]["MailAccessType"], "Bind");

    // Entra ID sign-ins: Graph and Azure Monitor envelopes.
    let graph = path("signins-graph.json");
    fs::write(
        &graph,
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns",
               "value": [
                 {"id": "1", "createdDateTime": "2023-06-15T09:00:00Z",
                  "userPrincipalName": "alice@contoso.com", "appId": "app-2",
                  "ipAddress": IOC_IP, "status": {"errorCode": 0}},
                 {"id": "2", "createdDateTime": "2023-06-15T09:05:00Z",
                  "userPrincipalName": "bob@contoso.com", "appId": "app-2",
                  "ipAddress": "198.51.100.9", "status": {"errorCode": 50126, "failureReason": "Invalid password"}}]})
        .to_string(),
    )
    .unwrap();
    let monitor = path("signins-monitor.json");
    fs::write(
        &monitor,
        json!({"records": [{"time": "2023-06-15T09:00:00Z", "tenantId": "tenant-guid",
               "operationName": "Sign-in activity", "category": "SignInLogs",
               "resultType": "0", "callerIpAddress": IOC_IP,
               "properties": {"userPrincipalName": "carol@contoso.com", "appId": "app-3"}}]})
        .to_string(),
    )
    .unwrap();
    let (code, findings, stderr) = hunt(&["--json", s(&graph), s(&monitor)]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        rules_of(&findings),
        vec!["ks-mail-ioc-ip", "ks-mail-ioc-ip"]
    );
    assert_eq!(findings[0]["user"], "alice@contoso.com");
    assert_eq!(findings[1]["user"], "carol@contoso.com");
    assert_eq!(findings[1]["tenant"], "tenant-guid");
    assert!(stderr.contains("read as entra"), "{stderr}");

    // Keyscope's own export: the forgery, with its seq.
    let export = path("keyscope.jsonl");
    fs::write(
        &export,
        json!({"seq": 41, "CreationTime": "2026-11-22T10:00:00.000000Z",
               "Operation": "TokenValidated", "OrganizationId": "contoso",
               "KeyId": "consumers-1", "TokenId": "f1", "ResultStatus": "Failure",
               "Reason": "key_issuer_mismatch", "ClientIPAddress": "203.0.113.5"})
        .to_string()
            + "\n",
    )
    .unwrap();
    let (code, findings, _) = hunt(&["--json", s(&export)]);
    assert_eq!(
        (code, rules_of(&findings)),
        (1, vec!["ks-token-key-issuer-mismatch"])
    );
    assert_eq!(findings[0]["records"][0]["seq"], 41);
    assert_eq!(findings[0]["severity"], "critical");

    // AA23-193A: eight days of the usual mail client, then an app id never seen for the
    // mailbox, from PowerShell-stringified property bags.
    let bags = path("bags.jsonl");
    let mut lines = String::new();
    for day in 1..=8 {
        let mut record = ual_mail(
            &format!("2023-06-{day:02}T08:00:00"),
            "198.51.100.7",
            "outlook",
            "alice@contoso.com",
        );
        record["OperationProperties"] = json!(["@{Name=MailAccessType; Value=Sync}"]);
        lines.push_str(&record.to_string());
        lines.push('\n');
    }
    let mut odd = ual_mail(
        "2023-06-09T03:00:00",
        "198.51.100.7",
        "d3590ed6-52b3-4102-aeff-aad2292ab01c",
        "alice@contoso.com",
    );
    odd["OperationProperties"] = json!(["@{Name=MailAccessType; Value=Bind}"]);
    lines.push_str(&odd.to_string());
    lines.push('\n');
    fs::write(&bags, lines).unwrap();
    let (code, findings, _) = hunt(&["--json", "--format", "ual", s(&bags)]);
    assert_eq!((code, rules_of(&findings)), (1, vec!["ks-mail-new-app"]));
    assert_eq!(findings[0]["records"][0]["line"], 9);
    assert_eq!(findings[0]["records"][0]["event"]["MailAccessType"], "Bind");

    // Benign input: exit 0, an empty table with its header.
    let benign = path("benign.jsonl");
    fs::write(
        &benign,
        ual_mail(
            "2023-06-15T10:12:00",
            "198.51.100.7",
            "app-1",
            "bob@contoso.com",
        )
        .to_string()
            + "\n",
    )
    .unwrap();
    let (code, _, text) = hunt(&[s(&benign)]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("0 finding(s)"), "{text}");
    // The table on findings.
    let (code, _, text) = hunt(&[s(&ual)]);
    assert_eq!(code, 1);
    assert!(text.starts_with("TIME"), "{text}");
    assert!(text.contains("ks-mail-ioc-ip"), "{text}");

    // A missing file is an error (exit 2) that does not stop the others.
    let (code, findings, stderr) = hunt(&["--json", s(&path("missing.jsonl")), s(&ual)]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(rules_of(&findings), vec!["ks-mail-ioc-ip"]);
    assert!(stderr.contains("missing.jsonl"), "{stderr}");
}

#[test]
fn a_rule_directory_that_does_not_load_is_refused_loudly() {
    let dir = TempDir::new("hunt-rules");
    let rules = dir.join("rules");
    fs::create_dir_all(&rules).unwrap();
    fs::write(
        rules.join("good.yml"),
        "title: Any sign-in\nid: my-1\nlogsource: {product: m365}\nlevel: low\n\
         detection:\n  sel:\n    Operation: UserLoggedIn\n  condition: sel\n",
    )
    .unwrap();
    fs::write(
        rules.join("bad.yml"),
        "title: Broken\nid: my-2\nlogsource: {product: m365}\n\
         detection:\n  sel:\n    Operation|nosuchmodifier: X\n  condition: sel\n",
    )
    .unwrap();
    let input = dir.join("in.jsonl");
    fs::write(
        &input,
        "{\"Operation\":\"UserLoggedIn\",\"CreationTime\":\"2023-06-15T10:00:00\"}\n",
    )
    .unwrap();
    let (code, findings, stderr) = hunt(&["--json", "--rules", s(&rules), s(&input)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(findings.is_empty());
    assert!(stderr.contains("bad.yml"), "{stderr}");
    // Without the broken file the custom rule replaces the pack.
    fs::remove_file(rules.join("bad.yml")).unwrap();
    let (code, findings, stderr) = hunt(&["--json", "--rules", s(&rules), s(&input)]);
    assert_eq!((code, rules_of(&findings)), (1, vec!["my-1"]), "{stderr}");
    assert!(stderr.contains("with 1 rules"), "{stderr}");
}
