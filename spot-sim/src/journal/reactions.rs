//! What the journal keeps of the reactions: every program started after detection, the first
//! connect after detection to each destination, the workload's exit. Bounded per kind and
//! counted only from detection on, so nothing before the notice (a flood of connects, a
//! polling loop's thousand `curl`s) can crowd a later reaction out, nor can one kind crowd out
//! another. Beside the lists: the most telling program and connect, and the first match of
//! each matcher the user gave, both found as records come in, so neither is lost past the
//! bounds.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use super::{ReactKind, ReactMatcher, Reaction};

/// Programs started after detection, listed (the first ones); later ones are counted.
pub const MAX_EXEC_REACTIONS: usize = 256;
/// Destinations first connected to after detection, listed; later ones are counted.
pub const MAX_CONNECT_REACTIONS: usize = 256;
/// Command lines remembered as run before detection (the polling loop's).
const MAX_COMMANDS_BEFORE: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct Reactions {
    execs: Vec<Reaction>,
    /// Programs started after detection, listed or not.
    execs_total: u64,
    /// Destination → its first connect after detection.
    connects: HashMap<String, Reaction>,
    /// Connects after detection to destinations past [`MAX_CONNECT_REACTIONS`] (each connect
    /// counted, as the kernel counts them).
    connects_not_listed: u64,
    exit: Option<Reaction>,
    /// Command lines (hashed) run before detection.
    commands_before: HashSet<u64>,
    telling_exec: Option<Reaction>,
    telling_connect: Option<Reaction>,
    /// The user's matchers, each with the earliest reaction it matched.
    watched: Vec<(ReactMatcher, Option<Reaction>)>,
}

/// The reactions as a report reads them.
#[derive(Clone, Debug, Default)]
pub struct ReactionsSnapshot {
    /// Everything listed, in time order.
    pub listed: Vec<Reaction>,
    /// Programs started after detection (listed or not).
    pub execs_total: u64,
    /// Distinct destinations listed.
    pub connects_listed: u64,
    /// Programs and connects after detection past the lists' bounds.
    pub not_listed: u64,
    /// The most telling program and the most telling connect (see [`Reactions::exec`] and
    /// [`Reactions::connect`]), at most one of each, in time order.
    pub telling: Vec<Reaction>,
    /// Each matcher the journal was asked to watch for, with its earliest match.
    pub matched: Vec<(ReactMatcher, Option<Reaction>)>,
}

impl Reactions {
    /// Watch for these from now on (earlier reactions are looked at again).
    pub(super) fn watch(&mut self, matchers: Vec<ReactMatcher>) {
        let listed = self.listed();
        self.watched = matchers
            .into_iter()
            .map(|m| {
                let first = listed.iter().find(|r| m.matches(r)).cloned();
                (m, first)
            })
            .collect();
    }

    /// A program started before detection: its command line is the polling loop's (or a
    /// set-up step's), not a reaction's when it runs again.
    pub(super) fn before_detection(&mut self, comm: &str, argv: &[String]) {
        if self.commands_before.len() < MAX_COMMANDS_BEFORE {
            self.commands_before.insert(command_hash(comm, argv));
        }
    }

    /// A program started after detection. The most telling one is a command line new since
    /// detection (not the polling loop's `curl` again; `kubectl drain` is new even when
    /// `kubectl get pod` ran at start), then the one with the most arguments (`kubectl drain
    /// node-1 --force` says more than `date`), then the earliest.
    pub(super) fn exec(&mut self, mut r: Reaction) {
        r.new_command = !self
            .commands_before
            .contains(&command_hash(&r.comm, &r.argv));
        self.execs_total += 1;
        let rank = |x: &Reaction| (x.new_command, x.arguments());
        if self
            .telling_exec
            .as_ref()
            .is_none_or(|t| rank(&r) > rank(t) || (rank(&r) == rank(t) && r.at_ms < t.at_ms))
        {
            self.telling_exec = Some(r.clone());
        }
        self.see(&r);
        if self.execs.len() < MAX_EXEC_REACTIONS {
            self.execs.push(r);
        }
    }

    /// A connect after detection: kept when it is the first to its destination (the kernel's
    /// records of one sweep come in any order). The most telling one is the first TCP
    /// connect (a DNS lookup over UDP comes before most), else the first.
    pub(super) fn connect(&mut self, r: Reaction, destination: &str, count: u64) {
        let tcp = |x: &Reaction| {
            x.destination
                .as_deref()
                .is_some_and(|d| d.ends_with("/tcp"))
        };
        if self.telling_connect.as_ref().is_none_or(|t| {
            (tcp(&r), std::cmp::Reverse(r.at_ms)) > (tcp(t), std::cmp::Reverse(t.at_ms))
        }) {
            self.telling_connect = Some(r.clone());
        }
        self.see(&r);
        let full = self.connects.len() >= MAX_CONNECT_REACTIONS;
        match self.connects.get_mut(destination) {
            Some(first) if r.at_ms < first.at_ms => *first = r,
            Some(_) => {}
            None if full => self.connects_not_listed += count,
            None => {
                self.connects.insert(destination.to_string(), r);
            }
        }
    }

    /// The workload exited after detection (the first time counts: a pod's container may
    /// start again and leave again).
    pub(super) fn exit(&mut self, r: Reaction) {
        if self.exit.is_none() {
            self.see(&r);
            self.exit = Some(r);
        }
    }

    /// The matchers it meets take it if it is their earliest.
    fn see(&mut self, r: &Reaction) {
        for (m, first) in &mut self.watched {
            if m.matches(r) && first.as_ref().is_none_or(|f| r.at_ms < f.at_ms) {
                *first = Some(r.clone());
            }
        }
    }

    fn listed(&self) -> Vec<Reaction> {
        let mut all: Vec<Reaction> = self
            .execs
            .iter()
            .chain(self.connects.values())
            .chain(self.exit.iter())
            .cloned()
            .collect();
        // Stable: a program start and its own connect in the same millisecond keep that order.
        all.sort_by_key(|r| (r.at_ms, r.kind != ReactKind::Exec));
        all
    }

    pub(super) fn snapshot(&self) -> ReactionsSnapshot {
        let mut telling: Vec<Reaction> = self
            .telling_exec
            .iter()
            .chain(self.telling_connect.iter())
            .cloned()
            .collect();
        telling.sort_by_key(|r| r.at_ms);
        ReactionsSnapshot {
            listed: self.listed(),
            execs_total: self.execs_total,
            connects_listed: self.connects.len() as u64,
            not_listed: self.execs_total.saturating_sub(self.execs.len() as u64)
                + self.connects_not_listed,
            telling,
            matched: self.watched.clone(),
        }
    }
}

/// A command line's identity: its words (or the program's name when they were not read).
fn command_hash(comm: &str, argv: &[String]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    comm.hash(&mut h);
    argv.hash(&mut h);
    h.finish()
}
