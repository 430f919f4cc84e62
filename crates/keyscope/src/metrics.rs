//! `GET /metrics`: Prometheus text exposition of the running service.
//!
//! Three sources: a middleware counting every HTTP request (by method, route template and
//! status, with a duration histogram); a thread subscribed to the audit log counting what
//! the services record (token decisions by result and reason, issuance, sign-ins, mailbox
//! reads, alerts); and, at scrape time, the store's signing keys (their ages) and the audit
//! writer's own figures (append latency, batches, fsyncs). Every label set is bounded: routes
//! are templates, other label values are checked against a strict shape (else `other`), and
//! each family has a cap. docs/metrics.md lists every metric.
//!
//! Access: with a metrics token configured, a scrape must present it as a Bearer token (401
//! otherwise); without one, only loopback clients are served (403 otherwise).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyscope_audit::AuditLog;
use keyscope_identity::Identity;
use keyscope_metrics::{Buckets, Counter, Family, Gauge, Histogram, Registry, text};
use serde::Deserialize;
use zeroize::Zeroizing;

/// Largest number of signing keys given their own age series in one scrape.
const KEY_SERIES_CAP: usize = 1000;

/// Adds `GET /metrics` and request counting to the service's router.
pub(crate) fn install(
    app: axum::Router,
    identity: Arc<Identity>,
    log: Option<Arc<AuditLog>>,
    token: Option<Zeroizing<String>>,
    live: Option<Arc<crate::live::LiveStats>>,
) -> anyhow::Result<axum::Router> {
    let metrics = Arc::new(Metrics::new().context("defining the metrics")?);
    if let Some(log) = &log {
        spawn_tally(log, Arc::clone(&metrics)).context("starting the metrics thread")?;
    }
    let token = match token {
        Some(token) if token.trim().is_empty() => {
            anyhow::bail!("metrics_token is empty: set a long random value, or remove it")
        }
        Some(token) => Some(digest(token.as_bytes())),
        None => None,
    };
    let scrape = Arc::new(Scrape {
        metrics: Arc::clone(&metrics),
        identity,
        log,
        token,
        live,
    });
    let route = axum::Router::new()
        .route("/metrics", axum::routing::get(serve_metrics))
        .with_state(scrape);
    Ok(app
        .merge(route)
        .layer(axum::middleware::from_fn_with_state(metrics, count_request)))
}

/// The families updated as things happen.
struct Metrics {
    registry: Registry,
    requests: Arc<Family<Counter>>,
    request_duration: Arc<Family<Histogram>>,
    token_decisions: Arc<Family<Counter>>,
    tokens_issued: Arc<Family<Counter>>,
    sign_ins: Arc<Family<Counter>>,
    mail_access: Arc<Family<Counter>>,
    alerts: Arc<Family<Counter>>,
    audit_records: Arc<Family<Counter>>,
}

impl Metrics {
    fn new() -> Result<Metrics, keyscope_metrics::MetricsError> {
        let registry = Registry::new("keyscope_metrics_refused_total")?;
        Ok(Metrics {
            requests: registry.counter(
                "keyscope_http_requests_total",
                "HTTP requests answered, by method, route template (or \"unmatched\") and status.",
                &["method", "route", "status"],
                1024,
            )?,
            request_duration: registry.histogram(
                "keyscope_http_request_duration_seconds",
                "Time from receiving a request to its response head, by method and route template.",
                &["method", "route"],
                256,
                Buckets::latency(),
            )?,
            token_decisions: registry.counter(
                "keyscope_token_decisions_total",
                "Bearer tokens checked (TokenValidated records), by result and refusal reason.",
                &["result", "reason"],
                256,
            )?,
            tokens_issued: registry.counter(
                "keyscope_tokens_issued_total",
                "Token requests recorded (TokenIssued records), by result, grant type and refusal reason.",
                &["result", "grant_type", "reason"],
                256,
            )?,
            sign_ins: registry.counter(
                "keyscope_sign_ins_total",
                "Sign-ins recorded (SignIn records), by result and reason.",
                &["result", "reason"],
                128,
            )?,
            mail_access: registry.counter(
                "keyscope_mail_items_accessed_total",
                "Mailbox reads recorded (MailItemsAccessed records), by access type (Bind, Sync).",
                &["access_type"],
                16,
            )?,
            alerts: registry.counter(
                "keyscope_alerts_total",
                "Alerts recorded (Alert records), by rule and severity.",
                &["rule", "severity"],
                512,
            )?,
            audit_records: registry.counter(
                "keyscope_audit_records_total",
                "Audit records committed since this process started, by Operation.",
                &["operation"],
                128,
            )?,
            registry,
        })
    }

