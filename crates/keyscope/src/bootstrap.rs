//! First start of `keyscope up`: what a newcomer needs to sign in and read mail.
//!
//! On a store that has never been bootstrapped and holds no user and no tenant, `up` creates
//! an operator account in the consumer realm (an administrator of it, so incident notices
//! reach it), registers the built-in web mail client (a public app using the authorization
//! code flow with PKCE, redirecting to `{public_url}/mail/`) and files a welcome message in
//! the operator's Inbox. The generated password is printed once and never stored in clear
//! (only its Argon2 hash is). A store set up by hand is left alone.

use anyhow::Context;
use keyscope_identity::{AppSpec, Identity, RequestContext};
use zeroize::Zeroizing;

/// Set once bootstrapping ran (or was judged unnecessary), so it never runs twice.
const BOOTSTRAPPED_SETTING: &str = "bootstrapped_at";
/// The client_id of the built-in web mail client, for `/mail/config.json`.
pub(crate) const WEB_MAIL_CLIENT_SETTING: &str = "web_mail_client_id";
/// Set while the web mail client could not be registered (a public URL that cannot be a
/// redirect URI); every start tries again until it can.
const WEB_MAIL_PENDING_SETTING: &str = "web_mail_client_pending";
/// The operator's sign-in name.
pub(crate) const OPERATOR: &str = "operator";

/// What the first start created, to be printed once.
pub(crate) struct FirstStart {
    pub operator: String,
    pub password: Zeroizing<String>,
    pub mail_client_id: Option<String>,
    pub mail_url: String,
    /// Why the web mail client was not registered, if it was not.
    pub mail_note: Option<String>,
}

impl FirstStart {
    /// The one-time sign-in details, for the banner.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{}",
            if self.mail_client_id.is_some() {
                "First start: created the operator account and the web mail client."
            } else {
                "First start: created the operator account."
            }
        );
        let _ = writeln!(out, "  operator username:  {}", self.operator);
        let _ = writeln!(
            out,
            "  operator password:  {}   (shown only this once; it is stored hashed)",
            self.password.as_str()
        );
        let _ = writeln!(
            out,
            "  change it with:     keyscope user password --consumer {}",
            self.operator
        );
        if let Some(client_id) = &self.mail_client_id {
            let _ = writeln!(out, "  mail client_id:     {client_id}");
            let _ = writeln!(
                out,
                "  redirect_uri:       {}   (public client: authorization code + PKCE S256)",
                self.mail_url
            );
            let _ = writeln!(out, "  sign in and read:   {}", self.mail_url);
        }
        if let Some(note) = &self.mail_note {
            let _ = writeln!(out, "  note:               {note}");
        }
    }
}

/// Bootstraps a fresh store; `None` when there was nothing to do.
pub(crate) async fn first_start(identity: &Identity) -> anyhow::Result<Option<FirstStart>> {
    let store = identity.store();
    if store.setting(BOOTSTRAPPED_SETTING).await?.is_some() {
        return Ok(None);
    }
    let consumer = identity.realm(None).await?;
    let now = keyscope_identity::unix_now().to_string();
    let set_up_by_hand =
        !store.users(&consumer.id).await?.is_empty() || store.realms().await?.len() > 1;
    if set_up_by_hand {
        store.set_setting(BOOTSTRAPPED_SETTING, &now).await?;
        return Ok(None);
    }
    let context = RequestContext::operator();
    let (user, password) = identity
        .add_user(&consumer, OPERATOR, None, &context)
        .await
        .context("creating the operator account")?;
    let password = password.context("the operator password was not generated")?;
    store
        .set_realm_admin(&consumer.id, &user.username, true)
        .await?;

    let public = identity.config().public_url.clone();
    let mail_url = format!("{public}/mail/");
    let (mail_client_id, mail_note) = match register_web_mail_client(identity).await? {
        Ok(client_id) => (Some(client_id), None),
        Err(note) => {
            store.set_setting(WEB_MAIL_PENDING_SETTING, "1").await?;
            (None, Some(note))
        }
    };
    let welcome = welcome_message(&public, OPERATOR);
    crate::mail::deliver_to_inbox(store, &consumer.id, OPERATOR, &welcome)
        .await
        .context("filing the welcome message")?;
    store.set_setting(BOOTSTRAPPED_SETTING, &now).await?;
    Ok(Some(FirstStart {
        operator: user.username,
        password,
        mail_client_id,
        mail_url,
        mail_note,
    }))
}

/// Registers the built-in web mail client for the current public URL. `Ok(Err(note))` when
/// the public URL cannot be a redirect URI (plain http:// off loopback, RFC 8252).
async fn register_web_mail_client(identity: &Identity) -> anyhow::Result<Result<String, String>> {
    let public = identity.config().public_url.clone();
    let mail_url = format!("{public}/mail/");
    let consumer = identity.realm(None).await?;
    let spec = AppSpec {
        realm: consumer.id.clone(),
        name: "Keyscope Mail (built-in)".to_owned(),
        confidential: false,
        grants: Vec::new(),
        redirect_uris: vec![mail_url.clone()],
        resources: vec![format!("{public}/jmap")],
    };
    let app = match identity.add_app(&spec, &RequestContext::operator()).await {
        Ok((app, _)) => app,
        Err(keyscope_identity::IdentityError::Invalid(why)) => {
            return Ok(Err(format!(
                "the web mail client is not registered: {mail_url} cannot be its redirect URI \
                 ({why}); restart with an https:// --public-url (or an http:// one on a \
                 loopback address) and it will be"
            )));
        }
        Err(e) => return Err(e).context("registering the web mail client"),
    };
    identity
        .store()
        .set_setting(WEB_MAIL_CLIENT_SETTING, &app.client_id)
        .await?;
    Ok(Ok(app.client_id))
}

/// On a later start: registers the web mail client if the first start could not and the
/// public URL now allows it. Returns its client_id when it did.
pub(crate) async fn retry_web_mail_client(identity: &Identity) -> anyhow::Result<Option<String>> {
    let store = identity.store();
    if store.setting(WEB_MAIL_PENDING_SETTING).await?.is_none()
        || store.setting(WEB_MAIL_CLIENT_SETTING).await?.is_some()
    {
        return Ok(None);
    }
    match register_web_mail_client(identity).await? {
        Ok(client_id) => {
            store.set_setting(WEB_MAIL_PENDING_SETTING, "").await?;
            Ok(Some(client_id))
        }
        Err(note) => {
            tracing::warn!("{note}");
            Ok(None)
        }
    }
}

/// The welcome message: where to go next.
fn welcome_message(public: &str, username: &str) -> Vec<u8> {
    let date = crate::incident::rfc5322_now();
    let id = keyscope_identity::random_id(12);
    format!(
        "From: Keyscope <keyscope@keyscope.invalid>\r\n\
         To: {username}\r\n\
         Subject: Welcome to Keyscope\r\n\
         Date: {date}\r\n\
         Message-ID: <welcome-{id}@keyscope.invalid>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         You are reading this through a token that Keyscope issued and recorded: the mail\r\n\
         service opened this mailbox only after checking the token's signing key against\r\n\
         its issuer and realm, and finding the token in the issuance ledger.\r\n\
         \r\n\
         Next steps:\r\n\
         - keyscope demo storm-0558      replays the 2023 attack against a fresh Keyscope\r\n\
         - keyscope tenant create NAME   creates an enterprise tenant (its own keys)\r\n\
         - keyscope audit search --op MailItemsAccessed   shows this read in the audit log\r\n\
         - {public}/metrics              Prometheus metrics (loopback only by default)\r\n"
    )
    .into_bytes()
}
