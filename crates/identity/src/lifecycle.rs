//! The key lifecycle as a pure function: given the keys of a realm, the time and the policy,
//! which steps are due. The service applies them with conditional updates, so several nodes
//! running the same plan at once cannot both succeed (the database allows one active and one
//! pending key per realm).
//!
//! `pending` (published, not signing, for at least two JWKS cache lifetimes) → `active`
//! (signs) → `retiring` (published until every token it signed has expired) → `retired`
//! (unpublished). `revoked` can happen in any state and is applied by the operator, not here.

use keyscope_store::{KeyRecord, KeyState};

use crate::config::IdentityConfig;

/// One due step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make a new key for `realm`.
    Create {
        /// The realm.
        realm: String,
        /// `Active` only when the realm has nothing that could sign (first start, or its
        /// active key was revoked and nothing was pending): then a key that validators have
        /// not cached yet beats issuing nothing.
        state: KeyState,
        /// When it may start signing.
        activate_after: i64,
        /// End of its published validity window.
        not_after: i64,
    },
    /// Make the pending key `kid` active (the active one becomes retiring).
    Activate {
        /// The realm.
        realm: String,
        /// The pending key.
        kid: String,
    },
    /// Unpublish a retiring key whose tokens have all expired.
    Retire {
        /// The key.
        kid: String,
    },
}

/// An active key that has signed for longer than the rotation policy allows: rotation is
/// stuck (no node running, or failing), and it must be loud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    /// The realm.
    pub realm: String,
    /// The key.
    pub kid: String,
    /// Seconds it has been active.
    pub active_for: i64,
}

/// Slack before an active key counts as overdue: the lifecycle runs every few seconds, so a
/// key a little past its period is merely waiting for the next tick.
pub const OVERDUE_GRACE_SECONDS: i64 = 300;

/// The end of the validity window for a key that may start signing at `activate_after`: it
/// signs for one rotation period, and a second period covers a stalled rotation (flagged
/// overdue meanwhile) before its tokens start failing as `key_expired`.
pub fn not_after(config: &IdentityConfig, activate_after: i64) -> i64 {
    activate_after
        .saturating_add(config.rotation_period.saturating_mul(2))
        .saturating_add(config.longest_token_life())
}

/// The steps due for one realm at `now`. `keys` are that realm's keys, in any order.
pub fn plan(realm: &str, keys: &[KeyRecord], now: i64, config: &IdentityConfig) -> Vec<Step> {
    let mut steps = Vec::new();
    let active = keys.iter().find(|k| k.state == KeyState::Active);
    let pending = keys.iter().find(|k| k.state == KeyState::Pending);
    match (active, pending) {
        (None, Some(pending)) => steps.push(Step::Activate {
            realm: realm.to_owned(),
            kid: pending.kid.clone(),
        }),
        (None, None) => steps.push(Step::Create {
            realm: realm.to_owned(),
            state: KeyState::Active,
            activate_after: now,
            not_after: not_after(config, now),
        }),
        (Some(active), None) => {
            let due = rotation_due(active, config);
            if now >= due.saturating_sub(config.publish_lead()) {
                let activate_after = due.max(now.saturating_add(config.publish_lead()));
                steps.push(Step::Create {
                    realm: realm.to_owned(),
                    state: KeyState::Pending,
                    activate_after,
                    not_after: not_after(config, activate_after),
                });
            }
        }
        (Some(_), Some(pending)) => {
            if now >= pending.activate_after {
                steps.push(Step::Activate {
                    realm: realm.to_owned(),
                    kid: pending.kid.clone(),
                });
            }
        }
    }
    for key in keys.iter().filter(|k| k.state == KeyState::Retiring) {
        let since = key.retiring_at.unwrap_or(key.created_at);
        if now >= since.saturating_add(config.longest_token_life()) {
            steps.push(Step::Retire {
                kid: key.kid.clone(),
            });
        }
    }
    steps
}

/// When the active key's period ends.
fn rotation_due(active: &KeyRecord, config: &IdentityConfig) -> i64 {
    active
        .activated_at
        .unwrap_or(active.created_at)
        .saturating_add(config.rotation_period)
}