    /// Counts one committed audit record line.
    fn tally(&self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        let Ok(record) = serde_json::from_slice::<Fields<'_>>(line) else {
            return;
        };
        let operation = record.operation.as_deref().unwrap_or_default();
        if !operation.is_empty() {
            self.audit_records
                .inc(&[label(operation, 64, is_name_char)]);
        }
        let result = label(record.result.as_deref().unwrap_or("none"), 32, is_word_char);
        let reason = reason_label(record.reason.as_deref());
        match operation {
            "TokenValidated" => {
                self.token_decisions.inc(&[result, reason]);
            }
            "TokenIssued" => {
                let grant = label(
                    record.grant_type.as_deref().unwrap_or("none"),
                    48,
                    is_code_char,
                );
                self.tokens_issued.inc(&[result, grant, reason]);
            }
            "SignIn" => {
                self.sign_ins.inc(&[result, reason]);
            }
            "MailItemsAccessed" => {
                let access = record.access_type.as_deref().unwrap_or("none");
                self.mail_access.inc(&[label(access, 16, is_word_char)]);
            }
            "Alert" => {
                let rule = record
                    .rule_id
                    .as_deref()
                    .or(record.alert_id.as_deref())
                    .unwrap_or("none");
                let severity = record.severity.as_deref().unwrap_or("none");
                self.alerts.inc(&[
                    label(rule, 128, |c| {
                        is_name_char(c) || matches!(c, '-' | '.' | '_' | ':')
                    }),
                    label(severity, 16, is_word_char),
                ]);
            }
            _ => {}
        }
    }
}

/// The few fields of a record the counters need; any other field is skipped unread. A field
/// of an unexpected type is treated as absent rather than losing the record.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "Operation", borrow, default)]
    operation: Text<'a>,
    #[serde(rename = "ResultStatus", borrow, default)]
    result: Text<'a>,
    #[serde(rename = "Reason", borrow, default)]
    reason: Text<'a>,
    #[serde(rename = "GrantType", borrow, default)]
    grant_type: Text<'a>,
    #[serde(rename = "MailAccessType", borrow, default)]
    access_type: Text<'a>,
    #[serde(rename = "RuleId", borrow, default)]
    rule_id: Text<'a>,
    #[serde(rename = "AlertId", borrow, default)]
    alert_id: Text<'a>,
    #[serde(rename = "Severity", borrow, default)]
    severity: Text<'a>,
}

/// A string field, borrowed from the line when it has no escapes.
#[derive(Default)]
struct Text<'a>(Option<Cow<'a, str>>);

impl Text<'_> {
    fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_unit<E>(self) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Text<'de>, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Text<'de>, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Text(None))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_code_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | ':' | '.')
}

/// `value` as a label value if it has the expected shape (1 to `max` characters of `allowed`),
/// else `other`: free text never becomes a label.
fn label(value: &str, max: usize, allowed: impl Fn(char) -> bool) -> &str {
    if !value.is_empty() && value.len() <= max && value.chars().all(allowed) {
        value
    } else {
        "other"
    }
}

/// A reason code (`snake_case`, as `keyscope-trust` and RFC 6749 name them), `none` when
/// absent, `other` for anything else (free text such as a revocation's stated reason).
fn reason_label(reason: Option<&str>) -> &str {
    match reason {
        None => "none",
        Some(reason) => label(reason, 64, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
        }),
    }
}

/// Counts committed audit records on a thread of its own, fed by the log's subscription.
fn spawn_tally(log: &AuditLog, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let feed = log.subscribe();
    std::thread::Builder::new()
        .name("keyscope-metrics".to_owned())
        .spawn(move || {
            // Ends when the log closes (the subscription's sender is dropped).
            for batch in feed {
                for line in batch.split(|b| *b == b'\n') {
                    metrics.tally(line);
                }
            }
        })?;
    Ok(())
}

/// The method as a label: the standard ones by name, anything else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The request-counting middleware.
async fn count_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    metrics
        .requests
        .inc(&[method, route, response.status().as_str()]);
    metrics
        .request_duration
        .observe(&[method, route], started.elapsed().as_secs_f64());
    response
}

