//! Evaluating rules over a stream of records: the same code for live detection (one record
//! at a time, as the audit log appends them) and for hunts (records read from files).
//!
//! The Sigma part of every rule is compiled into one `rsigma_eval::Engine`; a rule with a
//! `keyscope:` block then passes its selected events to its stateful kind. Two pieces of
//! state are shared by all rules and fed by every record, selected or not: the issuance
//! ledger (`TokenIssued` token ids) and the key book (`KeyActivated`, `KeyRetired`,
//! `KeyRevoked`). Time is the records' own `CreationTime`, never the wall clock, so a hunt
//! over last month's log behaves as live detection did (or would have).

use std::collections::{HashMap, HashSet, VecDeque};

use rsigma_eval::{Engine as SigmaEngine, JsonEvent};
use serde_json::Value;

use crate::record::{Origin, Record};
use crate::rules::{Rule, RuleSet, Stateful};

/// At most this many triggering records are kept in one finding (the count is exact).
pub const MAX_EVIDENCE: usize = 20;

/// Bounds on per-rule state, so hostile input cannot exhaust memory: past these, the least
/// recently active entries are forgotten (counted in [`Detector::forgotten`]).
const MAX_GROUPS: usize = 1 << 20;
const MAX_VALUES_PER_ENTITY: usize = 256;
const MAX_LEDGER: usize = 1 << 23;
/// How often (in records) expired state is swept.
const SWEEP_EVERY: u64 = 1 << 16;

/// A record that contributed to a finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Where it came from.
    pub origin: Origin,
    /// The record itself.
    pub event: Value,
}

/// What a rule found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The rule's id.
    pub rule_id: String,
    /// The rule's title.
    pub title: String,
    /// `informational`, `low`, `medium`, `high` or `critical`.
    pub level: String,
    /// When (the last triggering record's time, or the clock for time-driven findings).
    pub time: Option<i64>,
    /// Tenant / realm (`OrganizationId`).
    pub tenant: Option<String>,
    /// User (`UserId`, else `MailboxOwnerUPN`).
    pub user: Option<String>,
    /// Application (`AppId`, else `ClientAppId`).
    pub app: Option<String>,
    /// Client address (`ClientIPAddress`).
    pub ip: Option<String>,
    /// The entity the finding is about, as (field, value) pairs: the group, the mailbox, the
    /// key. Alerts are de-duplicated on the rule id and this.
    pub entity: Vec<(String, String)>,
    /// One line saying what was seen.
    pub summary: String,
    /// The triggering records (at most [`MAX_EVIDENCE`], the latest ones).
    pub records: Vec<Evidence>,
    /// How many records triggered it.
    pub record_count: u64,
}

impl Finding {
    /// The finding as a JSON object (the alert sink's line).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or(Value::Null)
    }

    /// Writes the finding as one line of JSON (a hunt's `--json` output) without copying the
    /// records it carries.
    pub fn write_json_line(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, &self.view())?;
        out.write_all(b"\n")
    }

    fn view(&self) -> FindingView<'_> {
        FindingView {
            rule_id: &self.rule_id,
            title: &self.title,
            severity: &self.level,
            time: self.time.map(keyscope_audit::event::format_time),
            tenant: self.tenant.as_deref(),
            user: self.user.as_deref(),
            app: self.app.as_deref(),
            ip: self.ip.as_deref(),
            entity: EntityView(&self.entity),
            summary: &self.summary,
            record_count: self.record_count,
            records: self
                .records
                .iter()
                .map(|e| EvidenceView {
                    seq: e.origin.seq,
                    source: &e.origin.source,
                    line: e.origin.line,
                    event: &e.event,
                })
                .collect(),
        }
    }

    /// The audit log `seq`s of the triggering records (Keyscope's own records only).
    pub fn seqs(&self) -> Vec<u64> {
        self.records.iter().filter_map(|e| e.origin.seq).collect()
    }
}

