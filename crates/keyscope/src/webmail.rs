//! The built-in web mail client at `/mail/`: a static page that signs in with the
//! authorization code flow and PKCE (as the public app registered at first start) and reads
//! the Inbox over JMAP with the token it got. It is an ordinary OAuth client of the service:
//! it holds the access token in memory only and renders mail with `textContent` (never as
//! HTML). Strict headers: a Content-Security-Policy allowing only this origin's script,
//! no referrer (the code is in the URL for a moment), no framing.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use keyscope_identity::Identity;
use serde_json::json;

const INDEX_HTML: &str = include_str!("webmail/index.html");
const APP_JS: &str = include_str!("webmail/app.js");
const APP_CSS: &str = include_str!("webmail/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `/mail/` and its assets.
pub(crate) fn router(identity: Arc<Identity>) -> Router {
    Router::new()
        .route("/mail", get(|| async { Redirect::permanent("/mail/") }))
        .route(
            "/mail/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/mail/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/mail/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/mail/config.json", get(config))
        .with_state(identity)
}

fn hardened(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    hardened(body.into_response(), content_type)
}

/// What the page needs to sign in: the consumer realm's endpoints and the client_id
/// registered at first start.
async fn config(State(identity): State<Arc<Identity>>) -> Response {
    let client_id = identity
        .store()
        .setting(crate::bootstrap::WEB_MAIL_CLIENT_SETTING)
        .await;
    let issuer = identity.config().issuer(keyscope_store::CONSUMER_REALM);
    let public = &identity.config().public_url;
    let (status, body) = match client_id {
        Ok(Some(client_id)) => (
            StatusCode::OK,
            json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "client_id": client_id,
                "redirect_uri": format!("{public}/mail/"),
                "jmap_session": format!("{public}/.well-known/jmap"),
            }),
        ),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            json!({"error": "the web mail client is not registered (it is created on first start when the public URL can be a redirect URI)"}),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "the store is unavailable"}),
        ),
    };
    hardened(
        (status, body.to_string()).into_response(),
        "application/json",
    )
}
