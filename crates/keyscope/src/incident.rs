//! `keyscope incident report --kid KID`: the blast radius of a signing key, from the audit
//! log; with `--notify`, a signed notice to every affected tenant (its webhook, else its
//! administrators' mailboxes), each delivery itself audited.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use keyscope_detect::IncidentReport;
use keyscope_identity::{Event, RequestContext};
use serde_json::{Value, json};

use crate::identity::{Place, admin};
use crate::input::print_json;

/// The media type of a notice's JWS (`typ` header).
pub const NOTICE_TYP: &str = "keyscope-incident-notice+jws";
/// Webhook attempts per tenant, and the first pause between them (doubling).
const WEBHOOK_ATTEMPTS: u32 = 4;
const WEBHOOK_FIRST_PAUSE: Duration = Duration::from_millis(500);
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Incidents.
#[derive(Subcommand, Debug)]
pub enum IncidentCommand {
    /// The blast radius of a signing key, from the audit log.
    Report(ReportArgs),
}

/// `keyscope incident report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The key (kid) to report on.
    #[arg(long, value_name = "KID")]
    kid: String,
    /// Only use after this time (RFC 3339 UTC or YYYY-MM-DD); the key's lifecycle is always shown.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Send each affected tenant its part of the report, signed with the audit key: to its
    /// webhook (`keyscope tenant webhook`), else into its administrators' mailboxes.
    #[arg(long)]
    notify: bool,
    #[command(flatten)]
    place: Place,
}

