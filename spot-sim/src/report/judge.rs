//! From one journal to findings and a verdict. Pure: the same snapshot and expectations give
//! the same report, so it is unit-tested without a kernel.

use super::{
    at, clock, reactions, said, EventReport, Expectations, OutboundReport, PollReport, ProcReport,
    ReactionReport, RequestReport, TargetReport, Verdict,
};
use std::time::Duration;

use crate::journal::{EventRecord, JournalSnapshot, ReactKind, Reaction};
use crate::scenario::Event;

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Findings and verdict for one target.
pub fn judge(s: &JournalSnapshot, expect: &Expectations) -> TargetReport {
    let now = s.now_ms;
    let detected_ms = s.events.iter().filter_map(|e| e.first_read_ms).min();
    // Reactions count from the notice's detection when it was read, else the first read of
    // anything (a handler may drain on the rebalance recommendation).
    let notice_read = s
        .events
        .iter()
        .filter(|e| e.kind == Event::Notice)
        .filter_map(|e| e.first_read_ms)
        .min();
    let react_from = notice_read.or(detected_ms);
    let read_what = match (notice_read, detected_ms) {
        (Some(_), _) => "notice",
        (None, Some(d)) => s
            .events
            .iter()
            .find(|e| e.first_read_ms == Some(d))
            .map_or("first event", |e| e.kind.name()),
        (None, None) => "notice",
    };
    let interruption = s.interruption_ms.filter(|i| *i <= now);
    let listed = |rs: &[Reaction]| -> Vec<ReactionReport> {
        rs.iter()
            .filter(|r| detected_ms.is_some_and(|d| r.at_ms >= d))
            .map(|r| reactions::report(r, s, react_from.unwrap_or(r.at_ms), s.interruption_ms))
            .collect()
    };
    let reactions = listed(&s.reactions.listed);
    let first_of = |kind: ReactKind| {
        s.reactions
            .listed
            .iter()
            .filter(|r| r.kind == kind && react_from.is_some_and(|d| r.at_ms >= d))
            .map(|r| r.at_ms)
            .min()
    };
    let latency = |t: Option<u64>| Some(secs(t?.saturating_sub(react_from?)));
    let exit = s
        .cgroup_empty_ms
        .filter(|e| react_from.is_some_and(|d| *e >= d));
    let all_before = s.interruption_ms.map(|i| {
        detected_ms.is_some_and(|d| d < i) && s.reactions.listed.iter().all(|r| r.at_ms < i)
    });
    let judged = reactions::Judged {
        s,
        reactions: &reactions,
        react_from,
        read_what,
    };
    let verdict = expect.any().then(|| verdict(s, expect, &judged));
    TargetReport {
        name: s.name.clone(),
        first_request_at: s.first_request_ms.map(at),
        interruption_at: s.interruption_ms.map(at),
        events: event_reports(s),
        polls: poll_report(s),
        detected_at: detected_ms.map(at),
        most_telling: listed(&s.reactions.telling),
        programs_after_detection: s.reactions.execs_total,
        destinations_after_detection: s.reactions.connects_listed,
        reactions_not_listed: s.reactions.not_listed,
        first_exec_s: latency(first_of(ReactKind::Exec)),
        first_connect_s: latency(first_of(ReactKind::Connect)),
        workload_exit_s: latency(exit),
        all_before_interruption: all_before.filter(|_| interruption.is_some()),
        workload_exited_at: s.cgroup_empty_ms.map(at),
        requests_total: s.requests.total,
        requests: request_reports(s),
        redirects_total: s.redirects.total,
        outbound_total: s.outbound.total,
        outbound: outbound_reports(s),
        outbound_other: s.outbound_other,
        execs_total: s.execs.total,
        execs: s
            .execs
            .kept
            .iter()
            .map(|e| ProcReport {
                at: at(e.at_ms),
                pid: e.pid,
                comm: e.comm.clone(),
            })
            .collect(),
        exits_total: s.exits.total,
        command_status: s.command_status,
        reactions,
        verdict,
    }
}