/// A finding as it is written out (borrowed, so nothing is copied).
#[derive(serde::Serialize)]
struct FindingView<'a> {
    rule_id: &'a str,
    title: &'a str,
    severity: &'a str,
    time: Option<String>,
    tenant: Option<&'a str>,
    user: Option<&'a str>,
    app: Option<&'a str>,
    ip: Option<&'a str>,
    entity: EntityView<'a>,
    summary: &'a str,
    record_count: u64,
    records: Vec<EvidenceView<'a>>,
}

/// (field, value) pairs written as a JSON object.
struct EntityView<'a>(&'a [(String, String)]);

impl serde::Serialize for EntityView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(serde::Serialize)]
struct EvidenceView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    source: &'a str,
    line: u64,
    event: &'a Value,
}

/// Per-rule state of a stateful kind.
#[derive(Debug, Default)]
enum KindState {
    #[default]
    None,
    Threshold(HashMap<Vec<String>, VecDeque<(i64, Evidence)>>),
    FirstSeen(HashMap<Vec<String>, Watched>),
    Volume(HashMap<Vec<String>, Volume>),
    /// Keys already reported (one finding per key).
    KeyAge(HashSet<String>),
}

#[derive(Debug)]
struct Watched {
    first: i64,
    last: i64,
    /// Per watched field (in the rule's order): value → last seen.
    values: Vec<HashMap<String, i64>>,
}

/// Forgets the value seen longest ago, whichever field it belongs to.
fn forget_oldest_value(values: &mut [HashMap<String, i64>]) {
    let oldest = values
        .iter()
        .enumerate()
        .flat_map(|(slot, map)| map.iter().map(move |(v, t)| (*t, slot, v)))
        .min()
        .map(|(_, slot, v)| (slot, v.clone()));
    if let Some((slot, value)) = oldest
        && let Some(map) = values.get_mut(slot)
    {
        map.remove(&value);
    }
}

#[derive(Debug)]
struct Volume {
    first: i64,
    last: i64,
    /// (bucket number, volume), oldest first.
    buckets: VecDeque<(i64, u64)>,
    fired: Option<i64>,
}

#[derive(Debug, Default, Clone)]
struct KeyFacts {
    activated: Option<(i64, Option<Evidence>)>,
    ended: bool,
    revoked_at: Option<i64>,
    realm: Option<String>,
}

/// A rule set compiled for evaluation, with its state. One per stream: a live process keeps
/// one for its whole life; a hunt makes one per run.
pub struct Detector {
    sigma: SigmaEngine,
    rules: Vec<Rule>,
    by_id: HashMap<String, usize>,
    state: Vec<KindState>,
    /// The latest record time seen (records without a time are placed at it).
    clock: i64,
    wants_ledger: bool,
    wants_keys: bool,
    /// Issued token id → issuance time.
    ledger: HashMap<String, i64>,
    ledger_retention: i64,
    keys: HashMap<String, KeyFacts>,
    /// (rule id, entity) pairs already alerted elsewhere (from `Alert` records).
    alerted: HashSet<(String, String)>,
    /// Accepted tokens not (yet) in the ledger, waiting out the rule's grace: token id →
    /// (deadline, finding). A `TokenIssued` for the id cancels it.
    pending: HashMap<String, (i64, Finding)>,
    /// (deadline, token id) in arrival order, to emit the pending findings that came due.
    pending_order: VecDeque<(i64, String)>,
    processed: u64,
    forgotten: u64,
}

