//! Verdicts and their reasons, and the report's formats, from hand-made journals.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::journal::{EventRecord, JournalSnapshot, Polls, RequestRecord, Sample};

pub(super) const T: u64 = 1_800_000_000_000;

/// A handler polling every `every` seconds from T; the notice at T+10 s, the instance gone at
/// T+14 s, and the handler killed then.
pub(super) fn polling(every: u64) -> JournalSnapshot {
    let mut polls = Polls::default();
    let mut requests = Vec::new();
    let mut first_read = None;
    let mut at = T;
    while at < T + 14_000 {
        polls.request(at, "/latest/meta-data/spot/termination-time");
        let notice = at >= T + 10_000;
        if notice && first_read.is_none() {
            first_read = Some(at);
        }
        requests.push(RequestRecord {
            at_ms: at,
            method: "GET".into(),
            path: "/latest/meta-data/spot/termination-time".into(),
            status: if notice { 200 } else { 404 },
            v2: false,
            token_age_s: None,
        });
        at += every * 1000;
    }
    JournalSnapshot {
        name: "exec".into(),
        now_ms: T + 20_000,
        events: vec![
            EventRecord {
                kind: Event::Notice,
                issued_ms: T + 10_000,
                first_read_ms: first_read,
            },
            EventRecord {
                kind: Event::Interruption,
                issued_ms: T + 14_000,
                first_read_ms: None,
            },
        ],
        interruption_ms: Some(T + 14_000),
        requests: Sample {
            total: requests.len() as u64,
            kept: requests,
        },
        polls: polls.summary(),
        ..Default::default()
    }
}

fn expect_detect(s: u64) -> Expectations {
    Expectations {
        detect: Some(Duration::from_secs(s)),
        ..Default::default()
    }
}

/// The first target's reasons (it must have a verdict).
pub(super) fn reasons(r: &Report) -> Vec<String> {
    r.targets[0]
        .verdict
        .as_ref()
        .expect("a verdict")
        .reasons
        .clone()
}

#[test]
fn a_handler_polling_every_second_passes_every_expectation_on_detection() {
    let r = Report::build(&[polling(1)], &expect_detect(2), T + 20_000);
    assert_eq!(r.pass, Some(true), "{:?}", r.targets[0].verdict);
    let t = &r.targets[0];
    assert_eq!(t.events[0].detection_latency_s, Some(0.0));
    assert_eq!(t.polls.median_interval_s, Some(1.0));
}

#[test]
fn a_handler_polling_every_8_s_misses_the_notice_and_the_reason_says_why() {
    let r = Report::build(&[polling(8)], &expect_detect(5), T + 20_000);
    assert_eq!(r.pass, Some(false));
    let why = reasons(&r);
    assert_eq!(why.len(), 1, "{why:?}");
    assert_eq!(
        why[0],
        "notice issued 08:00:10, not read within 5 s (never read before the interruption at 08:00:14); polls were 8 s apart"
    );
    // A game day's node with no --expect-*: the notice read in time, failed the same way.
    let node = Expectations {
        read_in_time: true,
        ..Default::default()
    };
    let r = Report::build(&[polling(8)], &node, T + 20_000);
    assert_eq!(r.pass, Some(false));
    assert!(reasons(&r)[0].contains("polls were 8 s apart"));
}

#[test]
fn a_late_read_names_both_instants_and_the_gap() {
    let mut s = polling(8);
    s.events[0].first_read_ms = Some(T + 18_000);
    s.events[1].issued_ms = T + 30_000;
    s.interruption_ms = Some(T + 30_000);
    let r = Report::build(&[s], &expect_detect(5), T + 20_000);
    assert_eq!(
        reasons(&r),
        vec![
            "notice issued 08:00:10, first read 08:00:18: 8 s > 5 s expected; polls were 8 s apart"
        ]
    );
}

#[test]
fn drained_and_react_expectations() {
    let mut s = polling(1);
    s.cgroup_empty_ms = Some(T + 15_000);
    let expect = Expectations {
        drained: true,
        react: vec!["2s".parse().unwrap()],
        ..Default::default()
    };
    let r = Report::build(&[s], &expect, T + 20_000);
    let why = reasons(&r);
    assert_eq!(why.len(), 2, "{why:?}");
    assert_eq!(
        why[0],
        "expected a reaction within 2 s of reading the notice at 08:00:10; seen instead: nothing (no program started, no outbound connect, no exit after it)"
    );
    assert_eq!(
        why[1],
        "the workload exited at 08:00:15, 1 s after the interruption at 08:00:14"
    );
}

