//! The drill's HTTP side: a small blocking wrapper over the async `reqwest` client, the
//! regular mail client's sign-in (authorization code + PKCE S256 through the real sign-in
//! page) and its JMAP reads, and the bearer refusal reason.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A user agent per actor, so the audit log tells them apart.
pub(super) const MAIL_CLIENT_UA: &str = concat!("keyscope-demo-mail/", env!("CARGO_PKG_VERSION"));
pub(super) const ATTACKER_UA: &str = "python-requests/2.31.0";
pub(super) const DRILL_UA: &str = concat!("keyscope-demo/", env!("CARGO_PKG_VERSION"));

/// An answer, read whole.
#[derive(Debug)]
pub(super) struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("not JSON (HTTP {}): {}", self.status, short(&self.text())))
    }

    /// The refusal reason of a 401 from a resource: `error_description` of the
    /// `WWW-Authenticate: Bearer` challenge.
    pub fn bearer_reason(&self) -> Option<String> {
        self.header("www-authenticate")
            .and_then(|h| challenge_param(h, "error_description"))
    }
}

fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

/// A parameter of a `WWW-Authenticate` challenge (`name="value"`, quotes optional).
pub(super) fn challenge_param(header: &str, name: &str) -> Option<String> {
    let mut rest = header;
    while let Some(at) = rest.find(name) {
        let before_ok = rest
            .get(..at)
            .and_then(|b| b.chars().last())
            .is_none_or(|c| c == ' ' || c == ',');
        let after = rest.get(at + name.len()..).unwrap_or_default();
        if before_ok && let Some(value) = after.trim_start().strip_prefix('=') {
            let value = value.trim_start();
            return Some(match value.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap_or_default().to_owned(),
                None => value
                    .split([',', ' '])
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        rest = after;
    }
    None
}

/// A blocking HTTP client for the drill's sequential story.
pub(super) struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> anyhow::Result<Http> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            // The drill talks to its own server on 127.0.0.1 only, never through a proxy.
            .no_proxy()
            .build()
            .context("HTTP client")?;
        Ok(Http { runtime, client })
    }

    /// Runs a future on the drill's runtime (store access beside the HTTP calls).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Response> {
        self.runtime.block_on(async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = response.bytes().await?.to_vec();
            Ok(Response {
                status,
                headers,
                body,
            })
        })
    }

    pub fn get(&self, url: &str, bearer: Option<&str>) -> anyhow::Result<Response> {
        self.get_as(url, bearer, DRILL_UA)
    }

    pub fn get_as(&self, url: &str, bearer: Option<&str>, agent: &str) -> anyhow::Result<Response> {
        let mut request = self.client.get(url).header("user-agent", agent);
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(request)
            .with_context(|| format!("GET {}", without_query(url)))
    }

    pub fn post_form(
        &self,
        url: &str,
        pairs: &[(&str, &str)],
        agent: &str,
    ) -> anyhow::Result<Response> {
        let request = self
            .client
            .post(url)
            .header("user-agent", agent)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs));
        self.send(request).with_context(|| format!("POST {url}"))
    }

    pub fn post_json(
        &self,
        url: &str,
        bearer: &str,
        body: &Value,
        agent: &str,
    ) -> anyhow::Result<Response> {
        let request = self
            .client
            .post(url)
            .header("user-agent", agent)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {bearer}"))
            .body(body.to_string());
        self.send(request).with_context(|| format!("POST {url}"))
    }
}

