//! The faults handlers meet on EC2, as a handler sees them through the responder: throttling
//! (429, or dropped over a real loopback socket), the token PUT to a dated version, and the
//! settings that turn them on, from the command line and the scenario file.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use clap::Parser;
use http_body_util::BodyExt;
use hyper::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::router::error_body;
use super::*;
use crate::scenario::{ManualClock, Timeline};
use crate::settings::{ScenarioArgs, Settings};

fn responder(toml: &str) -> Arc<Responder> {
    let s = Settings::from_toml(std::path::Path::new("t.toml"), toml).expect("valid scenario");
    let clock = Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_795_645_080),
    ));
    let timeline = Timeline::new(s.scenario, clock.clone());
    Responder::new("test".into(), timeline, s.imds, clock)
}

struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: String,
}

async fn call(r: &Responder, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (parts, body) = r.handle(req.body(()).expect("request")).await.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(r: &Responder) -> StatusCode {
    call(r, Method::GET, "/latest/meta-data/instance-id", &[])
        .await
        .status
}

const TTL: (&str, &str) = ("x-aws-ec2-metadata-token-ttl-seconds", "60");

#[tokio::test]
async fn above_the_rate_requests_are_answered_429_the_way_imds_writes_its_errors() {
    let r = responder("[faults]\nthrottle = \"2/s\"\n");
    assert_eq!(get(&r).await, StatusCode::OK);
    // The token PUT counts too: EC2 throttles queries, whatever they ask.
    let put = call(&r, Method::PUT, "/latest/api/token", &[TTL]).await;
    assert_eq!(put.status, StatusCode::OK);
    let over = call(&r, Method::GET, "/latest/meta-data/instance-id", &[]).await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(over.status.canonical_reason(), Some("Too Many Requests"));
    assert_eq!(over.body, error_body(StatusCode::TOO_MANY_REQUESTS));
    assert!(over.body.contains("<title>429 - Too Many Requests</title>"));
    assert_eq!(over.headers["server"], "EC2ws");
    assert_eq!(over.headers["content-type"], "text/html");
    assert!(!over.headers.contains_key("retry-after"), "none reported");
    let put = call(&r, Method::PUT, "/latest/api/token", &[TTL]).await;
    assert_eq!(put.status, StatusCode::TOO_MANY_REQUESTS);
    let stats = r.stats();
    assert_eq!(stats.requests_throttled, 2);
    assert_eq!(stats.tokens_issued, 1);
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains("--fault-throttle")),
        "{:?}",
        stats.warnings
    );
    // Half a second refills one request's worth at 2/s.
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(get(&r).await, StatusCode::OK);
    assert_eq!(get(&r).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn each_target_has_its_own_allowance_and_no_throttle_means_none() {
    let (a, b) = (
        responder("[faults]\nthrottle = 1\n"),
        responder("[faults]\nthrottle = 1\n"),
    );
    assert_eq!(get(&a).await, StatusCode::OK);
    assert_eq!(get(&a).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get(&b).await, StatusCode::OK);
    let free = responder("");
    for _ in 0..50 {
        assert_eq!(get(&free).await, StatusCode::OK);
    }
    assert_eq!(free.stats().requests_throttled, 0);
}

/// A raw HTTP/1.1 GET on a fresh connection; `None` when nothing came back within `patience`.
async fn raw_get(addr: std::net::SocketAddr, patience: Duration) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("send");
    let mut answer = String::new();
    match tokio::time::timeout(patience, s.read_to_string(&mut answer)).await {
        Ok(Ok(_)) => Some(answer),
        _ => None,
    }
}

