//! Live detection inside `keyscope up`: every record the audit log commits goes through the
//! rules within milliseconds; what they find becomes an `Alert` record in the same log and a
//! line in the configured sinks (a JSON lines file, a webhook), de-duplicated.
//!
//! The detector runs on its own thread, fed by the log's subscription. On start it replays
//! the log as it stands (state only: ledger, key book, baselines), so a restart neither
//! forgets baselines nor re-raises old alerts.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyscope_audit::AuditLog;
use keyscope_detect::{Detector, Finding, Origin, Record, RuleSet};
use serde_json::{Map, Value, json};

/// How often the clock-driven checks (key age) run.
const TICK: Duration = Duration::from_secs(60);
/// Webhook attempts per alert.
const WEBHOOK_ATTEMPTS: u32 = 3;
/// At most this many alerts of one rule per de-duplication window. The entity of a forgery
/// alert includes claims the attacker chose (`sub`, `tid`): without a cap, a holder of a
/// stolen key could raise one alert (and webhook call) per invented user. Past the cap one
/// "alert storm" alert says so; every refusal is still in the audit log.
const MAX_ALERTS_PER_RULE: u32 = 50;

/// Where alerts go besides the audit log.
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    /// Appended one JSON line per alert.
    pub file: Option<PathBuf>,
    /// POSTed one JSON object per alert.
    pub webhook: Option<String>,
    /// Alerts with the same rule and entity within this window are suppressed (counted).
    pub dedup: Duration,
}

/// Counters for /metrics and tests.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Records evaluated.
    pub records: AtomicU64,
    /// Alerts raised (written to the log).
    pub alerts: AtomicU64,
    /// Alerts suppressed as duplicates.
    pub suppressed: AtomicU64,
}

