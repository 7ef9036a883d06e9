//! The timeline driven by a manual clock, and scenario files and options as a user writes them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;

use super::*;
// The scenario file and options (settings) are tested here beside the timeline they build.
use crate::imds::Imdsv2Mode;
use crate::settings::{ScenarioArgs, Settings};

/// 2026-11-25T22:18:00Z
fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_645_080)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn timeline(scenario: Scenario) -> (Arc<ManualClock>, Arc<Timeline>) {
    let clock = Arc::new(ManualClock::new(start()));
    let timeline = Timeline::new(scenario, clock.clone());
    (clock, timeline)
}

/// A timeline with no rebalance recommendation, interrupted `interruption_in` after its start.
fn without_rebalance(interruption_in: Duration) -> (Arc<ManualClock>, Arc<Timeline>) {
    timeline(Scenario {
        interruption_in,
        rebalance: false,
        ..Scenario::default()
    })
}

#[test]
fn the_default_scenario_is_fis_with_two_minutes_recommendation_and_notice_at_once() {
    assert_eq!(rfc3339(start()), "2026-11-25T22:18:00Z");
    let (clock, t) = timeline(Scenario::default());
    let s = t.schedule().expect("started at once");
    assert_eq!(s.t0, start());
    assert_eq!(s.rebalance_at, Some(start()));
    assert_eq!(s.notice_at, start());
    assert_eq!(rfc3339(s.action_time), "2026-11-25T22:20:00Z");
    assert_eq!(t.phase(), Phase::Notice);
    assert_eq!(t.next_change(), Some(start() + secs(120)));
    clock.advance(secs(119));
    assert_eq!(t.phase(), Phase::Notice);
    clock.advance(secs(1));
    assert_eq!(t.phase(), Phase::Interrupted);
    assert_eq!(t.next_change(), None);
}

#[test]
fn a_long_interruption_walks_through_every_phase_in_order() {
    let (clock, t) = timeline(Scenario {
        start: Start::In(secs(30)),
        interruption_in: secs(300),
        rebalance_lead: secs(60),
        ..Scenario::default()
    });
    assert_eq!(t.phase(), Phase::Waiting);
    assert_eq!(t.next_change(), Some(start() + secs(30)));
    clock.advance(secs(30));
    assert_eq!(t.phase(), Phase::Rebalance);
    // Notice at t0 + lead + D − 2 min.
    assert_eq!(t.next_change(), Some(start() + secs(30 + 60 + 180)));
    clock.advance(secs(240));
    assert_eq!(t.phase(), Phase::Notice);
    let s = t.schedule().expect("started");
    assert_eq!(s.action_time, start() + secs(30 + 60 + 300));
    clock.advance(secs(120));
    assert_eq!(t.phase(), Phase::Interrupted);
}

#[test]
fn a_short_interruption_clamps_the_notice_to_the_start_but_keeps_its_time() {
    let (clock, t) = without_rebalance(secs(5));
    let s = t.schedule().expect("started");
    assert_eq!(s.notice_at, start());
    assert_eq!(s.action_time, start() + secs(5));
    assert_eq!(s.rebalance_at, None);
    assert_eq!(t.phase(), Phase::Notice);
    clock.advance(secs(5));
    assert_eq!(t.phase(), Phase::Interrupted);
}

#[test]
fn without_rebalance_nothing_shows_until_the_notice() {
    let (clock, t) = without_rebalance(secs(600));
    assert_eq!(t.phase(), Phase::Waiting);
    clock.advance(secs(479));
    assert_eq!(t.phase(), Phase::Waiting);
    clock.advance(secs(1));
    assert_eq!(t.phase(), Phase::Notice);
}

#[test]
fn hibernation_gets_no_warning() {
    let (_clock, t) = timeline(Scenario {
        action: Action::Hibernate,
        ..Scenario::default()
    });
    let s = t.schedule().expect("started");
    assert_eq!(s.notice_at, start());
    assert_eq!(s.action_time, start());
    // The guest takes D (here the default, two minutes) to suspend; until then the notice shows.
    assert_eq!(t.phase(), Phase::Notice);
    assert_eq!(s.interrupted_at, start() + secs(120));
    // A longer D does not keep a hibernating instance up longer: two minutes at most.
    let (_clock, t) = timeline(Scenario {
        action: Action::Hibernate,
        interruption_in: secs(600),
        ..Scenario::default()
    });
    let s = t.schedule().expect("started");
    assert_eq!(
        (s.notice_at, s.interrupted_at),
        (start(), start() + secs(120))
    );
}

