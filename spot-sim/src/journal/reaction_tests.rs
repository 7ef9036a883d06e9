//! Reactions on a manual clock: kept per kind from detection on, whatever came before; the
//! first connect after detection to each destination; the most telling ones; the matchers
//! watched past the bounds; the sweep asked for at detection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::scenario::{Clock, ManualClock, Scenario, Start, Timeline, PUBLISHED};

const ACTION: &str = "/latest/meta-data/spot/instance-action";

/// A journal whose notice is out from the start; `detect` reads it at t+1 s.
fn journal() -> (Arc<ManualClock>, Arc<Journal>, u64) {
    let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let clock = Arc::new(ManualClock::new(t));
    let scenario = Scenario {
        start: Start::In(Duration::ZERO),
        interruption_in: Duration::from_secs(120),
        ..Scenario::default()
    };
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let timeline = Timeline::new(scenario, dyn_clock);
    (clock, Journal::new("t".into(), timeline, PUBLISHED), ms(t))
}

fn detect(clock: &ManualClock, j: &Journal) -> Option<SweepDone> {
    clock.advance(Duration::from_secs(1));
    j.request(clock.now(), "GET", ACTION, 200, false, None)
}

fn exec(j: &Journal, at_ms: u64, comm: &str, argv: &[&str]) {
    j.exec(ProcRecord {
        at_ms,
        pid: 10,
        comm: comm.into(),
        argv: argv.iter().map(|w| w.to_string()).collect(),
    });
}

fn connect(j: &Journal, destination: &str, comm: &str, first_ms: u64, last_ms: u64) {
    j.outbound(OutboundRecord {
        destination: destination.into(),
        comm: comm.into(),
        pid: 20,
        first_ms,
        last_ms,
        count: 1 + u64::from(last_ms > first_ms),
    });
}

#[test]
fn a_flood_before_the_notice_hides_no_later_reaction() {
    let (clock, j, t0) = journal();
    // Before detection: 40,000 distinct destinations and 5,000 program starts.
    for i in 0..40_000u32 {
        let d = format!("127.0.{}.{}:9/tcp", i / 250, i % 250 + 1);
        connect(&j, &d, "curl", t0 + 10, t0 + 10);
    }
    for _ in 0..5_000 {
        exec(&j, t0 + 20, "curl", &["curl", "-s", "http://127.0.0.1:9/"]);
    }
    let d = ms(clock.now()) + 1000;
    let _ = detect(&clock, &j);
    // After it: 300 programs, a connect to a destination of the flood, the workload leaving.
    for i in 0..300u64 {
        exec(&j, d + 10 + i, "true", &["/bin/true"]);
    }
    connect(&j, "127.0.0.1:9/tcp", "curl", d + 500, d + 500);
    j.exit(ProcRecord {
        at_ms: d + 900,
        pid: 1,
        comm: "handler".into(),
        argv: Vec::new(),
    });
    j.cgroup_seen(true, clock.now() + Duration::from_secs(1));
    let r = j.snapshot().reactions;
    assert_eq!(r.execs_total, 300);
    let kinds = |k| r.listed.iter().filter(|x| x.kind == k).count();
    assert_eq!(kinds(ReactKind::Exec), MAX_EXEC_REACTIONS);
    assert_eq!(r.not_listed, 300 - MAX_EXEC_REACTIONS as u64);
    let api = r
        .listed
        .iter()
        .find(|x| x.kind == ReactKind::Connect)
        .unwrap();
    assert_eq!(api.destination.as_deref(), Some("127.0.0.1:9/tcp"));
    assert_eq!(api.at_ms, d + 500);
    assert_eq!(kinds(ReactKind::Exit), 1, "the exit is kept");
    assert_eq!(r.listed.last().unwrap().kind, ReactKind::Exit);
}

#[test]
fn each_kind_is_bounded_on_its_own_and_everything_is_counted() {
    let (clock, j, _) = journal();
    let d = ms(clock.now()) + 1000;
    let _ = detect(&clock, &j);
    for i in 0..1000u32 {
        connect(
            &j,
            &format!("10.1.{}.{}:443/tcp", i / 250, i % 250),
            "x",
            d + 1,
            d + 1,
        );
    }
    for _ in 0..1000 {
        exec(&j, d + 2, "sleep", &["sleep", "1"]);
    }
    j.exit(ProcRecord {
        at_ms: d + 3,
        ..ProcRecord::default()
    });
    j.cgroup_seen(true, clock.now() + Duration::from_secs(1));
    let r = j.snapshot().reactions;
    assert_eq!(r.connects_listed, MAX_CONNECT_REACTIONS as u64);
    assert_eq!(r.execs_total, 1000);
    assert_eq!(
        r.not_listed,
        (1000 - MAX_CONNECT_REACTIONS + 1000 - MAX_EXEC_REACTIONS) as u64
    );
    assert!(r.listed.iter().any(|x| x.kind == ReactKind::Exit));
    assert_eq!(
        r.listed.len(),
        MAX_CONNECT_REACTIONS + MAX_EXEC_REACTIONS + 1
    );
}

