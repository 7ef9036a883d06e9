//! The table of what the instance publishes, through everyone who reads it: the responder
//! serves a row and never forwards it, the journal recognises a read of it, and the game-day
//! report and the experiment's result say so — however the client spelled the path.

use std::convert::Infallible;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::{Clock, Event, ManualClock, Phase, Published, Scenario, Start, Timeline, PUBLISHED};
use crate::experiment::{verdict, NodeResult, TargetResult};
use crate::imds::{ImdsConfig, Passthrough, Responder};
use crate::journal::Journal;
use crate::report::{prometheus, Expectations, Report};

/// The real table and one row more, made up here: a notice also shown at `fake-notice/now`.
static WITH_FAKE_ROW: LazyLock<Vec<Published>> = LazyLock::new(|| {
    let mut rows = PUBLISHED.to_vec();
    rows.push(Published {
        path: "fake-notice/now",
        event: Event::Notice,
        value: |m| (m.phase >= Phase::Notice).then(|| "the fake notice".to_string()),
    });
    rows
});
const FAKE: &str = "/latest/meta-data/fake-notice/now";

/// A stand-in for the real IMDS on 127.0.0.1 that answers everything 200 `real` and
/// remembers every path it was asked.
async fn real_imds_stand_in() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::clone(&asked);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                seen.lock().unwrap().push(req.uri().path().to_string());
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("real")))) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    (addr, asked)
}

struct Instance {
    clock: Arc<ManualClock>,
    responder: Arc<Responder>,
    journal: Arc<Journal>,
}

/// One target whose notice is out at once, its responder passing through to `upstream`.
fn instance(table: &'static [Published], upstream: Option<std::net::SocketAddr>) -> Instance {
    let clock = Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_795_645_080),
    ));
    let scenario = Scenario {
        start: Start::In(Duration::ZERO),
        interruption_in: Duration::from_secs(60),
        ..Scenario::default()
    };
    let timeline = Timeline::new(scenario, clock.clone());
    let config = ImdsConfig {
        passthrough: upstream.map(|upstream| Passthrough {
            upstream,
            timeout: Duration::from_secs(2),
        }),
        ..ImdsConfig::default()
    };
    let responder = Responder::publishing(
        "pod shop/a".into(),
        timeline.clone(),
        config,
        clock.clone(),
        table,
    );
    let journal = Journal::new("pod shop/a".into(), timeline, responder.published());
    responder.attach_journal(Arc::clone(&journal));
    Instance {
        clock,
        responder,
        journal,
    }
}

impl Instance {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let req = Request::get(path).body(()).expect("request");
        let (parts, body) = self.responder.handle(req).await.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts.status, String::from_utf8_lossy(&body).into_owned())
    }

    /// What the report and the experiment's result say of this target, a second later.
    fn results(&self) -> (Report, TargetResult) {
        self.clock.advance(Duration::from_secs(1));
        let now = crate::journal::ms(self.clock.now());
        let report = Report::build(&[self.journal.snapshot()], &Expectations::default(), now);
        let result = TargetResult::from_report("uid-a", &report.targets[0]);
        (report, result)
    }
}

fn notice_read_in(report: &Report) -> bool {
    report.targets[0]
        .events
        .iter()
        .any(|e| e.kind == Event::Notice && e.first_read_at.is_some())
}

#[tokio::test]
async fn a_row_added_to_the_table_is_served_never_forwarded_and_read_by_the_journal_and_the_result()
{
    let (upstream, asked) = real_imds_stand_in().await;
    let target = instance(&WITH_FAKE_ROW, Some(upstream));
    assert_eq!(
        target.get(FAKE).await,
        (StatusCode::OK, "the fake notice".to_string())
    );
    let (status, listing) = target.get("/latest/meta-data/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(listing.lines().any(|l| l == "fake-notice/"), "{listing}");
    // Passthrough works, and still never asks the real IMDS for the row.
    assert_eq!(
        target.get("/latest/meta-data/instance-id").await,
        (StatusCode::OK, "real".to_string())
    );
    let asked_upstream = asked.lock().unwrap().clone();
    assert!(asked_upstream.iter().any(|p| p.ends_with("/instance-id")));
    assert!(
        !asked_upstream.iter().any(|p| p.contains("fake-notice")),
        "{asked_upstream:?}"
    );
    // The handler read the notice only at the new row: the journal, the report and the
    // experiment's result all count it.
    let (report, result) = target.results();
    assert!(notice_read_in(&report), "{:?}", report.targets[0].events);
    assert!(result.read_notice && !result.read_rebalance, "{result:?}");

    // Without the row the same path is none of spot-sim's: forwarded, and not a read.
    let (upstream, asked) = real_imds_stand_in().await;
    let plain = instance(PUBLISHED, Some(upstream));
    assert_eq!(plain.get(FAKE).await, (StatusCode::OK, "real".to_string()));
    assert!(asked
        .lock()
        .unwrap()
        .iter()
        .any(|p| p.contains("fake-notice")));
    let (_, result) = plain.results();
    assert!(!result.read_notice, "{result:?}");
}

#[tokio::test]
async fn the_notice_read_through_a_dated_version_or_doubled_slashes_counts_everywhere_alike() {
    for spelling in [
        "/2021-03-23/meta-data/spot/instance-action",
        "//latest/meta-data/spot/instance-action",
        "/latest//meta-data/spot/termination-time/",
    ] {
        let target = instance(PUBLISHED, None);
        let (status, body) = target.get(spelling).await;
        assert_eq!(status, StatusCode::OK, "{spelling}");
        assert!(body.contains("terminate") || body.ends_with('Z'), "{body}");
        let (report, result) = target.results();
        assert!(notice_read_in(&report), "{spelling}: report");
        assert!(result.read_notice, "{spelling}: experiment result");
        let node = NodeResult {
            experiment: "gd".into(),
            node: "n-1".into(),
            selected: true,
            start_at: None,
            start_unix: None,
            finished: true,
            verdict: verdict(true, true, false, std::slice::from_ref(&result)),
            targets: vec![result],
            stopped: None,
        };
        let line: serde_json::Value = serde_json::from_str(&node.json_line()).unwrap();
        assert_eq!(
            line["targets"][0]["read_notice"], true,
            "{spelling}: {line}"
        );
        assert!(
            node.metrics().contains(
                "spot_sim_experiment_targets_read_notice{experiment=\"gd\",node=\"n-1\"} 1"
            ),
            "{spelling}"
        );
        assert!(
            prometheus(&report).contains(
                "spot_sim_detection_latency_seconds{target=\"pod shop/a\",event=\"notice\"}"
            ),
            "{spelling}"
        );
    }
}
