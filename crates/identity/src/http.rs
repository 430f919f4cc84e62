//! The HTTP endpoints, per realm under its issuer (`/consumers/…` and `/t/{tenant}/…`):
//! OpenID discovery, JWKS, authorization (code + PKCE S256, a server-rendered sign-in page),
//! token (`authorization_code`, `refresh_token`, `client_credentials`), userinfo, RFC 7662
//! introspection and RFC 7009 revocation; plus `/healthz`.
//!
//! Every error is the RFC 6749 JSON (or, on the authorization endpoint, a redirect or an error
//! page), never a 5xx for bad input, and every failure is audited.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, OriginalUri, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keyscope_oauth::client_auth::ClientCredentials;
use keyscope_oauth::error::ErrorCode;
use keyscope_oauth::form::{Form, is_form_content_type};
use keyscope_oauth::{OAuthError, bearer, client_auth, page, pkce, redirect, resource, scope};
use keyscope_store::{App, CodeOutcome, NewCode, NewRefresh, RefreshOutcome};
use serde_json::{Map, Value, json};

use crate::audit::{Event, RequestContext};
use crate::{AccessRejection, Grant, Identity, IdentityError, password, unix_now};

/// Largest request body accepted (forms are small; anything bigger is refused with 413).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The router for all realms.
pub fn router(identity: Arc<Identity>) -> Router {
    let realm = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize_get).post(authorize_post))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo).post(userinfo))
        .route("/introspect", post(introspect))
        .route("/revoke", post(revoke));
    Router::new()
        .route("/healthz", get(healthz))
        .nest("/consumers", realm.clone())
        .nest("/t/{tenant}", realm)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(identity)
}

type AppState = Arc<Identity>;

async fn healthz(State(identity): State<AppState>) -> Response {
    match identity.store().revision().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response(),
    }
}

/// The realm a request is addressed to, taken from the original path, and the request's
/// client context.
struct RealmRequest {
    realm: String,
    issuer: String,
    context: RequestContext,
}

impl FromRequestParts<AppState> for RealmRequest {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        identity: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let path = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.path().to_owned(), |u| u.0.path().to_owned());
        let realm = if path.starts_with("/consumers/") {
            Some(keyscope_store::CONSUMER_REALM.to_owned())
        } else {
            path.strip_prefix("/t/")
                .and_then(|rest| rest.split('/').next())
                .map(str::to_owned)
        };
        let mut known = realm
            .clone()
            .filter(|r| identity.snapshot().realm(r).is_some());
        if known.is_none()
            && let Some(candidate) = realm
        {
            // A tenant created a moment ago by an admin command is served at once rather
            // than after the next poll: one revision query, and a reload only if the store
            // changed, so unknown names cost little.
            if identity.refresh().await.is_ok() && identity.snapshot().realm(&candidate).is_some() {
                known = Some(candidate);
            }
        }
        let Some(realm) = known else {
            return Err(json_error(
                StatusCode::NOT_FOUND,
                &OAuthError::invalid_request("no such realm"),
            ));
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(RealmRequest {
            issuer: identity.config().issuer(&realm),
            realm,
            context: RequestContext::from_http(&parts.headers, peer),
        })
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn json_error(status: StatusCode, error: &OAuthError) -> Response {
    let mut response = json_response(status, error.to_json());
    if error.code == ErrorCode::InvalidClient {
        // RFC 6749 §5.2: 401 for invalid_client comes with a challenge.
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"keyscope\""),
        );
    }
    response
}

fn oauth_error(error: &OAuthError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    json_error(status, error)
}

fn internal(error: &IdentityError) -> OAuthError {
    match error {
        IdentityError::NoSigningKey(_) => OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the realm has no active signing key; try again shortly",
        ),
        _ => {
            tracing::error!(error = %error, "request failed");
            OAuthError::new(ErrorCode::ServerError, "internal error")
        }
    }
}

/// Reads a form body: the content type must be a form, the size bounded, the syntax strict.
fn read_form(
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Form, OAuthError> {
    let body = body.map_err(|e| {
        OAuthError::invalid_request(format!(
            "the request body could not be read: {}",
            e.body_text()
        ))
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !is_form_content_type(content_type) {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    Form::parse(&body)
}

fn body_status(
    body: &Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Option<StatusCode> {
    match body {
        Err(e) => Some(e.status()),
        Ok(_) => None,
    }
}

// ----- discovery and keys -----

async fn discovery(State(identity): State<AppState>, realm: RealmRequest) -> Response {
    let issuer = &realm.issuer;
    let algs: Vec<&str> = {
        let mut algs = vec![identity.config().signing_alg.name()];
        for alg in ["ES256", "EdDSA"] {
            if !algs.contains(&alg) {
                algs.push(alg);
            }
        }
        algs
    };
    let document = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": crate::GRANT_TYPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "offline_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "tid", "preferred_username"],
        "authorization_response_iss_parameter_supported": true,
        "tenant_id": realm.realm,
    });
    cacheable_json(&identity, document.to_string())
}

async fn jwks(State(identity): State<AppState>, realm: RealmRequest) -> Response {
    let snapshot = identity.snapshot();
    let body = snapshot
        .realm(&realm.realm)
        .map_or_else(|| "{\"keys\":[]}".to_owned(), |r| r.jwks_json.clone());
    cacheable_json(&identity, body)
}

/// Discovery and the JWKS are public and cached by validators for the JWKS max-age (the key
/// lifecycle publishes new keys for two of these before they sign).
fn cacheable_json(identity: &Identity, body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "public, max-age={}",
        identity.config().jwks_max_age
    )) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    response
}

