//! What the journal keeps: one record type per thing seen, the snapshot the report reads, and
//! the bounded list behind every sample.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::PollSummary;
use crate::scenario::Event;

/// One request the fake IMDS answered. Small: method and path are shared strings from the
/// journal's intern table.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub at_ms: u64,
    pub method: Arc<str>,
    /// The router's canonical path (single slashes, no trailing slash, any version shown as
    /// `latest`), cut at 200 characters; past [`super::MAX_INTERNED`] distinct ones, `(other)`.
    pub path: Arc<str>,
    pub status: u16,
    pub v2: bool,
    /// Seconds since the presented token was issued (IMDSv2 with a token we know).
    pub token_age_s: Option<f32>,
}

/// A process of the target, as the kernel reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcRecord {
    pub at_ms: u64,
    pub pid: u32,
    pub comm: String,
    /// A started program's command line word by word, escaped and cut short (see
    /// [`super::argv_words`]); empty for an exit, or when it could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
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

/// The kinds of reaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReactKind {
    /// A program started.
    Exec,
    /// The first outbound connect to a destination.
    Connect,
    /// The workload left: its cgroup emptied.
    Exit,
}

impl ReactKind {
    pub fn name(self) -> &'static str {
        match self {
            ReactKind::Exec => "exec",
            ReactKind::Connect => "connect",
            ReactKind::Exit => "exit",
        }
    }
}

impl std::fmt::Display for ReactKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Something the target did after detection (its first read of an event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reaction {
    pub kind: ReactKind,
    pub at_ms: u64,
    pub pid: u32,
    /// The kernel's name of the process (a script's file name, not its interpreter's).
    pub comm: String,
    /// A started program's command line, word by word (escaped, cut short).
    pub argv: Vec<String>,
    /// A connect's destination, `10.0.0.1:443/tcp`.
    pub destination: Option<String>,
    /// A command line (program and arguments) that did not run before detection: not the
    /// polling loop's `curl` or `sleep` running again.
    pub new_command: bool,
}

impl Reaction {
    /// A started program's command line from the word that names it: a script's interpreter
    /// and path (`/bin/sh /usr/local/bin/kubectl drain …`) read as `kubectl drain …`.
    pub fn command(&self) -> Vec<&str> {
        fn base(w: &str) -> &str {
            w.rsplit('/').next().unwrap_or(w)
        }
        // The kernel keeps 15 bytes of a name: compare the start.
        let names_it =
            |w: &str| !self.comm.is_empty() && base(w).as_bytes().starts_with(self.comm.as_bytes());
        match self.argv.iter().position(|w| names_it(w)) {
            Some(i) => std::iter::once(base(&self.argv[i]))
                .chain(self.argv[i + 1..].iter().map(String::as_str))
                .collect(),
            None if self.argv.is_empty() => vec![self.comm.as_str()],
            None => self.argv.iter().map(String::as_str).collect(),
        }
    }

    /// The arguments after the program's name.
    pub fn arguments(&self) -> usize {
        self.command().len().saturating_sub(1)
    }
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
    /// Connects to destinations past [`super::MAX_DESTINATIONS`].
    pub outbound_other: u64,
    pub reactions: super::ReactionsSnapshot,
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
pub(super) struct HeadTail<T> {
    head: Vec<T>,
    tail: VecDeque<T>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

impl<T: Clone> HeadTail<T> {
    pub(super) fn new(head_cap: usize, tail_cap: usize) -> Self {
        Self {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap,
            total: 0,
        }
    }

    pub(super) fn push(&mut self, item: T) {
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
    pub(super) fn sample(&self, detail: bool) -> Sample<T> {
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
