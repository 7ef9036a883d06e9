//! The reactions in the report and the verdict on them, from hand-made journals: facts
//! without a verdict when nothing is expected, the most telling reaction named, and
//! `--expect-react` failures that say what was expected and what was seen.

use super::tests::{polling, reasons, T};
use super::*;
use crate::journal::{JournalSnapshot, ReactKind, Reaction};

fn exec(at_ms: u64, comm: &str, argv: &[&str], new_command: bool) -> Reaction {
    Reaction {
        kind: ReactKind::Exec,
        at_ms,
        pid: 40,
        comm: comm.into(),
        argv: argv.iter().map(|w| w.to_string()).collect(),
        destination: None,
        new_command,
    }
}

fn connect(at_ms: u64, destination: &str) -> Reaction {
    Reaction {
        kind: ReactKind::Connect,
        destination: Some(destination.into()),
        ..exec(at_ms, "kubectl", &[], false)
    }
}

/// KSTNH as it reacts: reads the notice at T+10 s, logs with `date`, runs `kubectl drain`
/// (a script, through its interpreter), which connects to the API server, then sleeps.
fn kstnh() -> JournalSnapshot {
    let mut s = polling(1);
    let drain = exec(
        T + 10_300,
        "kubectl",
        &[
            "/bin/sh",
            "/tmp/bin/kubectl",
            "drain",
            "node-1",
            "--force",
            "--ignore-daemonsets",
            "--delete-local-data",
            "--grace-period=120",
        ],
        true,
    );
    let api = connect(T + 10_400, "127.0.0.1:6443/tcp");
    s.reactions.listed = vec![
        exec(T + 10_050, "date", &["date"], true),
        drain.clone(),
        api.clone(),
        exec(T + 10_500, "sleep", &["sleep", "200"], true),
    ];
    s.reactions.execs_total = 3;
    s.reactions.connects_listed = 1;
    s.reactions.telling = vec![drain, api];
    s.execs.total = 9;
    s
}

fn expect(react: &[&str]) -> Expectations {
    Expectations {
        react: react.iter().map(|r| r.parse().unwrap()).collect(),
        ..Default::default()
    }
}

#[test]
fn without_expectations_the_report_states_facts_and_gives_no_verdict() {
    let r = Report::build(&[kstnh()], &Expectations::default(), T + 20_000);
    assert_eq!(r.pass, None);
    assert!(r.targets[0].verdict.is_none());
    let summary = r.summary();
    assert!(
        !summary.contains("PASS") && !summary.contains("FAIL"),
        "{summary}"
    );
    assert!(
        summary.starts_with("exec: no expectation given, facts only"),
        "{summary}"
    );
    assert!(
        summary.contains("notice issued 08:00:10: read 08:00:10"),
        "{summary}"
    );
    assert!(summary.contains("reaction: kubectl drain"), "{summary}");
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["pass"], serde_json::Value::Null);
    assert_eq!(json["targets"][0]["verdict"], serde_json::Value::Null);
    assert!(!prometheus(&r).contains("spot_sim_verdict{"));
    let page = html::page(&r);
    assert!(!page.contains("PASS") && !page.contains("FAIL"));
    assert!(page.contains("No expectation was given"));
    // The same run judged: a verdict, PASS.
    let judged = Report::build(
        &[kstnh()],
        &expect(&["exec kubectl drain within 5s"]),
        T + 20_000,
    );
    assert_eq!(judged.pass, Some(true), "{:?}", judged.targets[0].verdict);
    assert!(judged.summary().starts_with("exec: verdict PASS\n"));
    assert!(prometheus(&judged).contains("spot_sim_verdict{target=\"exec\"} 1"));
}

