//! The journal of one target: what its handler asked the fake IMDS, which events the scenario
//! issued, and what the kernel saw it do afterwards (programs started, processes exiting,
//! connects elsewhere). The report module reads a [`JournalSnapshot`] to judge it.
//!
//! Memory is bounded whatever the traffic. Kept whole: the first read of every issued event,
//! poll statistics (constant size). Reactions are kept per kind from detection on
//! (`reactions.rs`: [`MAX_EXEC_REACTIONS`] programs, [`MAX_CONNECT_REACTIONS`] destinations,
//! the exit), so nothing before the notice can crowd them out. Kept as a sample:
//! requests (the first [`HEAD`] and the latest [`TAIL`]), redirects (the first
//! [`MAX_REDIRECTS`]), programs started and processes exited (first [`HEAD_PROCS`] and latest
//! [`TAIL_PROCS`]), outbound destinations (the first [`MAX_DESTINATIONS`] distinct
//! destination+command pairs; later ones add to one "other" count). Everything is counted.
//!
//! Here the journal records; `classify.rs` says what a record means (an event read, a
//! reaction), `kernel.rs` turns the kernel's records into the journal's, `records.rs` holds
//! what is kept, `reactions.rs` the reactions, `matcher.rs` what an expected one must be.

mod classify;
mod kernel;
mod matcher;
mod polls;
mod reactions;
mod records;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub use kernel::{argv_words, KernelClock};
pub use matcher::{Destination, ReactMatcher};
pub use polls::{PollSummary, Polls, SAME_POLL_MS};
use reactions::Reactions;
pub use reactions::{ReactionsSnapshot, MAX_CONNECT_REACTIONS, MAX_EXEC_REACTIONS};
use records::HeadTail;
pub use records::{
    EventRecord, JournalSnapshot, OutboundRecord, ProcRecord, ReactKind, Reaction, RedirectRecord,
    RequestRecord, Sample, TokenUse, Unauthorized,
};

use crate::lock::lock;
use crate::scenario::{Event, Published, Timeline};

pub const HEAD: usize = 1000;
pub const TAIL: usize = 4000;
pub const MAX_REDIRECTS: usize = 100;
pub const HEAD_PROCS: usize = 200;
pub const TAIL_PROCS: usize = 800;
pub const MAX_DESTINATIONS: usize = 512;
/// Tokens whose issue time is remembered, for their age when presented.
const MAX_TOKENS: usize = 1024;
/// Longest path kept in a request record (it is client input).
const MAX_PATH: usize = 200;
/// Distinct methods and paths kept by name; a client spraying random paths gets `(other)`.
pub const MAX_INTERNED: usize = 256;

/// Milliseconds since the Unix epoch.
pub fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug)]
struct Inner {
    requests: HeadTail<RequestRecord>,
    /// Methods and paths, each stored once.
    interned: std::collections::HashSet<Arc<str>>,
    first_request_ms: Option<u64>,
    polls: Polls,
    token_use: TokenUse,
    /// Token public id → (issued at, presented yet).
    tokens: HashMap<String, (u64, bool)>,
    token_order: VecDeque<String>,
    unauthorized: Unauthorized,
    pending_401: bool,
    /// (event, issued_ms) → first read.
    first_reads: BTreeMap<(Event, u64), u64>,
    /// The earliest first read of any event: the handler's detection.
    detected_ms: Option<u64>,
    redirects: HeadTail<RedirectRecord>,
    execs: HeadTail<ProcRecord>,
    exits: HeadTail<ProcRecord>,
    outbound_total: u64,
    outbound: HashMap<(String, String), OutboundRecord>,
    outbound_other: u64,
    reactions: Reactions,
    /// A sweep of the kernel's outbound map was asked for at detection.
    sweep_asked: bool,
    /// The latest process exit seen.
    last_exit: Option<ProcRecord>,
    cgroup_empty_ms: Option<u64>,
    command_status: Option<i32>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            requests: HeadTail::new(HEAD, TAIL),
            interned: std::collections::HashSet::new(),
            first_request_ms: None,
            polls: Polls::default(),
            token_use: TokenUse::default(),
            tokens: HashMap::new(),
            token_order: VecDeque::new(),
            unauthorized: Unauthorized::default(),
            pending_401: false,
            first_reads: BTreeMap::new(),
            detected_ms: None,
            redirects: HeadTail::new(MAX_REDIRECTS, 0),
            execs: HeadTail::new(HEAD_PROCS, TAIL_PROCS),
            exits: HeadTail::new(HEAD_PROCS, TAIL_PROCS),
            outbound_total: 0,
            outbound: HashMap::new(),
            outbound_other: 0,
            reactions: Reactions::default(),
            sweep_asked: false,
            last_exit: None,
            cgroup_empty_ms: None,
            command_status: None,
        }
    }
}

