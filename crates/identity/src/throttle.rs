//! Rate limiting of failed sign-ins, per account and per client IP, in memory (per node).
//! After `ACCOUNT_LIMIT` failures for one account (or `IP_LIMIT` from one address) within
//! `WINDOW_SECONDS`, further attempts are refused until the window has passed, without
//! checking the password, so guessing stays slow even across many accounts.

use std::collections::HashMap;
use std::sync::Mutex;

/// Failures per account within the window before it is locked.
pub const ACCOUNT_LIMIT: usize = 5;
/// Failures per client IP within the window before it is locked.
pub const IP_LIMIT: usize = 20;
/// The window.
pub const WINDOW_SECONDS: i64 = 15 * 60;
/// Most keys tracked; beyond this the oldest entries are dropped first.
const MAX_KEYS: usize = 100_000;

/// Failure counts by key (`acct:{realm}/{username}` or `ip:{address}`).
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, Vec<i64>>>,
}

impl Throttle {
    /// An empty throttle.
    pub fn new() -> Throttle {
        Throttle::default()
    }

    /// Seconds until an attempt for this account from this IP is allowed again, or `None`
    /// when it is allowed now.
    pub fn blocked(&self, realm: &str, username: &str, ip: Option<&str>, now: i64) -> Option<i64> {
        let Ok(map) = self.failures.lock() else {
            return Some(WINDOW_SECONDS);
        };
        let wait = |key: &str, limit: usize| -> Option<i64> {
            let times = map.get(key)?;
            let recent: Vec<i64> = times
                .iter()
                .copied()
                .filter(|t| now - t < WINDOW_SECONDS)
                .collect();
            (recent.len() >= limit).then(|| {
                let oldest = recent.iter().copied().min().unwrap_or(now);
                (oldest + WINDOW_SECONDS - now).max(1)
            })
        };
        let account = wait(&account_key(realm, username), ACCOUNT_LIMIT);
        let address = ip.and_then(|ip| wait(&format!("ip:{ip}"), IP_LIMIT));
        account.max(address)
    }

    /// Records a failure.
    pub fn failed(&self, realm: &str, username: &str, ip: Option<&str>, now: i64) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() >= MAX_KEYS {
            map.retain(|_, times| times.iter().any(|t| now - t < WINDOW_SECONDS));
        }
        let mut push = |key: String| {
            let times = map.entry(key).or_default();
            times.retain(|t| now - t < WINDOW_SECONDS);
            times.push(now);
        };
        push(account_key(realm, username));
        if let Some(ip) = ip {
            push(format!("ip:{ip}"));
        }
    }

    /// Clears an account's failures after a successful sign-in.
    pub fn succeeded(&self, realm: &str, username: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&account_key(realm, username));
        }
    }

    /// Drops entries older than the window.
    pub fn forget_old(&self, now: i64) {
        if let Ok(mut map) = self.failures.lock() {
            map.retain(|_, times| {
                times.retain(|t| now - t < WINDOW_SECONDS);
                !times.is_empty()
            });
        }
    }
}

fn account_key(realm: &str, username: &str) -> String {
    format!("acct:{realm}/{username}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_limit_and_unlocks_after_window() {
        let t = Throttle::new();
        for i in 0..ACCOUNT_LIMIT {
            assert_eq!(t.blocked("r", "alice", Some("1.2.3.4"), 100), None, "{i}");
            t.failed("r", "alice", Some("1.2.3.4"), 100);
        }
        assert!(t.blocked("r", "alice", Some("5.6.7.8"), 101).is_some());
        // Another account from the same IP is not locked yet.
        assert_eq!(t.blocked("r", "bob", Some("1.2.3.4"), 101), None);
        assert_eq!(t.blocked("r", "alice", None, 100 + WINDOW_SECONDS), None);
        t.succeeded("r", "alice");
        assert_eq!(t.blocked("r", "alice", None, 102), None);
    }

    #[test]
    fn ip_limit_spans_accounts() {
        let t = Throttle::new();
        for i in 0..IP_LIMIT {
            t.failed("r", &format!("user{i}"), Some("9.9.9.9"), 10);
        }
        assert!(t.blocked("r", "fresh", Some("9.9.9.9"), 11).is_some());
        assert_eq!(t.blocked("r", "fresh", Some("8.8.8.8"), 11), None);
        t.forget_old(10 + WINDOW_SECONDS);
        assert_eq!(
            t.blocked("r", "fresh", Some("9.9.9.9"), 10 + WINDOW_SECONDS),
            None
        );
    }
}