#[tokio::test]
async fn in_drop_mode_the_excess_gets_no_answer_and_a_client_that_gives_up_frees_its_place() {
    let r = responder("[faults]\nthrottle = \"1/s\"\nthrottle-mode = \"drop\"\n");
    // Drop mode is decided where the connection is served, so through a real socket.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(r.clone().serve(listener, shutdown));
    let max = r.config.limits.max_connections;
    let a = raw_get(addr, Duration::from_secs(5))
        .await
        .expect("answered");
    assert!(a.starts_with("HTTP/1.1 200 OK"), "{a}");
    // A client with less patience than the first resend (1 s) gets nothing.
    assert_eq!(raw_get(addr, Duration::from_millis(800)).await, None);
    assert_eq!(r.stats().requests_throttled, 1);
    // It closed its socket: the held request is let go, and its place with it.
    let mut freed = false;
    for _ in 0..50 {
        if r.connections.available_permits() == max {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the abandoned request still holds its connection");
    // A patient client is answered at its first resend, 1 s after it asked: the rate has room
    // by then, as the abandoned request took no turn (it would have at its own resend, and
    // this one would wait for its second, 3 s in).
    let patient = Instant::now();
    let a = raw_get(addr, Duration::from_secs(5))
        .await
        .expect("answered late");
    assert!(a.starts_with("HTTP/1.1 200 OK"), "{a}");
    let waited = patient.elapsed();
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_millis(1800),
        "answered after {waited:?}"
    );
    assert_eq!(r.stats().requests_throttled, 2);
}

#[tokio::test]
async fn a_token_put_to_a_dated_version_is_forbidden_as_on_ec2() {
    for toml in ["", "[imds]\nhttp-tokens = \"required\"\n"] {
        let r = responder(toml);
        for path in ["/2021-03-23/api/token", "//1.0/api/token/"] {
            let a = call(&r, Method::PUT, path, &[TTL]).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{toml:?} {path}");
            assert_eq!(a.body, error_body(StatusCode::FORBIDDEN));
        }
        assert_eq!(r.stats().tokens_issued, 0);
        let latest = call(&r, Method::PUT, "/latest/api/token", &[TTL]).await;
        assert_eq!(latest.status, StatusCode::OK, "{toml:?}");
        // Only the PUT: a GET there is a metadata path like any other (absent).
        let token = [("x-aws-ec2-metadata-token", latest.body.as_str())];
        let got = call(&r, Method::GET, "/2021-03-23/api/token", &token).await;
        assert_eq!(got.status, StatusCode::NOT_FOUND, "{toml:?}");
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    scenario: ScenarioArgs,
}

fn from_cli(args: &[&str]) -> Result<Settings, String> {
    let mut argv = vec!["spot-sim"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    cli.scenario.resolve().map_err(|e| e.to_string())
}

#[test]
fn the_throttle_is_set_from_the_command_line_or_the_scenario_file() {
    let s = from_cli(&[
        "--fault-throttle",
        "30/min",
        "--fault-throttle-mode",
        "drop",
    ])
    .expect("valid");
    let t = s.imds.faults.throttle.expect("on");
    assert_eq!((t.rate.per_second(), t.mode), (0.5, ThrottleMode::Drop));
    let s = from_cli(&["--fault-throttle", "5/s"]).expect("valid");
    let t = s.imds.faults.throttle.expect("on");
    assert_eq!(
        (t.rate.per_second(), t.mode),
        (5.0, ThrottleMode::TooManyRequests)
    );
    assert_eq!(from_cli(&[]).expect("valid").imds.faults.throttle, None);
    let file = |toml: &str| Settings::from_toml(std::path::Path::new("spot.toml"), toml);
    let t = file("[faults]\nthrottle = \"100/h\"\nthrottle-mode = \"429\"\n")
        .expect("valid")
        .imds
        .faults
        .throttle
        .expect("on");
    assert_eq!(t.mode, ThrottleMode::TooManyRequests);
    assert!((t.rate.per_second() - 100.0 / 3600.0).abs() < 1e-12);
}

#[test]
fn a_zero_negative_or_unknown_rate_and_a_mode_alone_are_refused_in_one_line() {
    for (args, needle) in [
        (&["--fault-throttle", "0"][..], "would refuse every request"),
        (&["--fault-throttle=-5/s"][..], "negative"),
        (
            &["--fault-throttle", "5/fortnight"][..],
            "unknown unit `/fortnight`",
        ),
        (
            &["--fault-throttle-mode", "drop"][..],
            "faults.throttle-mode = \"drop\"",
        ),
        (
            &["--fault-throttle", "5/s", "--fault-throttle-mode", "reset"][..],
            "429, drop",
        ),
    ] {
        let e = from_cli(args).expect_err(needle);
        assert!(e.contains(needle), "{args:?}: {e}");
        assert!(e.contains("5/s") || e.contains("429"), "names the fix: {e}");
    }
    let file = |toml: &str| {
        Settings::from_toml(std::path::Path::new("spot.toml"), toml)
            .expect_err(toml)
            .to_string()
    };
    for (toml, needle) in [
        ("[faults]\nthrottle = 0\n", "would refuse every request"),
        ("[faults]\nthrottle = \"-1/min\"\n", "negative"),
        ("[faults]\nthrottle = \"5/day\"\n", "unknown unit `/day`"),
        (
            "[faults]\nthrottle-mode = \"drop\"\n",
            "set faults.throttle",
        ),
    ] {
        let e = file(toml);
        assert!(e.contains(needle), "{toml:?}: {e}");
        assert!(e.starts_with("spot.toml"), "{e}");
        assert!(!e.contains('\n'), "one line: {e:?}");
    }
}

#[test]
fn maintenance_dates_in_rfc3339_are_shown_in_the_imds_form_and_a_zoneless_one_is_refused() {
    let file = |toml: &str| Settings::from_toml(std::path::Path::new("spot.toml"), toml);
    let at = |s: &Settings| match s.scenario.maintenance[0].not_before {
        crate::scenario::EventTime::At(t) => crate::scenario::imds_date(t),
        other => panic!("{other:?}"),
    };
    for value in [
        "\"2026-01-21T09:00:00Z\"",
        "\"2026-01-21T10:00:00+01:00\"",
        // A bare TOML date-time, as TOML users write one.
        "2026-01-21T09:00:00Z",
        "\"21 Jan 2026 09:00:00 GMT\"",
    ] {
        let s = file(&format!(
            "[[maintenance]]\ncode = \"system-reboot\"\nnot-before = {value}\n"
        ))
        .expect(value);
        assert_eq!(at(&s), "21 Jan 2026 09:00:00 GMT", "{value}");
    }
    for value in ["\"2026-01-21T09:00:00\"", "2026-01-21T09:00:00"] {
        let e = file(&format!(
            "[[maintenance]]\ncode = \"system-reboot\"\nnot-before = {value}\n"
        ))
        .expect_err(value)
        .to_string();
        assert_eq!(
            e,
            "spot.toml: maintenance[0].not-before = \"2026-01-21T09:00:00\": an RFC 3339 time \
             without a zone (allowed: the same with its zone, like \"2026-01-21T09:00:00Z\" (UTC))"
        );
    }
    let e = file(
        "[[maintenance]]\ncode = \"system-reboot\"\nnot-after-in = \"1h\"\nnot-before = \"soon\"\n",
    )
    .expect_err("no date")
    .to_string();
    assert!(
        e.contains("not a date") && e.contains("2026-01-21T09:00:00Z"),
        "{e}"
    );
}
