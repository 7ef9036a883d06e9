use std::{
    sync::mpsc,
    time::{Duration, Instant, SystemTime},
};

use super::{condition::tests::ConfigMapDir, *};

fn args(conditions: &[&str], max: Option<Duration>, unreachable: bool) -> StopArgs {
    StopArgs {
        stop_if: conditions
            .iter()
            .map(|c| StopCondition::parse(c).unwrap())
            .collect(),
        stop_check_every: Duration::from_millis(100),
        stop_if_unreachable: unreachable,
        max_duration: max,
    }
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn the_first_check_refuses_what_cannot_work_and_what_already_holds() {
    let now = SystemTime::now();
    let plan = StopPlan::new(
        &args(&["cmd:true", "cmd:no-such-check-spot-sim"], None, false),
        now,
    );
    match plan.first_check().await {
        Err(e @ StopError::Invalid { .. }) => {
            let e = e.to_string();
            assert!(
                e.starts_with("--stop-if cmd:no-such-check-spot-sim: the shell cannot run it"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    let plan = StopPlan::new(&args(&["cmd:true", "cmd:exit 4"], None, false), now);
    let e = plan.check_before_start().await.unwrap_err().to_string();
    assert!(
        e.starts_with(
            "the game day would stop at once: cmd:exit 4: exited 4. Nothing was attached"
        ),
        "{e}"
    );
    let plan = StopPlan::new(&args(&["cmd:true"], None, false), now);
    assert_eq!(plan.first_check().await.unwrap(), None);
    // A deadline already past (an experiment node that starts late).
    let plan = StopPlan::new(
        &args(&[], Some(Duration::from_secs(60)), false),
        now - Duration::from_secs(61),
    );
    let h = plan.first_check().await.unwrap().unwrap();
    assert_eq!(h.reason, StopReason::MaxDuration);
    assert_eq!(h.condition, "--max-duration 1m passed");
}

#[tokio::test]
async fn a_prometheus_that_does_not_answer_stops_only_with_stop_if_unreachable() {
    let cond = format!("prom:http://127.0.0.1:{} up == 0", closed_port());
    let plan = StopPlan::new(&args(&[&cond], None, false), SystemTime::now());
    assert_eq!(plan.first_check().await.unwrap(), None);
    let plan = StopPlan::new(&args(&[&cond], None, true), SystemTime::now());
    let h = plan.first_check().await.unwrap().unwrap();
    assert_eq!(h.reason, StopReason::StopIf);
    assert!(
        h.condition.contains("does not answer")
            && h.condition
                .contains("--stop-if-unreachable counts as holding"),
        "{}",
        h.condition
    );
}

/// Waits for the halt the watch hands over.
fn halted(rx: &mpsc::Receiver<(Halt, Instant)>, within: Duration) -> Option<(Halt, Instant)> {
    rx.recv_timeout(within).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_fires_within_an_interval_once_and_a_slow_condition_does_not_delay_it() {
    let mut cm = ConfigMapDir::new("[experiment]\nabort = false\n");
    // A check that takes far longer than the interval, beside the kill switch.
    let plan = StopPlan::new(&args(&["cmd:sleep 3"], None, false), SystemTime::now()).kill_switch(
        StopCondition::FileFlag {
            path: cm.file(),
            table: "experiment",
            key: "abort",
        },
    );
    let (tx, rx) = mpsc::channel();
    let _watch = plan.watch(move |h| {
        let _ = tx.send((h, Instant::now()));
    });
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(rx.try_recv().is_err(), "nothing holds yet");
    let flipped = Instant::now();
    cm.update("[experiment]\nabort = true\n");
    let (h, at) = tokio::task::spawn_blocking(move || {
        let got = halted(&rx, Duration::from_secs(2));
        // Once: no second halt follows.
        assert!(rx.recv_timeout(Duration::from_millis(400)).is_err());
        got
    })
    .await
    .unwrap()
    .expect("the kill switch fired");
    assert_eq!(h.reason, StopReason::Abort);
    assert!(
        h.condition.ends_with("experiment.toml: set to true"),
        "{}",
        h.condition
    );
    // Every 100 ms, and the 3 s command never held it up.
    assert!(
        at.duration_since(flipped) < Duration::from_millis(600),
        "{:?}",
        at.duration_since(flipped)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_fires_at_its_deadline_and_a_dropped_watch_fires_nothing() {
    let started = SystemTime::now();
    let plan = StopPlan::new(&args(&[], Some(Duration::from_millis(400)), false), started);
    let (tx, rx) = mpsc::channel();
    let _watch = plan.watch(move |h| {
        let _ = tx.send((h, Instant::now()));
    });
    let (h, _) = tokio::task::spawn_blocking(move || halted(&rx, Duration::from_secs(3)))
        .await
        .unwrap()
        .expect("the deadline fired");
    let elapsed = SystemTime::now().duration_since(started).unwrap();
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert_eq!(h.reason, StopReason::MaxDuration);
    assert_eq!(h.condition, "--max-duration 400ms passed");

    let plan = StopPlan::new(
        &args(&[], Some(Duration::from_millis(300)), false),
        SystemTime::now(),
    );
    let (tx, rx) = mpsc::channel();
    drop(plan.watch(move |h| {
        let _ = tx.send((h, Instant::now()));
    }));
    let got = tokio::task::spawn_blocking(move || halted(&rx, Duration::from_millis(800)))
        .await
        .unwrap();
    assert!(got.is_none(), "a dropped watch stopped something: {got:?}");
}
