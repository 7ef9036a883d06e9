//! What the journal's records mean: which event a request showed the handler (read from the
//! table of what the instance publishes, `scenario/published.rs`), and which of the target's
//! actions are reactions to it (a program new since detection, the first connect to a
//! destination after it, the workload leaving).

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{ms, EventRecord, Inner, OutboundRecord, ProcRecord, Reaction};
use super::{MAX_REACTIONS, MAX_SEEN};
use crate::scenario::{read_of, Event, Published, Timeline};

/// The issued events a request showed, with their issue instants: only a GET (or HEAD)
/// answered 200 shows anything, and only at a path the timeline publishes an event at.
/// `path` is the router's canonical path.
pub(super) fn events_read(
    timeline: &Timeline,
    published: &[Published],
    at: SystemTime,
    method: &str,
    path: &str,
    status: u16,
) -> Vec<(Event, u64)> {
    let shown = (status == 200 && method != "PUT")
        .then(|| read_of(published, path))
        .flatten();
    let Some(event) = shown else {
        return Vec::new();
    };
    timeline
        .events()
        .into_iter()
        .filter(|(kind, issued)| Event::of(*kind) == event && *issued <= at)
        .map(|(_, issued)| (event, ms(issued)))
        .collect()
}

/// The timeline's events (those to come too) with the first read of each, and the
/// interruption's instant.
pub(super) fn events_with_reads(
    timeline: &Timeline,
    first_reads: &BTreeMap<(Event, u64), u64>,
) -> (Vec<EventRecord>, Option<u64>) {
    let mut interruption_ms = None;
    let events = timeline
        .events()
        .into_iter()
        .map(|(kind, at)| {
            let event = Event::of(kind);
            let issued_ms = ms(at);
            if event == Event::Interruption {
                interruption_ms = Some(issued_ms);
            }
            EventRecord {
                kind: event,
                issued_ms,
                first_read_ms: first_reads.get(&(event, issued_ms)).copied(),
            }
        })
        .collect();
    (events, interruption_ms)
}

impl Inner {
    /// A program started: a reaction when it is new since detection (a polling loop starting
    /// `curl` and `sleep` again is not reacting).
    pub(super) fn classify_exec(&mut self, p: &ProcRecord) {
        let key = ("exec".to_string(), p.comm.clone());
        if !self.after_detection(p.at_ms) {
            if self.reacted_to.len() < MAX_SEEN {
                self.reacted_to.insert(key);
            }
        } else if !self.reacted_to.contains(&key) && self.reacted_to.len() < MAX_SEEN {
            self.reacted_to.insert(key);
            let detail = if p.detail.is_empty() {
                format!("started {}", p.comm)
            } else {
                p.detail.clone()
            };
            self.react(Reaction {
                kind: "exec",
                at_ms: p.at_ms,
                pid: p.pid,
                comm: p.comm.clone(),
                detail,
            });
        }
    }

    /// Connects to a destination: a reaction at the first connect at or after detection to
    /// a destination (from a command) not seen before it. Exact when the kernel's window is
    /// wholly after detection; when it straddles detection, its latest connect is the
    /// earliest one known to be after. Called before `o` is added to the aggregate.
    pub(super) fn classify_connect(&mut self, o: &OutboundRecord) {
        let key = (o.destination.clone(), o.comm.clone());
        let seen_before = self
            .outbound
            .get(&key)
            .is_some_and(|o| self.detected_ms.is_none_or(|d| o.first_ms < d));
        let Some(d) = self.detected_ms.filter(|d| o.last_ms >= *d && !seen_before) else {
            return;
        };
        if self.reacted_to.contains(&key) || self.reacted_to.len() >= MAX_SEEN {
            return;
        }
        self.reacted_to.insert(key);
        let at_ms = if o.first_ms >= d {
            o.first_ms
        } else {
            o.last_ms
        };
        self.react(Reaction {
            kind: "connect",
            at_ms,
            pid: o.pid,
            comm: o.comm.clone(),
            detail: format!("connect to {}", o.destination),
        });
    }

    /// The workload left (its cgroup emptied at `at_ms`, `last` its last process): a
    /// reaction after detection. A process exiting alone is not one: the poller that read the
    /// notice exits too.
    pub(super) fn classify_workload_exit(&mut self, last: ProcRecord, at_ms: u64) {
        if !self.after_detection(at_ms) {
            return;
        }
        self.react(Reaction {
            kind: "exit",
            at_ms,
            pid: last.pid,
            detail: format!(
                "the workload exited: {} (pid {}) was the last process to go",
                last.comm, last.pid
            ),
            comm: last.comm,
        });
    }

    fn react(&mut self, r: Reaction) {
        if self.reactions.len() < MAX_REACTIONS {
            self.reactions.push(r);
        } else {
            self.reactions_dropped += 1;
        }
    }

    fn after_detection(&self, at_ms: u64) -> bool {
        self.detected_ms.is_some_and(|d| at_ms >= d)
    }
}
