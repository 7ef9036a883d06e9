//! What the journal's records mean: which event a request showed the handler (read from the
//! table of what the instance publishes, `scenario/published.rs`), and which of the target's
//! actions are reactions to it (a program started after detection, the first connect to a
//! destination after it, the workload leaving).

use std::collections::BTreeMap;
use std::time::SystemTime;

#[cfg(doc)]
use super::Journal;
use super::{ms, EventRecord, Inner, OutboundRecord, ProcRecord, ReactKind, Reaction};
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
    /// A program started: after detection, a reaction (every one, the polling loop's too: it
    /// ranks below new command lines as the most telling); before it, its command line is
    /// remembered.
    pub(super) fn classify_exec(&mut self, p: &ProcRecord) {
        if !self.after_detection(p.at_ms) {
            self.reactions.before_detection(&p.comm, &p.argv);
            return;
        }
        self.reactions.exec(Reaction {
            kind: ReactKind::Exec,
            at_ms: p.at_ms,
            pid: p.pid,
            comm: p.comm.clone(),
            argv: p.argv.clone(),
            destination: None,
            new_command: false,
        });
    }

    /// Connects to a destination, as one kernel window (between two sweeps) counted them: a
    /// reaction at its first connect at or after detection, whatever came before.
    ///
    /// Exact because the window that holds detection is closed at detection: the journal asks
    /// for a sweep of the kernel's outbound map when the handler first reads an event, and
    /// its responder holds that answer until the sweep is done ([`Journal::request`]). Every
    /// connect the handler makes once it has the answer therefore falls in a window that
    /// starts after detection, whose first connect is the kernel's own time. A window that
    /// straddles detection (connects before it and in the milliseconds until the sweep, made
    /// before the handler could know) counts from its latest connect, the earliest known to
    /// be after. Keeping per-window timestamps instead would still leave that straddling
    /// window unresolved, and sweeping every window at once would cost syscalls all the time.
    pub(super) fn classify_connect(&mut self, o: &OutboundRecord) {
        let Some(d) = self.detected_ms.filter(|d| o.last_ms >= *d) else {
            return;
        };
        let at_ms = if o.first_ms >= d {
            o.first_ms
        } else {
            o.last_ms
        };
        let r = Reaction {
            kind: ReactKind::Connect,
            at_ms,
            pid: o.pid,
            comm: o.comm.clone(),
            argv: Vec::new(),
            destination: Some(o.destination.clone()),
            new_command: false,
        };
        self.reactions.connect(r, &o.destination, o.count);
    }

    /// The workload left (its cgroup emptied at `at_ms`, `last` its last process): a
    /// reaction after detection. A process exiting alone is not one: the poller that read the
    /// notice exits too.
    pub(super) fn classify_workload_exit(&mut self, last: ProcRecord, at_ms: u64) {
        if !self.after_detection(at_ms) {
            return;
        }
        self.reactions.exit(Reaction {
            kind: ReactKind::Exit,
            at_ms,
            pid: last.pid,
            comm: last.comm,
            argv: Vec::new(),
            destination: None,
            new_command: false,
        });
    }

    fn after_detection(&self, at_ms: u64) -> bool {
        self.detected_ms.is_some_and(|d| at_ms >= d)
    }
}