// ----- client authentication -----

/// Authenticates the client of a token, introspection or revocation request, within the
/// realm the request is addressed to.
async fn authenticate_client(
    identity: &Identity,
    realm: &str,
    headers: &HeaderMap,
    form: &Form,
    allow_public: bool,
) -> Result<App, OAuthError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let credentials = client_auth::client_credentials(authorization, form)?;
    let app = identity
        .app(credentials.client_id())
        .await
        .map_err(|e| internal(&e))?;
    let Some(app) = app.filter(|a| a.realm_id == realm) else {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "unknown client in this realm",
        ));
    };
    match (&credentials, app.secret_digest.as_deref()) {
        (ClientCredentials::None { .. }, None) if allow_public => Ok(app),
        (ClientCredentials::None { .. }, None) => Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "a public client cannot use this endpoint",
        )),
        (ClientCredentials::None { .. }, Some(_)) => Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "client authentication is required",
        )),
        (_, None) => Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "a public client has no secret",
        )),
        (presented, Some(stored)) => {
            let digest = keyscope_jose::b64::encode_url(&client_auth::secret_digest(
                presented.secret().unwrap_or_default(),
            ));
            if client_auth::constant_time_eq(digest.as_bytes(), stored.as_bytes()) {
                Ok(app)
            } else {
                Err(OAuthError::new(
                    ErrorCode::InvalidClient,
                    "client authentication failed",
                ))
            }
        }
    }
}

// ----- token endpoint -----

async fn token(
    State(identity): State<AppState>,
    realm: RealmRequest,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let too_large = body_status(&body) == Some(StatusCode::PAYLOAD_TOO_LARGE);
    let result = match read_form(&headers, body) {
        Ok(form) => token_grant(&identity, &realm, &headers, &form).await,
        Err(e) => Err((e, None)),
    };
    match result {
        Ok(body) => json_response(StatusCode::OK, body.to_string()),
        Err((error, client)) => {
            let event = Event::new("TokenIssued")
                .with("OrganizationId", Some(&realm.realm))
                .with("Issuer", Some(&realm.issuer))
                .with("AppId", client.as_deref())
                .with("ResultStatus", Some("Failure"))
                .with("Reason", Some(error.code.as_str()))
                .with("Detail", Some(&error.description))
                .context(&realm.context);
            if let Err(e) = identity.audit().record(event.into_map()).await {
                tracing::error!(error = %e, "recording a token failure failed");
            }
            if too_large {
                return json_error(StatusCode::PAYLOAD_TOO_LARGE, &error);
            }
            oauth_error(&error)
        }
    }
}

type GrantResult = Result<Value, (OAuthError, Option<String>)>;

async fn token_grant(
    identity: &Identity,
    realm: &RealmRequest,
    headers: &HeaderMap,
    form: &Form,
) -> GrantResult {
    let grant_type = form.require("grant_type").map_err(|e| (e, None))?;
    if !crate::GRANT_TYPES.contains(&grant_type) {
        return Err((
            OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!("grant_type {grant_type:?} is not supported"),
            ),
            None,
        ));
    }
    let allow_public = grant_type != "client_credentials";
    let app = authenticate_client(identity, &realm.realm, headers, form, allow_public)
        .await
        .map_err(|e| (e, form.get("client_id").map(str::to_owned)))?;
    let client = Some(app.client_id.clone());
    if !app.allows_grant(grant_type) {
        return Err((
            OAuthError::new(
                ErrorCode::UnauthorizedClient,
                format!("this client may not use {grant_type}"),
            ),
            client,
        ));
    }
    let result = match grant_type {
        "authorization_code" => code_grant(identity, realm, &app, form).await,
        "refresh_token" => refresh_grant(identity, realm, &app, form).await,
        _ => client_credentials_grant(identity, realm, &app, form).await,
    };
    result.map_err(|e| (e, client))
}

