//! The journal of one target: what its handler asked the fake IMDS, which events the scenario
//! issued, and what the kernel saw it do afterwards (programs started, processes exiting,
//! connects elsewhere). The report module reads a [`JournalSnapshot`] to judge it.
//!
//! Memory is bounded whatever the traffic. Kept whole: the first read of every issued event,
//! every reaction up to [`MAX_REACTIONS`], poll statistics (constant size). Kept as a sample:
//! requests (the first [`HEAD`] and the latest [`TAIL`]), redirects (the first
//! [`MAX_REDIRECTS`]), programs started and processes exited (first [`HEAD_PROCS`] and latest
//! [`TAIL_PROCS`]), outbound destinations (the first [`MAX_DESTINATIONS`] distinct
//! destination+command pairs; later ones add to one "other" count). Everything is counted.

mod polls;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use polls::{PollSummary, Polls, SAME_POLL_MS};

use crate::lock::lock;
use crate::scenario::{read_of, Event, Timeline};

pub const HEAD: usize = 1000;
pub const TAIL: usize = 4000;
pub const MAX_REDIRECTS: usize = 100;
pub const HEAD_PROCS: usize = 200;
pub const TAIL_PROCS: usize = 800;
pub const MAX_DESTINATIONS: usize = 512;
pub const MAX_REACTIONS: usize = 300;
/// Programs and destinations remembered as seen before detection or reported.
const MAX_SEEN: usize = 2048;
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

/// One request the fake IMDS answered. Small: method and path are shared strings from the
/// journal's intern table.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub at_ms: u64,
    pub method: Arc<str>,
    /// The router's canonical path (single slashes, no trailing slash, any version shown as
    /// `latest`), cut at 200 characters; past [`MAX_INTERNED`] distinct ones, `(other)`.
    pub path: Arc<str>,
    pub status: u16,
    pub v2: bool,
    /// Seconds since the presented token was issued (IMDSv2 with a token we know).
    pub token_age_s: Option<f32>,
}

/// A process of the target, as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcRecord {
    pub at_ms: u64,
    pub pid: u32,
    pub comm: String,
    /// Its command line when it could still be read (best effort), else empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Connects to one destination from one command, between two kernel drains or overall.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboundRecord {
    /// `10.0.0.1:443/tcp`.
    pub destination: String,
    pub comm: String,
    pub pid: u32,
    pub first_ms: u64,
    pub last_ms: u64,
    pub count: u64,
}

/// Something the handler did after it first read an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reaction {
    /// `exec`, `connect` or `exit`.
    pub kind: &'static str,
    pub at_ms: u64,
    pub pid: u32,
    pub comm: String,
    pub detail: String,
}

/// A redirect the kernel made for this target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RedirectRecord {
    pub at_ms: u64,
    pub pid: u32,
    pub comm: String,
    pub destination: String,
}

/// An event the scenario issued, and when the handler first read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    pub kind: Event,
    pub issued_ms: u64,
    pub first_read_ms: Option<u64>,
}

/// Which IMDS version the handler spoke and how it used its tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUse {
    /// Requests without a token.
    pub v1: u64,
    /// Requests with a token, and token requests.
    pub v2: u64,
    pub tokens_issued: u64,
    /// Distinct tokens presented.
    pub tokens_used: u64,
}

impl TokenUse {
    /// Requests made with each token, on average (1 means a new token for every request).
    pub fn requests_per_token(&self) -> Option<f64> {
        (self.tokens_used > 0).then(|| {
            let with_token = self.v2.saturating_sub(self.tokens_issued);
            with_token as f64 / self.tokens_used as f64
        })
    }
}

/// 401s and what the handler did about them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unauthorized {
    pub count: u64,
    pub first_ms: Option<u64>,
    /// The first successful read after the latest 401, if any.
    pub recovered_ms: Option<u64>,
    /// The handler fetched a new token between the 401 and the recovery.
    pub fetched_token: bool,
}

