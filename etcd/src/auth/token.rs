//! etcd's "simple" auth tokens: `<16 random letters>.<raft index>`, handed out by
//! `Authenticate` and valid on every member (each member learns them when it applies the
//! Authenticate entry). A token lives `--auth-token-ttl` after its last use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// The random part of a new token: 16 ASCII letters, as etcd's.
pub fn new_prefix() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
        .collect()
}

struct Held {
    user: String,
    expires: Instant,
}

/// The tokens this member knows, each with its user and expiry.
pub struct SimpleTokens {
    ttl: Duration,
    held: Mutex<HashMap<String, Held>>,
}

impl SimpleTokens {
    /// No tokens; each lives `ttl` after its last use.
    pub fn new(ttl: Duration) -> Self {
        SimpleTokens {
            ttl,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `token` name `user` until `ttl` passes without its use; drops expired ones.
    pub fn assign(&self, token: String, user: &str) {
        self.assign_at(token, user, Instant::now())
    }

    fn assign_at(&self, token: String, user: &str, now: Instant) {
        let mut held = self.held();
        held.retain(|_, h| h.expires > now);
        held.insert(
            token,
            Held {
                user: user.to_string(),
                expires: now + self.ttl,
            },
        );
    }

    /// The user `token` names, if it is known and not expired; the use restarts its TTL.
    pub fn user_of(&self, token: &str) -> Option<String> {
        self.user_of_at(token, Instant::now())
    }

    fn user_of_at(&self, token: &str, now: Instant) -> Option<String> {
        let mut held = self.held();
        match held.get_mut(token) {
            Some(h) if h.expires > now => {
                h.expires = now + self.ttl;
                Some(h.user.clone())
            }
            Some(_) => {
                held.remove(token);
                None
            }
            None => None,
        }
    }

    /// Forgets every token of `user` (deleted, or a new password).
    pub fn invalidate_user(&self, user: &str) {
        self.held().retain(|_, h| h.user != user);
    }

    /// Forgets every token (authentication disabled).
    pub fn clear(&self) {
        self.held().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_sixteen_letters() {
        let p = new_prefix();
        assert_eq!(p.len(), 16);
        assert!(p.bytes().all(|b| b.is_ascii_alphabetic()), "{p}");
        assert_ne!(p, new_prefix());
    }

    #[test]
    fn tokens_expire_after_ttl_without_use_and_are_invalidated() {
        let t = SimpleTokens::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        t.assign_at("a.1".into(), "alice", t0);
        t.assign_at("b.2".into(), "bob", t0);
        assert_eq!(t.user_of_at("a.1", at(1)).as_deref(), Some("alice"));
        assert_eq!(t.user_of_at("x.3", at(1)), None);
        // Used every 100 s, a.1 outlives its TTL; b.2, unused, does not.
        for s in [100, 200, 300, 400] {
            assert_eq!(t.user_of_at("a.1", at(s)).as_deref(), Some("alice"));
        }
        assert_eq!(t.user_of_at("b.2", at(400)), None);
        assert_eq!(
            t.user_of_at("a.1", at(701)),
            None,
            "expired 300 s after its last use"
        );
        t.assign_at("a.5".into(), "alice", at(701));
        t.invalidate_user("alice");
        assert_eq!(t.user_of("a.5"), None);
        t.assign("c.4".into(), "carol");
        t.clear();
        assert_eq!(t.user_of("c.4"), None);
    }
}