/// The audience for a request: the `resource` parameter if the app may use it, else the
/// app's default.
fn audience(identity: &Identity, app: &App, requested: Option<&str>) -> Result<String, OAuthError> {
    match requested {
        None => Ok(identity.default_audience(Some(app))),
        Some(resource) => {
            resource::check_resource(resource)?;
            if app.resources.is_empty() || app.resources.iter().any(|r| r == resource) {
                Ok(resource.to_owned())
            } else {
                Err(OAuthError::new(
                    ErrorCode::InvalidTarget,
                    "this client may not request that resource",
                ))
            }
        }
    }
}

async fn client_credentials_grant(
    identity: &Identity,
    realm: &RealmRequest,
    app: &App,
    form: &Form,
) -> Result<Value, OAuthError> {
    let scopes = scope::parse_scope(form.get("scope").unwrap_or_default())?;
    if scopes
        .iter()
        .any(|s| s == "openid" || s == "offline_access")
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "openid and offline_access need a user; use the authorization code flow",
        ));
    }
    let audience = audience(identity, app, form.get("resource"))?;
    let scope = scope::join_scope(&scopes);
    let minted = identity
        .mint_access_token(
            &Grant {
                realm: &realm.realm,
                subject: &app.client_id,
                client_id: &app.client_id,
                scope: &scope,
                audience: &audience,
                family_id: None,
                auth_time: None,
                grant_type: "client_credentials",
            },
            &realm.context,
        )
        .await
        .map_err(|e| internal(&e))?;
    let mut body = json!({
        "access_token": minted.access_token,
        "token_type": "Bearer",
        "expires_in": minted.expires_in,
    });
    if !scope.is_empty()
        && let Some(map) = body.as_object_mut()
    {
        map.insert("scope".into(), Value::String(scope));
    }
    Ok(body)
}

async fn code_grant(
    identity: &Identity,
    realm: &RealmRequest,
    app: &App,
    form: &Form,
) -> Result<Value, OAuthError> {
    let code = form.require("code")?;
    let redirect_uri = form.require("redirect_uri")?;
    let verifier = form.require("code_verifier")?;
    pkce::check_verifier_syntax(verifier)?;
    let digest = keyscope_oauth::token::token_digest(code);
    let store = identity.store();
    let invalid = || {
        OAuthError::new(
            ErrorCode::InvalidGrant,
            "the code is invalid, expired or already used",
        )
    };
    // Look before redeeming: a code presented at another realm or by another client is
    // refused without burning the rightful client's code.
    let peek = store.code(&digest).await.map_err(|e| internal(&e.into()))?;
    match peek {
        Some(found)
            if found.code.realm_id == realm.realm && found.code.client_id == app.client_id => {}
        _ => return Err(invalid()),
    }
    let now = unix_now();
    let code = match store
        .redeem_code(&digest, now)
        .await
        .map_err(|e| internal(&e.into()))?
    {
        CodeOutcome::Fresh(code) => code.code,
        CodeOutcome::Replayed(code) => {
            // RFC 6749 §4.1.2: a code used twice revokes what it produced.
            let revoked = store
                .revoke_family(&code.code.family_id, "authorization code replayed", now)
                .await
                .map_err(|e| internal(&e.into()))?;
            audit_family_revoked(
                identity,
                realm,
                &code.code.family_id,
                "authorization code replayed",
                revoked,
            )
            .await;
            return Err(invalid());
        }
        CodeOutcome::Expired(_) | CodeOutcome::Unknown => return Err(invalid()),
    };
    if code.redirect_uri != redirect_uri {
        return Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "redirect_uri does not match the authorization request",
        ));
    }
    if !pkce::verifier_matches(verifier, &code.code_challenge) {
        return Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "code_verifier does not match the code challenge",
        ));
    }
    let audience = match &code.resource {
        Some(resource) => resource.clone(),
        None => identity.default_audience(Some(app)),
    };
    issue_user_tokens(
        identity,
        realm,
        app,
        &UserGrant {
            user_id: &code.user_id,
            scope: &code.scope,
            audience: &audience,
            resource: code.resource.as_deref(),
            family_id: &code.family_id,
            auth_time: code.auth_time,
            nonce: code.nonce.as_deref(),
            grant_type: "authorization_code",
            id_token: true,
        },
    )
    .await
}

struct UserGrant<'a> {
    user_id: &'a str,
    scope: &'a str,
    audience: &'a str,
    resource: Option<&'a str>,
    family_id: &'a str,
    auth_time: i64,
    nonce: Option<&'a str>,
    grant_type: &'a str,
    id_token: bool,
}