impl Detector {
    /// Compiles a rule set. Fails only if the Sigma compiler refuses a rule that loading
    /// accepted (which loading is meant to prevent).
    pub fn new(set: RuleSet) -> Result<Detector, String> {
        let mut sigma = SigmaEngine::new();
        for rule in &set.rules {
            sigma
                .add_rule(&rule.sigma)
                .map_err(|e| format!("rule {}: {e}", rule.id))?;
        }
        let by_id = set
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        let state = set
            .rules
            .iter()
            .map(|r| match &r.stateful {
                None | Some(Stateful::NotIssued { .. } | Stateful::RevokedKey { .. }) => {
                    KindState::None
                }
                Some(Stateful::Threshold { .. }) => KindState::Threshold(HashMap::new()),
                Some(Stateful::FirstSeen { .. }) => KindState::FirstSeen(HashMap::new()),
                Some(Stateful::Volume { .. }) => KindState::Volume(HashMap::new()),
                Some(Stateful::KeyAge { .. }) => KindState::KeyAge(HashSet::new()),
            })
            .collect();
        let ledger_retention = set
            .rules
            .iter()
            .filter_map(|r| match &r.stateful {
                Some(Stateful::NotIssued { retention, .. }) => Some(retention.micros),
                _ => None,
            })
            .max();
        let wants_keys = set.rules.iter().any(|r| {
            matches!(
                r.stateful,
                Some(Stateful::RevokedKey { .. } | Stateful::KeyAge { .. })
            )
        });
        Ok(Detector {
            sigma,
            by_id,
            state,
            clock: i64::MIN,
            wants_ledger: ledger_retention.is_some(),
            wants_keys,
            ledger: HashMap::new(),
            ledger_retention: ledger_retention.unwrap_or(0),
            keys: HashMap::new(),
            alerted: HashSet::new(),
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            processed: 0,
            forgotten: 0,
            rules: set.rules,
        })
    }

    /// The rules, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Records processed so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// State entries dropped because a bound was reached (non-zero means some baselines are
    /// shorter than configured).
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Evaluates one record and returns what it raised.
    pub fn process(&mut self, record: &Record) -> Vec<Finding> {
        self.processed += 1;
        let time = record.time.unwrap_or(self.clock);
        if time > self.clock {
            self.clock = time;
        }
        if self.processed.is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
        let operation = record.str("Operation").unwrap_or_default();
        if operation == "Alert" {
            // Alerts are not evaluated (no feedback loop); they tell which keys are reported.
            let rule = record.str("RuleId").or_else(|| record.str("AlertId"));
            if let (Some(rule), Some(kid)) = (rule, record.str("KeyId")) {
                self.alerted.insert((rule.to_owned(), kid.to_owned()));
            }
            return Vec::new();
        }
        let mut findings = self.flush(time);
        let matches = self.sigma.evaluate(&JsonEvent::borrow(&record.event));
        for matched in matches {
            let Some(&index) = matched
                .header
                .rule_id
                .as_ref()
                .and_then(|id| self.by_id.get(id))
            else {
                continue;
            };
            if let Some(finding) = self.apply(index, record, time) {
                findings.push(finding);
            }
        }
        self.learn(record, operation, time);
        findings
    }

    /// Findings that were waiting for a grace period that has ended by `now` (accepted
    /// tokens whose issuance never showed up). Live detection calls this every second.
    pub fn flush(&mut self, now: i64) -> Vec<Finding> {
        let mut due = Vec::new();
        while let Some((deadline, _)) = self.pending_order.front() {
            if *deadline > now {
                break;
            }
            let Some((deadline, jti)) = self.pending_order.pop_front() else {
                break;
            };
            if self.pending.get(&jti).is_some_and(|(d, _)| *d == deadline)
                && let Some((_, finding)) = self.pending.remove(&jti)
            {
                due.push(finding);
            }
        }
        due
    }

    /// The end of a hunt's input: every finding still waiting is emitted. Those whose grace
    /// period had not ended by the input's last record are marked undecided (level medium):
    /// an export taken moments after a token was issued through the outbox can end before
    /// the `TokenIssued` record was appended.
    pub fn finish(&mut self) -> Vec<Finding> {
        let mut due = self.flush(self.clock);
        for mut finding in self.flush(i64::MAX) {
            finding.level = "medium".to_owned();
            finding.summary = format!(
                "undecided: the input ends within this token's grace period, so its issuance \
                 record may still have been on its way; hunt a later export to decide. {}",
                finding.summary
            );
            due.push(finding);
        }
        due
    }