/// Everything the report needs, copied out.
#[derive(Clone, Debug, Default)]
pub struct JournalSnapshot {
    pub name: String,
    pub now_ms: u64,
    /// The scenario's issued events (and the ones to come, with `issued_ms` in the future).
    pub events: Vec<EventRecord>,
    pub interruption_ms: Option<u64>,
    pub requests: Sample<RequestRecord>,
    pub first_request_ms: Option<u64>,
    pub polls: PollSummary,
    pub tokens: TokenUse,
    pub unauthorized: Unauthorized,
    pub redirects: Sample<RedirectRecord>,
    pub execs: Sample<ProcRecord>,
    pub exits: Sample<ProcRecord>,
    /// Every destination kept, whatever the detail; `total` counts connects.
    pub outbound: Sample<OutboundRecord>,
    /// Connects to destinations past [`MAX_DESTINATIONS`].
    pub outbound_other: u64,
    pub reactions: Vec<Reaction>,
    /// Reactions past [`MAX_REACTIONS`].
    pub reactions_dropped: u64,
    /// When the target's cgroup was last seen empty after having processes (the workload
    /// exit), or `None` while something runs.
    pub cgroup_empty_ms: Option<u64>,
    /// `exec`'s command status (exit code, or 128 + signal).
    pub command_status: Option<i32>,
}

/// Part of a counted stream: the records kept (none in a summary), and how many there were.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<T> {
    pub kept: Vec<T>,
    pub total: u64,
}

// By hand: a derived Default would ask `T: Default` of the records.
impl<T> Default for Sample<T> {
    fn default() -> Self {
        Sample {
            kept: Vec::new(),
            total: 0,
        }
    }
}

/// A bounded list: the first `head` items, then the latest `tail`.
#[derive(Clone, Debug)]
struct HeadTail<T> {
    head: Vec<T>,
    tail: VecDeque<T>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

impl<T: Clone> HeadTail<T> {
    fn new(head_cap: usize, tail_cap: usize) -> Self {
        Self {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap,
            total: 0,
        }
    }

    fn push(&mut self, item: T) {
        self.total += 1;
        if self.head.len() < self.head_cap {
            self.head.push(item);
            return;
        }
        if self.tail_cap == 0 {
            return;
        }
        if self.tail.len() == self.tail_cap {
            self.tail.pop_front();
        }
        self.tail.push_back(item);
    }

    /// What is kept (only the count unless `detail`).
    fn sample(&self, detail: bool) -> Sample<T> {
        Sample {
            kept: if detail {
                self.head.iter().chain(self.tail.iter()).cloned().collect()
            } else {
                Vec::new()
            },
            total: self.total,
        }
    }
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
    reactions: Vec<Reaction>,
    reactions_dropped: u64,
    /// Programs started (`("exec", comm)`) and destinations connected to (`(destination,
    /// comm)`) that are not reactions any more: seen before detection, or reported already.
    reacted_to: std::collections::HashSet<(String, String)>,
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
            reactions: Vec::new(),
            reactions_dropped: 0,
            reacted_to: std::collections::HashSet::new(),
            last_exit: None,
            cgroup_empty_ms: None,
            command_status: None,
        }
    }
}

impl Inner {
    fn react(&mut self, r: Reaction) {
        if self.reactions.len() < MAX_REACTIONS {
            self.reactions.push(r);
        } else {
            self.reactions_dropped += 1;
        }
    }

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

    fn after_detection(&self, at_ms: u64) -> bool {
        self.detected_ms.is_some_and(|d| at_ms >= d)
    }
}

/// The journal of one target. Shared by its responder (requests), the session (kernel
/// activity) and whoever asks for a report.
#[derive(Debug)]
pub struct Journal {
    name: String,
    timeline: Arc<Timeline>,
    inner: Mutex<Inner>,
}