/// Each scenario event, and when the handler first read it.
fn event_reports(s: &JournalSnapshot) -> Vec<EventReport> {
    s.events
        .iter()
        .map(|e| EventReport {
            kind: e.kind,
            issued_at: at(e.issued_ms),
            pending: e.issued_ms > s.now_ms,
            first_read_at: e.first_read_ms.map(at),
            detection_latency_s: e.first_read_ms.map(|r| secs(r.saturating_sub(e.issued_ms))),
        })
        .collect()
}

/// How the handler polled, and how it got past its 401s.
fn poll_report(s: &JournalSnapshot) -> PollReport {
    let p = &s.polls;
    let recovery = (s.unauthorized.count > 0).then(|| match s.unauthorized.recovered_ms {
        Some(r) if s.unauthorized.fetched_token => {
            format!("recovered at {} by fetching a new token", clock(&at(r)))
        }
        Some(r) => format!("recovered at {} without a new token", clock(&at(r))),
        None => "did not recover: no successful read after the last 401".into(),
    });
    PollReport {
        count: p.count,
        median_interval_s: p.median_interval_s,
        max_gap_s: p.max_gap_s,
        max_gap_from: p.max_gap_ms.map(|(a, _)| at(a)),
        max_gap_to: p.max_gap_ms.map(|(_, b)| at(b)),
        tokens: s.tokens,
        requests_per_token: s.tokens.requests_per_token(),
        unauthorized: s.unauthorized.count,
        unauthorized_recovery: recovery,
    }
}

/// The requests kept.
fn request_reports(s: &JournalSnapshot) -> Vec<RequestReport> {
    s.requests
        .kept
        .iter()
        .map(|r| RequestReport {
            at: at(r.at_ms),
            method: r.method.to_string(),
            path: r.path.to_string(),
            status: r.status,
            version: if r.v2 { "v2" } else { "v1" }.into(),
            // f32 in the journal; shown to the millisecond.
            token_age_s: r
                .token_age_s
                .map(|a| (f64::from(a) * 1000.0).round() / 1000.0),
        })
        .collect()
}

/// Every destination kept.
fn outbound_reports(s: &JournalSnapshot) -> Vec<OutboundReport> {
    s.outbound
        .kept
        .iter()
        .map(|o| OutboundReport {
            destination: o.destination.clone(),
            comm: o.comm.clone(),
            pid: o.pid,
            first_at: at(o.first_ms),
            last_at: at(o.last_ms),
            count: o.count,
        })
        .collect()
}

/// How the handler polled, for a reason: "polls were 8 s apart".
fn poll_words(s: &JournalSnapshot) -> String {
    let p = &s.polls;
    match (p.median_interval_s, p.max_gap_s) {
        (Some(m), Some(g)) if g > m * 1.5 && g - m >= 1.0 => {
            format!("polls were {} apart (longest gap {})", said(m), said(g))
        }
        (Some(m), _) => format!("polls were {} apart", said(m)),
        _ if p.count == 1 => "the handler polled only once".into(),
        // Redirected but never answered: spot-sim failed to serve, not the handler to ask.
        _ if s.redirects.total > 0 => not_served(s.redirects.total),
        _ => "not asked: the handler made no IMDS request".into(),
    }
}

/// Redirected but never answered: spot-sim failed to serve, not the handler to ask. A fact
/// with or without a verdict.
pub(super) fn not_served(redirects: u64) -> String {
    format!(
        "not served: the kernel redirected the handler's IMDS connects ({redirects} reported) but spot-sim answered none of them (no listener in the handler's network namespace: see spot-sim's log); the handler is not at fault"
    )
}

fn verdict(s: &JournalSnapshot, expect: &Expectations, judged: &reactions::Judged) -> Verdict {
    let run = Run::new(s);
    let mut v = Verdict::default();
    if expect.read_in_time {
        run.read_before_interruption(&mut v);
    }
    if let Some(d) = expect.detect {
        run.detected_within(d, &mut v);
    }
    for e in &expect.react {
        judged.expectation(e, &mut v);
    }
    if expect.drained {
        run.drained(&mut v);
    }
    v.pass = v.reasons.is_empty();
    v
}