#[test]
fn the_html_has_one_tick_per_request_and_one_marker_per_issued_event_all_escaped() {
    let mut s = polling(1);
    s.requests.kept[0].path = std::sync::Arc::from("/<script>alert(1)</script>");
    let r = Report::build(&[s], &Expectations::default(), T + 20_000);
    let page = html::page(&r);
    assert_eq!(
        page.matches("class=\"req\"").count(),
        r.targets[0].requests.len()
    );
    assert_eq!(page.matches("<g class=\"event").count(), 2);
    assert!(!page.contains("<script>"));
    assert!(page.contains("&lt;script&gt;"));
    let svg = svg::document(&r);
    assert!(svg.starts_with("<?xml"));
    assert_eq!(
        svg.matches("class=\"req\"").count(),
        r.targets[0].requests.len()
    );
}

#[test]
fn the_json_has_the_documented_fields() {
    let r = Report::build(&[polling(1)], &expect_detect(2), T + 20_000);
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    let t = &v["targets"][0];
    for key in ["name", "events", "polls", "reactions", "verdict"] {
        assert!(t.get(key).is_some(), "{key} missing: {t}");
    }
    assert_eq!(t["events"][0]["kind"], "notice");
    for key in ["issued_at", "first_read_at", "detection_latency_s"] {
        assert!(t["events"][0].get(key).is_some(), "{key}");
    }
    for key in ["count", "median_interval_s", "max_gap_s", "v1", "v2"] {
        assert!(t["polls"].get(key).is_some(), "{key}");
    }
    assert_eq!(t["verdict"]["pass"], true);
    assert!(t["verdict"]["reasons"].as_array().unwrap().is_empty());
}

