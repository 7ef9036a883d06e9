//! Poll statistics in constant memory: a handler's requests grouped into polls, and the
//! intervals between polls kept as a bounded uniform sample (exact until it fills).
//!
//! A poll is one round of a handler's loop: requests close together, each to a different
//! path (a token PUT, then the GETs of instance-action and rebalance). A path asked again
//! starts the next round, so a client in a tight loop polls at its real rate.

use serde::Serialize;

/// Requests closer together than this belong to one poll (a token PUT and the GET after it,
/// or a handler reading two paths in a row).
pub const SAME_POLL_MS: u64 = 250;
/// Intervals kept for the median: every one up to this many, a uniform sample beyond.
const SAMPLE: usize = 4096;
/// Distinct paths one poll may ask before the next request starts another poll.
const PATHS_PER_POLL: usize = 8;

#[derive(Clone, Debug, Default)]
pub struct Polls {
    count: u64,
    last_request_ms: Option<u64>,
    last_poll_ms: Option<u64>,
    /// Hashes of the paths asked in the current poll.
    poll_paths: Vec<u64>,
    /// Interval samples in ms (reservoir, Algorithm R).
    sample: Vec<u64>,
    intervals_seen: u64,
    /// Longest interval between two polls: (from, to) in ms.
    max_gap: Option<(u64, u64)>,
    rng: u64,
}

/// What [`Polls`] says.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PollSummary {
    pub count: u64,
    pub median_interval_s: Option<f64>,
    pub max_gap_s: Option<f64>,
    /// Start and end of the longest gap, ms since the epoch.
    #[serde(skip)]
    pub max_gap_ms: Option<(u64, u64)>,
}

impl Polls {
    /// A request at `at_ms` for `path`; requests must come in time order (late ones join
    /// the last poll).
    pub fn request(&mut self, at_ms: u64, path: &str) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        path.hash(&mut h);
        let path = h.finish();
        let new_poll = self
            .last_request_ms
            .is_none_or(|last| at_ms.saturating_sub(last) >= SAME_POLL_MS)
            || self.poll_paths.contains(&path)
            || self.poll_paths.len() >= PATHS_PER_POLL;
        self.last_request_ms = Some(self.last_request_ms.map_or(at_ms, |l| l.max(at_ms)));
        if !new_poll {
            self.poll_paths.push(path);
            return;
        }
        self.poll_paths.clear();
        self.poll_paths.push(path);
        self.count += 1;
        if let Some(prev) = self.last_poll_ms {
            let gap = at_ms.saturating_sub(prev);
            if self.max_gap.is_none_or(|(a, b)| gap > b - a) {
                self.max_gap = Some((prev, at_ms));
            }
            self.intervals_seen += 1;
            if self.sample.len() < SAMPLE {
                self.sample.push(gap);
            } else {
                let j = self.next_rand() % self.intervals_seen;
                if let Some(slot) = self.sample.get_mut(j as usize) {
                    *slot = gap;
                }
            }
        }
        self.last_poll_ms = Some(at_ms);
    }

    pub fn summary(&self) -> PollSummary {
        let mut s = self.sample.clone();
        s.sort_unstable();
        let median = (!s.is_empty()).then(|| {
            let mid = s.len() / 2;
            let ms = if s.len().is_multiple_of(2) {
                (s[mid - 1] + s[mid]) as f64 / 2.0
            } else {
                s[mid] as f64
            };
            ms / 1000.0
        });
        PollSummary {
            count: self.count,
            median_interval_s: median,
            max_gap_s: self.max_gap.map(|(a, b)| (b - a) as f64 / 1000.0),
            max_gap_ms: self.max_gap,
        }
    }

    /// xorshift64*: the sample only needs to be unbiased, not unpredictable.
    fn next_rand(&mut self) -> u64 {
        if self.rng == 0 {
            self.rng = 0x9E37_79B9_7F4A_7C15;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_put_and_its_get_are_one_poll_and_the_median_is_the_poll_interval() {
        let mut p = Polls::default();
        for i in 0..10u64 {
            p.request(i * 8000, "/latest/api/token");
            p.request(i * 8000 + 3, "/latest/meta-data/spot/instance-action");
        }
        let s = p.summary();
        assert_eq!(s.count, 10);
        assert_eq!(s.median_interval_s, Some(8.0));
        assert_eq!(s.max_gap_s, Some(8.0));
    }

    #[test]
    fn memory_stays_bounded_with_a_million_polls() {
        let mut p = Polls::default();
        for i in 0..1_000_000u64 {
            p.request(
                i * 1000 + (i % 7) * 10,
                "/latest/meta-data/spot/instance-action",
            );
        }
        assert!(p.sample.len() <= SAMPLE);
        let s = p.summary();
        assert_eq!(s.count, 1_000_000);
        let m = s.median_interval_s.unwrap_or(0.0);
        assert!((0.9..=1.1).contains(&m), "median {m}");
        assert_eq!(s.max_gap_s, Some(1.01));
    }

    #[test]
    fn a_tight_loop_on_one_path_polls_at_its_real_rate() {
        let mut p = Polls::default();
        for i in 0..1000u64 {
            p.request(i, "/latest/meta-data/spot/instance-action");
        }
        let s = p.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.median_interval_s, Some(0.001));
    }
}
