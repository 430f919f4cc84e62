//! Where the identity service's audit events go: straight into the audit log when this
//! process holds it, or into the store's outbox when another process does (an admin command
//! beside a running server), for that process to append.

use std::sync::Arc;

use keyscope_audit::AuditLog;
use keyscope_store::Store;
use serde_json::{Map, Value};

use crate::IdentityError;

/// The destination of audit events.
#[derive(Clone)]
pub enum AuditSink {
    /// This process holds the log: events are durable when `record` returns.
    Log(Arc<AuditLog>),
    /// Another process holds the log: events are queued in the store, durable in the store's
    /// own terms, and appended by the log's holder within a second.
    Outbox(Store),
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditSink::Log(log) => write!(f, "AuditSink::Log({})", log.dir().display()),
            AuditSink::Outbox(_) => write!(f, "AuditSink::Outbox"),
        }
    }
}

impl AuditSink {
    /// Records one event. Fails closed: a caller that cannot record does not act.
    pub async fn record(&self, event: Map<String, Value>) -> Result<(), IdentityError> {
        match self {
            AuditSink::Log(log) => log
                .append_async(event)
                .await
                .map(drop)
                .map_err(|e| IdentityError::Audit(e.to_string())),
            AuditSink::Outbox(store) => {
                // Ordered by time first, so the holder appends them in the order they happened.
                let id = format!(
                    "{:020}-{}",
                    keyscope_audit::event::now_micros(),
                    crate::random_id(8)
                );
                let text = Value::Object(event).to_string();
                store
                    .queue_audit_event(&id, &text, crate::unix_now())
                    .await
                    .map_err(IdentityError::from)
            }
        }
    }

    /// Records several events of one request together: with the log, they are all queued
    /// before the first is awaited, so they share one fsync. Fails closed like `record`.
    pub async fn record_all(&self, events: Vec<Map<String, Value>>) -> Result<(), IdentityError> {
        match self {
            AuditSink::Log(log) => {
                let pending: Vec<_> = events.into_iter().map(|e| log.append_async(e)).collect();
                for append in pending {
                    append
                        .await
                        .map_err(|e| IdentityError::Audit(e.to_string()))?;
                }
                Ok(())
            }
            AuditSink::Outbox(_) => {
                for event in events {
                    self.record(event).await?;
                }
                Ok(())
            }
        }
    }

    /// Appends queued outbox events to the log (the holder calls this on every poll).
    pub async fn drain_outbox(&self, store: &Store) -> Result<usize, IdentityError> {
        let AuditSink::Log(log) = self else {
            return Ok(0);
        };
        let queued = store.queued_audit_events(256).await?;
        let mut moved = 0;
        let now = crate::unix_now();
        for (id, text) in queued {
            // Claim first: with several nodes on one store, each event goes to one log.
            if !store
                .claim_audit_event(&id, node_id(), now, now - OUTBOX_CLAIM_SECONDS)
                .await?
            {
                continue;
            }
            // An outbox row is written by our own admin commands; one that no longer parses
            // is still evidence, so it is wrapped rather than dropped.
            let event = match keyscope_jose::json::parse_object(text.as_bytes()) {
                Ok(map) if keyscope_audit::event::check_event(&map).is_ok() => map,
                _ => {
                    let mut wrapped = Map::new();
                    wrapped.insert("Operation".into(), "AdminAction".into());
                    wrapped.insert("ResultStatus".into(), "Unreadable".into());
                    wrapped.insert("RawEvent".into(), Value::String(text.clone()));
                    wrapped
                }
            };
            log.append_async(event)
                .await
                .map_err(|e| IdentityError::Audit(e.to_string()))?;
            store.delete_audit_event(&id).await?;
            moved += 1;
        }
        Ok(moved)
    }
}

/// How long a node's claim on a queued event holds before another node may take it over.
pub const OUTBOX_CLAIM_SECONDS: i64 = 60;

/// This process's identity when claiming queued events.
fn node_id() -> &'static str {
    static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NODE.get_or_init(|| format!("{}-{}", std::process::id(), crate::random_id(8)))
}

/// Builds an audit event with UAL field names.
#[derive(Debug, Clone)]
pub struct Event(Map<String, Value>);

impl Event {
    /// An event of `operation` stamped with the current time.
    pub fn new(operation: &str) -> Event {
        let mut map = Map::new();
        map.insert("Operation".into(), Value::String(operation.to_owned()));
        // When it happened, not when the log got it (events may wait in the outbox).
        map.insert(
            "CreationTime".into(),
            Value::String(keyscope_audit::event::format_time(
                keyscope_audit::event::now_micros(),
            )),
        );
        Event(map)
    }

    /// Sets a string field (skipped when `None`).
    pub fn with(mut self, name: &str, value: Option<&str>) -> Event {
        if let Some(value) = value {
            self.0
                .insert(name.to_owned(), Value::String(value.to_owned()));
        }
        self
    }

    /// Sets any JSON field.
    pub fn with_value(mut self, name: &str, value: Value) -> Event {
        self.0.insert(name.to_owned(), value);
        self
    }

    /// Adds the client context (IP and user agent).
    pub fn context(self, context: &RequestContext) -> Event {
        self.with("ClientIPAddress", context.ip.as_deref())
            .with("ClientInfoString", context.user_agent.as_deref())
    }

    /// A `TokenValidated` record: the token's facts (verified on acceptance, as claimed on
    /// rejection, so a forged token's `kid`, `iss` and `jti` are kept for detection), the
    /// resource it was presented to, and `Success` or `Failure` with the reason and detail.
    pub fn token_validated(
        realm: Option<&str>,
        resource: &str,
        facts: &keyscope_trust::TokenFacts,
        refusal: Option<(&str, &str)>,
        context: &RequestContext,
    ) -> Event {
        Event::new("TokenValidated")
            .with("OrganizationId", realm.filter(|r| !r.is_empty()))
            .with("Resource", Some(resource))
            .with("UserId", facts.sub.as_deref())
            .with("AppId", facts.client_id.as_deref())
            .with("TokenId", facts.jti.as_deref())
            .with("KeyId", facts.kid.as_deref())
            .with("Issuer", facts.iss.as_deref())
            .with(
                "ResultStatus",
                Some(if refusal.is_none() {
                    "Success"
                } else {
                    "Failure"
                }),
            )
            .with("Reason", refusal.map(|r| r.0))
            .with("Detail", refusal.map(|r| r.1).filter(|d| !d.is_empty()))
            .context(context)
    }

    /// The finished event.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Who is asking: recorded with every event a request causes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// Client IP address.
    pub ip: Option<String>,
    /// User agent (truncated to 512 bytes).
    pub user_agent: Option<String>,
}

/// Longest user agent kept in audit records, in bytes.
pub const MAX_USER_AGENT_BYTES: usize = 512;

impl RequestContext {
    /// The context of an HTTP request: the peer's IP and the `User-Agent` header (truncated
    /// on a character boundary to [`MAX_USER_AGENT_BYTES`]).
    pub fn from_http(
        headers: &axum::http::HeaderMap,
        peer: Option<std::net::SocketAddr>,
    ) -> RequestContext {
        let user_agent = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| truncate(ua, MAX_USER_AGENT_BYTES).to_owned());
        RequestContext {
            ip: peer.map(|a| a.ip().to_string()),
            user_agent,
        }
    }

    /// A context for operator commands on this machine.
    pub fn operator() -> RequestContext {
        RequestContext {
            ip: None,
            user_agent: Some(format!("keyscope-cli/{}", env!("CARGO_PKG_VERSION"))),
        }
    }
}