#[test]
fn bad_report_paths_and_unprovable_expectations_are_refused() {
    let scenario = crate::scenario::Scenario {
        interruption_in: Duration::from_secs(4),
        ..Default::default()
    };
    let args = |report: &str, detect: Option<u64>| VerdictArgs {
        expect_detect: detect.map(Duration::from_secs),
        report: vec![report.into()],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("r.json");
    assert!(args(ok.to_str().unwrap(), Some(2))
        .check(&scenario, true)
        .is_ok());
    let pdf = dir.path().join("r.pdf");
    for (report, detect, says) in [
        (ok.to_str().unwrap(), Some(10), "longer than the 4s"),
        ("/nonexistent-dir-xyz/r.json", None, "does not exist"),
        (pdf.to_str().unwrap(), None, "unknown extension"),
        ("/proc/r.json", None, "cannot write"),
    ] {
        let e = args(report, detect).check(&scenario, true).unwrap_err();
        assert!(e.to_string().contains(says), "{report}: {e}");
    }
    let react = |what: &str| VerdictArgs {
        expect_react: vec![what.into()],
        ..Default::default()
    };
    // Programs and exits need the kernel's process records; connects do not.
    assert!(react("1s").check(&scenario, false).is_err());
    assert!(react("exec kubectl drain").check(&scenario, false).is_err());
    assert!(react("connect :443 within 5s")
        .check(&scenario, false)
        .is_ok());
    for (what, says) in [
        ("exec kubectl drain within 0s", "can never hold"),
        ("0s", "can never hold"),
        ("kubectl drain within 5s", "unknown reaction `kubectl`"),
    ] {
        let e = react(what).check(&scenario, true).unwrap_err().to_string();
        assert!(e.contains(says), "{what}: {e}");
    }
    assert!(ReportFormat::of(Path::new("x.HTML")).is_ok());
}

#[test]
fn a_kill_at_the_interruption_is_not_the_handler_reacting() {
    let mut s = polling(1);
    s.reactions.listed.push(crate::journal::Reaction {
        kind: crate::journal::ReactKind::Exit,
        at_ms: T + 14_050,
        pid: 7,
        comm: "sleep".into(),
        argv: Vec::new(),
        destination: None,
        new_command: false,
    });
    let expect = Expectations {
        react: vec!["10s".parse().unwrap()],
        ..Default::default()
    };
    let r = Report::build(&[s], &expect, T + 20_000);
    assert_eq!(
        reasons(&r),
        vec!["expected a reaction within 10 s of reading the notice at 08:00:10; it came only after the interruption at 08:00:14: exit of the workload"]
    );
    assert_eq!(r.targets[0].reactions[0].before_interruption, Some(false));
    assert_eq!(r.targets[0].all_before_interruption, Some(false));
}

#[test]
fn report_timestamps_are_rfc3339_with_milliseconds() {
    assert_eq!(at(1_795_645_080_123), "2026-11-25T22:18:00.123Z");
    assert_eq!(at(1_795_645_080_007), "2026-11-25T22:18:00.007Z");
    assert_eq!(clock(&at(1_795_645_080_000)), "22:18:00");
    assert_eq!(clock(&at(1_795_645_080_450)), "22:18:00.450");
}

/// A handler whose connects spot-sim redirected but never answered (its listener was in
/// another network namespace) was not served; one that never connected was not asked. The
/// verdict blames the handler only for the second.
#[test]
fn not_served_and_not_asked_are_different_findings() {
    let mut silent = polling(8);
    silent.requests = Sample::default();
    silent.polls = Polls::default().summary();
    silent.events[0].first_read_ms = None;
    let node = Expectations {
        read_in_time: true,
        ..Default::default()
    };
    let r = Report::build(&[silent.clone()], &node, T + 20_000);
    let reason = &reasons(&r)[0];
    assert!(
        reason.ends_with("not asked: the handler made no IMDS request"),
        "{reason}"
    );

    silent.redirects = Sample {
        kept: Vec::new(),
        total: 3,
    };
    let r = Report::build(&[silent.clone()], &node, T + 20_000);
    let reason = &reasons(&r)[0];
    assert!(reason.contains("not served: the kernel redirected the handler's IMDS connects (3 reported) but spot-sim answered none"), "{reason}");
    assert!(reason.contains("the handler is not at fault"), "{reason}");
    assert!(!reason.contains("not asked"), "{reason}");
    // Without an expectation there is no verdict, and the summary still says it as a fact.
    let facts = Report::build(&[silent], &Expectations::default(), T + 20_000).summary();
    assert!(
        facts.contains(
            "  not served: the kernel redirected the handler's IMDS connects (3 reported)"
        ),
        "{facts}"
    );
}

#[test]
fn a_stopped_game_day_says_so_in_every_format_and_only_then() {
    let mut r = Report::build(&[polling(1)], &Expectations::default(), T + 20_000);
    let plain = (r.to_json(), r.summary(), prometheus(&r), html::page(&r));
    assert!(!plain.0.contains("stopped"), "{}", plain.0);
    assert!(!plain.1.contains("stopped"), "{}", plain.1);
    assert!(!plain.2.contains("spot_sim_stopped{"), "{}", plain.2);
    assert!(
        !plain.3.contains("class=\"stop"),
        "stop marker without a stop"
    );
    r.stopped = Some(crate::stop::Stopped::new(
        crate::stop::Halt {
            reason: crate::stop::StopReason::StopIf,
            condition: "http:http://127.0.0.1:8080/healthz: answered 503 <b>".into(),
        },
        at(T + 12_000),
    ));
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["stopped"]["reason"], "stop-if");
    assert_eq!(json["stopped"]["at"], at(T + 12_000));
    let back: Report = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(back.stopped, r.stopped);
    let summary = r.summary();
    assert!(
        summary.starts_with(&format!(
            "stopped at {} (stop-if): http:http://127.0.0.1:8080/healthz: answered 503 <b>; every target was detached then\n",
            clock(&at(T + 12_000))
        )),
        "{summary}"
    );
    assert!(prometheus(&r).contains(
        "spot_sim_stopped{reason=\"stop-if\",condition=\"http:http://127.0.0.1:8080/healthz: answered 503 <b>\"} 1\n"
    ));
    let page = html::page(&r);
    assert_eq!(
        page.matches("<g class=\"stop\" data-reason=\"stop-if\">")
            .count(),
        1
    );
    assert!(
        page.contains("<p class=\"stopped\"><strong>Stopped</strong>"),
        "{page}"
    );
    assert!(
        page.contains("answered 503 &lt;b&gt;") && !page.contains("503 <b>"),
        "escaped"
    );
    assert!(svg::document(&r).contains("class=\"stop\""));
}

#[test]
fn a_notice_first_read_3_4_s_after_its_issue_is_reported_3_4_s_late() {
    let mut s = polling(1);
    s.events[0].first_read_ms = Some(T + 13_400);
    let r = Report::build(&[s.clone()], &expect_detect(4), T + 20_000);
    assert_eq!(r.pass, Some(true), "{:?}", r.targets[0].verdict);
    assert_eq!(r.targets[0].events[0].detection_latency_s, Some(3.4));
    let r = Report::build(&[s], &expect_detect(3), T + 20_000);
    assert_eq!(
        reasons(&r),
        ["notice issued 08:00:10, first read 08:00:13.400: 3.4 s > 3 s expected; polls were 1 s apart"]
    );
}