    /// Time-driven findings (a key that ages past the policy without being used; accepted
    /// tokens whose grace ran out). Live detection calls this on a timer with the wall clock.
    pub fn tick(&mut self, now: i64) -> Vec<Finding> {
        let mut findings = self.flush(now);
        for index in 0..self.rules.len() {
            let Some(Rule {
                stateful: Some(Stateful::KeyAge { max_age, .. }),
                ..
            }) = self.rules.get(index)
            else {
                continue;
            };
            let max_age = max_age.micros;
            let overdue: Vec<(String, KeyFacts)> = self
                .keys
                .iter()
                .filter(|(_, k)| {
                    !k.ended
                        && k.activated
                            .as_ref()
                            .is_some_and(|(at, _)| now.saturating_sub(*at) > max_age)
                })
                .map(|(kid, k)| (kid.clone(), k.clone()))
                .collect();
            for (kid, facts) in overdue {
                if let Some(finding) = self.key_age_finding(index, &kid, &facts, now, None) {
                    findings.push(finding);
                }
            }
        }
        findings
    }

    /// Runs one selected record through rule `index`'s kind.
    fn apply(&mut self, index: usize, record: &Record, time: i64) -> Option<Finding> {
        let rule = self.rules.get(index)?;
        let evidence = || Evidence {
            origin: record.origin.clone(),
            event: record.event.clone(),
        };
        match rule.stateful.clone() {
            None => {
                let entity = default_entity(record);
                Some(self.finding(
                    index,
                    record,
                    time,
                    entity,
                    String::new(),
                    vec![evidence()],
                    1,
                ))
            }
            Some(Stateful::Threshold {
                group_by,
                count,
                window,
            }) => {
                let key = values_of(record, &group_by, true)?;
                let KindState::Threshold(groups) = self.state.get_mut(index)? else {
                    return None;
                };
                if !groups.contains_key(&key) && groups.len() >= MAX_GROUPS {
                    self.forgotten += 1;
                    return None;
                }
                let queue = groups.entry(key.clone()).or_default();
                while queue
                    .front()
                    .is_some_and(|(t, _)| *t < time.saturating_sub(window.micros))
                {
                    queue.pop_front();
                }
                queue.push_back((time, evidence()));
                if (queue.len() as u64) < count {
                    return None;
                }
                let fired: Vec<Evidence> = queue.drain(..).map(|(_, e)| e).collect();
                let n = fired.len() as u64;
                let kept = fired.into_iter().rev().take(MAX_EVIDENCE).rev().collect();
                let summary = format!("{n} matching events within {}", window.display());
                let entity = pairs(&group_by, &key);
                Some(self.finding(index, record, time, entity, summary, kept, n))
            }
            Some(Stateful::FirstSeen {
                entity,
                values,
                baseline,
            }) => {
                let key = values_of(record, &entity, false)?;
                let KindState::FirstSeen(entities) = self.state.get_mut(index)? else {
                    return None;
                };
                if !entities.contains_key(&key) && entities.len() >= MAX_GROUPS {
                    self.forgotten += 1;
                    return None;
                }
                let watched = entities.entry(key).or_insert_with(|| Watched {
                    first: time,
                    last: time,
                    values: vec![HashMap::new(); values.len()],
                });
                watched.last = watched.last.max(time);
                let learnt = time.saturating_sub(watched.first) >= baseline.micros;
                let mut new_values = Vec::new();
                for (slot, field) in values.iter().enumerate() {
                    let Some(value) = record.str(field).filter(|v| !v.is_empty()) else {
                        continue;
                    };
                    let held: usize = watched.values.iter().map(HashMap::len).sum();
                    let Some(seen) = watched.values.get_mut(slot) else {
                        continue;
                    };
                    // Looked up by &str: no allocation for a value already known.
                    match seen.get_mut(value) {
                        Some(last) => {
                            if time.saturating_sub(*last) > baseline.micros {
                                new_values.push(format!("{field}={value}"));
                            }
                            *last = (*last).max(time);
                        }
                        None => {
                            new_values.push(format!("{field}={value}"));
                            if held >= MAX_VALUES_PER_ENTITY {
                                forget_oldest_value(&mut watched.values);
                                self.forgotten += 1;
                            }
                            if let Some(seen) = watched.values.get_mut(slot) {
                                seen.insert(value.to_owned(), time);
                            }
                        }
                    }
                }
                if !learnt || new_values.is_empty() {
                    return None;
                }
                let summary = format!(
                    "{} not seen for this {} during the last {}",
                    new_values.join(", "),
                    entity.join("/"),
                    baseline.display()
                );
                let pairs = pairs(&entity, &values_of(record, &entity, false)?);
                Some(self.finding(index, record, time, pairs, summary, vec![evidence()], 1))
            }
            Some(Stateful::Volume {
                entity,
                sum,
                window,
                baseline,
                factor,
                minimum,
                learning,
            }) => {
                let key = values_of(record, &entity, false)?;
                let amount = match &sum {
                    Some(field) => number_of(record.event.get(field)).unwrap_or(1),
                    None => 1,
                };
                let KindState::Volume(entities) = self.state.get_mut(index)? else {
                    return None;
                };
                if !entities.contains_key(&key) && entities.len() >= MAX_GROUPS {
                    self.forgotten += 1;
                    return None;
                }
                let span = window.micros.max(1);
                let bucket = time.div_euclid(span);
                let history = (baseline.micros / span).max(1);
                let volume = entities.entry(key.clone()).or_insert_with(|| Volume {
                    first: time,
                    last: time,
                    buckets: VecDeque::new(),
                    fired: None,
                });
                volume.last = volume.last.max(time);
                while volume
                    .buckets
                    .front()
                    .is_some_and(|(b, _)| *b < bucket - history)
                {
                    volume.buckets.pop_front();
                }
                match volume.buckets.iter_mut().find(|(b, _)| *b == bucket) {
                    Some((_, v)) => *v = v.saturating_add(amount),
                    None => {
                        volume.buckets.push_back((bucket, amount));
                        volume.buckets.make_contiguous().sort_by_key(|(b, _)| *b);
                    }
                }
                let current = volume
                    .buckets
                    .iter()
                    .find(|(b, _)| *b == bucket)
                    .map_or(0, |(_, v)| *v);
                // The average over the buckets the entity has been watched for (at most the
                // baseline), counting quiet hours as zero.
                let watched_buckets = (bucket - volume.first.div_euclid(span)).clamp(1, history);
                let past: u64 = volume
                    .buckets
                    .iter()
                    .filter(|(b, _)| *b < bucket && *b >= bucket - watched_buckets)
                    .map(|(_, v)| *v)
                    .sum();
                let average = past as f64 / watched_buckets as f64;
                let learnt = time.saturating_sub(volume.first) >= learning.micros;
                if !learnt
                    || current < minimum
                    || (current as f64) < factor * average
                    || volume.fired == Some(bucket)
                {
                    return None;
                }
                volume.fired = Some(bucket);
                let summary = format!(
                    "{current} in the current {} against an average of {average:.1} per {} over {}",
                    window.display(),
                    window.display(),
                    baseline.display()
                );
                let pairs = pairs(&entity, &key);
                Some(self.finding(index, record, time, pairs, summary, vec![evidence()], 1))
            }
            Some(Stateful::NotIssued {
                field,
                retention,
                grace,
                verdict,
            }) => {
                let token = record.str(&field);
                let said = !verdict.is_empty()
                    && verdict
                        .iter()
                        .all(|(k, v)| record.str(k) == Some(v.as_str()));
                let issued = token
                    .and_then(|t| self.ledger.get(t))
                    .is_some_and(|at| *at <= time && time.saturating_sub(*at) <= retention.micros);
                if !said && issued {
                    return None;
                }
                let summary = match (said, token) {
                    (true, _) => "the validator found the token id absent from the ledger".into(),
                    (false, Some(t)) => format!("no TokenIssued record for token id {t}"),
                    (false, None) => format!("a token without {field}"),
                };
                let mut entity = default_entity(record);
                if let Some(t) = token {
                    entity.push((field.clone(), t.to_owned()));
                }
                let finding =
                    self.finding(index, record, time, entity, summary, vec![evidence()], 1);
                match token {
                    // Not yet in the ledger: wait for the issuance record up to the grace.
                    Some(t) if !said && self.pending.len() < MAX_GROUPS => {
                        let deadline = time.saturating_add(grace.micros);
                        match self.pending.get_mut(t) {
                            Some((_, waiting)) => {
                                waiting.record_count += 1;
                                if waiting.records.len() < MAX_EVIDENCE {
                                    waiting.records.extend(finding.records);
                                }
                            }
                            None => {
                                self.pending_order.push_back((deadline, t.to_owned()));
                                self.pending.insert(t.to_owned(), (deadline, finding));
                            }
                        }
                        None
                    }
                    _ => Some(finding),
                }
            }
            Some(Stateful::RevokedKey { field, verdict }) => {
                let kid = record.str(&field);
                let said = !verdict.is_empty()
                    && verdict
                        .iter()
                        .all(|(k, v)| record.str(k) == Some(v.as_str()));
                let revoked = kid
                    .and_then(|k| self.keys.get(k))
                    .and_then(|k| k.revoked_at)
                    .is_some_and(|at| at <= time);
                if !said && !revoked {
                    return None;
                }
                let summary = format!("token signed by revoked key {}", kid.unwrap_or("(no kid)"));
                let entity = default_entity(record);
                Some(self.finding(index, record, time, entity, summary, vec![evidence()], 1))
            }
            Some(Stateful::KeyAge { field, .. }) => {
                let kid = record.str(&field)?.to_owned();
                let facts = self.keys.get(&kid)?.clone();
                self.key_age_finding(index, &kid, &facts, time, Some(evidence()))
            }
        }
    }