async fn issue_user_tokens(
    identity: &Identity,
    realm: &RealmRequest,
    app: &App,
    grant: &UserGrant<'_>,
) -> Result<Value, OAuthError> {
    let minted = identity
        .mint_access_token(
            &Grant {
                realm: &realm.realm,
                subject: grant.user_id,
                client_id: &app.client_id,
                scope: grant.scope,
                audience: grant.audience,
                family_id: Some(grant.family_id),
                auth_time: Some(grant.auth_time),
                grant_type: grant.grant_type,
            },
            &realm.context,
        )
        .await
        .map_err(|e| internal(&e))?;
    let mut body = Map::new();
    body.insert("access_token".into(), Value::String(minted.access_token));
    body.insert("token_type".into(), Value::String("Bearer".into()));
    body.insert("expires_in".into(), json!(minted.expires_in));
    body.insert("scope".into(), Value::String(grant.scope.to_owned()));
    let scopes: Vec<&str> = grant.scope.split(' ').collect();
    if app.allows_grant("refresh_token") {
        let refresh = keyscope_oauth::token::random_token(32);
        let now = unix_now();
        identity
            .store()
            .insert_refresh(&NewRefresh {
                token_digest: keyscope_oauth::token::token_digest(&refresh),
                family_id: grant.family_id.to_owned(),
                realm_id: realm.realm.clone(),
                client_id: app.client_id.clone(),
                user_id: Some(grant.user_id.to_owned()),
                scope: grant.scope.to_owned(),
                resource: grant.resource.map(str::to_owned),
                auth_time: Some(grant.auth_time),
                created_at: now,
                expires_at: now + identity.config().refresh_token_ttl,
            })
            .await
            .map_err(|e| internal(&e.into()))?;
        body.insert("refresh_token".into(), Value::String(refresh));
    }
    if grant.id_token && scopes.contains(&"openid") {
        let id_token = identity
            .mint_id_token(
                &realm.realm,
                grant.user_id,
                &app.client_id,
                Some(grant.auth_time),
                grant.nonce,
            )
            .map_err(|e| internal(&e))?;
        body.insert("id_token".into(), Value::String(id_token));
    }
    Ok(Value::Object(body))
}

async fn audit_family_revoked(
    identity: &Identity,
    realm: &RealmRequest,
    family: &str,
    why: &str,
    tokens: u64,
) {
    let event = Event::new("TokenRevoked")
        .with("OrganizationId", Some(&realm.realm))
        .with("TokenFamily", Some(family))
        .with("Reason", Some(why))
        .with_value("AccessTokensRevoked", json!(tokens))
        .context(&realm.context);
    if let Err(e) = identity.audit().record(event.into_map()).await {
        tracing::error!(error = %e, "recording a family revocation failed");
    }
}

async fn refresh_grant(
    identity: &Identity,
    realm: &RealmRequest,
    app: &App,
    form: &Form,
) -> Result<Value, OAuthError> {
    let token = form.require("refresh_token")?;
    let digest = keyscope_oauth::token::token_digest(token);
    let store = identity.store();
    let invalid = || {
        OAuthError::new(
            ErrorCode::InvalidGrant,
            "the refresh token is invalid, expired or revoked",
        )
    };
    let peek = store
        .refresh(&digest)
        .await
        .map_err(|e| internal(&e.into()))?;
    match peek {
        Some(found)
            if found.token.realm_id == realm.realm && found.token.client_id == app.client_id => {}
        _ => return Err(invalid()),
    }
    let now = unix_now();
    let record = match store
        .spend_refresh(&digest, now)
        .await
        .map_err(|e| internal(&e.into()))?
    {
        RefreshOutcome::Fresh(record) => record,
        RefreshOutcome::Replayed(record) => {
            // A spent token came back: it was stolen, or the client is confused. Either way
            // the whole family goes (RFC 9700 §4.14.2).
            let revoked = store
                .revoke_family(record.family_id(), "refresh token replayed", now)
                .await
                .map_err(|e| internal(&e.into()))?;
            audit_family_revoked(
                identity,
                realm,
                record.family_id(),
                "refresh token replayed",
                revoked,
            )
            .await;
            return Err(invalid());
        }
        RefreshOutcome::FamilyRevoked(_) | RefreshOutcome::Expired(_) | RefreshOutcome::Unknown => {
            return Err(invalid());
        }
    };
    let granted: Vec<String> = scope::parse_scope(&record.token.scope)?;
    let scope = match form.get("scope") {
        None => record.token.scope.clone(),
        Some(requested) => {
            let requested = scope::parse_scope(requested)?;
            if requested.iter().any(|s| !granted.contains(s)) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "the scope exceeds what was granted",
                ));
            }
            scope::join_scope(&requested)
        }
    };
    let Some(user_id) = record.token.user_id.as_deref() else {
        return Err(invalid());
    };
    let audience = match &record.token.resource {
        Some(resource) => resource.clone(),
        None => identity.default_audience(Some(app)),
    };
    if let Some(requested) = form.get("resource")
        && requested != audience
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            "the resource differs from the original grant",
        ));
    }
    issue_user_tokens(
        identity,
        realm,
        app,
        &UserGrant {
            user_id,
            scope: &scope,
            audience: &audience,
            resource: record.token.resource.as_deref(),
            family_id: record.family_id(),
            auth_time: record.token.auth_time.unwrap_or(record.token.created_at),
            nonce: None,
            grant_type: "refresh_token",
            id_token: true,
        },
    )
    .await
}