/// Starts live detection over `log`. `runtime` runs the webhook deliveries.
pub fn spawn(
    log: Arc<AuditLog>,
    rules: RuleSet,
    sinks: Sinks,
    runtime: tokio::runtime::Handle,
) -> anyhow::Result<Arc<LiveStats>> {
    let mut detector = Detector::new(rules).map_err(|e| anyhow::anyhow!(e))?;
    let stats = Arc::new(LiveStats::default());
    let thread_stats = Arc::clone(&stats);
    // Subscribe first, then note where the log stands: records after that come through the
    // subscription; the ones before are replayed for state.
    let feed = log.subscribe();
    let start = log.committed_seq();
    std::thread::Builder::new()
        .name("keyscope-detect".to_owned())
        .spawn(move || {
            warm_up(&log, &mut detector, start);
            let mut alerts = Alerts {
                log,
                sinks,
                runtime,
                last: HashMap::new(),
                per_rule: HashMap::new(),
                stats: thread_stats,
                client: None,
            };
            let mut last_tick = Instant::now();
            loop {
                match feed.recv_timeout(Duration::from_secs(1)) {
                    Ok(batch) => {
                        for line in batch.split(|b| *b == b'\n') {
                            let Some(record) = record_of(line) else {
                                continue;
                            };
                            if record.origin.seq.is_some_and(|s| s <= start) {
                                continue;
                            }
                            alerts.stats.records.fetch_add(1, Ordering::Relaxed);
                            for finding in detector.process(&record) {
                                alerts.raise(&finding);
                            }
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
                for finding in detector.flush(keyscope_audit::event::now_micros()) {
                    alerts.raise(&finding);
                }
                if last_tick.elapsed() >= TICK {
                    last_tick = Instant::now();
                    for finding in detector.tick(keyscope_audit::event::now_micros()) {
                        alerts.raise(&finding);
                    }
                }
            }
        })?;
    Ok(stats)
}

/// Replays the log up to `start` for state; findings are dropped (they were the previous
/// run's to raise).
fn warm_up(log: &AuditLog, detector: &mut Detector, start: u64) {
    let started = Instant::now();
    let mut replayed = 0u64;
    let result = keyscope_audit::read_raw_records(log.dir(), |seq, line| {
        if seq > start {
            return false;
        }
        if let Some(record) = record_of(line) {
            replayed += 1;
            drop(detector.process(&record));
        }
        true
    });
    match result {
        Ok(()) => tracing::info!(
            records = replayed,
            seconds = started.elapsed().as_secs_f64(),
            rules = detector.rules().len(),
            "live detection is watching the audit log"
        ),
        Err(e) => {
            tracing::error!(error = %e, "live detection could not replay the audit log; baselines start empty")
        }
    }
}

/// A log line as a record.
fn record_of(line: &[u8]) -> Option<Record> {
    if line.is_empty() {
        return None;
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(line) else {
        return None;
    };
    let seq = map.get("seq").and_then(Value::as_u64)?;
    Some(Record::new(
        map,
        Origin {
            source: Arc::from("audit log"),
            line: seq,
            seq: Some(seq),
        },
    ))
}

struct Alerts {
    log: Arc<AuditLog>,
    sinks: Sinks,
    runtime: tokio::runtime::Handle,
    /// (rule, entity) → when last raised.
    last: HashMap<String, Instant>,
    /// rule → (window start, alerts raised in it, whether the storm alert went out).
    per_rule: HashMap<String, (Instant, u32, bool)>,
    stats: Arc<LiveStats>,
    client: Option<reqwest::Client>,
}

impl Alerts {
    fn raise(&mut self, finding: &Finding) {
        let key = format!("{}\u{0}{:?}", finding.rule_id, finding.entity);
        if self
            .last
            .get(&key)
            .is_some_and(|at| at.elapsed() < self.sinks.dedup)
        {
            self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.last.len() > 100_000 {
            let window = self.sinks.dedup;
            self.last.retain(|_, at| at.elapsed() < window);
        }
        self.last.insert(key, Instant::now());
        let now = Instant::now();
        let window = self.sinks.dedup;
        let budget = self
            .per_rule
            .entry(finding.rule_id.clone())
            .or_insert((now, 0, false));
        if now.duration_since(budget.0) >= window {
            *budget = (now, 0, false);
        }
        if budget.1 >= MAX_ALERTS_PER_RULE {
            self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
            if !budget.2 {
                budget.2 = true;
                let storm = storm_finding(finding, window);
                self.deliver(&storm);
            }
            return;
        }
        budget.1 += 1;
        self.deliver(finding);
    }

    /// Records one alert and sends it to the sinks.
    fn deliver(&mut self, finding: &Finding) {
        let event = alert_event(finding);
        let seq = match self.log.append(event) {
            Ok(seq) => seq,
            Err(e) => {
                tracing::error!(error = %e, rule = %finding.rule_id, "could not record an alert");
                return;
            }
        };
        self.stats.alerts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(rule = %finding.rule_id, severity = %finding.level,
            tenant = finding.tenant.as_deref().unwrap_or("-"),
            ip = finding.ip.as_deref().unwrap_or("-"), seq, "alert: {}", finding.title);
        let mut line = finding.to_json();
        if let Some(obj) = line.as_object_mut() {
            obj.insert("alert_seq".into(), json!(seq));
        }
        if let Some(path) = &self.sinks.file {
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| {
                    f.write_all(format!("{line}\n").as_bytes())?;
                    f.sync_data()
                });
            if let Err(e) = written {
                tracing::error!(error = %e, path = %path.display(), "could not write the alert file");
            }
        }
        if let Some(url) = self.sinks.webhook.clone() {
            let client = match &self.client {
                Some(c) => c.clone(),
                None => match reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                {
                    Ok(c) => {
                        self.client = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "no HTTP client for the alert webhook");
                        return;
                    }
                },
            };
            let body = line.to_string();
            self.runtime.spawn(async move {
                let mut pause = Duration::from_millis(500);
                for attempt in 1..=WEBHOOK_ATTEMPTS {
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => return,
                        Ok(r) => tracing::warn!(
                            status = r.status().as_u16(),
                            attempt,
                            "alert webhook refused"
                        ),
                        // Without the URL: its query may hold a secret.
                        Err(e) => tracing::warn!(error = %e.without_url(), attempt, "alert webhook failed"),
                    }
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                tracing::error!(
                    url = %crate::config::mask(&crate::config::ALERT_WEBHOOK, &url),
                    "alert webhook gave up"
                );
            });
        }
    }
}

/// The alert that says a rule is raising more alerts than the cap allows.
fn storm_finding(finding: &Finding, window: Duration) -> Finding {
    let mut storm = finding.clone();
    storm.title = format!("Alert storm: {}", finding.title);
    storm.summary = format!(
        "{MAX_ALERTS_PER_RULE} alerts of {} within {} s: further ones are suppressed for the \
         rest of the window (each event is still in the audit log; hunt it with `keyscope \
         audit search` or `keyscope hunt`)",
        finding.rule_id,
        window.as_secs()
    );
    storm.entity = vec![("RuleId".to_owned(), finding.rule_id.clone())];
    storm
}

/// The `Alert` audit record of a finding: rule id, severity, entities, the triggering
/// records' seqs.
fn alert_event(finding: &Finding) -> Map<String, Value> {
    let mut event = Map::new();
    let mut put = |k: &str, v: Value| {
        event.insert(k.to_owned(), v);
    };
    put("Operation", json!("Alert"));
    put(
        "CreationTime",
        json!(keyscope_audit::event::format_time(
            keyscope_audit::event::now_micros()
        )),
    );
    // `AlertId` names the rule, as the identity service's own key-age alarm does; `RuleId`
    // says so explicitly for readers who expect UAL's per-instance AlertId.
    put("AlertId", json!(finding.rule_id));
    put("RuleId", json!(finding.rule_id));
    put("Severity", json!(finding.level));
    put("Title", json!(finding.title));
    if !finding.summary.is_empty() {
        put("Summary", json!(finding.summary));
    }
    let entity: Map<String, Value> = finding
        .entity
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    for (field, value) in [
        ("OrganizationId", &finding.tenant),
        ("UserId", &finding.user),
        ("AppId", &finding.app),
        ("ClientIPAddress", &finding.ip),
    ] {
        if let Some(v) = value {
            put(field, json!(v));
        }
    }
    if let Some(kid) = entity.get("KeyId").cloned().or_else(|| {
        finding
            .records
            .last()
            .and_then(|e| e.event.get("KeyId").cloned())
    }) {
        put("KeyId", kid);
    }
    put("Entities", Value::Object(entity));
    put("TriggerSeqs", json!(finding.seqs()));
    put("RecordCount", json!(finding.record_count));
    put("ResultStatus", json!("Raised"));
    event
}