    fn key_age_finding(
        &mut self,
        index: usize,
        kid: &str,
        facts: &KeyFacts,
        now: i64,
        used: Option<Evidence>,
    ) -> Option<Finding> {
        let rule = self.rules.get(index)?;
        let Some(Stateful::KeyAge { max_age, .. }) = &rule.stateful else {
            return None;
        };
        let (activated, activation) = facts.activated.clone()?;
        let age = now.saturating_sub(activated);
        if facts.ended || age <= max_age.micros {
            return None;
        }
        if self.alerted.contains(&(rule.id.clone(), kid.to_owned())) {
            return None;
        }
        let KindState::KeyAge(reported) = self.state.get_mut(index)? else {
            return None;
        };
        if !reported.insert(kid.to_owned()) {
            return None;
        }
        let summary = format!(
            "key {kid} active for {} h, policy {}",
            age / 3_600_000_000,
            max_age.display()
        );
        let records: Vec<Evidence> = activation.into_iter().chain(used).collect();
        let mut finding = Finding {
            rule_id: rule.id.clone(),
            title: rule.title.clone(),
            level: rule.level.clone(),
            time: Some(now),
            tenant: facts.realm.clone(),
            user: None,
            app: None,
            ip: None,
            entity: vec![("KeyId".into(), kid.to_owned())],
            summary,
            record_count: records.len() as u64,
            records,
        };
        if let Some(last) = finding.records.last() {
            let app = last.event.get("AppId").and_then(Value::as_str);
            finding.app = app.map(str::to_owned);
        }
        Some(finding)
    }