// ----- authorization endpoint -----

/// The validated parameters of an authorization request.
struct AuthorizeRequest {
    app: App,
    redirect_uri: String,
    state: Option<String>,
    scope: String,
    challenge: String,
    nonce: Option<String>,
    resource: Option<String>,
}

/// Where an authorization error goes: to the client (a redirect) once the client and its
/// redirect URI are known, else to the user (a page), per RFC 6749 §4.1.2.1.
enum AuthorizeFailure {
    Page(String),
    Redirect {
        uri: String,
        state: Option<String>,
        error: OAuthError,
    },
}

const AUTHORIZE_PARAMS: [&str; 9] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "resource",
];

async fn check_authorize(
    identity: &Identity,
    realm: &RealmRequest,
    form: &Form,
) -> Result<AuthorizeRequest, AuthorizeFailure> {
    let client_id = form
        .get("client_id")
        .ok_or_else(|| AuthorizeFailure::Page("The request has no client_id.".into()))?;
    let app = identity
        .app(client_id)
        .await
        .ok()
        .flatten()
        .filter(|a| a.realm_id == realm.realm)
        .ok_or_else(|| {
            AuthorizeFailure::Page("The application is not registered in this realm.".into())
        })?;
    let redirect_uri = form
        .get("redirect_uri")
        .ok_or_else(|| AuthorizeFailure::Page("The request has no redirect_uri.".into()))?;
    if !redirect::redirect_uri_matches(&app.redirect_uris, redirect_uri) {
        return Err(AuthorizeFailure::Page(
            "The redirect_uri is not registered for this application.".into(),
        ));
    }
    let state = form.get("state").map(str::to_owned);
    let fail = |error: OAuthError| AuthorizeFailure::Redirect {
        uri: redirect_uri.to_owned(),
        state: state.clone(),
        error,
    };
    match form.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(fail(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            )));
        }
        None => {
            return Err(fail(OAuthError::invalid_request(
                "missing parameter response_type",
            )));
        }
    }
    if !app.allows_grant("authorization_code") {
        return Err(fail(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization code flow",
        )));
    }
    if form.get("prompt") == Some("none") {
        return Err(fail(OAuthError::new(
            ErrorCode::LoginRequired,
            "there are no sign-in sessions; the user must sign in",
        )));
    }
    if form.contains("request") || form.contains("request_uri") {
        return Err(fail(OAuthError::invalid_request(
            "request objects are not supported",
        )));
    }
    let challenge = form.get("code_challenge").ok_or_else(|| {
        fail(OAuthError::invalid_request(
            "PKCE is required: missing code_challenge (S256)",
        ))
    })?;
    pkce::check_challenge(challenge, form.get("code_challenge_method")).map_err(fail)?;
    let scopes = scope::parse_scope(form.get("scope").unwrap_or_default()).map_err(fail)?;
    let resource = form.get("resource").map(str::to_owned);
    if let Some(resource) = &resource {
        audience(identity, &app, Some(resource)).map_err(fail)?;
    }
    let nonce = form.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > 512) {
        return Err(fail(OAuthError::invalid_request(
            "nonce is longer than 512 bytes",
        )));
    }
    Ok(AuthorizeRequest {
        redirect_uri: redirect_uri.to_owned(),
        state,
        scope: scope::join_scope(&scopes),
        challenge: challenge.to_owned(),
        nonce,
        resource,
        app,
    })
}

fn page_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    for (name, value) in page::PAGE_SECURITY_HEADERS {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    response
}