#[test]
fn the_first_connect_after_detection_counts_whatever_came_before() {
    let (clock, j, t0) = journal();
    // `kubectl get pod` at start: the API server, well before the notice.
    connect(&j, "10.0.0.1:443/tcp", "kubectl", t0 + 100, t0 + 100);
    let d = ms(clock.now()) + 1000;
    let _ = detect(&clock, &j);
    // The sweep at detection closed that window; after it, windows start after detection.
    connect(&j, "10.0.0.1:443/tcp", "kubectl", d + 400, d + 900);
    // The same sweep's record of another command to the same place, earlier: it is the first.
    connect(&j, "10.0.0.1:443/tcp", "curl", d + 300, d + 300);
    // A later sweep's connects to it are not new.
    connect(&j, "10.0.0.1:443/tcp", "kubectl", d + 5000, d + 6000);
    // A window wholly before detection is not a reaction, even when it arrives late.
    connect(&j, "10.9.9.9:53/udp", "kubectl", t0 + 200, t0 + 300);
    let r = j.snapshot().reactions;
    let connects: Vec<_> = r
        .listed
        .iter()
        .map(|x| (x.destination.clone().unwrap(), x.comm.clone(), x.at_ms - d))
        .collect();
    assert_eq!(
        connects,
        vec![("10.0.0.1:443/tcp".to_string(), "curl".to_string(), 300)]
    );
}

#[test]
fn the_most_telling_reaction_is_a_new_command_with_arguments_and_a_tcp_connect() {
    let (clock, j, _) = journal();
    let poll = [
        "curl",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-sL",
        "URL",
    ];
    exec(&j, ms(clock.now()), "curl", &poll);
    // KSTNH asks for its node with kubectl at start: kubectl is not new, its drain is.
    exec(
        &j,
        ms(clock.now()),
        "kubectl",
        &["kubectl", "get", "pod", "p"],
    );
    let d = ms(clock.now()) + 1000;
    let _ = detect(&clock, &j);
    exec(&j, d + 1, "date", &["date"]);
    // The polling loop's curl has more arguments, but that command line ran before.
    exec(&j, d + 2, "curl", &poll);
    exec(
        &j,
        d + 3,
        "kubectl",
        &["/bin/sh", "/k/kubectl", "drain", "node-1", "--force"],
    );
    exec(&j, d + 4, "sleep", &["sleep", "200"]);
    connect(&j, "10.0.0.2:53/udp", "kubectl", d + 5, d + 5);
    connect(&j, "10.0.0.1:443/tcp", "kubectl", d + 6, d + 6);
    let r = j.snapshot().reactions;
    let telling: Vec<_> = r.telling.iter().map(|x| (x.kind, x.at_ms - d)).collect();
    assert_eq!(
        telling,
        vec![(ReactKind::Exec, 3), (ReactKind::Connect, 6)],
        "{:?}",
        r.telling
    );
    assert_eq!(
        r.telling[0].command(),
        ["kubectl", "drain", "node-1", "--force"]
    );
    let new: Vec<_> = r
        .listed
        .iter()
        .map(|x| (x.comm.as_str(), x.new_command))
        .collect();
    assert_eq!(
        new[..4],
        [
            ("date", true),
            ("curl", false),
            ("kubectl", true),
            ("sleep", true)
        ]
    );
}

#[test]
fn a_watched_matcher_finds_its_reaction_past_the_lists_bounds() {
    let (clock, j, _) = journal();
    let drain: ReactMatcher = "exec kubectl drain".parse().unwrap();
    let api: ReactMatcher = "connect :6443".parse().unwrap();
    j.watch_for(vec![drain.clone(), api.clone()]);
    let d = ms(clock.now()) + 1000;
    let _ = detect(&clock, &j);
    for i in 0..MAX_EXEC_REACTIONS as u64 + 10 {
        exec(&j, d + i, "true", &["true"]);
    }
    for i in 0..MAX_CONNECT_REACTIONS as u32 + 10 {
        connect(&j, &format!("10.2.0.{i}:80/tcp"), "x", d + 1, d + 1);
    }
    exec(&j, d + 4000, "kubectl", &["kubectl", "drain", "node-1"]);
    connect(&j, "127.0.0.1:6443/tcp", "kubectl", d + 4100, d + 4100);
    let r = j.snapshot().reactions;
    assert!(!r.listed.iter().any(|x| drain.matches(x)), "not listed");
    let found: Vec<_> = r
        .matched
        .iter()
        .map(|(m, x)| (m.clone(), x.as_ref().map(|x| x.at_ms - d)))
        .collect();
    assert_eq!(found, vec![(drain, Some(4000)), (api, Some(4100))]);
}

#[test]
fn detection_asks_once_for_a_sweep_of_the_kernels_connect_windows() {
    let (clock, j, _) = journal();
    assert!(
        detect(&clock, &j).is_none(),
        "no session: nothing to wait for"
    );
    let (clock, j, _) = journal();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    j.set_sweeper(Box::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        tokio::sync::oneshot::channel().1
    }));
    // Reads of anything else are not detection.
    j.request(
        clock.now(),
        "GET",
        "/latest/meta-data/instance-id",
        200,
        false,
        None,
    );
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    assert!(detect(&clock, &j).is_some());
    assert!(detect(&clock, &j).is_none());
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

#[test]
fn reaction_times_are_the_kernels_not_the_drains() {
    // Records carry their own times; one that arrives late is placed where it happened.
    let (clock, j, _) = journal();
    let d = ms(clock.now()) + 1000;
    let _ = detect(&clock, &j);
    clock.advance(Duration::from_secs(30));
    exec(&j, d + 250, "kubectl", &["kubectl", "drain", "n"]);
    let r = j.snapshot().reactions;
    assert_eq!(r.listed[0].at_ms, d + 250);
    let _ = SystemTime::now();
}