    #[allow(clippy::too_many_arguments)]
    fn finding(
        &self,
        index: usize,
        record: &Record,
        time: i64,
        entity: Vec<(String, String)>,
        summary: String,
        records: Vec<Evidence>,
        record_count: u64,
    ) -> Finding {
        let (rule_id, title, level) = self
            .rules
            .get(index)
            .map(|r| (r.id.clone(), r.title.clone(), r.level.clone()))
            .unwrap_or_default();
        let text = |field: &str| record.str(field).map(str::to_owned);
        Finding {
            rule_id,
            title,
            level,
            time: Some(time),
            tenant: text("OrganizationId"),
            user: text("UserId").or_else(|| text("MailboxOwnerUPN")),
            app: text("AppId").or_else(|| text("ClientAppId")),
            ip: text("ClientIPAddress"),
            entity,
            summary,
            records,
            record_count,
        }
    }

    /// Feeds the shared state (ledger, key book) from any record.
    fn learn(&mut self, record: &Record, operation: &str, time: i64) {
        match operation {
            "TokenIssued" if self.wants_ledger => {
                if let Some(jti) = record.str("TokenId") {
                    self.pending.remove(jti);
                    if self.ledger.len() >= MAX_LEDGER {
                        self.sweep_ledger();
                    }
                    if self.ledger.len() < MAX_LEDGER {
                        self.ledger.insert(jti.to_owned(), time);
                    } else {
                        self.forgotten += 1;
                    }
                }
            }
            "KeyCreated" | "KeyActivated" | "KeyRetired" | "KeyRevoked" if self.wants_keys => {
                let Some(kid) = record.str("KeyId") else {
                    return;
                };
                let facts = self.keys.entry(kid.to_owned()).or_default();
                if let Some(realm) = record.str("OrganizationId") {
                    facts.realm = Some(realm.to_owned());
                }
                let active_now = operation == "KeyActivated"
                    || (operation == "KeyCreated" && record.str("KeyState") == Some("active"));
                if active_now && facts.activated.is_none() {
                    facts.activated = Some((
                        time,
                        Some(Evidence {
                            origin: record.origin.clone(),
                            event: record.event.clone(),
                        }),
                    ));
                }
                if operation == "KeyRetired" {
                    facts.ended = true;
                }
                if operation == "KeyRevoked" {
                    facts.ended = true;
                    facts.revoked_at.get_or_insert(time);
                }
            }
            _ => {}
        }
    }

