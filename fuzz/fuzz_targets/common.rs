#![allow(dead_code, reason = "each target uses part of it")]
//! What every target does with settings it got: build the timeline and a responder on a manual
//! clock, and ask the questions a handler and `spot-sim status` ask. Nothing may panic.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use hyper::{Method, Request, Response};
use spot_sim::imds::Responder;
use spot_sim::scenario::{ManualClock, Timeline};
use spot_sim::settings::Settings;

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .enable_io()
            .build()
            .expect("a current-thread runtime")
    })
}

/// 2026-11-25T22:18:00Z, as in the unit tests.
pub fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_645_080)
}

pub fn responder(settings: Settings) -> (Arc<ManualClock>, Arc<Responder>) {
    responder_with(settings, None)
}

/// A responder whose passthrough (if any) goes to `upstream`, never to a real address.
pub fn responder_with(
    mut settings: Settings,
    upstream: Option<SocketAddr>,
) -> (Arc<ManualClock>, Arc<Responder>) {
    // Latency would make the fuzzer wait in real time; a real passthrough would dial out.
    settings.imds.faults.latency = Duration::ZERO;
    settings.imds.faults.error_503_rate = 0.0;
    settings.imds.passthrough = upstream.map(|upstream| spot_sim::imds::Passthrough {
        upstream,
        timeout: Duration::from_secs(2),
    });
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

/// What a credential-bearing answer from the stand-in upstream contains.
pub const SECRET: &str = "SECRET-FROM-THE-REAL-IMDS";

/// Whether `path` (as it reached upstream) asks for credentials or an identity proof: under a
/// version, `meta-data/iam*`, `meta-data/identity-credentials*`, `user-data*`,
/// `dynamic/instance-identity*/{pkcs7,signature,rsa2048}*`, in any case. Written apart from
/// spot-sim's own decision so that a mistake there shows here.
pub fn credential_bearing(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let segs: Vec<&str> = lower.split('/').filter(|s| !s.is_empty()).skip(1).collect();
    match segs.as_slice() {
        [first, ..] if first.starts_with("user-data") => true,
        ["meta-data", second, ..] => {
            second.starts_with("iam") || second.starts_with("identity-credentials")
        }
        ["dynamic", second, third, ..] if second.starts_with("instance-identity") => {
            ["pkcs7", "signature", "rsa2048"]
                .iter()
                .any(|s| third.starts_with(s))
        }
        _ => false,
    }
}

/// A stand-in "real IMDS" on 127.0.0.1 with an `iam/` tree: it hands out a token, answers
/// credential-bearing paths with [`SECRET`] and everything else with a plain value, and records
/// every path that reaches it.
pub struct StandIn {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<String>>>,
}

pub fn stand_in() -> &'static StandIn {
    static S: OnceLock<StandIn> = OnceLock::new();
    S.get_or_init(|| {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = runtime();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        rt.spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head)
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let path = line.split(' ').nth(1).unwrap_or_default().to_string();
                    let body = if line.starts_with("PUT ") {
                        "stand-in-token".to_string()
                    } else {
                        let secret = credential_bearing(&path);
                        record.lock().expect("the record").push(path);
                        if secret {
                            format!("{{\"AccessKeyId\": \"{SECRET}\"}}")
                        } else {
                            "from-upstream".to_string()
                        }
                    };
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        StandIn { addr, seen }
    })
}