#[test]
fn t0_is_whole_seconds_so_every_timestamp_is() {
    let clock = Arc::new(ManualClock::new(start() + Duration::from_millis(700)));
    let t = Timeline::new(Scenario::default(), clock.clone());
    assert_eq!(t.schedule().expect("started").t0, start());
}

#[test]
fn a_manual_timeline_waits_for_its_trigger_and_starts_once() {
    let (clock, t) = timeline(Scenario {
        start: Start::Manual,
        interruption_in: secs(300),
        ..Scenario::default()
    });
    clock.advance(secs(3600));
    assert_eq!(t.phase(), Phase::Waiting);
    assert_eq!(t.next_change(), None);
    let status = t.status();
    assert!(status.waiting_for_trigger);
    assert!(status.render().contains("waiting for `spot-sim trigger`"));

    let woken = t.subscribe();
    t.trigger().expect("first trigger starts it");
    assert!(woken.has_changed().expect("timeline alive"));
    assert_eq!(t.phase(), Phase::Rebalance);
    assert_eq!(t.schedule().expect("started").t0, start() + secs(3600));

    clock.advance(secs(1));
    let err = t.trigger().expect_err("second trigger");
    assert_eq!(
        err.to_string(),
        "the timeline already started at 2026-11-25T23:18:00Z; a run is triggered once (start a new session to rehearse again)"
    );
}

#[test]
fn a_trigger_brings_a_delayed_start_forward() {
    let (clock, t) = timeline(Scenario {
        start: Start::In(secs(600)),
        ..Scenario::default()
    });
    clock.advance(secs(10));
    t.trigger().expect("not started yet");
    assert_eq!(t.schedule().expect("started").t0, start() + secs(10));
}

#[test]
fn status_shows_what_was_issued_when_and_what_comes_next() {
    let (clock, t) = timeline(Scenario {
        interruption_in: secs(300),
        ..Scenario::default()
    });
    clock.advance(secs(200));
    let status = t.status();
    assert_eq!(status.phase, Phase::Notice);
    assert_eq!(status.issued.len(), 2);
    assert_eq!(status.issued[0].event, EventKind::RebalanceRecommendation);
    assert_eq!(status.issued[0].at, "2026-11-25T22:18:00Z");
    assert_eq!(status.issued[1].at, "2026-11-25T22:21:00Z");
    assert_eq!(
        status.issued[1].time.as_deref(),
        Some("2026-11-25T22:23:00Z")
    );
    let next = status.next.as_ref().expect("interruption pending");
    assert_eq!(next.event, EventKind::Interruption);
    assert_eq!(next.in_seconds, 100);

    let json = serde_json::to_value(&status).expect("serializable");
    assert_eq!(json["phase"], "notice");
    assert_eq!(json["issued"][1]["event"], "interruption_notice");
    assert_eq!(json["issued"][1]["action"], "terminate");
    assert_eq!(json["next"]["in_seconds"], 100);

    let text = status.render();
    assert!(
        text.contains("interruption notice (terminate at 2026-11-25T22:23:00Z)"),
        "{text}"
    );
    assert!(
        text.contains("next:    interruption at 2026-11-25T22:23:00Z, in 1m 40s"),
        "{text}"
    );
}

// --- scenario files and options ---

fn from_toml(text: &str) -> Result<Settings, ScenarioError> {
    Settings::from_toml(Path::new("spot.toml"), text)
}

fn error(text: &str) -> String {
    from_toml(text).expect_err("must be refused").to_string()
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let s = from_toml("").expect("valid");
    assert_eq!(s.scenario, Scenario::default());
    assert_eq!(s.on_interrupt, OnInterrupt::None);
    assert_eq!(s.imds.imdsv2, Imdsv2Mode::Optional);
    assert!(s.imds.passthrough.is_none());
    assert_eq!(s.imds.metadata.region, "us-east-1");
    assert_eq!(s.imds.metadata.hostname, "ip-172-31-38-17.ec2.internal");
}