impl Inner {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.interned.get(s) {
            return Arc::clone(found);
        }
        let s: Arc<str> = if self.interned.len() < MAX_INTERNED {
            Arc::from(s)
        } else {
            Arc::from("(other)")
        };
        self.interned.insert(Arc::clone(&s));
        s
    }
}

/// Asks the session to sweep the kernel's outbound-connect map now; the receiver hears when
/// it is done (or is dropped if it cannot be).
pub type Sweeper = Box<dyn Fn() -> tokio::sync::oneshot::Receiver<()> + Send + Sync>;

/// The sweep asked for at detection, to wait for before the handler gets its answer.
pub type SweepDone = tokio::sync::oneshot::Receiver<()>;

/// The journal of one target. Shared by its responder (requests), the session (kernel
/// activity) and whoever asks for a report.
pub struct Journal {
    name: String,
    timeline: Arc<Timeline>,
    /// Where the instance publishes the timeline's events: what a read of them is.
    published: &'static [Published],
    /// Set by the session: how to have the kernel's outbound map swept at detection.
    sweeper: std::sync::OnceLock<Sweeper>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// The journal of a target whose instance publishes `timeline` as `published` says (its
    /// responder's [`crate::imds::Responder::published`]).
    pub fn new(
        name: String,
        timeline: Arc<Timeline>,
        published: &'static [Published],
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            timeline,
            published,
            sweeper: std::sync::OnceLock::new(),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// How the journal has the kernel's outbound map swept when the handler first reads an
    /// event (see `classify.rs`, `classify_connect`).
    pub fn set_sweeper(&self, sweeper: Sweeper) {
        let _ = self.sweeper.set(sweeper);
    }

    /// Keep the earliest reaction each of these matches (the `--expect-react` given).
    pub fn watch_for(&self, matchers: Vec<ReactMatcher>) {
        lock(&self.inner).reactions.watch(matchers);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The responder issued a token (its first 16 characters are its public id).
    pub fn token_issued(&self, token: &str, at: SystemTime) {
        let id: String = token.chars().take(16).collect();
        let mut inner = lock(&self.inner);
        inner.token_use.tokens_issued += 1;
        if inner.tokens.len() >= MAX_TOKENS {
            if let Some(old) = inner.token_order.pop_front() {
                inner.tokens.remove(&old);
            }
        }
        inner.tokens.insert(id.clone(), (ms(at), false));
        inner.token_order.push_back(id);
    }

    /// The responder answered a request; `path` is the router's canonical path. When it is
    /// the handler's first read of an event, the sweep to wait for before answering.
    pub fn request(
        &self,
        at: SystemTime,
        method: &str,
        path: &str,
        status: u16,
        v2: bool,
        token: Option<&str>,
    ) -> Option<SweepDone> {
        let at_ms = ms(at);
        let path: String = path.chars().take(MAX_PATH).collect();
        let read = classify::events_read(&self.timeline, self.published, at, method, &path, status);
        let mut inner = lock(&self.inner);
        let token_age_s = token.and_then(|t| {
            let id: String = t.chars().take(16).collect();
            let entry = inner.tokens.get_mut(&id)?;
            let issued = entry.0;
            let first_use = !entry.1;
            entry.1 = true;
            if first_use {
                inner.token_use.tokens_used += 1;
            }
            Some(at_ms.saturating_sub(issued) as f32 / 1000.0)
        });
        inner.first_request_ms.get_or_insert(at_ms);
        inner.polls.request(at_ms, &path);
        if v2 {
            inner.token_use.v2 += 1;
        } else {
            inner.token_use.v1 += 1;
        }
        let is_token_put = path == "/latest/api/token";
        if status == 401 {
            let u = &mut inner.unauthorized;
            u.count += 1;
            u.first_ms.get_or_insert(at_ms);
            u.recovered_ms = None;
            u.fetched_token = false;
            inner.pending_401 = true;
        } else if inner.pending_401 && (200..300).contains(&status) {
            if is_token_put {
                inner.unauthorized.fetched_token = true;
            } else {
                inner.unauthorized.recovered_ms = Some(at_ms);
                inner.pending_401 = false;
            }
        }
        for key in read {
            if let std::collections::btree_map::Entry::Vacant(slot) = inner.first_reads.entry(key) {
                slot.insert(at_ms);
                if inner.detected_ms.is_none_or(|d| at_ms < d) {
                    inner.detected_ms = Some(at_ms);
                }
            }
        }
        let method: String = method.chars().take(16).collect();
        let method = inner.intern(&method);
        let path = inner.intern(&path);
        inner.requests.push(RequestRecord {
            at_ms,
            method,
            path,
            status,
            v2,
            token_age_s,
        });
        let sweep = inner.detected_ms.is_some() && !inner.sweep_asked;
        inner.sweep_asked |= sweep;
        drop(inner);
        sweep.then(|| self.sweeper.get().map(|s| s())).flatten()
    }

    /// The kernel redirected one of the target's connects to the responder.
    pub fn redirect(&self, r: RedirectRecord) {
        lock(&self.inner).redirects.push(r);
    }

    /// A process of the target started a program.
    pub fn exec(&self, p: ProcRecord) {
        let mut inner = lock(&self.inner);
        // A process started: the workload is running (again).
        inner.cgroup_empty_ms = None;
        inner.classify_exec(&p);
        inner.execs.push(p);
    }

    /// A process of the target exited. Not a reaction by itself (the poller that read the
    /// notice exits too); the workload exiting is, once the cgroup is seen empty.
    pub fn exit(&self, p: ProcRecord) {
        let mut inner = lock(&self.inner);
        if inner.last_exit.as_ref().is_none_or(|l| p.at_ms >= l.at_ms) {
            inner.last_exit = Some(p.clone());
        }
        inner.exits.push(p);
    }

    /// Connects from the target to somewhere other than the IMDS, aggregated by the kernel
    /// since the last drain.
    pub fn outbound(&self, o: OutboundRecord) {
        let mut inner = lock(&self.inner);
        inner.outbound_total += o.count;
        inner.classify_connect(&o);
        let key = (o.destination.clone(), o.comm.clone());
        let full = inner.outbound.len() >= MAX_DESTINATIONS;
        match inner.outbound.get_mut(&key) {
            Some(agg) => {
                agg.count += o.count;
                agg.first_ms = agg.first_ms.min(o.first_ms);
                agg.last_ms = agg.last_ms.max(o.last_ms);
            }
            None if full => inner.outbound_other += o.count,
            None => {
                inner.outbound.insert(key, o);
            }
        }
    }

    /// The session looked at the target's cgroup: `empty` when no process is left in it.
    pub fn cgroup_seen(&self, empty: bool, now: SystemTime) {
        let mut inner = lock(&self.inner);
        if !empty {
            inner.cgroup_empty_ms = None;
            return;
        }
        if inner.cgroup_empty_ms.is_some() {
            return;
        }
        // Only a workload that ran and left counts as exiting: its last process's exit.
        let Some(last) = inner.last_exit.clone() else {
            return;
        };
        let at_ms = last.at_ms.min(ms(now));
        inner.cgroup_empty_ms = Some(at_ms);
        inner.classify_workload_exit(last, at_ms);
    }

    /// `exec`'s command ended with this status.
    pub fn command_ended(&self, status: i32) {
        lock(&self.inner).command_status = Some(status);
    }

    /// Everything, for a report.
    pub fn snapshot(&self) -> JournalSnapshot {
        self.snapshot_with(true)
    }

    /// Findings only, without the kept requests, redirects, program starts and exits: what a
    /// metrics scrape needs, at a fraction of the copying.
    pub fn summary_snapshot(&self) -> JournalSnapshot {
        self.snapshot_with(false)
    }

    fn snapshot_with(&self, detail: bool) -> JournalSnapshot {
        let now = self.timeline.clock().now();
        let inner = lock(&self.inner);
        let (events, interruption_ms) =
            classify::events_with_reads(&self.timeline, &inner.first_reads);
        let mut outbound: Vec<_> = inner.outbound.values().cloned().collect();
        outbound.sort_by_key(|o| o.first_ms);
        JournalSnapshot {
            name: self.name.clone(),
            now_ms: ms(now),
            events,
            interruption_ms,
            requests: inner.requests.sample(detail),
            first_request_ms: inner.first_request_ms,
            polls: inner.polls.summary(),
            tokens: inner.token_use,
            unauthorized: inner.unauthorized.clone(),
            redirects: inner.redirects.sample(detail),
            execs: inner.execs.sample(detail),
            exits: inner.exits.sample(detail),
            outbound: Sample {
                kept: outbound,
                total: inner.outbound_total,
            },
            outbound_other: inner.outbound_other,
            reactions: inner.reactions.snapshot(),
            cgroup_empty_ms: inner.cgroup_empty_ms,
            command_status: inner.command_status,
        }
    }
}

#[cfg(test)]
mod reaction_tests;
#[cfg(test)]
mod tests;
