//! The mail service over HTTP: Session resource, API, upload, download and EventSource push.
//!
//! Every route authenticates first (RFC 6750 Bearer only) and records the decision; a request
//! that cannot be put on record is refused (fail closed).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keyscope_identity::{Event, RequestContext};
use keyscope_jmap::capabilities::{MAIL, SUBMISSION};
use keyscope_jmap::{Account, ProblemDetails, RequestLimits, Session};
use keyscope_oauth::bearer;
use keyscope_oauth::error::ErrorCode;
use keyscope_store::{ChangeKind, MailAccount};
use keyscope_trust::TokenFacts;
use serde_json::{Map, Value, json};

use crate::MailService;
use crate::methods::{self, Accessed, Context};

type AppState = Arc<MailService>;

/// The routes, to be merged into the server's router.
pub fn router(service: Arc<MailService>) -> Router {
    Router::new()
        .route("/.well-known/jmap", get(session))
        .route("/jmap/api", get(session).post(api))
        .route("/jmap/upload/{account}", post(upload))
        .route("/jmap/upload/{account}/", post(upload))
        .route("/jmap/download/{account}/{blob}/{name}", get(download))
        .route("/jmap/eventsource", get(event_source))
        .with_state(service)
}

/// A request that passed authentication: the one account its token opens.
struct Caller {
    account: MailAccount,
    facts: TokenFacts,
    session_id: Option<String>,
    context: RequestContext,
    /// The `TokenValidated` record of this acceptance, written with the request's other
    /// records (one fsync) before any response leaves.
    validated: Event,
}

