//! The live report (`spot-sim report`, over the control socket) is bounded: 16 targets with
//! 5,000 long request paths each made a 22.7 MB reply that the client refused at 16 MiB, and
//! eight at once took the instance to 492 MB (issue #20). The `--report` files written at the
//! end keep everything the journal kept; the live one keeps the latest [`LIVE_REQUESTS`]
//! requests per target, and then halves every list until the reply fits [`MAX_LIVE_BYTES`],
//! counting what it left out.

use serde::{Deserialize, Serialize};

use super::Report;
use crate::journal::JournalSnapshot;

/// The latest requests a live report lists per target (the totals count them all).
pub const LIVE_REQUESTS: usize = 200;
/// The largest live report, as JSON: a quarter of what a control client reads (16 MiB).
pub const MAX_LIVE_BYTES: usize = 4 << 20;

/// What a bounded report counted but did not list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotListed {
    pub requests: u64,
    pub execs: u64,
    pub outbound: u64,
    pub reactions: u64,
    pub targets: u64,
}

impl NotListed {
    /// One line for the terminal summary.
    pub fn sentence(&self) -> String {
        format!(
            "live report bounded: {} request(s), {} program start(s), {} destination(s), {} reaction(s) and {} target(s) counted but not listed (the --report files list what the journal kept)",
            self.requests, self.execs, self.outbound, self.reactions, self.targets
        )
    }
}

/// Keeps the latest [`LIVE_REQUESTS`] requests of a snapshot before it is judged, so the
/// report is never built whole (each listed request becomes a string of its own).
pub fn trim_snapshot(s: &mut JournalSnapshot) {
    let kept = &mut s.requests.kept;
    if kept.len() > LIVE_REQUESTS {
        kept.drain(..kept.len() - LIVE_REQUESTS);
    }
}

/// Cuts `r`'s lists until its JSON fits `max_bytes`: every list halves each round (the latest
/// requests and programs stay, the first destinations and reactions stay), then targets beyond
/// what fits are left out whole. What was cut is counted in `r.not_listed`.
pub fn fit(r: &mut Report, max_bytes: usize) {
    let mut cut = NotListed::default();
    for t in &r.targets {
        cut.requests += t.requests_total.saturating_sub(t.requests.len() as u64);
    }
    let mut keep = usize::MAX;
    while json_len(r) > max_bytes {
        let longest = r
            .targets
            .iter()
            .map(|t| {
                t.requests
                    .len()
                    .max(t.execs.len())
                    .max(t.outbound.len())
                    .max(t.reactions.len())
            })
            .max()
            .unwrap_or(0);
        if longest == 0 {
            // Nothing left to halve: drop whole targets from the end.
            let Some(dropped) = r.targets.pop() else {
                break;
            };
            cut.targets += 1;
            // The whole report's verdict still counts the target left out.
            if let (Some(pass), Some(v)) = (r.pass.as_mut(), &dropped.verdict) {
                *pass &= v.pass;
            }
            continue;
        }
        keep = keep.min(longest) / 2;
        for t in &mut r.targets {
            cut.requests += cut_tail(&mut t.requests, keep);
            cut.execs += cut_tail(&mut t.execs, keep);
            cut.outbound += cut_head(&mut t.outbound, keep);
            let n = cut_head(&mut t.reactions, keep);
            cut.reactions += n;
            t.reactions_not_listed += n;
        }
    }
    if cut != NotListed::default() {
        r.not_listed = Some(cut);
    }
}

/// Keeps the last `keep` items; how many went.
fn cut_tail<T>(v: &mut Vec<T>, keep: usize) -> u64 {
    let gone = v.len().saturating_sub(keep);
    v.drain(..gone);
    v.shrink_to_fit();
    gone as u64
}

/// Keeps the first `keep` items; how many went.
fn cut_head<T>(v: &mut Vec<T>, keep: usize) -> u64 {
    let gone = v.len().saturating_sub(keep);
    v.truncate(keep);
    v.shrink_to_fit();
    gone as u64
}

fn json_len(r: &Report) -> usize {
    // Counted, not kept: the reply is serialized once, by the control socket.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, r);
    c.0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::journal::Journal;
    use crate::report::Expectations;
    use crate::scenario::{Clock, ManualClock, Scenario, Timeline};

    /// 16 targets × 5,000 requests to 200-character paths: the 22.7 MB reply.
    fn flooded() -> Vec<JournalSnapshot> {
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t));
        (0..16)
            .map(|n| {
                let timeline = Timeline::new(Scenario::default(), Arc::clone(&clock));
                let j = Journal::new(format!("target-{n}"), timeline, crate::scenario::PUBLISHED);
                for i in 0..5_000u64 {
                    let path = format!("/latest/{}{i:05}", "p".repeat(190));
                    j.request(t + Duration::from_millis(i), "GET", &path, 404, true, None);
                }
                j.snapshot()
            })
            .collect()
    }

    #[test]
    fn a_flood_of_requests_gives_a_complete_report_within_the_bound_counting_what_it_left_out() {
        let snaps = flooded();
        let whole = Report::build(&snaps, &Expectations::default(), 0);
        assert!(
            json_len(&whole) > 16 << 20,
            "the repro is as big as the issue's"
        );
        let mut trimmed = snaps.clone();
        trimmed.iter_mut().for_each(trim_snapshot);
        let mut live = Report::build(&trimmed, &Expectations::default(), 0);
        let small = 200 << 10;
        fit(&mut live, small);
        let json = serde_json::to_string(&live).unwrap();
        assert!(json.len() <= small, "{}", json.len());
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.targets.len(), 16);
        let listed: u64 = back.targets.iter().map(|t| t.requests.len() as u64).sum();
        let total: u64 = back.targets.iter().map(|t| t.requests_total).sum();
        assert_eq!(total, 80_000);
        let n = back.not_listed.clone().expect("what was left out is said");
        assert_eq!(listed + n.requests, total);
        assert!(back.summary().contains("live report bounded"));
        // The latest requests are the ones kept.
        assert!(back.targets[0]
            .requests
            .last()
            .unwrap()
            .at
            .ends_with(":04.999Z"));
        // Within the default bound, nothing is cut beyond the latest 500 per target.
        let mut live = Report::build(&trimmed, &Expectations::default(), 0);
        fit(&mut live, MAX_LIVE_BYTES);
        assert!(live
            .targets
            .iter()
            .all(|t| t.requests.len() == LIVE_REQUESTS));
        assert!(json_len(&live) <= MAX_LIVE_BYTES);
    }

    #[test]
    fn too_many_targets_for_the_bound_leaves_whole_targets_out_and_counts_them() {
        let mut r = Report::build(&flooded(), &Expectations::default(), 0);
        fit(&mut r, 4 << 10);
        assert!(json_len(&r) <= 4 << 10);
        let n = r.not_listed.expect("counted");
        assert_eq!(n.targets as usize + r.targets.len(), 16);
        assert!(n.targets > 0);
    }
}