/// Active keys older than the policy.
pub fn overdue(keys: &[KeyRecord], now: i64, config: &IdentityConfig) -> Vec<Overdue> {
    keys.iter()
        .filter(|k| k.state == KeyState::Active)
        .filter_map(|k| {
            let active_for = now.saturating_sub(k.activated_at.unwrap_or(k.created_at));
            (active_for > config.rotation_period + OVERDUE_GRACE_SECONDS).then(|| Overdue {
                realm: k.realm_id.clone(),
                kid: k.kid.clone(),
                active_for,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> IdentityConfig {
        IdentityConfig::new("https://id.example")
    }

    fn key(kid: &str, state: KeyState, created: i64) -> KeyRecord {
        KeyRecord {
            kid: kid.into(),
            realm_id: "r".into(),
            alg: "ES256".into(),
            state,
            backend: "sealed".into(),
            key_reference: String::new(),
            public_jwk: String::new(),
            created_at: created,
            activated_at: (state == KeyState::Active).then_some(created),
            retiring_at: (state == KeyState::Retiring).then_some(created),
            retired_at: None,
            revoked_at: None,
            revoked_reason: None,
            activate_after: created,
            not_after: created + 1_000_000,
        }
    }

    /// Simulates the lifecycle applying its own plan every minute for three days, and checks
    /// the invariants at every step.
    #[test]
    fn three_days_of_rotation_keep_the_invariants() {
        let config = config();
        let mut keys: Vec<KeyRecord> = Vec::new();
        let mut next = 0;
        let mut activations = 0;
        for minute in 0..(3 * 24 * 60) {
            let now = minute * 60;
            for step in plan("r", &keys, now, &config) {
                match step {
                    Step::Create {
                        state,
                        activate_after,
                        not_after,
                        ..
                    } => {
                        next += 1;
                        let mut k = key(&format!("k{next}"), state, now);
                        k.activate_after = activate_after;
                        k.not_after = not_after;
                        keys.push(k);
                    }
                    Step::Activate { kid, .. } => {
                        activations += 1;
                        for k in keys.iter_mut() {
                            if k.state == KeyState::Active {
                                k.state = KeyState::Retiring;
                                k.retiring_at = Some(now);
                            }
                        }
                        let k = keys.iter_mut().find(|k| k.kid == kid).unwrap();
                        // Published for two cache lifetimes before it signs (except the
                        // very first key, which had nothing to take over from).
                        assert!(now - k.created_at >= config.publish_lead(), "{kid}");
                        k.state = KeyState::Active;
                        k.activated_at = Some(now);
                    }
                    Step::Retire { kid } => {
                        let k = keys.iter_mut().find(|k| k.kid == kid).unwrap();
                        assert!(now - k.retiring_at.unwrap() >= config.longest_token_life());
                        k.state = KeyState::Retired;
                    }
                }
            }
            let active: Vec<_> = keys
                .iter()
                .filter(|k| k.state == KeyState::Active)
                .collect();
            assert_eq!(active.len(), 1, "exactly one active key at minute {minute}");
            assert!(keys.iter().filter(|k| k.state == KeyState::Pending).count() <= 1);
            assert!(overdue(&keys, now, &config).is_empty(), "minute {minute}");
            // The active key is always inside its own validity window.
            assert!(active[0].not_after > now);
        }
        assert_eq!(activations, 2, "one rotation per day");
        assert!(keys.iter().filter(|k| k.state == KeyState::Retired).count() >= 2);
    }

    #[test]
    fn first_key_is_active_at_once() {
        let steps = plan("r", &[], 100, &config());
        assert!(matches!(
            &steps[..],
            [Step::Create {
                state: KeyState::Active,
                activate_after: 100,
                ..
            }]
        ));
    }

    #[test]
    fn after_revocation_a_pending_key_takes_over_at_once() {
        let keys = [
            key("old", KeyState::Revoked, 0),
            key("p", KeyState::Pending, 50),
        ];
        assert_eq!(
            plan("r", &keys, 60, &config()),
            [Step::Activate {
                realm: "r".into(),
                kid: "p".into()
            }]
        );
        let keys = [key("old", KeyState::Revoked, 0)];
        assert!(matches!(
            &plan("r", &keys, 60, &config())[..],
            [Step::Create {
                state: KeyState::Active,
                ..
            }]
        ));
    }

    #[test]
    fn a_stuck_rotation_is_overdue() {
        let config = config();
        let keys = [key("a", KeyState::Active, 0)];
        let late = config.rotation_period + OVERDUE_GRACE_SECONDS + 1;
        assert_eq!(overdue(&keys, late, &config).len(), 1);
        assert!(overdue(&keys, config.rotation_period, &config).is_empty());
    }
}
