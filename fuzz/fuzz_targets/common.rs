#![allow(dead_code, reason = "each target uses part of it")]
//! What every target does with settings it got: build the timeline and a responder on a manual
//! clock, and ask the questions a handler and `spot-sim status` ask. Nothing may panic.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use hyper::{Method, Request, Response};
use spot_sim::imds::Responder;
use spot_sim::scenario::{ManualClock, Settings, Timeline};

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

/// 2026-11-25T22:18:00Z, as in the unit tests.
pub fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_645_080)
}

pub fn responder(mut settings: Settings) -> (Arc<ManualClock>, Arc<Responder>) {
    // Latency would make the fuzzer wait in real time; passthrough would dial out.
    settings.imds.faults.latency = Duration::ZERO;
    settings.imds.faults.error_503_rate = 0.0;
    settings.imds.passthrough = None;
    let clock = Arc::new(ManualClock::new(start()));
    let timeline = Timeline::new(settings.scenario, clock.clone());
    let responder = Responder::new("fuzz".into(), timeline, settings.imds, clock.clone());
    (clock, responder)
}

pub async fn call(r: &Responder, req: Request<()>) -> (Response<()>, Vec<u8>) {
    let resp = r.handle(req).await;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .expect("a full body")
        .to_bytes()
        .to_vec();
    (Response::from_parts(parts, ()), body)
}

/// Walks the timeline through its phases, asking what a handler and `status` would.
pub fn exercise(settings: Settings) {
    let (clock, responder) = responder(settings);
    let timeline = responder.timeline().clone();
    let _ = timeline.trigger();
    for step in [0u64, 1, 119, 3_600, 86_400 * 400] {
        clock.advance(Duration::from_secs(step));
        let _ = timeline.phase();
        let _ = timeline.next_change();
        let _ = timeline.status().render();
        for path in [
            "/latest/meta-data/spot/instance-action",
            "/latest/meta-data/events/recommendations/rebalance",
            "/latest/meta-data/events/maintenance/scheduled",
            "/latest/meta-data/",
        ] {
            let req = Request::builder()
                .method(Method::GET)
                .uri(path)
                .body(())
                .expect("a valid request");
            let (resp, _) = runtime().block_on(call(&responder, req));
            assert!(
                !resp.status().is_server_error(),
                "{path}: {}",
                resp.status()
            );
        }
    }
}