fn redirect_to(uri: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(uri) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn authorize_failure(realm: &RealmRequest, failure: AuthorizeFailure) -> Response {
    match failure {
        AuthorizeFailure::Page(message) => page_response(
            StatusCode::BAD_REQUEST,
            page::render_error_page("Sign-in request refused", &message),
        ),
        AuthorizeFailure::Redirect { uri, state, error } => {
            let mut params = vec![
                ("error", error.code.as_str()),
                ("error_description", error.description.as_str()),
                ("iss", realm.issuer.as_str()),
            ];
            if let Some(state) = &state {
                params.push(("state", state));
            }
            redirect_to(&redirect::authorization_response(&uri, &params))
        }
    }
}

fn render_sign_in(
    realm: &RealmRequest,
    request: &AuthorizeRequest,
    form: &Form,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let hidden: Vec<(&str, &str)> = AUTHORIZE_PARAMS
        .iter()
        .filter_map(|name| form.get(name).map(|v| (*name, v)))
        .collect();
    let action = format!("{}/authorize", realm.issuer);
    let display = if realm.realm == keyscope_store::CONSUMER_REALM {
        "Personal accounts".to_owned()
    } else {
        format!("Tenant {}", realm.realm)
    };
    page_response(
        status,
        page::SignInPage {
            realm_display: &display,
            client_name: &request.app.name,
            action: &action,
            hidden: &hidden,
            username,
            error,
        }
        .render(),
    )
}

async fn authorize_get(
    State(identity): State<AppState>,
    realm: RealmRequest,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let form = match Form::parse(uri.query().unwrap_or_default().as_bytes()) {
        Ok(form) => form,
        Err(e) => {
            return page_response(
                StatusCode::BAD_REQUEST,
                page::render_error_page("Sign-in request refused", &e.description),
            );
        }
    };
    match check_authorize(&identity, &realm, &form).await {
        Ok(request) => render_sign_in(
            &realm,
            &request,
            &form,
            form.get("login_hint").unwrap_or_default(),
            None,
            StatusCode::OK,
        ),
        Err(failure) => {
            audit_sign_in(
                &identity,
                &realm,
                None,
                None,
                "Failure",
                Some("invalid_authorization_request"),
            )
            .await;
            authorize_failure(&realm, failure)
        }
    }
}

async fn audit_sign_in(
    identity: &Identity,
    realm: &RealmRequest,
    username: Option<&str>,
    client: Option<&str>,
    status: &str,
    reason: Option<&str>,
) {
    let event = Event::new("SignIn")
        .with("OrganizationId", Some(&realm.realm))
        .with("UserId", username)
        .with("AppId", client)
        .with("ResultStatus", Some(status))
        .with("Reason", reason)
        .context(&realm.context);
    if let Err(e) = identity.audit().record(event.into_map()).await {
        tracing::error!(error = %e, "recording a sign-in failed");
    }
}

async fn authorize_post(
    State(identity): State<AppState>,
    realm: RealmRequest,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let form = match read_form(&headers, body) {
        Ok(form) => form,
        Err(e) => {
            return page_response(
                StatusCode::BAD_REQUEST,
                page::render_error_page("Sign-in request refused", &e.description),
            );
        }
    };
    let request = match check_authorize(&identity, &realm, &form).await {
        Ok(request) => request,
        Err(failure) => {
            audit_sign_in(
                &identity,
                &realm,
                None,
                None,
                "Failure",
                Some("invalid_authorization_request"),
            )
            .await;
            return authorize_failure(&realm, failure);
        }
    };
    let username = form.get("username").unwrap_or_default();
    let password_text = form.get("password").unwrap_or_default();
    let now = unix_now();
    let ip = realm.context.ip.as_deref();
    if let Some(wait) = identity.throttle().blocked(&realm.realm, username, ip, now) {
        audit_sign_in(
            &identity,
            &realm,
            Some(username),
            Some(&request.app.client_id),
            "Failure",
            Some("throttled"),
        )
        .await;
        let message = format!(
            "Too many failed sign-ins. Try again in {} minutes.",
            (wait + 59) / 60
        );
        return render_sign_in(
            &realm,
            &request,
            &form,
            username,
            Some(&message),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let user = identity
        .store()
        .user_by_name(&realm.realm, username)
        .await
        .ok()
        .flatten();
    let phc = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| password::dummy_hash().to_owned());
    let candidate = zeroize::Zeroizing::new(password_text.to_owned());
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let verified = tokio::task::spawn_blocking(move || password::verify(&candidate, &phc))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| verified) else {
        identity.throttle().failed(&realm.realm, username, ip, now);
        audit_sign_in(
            &identity,
            &realm,
            Some(username),
            Some(&request.app.client_id),
            "Failure",
            Some("invalid_credentials"),
        )
        .await;
        return render_sign_in(
            &realm,
            &request,
            &form,
            username,
            Some("Incorrect username or password."),
            StatusCode::UNAUTHORIZED,
        );
    };
    identity.throttle().succeeded(&realm.realm, username);
    let code = keyscope_oauth::token::random_token(32);
    let family = crate::random_id(16);
    let store = identity.store();
    let stored = async {
        store
            .create_family(
                &family,
                &realm.realm,
                &request.app.client_id,
                Some(&user.id),
                now,
            )
            .await?;
        store
            .insert_code(&NewCode {
                code_digest: keyscope_oauth::token::token_digest(&code),
                family_id: family.clone(),
                realm_id: realm.realm.clone(),
                client_id: request.app.client_id.clone(),
                user_id: user.id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                scope: request.scope.clone(),
                resource: request.resource.clone(),
                nonce: request.nonce.clone(),
                code_challenge: request.challenge.clone(),
                auth_time: now,
                expires_at: now + identity.config().code_ttl,
            })
            .await
    }
    .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "storing an authorization code failed");
        return authorize_failure(
            &realm,
            AuthorizeFailure::Redirect {
                uri: request.redirect_uri,
                state: request.state,
                error: OAuthError::new(ErrorCode::ServerError, "internal error"),
            },
        );
    }
    audit_sign_in(
        &identity,
        &realm,
        Some(&user.id),
        Some(&request.app.client_id),
        "Success",
        None,
    )
    .await;
    let mut params = vec![("code", code.as_str()), ("iss", realm.issuer.as_str())];
    if let Some(state) = &request.state {
        params.push(("state", state));
    }
    redirect_to(&redirect::authorization_response(
        &request.redirect_uri,
        &params,
    ))
}