/// One target's run, as the expectations read it.
struct Run<'a> {
    s: &'a JournalSnapshot,
    now: u64,
    interruption: Option<u64>,
    /// The notices issued by now.
    notices: Vec<&'a EventRecord>,
}

impl<'a> Run<'a> {
    fn new(s: &'a JournalSnapshot) -> Run<'a> {
        let now = s.now_ms;
        Run {
            s,
            now,
            interruption: s.interruption_ms,
            notices: s
                .events
                .iter()
                .filter(|e| e.kind == Event::Notice && e.issued_ms <= now)
                .collect(),
        }
    }

    /// The notices to judge; that none was issued is itself a reason.
    fn issued_notices(&self, v: &mut Verdict) -> &[&'a EventRecord] {
        if self.notices.is_empty() {
            v.reasons.push(self.not_issued());
        }
        &self.notices
    }

    fn not_issued(&self) -> String {
        match self.s.events.iter().find(|e| e.kind == Event::Notice) {
            Some(d) => format!(
                "the notice was never issued (due {}, the run ended at {}): nothing to detect",
                clock(&at(d.issued_ms)),
                clock(&at(self.now))
            ),
            None => "the scenario issues no notice: nothing to detect".into(),
        }
    }

    /// Why an unread notice stayed unread.
    fn unread(&self) -> String {
        match self.interruption {
            None => "never read".into(),
            Some(i) if i <= self.now => {
                format!("never read before the interruption at {}", clock(&at(i)))
            }
            Some(_) => "not read yet".into(),
        }
    }

    /// "notice issued 12:00:00, `what`; polls were 8 s apart".
    fn notice_reason(&self, n: &EventRecord, what: &str) -> String {
        format!(
            "notice issued {}, {what}; {}",
            clock(&at(n.issued_ms)),
            poll_words(self.s)
        )
    }

    /// Each notice read before the interruption (a game day's default).
    fn read_before_interruption(&self, v: &mut Verdict) {
        v.checked
            .push("the notice was read before the interruption".into());
        for n in self.issued_notices(v) {
            let read_in_time = n
                .first_read_ms
                .is_some_and(|r| self.interruption.is_none_or(|i| r < i));
            if !read_in_time {
                v.reasons.push(self.notice_reason(n, &self.unread()));
            }
        }
    }

    fn detected_within(&self, d: Duration, v: &mut Verdict) {
        let limit = d.as_millis() as u64;
        v.checked.push(format!(
            "each notice read within {} of its issue",
            said(d.as_secs_f64())
        ));
        for n in self.issued_notices(v) {
            let late = match n.first_read_ms {
                Some(r) if r.saturating_sub(n.issued_ms) <= limit => continue,
                Some(r) => format!(
                    "first read {}: {} > {} expected",
                    clock(&at(r)),
                    said(secs(r - n.issued_ms)),
                    said(d.as_secs_f64())
                ),
                None => format!(
                    "not read within {} ({})",
                    said(d.as_secs_f64()),
                    self.unread()
                ),
            };
            v.reasons.push(self.notice_reason(n, &late));
        }
    }

    fn drained(&self, v: &mut Verdict) {
        let (s, now, interruption) = (self.s, self.now, self.interruption);
        v.checked
            .push("every process exited before the interruption".into());
        match (s.cgroup_empty_ms, interruption) {
            (Some(e), Some(i)) if e < i => {}
            (Some(e), Some(i)) => v.reasons.push(format!(
                "the workload exited at {}, {} after the interruption at {}",
                clock(&at(e)),
                said(secs(e - i)),
                clock(&at(i))
            )),
            (Some(_), None) => {}
            (None, Some(i)) if i <= now => v.reasons.push(format!(
                "processes were still running at the interruption ({})",
                clock(&at(i))
            )),
            (None, _) => v
                .reasons
                .push("processes are still running (the interruption has not come yet)".into()),
        }
    }
}