#[test]
fn the_summary_names_the_most_telling_reaction_and_lists_them_all_in_order() {
    let r = Report::build(&[kstnh()], &Expectations::default(), T + 20_000);
    let summary = r.summary();
    let line = |start: &str| {
        summary
            .lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line: {summary}"))
            .to_string()
    };
    assert_eq!(
        line("reaction:"),
        "  reaction: kubectl drain node-1 --force --ignore-daemonsets --delete-local-data --grace-period=120 +0.30 s, connect 127.0.0.1:6443/tcp (kubectl) +0.40 s"
    );
    assert_eq!(
        line("reactions in order:"),
        "  reactions in order: date +0.05 s, kubectl drain node-1 --force --ignore-daemonsets --delete-local-data --grace-period=120 +0.30 s, connect 127.0.0.1:6443/tcp (kubectl) +0.40 s, sleep 200 +0.50 s"
    );
    let t = &r.targets[0];
    assert_eq!(t.reactions.len(), 4);
    assert_eq!(t.reactions[1].argv[2..4], ["drain", "node-1"]);
    // The whole command line in the report; cut only where it is shown in a line.
    assert_eq!(
        t.reactions[1].detail,
        "kubectl drain node-1 --force --ignore-daemonsets --delete-local-data --grace-period=120"
    );
    assert_eq!(t.most_telling.len(), 2);
    assert_eq!(t.programs_after_detection, 3);
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    let drain = &json["targets"][0]["reactions"][1];
    assert_eq!(drain["kind"], "exec");
    assert_eq!(drain["argv"][1], "/tmp/bin/kubectl");
    assert_eq!(drain["latency_s"], 0.3);
    assert_eq!(
        json["targets"][0]["reactions"][2]["destination"],
        "127.0.0.1:6443/tcp"
    );
    // The page lists them with their command lines, the most telling ones marked.
    let page = html::page(&r);
    assert_eq!(page.matches("<tr class=\"reaction").count(), 4);
    assert_eq!(page.matches("<tr class=\"reaction telling\"").count(), 2);
    assert!(page.contains(
        "<td class=\"argv\">/bin/sh /tmp/bin/kubectl drain node-1 --force --ignore-daemonsets --delete-local-data --grace-period=120</td>"
    ));
    // A long command line is cut where it is shown in a line, not in the report.
    let mut long = kstnh();
    let words: Vec<String> = (0..40).map(|i| format!("--flag-{i}")).collect();
    long.reactions.listed[0].argv = ["date".to_string()].into_iter().chain(words).collect();
    let r2 = Report::build(&[long], &Expectations::default(), T + 20_000);
    let shown = r2.targets[0].reactions[0].short();
    assert_eq!(shown.chars().count(), 100, "{shown}");
    assert!(shown.ends_with('…') && shown.starts_with("date --flag-0 --flag-1"));
    assert_eq!(r2.targets[0].reactions[0].argv.len(), 41);
    // Read back over the control socket, the report says the same.
    let back: Report = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(back.summary(), summary);
}

#[test]
fn an_expected_program_that_never_ran_names_what_ran_instead() {
    let r = Report::build(
        &[kstnh()],
        &expect(&["exec aws autoscaling complete-lifecycle-action within 5s"]),
        T + 20_000,
    );
    assert_eq!(r.pass, Some(false));
    assert_eq!(
        reasons(&r),
        vec!["expected `exec aws autoscaling complete-lifecycle-action` within 5 s of reading the notice at 08:00:10; seen instead: date +0.05 s, kubectl drain node-1 --force --ignore-daemonsets --delete-local-data --grace-period=120 +0.30 s, connect 127.0.0.1:6443/tcp (kubectl) +0.40 s, sleep 200 +0.50 s"]
    );
    assert_eq!(
        r.targets[0].verdict.as_ref().unwrap().checked,
        vec!["`exec aws autoscaling complete-lifecycle-action` within 5 s of detection"]
    );
}

#[test]
fn a_late_match_and_one_after_the_interruption_say_when_it_came() {
    let late = Report::build(&[kstnh()], &expect(&["exec sleep within 0.2s"]), T + 20_000);
    assert_eq!(
        reasons(&late),
        vec!["expected `exec sleep` within 0.2 s of reading the notice at 08:00:10; it came 0.5 s after: sleep 200"]
    );
    let mut s = kstnh();
    s.reactions
        .listed
        .push(connect(T + 15_000, "10.0.0.1:443/tcp"));
    let gone = Report::build(&[s], &expect(&["connect 10.0.0.1:443"]), T + 20_000);
    assert_eq!(
        reasons(&gone),
        vec!["expected `connect 10.0.0.1:443` before the interruption, after reading the notice at 08:00:10; it came only after the interruption at 08:00:14: connect 10.0.0.1:443/tcp (kubectl)"]
    );
    // Met: the API server connect, by port, within the time.
    let api = Report::build(
        &[kstnh()],
        &expect(&["connect :6443 within 1s"]),
        T + 20_000,
    );
    assert_eq!(api.pass, Some(true), "{:?}", api.targets[0].verdict);
}

