//! The instance's configuration on the timeline, driven by a manual clock: maintenance events
//! issued, canceled and completed; the ASG lifecycle state; an absolute start; and every bad
//! value refused in one line.

use super::*;

fn plan(text: &str) -> Scenario {
    from_toml(text).expect("valid").scenario
}

#[test]
fn a_maintenance_event_is_absent_before_its_issue_active_after_and_canceled_later() {
    let (clock, t) = timeline(plan(
        "[[maintenance]]\ncode = \"system-reboot\"\nissue-in = \"30s\"\nnot-before-in = \"2h\"\n\
         not-after-in = \"2h 30m\"\nnot-before-deadline-in = \"3h\"\ncancel-in = \"60s\"\n",
    ));
    let (scheduled, history) = t.maintenance_at(clock.now());
    assert!(scheduled.is_empty() && history.is_empty(), "not issued yet");
    assert_eq!(
        t.next_change(),
        Some(start() + secs(30)),
        "the issue is on the timeline"
    );

    clock.advance(secs(30));
    let (scheduled, history) = t.maintenance_at(clock.now());
    assert_eq!(scheduled.len(), 1);
    assert!(history.is_empty());
    let e = &scheduled[0];
    assert_eq!(e.state, MaintenanceState::Active);
    assert_eq!(e.code, "system-reboot");
    assert_eq!(e.description, "scheduled system reboot");
    // Issued at 22:18:30; dates counted from the issue, in IMDS's format.
    assert_eq!(e.not_before, "26 Nov 2026 00:18:30 GMT");
    assert_eq!(e.not_after.as_deref(), Some("26 Nov 2026 00:48:30 GMT"));
    assert_eq!(
        e.not_before_deadline.as_deref(),
        Some("26 Nov 2026 01:18:30 GMT")
    );

    clock.advance(secs(59));
    assert_eq!(
        t.maintenance_at(clock.now()).0[0].state,
        MaintenanceState::Active
    );
    clock.advance(secs(1));
    let (scheduled, history) = t.maintenance_at(clock.now());
    assert_eq!(scheduled[0].state, MaintenanceState::Canceled);
    assert_eq!(history.len(), 1, "history gets the canceled event");
    assert_eq!(history[0].description, "[Canceled] scheduled system reboot");
    // The dates did not move.
    assert_eq!(history[0].not_before, "26 Nov 2026 00:18:30 GMT");
}

#[test]
fn a_completed_event_and_absolute_dates() {
    let (clock, t) = timeline(plan(
        "[[maintenance]]\ncode = \"instance-stop\"\nnot-before = \"1 Dec 2026 09:00:00 GMT\"\n\
         complete-in = \"10s\"\n",
    ));
    let (scheduled, _) = t.maintenance_at(clock.now());
    assert_eq!(scheduled[0].not_before, "01 Dec 2026 09:00:00 GMT");
    clock.advance(secs(10));
    let (_, history) = t.maintenance_at(clock.now());
    assert_eq!(history[0].state, MaintenanceState::Completed);
    let issued: Vec<_> = t.status().issued.into_iter().map(|e| e.event).collect();
    assert!(
        issued.contains(&EventKind::MaintenanceScheduled),
        "{issued:?}"
    );
    assert!(
        issued.contains(&EventKind::MaintenanceCompleted),
        "{issued:?}"
    );
}

#[test]
fn nothing_is_issued_while_a_manual_timeline_waits() {
    let (clock, t) = timeline(plan(
        "[scenario]\nmanual = true\n[[maintenance]]\ncode = \"system-reboot\"\nnot-before-in = \"1h\"\n",
    ));
    assert!(t.maintenance_at(clock.now()).0.is_empty());
    t.trigger().expect("trigger");
    assert_eq!(t.maintenance_at(clock.now()).0.len(), 1);
}

#[test]
fn the_asg_terminates_the_instance_at_its_time_counted_from_t0() {
    let (clock, t) = timeline(plan(
        "[scenario]\nstart-in = \"10s\"\ninterruption-in = \"5m\"\nasg-terminate-in = \"20s\"\n",
    ));
    assert!(!t.asg_terminated_at(clock.now()));
    clock.advance(secs(29));
    assert!(!t.asg_terminated_at(clock.now()));
    clock.advance(secs(1));
    assert!(t.asg_terminated_at(clock.now()));
    assert_ne!(t.phase(), Phase::Interrupted, "still answering");
    assert!(t
        .status()
        .issued
        .iter()
        .any(|e| e.event == EventKind::AsgTerminated));
}

