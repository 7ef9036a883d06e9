//! The date bound, as a property over the whole of `time`'s range (years -9999 to 9999): every
//! date is either refused in one line or runs the whole verdict path without a panic.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::{rngs::StdRng, Rng, SeedableRng};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::*;
use crate::experiment::{Decision, Experiment};
use crate::journal::{self, Journal, ProcRecord};
use crate::report::{Expectations, Report};
use crate::scenario::{imds_date, rfc3339, Clock, ManualClock, Timeline};

/// A seeded sample of instants over the whole range, with the edges and the case.
fn instants(n: usize) -> Vec<OffsetDateTime> {
    let min = PrimitiveDateTime::MIN.assume_utc().unix_timestamp();
    let max = PrimitiveDateTime::MAX.assume_utc().unix_timestamp();
    let mut rng = StdRng::seed_from_u64(20);
    let mut out: Vec<i64> = vec![
        min,
        max,
        -1,
        0,
        1,
        END_SECS as i64 - 1,
        END_SECS as i64,
        253_402_297_200, // 9999-12-31T23:00:00Z, the case
    ];
    out.extend((0..n).map(|_| rng.gen_range(min..=max)));
    // Near the bounds, where off-by-ones live.
    out.extend((0..n / 4).map(|_| END_SECS as i64 + rng.gen_range(-400 * 86_400..400 * 86_400)));
    out.extend((0..n / 4).map(|_| rng.gen_range(-400 * 86_400..400 * 86_400)));
    out.into_iter()
        .filter_map(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .map(|dt| {
            // Any offset RFC 3339 can carry (whole minutes within ±23:59).
            let off = UtcOffset::from_whole_seconds(rng.gen_range(-1439..1440) * 60)
                .unwrap_or(UtcOffset::UTC);
            dt.checked_to_offset(off).unwrap_or(dt)
        })
        .collect()
}

fn inside(dt: OffsetDateTime) -> bool {
    (0..END_SECS as i64).contains(&dt.unix_timestamp())
}

#[test]
fn every_date_in_times_range_is_bounded_or_refused_and_formatting_never_panics() {
    for dt in instants(20_000) {
        let text = dt
            .format(&time::format_description::well_known::Rfc3339)
            .ok();
        match bounded(dt) {
            Ok(t) => {
                assert!(inside(dt), "{dt} accepted");
                assert!(t >= EARLIEST && t < end());
                assert_eq!(to_datetime(t), dt.to_offset(UtcOffset::UTC));
            }
            Err(OutOfRange) => assert!(!inside(dt), "{dt} refused"),
        }
        if let Some(text) = text {
            assert_eq!(parse_rfc3339(&text).is_ok(), inside(dt), "{text}");
        }
        // The formatters are total over any instant, in and out of range.
        let t = if dt.unix_timestamp() >= 0 {
            UNIX_EPOCH + Duration::from_secs(dt.unix_timestamp() as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(dt.unix_timestamp().unsigned_abs())
        };
        let _ = (rfc3339(t), imds_date(t), crate::report::at(journal::ms(t)));
    }
    // Far past `time`'s range, both ways, and a report timestamp of u64::MAX milliseconds.
    for t in [
        UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 / 2),
        UNIX_EPOCH - Duration::from_secs(i64::MAX as u64 / 2),
    ] {
        let _ = (rfc3339(t), imds_date(t));
    }
    assert!(crate::report::at(u64::MAX).starts_with("9999-12-31T"));
}

/// The longest a scenario and an experiment may stretch a date: a year's interruption and a
/// week's stagger.
fn experiment_at(start_at: &str) -> Result<Experiment, String> {
    let text = format!(
        "[experiment]\nname = \"gd\"\nnodes = [\"node-a\", \"node-b\"]\nstart-at = \"{start_at}\"\nstagger = \"7d\"\npods = [\"ns/p\"]\n\n[scenario]\ninterruption-in = \"366d\"\nrebalance-lead = \"366d\"\n"
    );
    Experiment::parse(Path::new("e.toml"), &text).map_err(|e| e.to_string())
}

/// A rehearsal on `exp`'s timeline from before its start to after its interruption, as
/// `run --experiment` would see it: the report in every format, and the node's verdict.
fn verdict_path(exp: &Experiment) {
    for node in ["node-a", "node-b"] {
        let Decision::Selected { t0 } = exp.decide(node) else {
            panic!("{node} is in the list");
        };
        let settings = exp.settings_at(t0);
        let schedule = settings.scenario.schedule(t0);
        let clock = Arc::new(ManualClock::new(t0 - Duration::from_secs(60)));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let timeline = Timeline::new(settings.scenario.clone(), dyn_clock);
        let j = Journal::new(node.into(), timeline, crate::scenario::PUBLISHED);
        for at in [
            t0,
            schedule.notice_at,
            schedule.notice_at + Duration::from_secs(1),
            schedule.interrupted_at + Duration::from_secs(1),
        ] {
            clock.set(at);
            j.request(
                at,
                "GET",
                "/latest/meta-data/spot/instance-action",
                200,
                true,
                None,
            );
            j.exec(ProcRecord {
                at_ms: journal::ms(at),
                pid: 7,
                comm: "kubectl".into(),
                argv: vec!["kubectl".into(), "drain".into()],
            });
            j.cgroup_seen(true, at);
        }
        let expect = Expectations {
            detect: Some(Duration::from_secs(5)),
            react: vec![
                "5s".parse().expect("an expectation"),
                "exec kubectl drain within 5s"
                    .parse()
                    .expect("an expectation"),
            ],
            drained: true,
            read_in_time: true,
        };
        let report = Report::build(&[j.snapshot()], &expect, journal::ms(clock.now()));
        let _ = (
            report.summary(),
            report.to_json(),
            crate::report::prometheus(&report),
        );
        for name in ["r.html", "r.svg"] {
            let dir = tempfile::tempdir().expect("tempdir");
            report
                .write(&dir.path().join(name), 0o600)
                .expect("report written");
        }
        let _ = crate::experiment::verdict(true, true, false, &[]);
    }
}

#[test]
fn every_experiment_start_at_either_fails_in_one_line_or_runs_the_verdict_without_panicking() {
    let mut accepted = 0;
    for dt in instants(300) {
        let Ok(text) = dt.format(&time::format_description::well_known::Rfc3339) else {
            continue;
        };
        let whole = dt.replace_nanosecond(0).unwrap_or(dt);
        let text_whole = whole
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or(text);
        match experiment_at(&text_whole) {
            Ok(exp) => {
                assert!(inside(whole), "{text_whole} accepted");
                verdict_path(&exp);
                accepted += 1;
            }
            Err(e) => {
                assert!(!e.contains('\n'), "{e}");
                if !inside(whole) {
                    assert!(e.contains("outside the dates spot-sim accepts"), "{e}");
                }
            }
        }
    }
    assert!(
        accepted > 10,
        "the sample hit the accepted range {accepted} times"
    );
    // The repro and the bound's last second.
    let e = experiment_at("9999-12-31T23:00:00Z").unwrap_err();
    assert!(
        e.contains("experiment.start-at") && e.contains("1970-01-01 to 2999-12-31"),
        "{e}"
    );
    verdict_path(&experiment_at("2999-12-31T23:59:59Z").expect("the last accepted second"));
    verdict_path(&experiment_at("1970-01-01T00:00:00Z").expect("the first accepted second"));
}

#[test]
fn maintenance_dates_are_bounded_the_same_way() {
    use crate::scenario::parse_imds_date;
    assert!(parse_imds_date("31 Dec 2999 23:59:59 GMT").is_some());
    assert!(parse_imds_date("01 Jan 3000 00:00:00 GMT").is_none());
    assert!(parse_imds_date("31 Dec 9999 23:00:00 GMT").is_none());
    assert!(parse_imds_date("31 Dec 1969 23:59:59 GMT").is_none());
    let _: SystemTime = parse_imds_date("21 Jan 2026 09:00:00 GMT").expect("a plain date");
}
