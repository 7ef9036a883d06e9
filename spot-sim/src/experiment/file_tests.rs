//! The experiment file: what it gives, and what it refuses with the field and the fix.

use super::*;

const GOOD: &str = "[experiment]\nname = \"gd\"\nnodes = \"30%\"\nstart-at = \"2026-11-26T14:00:00Z\"\npods = [\"kube-system/nth-*\", \"shop/checkout\"]\n";

fn parse(text: &str) -> Result<Experiment, String> {
    Experiment::parse(Path::new("e.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn a_whole_file_gives_the_experiment_and_its_scenario() {
    let text = format!(
        "{GOOD}stagger = \"5m\"\n\n[scenario]\naction = \"stop\"\n\n[metadata]\ninstance-id = \"i-0123456789abcdef0\"\n"
    );
    let e = parse(&text).unwrap();
    assert_eq!(e.name, "gd");
    assert_eq!(e.nodes, NodeSet::Share(30.0));
    assert_eq!(e.stagger, Duration::from_secs(300));
    assert_eq!(e.pods.len(), 2);
    assert_eq!(crate::scenario::rfc3339(e.start_at), "2026-11-26T14:00:00Z");
    assert_eq!(e.settings.scenario.action, crate::scenario::Action::Stop);
    assert_eq!(e.settings.imds.metadata.instance_id, "i-0123456789abcdef0");
    let at = e.settings_at(e.start_at);
    assert_eq!(at.scenario.start, Start::At(e.start_at));
    assert!(!e.abort);
    assert!(parse(&format!("{GOOD}abort = true\n")).unwrap().abort);
}

#[test]
fn a_bare_toml_date_time_and_an_offset_are_understood() {
    let text = GOOD.replace("\"2026-11-26T14:00:00Z\"", "2026-11-26T15:00:00+01:00");
    let e = parse(&text).unwrap();
    assert_eq!(crate::scenario::rfc3339(e.start_at), "2026-11-26T14:00:00Z");
}

#[test]
fn bad_experiments_are_refused_with_the_field_and_the_fix() {
    let cases = [
        (GOOD.replace("name = \"gd\"\n", ""), "experiment.name"),
        (GOOD.replace("\"gd\"", "\"\""), "has no name"),
        (GOOD.replace("30%", "130%"), "share outside 0-100 %"),
        (GOOD.replace("30%", "-1%"), "share outside 0-100 %"),
        (GOOD.replace("\"30%\"", "30"), "neither a share nor a list"),
        (GOOD.replace("\"30%\"", "[\"Node_A\"]"), "not a node name"),
        (GOOD.replace("Z\"", "\""), "RFC 3339"),
        (
            GOOD.replace("\"shop/checkout\"", "\"checkout\""),
            "not a pod selector",
        ),
        (
            GOOD.replace(
                "pods = [\"kube-system/nth-*\", \"shop/checkout\"]",
                "pods = []",
            ),
            "no pods",
        ),
        (format!("{GOOD}color = \"red\"\n"), "unknown field `color`"),
        (format!("{GOOD}abort = \"yes\"\n"), "field `abort`"),
        (
            format!("{GOOD}[scenario]\nstart-in = \"5m\"\n"),
            "scenario.start-in",
        ),
        (
            format!("{GOOD}[scenario]\nmanual = true\n"),
            "scenario.manual",
        ),
        (
            "[scenario]\naction = \"stop\"\n".to_string(),
            "no [experiment] section",
        ),
    ];
    for (text, needle) in cases {
        let err = parse(&text).expect_err(&text);
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
        assert!(err.starts_with("e.toml"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn a_node_timeline_starts_at_the_absolute_instant_whenever_it_is_created() {
    use crate::scenario::{ManualClock, Phase, Timeline};
    let e = parse(GOOD).unwrap();
    // Created before start-at: waits for it.
    let clock = std::sync::Arc::new(ManualClock::new(e.start_at - Duration::from_secs(90)));
    let early = Timeline::new(e.settings_at(e.start_at).scenario, clock.clone());
    assert_eq!(early.phase(), Phase::Waiting);
    // Created after start-at (a restarted spot-sim): the same t0, not now.
    clock.set(e.start_at + Duration::from_secs(30));
    let late = Timeline::new(e.settings_at(e.start_at).scenario, clock.clone());
    for t in [&early, &late] {
        assert_eq!(t.schedule().unwrap().t0, e.start_at);
        // D = 2 min: the notice comes with the recommendation, at start-at.
        assert_eq!(t.phase(), Phase::Notice);
    }
}

#[test]
fn scenario_errors_keep_the_line_numbers_of_the_file() {
    let text = format!("{GOOD}\n[scenario]\naction = \"explode\"\n");
    let err = parse(&text).unwrap_err();
    assert!(err.starts_with("e.toml:8:"), "{err}");
}
