//! The reactions in a report: each in words with its delay from detection, the lines the
//! terminal summary gives them, and the verdict on each `--expect-react` (what was expected,
//! and what was seen instead when it was not).

use std::fmt::Write as _;

use super::{at, clock, html, said, ReactExpectation, ReactionReport, TargetReport, Verdict};
use crate::journal::{JournalSnapshot, ReactKind, ReactMatcher, Reaction};

/// Longest command line shown in a list or a sentence (the report keeps the whole argv).
const SHOWN_CHARS: usize = 100;
/// Reactions the summary lists in order; the report has them all.
const SUMMARY_LISTED: usize = 8;
/// Reactions a failed expectation names as "seen instead".
const SEEN_NAMED: usize = 5;

/// One reaction for the report. `react_from`: when the handler read the notice (or its first
/// event); delays count from there.
pub(super) fn report(
    r: &Reaction,
    s: &JournalSnapshot,
    react_from: u64,
    interruption: Option<u64>,
) -> ReactionReport {
    let detail = match r.kind {
        ReactKind::Exec => r.command().join(" "),
        ReactKind::Connect => format!(
            "connect to {} ({})",
            r.destination.as_deref().unwrap_or("?"),
            r.comm
        ),
        ReactKind::Exit => {
            let status = s
                .command_status
                .map(|c| format!("; the command's status {c}"))
                .unwrap_or_default();
            format!(
                "the workload exited: {} (pid {}) was the last process to go{status}",
                r.comm, r.pid
            )
        }
    };
    ReactionReport {
        kind: r.kind,
        at: at(r.at_ms),
        pid: r.pid,
        comm: r.comm.clone(),
        argv: r.argv.clone(),
        destination: r.destination.clone(),
        detail,
        new_command: r.new_command,
        latency_s: (r.at_ms as f64 - react_from as f64) / 1000.0,
        before_interruption: interruption.map(|i| r.at_ms < i),
    }
}

impl ReactionReport {
    /// For lists: `kubectl drain node-1 --force …`, `connect 10.0.0.1:443/tcp (kubectl)`,
    /// `exit`, cut at [`SHOWN_CHARS`].
    pub fn short(&self) -> String {
        let text = match self.kind {
            ReactKind::Exec => self.detail.clone(),
            ReactKind::Connect => format!(
                "connect {} ({})",
                self.destination.as_deref().unwrap_or("?"),
                self.comm
            ),
            ReactKind::Exit => "exit of the workload".into(),
        };
        if text.chars().count() > SHOWN_CHARS {
            text.chars().take(SHOWN_CHARS - 1).collect::<String>() + "…"
        } else {
            text
        }
    }

    /// `kubectl drain node-1 … +0.04 s`, `exit of the workload +6.2 s`: hundredths below a
    /// second, where most reactions are.
    pub fn with_delay(&self) -> String {
        if self.latency_s.abs() < 1.0 {
            format!("{} {:+.2} s", self.short(), self.latency_s)
        } else {
            format!("{} {:+.1} s", self.short(), self.latency_s)
        }
    }
}

/// The summary's reaction lines: the most telling ones, then all in order (the first few).
pub(super) fn summary_lines(t: &TargetReport) -> String {
    let mut out = String::new();
    if t.reactions.is_empty() {
        out.push_str(
            "  reaction: none seen (no program started, no outbound connect, no exit after detection)\n",
        );
        return out;
    }
    let telling: Vec<String> = t.most_telling.iter().map(|r| r.with_delay()).collect();
    if !telling.is_empty() {
        let _ = writeln!(out, "  reaction: {}", html::plain(&telling.join(", ")));
    }
    let listed: Vec<String> = t
        .reactions
        .iter()
        .take(SUMMARY_LISTED)
        .map(|r| r.with_delay())
        .collect();
    let more = t.reactions.len().saturating_sub(SUMMARY_LISTED) as u64 + t.reactions_not_listed;
    let more = if more > 0 {
        format!(", and {more} more (the report lists them)")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  reactions in order: {}{more}",
        html::plain(&listed.join(", "))
    );
    out
}

/// The "seen instead" of a failed expectation: the first reactions with their delays.
fn seen(reactions: &[ReactionReport], not_listed: u64) -> String {
    if reactions.is_empty() {
        return "nothing (no program started, no outbound connect, no exit after it)".into();
    }
    let named: Vec<String> = reactions
        .iter()
        .take(SEEN_NAMED)
        .map(ReactionReport::with_delay)
        .collect();
    let more = reactions.len().saturating_sub(SEEN_NAMED) as u64 + not_listed;
    if more > 0 {
        format!("{}, and {more} more", named.join(", "))
    } else {
        named.join(", ")
    }
}