impl Journal {
    pub fn new(name: String, timeline: Arc<Timeline>) -> Arc<Self> {
        Arc::new(Self {
            name,
            timeline,
            inner: Mutex::new(Inner::default()),
        })
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

    /// The responder answered a request; `path` is the router's canonical path.
    pub fn request(
        &self,
        at: SystemTime,
        method: &str,
        path: &str,
        status: u16,
        v2: bool,
        token: Option<&str>,
    ) {
        let at_ms = ms(at);
        let path: String = path.chars().take(MAX_PATH).collect();
        // Which issued events this answer showed: only a 200 on the event's own path.
        let mut read = Vec::new();
        let shown = (status == 200 && method != "PUT")
            .then(|| read_of(self.timeline.published(), &path))
            .flatten();
        if let Some(event) = shown {
            for (kind, issued) in self.timeline.events() {
                if Event::of(kind) == event && issued <= at {
                    read.push((event, ms(issued)));
                }
            }
        }
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
    }

    /// The kernel redirected one of the target's connects to the responder.
    pub fn redirect(&self, r: RedirectRecord) {
        lock(&self.inner).redirects.push(r);
    }

    /// A process of the target started a program. A reaction when the program is new since
    /// detection: a polling loop starting `curl` and `sleep` again is not reacting.
    pub fn exec(&self, p: ProcRecord) {
        let mut inner = lock(&self.inner);
        // A process started: the workload is running (again).
        inner.cgroup_empty_ms = None;
        let key = ("exec".to_string(), p.comm.clone());
        if !inner.after_detection(p.at_ms) {
            if inner.reacted_to.len() < MAX_SEEN {
                inner.reacted_to.insert(key);
            }
        } else if !inner.reacted_to.contains(&key) && inner.reacted_to.len() < MAX_SEEN {
            inner.reacted_to.insert(key);
            let detail = if p.detail.is_empty() {
                format!("started {}", p.comm)
            } else {
                p.detail.clone()
            };
            inner.react(Reaction {
                kind: "exec",
                at_ms: p.at_ms,
                pid: p.pid,
                comm: p.comm.clone(),
                detail,
            });
        }
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
        let key = (o.destination.clone(), o.comm.clone());
        // The first connect at or after detection to a destination (from a command) not
        // seen before it: exact when the whole window is after detection; when the window
        // straddles it, its latest connect is the earliest one known to be after.
        let seen_before = inner
            .outbound
            .get(&key)
            .is_some_and(|o| inner.detected_ms.is_none_or(|d| o.first_ms < d));
        if let Some(d) = inner
            .detected_ms
            .filter(|d| o.last_ms >= *d && !seen_before)
        {
            if !inner.reacted_to.contains(&key) && inner.reacted_to.len() < MAX_SEEN {
                inner.reacted_to.insert(key.clone());
                let at_ms = if o.first_ms >= d {
                    o.first_ms
                } else {
                    o.last_ms
                };
                inner.react(Reaction {
                    kind: "connect",
                    at_ms,
                    pid: o.pid,
                    comm: o.comm.clone(),
                    detail: format!("connect to {}", o.destination),
                });
            }
        }
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
        if inner.after_detection(at_ms) {
            inner.react(Reaction {
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
        let events = self.timeline.events();
        let inner = lock(&self.inner);
        let mut out_events = Vec::with_capacity(events.len());
        let mut interruption_ms = None;
        for (kind, at) in events {
            let event = Event::of(kind);
            let issued_ms = ms(at);
            if event == Event::Interruption {
                interruption_ms = Some(issued_ms);
            }
            let first_read_ms = inner.first_reads.get(&(event, issued_ms)).copied();
            out_events.push(EventRecord {
                kind: event,
                issued_ms,
                first_read_ms,
            });
        }
        let mut outbound: Vec<_> = inner.outbound.values().cloned().collect();
        outbound.sort_by_key(|o| o.first_ms);
        let mut reactions = inner.reactions.clone();
        reactions.sort_by_key(|r| r.at_ms);
        JournalSnapshot {
            name: self.name.clone(),
            now_ms: ms(now),
            events: out_events,
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
            reactions,
            reactions_dropped: inner.reactions_dropped,
            cgroup_empty_ms: inner.cgroup_empty_ms,
            command_status: inner.command_status,
        }
    }
}

#[cfg(test)]
mod tests;