fn without_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Percent-encodes everything but the RFC 3986 unreserved characters.
pub(super) fn enc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes `application/x-www-form-urlencoded` text (a redirect's query).
pub(super) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(value) = hex {
                    out.push(value);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The attributes of one HTML start tag (`<input type="hidden" name="x" value="y">`), values
/// unescaped.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let name = rest
            .get(..eq)
            .unwrap_or_default()
            .rsplit([' ', '\n', '\t'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let after = rest.get(eq + 2..).unwrap_or_default();
        let end = after.find('"').unwrap_or(after.len());
        out.push((name, unescape_html(after.get(..end).unwrap_or_default())));
        rest = after.get(end + 1..).unwrap_or_default();
    }
    out
}

fn unescape_html(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The sign-in page's form: its action and hidden fields.
pub(super) fn sign_in_form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let end = start + html.get(start..)?.find('>')?;
    let form_attrs = attributes(html.get(start..end)?);
    let action = form_attrs
        .iter()
        .find(|(n, _)| n == "action")
        .map(|(_, v)| v.clone())?;
    let mut hidden = Vec::new();
    let mut rest = html.get(end..)?;
    while let Some(at) = rest.find("<input") {
        let close = at + rest.get(at..)?.find('>')?;
        let attrs = attributes(rest.get(at..close)?);
        let get = |name: &str| {
            attrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        if get("type").as_deref() == Some("hidden")
            && let (Some(name), Some(value)) = (get("name"), get("value"))
        {
            hidden.push((name, value));
        }
        rest = rest.get(close..)?;
    }
    Some((action, hidden))
}

/// A public mail client registered in a realm.
pub(super) struct MailClient {
    pub issuer: String,
    pub client_id: String,
    pub redirect_uri: String,
}

/// What the mail client read from an Inbox.
#[derive(Debug, Clone)]
pub(super) struct Inbox {
    pub total: u64,
    pub subjects: Vec<String>,
}

/// The authorization-code flow with PKCE, as a browser and the mail client do it: the
/// sign-in page, the form, the redirect with the code, the code exchange. Returns the
/// access token.
pub(super) fn sign_in(
    http: &Http,
    client: &MailClient,
    username: &str,
    password: &str,
) -> anyhow::Result<String> {
    let verifier = keyscope_identity::random_id(32);
    let challenge = keyscope_jose::b64::encode_url(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    );
    let state = keyscope_identity::random_id(16);
    let nonce = keyscope_identity::random_id(16);
    let query = form(&[
        ("response_type", "code"),
        ("client_id", &client.client_id),
        ("redirect_uri", &client.redirect_uri),
        ("scope", "openid"),
        ("state", &state),
        ("nonce", &nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let page = http.get_as(
        &format!("{}/authorize?{query}", client.issuer),
        None,
        MAIL_CLIENT_UA,
    )?;
    if page.status != 200 {
        bail!(
            "the sign-in page answered HTTP {}: {}",
            page.status,
            short(&page.text())
        );
    }
    let (action, mut fields) =
        sign_in_form(&page.text()).context("the sign-in page has no form")?;
    let action = if action.starts_with('/') {
        let origin = client
            .issuer
            .splitn(4, '/')
            .take(3)
            .collect::<Vec<_>>()
            .join("/");
        format!("{origin}{action}")
    } else {
        action
    };
    fields.push(("username".into(), username.into()));
    fields.push(("password".into(), password.into()));
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let signed_in = http.post_form(&action, &pairs, MAIL_CLIENT_UA)?;
    let location = signed_in
        .header("location")
        .filter(|_| signed_in.status == 303 || signed_in.status == 302)
        .with_context(|| {
            format!(
                "signing in as {username} answered HTTP {} without a redirect",
                signed_in.status
            )
        })?;
    if !location.starts_with(&client.redirect_uri) {
        bail!("the sign-in redirected to {location}, not to the registered redirect URI");
    }
    let params = parse_query(location.split_once('?').map_or("", |(_, q)| q));
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(error) = param("error") {
        bail!(
            "the sign-in failed: {error} {}",
            param("error_description").unwrap_or_default()
        );
    }
    if param("state") != Some(state.as_str()) {
        bail!("the redirect's state does not match the request's");
    }
    if param("iss") != Some(client.issuer.as_str()) {
        bail!("the redirect names issuer {:?}", param("iss"));
    }
    let code = param("code").context("the redirect carries no code")?;
    let exchanged = http.post_form(
        &format!("{}/token", client.issuer),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &client.redirect_uri),
            ("client_id", &client.client_id),
            ("code_verifier", &verifier),
        ],
        MAIL_CLIENT_UA,
    )?;
    if exchanged.status != 200 {
        bail!(
            "the code exchange answered HTTP {}: {}",
            exchanged.status,
            short(&exchanged.text())
        );
    }
    exchanged
        .json()?
        .get("access_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the token response has no access_token")
}

const USING: [&str; 2] = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"];

/// One JMAP API request; the method responses.
pub(super) fn jmap(http: &Http, public: &str, token: &str, calls: Value) -> anyhow::Result<Value> {
    let body = json!({"using": USING, "methodCalls": calls});
    let response = http.post_json(&format!("{public}/jmap/api"), token, &body, MAIL_CLIENT_UA)?;
    if response.status != 200 {
        bail!(
            "the JMAP API answered HTTP {}: {}",
            response.status,
            short(&response.text())
        );
    }
    let value = response.json()?;
    value
        .get("methodResponses")
        .cloned()
        .context("a JMAP response without methodResponses")
}

/// The response of method call `tag` (its arguments object).
fn call<'a>(responses: &'a Value, tag: &str) -> anyhow::Result<&'a Value> {
    let found = responses
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r.get(2).and_then(Value::as_str) == Some(tag))
        .with_context(|| format!("no response to JMAP call {tag}"))?;
    if found.get(0).and_then(Value::as_str) == Some("error") {
        bail!(
            "JMAP call {tag} failed: {}",
            found.get(1).unwrap_or(&Value::Null)
        );
    }
    found.get(1).context("a JMAP response without arguments")
}

/// What the regular mail client does on start: the session, the mailboxes, the newest
/// messages of the Inbox (optionally only those whose subject contains `subject`).
pub(super) fn read_inbox(
    http: &Http,
    public: &str,
    token: &str,
    subject: Option<&str>,
) -> anyhow::Result<Inbox> {
    let session = http.get_as(
        &format!("{public}/.well-known/jmap"),
        Some(token),
        MAIL_CLIENT_UA,
    )?;
    if session.status != 200 {
        bail!(
            "the JMAP session answered HTTP {} ({})",
            session.status,
            session.bearer_reason().unwrap_or_default()
        );
    }
    let account_id = session
        .json()?
        .pointer("/primaryAccounts/urn:ietf:params:jmap:mail")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the session names no mail account")?;
    let mailboxes = jmap(
        http,
        public,
        token,
        json!([["Mailbox/get", {"accountId": account_id, "ids": null,
                                "properties": ["name", "role", "totalEmails"]}, "m"]]),
    )?;
    let inbox = call(&mailboxes, "m")?
        .get("list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("inbox"))
        .context("the account has no Inbox")?;
    let inbox_id = inbox.get("id").and_then(Value::as_str).unwrap_or_default();
    let mut filter = json!({"inMailbox": inbox_id});
    if let (Some(text), Some(map)) = (subject, filter.as_object_mut()) {
        map.insert("subject".into(), json!(text));
    }
    let listed = jmap(
        http,
        public,
        token,
        json!([
            ["Email/query", {"accountId": account_id, "filter": filter,
                             "sort": [{"property": "receivedAt", "isAscending": false}],
                             "limit": 20, "calculateTotal": true}, "q"],
            ["Email/get", {"accountId": account_id, "properties": ["subject", "from", "receivedAt"],
                           "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}}, "g"]
        ]),
    )?;
    let total = call(&listed, "q")?
        .get("total")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let subjects = call(&listed, "g")?
        .get("list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            e.get("subject")
                .and_then(Value::as_str)
                .unwrap_or("(no subject)")
                .to_owned()
        })
        .collect();
    Ok(Inbox { total, subjects })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_reason_from_a_bearer_challenge() {
        let header = r#"Bearer realm="keyscope-mail", error="invalid_token", error_description="key_issuer_mismatch""#;
        assert_eq!(
            challenge_param(header, "error_description").as_deref(),
            Some("key_issuer_mismatch")
        );
        assert_eq!(
            challenge_param(header, "error").as_deref(),
            Some("invalid_token")
        );
        assert_eq!(challenge_param("Bearer realm=\"x\"", "error"), None);
    }

    #[test]
    fn finds_the_hidden_fields_of_the_sign_in_form() {
        let html = "<h1>Sign in</h1>\n<form method=\"post\" action=\"/t/contoso/authorize\">\n\
            <input type=\"hidden\" name=\"state\" value=\"a&amp;b&quot;c\">\n\
            <input type=\"hidden\" name=\"client_id\" value=\"mail\">\n\
            <input id=\"username\" name=\"username\" type=\"text\" value=\"\" required>\n";
        let (action, hidden) = sign_in_form(html).unwrap_or_default();
        assert_eq!(action, "/t/contoso/authorize");
        assert_eq!(
            hidden,
            vec![
                ("state".to_owned(), "a&b\"c".to_owned()),
                ("client_id".to_owned(), "mail".to_owned())
            ]
        );
    }

    #[test]
    fn query_round_trip() {
        let text = form(&[("code", "a b/c+d"), ("state", "x=y&z")]);
        assert_eq!(
            parse_query(&text),
            vec![
                ("code".to_owned(), "a b/c+d".to_owned()),
                ("state".to_owned(), "x=y&z".to_owned())
            ]
        );
        assert_eq!(parse_query("a=%zz&b")[0].1, "%zz");
    }
}
