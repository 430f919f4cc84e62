//! The blast radius of a signing key, from the audit log: every token issued or accepted
//! with it, every mailbox item read with those tokens (joined by `jti`), every refused
//! attempt, grouped by tenant, user, app and source address, with first and last use.
//!
//! Pure aggregation: the caller streams records in log order (the binary reads the log and
//! skips, by a byte search, records that cannot concern the key).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{Map, Value, json};

/// Most message ids listed per mailbox group (the count is exact).
const MAX_ITEMS_LISTED: usize = 1000;

/// How the log writes a token id member (compact serde_json output).
const TOKEN_MEMBER: &[u8] = b"\"TokenId\":\"";

/// The incident report under construction.
#[derive(Debug, Clone)]
pub struct IncidentReport {
    kid: String,
    kid_finder: memchr::memmem::Finder<'static>,
    token_finder: memchr::memmem::Finder<'static>,
    since: Option<i64>,
    /// The key's own lifecycle records (created, activated, retired, revoked).
    lifecycle: Vec<Value>,
    key_realm: Option<String>,
    issued: BTreeMap<Group, Usage>,
    accepted: BTreeMap<Group, Usage>,
    refused: BTreeMap<(String, String, String), Usage>,
    /// Token ids accepted with the key: mailbox access with them is the attacker's reach.
    tokens: HashSet<String>,
    /// The same token ids by tenant, to count distinct tokens (not requests) per tenant.
    tokens_by_tenant: BTreeMap<String, HashSet<String>>,
    mail: BTreeMap<MailGroup, MailUsage>,
    sent: BTreeMap<Group, Usage>,
    records_seen: u64,
}

/// (tenant, user, app, ip).
type Group = (String, String, String, String);
/// (tenant, mailbox, app, ip, access type).
type MailGroup = (String, String, String, String, String);

#[derive(Debug, Clone, Default)]
struct Usage {
    count: u64,
    first: Option<i64>,
    last: Option<i64>,
    seqs: Vec<u64>,
}

#[derive(Debug, Clone, Default)]
struct MailUsage {
    usage: Usage,
    operations: u64,
    folders: BTreeSet<String>,
    items: BTreeSet<String>,
    item_count: u64,
}

impl Usage {
    fn add(&mut self, time: Option<i64>, seq: Option<u64>) {
        self.count += 1;
        if let Some(t) = time {
            self.first = Some(self.first.map_or(t, |f| f.min(t)));
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
        }
        if let Some(seq) = seq
            && self.seqs.len() < 100
        {
            self.seqs.push(seq);
        }
    }
}

fn text(event: &Value, field: &str) -> String {
    event
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_owned()
}

fn time_json(t: Option<i64>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(keyscope_audit::event::format_time(t))
    })
}

impl IncidentReport {
    /// A report on key `kid`, counting records from `since` (micros) on.
    pub fn new(kid: &str, since: Option<i64>) -> IncidentReport {
        IncidentReport {
            kid: kid.to_owned(),
            kid_finder: memchr::memmem::Finder::new(kid.as_bytes()).into_owned(),
            token_finder: memchr::memmem::Finder::new(TOKEN_MEMBER).into_owned(),
            since,
            lifecycle: Vec::new(),
            key_realm: None,
            issued: BTreeMap::new(),
            accepted: BTreeMap::new(),
            refused: BTreeMap::new(),
            tokens: HashSet::new(),
            tokens_by_tenant: BTreeMap::new(),
            mail: BTreeMap::new(),
            sent: BTreeMap::new(),
            records_seen: 0,
        }
    }

    /// True when a raw record could matter to this report (the binary's byte pre-filter):
    /// it names the key, or it is a mail record that may carry one of the key's tokens.
    pub fn may_concern(&self, raw: &[u8]) -> bool {
        if self.kid_finder.find(raw).is_some() {
            return true;
        }
        if self.tokens.is_empty() {
            return false;
        }
        // A mail record matters only if it carries one of the key's token ids: read the
        // `"TokenId":"…"` values from the bytes rather than parsing every record.
        let mut rest = raw;
        while let Some(at) = self.token_finder.find(rest) {
            let value = rest.get(at + TOKEN_MEMBER.len()..).unwrap_or_default();
            let end = memchr::memchr(b'"', value).unwrap_or(value.len());
            let text = value.get(..end).unwrap_or_default();
            // An escaped value cannot be compared as bytes: parse the record.
            if text.contains(&b'\\') {
                return true;
            }
            if std::str::from_utf8(text).is_ok_and(|t| self.tokens.contains(t)) {
                return true;
            }
            rest = value.get(end..).unwrap_or_default();
        }
        false
    }