pub fn run(command: IncidentCommand) -> anyhow::Result<ExitCode> {
    let IncidentCommand::Report(args) = command;
    let kid = args.kid.trim();
    if kid.is_empty() || kid.len() > 256 || kid.chars().any(char::is_control) {
        bail!("--kid must be a key id (1–256 printable characters)");
    }
    let since =
        match &args.since {
            None => None,
            Some(text) => Some(keyscope_audit::export::parse_time_bound(text).with_context(
                || format!("invalid --since {text:?}: use RFC 3339 UTC or YYYY-MM-DD"),
            )?),
        };
    let location = crate::config::Location::resolve(&args.place)?;
    let audit_dir = keyscope_audit::audit_dir(&location.data_dir.value);
    let started = Instant::now();
    let (report, scanned) = build_report(&audit_dir, kid, since)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut output = report.to_json();
    if let Some(obj) = output.as_object_mut() {
        obj.insert("records_scanned".into(), json!(scanned));
        obj.insert("seconds".into(), json!(seconds));
    }
    let deliveries = if args.notify {
        notify(&args.place, &audit_dir, &report)?
    } else {
        Vec::new()
    };
    if args.json {
        if let Some(obj) = output.as_object_mut()
            && args.notify
        {
            obj.insert("notices".into(), json!(deliveries));
        }
        print_json(&output);
    } else {
        crate::input::out!("{}", human_report(&output));
        for d in &deliveries {
            crate::input::outln!(
                "notice to {}: {} via {} ({})",
                at(d, "/tenant").as_str().unwrap_or("-"),
                if at(d, "/delivered").as_bool() == Some(true) {
                    "delivered"
                } else {
                    "NOT delivered"
                },
                at(d, "/channel").as_str().unwrap_or("-"),
                at(d, "/detail").as_str().unwrap_or("")
            );
        }
        eprintln!("{scanned} audit records scanned in {seconds:.2} s");
    }
    let undelivered = deliveries
        .iter()
        .any(|d| at(d, "/delivered").as_bool() != Some(true));
    Ok(if undelivered {
        ExitCode::from(crate::EXIT_NEGATIVE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads the log once: records that cannot concern the key are skipped by a byte search
/// before any JSON is parsed.
pub fn build_report(
    audit_dir: &Path,
    kid: &str,
    since: Option<i64>,
) -> anyhow::Result<(IncidentReport, u64)> {
    let mut report = IncidentReport::new(kid, since);
    let mut scanned = 0u64;
    keyscope_audit::read_raw_records(audit_dir, |seq, line| {
        scanned += 1;
        if report.may_concern(line)
            && let Ok(event) = serde_json::from_slice::<Value>(line)
        {
            let time = event
                .get("CreationTime")
                .and_then(Value::as_str)
                .and_then(keyscope_audit::event::parse_time);
            report.add(&event, time, Some(seq));
        }
        true
    })
    .with_context(|| format!("cannot read the audit log in {}", audit_dir.display()))?;
    Ok((report, scanned))
}

fn human_report(report: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    out.push_str(&format!(
        "Incident report for key {} (realm {})\n",
        s(at(report, "/kid")),
        s(at(report, "/key_realm"))
    ));
    for step in at(report, "/key_lifecycle")
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push_str(&format!(
            "  {}  {}{}\n",
            s(at(step, "/CreationTime")),
            s(at(step, "/Operation")),
            at(step, "/Reason")
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    out.push_str(&format!(
        "first use: {}   last use: {}\n",
        s(at(report, "/first_use")),
        s(at(report, "/last_use"))
    ));
    let section = |out: &mut String, title: &str, part: &Value, columns: &[&str]| {
        let count = at(part, "/count")
            .as_u64()
            .or_else(|| at(part, "/operations").as_u64())
            .unwrap_or(0);
        match at(part, "/requests").as_u64() {
            Some(requests) => out.push_str(&format!(
                "\n{title}: {count} (presented in {requests} accepted request(s); COUNT below is requests)\n"
            )),
            None => out.push_str(&format!("\n{title}: {count}\n")),
        }
        let rows: Vec<Vec<String>> = at(part, "/groups")
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                columns
                    .iter()
                    .map(|c| match g.get(*c).unwrap_or(&Value::Null) {
                        Value::String(t) => keyscope_audit::export::printable_cell(t),
                        Value::Null => "-".to_owned(),
                        Value::Array(a) => a.len().to_string(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect();
        if !rows.is_empty() {
            let upper: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
            let header: Vec<&str> = upper.iter().map(String::as_str).collect();
            for line in keyscope_audit::export::format_columns(&header, &rows).lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
    };
    let token_columns = ["tenant", "user", "app", "ip", "count", "first", "last"];
    section(
        &mut out,
        "Tokens issued with the key",
        at(report, "/tokens_issued"),
        &token_columns,
    );
    section(
        &mut out,
        "Tokens accepted with the key",
        at(report, "/tokens_accepted"),
        &token_columns,
    );
    section(
        &mut out,
        "Mailbox items accessed with those tokens",
        at(report, "/mail_accessed"),
        &[
            "tenant",
            "mailbox",
            "app",
            "ip",
            "access_type",
            "operations",
            "item_count",
            "first",
            "last",
        ],
    );
    section(
        &mut out,
        "Mail sent with those tokens",
        at(report, "/mail_sent"),
        &token_columns,
    );
    section(
        &mut out,
        "Refused attempts with the key",
        at(report, "/refused_attempts"),
        &["tenant", "ip", "reason", "count", "first", "last"],
    );
    out.push_str(&format!(
        "\nTenants concerned: {}\n",
        at(report, "/tenants")
            .as_array()
            .map(|t| t.iter().map(s).collect::<Vec<_>>().join(", "))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "none".into())
    ));
    out
}

/// Builds, signs and delivers each affected tenant's notice. One JSON object per tenant
/// describes the delivery.
fn notify(place: &Place, audit_dir: &Path, report: &IncidentReport) -> anyhow::Result<Vec<Value>> {
    let tenants = report.tenants();
    let mut notices = Vec::new();
    for tenant in &tenants {
        let notice = json!({
            "type": "keyscope.incident-notice",
            "version": 1,
            "notice_id": keyscope_identity::random_id(16),
            "issued_at": keyscope_audit::event::format_time(keyscope_audit::event::now_micros()),
            "tenant": tenant,
            "summary": summary_line(&report.for_tenant(tenant)),
            "report": report.for_tenant(tenant),
        });
        let payload = notice.to_string();
        let jws = keyscope_audit::sign_statement(audit_dir, NOTICE_TYP, payload.as_bytes())
            .context("cannot sign the notice with the audit key")?;
        notices.push((tenant.clone(), notice, jws));
    }
    admin(place, async |identity| {
        let store = identity.store();
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("HTTP client")?;
        let mut results = Vec::new();
        for (tenant, notice, jws) in &notices {
            let webhook = store.notify_webhook(tenant).await.unwrap_or(None);
            let (channel, delivered, detail) = match &webhook {
                Some(url) => {
                    let body = json!({"notice": notice, "jws": jws});
                    match post_with_retries(&client, url, &body).await {
                        Ok(attempts) => ("webhook", true, format!("{url}, attempt {attempts}")),
                        Err(why) => ("webhook", false, format!("{url}: {why}")),
                    }
                }
                None => match deliver_to_admins(store, tenant, notice, jws).await {
                    Ok(addresses) if !addresses.is_empty() => {
                        ("mailbox", true, addresses.join(", "))
                    }
                    Ok(_) => (
                        "none",
                        false,
                        "no webhook and no administrators (keyscope tenant webhook, keyscope user add --admin)".to_owned(),
                    ),
                    Err(e) => ("mailbox", false, format!("{e:#}")),
                },
            };
            let event = Event::new("AdminAction")
                .with("AdminOperation", Some("TenantNotified"))
                .with("OrganizationId", Some(tenant))
                .with("KeyId", Some(report_kid(notice)))
                .with("NoticeId", at(notice, "/notice_id").as_str())
                .with("Channel", Some(channel))
                .with("UserId", Some("operator"))
                .with(
                    "ResultStatus",
                    Some(if delivered { "Success" } else { "Failure" }),
                )
                .context(&RequestContext::operator());
            identity.audit().record(event.into_map()).await?;
            results.push(json!({
                "tenant": tenant, "notice_id": at(notice, "/notice_id"), "channel": channel,
                "delivered": delivered, "detail": detail,
            }));
        }
        Ok(results)
    })
}

fn report_kid(notice: &Value) -> &str {
    at(notice, "/report/kid").as_str().unwrap_or("-")
}

fn summary_line(part: &Value) -> String {
    format!(
        "Signing key {} was compromised or suspected. For your tenant: {} token(s) accepted with it, {} mailbox operation(s) with those tokens, {} refused attempt(s).",
        at(part, "/kid").as_str().unwrap_or("-"),
        at(part, "/tokens_accepted/count").as_u64().unwrap_or(0),
        at(part, "/mail_accessed/operations").as_u64().unwrap_or(0),
        at(part, "/refused_attempts/count").as_u64().unwrap_or(0),
    )
}

/// POSTs `body` until a 2xx answer, with doubling pauses; returns the attempt that worked.
async fn post_with_retries(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<u32, String> {
    let mut pause = WEBHOOK_FIRST_PAUSE;
    let mut last = String::new();
    for attempt in 1..=WEBHOOK_ATTEMPTS {
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("keyscope/", env!("CARGO_PKG_VERSION")),
            )
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => return Ok(attempt),
            Ok(response) => last = format!("HTTP {}", response.status().as_u16()),
            Err(e) => last = e.without_url().to_string(),
        }
        if attempt < WEBHOOK_ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    Err(format!("{last} after {WEBHOOK_ATTEMPTS} attempts"))
}

/// Files the notice into each administrator's Inbox: a readable summary and the signed
/// notice as an attachment. Returns the addresses.
async fn deliver_to_admins(
    store: &keyscope_store::Store,
    tenant: &str,
    notice: &Value,
    jws: &str,
) -> anyhow::Result<Vec<String>> {
    let admins = store.realm_admins(tenant).await?;
    let mut delivered = Vec::new();
    for username in admins {
        let raw = notice_message(tenant, &username, notice, jws);
        delivered.push(crate::mail::deliver_to_inbox(store, tenant, &username, &raw).await?);
    }
    Ok(delivered)
}

/// An RFC 5322 message carrying the notice.
fn notice_message(tenant: &str, username: &str, notice: &Value, jws: &str) -> Vec<u8> {
    let boundary = format!("ks-{}", keyscope_identity::random_id(12));
    let summary = at(notice, "/summary").as_str().unwrap_or_default();
    let pretty = serde_json::to_string_pretty(at(notice, "/report")).unwrap_or_default();
    let encoded = keyscope_jose::b64::encode_std(jws.as_bytes());
    let mut attachment = String::new();
    for chunk in encoded.as_bytes().chunks(76) {
        attachment.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        attachment.push_str("\r\n");
    }
    let date = rfc5322_now();
    let message_id = format!(
        "<notice-{}@keyscope.invalid>",
        at(notice, "/notice_id").as_str().unwrap_or("x")
    );
    let mut body = String::new();
    body.push_str(summary);
    body.push_str("\r\n\r\nThe attached notice.jws is signed with the Keyscope audit key (audit-key.jwk); its payload is the notice below.\r\n\r\n");
    for line in pretty.lines() {
        body.push_str(line);
        body.push_str("\r\n");
    }
    let encoded_body = keyscope_jose::b64::encode_std(body.as_bytes());
    let mut body_lines = String::new();
    for chunk in encoded_body.as_bytes().chunks(76) {
        body_lines.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        body_lines.push_str("\r\n");
    }
    format!(
        "From: Keyscope security <security@keyscope.invalid>\r\n\
         To: {username}\r\n\
         Subject: Keyscope incident notice for tenant {tenant}\r\n\
         Date: {date}\r\n\
         Message-ID: {message_id}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {body_lines}\
         --{boundary}\r\n\
         Content-Type: application/jose; name=\"notice.jws\"\r\n\
         Content-Disposition: attachment; filename=\"notice.jws\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {attachment}\
         --{boundary}--\r\n"
    )
    .into_bytes()
}

/// Now as an RFC 5322 date (`Sun, 22 Nov 2026 21:34:38 +0000`).
pub(crate) fn rfc5322_now() -> String {
    let micros = keyscope_audit::event::now_micros();
    let iso = keyscope_audit::event::format_time(micros);
    let days = micros.div_euclid(86_400_000_000);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = usize::try_from(days.rem_euclid(7))
        .ok()
        .and_then(|d| WEEKDAYS.get(d))
        .copied()
        .unwrap_or("Thu");
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {} {month} {} {} +0000",
        iso.get(8..10).unwrap_or("01"),
        iso.get(0..4).unwrap_or("1970"),
        iso.get(11..19).unwrap_or("00:00:00")
    )
}

/// The member at a JSON pointer, or null.
fn at<'a>(value: &'a Value, pointer: &str) -> &'a Value {
    value.pointer(pointer).unwrap_or(&Value::Null)
}