/// One target's reactions and the instant they count from, for the expectations.
pub(super) struct Judged<'a> {
    pub s: &'a JournalSnapshot,
    pub reactions: &'a [ReactionReport],
    /// When the handler read the notice, else its first read of any event.
    pub react_from: Option<u64>,
    /// Which event `react_from` is the read of.
    pub read_what: &'static str,
}

impl Judged<'_> {
    /// Checks one `--expect-react`; a failure names what was expected and what was seen.
    pub(super) fn expectation(&self, e: &ReactExpectation, v: &mut Verdict) {
        v.checked.push(match e.within {
            Some(_) => format!("{} of detection", e.said()),
            None => e.said(),
        });
        let s = self.s;
        let interruption = s.interruption_ms.filter(|i| *i <= s.now_ms);
        let Some(d) = self.react_from else {
            v.reasons.push(format!(
                "expected {}, but the handler never read the notice (nor any other event), so there was nothing to react to; {}",
                e.said(),
                self.before_detection()
            ));
            return;
        };
        let read = format!("reading the {} at {}", self.read_what, clock(&at(d)));
        let expected = match e.within {
            Some(w) => format!(
                "expected {} within {} of {read}",
                e.said_what(),
                said(w.as_secs_f64())
            ),
            None => format!(
                "expected {} before the interruption, after {read}",
                e.said_what()
            ),
        };
        let reason = match self.first_match(&e.what) {
            Some(m) if interruption.is_some_and(|i| m.at_ms >= i) => format!(
                "{expected}; it came only after the interruption at {}: {}",
                clock(&at(interruption.unwrap_or(m.at_ms))),
                self.shown(&m)
            ),
            Some(m) => match e.within {
                Some(w) if m.at_ms.saturating_sub(d) > w.as_millis() as u64 => format!(
                    "{expected}; it came {} after: {}",
                    said((m.at_ms - d) as f64 / 1000.0),
                    self.shown(&m)
                ),
                _ => return,
            },
            None => format!(
                "{expected}; seen instead: {}{}",
                seen(self.reactions, s.reactions.not_listed),
                self.no_program_hint(&e.what)
            ),
        };
        v.reasons.push(reason);
    }

    /// The earliest reaction the matcher met: as the journal watched for it (exact past the
    /// lists' bounds), else among those listed.
    fn first_match(&self, m: &ReactMatcher) -> Option<Reaction> {
        let watched = self.s.reactions.matched.iter().find(|(w, _)| w == m);
        match watched {
            Some((_, found)) => found.clone(),
            None => self
                .s
                .reactions
                .listed
                .iter()
                .find(|r| m.matches(r))
                .cloned(),
        }
    }

    /// A matched reaction in words, escaped later with the whole reason.
    fn shown(&self, r: &Reaction) -> String {
        let from = self.react_from.unwrap_or(r.at_ms);
        report(r, self.s, from, None).short()
    }

    /// For a program expected when none ran: say so, and what to expect of such a handler.
    fn no_program_hint(&self, m: &ReactMatcher) -> String {
        if !matches!(m, ReactMatcher::Exec(_)) || self.s.reactions.execs_total > 0 {
            return String::new();
        }
        let all = self.s.execs.total;
        let before = match all {
            0 => "and none at all was seen in the target".to_string(),
            1 => "and only one (the handler itself) in the whole run".to_string(),
            n => format!("({n} before it)"),
        };
        let in_process = if all <= 1 {
            ": the handler does its work in-process, so expect what it does instead, such as `connect HOST:PORT` to the API server"
        } else {
            ""
        };
        format!("; no program was started after detection {before}{in_process}")
    }

    /// What the handler did, for a reason when it never read anything.
    fn before_detection(&self) -> String {
        let s = self.s;
        let asked = match s.requests.total {
            0 => "it made no IMDS request".to_string(),
            1 => "it made 1 IMDS request".to_string(),
            n => format!("it made {n} IMDS requests"),
        };
        let status = |c: Option<i32>| c.map(|c| format!(" with status {c}")).unwrap_or_default();
        let left = match (s.cgroup_empty_ms, s.command_status) {
            (Some(e), c) => format!("; the workload exited at {}{}", clock(&at(e)), status(c)),
            (None, Some(c)) => format!("; the command exited{}", status(Some(c))),
            (None, None) => String::new(),
        };
        format!("seen: {asked}{left}")
    }
}