/// What a scrape reads.
struct Scrape {
    metrics: Arc<Metrics>,
    identity: Arc<Identity>,
    log: Option<Arc<AuditLog>>,
    /// SHA-256 of the metrics token, when one is configured.
    token: Option<[u8; 32]>,
    /// Live detection's own counters.
    live: Option<Arc<crate::live::LiveStats>>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Why a scrape is refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// A token is configured and was not presented correctly.
    Unauthorized,
    /// No token is configured and the client is not on this host.
    NotLoopback,
}

/// The access rule: with a token, the right `Authorization: Bearer` (compared in constant
/// time, as digests of equal length); without one, a loopback peer. An unknown peer is not
/// loopback.
fn authorize(
    token: Option<&[u8; 32]>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    match token {
        Some(expected) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
                .filter(|token| !token.is_empty())
                .ok_or(Refusal::Unauthorized)?;
            aws_lc_rs::constant_time::verify_slices_are_equal(
                &digest(presented.as_bytes()),
                expected,
            )
            .map_err(|_| Refusal::Unauthorized)
        }
        None => match peer {
            Some(peer) if peer.ip().to_canonical().is_loopback() => Ok(()),
            _ => Err(Refusal::NotLoopback),
        },
    }
}

async fn serve_metrics(State(scrape): State<Arc<Scrape>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    match authorize(scrape.token.as_ref(), peer, request.headers()) {
        Ok(()) => {}
        Err(Refusal::Unauthorized) => {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                "/metrics needs the metrics token: Authorization: Bearer <metrics_token>\n",
            )
                .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keyscope-metrics\""),
            );
            return response;
        }
        Err(Refusal::NotLoopback) => {
            return (
                StatusCode::FORBIDDEN,
                "/metrics is served only to clients on this host; set metrics_token to scrape it from elsewhere\n",
            )
                .into_response();
        }
    }
    let body = scrape.render().await;
    (
        [
            (header::CONTENT_TYPE, text::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

impl Scrape {
    async fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        text::write_header(
            &mut out,
            "keyscope_build_info",
            "The running Keyscope's version (always 1).",
            "gauge",
        );
        text::write_sample(
            &mut out,
            "keyscope_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        self.metrics.registry.render_into(&mut out);
        self.render_keys(&mut out).await;
        if let Some(log) = &self.log {
            render_audit(log, &mut out);
        }
        if let Some(live) = &self.live {
            render_live(live, &mut out);
        }
        out
    }

    /// Signing keys from the store, at scrape time.
    async fn render_keys(&self, out: &mut String) {
        let keys = match self.identity.store().keys().await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: the signing keys could not be read");
                text::write_header(
                    out,
                    "keyscope_signing_keys_readable",
                    "Whether the store's signing keys could be read for this scrape.",
                    "gauge",
                );
                text::write_sample(out, "keyscope_signing_keys_readable", &[], 0.0);
                return;
            }
        };
        let now = keyscope_identity::unix_now();
        let age = |since: i64| now.saturating_sub(since).max(0) as f64;
        let mut by_state: BTreeMap<&str, u64> =
            ["pending", "active", "retiring", "retired", "revoked"]
                .into_iter()
                .map(|s| (s, 0))
                .collect();
        let Ok(ages) = Family::<Gauge>::new(
            "keyscope_signing_key_age_seconds",
            "Seconds since each pending, active or retiring (published) signing key was created.",
            &["realm", "kid", "state"],
            KEY_SERIES_CAP,
        ) else {
            return;
        };
        let Ok(active) = Family::<Gauge>::new(
            "keyscope_realm_active_key_age_seconds",
            "Seconds since each realm's active signing key became active.",
            &["realm"],
            KEY_SERIES_CAP,
        ) else {
            return;
        };
        let mut oldest_active = 0f64;
        for key in &keys {
            let state = key.state.as_str();
            *by_state.entry(state).or_insert(0) += 1;
            if !key.state.is_published() {
                continue;
            }
            ages.set(&[&key.realm_id, &key.kid, state], age(key.created_at));
            if state == "active" {
                let since = age(key.activated_at.unwrap_or(key.created_at));
                active.set(&[&key.realm_id], since);
                oldest_active = oldest_active.max(since);
            }
        }
        text::write_header(
            out,
            "keyscope_signing_keys",
            "Signing keys in the store, by lifecycle state.",
            "gauge",
        );
        for (state, count) in &by_state {
            text::write_sample_u64(out, "keyscope_signing_keys", &[("state", state)], *count);
        }
        ages.render(out);
        active.render(out);
        text::write_header(
            out,
            "keyscope_signing_key_oldest_active_age_seconds",
            "The largest keyscope_realm_active_key_age_seconds: how overdue the slowest rotation is.",
            "gauge",
        );
        text::write_sample(
            out,
            "keyscope_signing_key_oldest_active_age_seconds",
            &[],
            oldest_active,
        );
        text::write_header(
            out,
            "keyscope_signing_key_series_omitted",
            "Published keys left out of keyscope_signing_key_age_seconds by its cap in this scrape.",
            "gauge",
        );
        text::write_sample_u64(
            out,
            "keyscope_signing_key_series_omitted",
            &[],
            ages.refused(),
        );
    }
}

/// Live detection's counters.
fn render_live(live: &crate::live::LiveStats, out: &mut String) {
    use std::sync::atomic::Ordering;
    let counters = [
        (
            "keyscope_detection_records_evaluated_total",
            "Audit records live detection has evaluated (including the replay at start).",
            live.records.load(Ordering::Relaxed),
        ),
        (
            "keyscope_alerts_suppressed_total",
            "Alerts not raised: duplicates within the de-duplication window, and alerts past a rule's cap per window.",
            live.suppressed.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        text::write_header(out, name, help, "counter");
        text::write_sample_u64(out, name, &[], value);
    }
}

/// The audit writer's own figures.
fn render_audit(log: &AuditLog, out: &mut String) {
    let stats = log.stats();
    text::write_header(
        out,
        "keyscope_audit_append_latency_seconds",
        "Per audit record: from being queued to being durable (written, fsynced, under a signed checkpoint).",
        "histogram",
    );
    text::write_histogram(
        out,
        "keyscope_audit_append_latency_seconds",
        &[],
        &stats.append_latency.snapshot(),
    );
    text::write_header(
        out,
        "keyscope_audit_commit_duration_seconds",
        "Per audit batch: writing the records and checkpoint, and the fdatasync.",
        "histogram",
    );
    text::write_histogram(
        out,
        "keyscope_audit_commit_duration_seconds",
        &[],
        &stats.commit_duration.snapshot(),
    );
    let counters: [(&str, &str, &Counter); 4] = [
        (
            "keyscope_audit_batches_total",
            "Audit batches committed (group commit: one write, one checkpoint, one fdatasync each).",
            &stats.batches,
        ),
        (
            "keyscope_audit_committed_records_total",
            "Audit records committed by this process.",
            &stats.records,
        ),
        (
            "keyscope_audit_fsyncs_total",
            "File syncs by the audit writer (one per batch, plus preallocation and new segments).",
            &stats.fsyncs,
        ),
        (
            "keyscope_audit_write_failures_total",
            "Audit batches that failed to be written (appends are then refused until restart).",
            &stats.failures,
        ),
    ];
    for (name, help, counter) in counters {
        text::write_header(out, name, help, "counter");
        text::write_sample_u64(out, name, &[], counter.get());
    }
    text::write_header(
        out,
        "keyscope_audit_committed_seq",
        "The highest durable audit record sequence number (the log's size).",
        "gauge",
    );
    text::write_sample_u64(
        out,
        "keyscope_audit_committed_seq",
        &[],
        log.committed_seq(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn access_with_a_token_needs_the_token_from_anywhere() {
        let token = digest(b"s3cret-metrics-token");
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let remote: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        for peer in [Some(local), Some(remote), None] {
            assert_eq!(
                authorize(
                    Some(&token),
                    peer,
                    &headers(Some("Bearer s3cret-metrics-token"))
                ),
                Ok(())
            );
            assert_eq!(
                authorize(
                    Some(&token),
                    peer,
                    &headers(Some("bearer s3cret-metrics-token"))
                ),
                Ok(())
            );
            // Loopback alone is not enough once a token is configured.
            for wrong in [
                None,
                Some("Bearer"),
                Some("Bearer "),
                Some("Bearer s3cret-metrics-tokeN"),
                Some("Bearer s3cret-metrics-token2"),
                Some("Basic czNjcmV0LW1ldHJpY3MtdG9rZW4="),
                Some("s3cret-metrics-token"),
            ] {
                assert_eq!(
                    authorize(Some(&token), peer, &headers(wrong)),
                    Err(Refusal::Unauthorized),
                    "{wrong:?} from {peer:?}"
                );
            }
        }
    }

    #[test]
    fn access_without_a_token_is_loopback_only() {
        for peer in [
            "127.0.0.1:1",
            "127.9.9.9:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            let peer: SocketAddr = peer.parse().unwrap();
            assert_eq!(
                authorize(None, Some(peer), &headers(None)),
                Ok(()),
                "{peer}"
            );
        }
        for peer in [
            "10.0.0.1:1",
            "203.0.113.7:1",
            "[2001:db8::1]:1",
            "[::ffff:10.0.0.1]:1",
            "0.0.0.0:1",
        ] {
            let peer: SocketAddr = peer.parse().unwrap();
            assert_eq!(
                authorize(None, Some(peer), &headers(Some("Bearer anything"))),
                Err(Refusal::NotLoopback),
                "{peer}"
            );
        }
        assert_eq!(
            authorize(None, None, &headers(None)),
            Err(Refusal::NotLoopback)
        );
    }

    #[test]
    fn records_are_tallied_with_bounded_labels() {
        let metrics = Metrics::new().unwrap();
        let lines = [
            r#"{"Operation":"TokenValidated","ResultStatus":"Failure","Reason":"key_issuer_mismatch","seq":1}"#,
            r#"{"Operation":"TokenValidated","ResultStatus":"Failure","Reason":"key_issuer_mismatch","seq":2}"#,
            r#"{"Operation":"TokenValidated","ResultStatus":"Success","seq":3}"#,
            r#"{"Operation":"TokenIssued","ResultStatus":"Success","GrantType":"client_credentials","seq":4}"#,
            r#"{"Operation":"TokenIssued","ResultStatus":"Failure","Reason":"invalid_client","seq":5}"#,
            r#"{"Operation":"SignIn","ResultStatus":"Failure","Reason":"invalid grant \"x\"\n","seq":6}"#,
            r#"{"Operation":"MailItemsAccessed","MailAccessType":"Bind","ResultStatus":"Succeeded","seq":7}"#,
            r#"{"Operation":"Alert","AlertId":"ks-token-not-issued","RuleId":"ks-token-not-issued","Severity":"high","seq":8}"#,
            r#"{"Operation":"Alert","AlertId":"ks-key-age","Severity":{"odd":1},"seq":9}"#,
            r#"{"Operation":"TokenValidated","ResultStatus":"Failure","Reason":"unknown\u005fkey","Detail":[1,{"a":null}],"seq":10}"#,
            r#"not json"#,
            r#""#,
        ];
        for line in lines {
            metrics.tally(line.as_bytes());
        }
        let d = &metrics.token_decisions;
        assert_eq!(d.get(&["Failure", "key_issuer_mismatch"]), 2);
        assert_eq!(d.get(&["Success", "none"]), 1);
        assert_eq!(d.get(&["Failure", "unknown_key"]), 1);
        assert_eq!(
            metrics
                .tokens_issued
                .get(&["Success", "client_credentials", "none"]),
            1
        );
        assert_eq!(
            metrics
                .tokens_issued
                .get(&["Failure", "none", "invalid_client"]),
            1
        );
        assert_eq!(metrics.sign_ins.get(&["Failure", "other"]), 1);
        assert_eq!(metrics.mail_access.get(&["Bind"]), 1);
        assert_eq!(metrics.alerts.get(&["ks-token-not-issued", "high"]), 1);
        assert_eq!(metrics.alerts.get(&["ks-key-age", "none"]), 1);
        assert_eq!(metrics.audit_records.get(&["TokenValidated"]), 4);
        // Hostile operations cannot grow the families past their caps.
        for n in 0..10_000 {
            metrics.tally(format!(r#"{{"Operation":"Op{n}","seq":1}}"#).as_bytes());
            metrics.tally(
                format!(
                    r#"{{"Operation":"TokenValidated","ResultStatus":"Failure","Reason":"r{n}"}}"#
                )
                .as_bytes(),
            );
        }
        assert_eq!(metrics.audit_records.len(), 128);
        assert_eq!(metrics.token_decisions.len(), 256);
        let text = metrics.registry.render();
        keyscope_metrics::text::parse(&text).unwrap();
    }

    #[test]
    fn labels_keep_only_expected_shapes() {
        assert_eq!(reason_label(Some("token_not_issued")), "token_not_issued");
        assert_eq!(reason_label(Some("revoked by the client")), "other");
        assert_eq!(reason_label(Some("")), "other");
        assert_eq!(reason_label(Some(&"a".repeat(65))), "other");
        assert_eq!(reason_label(None), "none");
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
