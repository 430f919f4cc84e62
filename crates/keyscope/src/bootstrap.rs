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
            "First start: created the operator account and the web mail client."
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
    let spec = AppSpec {
        realm: consumer.id.clone(),
        name: "Keyscope Mail (built-in)".to_owned(),
        confidential: false,
        grants: Vec::new(),
        redirect_uris: vec![mail_url.clone()],
        resources: vec![format!("{public}/jmap")],
    };
    let (mail_client_id, mail_note) = match identity.add_app(&spec, &context).await {
        Ok((app, _)) => {
            store
                .set_setting(WEB_MAIL_CLIENT_SETTING, &app.client_id)
                .await?;
            (Some(app.client_id), None)
        }
        // An http:// public URL that is not loopback cannot be a redirect URI (RFC 8252):
        // the server still runs, and the operator learns why there is no web client.
        Err(e) => (
            None,
            Some(format!(
                "the web mail client was not registered ({e}); use an https:// --public-url, \
                 then `keyscope app add --consumer --name Mail --redirect-uri {mail_url}`"
            )),
        ),
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
