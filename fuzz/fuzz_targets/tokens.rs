//! Any sequence of issuing, checking (genuine, tampered and made-up tokens) and time passing:
//! the store stays within its capacity; a token that is one of the newest `capacity` issued
//! and has not expired is accepted with the right remaining TTL; an expired, tampered or
//! made-up one never is.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use spot_sim::imds::{TokenRejection, TokenStore};

#[path = "common.rs"]
mod common;

#[derive(arbitrary::Arbitrary, Debug)]
enum Op {
    Issue { ttl: u16 },
    Check { which: u16 },
    Tamper { which: u16, at: u8, byte: u8 },
    Made { text: String },
    Advance { secs: u16 },
}

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    capacity: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let capacity = usize::from(input.capacity % 16) + 1;
    let store = TokenStore::with_capacity(capacity);
    let mut now = common::start();
    // (token, expires), in issue order.
    let mut issued: Vec<(String, SystemTime)> = Vec::new();
    for op in input.ops.iter().take(256) {
        match op {
            Op::Issue { ttl } => {
                let ttl = Duration::from_secs(u64::from(*ttl % 21_600) + 1);
                let token = store.issue(now, ttl);
                assert_eq!(token.len(), 80);
                issued.push((token, now + ttl));
            }
            Op::Check { which } if !issued.is_empty() => {
                let i = usize::from(*which) % issued.len();
                let (token, expires) = &issued[i];
                let recent = issued.len() - i <= capacity;
                let got = store.check(token, now);
                match expires.duration_since(now) {
                    Ok(left) if !left.is_zero() && recent => {
                        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                        assert_eq!(got, Ok(secs));
                    }
                    // Older ones may have been evicted, or kept because newer ones expired.
                    Ok(left) if !left.is_zero() => {}
                    _ => assert!(got.is_err()),
                }
            }
            Op::Tamper { which, at, byte } if !issued.is_empty() => {
                let (token, _) = &issued[usize::from(*which) % issued.len()];
                let mut forged = token.clone().into_bytes();
                let at = usize::from(*at) % forged.len();
                if forged[at] == *byte {
                    continue;
                }
                forged[at] = *byte;
                let forged = String::from_utf8_lossy(&forged).into_owned();
                assert_eq!(store.check(&forged, now), Err(TokenRejection::Invalid));
            }
            Op::Made { text } => {
                if !issued.iter().any(|(t, _)| t == text) {
                    assert_eq!(store.check(text, now), Err(TokenRejection::Invalid));
                }
            }
            Op::Advance { secs } => now += Duration::from_secs(u64::from(*secs)),
            _ => {}
        }
        assert!(store.len() <= capacity, "{} > {capacity}", store.len());
    }
});