    /// Forgets state older than every window that could still need it.
    fn sweep(&mut self) {
        let now = self.clock;
        for (rule, state) in self.rules.iter().zip(self.state.iter_mut()) {
            match (&rule.stateful, state) {
                (Some(Stateful::Threshold { window, .. }), KindState::Threshold(groups)) => {
                    let horizon = now.saturating_sub(window.micros);
                    groups.retain(|_, q| q.back().is_some_and(|(t, _)| *t >= horizon));
                }
                (Some(Stateful::FirstSeen { baseline, .. }), KindState::FirstSeen(entities)) => {
                    let horizon = now.saturating_sub(baseline.micros);
                    for watched in entities.values_mut() {
                        for seen in &mut watched.values {
                            seen.retain(|_, t| *t >= horizon);
                        }
                    }
                    // An entity idle for a whole baseline starts again as new: nothing of its
                    // history is still inside the window anyway.
                    entities.retain(|_, w| w.last >= horizon);
                }
                (Some(Stateful::Volume { baseline, .. }), KindState::Volume(entities)) => {
                    let horizon = now.saturating_sub(baseline.micros);
                    entities.retain(|_, v| v.last >= horizon);
                }
                _ => {}
            }
        }
        self.sweep_ledger();
    }

    fn sweep_ledger(&mut self) {
        let horizon = self.clock.saturating_sub(self.ledger_retention);
        let before = self.ledger.len();
        self.ledger.retain(|_, t| *t >= horizon);
        if self.ledger.len() >= MAX_LEDGER {
            // Still full of live entries: drop the oldest half.
            let mut times: Vec<i64> = self.ledger.values().copied().collect();
            times.sort_unstable();
            let cut = times.get(times.len() / 2).copied().unwrap_or(i64::MAX);
            self.ledger.retain(|_, t| *t > cut);
            self.forgotten += (before - self.ledger.len()) as u64;
        }
    }
}

/// The values of `fields` in `record`: missing ones are `-` when `allow_missing`, else the
/// record has no entity (None).
fn values_of(record: &Record, fields: &[String], allow_missing: bool) -> Option<Vec<String>> {
    fields
        .iter()
        .map(|f| match record.str(f).filter(|v| !v.is_empty()) {
            Some(v) => Some(v.to_owned()),
            None if allow_missing => Some("-".to_owned()),
            None => None,
        })
        .collect()
}

fn pairs(fields: &[String], values: &[String]) -> Vec<(String, String)> {
    fields.iter().cloned().zip(values.iter().cloned()).collect()
}

/// The entity of a finding without a stateful kind: who and where (realm, key, address,
/// user), so repeated attempts from one place are one alert after de-duplication.
fn default_entity(record: &Record) -> Vec<(String, String)> {
    ["OrganizationId", "KeyId", "ClientIPAddress", "UserId"]
        .iter()
        .filter_map(|f| record.str(f).map(|v| ((*f).to_owned(), v.to_owned())))
        .collect()
}

/// A count that may be a JSON number or a numeric string (UAL exports have both).
fn number_of(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}
