//! The IMDSv2 session tokens a responder issued: unguessable, expiring, bounded in number.
//!
//! A token is a public id (for the lookup) followed by a 256-bit secret (compared in constant
//! time), so a lookup never leaks through timing how much of a guess was right.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rand::rngs::OsRng;
use rand::RngCore;

use crate::lock::lock;

/// Largest TTL IMDS accepts, in seconds (6 hours).
pub const MAX_TOKEN_TTL: u64 = 21_600;
/// Tokens held before the oldest are evicted.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// How often a full store may scan for expired tokens: the scan is linear in the store's size,
/// and running it on every issue made each `PUT /latest/api/token` cost ~150 µs when full.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

const ID_LEN: usize = 8;
const SECRET_LEN: usize = 32;

/// Why a presented token was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRejection {
    /// Not one we issued (or evicted, or malformed).
    Invalid,
    Expired,
}

#[derive(Debug)]
struct Entry {
    secret: [u8; SECRET_LEN],
    expires: SystemTime,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<[u8; ID_LEN], Entry>,
    /// Issue order, for evicting the oldest when full. May hold ids already gone from `by_id`
    /// (expired on a check): eviction skips them, a purge drops them.
    order: VecDeque<[u8; ID_LEN]>,
    last_purge: Option<SystemTime>,
}

/// Tokens issued by one responder, safe to share between connections.
#[derive(Debug)]
pub struct TokenStore {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Default for TokenStore {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl TokenStore {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Issues a token valid for `lifetime` from `now`.
    pub fn issue(&self, now: SystemTime, lifetime: Duration) -> String {
        let mut id = [0u8; ID_LEN];
        let mut secret = [0u8; SECRET_LEN];
        OsRng.fill_bytes(&mut id);
        OsRng.fill_bytes(&mut secret);
        let token = format!("{}{}", hex(&id), hex(&secret));

        let mut inner = lock(&self.inner);
        let purge_due = inner.last_purge.is_none_or(|t| {
            now.duration_since(t)
                .map_or(true, |since| since >= PURGE_INTERVAL)
        });
        if (inner.by_id.len() >= self.capacity && purge_due)
            || inner.order.len() >= 2 * self.capacity
        {
            purge_expired(&mut inner, now);
        }
        while inner.by_id.len() >= self.capacity {
            match inner.order.pop_front() {
                Some(oldest) => {
                    inner.by_id.remove(&oldest);
                }
                None => break,
            }
        }
        inner.by_id.insert(
            id,
            Entry {
                secret,
                expires: now + lifetime,
            },
        );
        inner.order.push_back(id);
        token
    }

    /// Whole seconds the token has left (rounded up), or why it is refused.
    pub fn check(&self, token: &str, now: SystemTime) -> Result<u64, TokenRejection> {
        let (id, secret) = parse(token).ok_or(TokenRejection::Invalid)?;
        let mut inner = lock(&self.inner);
        let entry = inner.by_id.get(&id).ok_or(TokenRejection::Invalid)?;
        if !constant_time_eq(&entry.secret, &secret) {
            return Err(TokenRejection::Invalid);
        }
        match entry.expires.duration_since(now) {
            Ok(left) if !left.is_zero() => Ok(left.as_secs() + u64::from(left.subsec_nanos() > 0)),
            _ => {
                // Its id stays in `order` until an eviction or a purge meets it: removing it
                // here would scan the whole queue.
                inner.by_id.remove(&id);
                Err(TokenRejection::Expired)
            }
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.inner).by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn purge_expired(inner: &mut Inner, now: SystemTime) {
    inner.last_purge = Some(now);
    inner.by_id.retain(|_, e| e.expires > now);
    let Inner { by_id, order, .. } = inner;
    order.retain(|id| by_id.contains_key(id));
}

fn parse(token: &str) -> Option<([u8; ID_LEN], [u8; SECRET_LEN])> {
    let bytes = token.as_bytes();
    if bytes.len() != 2 * (ID_LEN + SECRET_LEN) {
        return None;
    }
    let mut id = [0u8; ID_LEN];
    let mut secret = [0u8; SECRET_LEN];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let b = (unhex(pair[0])? << 4) | unhex(pair[1])?;
        if i < ID_LEN {
            id[i] = b;
        } else {
            secret[i - ID_LEN] = b;
        }
    }
    Some((id, secret))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Compares every byte whatever the first difference, so timing tells nothing.
fn constant_time_eq(a: &[u8; SECRET_LEN], b: &[u8; SECRET_LEN]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn a_token_is_valid_until_its_ttl_and_reports_what_is_left() {
        let store = TokenStore::default();
        let token = store.issue(t(0), Duration::from_secs(60));
        assert_eq!(token.len(), 80);
        assert_eq!(store.check(&token, t(0)), Ok(60));
        assert_eq!(store.check(&token, t(59)), Ok(1));
        assert_eq!(store.check(&token, t(60)), Err(TokenRejection::Expired));
        // Expired tokens are purged: the next check does not know it at all.
        assert_eq!(store.check(&token, t(60)), Err(TokenRejection::Invalid));
        assert!(store.is_empty());
    }

    #[test]
    fn forged_and_malformed_tokens_are_invalid() {
        let store = TokenStore::default();
        let token = store.issue(t(0), Duration::from_secs(60));
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).expect("ascii");
        assert_eq!(store.check(&forged, t(1)), Err(TokenRejection::Invalid));
        for bad in ["", "abc", &token.to_uppercase(), &format!("{token}0")] {
            assert_eq!(
                store.check(bad, t(1)),
                Err(TokenRejection::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn tokens_are_unguessable() {
        let store = TokenStore::default();
        let a = store.issue(t(0), Duration::from_secs(1));
        let b = store.issue(t(0), Duration::from_secs(1));
        assert_ne!(a, b);
    }

    #[test]
    fn a_full_store_evicts_expired_tokens_first_then_the_oldest() {
        let store = TokenStore::with_capacity(3);
        let short = store.issue(t(0), Duration::from_secs(5));
        let old = store.issue(t(0), Duration::from_secs(100));
        let mid = store.issue(t(1), Duration::from_secs(100));
        // Full: the expired one goes, the others stay.
        let new = store.issue(t(10), Duration::from_secs(100));
        assert_eq!(store.len(), 3);
        assert_eq!(store.check(&short, t(10)), Err(TokenRejection::Invalid));
        assert!(store.check(&old, t(10)).is_ok());
        // Full again with nothing expired: the oldest goes.
        let newest = store.issue(t(11), Duration::from_secs(100));
        assert_eq!(store.check(&old, t(11)), Err(TokenRejection::Invalid));
        for kept in [&mid, &new, &newest] {
            assert!(store.check(kept, t(11)).is_ok());
        }
    }
}
