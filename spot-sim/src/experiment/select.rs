//! Which nodes a game day hits, decided by each node alone from its own name: no controller,
//! no API server, no coordination. The decision is a stable hash of the experiment's name and
//! the node's name, so a restarted spot-sim decides the same, every node agrees with
//! `spot-sim experiment plan`, and renaming the experiment draws a new set.
//!
//! FIS's `PERCENT(n)` selection mode has a central service pick exactly n % of the targets at
//! random when the experiment starts
//! (<https://docs.aws.amazon.com/fis/latest/APIReference/API_CreateExperimentTemplateTargetInput.html>).
//! With no one to count, each node draws alone, so a share is met in expectation: each node is
//! in with probability n %, independently (40 nodes at 50 %: 20 on average, 14 to 26 in 19 game
//! days out of 20). An explicit list of nodes is exact.
//!
//! The hash is spelled out (not `std`'s randomly keyed one) so it never changes between
//! builds or machines: FNV-1a 64 over `NAME 0x00 NODE`, then the SplitMix64 finalizer. FNV-1a
//! alone mixes a change in the last bytes (node names differ mostly at the end:
//! `ip-10-0-1-23`, `ip-10-0-1-24`) poorly into the high bits, which decide the share; the
//! finalizer spreads every input bit over the whole word.

use std::time::{Duration, SystemTime};

use super::{Experiment, NodeSet};
use crate::scenario::whole_seconds;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The node's draw for this experiment, stable across builds and machines.
pub fn node_hash(experiment: &str, node: &str) -> u64 {
    // Plain loops: this runs for every node of a 150k list, in debug builds too.
    let mut h = FNV_OFFSET;
    for &b in experiment.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h = h.wrapping_mul(FNV_PRIME); // the 0 byte between the two names
    for &b in node.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    // SplitMix64's finalizer (Steele, Lea, Flood 2014).
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The draw as a fraction in [0, 1): the top 53 bits, which an f64 holds exactly.
fn fraction(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// What the experiment means for one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The node takes part; its timeline starts at `t0` (start-at plus its stagger).
    Selected {
        t0: SystemTime,
    },
    Skipped,
}

impl Experiment {
    /// Whether `node` takes part, and when it starts.
    ///
    /// A share selects a node when its draw falls below the share, so each node decides
    /// without knowing the others; its stagger is where its draw falls within the share,
    /// which spreads the selected nodes evenly in expectation. A list selects exactly its
    /// nodes; knowing them all, each takes its rank among them (ordered by draw) and the starts
    /// are evenly spaced.
    pub fn decide(&self, node: &str) -> Decision {
        let h = node_hash(&self.name, node);
        let position = match &self.nodes {
            NodeSet::Share(percent) => {
                let share = percent / 100.0;
                let f = fraction(h);
                if f >= share {
                    return Decision::Skipped;
                }
                f / share
            }
            NodeSet::List(nodes) => {
                // Sorted by draw (file.rs), so membership and rank are one binary search:
                // 150k names stay well under a second for `experiment plan`.
                let mut rank = self.draws.partition_point(|d| *d < h);
                loop {
                    match (self.draws.get(rank), nodes.get(rank)) {
                        (Some(d), Some(n)) if *d == h => {
                            if n == node {
                                break;
                            }
                            rank += 1;
                        }
                        _ => return Decision::Skipped,
                    }
                }
                rank as f64 / nodes.len() as f64
            }
        };
        let offset = Duration::from_secs((self.stagger.as_secs_f64() * position).floor() as u64);
        Decision::Selected {
            t0: whole_seconds(self.start_at + offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn experiment(body: &str) -> Experiment {
        let text = format!(
            "[experiment]\n{body}\nstart-at = \"2026-11-26T14:00:00Z\"\npods = [\"kube-system/nth-*\"]\n"
        );
        Experiment::parse(Path::new("e.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn nodes(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("ip-10-0-1-{i}.ec2.internal"))
            .collect()
    }

    fn selected(e: &Experiment, nodes: &[String]) -> Vec<String> {
        nodes
            .iter()
            .filter(|n| e.decide(n) != Decision::Skipped)
            .cloned()
            .collect()
    }

    #[test]
    fn the_hash_is_pinned_so_every_build_selects_the_same_nodes() {
        // Changing these values reshuffles every running game day: do not. They come from an
        // independent Python implementation of FNV-1a 64 + the SplitMix64 finalizer.
        assert_eq!(node_hash("", ""), 0x25fc_6dd3_6ce0_4b20);
        assert_eq!(
            node_hash("gameday", "ip-10-0-1-23.ec2.internal"),
            0x7f94_5729_18a2_18a4
        );
        assert_eq!(node_hash("gd", "node-1"), node_hash("gd", "node-1"));
        assert_ne!(node_hash("gd", "node-1"), node_hash("gd", "node-2"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(node_hash("ab", "c"), node_hash("a", "bc"));
    }

    #[test]
    fn a_share_selects_about_that_share_and_renaming_draws_again() {
        let all = nodes(1000);
        let a = selected(&experiment("name = \"a\"\nnodes = \"30%\""), &all);
        assert!((240..=360).contains(&a.len()), "{}", a.len());
        let b = selected(&experiment("name = \"b\"\nnodes = \"30%\""), &all);
        assert_ne!(a, b);
        assert!(selected(&experiment("name = \"a\"\nnodes = \"0%\""), &all).is_empty());
        assert_eq!(
            selected(&experiment("name = \"a\"\nnodes = \"100%\""), &all).len(),
            1000
        );
    }

    #[test]
    fn a_list_selects_exactly_its_nodes_with_evenly_spaced_starts() {
        let e = experiment(
            "name = \"x\"\nnodes = [\"n-a\", \"n-b\", \"n-c\", \"n-d\"]\nstagger = \"4m\"",
        );
        assert_eq!(e.decide("n-e"), Decision::Skipped);
        let mut offsets: Vec<u64> = ["n-a", "n-b", "n-c", "n-d"]
            .iter()
            .map(|n| match e.decide(n) {
                Decision::Selected { t0 } => t0.duration_since(e.start_at).unwrap().as_secs(),
                Decision::Skipped => panic!("{n} is listed"),
            })
            .collect();
        offsets.sort();
        assert_eq!(offsets, [0, 60, 120, 180]);
    }

    #[test]
    fn staggered_starts_stay_within_the_window_in_whole_seconds() {
        let e = experiment("name = \"s\"\nnodes = \"50%\"\nstagger = \"10m\"");
        let mut seen = Vec::new();
        for n in nodes(200) {
            if let Decision::Selected { t0 } = e.decide(&n) {
                let off = t0.duration_since(e.start_at).unwrap();
                assert!(off < Duration::from_secs(600));
                assert_eq!(off.subsec_nanos(), 0);
                seen.push(off.as_secs());
            }
        }
        // Spread, not bunched: both halves of the window are used.
        assert!(seen.iter().any(|s| *s < 300) && seen.iter().any(|s| *s >= 300));
    }
}