// ----- userinfo, introspection, revocation -----

fn bearer_error(
    realm: &RealmRequest,
    status: StatusCode,
    code: Option<(ErrorCode, &str)>,
) -> Response {
    let mut response = status.into_response();
    if let Ok(value) = HeaderValue::from_str(&bearer::www_authenticate(&realm.issuer, code)) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    if let Some((code, description)) = code {
        let body = OAuthError::new(code, description).to_json();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        *response.body_mut() = axum::body::Body::from(body);
    }
    response
}

async fn audit_validation(
    identity: &Identity,
    realm: &RealmRequest,
    outcome: Result<&crate::AccessContext, &AccessRejection>,
    endpoint: &str,
) {
    // The validator already read these (verified on acceptance, as claimed on rejection).
    let facts = match outcome {
        Ok(context) => &context.facts,
        Err(rejection) => &rejection.facts,
    };
    // The reason only: these records never carried the detail.
    let refusal = outcome.err().map(|r| (r.reason.as_str(), ""));
    let event =
        Event::token_validated(Some(&realm.realm), endpoint, facts, refusal, &realm.context);
    if let Err(e) = identity.audit().record(event.into_map()).await {
        tracing::error!(error = %e, "recording a token decision failed");
    }
}

async fn userinfo(
    State(identity): State<AppState>,
    realm: RealmRequest,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = match bearer::bearer_token(authorization) {
        Ok(token) => token,
        Err(bearer::BearerError::Missing) => {
            return bearer_error(&realm, StatusCode::UNAUTHORIZED, None);
        }
        Err(_) => {
            return bearer_error(
                &realm,
                StatusCode::BAD_REQUEST,
                Some((ErrorCode::InvalidRequest, "malformed Authorization header")),
            );
        }
    };
    let outcome = identity.check_access_token(token, Some(&realm.realm)).await;
    audit_validation(&identity, &realm, outcome.as_ref(), "userinfo").await;
    let context = match outcome {
        Ok(context) => context,
        Err(rejection) => {
            return bearer_error(
                &realm,
                StatusCode::UNAUTHORIZED,
                Some((ErrorCode::InvalidToken, &rejection.reason)),
            );
        }
    };
    let scopes = context
        .claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !scopes.split(' ').any(|s| s == "openid") {
        return bearer_error(
            &realm,
            StatusCode::FORBIDDEN,
            Some((ErrorCode::InsufficientScope, "the openid scope is required")),
        );
    }
    let user = identity
        .store()
        .user(&realm.realm, &context.ledger.subject)
        .await
        .ok()
        .flatten();
    let Some(user) = user else {
        return bearer_error(
            &realm,
            StatusCode::UNAUTHORIZED,
            Some((ErrorCode::InvalidToken, "the token has no user")),
        );
    };
    json_response(
        StatusCode::OK,
        json!({
            "sub": user.id,
            "preferred_username": user.username,
            "tid": realm.realm,
        })
        .to_string(),
    )
}

/// Records a refused request at introspection or revocation, then answers it.
async fn audited_error(
    identity: &Identity,
    realm: &RealmRequest,
    endpoint: &str,
    client: Option<&str>,
    error: &OAuthError,
) -> Response {
    let event = Event::new("TokenValidated")
        .with("OrganizationId", Some(&realm.realm))
        .with("Resource", Some(endpoint))
        .with("AppId", client)
        .with("ResultStatus", Some("Failure"))
        .with("Reason", Some(error.code.as_str()))
        .with("Detail", Some(&error.description))
        .context(&realm.context);
    if let Err(e) = identity.audit().record(event.into_map()).await {
        tracing::error!(error = %e, "recording a refused request failed");
    }
    oauth_error(error)
}

