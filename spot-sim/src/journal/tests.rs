//! The journal on a manual clock: what it keeps, what it summarises, what it derives.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::scenario::{Clock, ManualClock, Scenario, Start, Timeline, PUBLISHED};

const ACTION: &str = "/latest/meta-data/spot/instance-action";

fn setup(start_in: u64, interruption_in: u64) -> (Arc<ManualClock>, Arc<Journal>, SystemTime) {
    let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let clock = Arc::new(ManualClock::new(t));
    let scenario = Scenario {
        start: Start::In(Duration::from_secs(start_in)),
        interruption_in: Duration::from_secs(interruption_in),
        ..Scenario::default()
    };
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let timeline = Timeline::new(scenario, dyn_clock);
    (clock, Journal::new("t".into(), timeline, PUBLISHED), t)
}

fn get(clock: &ManualClock, j: &Journal, path: &str, status: u16) {
    j.request(clock.now(), "GET", path, status, false, None);
}

#[test]
fn the_first_successful_read_of_the_notice_is_its_detection() {
    let (clock, j, t) = setup(5, 60);
    for _ in 0..4 {
        get(&clock, &j, ACTION, 404);
        clock.advance(Duration::from_secs(2));
    }
    // t+8: the notice (issued at t+5) is there.
    get(&clock, &j, ACTION, 200);
    clock.advance(Duration::from_secs(2));
    get(&clock, &j, ACTION, 200);
    let s = j.snapshot();
    let notice = s.events.iter().find(|e| e.kind == Event::Notice).unwrap();
    assert_eq!(notice.issued_ms, ms(t) + 5000);
    assert_eq!(notice.first_read_ms, Some(ms(t) + 8000));
    let rebalance = s
        .events
        .iter()
        .find(|e| e.kind == Event::Rebalance)
        .unwrap();
    assert_eq!(rebalance.first_read_ms, None, "never asked for it");
    assert_eq!(s.polls.count, 6);
    assert_eq!(s.polls.median_interval_s, Some(2.0));
    assert_eq!(s.requests.total, 6);
}

#[test]
fn token_age_and_recovery_from_a_401() {
    let (clock, j, _) = setup(0, 60);
    let token = "0123456789abcdef".to_string() + &"f".repeat(64);
    j.token_issued(&token, clock.now());
    clock.advance(Duration::from_secs(3));
    j.request(clock.now(), "GET", ACTION, 200, true, Some(&token));
    j.request(clock.now(), "GET", ACTION, 401, true, Some("bogus"));
    clock.advance(Duration::from_secs(1));
    j.token_issued(
        &("fedcba9876543210".to_string() + &"0".repeat(64)),
        clock.now(),
    );
    j.request(clock.now(), "PUT", "/latest/api/token", 200, true, None);
    j.request(clock.now(), "GET", ACTION, 200, true, Some(&token));
    let s = j.snapshot();
    assert_eq!(s.requests.kept[0].token_age_s, Some(3.0));
    assert_eq!(
        s.requests.kept[1].token_age_s, None,
        "not a token we issued"
    );
    assert_eq!(s.unauthorized.count, 1);
    assert!(s.unauthorized.fetched_token);
    assert!(s.unauthorized.recovered_ms.is_some());
    assert_eq!(s.tokens.tokens_issued, 2);
    assert_eq!(s.tokens.tokens_used, 1);
}

#[test]
fn memory_is_bounded_whatever_the_traffic() {
    let (clock, j, _) = setup(0, 60);
    for i in 0..100_000u32 {
        get(&clock, &j, &format!("/latest/meta-data/x{}", i % 1000), 404);
        clock.advance(Duration::from_millis(1));
    }
    for i in 0..10_000u32 {
        j.outbound(OutboundRecord {
            destination: format!("10.0.{}.{}:443/tcp", i / 256, i % 256),
            comm: "client".into(),
            pid: 7,
            first_ms: 1,
            last_ms: 1,
            count: 1,
        });
    }
    for i in 0..1000u32 {
        j.redirect(RedirectRecord {
            at_ms: 1,
            pid: i,
            comm: "client".into(),
            destination: "169.254.169.254:80".into(),
        });
    }
    let s = j.snapshot();
    assert_eq!(s.redirects.total, 1000);
    let pids: Vec<u32> = s.redirects.kept.iter().map(|r| r.pid).collect();
    assert_eq!(
        pids,
        (0..MAX_REDIRECTS as u32).collect::<Vec<_>>(),
        "the first ones"
    );
    assert_eq!(
        j.summary_snapshot().redirects,
        Sample {
            kept: Vec::new(),
            total: 1000
        }
    );
    assert_eq!(s.requests.total, 100_000);
    assert_eq!(s.requests.kept.len(), HEAD + TAIL);
    // 1000 distinct paths: the first ones by name, the rest as one shared "(other)".
    let distinct: std::collections::HashSet<_> =
        s.requests.kept.iter().map(|r| r.path.clone()).collect();
    assert!(distinct.len() <= MAX_INTERNED, "{}", distinct.len());
    assert!(distinct.iter().any(|p| &**p == "(other)"));
    assert_eq!(s.outbound.total, 10_000);
    assert_eq!(s.outbound.kept.len(), MAX_DESTINATIONS);
    assert_eq!(s.outbound_other, 10_000 - MAX_DESTINATIONS as u64);
}

#[test]
fn reactions_are_what_happens_after_detection() {
    let (clock, j, t) = setup(0, 60);
    let base = ms(t);
    let proc = |at_ms, pid, comm: &str, argv: &[&str]| ProcRecord {
        at_ms,
        pid,
        comm: comm.into(),
        argv: argv.iter().map(|w| w.to_string()).collect(),
    };
    j.exec(proc(base, 1, "handler", &[]));
    j.exec(proc(base + 900, 9, "curl", &["curl", "-s", "URL"]));
    clock.advance(Duration::from_secs(1));
    get(&clock, &j, ACTION, 200);
    // The polling loop runs curl again: a reaction too, but not a new program.
    j.exec(proc(base + 1200, 9, "curl", &["curl", "-s", "URL"]));
    j.exec(proc(
        base + 1500,
        2,
        "kubectl",
        &["/bin/sh", "/usr/bin/kubectl", "drain", "node"],
    ));
    // A window of connects that straddles detection counts from its latest connect.
    j.outbound(OutboundRecord {
        destination: "10.0.0.1:443/tcp".into(),
        comm: "kubectl".into(),
        pid: 2,
        first_ms: base + 500,
        last_ms: base + 1700,
        count: 3,
    });
    j.exit(proc(base + 2000, 1, "handler", &[]));
    j.cgroup_seen(true, clock.now() + Duration::from_secs(5));
    let s = j.snapshot();
    let kinds: Vec<_> = s
        .reactions
        .listed
        .iter()
        .map(|r| (r.kind.name(), r.at_ms - base, r.new_command))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("exec", 1200, false),
            ("exec", 1500, true),
            ("connect", 1700, false),
            ("exit", 2000, false)
        ],
        "{s:?}"
    );
    let drain = &s.reactions.listed[1];
    assert_eq!(drain.command(), ["kubectl", "drain", "node"]);
    assert_eq!(
        s.reactions.listed[2].destination.as_deref(),
        Some("10.0.0.1:443/tcp")
    );
    assert_eq!(s.cgroup_empty_ms, Some(base + 2000));
    assert_eq!(s.reactions.execs_total, 2);
}