fn challenge(status: StatusCode, error: Option<(ErrorCode, &str)>) -> Response {
    let mut response = (status, "").into_response();
    let value = bearer::www_authenticate("keyscope-mail", error);
    if let Ok(value) = HeaderValue::from_str(&value) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn problem(problem: &ProblemDetails) -> Response {
    let status = StatusCode::from_u16(problem.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, problem.to_json().to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

fn unavailable() -> Response {
    let body = json!({
        "type": "urn:ietf:params:jmap:error:serverUnavailable",
        "status": 503,
        "detail": "the request could not be recorded in the audit log, so it was not served",
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Checks the bearer token and finds its account. Records the decision.
async fn authenticate(
    service: &MailService,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    resource: &str,
) -> Result<Caller, Response> {
    let context = RequestContext::from_http(headers, peer);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = match bearer::bearer_token(authorization) {
        Ok(token) => token,
        Err(bearer::BearerError::Missing) => {
            // No credentials: a plain challenge, no error code (RFC 6750 §3.1).
            return Err(challenge(StatusCode::UNAUTHORIZED, None));
        }
        Err(_) => {
            record_refusal(
                service,
                &context,
                resource,
                &TokenFacts::default(),
                "malformed_token",
                "",
            )
            .await;
            return Err(challenge(
                StatusCode::BAD_REQUEST,
                Some((ErrorCode::InvalidRequest, "malformed Authorization header")),
            ));
        }
    };
    let identity = service.identity();
    let mut outcome = identity.check_access_token(token, None).await;
    // A tenant or key made a moment ago by an admin command may not be in this node's
    // snapshot yet (nodes poll every 250 ms): one revision check, and a retry only if the
    // store changed, so forged tokens cost one small query.
    if let Err(rejection) = &outcome
        && matches!(rejection.reason.as_str(), "unknown_key" | "issuer_mismatch")
        && identity.refresh().await.unwrap_or(false)
    {
        outcome = identity.check_access_token(token, None).await;
    }
    let accepted = match outcome {
        Ok(accepted) => accepted,
        Err(rejection) => {
            record_refusal(
                service,
                &context,
                resource,
                &rejection.facts,
                &rejection.reason,
                &rejection.detail,
            )
            .await;
            return Err(challenge(
                StatusCode::UNAUTHORIZED,
                Some((ErrorCode::InvalidToken, &rejection.reason)),
            ));
        }
    };
    let facts = accepted.facts.clone();
    let audience = service.config().resource();
    if !facts.aud.contains(&audience) {
        record_refusal(
            service,
            &context,
            resource,
            &facts,
            "audience_mismatch",
            "the token is not for the mail service",
        )
        .await;
        return Err(challenge(
            StatusCode::UNAUTHORIZED,
            Some((ErrorCode::InvalidToken, "audience_mismatch")),
        ));
    }
    // The account is the token's own user in the token's own (verified) realm: nothing the
    // client sends can point it elsewhere.
    let account = match service
        .account_for_subject(&accepted.realm, &accepted.ledger.subject)
        .await
    {
        Ok(Some(account)) => account,
        Ok(None) => {
            record_refusal(service, &context, resource, &facts, "unknown_user", "").await;
            return Err(challenge(
                StatusCode::UNAUTHORIZED,
                Some((ErrorCode::InvalidToken, "unknown_user")),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "mail account lookup failed");
            return Err(unavailable());
        }
    };
    let session_id = accepted
        .claims
        .get("sid")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let validated = Event::token_validated(Some(&accepted.realm), resource, &facts, None, &context)
        .with("MailboxOwnerUPN", Some(&account.email));
    Ok(Caller {
        account,
        facts,
        session_id,
        context,
        validated,
    })
}

/// Authenticates and records the decision at once, for routes whose only record is that
/// decision (session, upload, push).
async fn admit(
    service: &MailService,
    headers: &HeaderMap,
    peer: SocketAddr,
    resource: &str,
) -> Result<Caller, Response> {
    let caller = authenticate(service, headers, Some(peer), resource).await?;
    record_decision(service, &caller).await?;
    Ok(caller)
}

/// Records an accepted request that read nothing (or was refused after authentication).
async fn record_decision(service: &MailService, caller: &Caller) -> Result<(), Response> {
    record_access(service, caller, &Accessed::default())
        .await
        .map_err(|()| unavailable())
}

async fn record_refusal(
    service: &MailService,
    context: &RequestContext,
    resource: &str,
    facts: &TokenFacts,
    reason: &str,
    detail: &str,
) {
    // The realm a refused token claims is unverified; it is recorded as the token's `tid`.
    let realm = facts.tid.clone().unwrap_or_default();
    let event = Event::token_validated(
        Some(&realm),
        resource,
        facts,
        Some((reason, detail)),
        context,
    );
    if let Err(e) = service.identity().audit().record(event.into_map()).await {
        tracing::error!(error = %e, "recording a refused mail request failed");
    }
}

fn session_object(service: &MailService, account: &MailAccount) -> Session {
    let config = service.config();
    let base = &config.public_url;
    let mut mail = Map::new();
    mail.insert("maxMailboxesPerEmail".into(), Value::Null);
    mail.insert("maxMailboxDepth".into(), json!(methods::MAX_MAILBOX_DEPTH));
    mail.insert(
        "maxSizeMailboxName".into(),
        json!(methods::MAX_MAILBOX_NAME_BYTES),
    );
    mail.insert(
        "maxSizeAttachmentsPerEmail".into(),
        json!(crate::MAX_UPLOAD_BYTES),
    );
    mail.insert(
        "emailQuerySortOptions".into(),
        json!([
            "receivedAt",
            "sentAt",
            "size",
            "from",
            "to",
            "subject",
            "hasKeyword"
        ]),
    );
    mail.insert("mayCreateTopLevelMailbox".into(), json!(true));
    let mut submission = Map::new();
    submission.insert("maxDelayedSend".into(), json!(0));
    submission.insert("submissionExtensions".into(), json!({}));
    let mut account_capabilities = Map::new();
    account_capabilities.insert(MAIL.into(), Value::Object(mail));
    account_capabilities.insert(SUBMISSION.into(), Value::Object(submission));
    let mut capabilities = Map::new();
    capabilities.insert(MAIL.into(), json!({}));
    capabilities.insert(SUBMISSION.into(), json!({}));
    let mut accounts = BTreeMap::new();
    accounts.insert(
        account.id.clone(),
        Account {
            name: account.email.clone(),
            is_personal: true,
            is_read_only: false,
            account_capabilities,
        },
    );
    let mut primary_accounts = BTreeMap::new();
    primary_accounts.insert(MAIL.to_owned(), account.id.clone());
    primary_accounts.insert(SUBMISSION.to_owned(), account.id.clone());
    Session {
        core: config.core.clone(),
        capabilities,
        accounts,
        primary_accounts,
        username: account.email.clone(),
        api_url: format!("{base}/jmap/api"),
        download_url: format!(
            "{base}/jmap/download/{{accountId}}/{{blobId}}/{{name}}?accept={{type}}"
        ),
        upload_url: format!("{base}/jmap/upload/{{accountId}}/"),
        event_source_url: format!(
            "{base}/jmap/eventsource?types={{types}}&closeafter={{closeafter}}&ping={{ping}}"
        ),
        // The session only changes if the account does: its id is the state.
        state: format!("s-{}", account.id),
    }
}

async fn session(
    State(service): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let caller = match admit(&service, &headers, peer, "jmap-session").await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    json_response(
        StatusCode::OK,
        &session_object(&service, &caller.account).to_json(),
    )
}

async fn read_body(body: Body, limit: u64) -> Result<Bytes, ProblemDetails> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ProblemDetails::limit(
            "maxSizeRequest",
            format!("the request body is larger than {limit} octets"),
        )
    })
}

async fn api(
    State(service): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let caller = match authenticate(&service, &parts.headers, Some(peer), "jmap-api").await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let core = &service.config().core;
    let refused = async |p: ProblemDetails| {
        // The token decision is on record even when the body is refused.
        if let Err(response) = record_decision(&service, &caller).await {
            return response;
        }
        problem(&p)
    };
    let body = match read_body(body, core.max_size_request).await {
        Ok(body) => body,
        Err(p) => return refused(p).await,
    };
    let limits = RequestLimits::new(core, [MAIL, SUBMISSION]);
    let request = match keyscope_jmap::parse_request(&body, &limits) {
        Ok(request) => request,
        Err(p) => return refused(p).await,
    };
    let dispatcher = methods::dispatcher();
    let mut execution = dispatcher.start(request);
    let mut context = Context::new(&service, &caller.account);
    while let Some(call) = execution.next_call() {
        let mut created = execution.created_ids().clone();
        let result = context.call(&call.name, call.arguments, &mut created).await;
        *execution.created_ids_mut() = created;
        execution.complete(result);
    }
    let session_state = format!("s-{}", caller.account.id);
    let response = execution.finish(session_state);
    let accessed = std::mem::take(&mut context.accessed);
    let changed = std::mem::take(&mut context.changed);
    drop(context);
    if record_access(&service, &caller, &accessed).await.is_err() {
        return unavailable();
    }
    for account in changed {
        service.notify(&account);
    }
    json_response(StatusCode::OK, &response.to_json())
}

fn access_event(caller: &Caller, access_type: &str, count: usize) -> Event {
    Event::new("MailItemsAccessed")
        .with("OrganizationId", Some(&caller.account.realm_id))
        .with("UserId", Some(&caller.account.email))
        .with("MailboxOwnerUPN", Some(&caller.account.email))
        .with("AppId", caller.facts.client_id.as_deref())
        .with("TokenId", caller.facts.jti.as_deref())
        .with("KeyId", caller.facts.kid.as_deref())
        .with("Issuer", caller.facts.iss.as_deref())
        .with("SessionId", caller.session_id.as_deref())
        .with("MailAccessType", Some(access_type))
        .with("ResultStatus", Some("Succeeded"))
        .with_value("OperationCount", json!(count))
        .context(&caller.context)
}

/// Writes the request's `TokenValidated`, `MailItemsAccessed` and `Send` records together
/// (durable before the response).
async fn record_access(
    service: &MailService,
    caller: &Caller,
    accessed: &Accessed,
) -> Result<(), ()> {
    let mut events = vec![caller.validated.clone()];
    if accessed.bind_count > 0 {
        let folders: Vec<Value> = accessed
            .bind
            .iter()
            .map(|(path, ids)| {
                json!({"Path": path, "FolderItems": ids.iter().map(|id| json!({"InternetMessageId": id})).collect::<Vec<_>>()})
            })
            .collect();
        events.push(
            access_event(caller, "Bind", accessed.bind_count)
                .with_value("Folders", Value::Array(folders)),
        );
    }
    if accessed.sync_count > 0 {
        let folders: Vec<Value> = accessed.sync.iter().map(|p| json!({"Path": p})).collect();
        events.push(
            access_event(caller, "Sync", accessed.sync_count)
                .with_value("Folders", Value::Array(folders)),
        );
    }
    for (email_id, message_id, recipients) in &accessed.sent {
        events.push(
            Event::new("Send")
                .with("OrganizationId", Some(&caller.account.realm_id))
                .with("UserId", Some(&caller.account.email))
                .with("MailboxOwnerUPN", Some(&caller.account.email))
                .with("AppId", caller.facts.client_id.as_deref())
                .with("TokenId", caller.facts.jti.as_deref())
                .with("KeyId", caller.facts.kid.as_deref())
                .with("SessionId", caller.session_id.as_deref())
                .with("ResultStatus", Some("Succeeded"))
                .with_value(
                    "Item",
                    json!({"Id": email_id, "InternetMessageId": message_id.as_ref().map(|m| format!("<{m}>"))}),
                )
                .with_value("Recipients", json!(recipients))
                .context(&caller.context),
        );
    }
    let events = events.into_iter().map(Event::into_map).collect();
    if let Err(e) = service.identity().audit().record_all(events).await {
        tracing::error!(error = %e, "recording mailbox access failed");
        return Err(());
    }
    Ok(())
}

/// A 404 as RFC 7807 problem JSON.
fn not_found(detail: &str) -> Response {
    let body = json!({"type": "about:blank", "status": 404, "detail": detail});
    let mut response = (StatusCode::NOT_FOUND, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

fn account_mismatch() -> Response {
    // The same answer whether the account exists elsewhere or not at all.
    not_found("no such account")
}

async fn upload(
    State(service): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(account_id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let caller = match admit(&service, &parts.headers, peer, "jmap-upload").await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if account_id != caller.account.id {
        return account_mismatch();
    }
    let body = match axum::body::to_bytes(
        body,
        usize::try_from(crate::MAX_UPLOAD_BYTES).unwrap_or(usize::MAX),
    )
    .await
    {
        Ok(body) => body,
        Err(_) => {
            return problem(&ProblemDetails::limit(
                "maxSizeUpload",
                format!("uploads are limited to {} octets", crate::MAX_UPLOAD_BYTES),
            ));
        }
    };
    let media_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|t| t.len() <= 255 && t.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .unwrap_or("application/octet-stream")
        .to_owned();
    let blob_id = crate::ingest::blob_id(&body);
    if let Err(e) = service
        .store()
        .put_blob(
            &caller.account.id,
            &blob_id,
            &body,
            &media_type,
            crate::unix_now(),
        )
        .await
    {
        tracing::error!(error = %e, "storing an upload failed");
        return unavailable();
    }
    json_response(
        StatusCode::CREATED,
        &json!({"accountId": caller.account.id, "blobId": blob_id, "type": media_type, "size": body.len()}),
    )
}

#[derive(serde::Deserialize)]
struct DownloadQuery {
    accept: Option<String>,
}

/// A media type safe to send back as `Content-Type`: `type/subtype` of token characters.
fn safe_media_type(text: &str) -> Option<&str> {
    let (kind, sub) = text.split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    (token(kind) && token(sub)).then_some(text)
}

async fn download(
    State(service): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((account_id, blob_id, name)): Path<(String, String, String)>,
    Query(query): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Response {
    let caller = match authenticate(&service, &headers, Some(peer), "jmap-download").await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if account_id != caller.account.id {
        if let Err(response) = record_decision(&service, &caller).await {
            return response;
        }
        return account_mismatch();
    }
    let mut context = Context::new(&service, &caller.account);
    let blob = match crate::methods::account_blob(&context, &blob_id).await {
        Ok(blob) => blob,
        Err(_) => return unavailable(),
    };
    let Some((data, stored_type)) = blob else {
        drop(context);
        if let Err(response) = record_decision(&service, &caller).await {
            return response;
        }
        return not_found("no such blob");
    };
    // The Bind record names the message(s) behind the blob; without it, nothing leaves.
    if context.note_download(&blob_id).await.is_err() {
        return unavailable();
    }
    let accessed = std::mem::take(&mut context.accessed);
    drop(context);
    if record_access(&service, &caller, &accessed).await.is_err() {
        return unavailable();
    }
    let requested = query.accept;
    let content_type = requested
        .as_deref()
        .and_then(safe_media_type)
        .or_else(|| safe_media_type(&stored_type))
        .unwrap_or("application/octet-stream")
        .to_owned();
    let filename: String = name
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .take(200)
        .collect();
    let mut response = (StatusCode::OK, data).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, immutable, max-age=31536000"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[derive(serde::Deserialize)]
struct EventSourceQuery {
    types: Option<String>,
    closeafter: Option<String>,
    ping: Option<String>,
}

async fn account_states(
    service: &MailService,
    account: &str,
) -> Option<BTreeMap<&'static str, String>> {
    let mut states = BTreeMap::new();
    for kind in [
        ChangeKind::Mailbox,
        ChangeKind::Email,
        ChangeKind::Thread,
        ChangeKind::EmailSubmission,
    ] {
        let state = service.store().mail_state(account, kind).await.ok()?;
        states.insert(kind.as_str(), state.to_string());
    }
    Some(states)
}

/// Follows one account's states for an EventSource connection.
struct Watcher {
    service: Arc<MailService>,
    account_id: String,
    types: Option<Vec<String>>,
    receiver: tokio::sync::broadcast::Receiver<String>,
    last: BTreeMap<&'static str, String>,
    done: bool,
    close_after_state: bool,
}

impl Watcher {
    /// Waits for the next change of a watched type and returns its StateChange event, or
    /// `None` once the stream should end (`closeafter=state`).
    async fn next_change(&mut self) -> Option<SseEvent> {
        if self.done {
            return None;
        }
        loop {
            // Wake on an in-process change, or poll for changes made by other processes (an
            // import beside the server) every two seconds.
            let receiver = &mut self.receiver;
            let account_id = &self.account_id;
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                loop {
                    match receiver.recv().await {
                        Ok(id) if id == *account_id => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(_) => std::future::pending::<()>().await,
                    }
                }
            })
            .await;
            let Some(now) = account_states(&self.service, &self.account_id).await else {
                continue;
            };
            let changed: Map<String, Value> = now
                .iter()
                .filter(|(kind, state)| self.last.get(*kind) != Some(state))
                .filter(|(kind, _)| {
                    self.types
                        .as_ref()
                        .is_none_or(|t| t.iter().any(|x| x == *kind))
                })
                .map(|(kind, state)| ((*kind).to_owned(), json!(state)))
                .collect();
            self.last = now;
            if changed.is_empty() {
                continue;
            }
            self.done = self.close_after_state;
            let mut accounts = Map::new();
            accounts.insert(self.account_id.clone(), Value::Object(changed));
            let data = json!({"@type": "StateChange", "changed": accounts}).to_string();
            return Some(SseEvent::default().event("state").data(data));
        }
    }
}

async fn event_source(
    State(service): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<EventSourceQuery>,
    headers: HeaderMap,
) -> Response {
    let caller = match admit(&service, &headers, peer, "jmap-eventsource").await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let types: Option<Vec<String>> = match query.types.as_deref() {
        None | Some("*") | Some("") => None,
        Some(list) => Some(list.split(',').map(str::to_owned).collect()),
    };
    let close_after_state = match query.closeafter.as_deref() {
        None | Some("no") => false,
        Some("state") => true,
        Some(_) => {
            return problem(&ProblemDetails::not_request(
                "closeafter must be state or no",
            ));
        }
    };
    let ping = match query.ping.as_deref() {
        None => 0,
        Some(text) => match text.parse::<u64>() {
            Ok(n) => n,
            Err(_) => return problem(&ProblemDetails::not_request("ping must be an UnsignedInt")),
        },
    };
    // RFC 8620 §7.3: the server may raise a too-small interval (at least 5 s here).
    let ping = if ping == 0 { 0 } else { ping.clamp(5, 3600) };
    let account_id = caller.account.id.clone();
    let receiver = service.subscribe();
    let initial = account_states(&service, &account_id)
        .await
        .unwrap_or_default();
    let watcher = Watcher {
        service: Arc::clone(&service),
        account_id,
        types,
        receiver,
        last: initial,
        done: false,
        close_after_state,
    };
    let stream = futures_util::stream::unfold(watcher, |mut watcher| async move {
        let event = watcher.next_change().await?;
        Some((Ok::<_, Infallible>(event), watcher))
    });
    let sse = Sse::new(stream);
    if ping > 0 {
        let ping_data = json!({"interval": ping}).to_string();
        sse.keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(ping))
                .event(SseEvent::default().event("ping").data(ping_data)),
        )
        .into_response()
    } else {
        sse.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_sanitised() {
        assert_eq!(safe_media_type("text/plain"), Some("text/plain"));
        assert_eq!(safe_media_type("text/html\r\nX: y"), None);
        assert_eq!(safe_media_type("nonsense"), None);
    }
}
