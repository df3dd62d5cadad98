//! The verified-token cache: SHA-256 of the token → what verifying it gave, bounded (LRU),
//! never past the token's `exp`, and only valid for the issuer configuration and the signing
//! key set it was verified against. A hit hands out the shared verification (`Arc`), not a copy.

use super::Verified;
use jiff::Timestamp;
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

/// SHA-256 of a token: the token itself is never kept.
pub(crate) type TokenHash = [u8; 32];

/// What a cached verification depended on; a hit needs all of it unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Basis {
    /// The issuer's `iss` (shared with the entry: a hit copies no string).
    pub issuer: Arc<str>,
    /// Fingerprint of the issuer's configuration and the token limits of the rules.
    pub config: u64,
    /// Generation of the issuer's key set.
    pub keys: u64,
}

#[derive(Debug)]
struct Entry {
    verified: Arc<Verified>,
    expires_at: Timestamp,
    basis: Basis,
    tick: u64,
}

/// A bounded least-recently-used map.
#[derive(Debug)]
pub(crate) struct TokenCache {
    capacity: usize,
    entries: HashMap<TokenHash, Entry>,
    /// Use order: tick → key; the first is the least recently used.
    order: BTreeMap<u64, TokenHash>,
    tick: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The issuer of a cached token, if cached.
    pub fn issuer_of(&self, key: &TokenHash) -> Option<Arc<str>> {
        self.entries.get(key).map(|e| e.basis.issuer.clone())
    }

    /// The cached verification of `key` at `now`, if it has not expired and `current` (what the
    /// verification depends on now) is what it was. Stale entries are dropped.
    pub fn get(
        &mut self,
        key: &TokenHash,
        now: Timestamp,
        current: impl FnOnce(&Arc<str>) -> Option<Basis>,
    ) -> Option<Arc<Verified>> {
        let entry = self.entries.get(key)?;
        let valid =
            now < entry.expires_at && current(&entry.basis.issuer).as_ref() == Some(&entry.basis);
        if !valid {
            self.remove(key);
            return None;
        }
        let tick = self.next_tick();
        let entry = self.entries.get_mut(key)?;
        self.order.remove(&entry.tick);
        entry.tick = tick;
        self.order.insert(tick, *key);
        Some(entry.verified.clone())
    }

    /// Remembers a verification until `expires_at`, evicting the least recently used entry when
    /// full.
    pub fn insert(
        &mut self,
        key: TokenHash,
        verified: impl Into<Arc<Verified>>,
        expires_at: Timestamp,
        basis: Basis,
    ) {
        if self.capacity == 0 {
            return;
        }
        self.remove(&key);
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let tick = self.next_tick();
        self.order.insert(tick, key);
        self.entries.insert(
            key,
            Entry {
                verified: verified.into(),
                expires_at,
                basis,
                tick,
            },
        );
    }

    fn remove(&mut self, key: &TokenHash) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.tick);
        }
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_warden_policy::Principal;

    fn verified(n: u8) -> Verified {
        Verified {
            principal: Principal {
                issuer: "iss".into(),
                subject: Some(format!("s{n}")),
                client_id: None,
                scopes: Default::default(),
                issued_at: None,
            },
            token_id: None,
            expires_at: None,
        }
    }

    fn basis() -> Basis {
        Basis {
            issuer: "iss".into(),
            config: 1,
            keys: 1,
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn entries_never_outlive_exp() {
        let mut c = TokenCache::new(4);
        c.insert([1; 32], verified(1), at(100), basis());
        assert_eq!(
            c.get(&[1; 32], at(99), |_| Some(basis())),
            Some(Arc::new(verified(1)))
        );
        assert_eq!(c.get(&[1; 32], at(100), |_| Some(basis())), None);
        assert_eq!(c.len(), 0, "the expired entry is dropped");
    }

    #[test]
    fn entries_depend_on_issuer_config_and_keys() {
        let mut c = TokenCache::new(4);
        c.insert([1; 32], verified(1), at(100), basis());
        let other_keys = Basis { keys: 2, ..basis() };
        assert_eq!(c.get(&[1; 32], at(0), |_| Some(other_keys.clone())), None);
        c.insert([1; 32], verified(1), at(100), basis());
        let other_config = Basis {
            config: 2,
            ..basis()
        };
        assert_eq!(c.get(&[1; 32], at(0), |_| Some(other_config.clone())), None);
        c.insert([1; 32], verified(1), at(100), basis());
        assert_eq!(c.get(&[1; 32], at(0), |_| None), None, "issuer removed");
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn bounded_least_recently_used() {
        let mut c = TokenCache::new(3);
        for n in 1..=3 {
            c.insert([n; 32], verified(n), at(100), basis());
        }
        // Touch 1, so 2 is the least recently used.
        assert!(c.get(&[1; 32], at(0), |_| Some(basis())).is_some());
        c.insert([4; 32], verified(4), at(100), basis());
        assert_eq!(c.len(), 3);
        assert!(c.get(&[2; 32], at(0), |_| Some(basis())).is_none());
        for n in [1, 3, 4] {
            assert!(c.get(&[n; 32], at(0), |_| Some(basis())).is_some(), "{n}");
        }
        // Re-inserting a key does not grow the map.
        c.insert([4; 32], verified(4), at(100), basis());
        assert_eq!(c.len(), 3);
        assert_eq!(c.order.len(), 3);
        for n in 10..100 {
            c.insert([n; 32], verified(n), at(100), basis());
            assert!(c.len() <= 3 && c.order.len() == c.len());
        }
        c.clear();
        assert_eq!(c.len(), 0);
        let mut none = TokenCache::new(0);
        none.insert([1; 32], verified(1), at(100), basis());
        assert_eq!(none.len(), 0);
    }
}