    /// Adds one record (in log order) with its time and seq.
    pub fn add(&mut self, event: &Value, time: Option<i64>, seq: Option<u64>) {
        self.records_seen += 1;
        let operation = event.get("Operation").and_then(Value::as_str).unwrap_or("");
        let names_key = event.get("KeyId").and_then(Value::as_str) == Some(self.kid.as_str());
        if names_key && operation.starts_with("Key") {
            // The key's history is shown whatever --since says.
            if self.key_realm.is_none() {
                self.key_realm = event
                    .get("OrganizationId")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            let mut entry = Map::new();
            for field in [
                "Operation",
                "CreationTime",
                "OrganizationId",
                "Reason",
                "KeyState",
            ] {
                if let Some(v) = event.get(field) {
                    entry.insert(field.to_owned(), v.clone());
                }
            }
            if let Some(seq) = seq {
                entry.insert("seq".into(), json!(seq));
            }
            self.lifecycle.push(Value::Object(entry));
            return;
        }
        if self.since.is_some_and(|s| time.is_some_and(|t| t < s)) {
            // Still learn which tokens belong to the key, so later mail access joins.
            if names_key
                && operation == "TokenValidated"
                && event.get("ResultStatus").and_then(Value::as_str) == Some("Success")
                && let Some(jti) = event.get("TokenId").and_then(Value::as_str)
            {
                self.tokens.insert(jti.to_owned());
            }
            return;
        }
        let group = || {
            (
                text(event, "OrganizationId"),
                text(event, "UserId"),
                text(event, "AppId"),
                text(event, "ClientIPAddress"),
            )
        };
        match operation {
            "TokenIssued" if names_key => self.issued.entry(group()).or_default().add(time, seq),
            "TokenValidated" if names_key => {
                let accepted = event.get("ResultStatus").and_then(Value::as_str) == Some("Success");
                if accepted {
                    if let Some(jti) = event.get("TokenId").and_then(Value::as_str) {
                        self.tokens.insert(jti.to_owned());
                        self.tokens_by_tenant
                            .entry(text(event, "OrganizationId"))
                            .or_default()
                            .insert(jti.to_owned());
                    }
                    self.accepted.entry(group()).or_default().add(time, seq);
                } else {
                    let key = (
                        text(event, "OrganizationId"),
                        text(event, "ClientIPAddress"),
                        text(event, "Reason"),
                    );
                    self.refused.entry(key).or_default().add(time, seq);
                }
            }
            "MailItemsAccessed" => {
                let Some(jti) = event.get("TokenId").and_then(Value::as_str) else {
                    return;
                };
                if !self.tokens.contains(jti) {
                    return;
                }
                let key = (
                    text(event, "OrganizationId"),
                    text(event, "MailboxOwnerUPN"),
                    text(event, "AppId"),
                    text(event, "ClientIPAddress"),
                    text(event, "MailAccessType"),
                );
                let usage = self.mail.entry(key).or_default();
                usage.usage.add(time, seq);
                usage.operations += event
                    .get("OperationCount")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                for folder in event
                    .get("Folders")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(path) = folder.get("Path").and_then(Value::as_str) {
                        usage.folders.insert(path.to_owned());
                    }
                    for item in folder
                        .get("FolderItems")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(id) = item.get("InternetMessageId").and_then(Value::as_str) {
                            usage.item_count += 1;
                            if usage.items.len() < MAX_ITEMS_LISTED {
                                usage.items.insert(id.to_owned());
                            }
                        }
                    }
                }
            }
            "Send" => {
                let joined = event
                    .get("TokenId")
                    .and_then(Value::as_str)
                    .is_some_and(|j| self.tokens.contains(j));
                if joined {
                    self.sent.entry(group()).or_default().add(time, seq);
                }
            }
            _ => {}
        }
    }

    /// The tenants the report concerns: the key's own realm and every tenant with a token,
    /// a refused attempt or a mailbox access involving the key.
    pub fn tenants(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = BTreeSet::new();
        all.extend(self.key_realm.iter().cloned());
        all.extend(self.issued.keys().map(|g| g.0.clone()));
        all.extend(self.accepted.keys().map(|g| g.0.clone()));
        all.extend(self.refused.keys().map(|g| g.0.clone()));
        all.extend(self.mail.keys().map(|g| g.0.clone()));
        all.extend(self.sent.keys().map(|g| g.0.clone()));
        all.remove("-");
        all.into_iter().collect()
    }

    /// The whole report as JSON.
    pub fn to_json(&self) -> Value {
        self.render(None)
    }

    /// The part of the report that concerns one tenant (for its notice).
    pub fn for_tenant(&self, tenant: &str) -> Value {
        self.render(Some(tenant))
    }

    fn render(&self, only: Option<&str>) -> Value {
        let keep = |t: &str| only.is_none_or(|o| o == t);
        let usage_json = |u: &Usage| {
            json!({"count": u.count, "first": time_json(u.first), "last": time_json(u.last),
                   "seqs": u.seqs})
        };
        let groups = |map: &BTreeMap<Group, Usage>| -> (u64, Vec<Value>) {
            let mut total = 0;
            let rows = map
                .iter()
                .filter(|(g, _)| keep(&g.0))
                .map(|((tenant, user, app, ip), u)| {
                    total += u.count;
                    let mut row = usage_json(u);
                    if let Some(obj) = row.as_object_mut() {
                        obj.insert("tenant".into(), json!(tenant));
                        obj.insert("user".into(), json!(user));
                        obj.insert("app".into(), json!(app));
                        obj.insert("ip".into(), json!(ip));
                    }
                    row
                })
                .collect();
            (total, rows)
        };
        let (issued_n, issued) = groups(&self.issued);
        let (accepted_n, accepted) = groups(&self.accepted);
        let accepted_tokens: usize = self
            .tokens_by_tenant
            .iter()
            .filter(|(tenant, _)| keep(tenant))
            .map(|(_, tokens)| tokens.len())
            .sum();
        let (sent_n, sent) = groups(&self.sent);
        let mut refused_n = 0;
        let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
        let refused: Vec<Value> = self
            .refused
            .iter()
            .filter(|(k, _)| keep(&k.0))
            .map(|((tenant, ip, reason), u)| {
                refused_n += u.count;
                *by_reason.entry(reason.clone()).or_default() += u.count;
                let mut row = usage_json(u);
                if let Some(obj) = row.as_object_mut() {
                    obj.insert("tenant".into(), json!(tenant));
                    obj.insert("ip".into(), json!(ip));
                    obj.insert("reason".into(), json!(reason));
                }
                row
            })
            .collect();
        let mut operations = 0;
        let mut mailboxes = BTreeSet::new();
        let mail: Vec<Value> = self
            .mail
            .iter()
            .filter(|(k, _)| keep(&k.0))
            .map(|((tenant, mailbox, app, ip, access), m)| {
                operations += m.operations;
                mailboxes.insert(mailbox.clone());
                let mut row = usage_json(&m.usage);
                if let Some(obj) = row.as_object_mut() {
                    obj.insert("tenant".into(), json!(tenant));
                    obj.insert("mailbox".into(), json!(mailbox));
                    obj.insert("app".into(), json!(app));
                    obj.insert("ip".into(), json!(ip));
                    obj.insert("access_type".into(), json!(access));
                    obj.insert("operations".into(), json!(m.operations));
                    obj.insert("folders".into(), json!(m.folders));
                    obj.insert("item_count".into(), json!(m.item_count));
                    obj.insert("items".into(), json!(m.items));
                }
                row
            })
            .collect();
        let uses = self
            .accepted
            .iter()
            .filter(|(g, _)| keep(&g.0))
            .map(|(_, u)| u)
            .chain(
                self.issued
                    .iter()
                    .filter(|(g, _)| keep(&g.0))
                    .map(|(_, u)| u),
            );
        let (mut first, mut last) = (None::<i64>, None::<i64>);
        for u in uses {
            if let Some(f) = u.first {
                first = Some(first.map_or(f, |x| x.min(f)));
            }
            if let Some(l) = u.last {
                last = Some(last.map_or(l, |x| x.max(l)));
            }
        }
        json!({
            "kid": self.kid,
            "key_realm": self.key_realm,
            "tenant": only,
            "since": time_json(self.since),
            "key_lifecycle": if only.is_none() || only == self.key_realm.as_deref() {
                json!(self.lifecycle)
            } else {
                json!([])
            },
            "tokens_issued": {"count": issued_n, "groups": issued},
            // `count` is distinct tokens; `requests` is every accepted presentation.
            "tokens_accepted": {"count": accepted_tokens, "requests": accepted_n, "groups": accepted},
            "refused_attempts": {"count": refused_n, "by_reason": by_reason, "groups": refused},
            "mail_accessed": {"operations": operations, "mailboxes": mailboxes, "groups": mail},
            "mail_sent": {"count": sent_n, "groups": sent},
            "first_use": time_json(first),
            "last_use": time_json(last),
            "tenants": if only.is_some() { json!([only]) } else { json!(self.tenants()) },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn add(report: &mut IncidentReport, seq: u64, event: Value) {
        let time = event
            .get("CreationTime")
            .and_then(Value::as_str)
            .and_then(keyscope_audit::event::parse_time);
        let raw = event.to_string();
        if report.may_concern(raw.as_bytes()) {
            report.add(&event, time, Some(seq));
        }
    }

    #[test]
    fn mail_access_joins_by_token_id_and_tenants_are_separated() {
        let mut report = IncidentReport::new("k1", None);
        let t = |s: u32| format!("2026-11-22T10:00:{s:02}Z");
        add(
            &mut report,
            1,
            json!({"Operation":"KeyActivated","KeyId":"k1","OrganizationId":"consumers","CreationTime":t(0)}),
        );
        add(
            &mut report,
            2,
            json!({"Operation":"TokenIssued","KeyId":"k1","TokenId":"j1","OrganizationId":"consumers","UserId":"u","AppId":"a","CreationTime":t(1)}),
        );
        add(
            &mut report,
            3,
            json!({"Operation":"TokenValidated","KeyId":"k1","TokenId":"j1","ResultStatus":"Success","OrganizationId":"consumers","UserId":"u","AppId":"a","ClientIPAddress":"192.0.2.1","CreationTime":t(2)}),
        );
        add(
            &mut report,
            4,
            json!({"Operation":"MailItemsAccessed","KeyId":"k1","TokenId":"j1","OrganizationId":"consumers","MailboxOwnerUPN":"u@x","MailAccessType":"Bind","OperationCount":2,
            "Folders":[{"Path":"Inbox","FolderItems":[{"InternetMessageId":"<m1@x>"},{"InternetMessageId":"<m2@x>"}]}],"CreationTime":t(3)}),
        );
        // Another token's access is not counted, even in the same mailbox.
        add(
            &mut report,
            5,
            json!({"Operation":"MailItemsAccessed","TokenId":"j2","OrganizationId":"consumers","MailboxOwnerUPN":"u@x","MailAccessType":"Bind","CreationTime":t(4)}),
        );
        add(
            &mut report,
            6,
            json!({"Operation":"TokenValidated","KeyId":"k1","TokenId":"forged","ResultStatus":"Failure","Reason":"key_issuer_mismatch","OrganizationId":"contoso","ClientIPAddress":"203.0.113.9","CreationTime":t(5)}),
        );
        // The same token presented again: one token, two accepted requests.
        add(
            &mut report,
            7,
            json!({"Operation":"TokenValidated","KeyId":"k1","TokenId":"j1","ResultStatus":"Success","OrganizationId":"consumers","UserId":"u","AppId":"a","ClientIPAddress":"192.0.2.1","CreationTime":t(6)}),
        );
        let all = report.to_json();
        assert_eq!(all["tokens_accepted"]["count"], 1);
        assert_eq!(all["tokens_accepted"]["requests"], 2);
        assert_eq!(all["tokens_issued"]["count"], 1);
        assert_eq!(all["mail_accessed"]["operations"], 2);
        assert_eq!(
            all["mail_accessed"]["groups"][0]["items"],
            json!(["<m1@x>", "<m2@x>"])
        );
        assert_eq!(
            all["refused_attempts"]["by_reason"]["key_issuer_mismatch"],
            1
        );
        assert_eq!(all["first_use"], "2026-11-22T10:00:01.000000Z");
        assert_eq!(all["last_use"], "2026-11-22T10:00:06.000000Z");
        assert_eq!(report.tenants(), vec!["consumers", "contoso"]);
        let contoso = report.for_tenant("contoso");
        assert_eq!(contoso["tokens_accepted"]["count"], 0);
        assert_eq!(contoso["mail_accessed"]["operations"], 0);
        assert_eq!(contoso["refused_attempts"]["count"], 1);
        assert_eq!(contoso["key_lifecycle"], json!([]));
    }
}