#[test]
fn a_file_sets_the_timeline_the_imds_and_the_metadata() {
    let s = from_toml(
        r#"
[scenario]
start-in = "30s"
interruption-in = "5m"
rebalance-lead = "1m 30s"
action = "stop"
rebalance = false
on-interrupt = "kill"

[imds]
imdsv2 = "required"
passthrough = true
passthrough-upstream = "127.0.0.1:8080"
allow-credentials = true

[faults]
error-503-rate = 0.25
latency = "150ms"
token-ttl = 30

[metadata]
instance-id = "i-0123456789abcdef0"
availability-zone = "eu-west-1b"
local-ipv4 = "10.1.2.3"

[[maintenance]]
code = "system-reboot"
not-before = "21 Jan 2026 09:00:00 GMT"
not-after = "21 Jan 2026 11:00:00 GMT"
"#,
    )
    .expect("valid");
    assert_eq!(
        s.scenario,
        Scenario {
            start: Start::In(secs(30)),
            interruption_in: secs(300),
            rebalance_lead: secs(90),
            action: Action::Stop,
            rebalance: false,
            asg_terminate_in: None,
            maintenance: s.scenario.maintenance.clone(),
        }
    );
    assert_eq!(s.on_interrupt, OnInterrupt::Kill);
    assert_eq!(s.imds.imdsv2, Imdsv2Mode::Required);
    let p = s.imds.passthrough.as_ref().expect("passthrough on");
    assert_eq!(p.upstream.to_string(), "127.0.0.1:8080");
    assert!(s.imds.allow_credentials);
    assert_eq!(s.imds.faults.error_503_rate, 0.25);
    assert_eq!(s.imds.faults.latency, Duration::from_millis(150));
    assert_eq!(s.imds.faults.token_ttl, Some(30));
    let m = &s.imds.metadata;
    assert_eq!(m.instance_id, "i-0123456789abcdef0");
    assert_eq!(m.region, "eu-west-1");
    assert_eq!(m.hostname, "ip-10-1-2-3.eu-west-1.compute.internal");
    assert_eq!(s.scenario.maintenance.len(), 1);
    assert_eq!(s.scenario.maintenance[0].state, MaintenanceState::Active);
}

#[path = "instance_tests.rs"]
mod instance_tests;