#[test]
fn a_match_the_journal_watched_past_its_lists_counts() {
    let mut s = kstnh();
    let m: crate::journal::ReactMatcher = "exec kubectl cordon".parse().unwrap();
    let cordon = exec(
        T + 11_000,
        "kubectl",
        &["kubectl", "cordon", "node-1"],
        false,
    );
    s.reactions.matched = vec![(m, Some(cordon))];
    let r = Report::build(
        &[s],
        &expect(&["exec kubectl cordon within 2s"]),
        T + 20_000,
    );
    assert_eq!(r.pass, Some(true), "{:?}", r.targets[0].verdict);
}

#[test]
fn a_program_expected_of_a_handler_that_starts_none_says_so() {
    // An in-process handler (aws-node-termination-handler, a Python one): its only program
    // start is itself, and its reaction is a connect.
    let mut s = polling(1);
    s.execs.total = 1;
    s.reactions.listed = vec![connect(T + 10_200, "10.100.0.1:443/tcp")];
    let r = Report::build(&[s], &expect(&["exec kubectl drain within 5s"]), T + 20_000);
    assert_eq!(
        reasons(&r),
        vec!["expected `exec kubectl drain` within 5 s of reading the notice at 08:00:10; seen instead: connect 10.100.0.1:443/tcp (kubectl) +0.20 s; no program was started after detection and only one (the handler itself) in the whole run: the handler does its work in-process, so expect what it does instead, such as `connect HOST:PORT` to the API server"]
    );
}

#[test]
fn a_handler_that_never_read_the_notice_had_nothing_to_react_to() {
    let mut s = polling(8);
    s.events[0].first_read_ms = None;
    s.requests.total = 0;
    s.cgroup_empty_ms = Some(T + 300);
    s.command_status = Some(1);
    let r = Report::build(&[s], &expect(&["exec kubectl drain within 5s"]), T + 20_000);
    assert_eq!(
        reasons(&r),
        vec!["expected `exec kubectl drain` within 5 s, but the handler never read the notice (nor any other event), so there was nothing to react to; seen: it made no IMDS request; the workload exited at 08:00:00.300 with status 1"]
    );
}

/// A handler that drained on the rebalance recommendation, 2 s before it read the notice (as
/// the journal watched for the matcher): it met "within 1 s of reading the notice" early
/// (README: a reaction to an earlier event meets it).
#[test]
fn a_drain_before_the_notice_read_meets_a_limit_counted_from_it() {
    let mut s = kstnh();
    s.reactions.listed = vec![exec(
        T + 8_000,
        "kubectl",
        &["kubectl", "drain", "node-1"],
        true,
    )];
    s.reactions.matched = vec![(
        "exec kubectl drain".parse().unwrap(),
        Some(s.reactions.listed[0].clone()),
    )];
    let r = Report::build(
        &[s.clone()],
        &expect(&["exec kubectl drain within 1s"]),
        T + 20_000,
    );
    assert_eq!(r.pass, Some(true), "{:?}", r.targets[0].verdict);
    // The same drain 1.5 s after the read is late.
    s.reactions.listed[0].at_ms = T + 11_500;
    s.reactions.matched[0].1 = Some(s.reactions.listed[0].clone());
    let r = Report::build(&[s], &expect(&["exec kubectl drain within 1s"]), T + 20_000);
    assert_eq!(
        reasons(&r),
        ["expected `exec kubectl drain` within 1 s of reading the notice at 08:00:10; it came 1.5 s after: kubectl drain node-1"]
    );
}