/// The common start of introspection and revocation: a form body from a client of this realm
/// that authenticated, carrying a `token`. Every refusal is audited and answered.
async fn client_token_request(
    identity: &Identity,
    realm: &RealmRequest,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    endpoint: &str,
    allow_public: bool,
) -> Result<(Form, App), Response> {
    let form = match read_form(headers, body) {
        Ok(form) => form,
        Err(e) => return Err(audited_error(identity, realm, endpoint, None, &e).await),
    };
    let client = form.get("client_id");
    let app = match authenticate_client(identity, &realm.realm, headers, &form, allow_public).await
    {
        Ok(app) => app,
        Err(e) => return Err(audited_error(identity, realm, endpoint, client, &e).await),
    };
    if let Err(e) = form.require("token") {
        return Err(audited_error(identity, realm, endpoint, Some(&app.client_id), &e).await);
    }
    Ok((form, app))
}

async fn introspect(
    State(identity): State<AppState>,
    realm: RealmRequest,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let (form, app) =
        match client_token_request(&identity, &realm, &headers, body, "introspect", false).await {
            Ok(request) => request,
            Err(refused) => return refused,
        };
    let token = form.get("token").unwrap_or_default();
    let inactive = || json_response(StatusCode::OK, "{\"active\":false}".to_owned());
    if token.bytes().filter(|&b| b == b'.').count() == 2 {
        let outcome = identity.check_access_token(token, Some(&realm.realm)).await;
        audit_validation(&identity, &realm, outcome.as_ref(), "introspect").await;
        let Ok(context) = outcome else {
            return inactive();
        };
        let mut body = Map::new();
        body.insert("active".into(), Value::Bool(true));
        body.insert("token_type".into(), Value::String("Bearer".into()));
        for name in [
            "scope",
            "client_id",
            "sub",
            "aud",
            "iss",
            "exp",
            "iat",
            "nbf",
            "jti",
            "tid",
        ] {
            if let Some(value) = context.claims.get(name) {
                body.insert(name.into(), value.clone());
            }
        }
        if let Ok(Some(user)) = identity
            .store()
            .user(&realm.realm, &context.ledger.subject)
            .await
        {
            body.insert("username".into(), Value::String(user.username));
        }
        return json_response(StatusCode::OK, Value::Object(body).to_string());
    }
    let digest = keyscope_oauth::token::token_digest(token);
    let Ok(Some(record)) = identity.store().refresh(&digest).await else {
        return inactive();
    };
    let live = record.token.realm_id == realm.realm
        && record.token.client_id == app.client_id
        && record.spent_at.is_none()
        && record.token.expires_at > unix_now()
        && !identity
            .store()
            .family_revoked(record.family_id())
            .await
            .unwrap_or(true);
    if !live {
        return inactive();
    }
    json_response(
        StatusCode::OK,
        json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": record.token.scope,
            "client_id": record.token.client_id,
            "sub": record.token.user_id,
            "exp": record.token.expires_at,
            "iat": record.token.created_at,
            "iss": realm.issuer,
        })
        .to_string(),
    )
}

async fn revoke(
    State(identity): State<AppState>,
    realm: RealmRequest,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let (form, app) =
        match client_token_request(&identity, &realm, &headers, body, "revoke", true).await {
            Ok(request) => request,
            Err(refused) => return refused,
        };
    let token = form.get("token").unwrap_or_default();
    let not_yours = || {
        oauth_error(&OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the token was not issued to this client",
        ))
    };
    let store = identity.store();
    let now = unix_now();
    let digest = keyscope_oauth::token::token_digest(token);
    if let Ok(Some(record)) = store.refresh(&digest).await
        && record.token.realm_id == realm.realm
    {
        if record.token.client_id != app.client_id {
            return not_yours();
        }
        match store
            .revoke_family(record.family_id(), "revoked by the client", now)
            .await
        {
            Ok(count) => {
                audit_family_revoked(
                    &identity,
                    &realm,
                    record.family_id(),
                    "revoked by the client",
                    count,
                )
                .await
            }
            Err(e) => return oauth_error(&internal(&e.into())),
        }
        return json_response(StatusCode::OK, String::new());
    }
    if token.bytes().filter(|&b| b == b'.').count() == 2
        && let Ok(context) = identity.check_access_token(token, Some(&realm.realm)).await
    {
        if context.ledger.client_id != app.client_id {
            return not_yours();
        }
        if let Err(e) = store.revoke_issued(&context.ledger.jti, now).await {
            return oauth_error(&internal(&e.into()));
        }
        let event = Event::new("TokenRevoked")
            .with("OrganizationId", Some(&realm.realm))
            .with("TokenId", Some(&context.ledger.jti))
            .with("AppId", Some(&app.client_id))
            .with("Reason", Some("revoked by the client"))
            .context(&realm.context);
        if let Err(e) = identity.audit().record(event.into_map()).await {
            tracing::error!(error = %e, "recording a revocation failed");
        }
    }
    // RFC 7009 §2.2: an invalid or unknown token is not an error.
    json_response(StatusCode::OK, String::new())
}
