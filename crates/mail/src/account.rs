//! Mail accounts: one per user, in the user's realm, created with the standard mailboxes.

use keyscope_store::{MailAccount, MailboxRecord, Store, StoreError, User};

use crate::{MailError, MailService};

/// The mailboxes every new account gets: (name, RFC 8457 role), in display order.
pub const DEFAULT_MAILBOXES: [(&str, &str); 6] = [
    ("Inbox", "inbox"),
    ("Sent", "sent"),
    ("Drafts", "drafts"),
    ("Trash", "trash"),
    ("Junk", "junk"),
    ("Archive", "archive"),
];

/// The address of a user's account: the username itself when it is an address, otherwise
/// `{username}@{realm}.{mail_domain}`. Lower-case.
pub fn address_for(username: &str, realm_id: &str, mail_domain: &str) -> String {
    if username.contains('@') {
        username.to_ascii_lowercase()
    } else {
        format!("{username}@{realm_id}.{mail_domain}").to_ascii_lowercase()
    }
}

/// A fresh random id for a mail object, with a one-letter type prefix (JMAP Ids are
/// `[A-Za-z0-9_-]`, and a letter first keeps them safe in every client).
pub fn new_id(prefix: char) -> String {
    format!("{prefix}{}", keyscope_identity::random_id(12))
}

/// The user's mail account, created (with the default mailboxes) if it does not exist.
pub async fn ensure_account(
    store: &Store,
    user: &User,
    mail_domain: &str,
) -> Result<MailAccount, MailError> {
    if let Some(account) = store.mail_account_of_user(&user.realm_id, &user.id).await? {
        return Ok(account);
    }
    let account = MailAccount {
        id: new_id('a'),
        realm_id: user.realm_id.clone(),
        user_id: user.id.clone(),
        email: address_for(&user.username, &user.realm_id, mail_domain),
        name: user.username.clone(),
        created_at: crate::unix_now(),
    };
    let mailboxes: Vec<MailboxRecord> = DEFAULT_MAILBOXES
        .iter()
        .zip(1_i64..)
        .map(|((name, role), order)| MailboxRecord {
            id: new_id('m'),
            name: (*name).to_owned(),
            parent_id: None,
            role: Some((*role).to_owned()),
            sort_order: order * 10,
            is_subscribed: true,
        })
        .collect();
    match store.create_mail_account(&account, &mailboxes).await {
        Ok(()) => Ok(account),
        // Two requests raced to create it: the other one won, use its account.
        Err(StoreError::Conflict(what)) => store
            .mail_account_of_user(&user.realm_id, &user.id)
            .await?
            .ok_or(MailError::Invalid(format!(
                "cannot create the mail account: {what} already exists"
            ))),
        Err(e) => Err(e.into()),
    }
}

/// The account of `username` in `realm_id` (created if the user has none yet).
pub async fn account_of(
    store: &Store,
    realm_id: &str,
    username: &str,
    mail_domain: &str,
) -> Result<MailAccount, MailError> {
    let user = store
        .user_by_name(realm_id, username)
        .await?
        .ok_or_else(|| MailError::NotFound(format!("user {username:?} in realm {realm_id:?}")))?;
    ensure_account(store, &user, mail_domain).await
}

impl MailService {
    /// The user's mail account, created if needed.
    pub async fn ensure_account(&self, user: &User) -> Result<MailAccount, MailError> {
        ensure_account(self.store(), user, &self.config().mail_domain).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            address_for("Alice", "contoso", "keyscope.test"),
            "alice@contoso.keyscope.test"
        );
        assert_eq!(
            address_for("Bob@Fabrikam.example", "fabrikam", "keyscope.test"),
            "bob@fabrikam.example"
        );
        let id = new_id('m');
        assert!(keyscope_jmap::is_valid_id(&id), "{id}");
    }
}