#[test]
fn an_unknown_field_is_named_with_the_allowed_ones() {
    let e = error("[scenario]\ninteruption-in = \"5m\"\n");
    assert!(e.starts_with("spot.toml:2: unknown field `interuption-in`, expected one of `start-in`, `manual`, `interruption-in`"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    let e = error("[senario]\n");
    assert!(
        e.contains("unknown field `senario`") && e.contains("`scenario`"),
        "{e}"
    );
}

#[test]
fn a_bad_action_names_the_field_and_the_allowed_values() {
    let e = error("[scenario]\naction = \"explode\"\n");
    assert_eq!(
        e,
        "spot.toml:2: field `action`: unknown variant `explode`, expected one of `terminate`, `stop`, `hibernate`"
    );
}

/// Refused in one line that starts with `starts` and says each of `says`.
fn assert_refused(toml: &str, starts: &str, says: &[&str]) {
    let e = error(toml);
    assert!(e.starts_with(starts), "{e}");
    for s in says {
        assert!(e.contains(s), "{s}: {e}");
    }
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn a_bad_duration_says_how_to_write_one() {
    assert_refused(
        "[scenario]\n\ninterruption-in = \"5 parsecs\"\n",
        "spot.toml:3: field `interruption-in`: invalid duration `5 parsecs`",
        &["write it like \"90s\", \"2m\" or \"1h 30m\""],
    );
}

#[test]
fn values_that_parse_but_make_no_sense_are_refused_with_the_fix() {
    for (toml, starts, says) in [
        (
            "[scenario]\nmanual = true\nstart-in = \"10s\"\n",
            "spot.toml: scenario.manual = true: contradicts scenario.start-in",
            &["allowed: either manual = true or start-in, not both"][..],
        ),
        (
            "[imds]\npassthrough = true\npassthrough-upstream = \"imds\"\n",
            "spot.toml",
            &["imds.passthrough-upstream = \"imds\""],
        ),
        (
            "[[maintenance]]\ncode = \"system-reboot\"\nnot-before = \"2026-01-21\"\n",
            "spot.toml",
            &["maintenance[0].not-before", "21 Jan 2026 09:00:00 GMT"],
        ),
        (
            "[[maintenance]]\ncode = \"reboot\"\nnot-before = \"21 Jan 2026 09:00:00 GMT\"\n",
            "spot.toml",
            &["maintenance[0].code", "system-reboot"],
        ),
        (
            "[scenario]\ninterruption-in = \"0s\"\n",
            "spot.toml",
            &["scenario.interruption-in = 0s"],
        ),
    ] {
        assert_refused(toml, starts, says);
    }
    assert_eq!(
        error("[faults]\nerror-503-rate = 1.5\n"),
        "spot.toml: faults.error-503-rate = 1.5: not a fraction (allowed: 0.0 to 1.0)"
    );
}

#[test]
fn a_missing_file_is_named() {
    let e = Settings::from_file(Path::new("/nonexistent/spot.toml"))
        .expect_err("missing")
        .to_string();
    assert!(
        e.starts_with("cannot read scenario file /nonexistent/spot.toml:"),
        "{e}"
    );
}

/// How `exec`, `run` and `serve` embed the options.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    scenario: ScenarioArgs,
}

fn cli(args: &[&str]) -> ScenarioArgs {
    let mut argv = vec!["spot-sim"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).expect("valid options").scenario
}

#[test]
fn the_command_line_beats_the_file_which_beats_the_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spot.toml");
    std::fs::write(
        &path,
        "[scenario]\nmanual = true\ninterruption-in = \"5m\"\naction = \"stop\"\n\n[metadata]\nregion = \"eu-central-1\"\navailability-zone = \"eu-central-1c\"\n",
    )
    .expect("write");
    let path = path.to_str().expect("utf-8");

    let file_only = cli(&["--scenario", path]).resolve().expect("valid");
    assert_eq!(file_only.scenario.start, Start::Manual);
    assert_eq!(file_only.scenario.action, Action::Stop);
    assert_eq!(file_only.scenario.rebalance_lead, Duration::ZERO);

    let s = cli(&[
        "--scenario",
        path,
        "--start-in",
        "10s",
        "--action",
        "hibernate",
        "--no-rebalance",
        "--imdsv2",
        "required",
        "--fault-token-ttl",
        "5",
        "--availability-zone",
        "ap-south-1a",
    ])
    .resolve()
    .expect("valid");
    assert_eq!(
        s.scenario.start,
        Start::In(secs(10)),
        "--start-in replaces manual"
    );
    assert_eq!(s.scenario.action, Action::Hibernate);
    assert_eq!(s.scenario.interruption_in, secs(300), "from the file");
    assert!(!s.scenario.rebalance);
    assert_eq!(s.imds.imdsv2, Imdsv2Mode::Required);
    assert_eq!(s.imds.faults.token_ttl, Some(5));
    assert_eq!(
        s.imds.metadata.region, "ap-south-1",
        "the file's region went with its zone"
    );
}

#[test]
fn passthrough_defaults_to_the_real_imds_address() {
    let s = cli(&["--passthrough"]).resolve().expect("valid");
    let p = s.imds.passthrough.expect("on");
    assert_eq!(p.upstream.to_string(), "169.254.169.254:80");
    assert_eq!(p.timeout, secs(2));
    let s = cli(&["--passthrough-upstream", "127.0.0.1:9"])
        .resolve()
        .expect("valid");
    assert!(
        s.imds.passthrough.is_none(),
        "an upstream alone does not turn passthrough on"
    );
}

#[test]
fn options_are_checked_when_parsed() {
    let parse = |args: &[&str]| {
        let mut argv = vec!["spot-sim"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let e = parse(&["--fault-503-rate", "2"]).expect_err("out of range");
    assert!(e.contains("between 0.0 and 1.0"), "{e}");
    let e = parse(&["--start-in", "soon"]).expect_err("not a duration");
    assert!(e.contains("invalid duration `soon`"), "{e}");
    let e = parse(&["--manual", "--start-in", "5s"]).expect_err("conflict");
    assert!(e.contains("cannot be used with"), "{e}");
    let e = parse(&["--action", "explode"]).expect_err("bad action");
    assert!(e.contains("terminate, stop, hibernate"), "{e}");
    parse(&["--on-interrupt", "kill", "--fault-latency", "200ms"]).expect("valid");
}

#[test]
fn absurd_durations_are_refused_instead_of_overflowing_the_clock() {
    // Found by `cargo xtask fuzz` (scenario_file): this panicked in Timeline::new.
    let e = error("[scenario]\nstart-in = \"400000000000y\"\n");
    assert!(
        e.contains("scenario.start-in") && e.contains("at most 366 days"),
        "{e}"
    );
    let e = cli(&["--interruption-in", "400000000000y"])
        .resolve()
        .expect_err("must be refused")
        .to_string();
    assert!(e.contains("command line: scenario.interruption-in"), "{e}");
    assert!(from_toml("[scenario]\nstart-in = \"366days\"\n").is_ok());
}