#[test]
fn no_asg_means_no_autoscaling_tree_and_cannot_be_terminated() {
    let s = from_toml("[scenario]\nasg = false\n").expect("valid");
    assert!(!s.imds.metadata.autoscaling);
    let e = error("[scenario]\nasg = false\nasg-terminate-in = \"1m\"\n");
    assert_eq!(
        e,
        "spot.toml: scenario.asg-terminate-in = \"1m\": the instance is not in an Auto Scaling group (asg = false / --no-asg) (allowed: either asg = false or asg-terminate-in, not both)"
    );
    let e = error("[scenario]\nasg-terminate-in = \"1m\"\n[metadata]\nautoscaling = false\n");
    assert!(e.contains("not in an Auto Scaling group"), "{e}");
    let a = cli(&["--no-asg"]).resolve().expect("valid");
    assert!(!a.imds.metadata.autoscaling);
    let mut argv = vec!["spot-sim", "--no-asg", "--asg-terminate-in", "1m"];
    assert!(Cli::try_parse_from(argv.drain(..)).is_err());
}

#[test]
fn start_at_sets_t0_to_that_instant() {
    let t0 = start() + secs(3);
    let (clock, t) = timeline(Scenario {
        start: Start::At(t0),
        ..Scenario::default()
    });
    assert_eq!(t.phase(), Phase::Waiting);
    assert_eq!(t.schedule().expect("known").rebalance_at, Some(t0));
    clock.advance(secs(3));
    assert_eq!(t.phase(), Phase::Notice);

    // From a file, as a string or a bare TOML date-time with an offset; ten days ahead.
    let ahead = whole_seconds(SystemTime::now() + secs(10 * 86_400));
    let utc = rfc3339(ahead);
    let plus_one = time::OffsetDateTime::from(ahead)
        .to_offset(time::macros::offset!(+1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats");
    for text in [
        format!("[scenario]\nstart-at = \"{utc}\"\n"),
        format!("[scenario]\nstart-at = {plus_one}\n"),
    ] {
        let s = from_toml(&text).expect("valid");
        assert_eq!(s.scenario.start, Start::At(ahead), "{text}");
    }
    let e = error("[scenario]\nstart-at = \"2099-01-01T00:00:00Z\"\n");
    assert!(e.contains("too far ahead"), "{e}");
}

#[test]
fn start_at_in_the_past_or_unparsable_is_refused_with_the_current_time() {
    let e = error("[scenario]\nstart-at = \"2020-01-01T00:00:00Z\"\n");
    assert!(
        e.starts_with(
            "spot.toml: scenario.start-at = \"2020-01-01T00:00:00Z\": in the past (it is now 20"
        ),
        "{e}"
    );
    assert!(e.ends_with("(allowed: a time still to come)"), "{e}");
    let e = error("[scenario]\nstart-at = \"tomorrow\"\n");
    assert!(e.contains("not an RFC 3339 time"), "{e}");
    let e = cli(&["--start-at", "yesterday"])
        .resolve()
        .expect_err("refused")
        .to_string();
    assert!(
        e.starts_with("command line: scenario.start-at = \"yesterday\""),
        "{e}"
    );
    let e = error("[scenario]\nstart-at = \"2030-01-01T00:00:00Z\"\nstart-in = \"5s\"\n");
    assert!(e.contains("contradicts"), "{e}");
    let argv = ["spot-sim", "--start-at", "2030-01-01T00:00:00Z", "--manual"];
    assert!(Cli::try_parse_from(argv).is_err());
}

#[test]
fn metadata_options_are_named_as_ec2_names_them() {
    let s = from_toml(
        "[imds]\nhttp-tokens = \"required\"\nhttp-put-response-hop-limit = 1\n\
         http-endpoint = \"disabled\"\nhttp-protocol-ipv6 = \"enabled\"\n\
         instance-metadata-tags = \"enabled\"\n[tags]\nName = \"web-1\"\n\"team:owner\" = \"payments\"\n",
    )
    .expect("valid");
    let o = &s.imds.options;
    assert_eq!(s.imds.imdsv2, Imdsv2Mode::Required);
    assert_eq!(o.hop_limit, 1);
    assert_eq!(o.http_endpoint, crate::imds::Toggle::Disabled);
    assert_eq!(o.http_protocol_ipv6, crate::imds::Toggle::Enabled);
    assert_eq!(o.instance_metadata_tags, crate::imds::Toggle::Enabled);
    assert_eq!(
        o.tags.get("team:owner").map(String::as_str),
        Some("payments")
    );
    // The old key still works.
    let s = from_toml("[imds]\nimdsv2 = \"required\"\n").expect("valid");
    assert_eq!(s.imds.imdsv2, Imdsv2Mode::Required);
    // Defaults as on EC2 (hop limit as on current EKS AMIs).
    let d = from_toml("").expect("valid").imds.options;
    assert_eq!(d.hop_limit, 2);
    assert!(!d.http_protocol_ipv6.is_enabled());
    assert!(d.http_endpoint.is_enabled());
    assert!(!d.instance_metadata_tags.is_enabled());

    let a = cli(&[
        "--http-tokens",
        "required",
        "--http-put-response-hop-limit",
        "1",
        "--http-endpoint",
        "disabled",
        "--tag",
        "Name=web-1",
        "--maintenance",
        "system-reboot:30s",
    ])
    .resolve()
    .expect("valid");
    assert_eq!(a.imds.imdsv2, Imdsv2Mode::Required);
    assert_eq!(a.imds.options.hop_limit, 1);
    assert_eq!(
        a.imds.options.tags.get("Name").map(String::as_str),
        Some("web-1")
    );
    assert_eq!(a.scenario.maintenance[0].issue_in, secs(30));
    assert_eq!(
        cli(&["--imdsv2", "required"]).imds.http_tokens,
        Some(Imdsv2Mode::Required)
    );
}

#[test]
fn bad_instance_options_are_refused_in_one_line() {
    let e = error("[imds]\nhttp-put-response-hop-limit = 65\n");
    assert_eq!(
        e,
        "spot.toml: imds.http-put-response-hop-limit = 65: out of range (allowed: 1 to 64)"
    );
    assert!(error("[imds]\nhttp-put-response-hop-limit = 0\n").contains("1 to 64"));
    let e = error("[imds]\nhttp-endpoint = \"off\"\n");
    assert!(
        e.contains("http-endpoint") && e.contains("`enabled`") && e.contains("`disabled`"),
        "{e}"
    );
    let e = error("[tags]\n\"a/b\" = \"x\"\n");
    assert!(
        e.starts_with("spot.toml: tags = \"a/b\": tag key contains `/`"),
        "{e}"
    );
    let long = "k".repeat(129);
    let e = error(&format!("[tags]\n{long} = \"x\"\n"));
    assert!(e.contains("longer than 128 bytes"), "{e}");
    for argv in [
        vec!["spot-sim", "--http-put-response-hop-limit", "65"],
        vec!["spot-sim", "--http-endpoint", "maybe"],
    ] {
        assert!(Cli::try_parse_from(argv).is_err());
    }
    let e = cli(&["--tag", "novalue"])
        .resolve()
        .expect_err("refused")
        .to_string();
    assert!(e.contains("--tag = \"novalue\""), "{e}");
}

#[test]
fn maintenance_offsets_that_make_no_sense_are_refused() {
    let e = error(
        "[[maintenance]]\ncode = \"system-reboot\"\nnot-before-in = \"2h\"\nnot-after-in = \"1h\"\n",
    );
    assert_eq!(
        e,
        "spot.toml: maintenance[0].not-after = \"1h\" after its issue: comes before not-before (\"2h\" after its issue) (allowed: a time at or after not-before)"
    );
    let e = error(
        "[[maintenance]]\ncode = \"system-reboot\"\nnot-before = \"21 Jan 2026 09:00:00 GMT\"\nnot-before-in = \"1h\"\n",
    );
    assert!(e.contains("given together with not-before-in"), "{e}");
    let e = error("[[maintenance]]\ncode = \"system-reboot\"\n");
    assert!(
        e.contains("maintenance[0].not-before") && e.contains("not-before-in"),
        "{e}"
    );
    let e = error(
        "[[maintenance]]\ncode = \"system-reboot\"\nnot-before-in = \"1h\"\ncancel-in = \"1m\"\ncomplete-in = \"2m\"\n",
    );
    assert!(e.contains("canceled or completed, not both"), "{e}");
}

#[test]
fn the_readme_scenario_example_is_a_valid_scenario() {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("## The scenario").expect("section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").expect("closed")];
    let s = from_toml(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    assert_eq!(s.imds.options.hop_limit, 1);
    assert_eq!(s.scenario.asg_terminate_in, Some(secs(90)));
    assert_eq!(s.scenario.maintenance[0].issue_in, secs(30));
    assert_eq!(s.imds.options.tags.len(), 2);
}
