//! A termination handler's view of the fake IMDS: every endpoint in every phase (driven by a
//! manual clock), the IMDSv2 token flow, faults, a real 127.0.0.1 listener, and passthrough to a
//! stand-in upstream on 127.0.0.1. Nothing here talks to a non-loopback address.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::*;
use crate::scenario::{Action, ManualClock, Scenario, Start, Timeline};

/// 2026-11-25T22:18:00Z
fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_645_080)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

struct Fixture {
    clock: Arc<ManualClock>,
    responder: Arc<Responder>,
}

fn fixture(scenario: Scenario, config: ImdsConfig) -> Fixture {
    let clock = Arc::new(ManualClock::new(start()));
    let timeline = Timeline::new(scenario, clock.clone());
    let responder = Responder::new("test".into(), timeline, config, clock.clone());
    Fixture { clock, responder }
}

/// Recommendation at +60s, notice at +60s + 8 min, interruption at +60s + 10 min.
fn ten_minute_scenario() -> Scenario {
    Scenario {
        start: Start::In(secs(60)),
        interruption_in: secs(600),
        ..Scenario::default()
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn call(r: &Responder, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = r.handle(req.body(()).expect("request")).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("full body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).expect("utf-8"),
    }
}

async fn get(r: &Responder, path: &str) -> Answer {
    call(r, Method::GET, path, &[]).await
}

const NOT_FOUND: &str = "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>
<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"
\t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">
<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">
 <head>
  <title>404 - Not Found</title>
 </head>
 <body>
  <h1>404 - Not Found</h1>
 </body>
</html>
";

async fn assert_not_found(r: &Responder, path: &str) {
    let a = get(r, path).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
    assert_eq!(a.body, NOT_FOUND, "{path}");
}

/// Each of `paths` answers 404, and the `meta-data/` listing does not name `listed_as`.
async fn assert_hidden(r: &Responder, paths: &[&str], listed_as: &str) {
    for path in paths {
        assert_not_found(r, path).await;
    }
    let listing = get(r, "/latest/meta-data/").await.body;
    assert!(!listing.contains(listed_as), "{listing}");
}

#[tokio::test]
async fn before_t0_there_is_nothing_to_see_but_an_ordinary_instance() {
    let f = fixture(ten_minute_scenario(), ImdsConfig::default());
    let r = &f.responder;
    assert_not_found(r, "/latest/meta-data/spot/instance-action").await;
    assert_not_found(r, "/latest/meta-data/spot/termination-time").await;
    assert_not_found(r, "/latest/meta-data/events/recommendations/rebalance").await;
    let scheduled = get(r, "/latest/meta-data/events/maintenance/scheduled").await;
    assert_eq!(
        (scheduled.status, scheduled.body.as_str()),
        (StatusCode::OK, "[]")
    );
    assert_eq!(
        get(r, "/latest/meta-data/autoscaling/target-lifecycle-state")
            .await
            .body,
        "InService"
    );
    assert_eq!(
        get(r, "/latest/meta-data/instance-life-cycle").await.body,
        "spot"
    );
    let listing = get(r, "/latest/meta-data/").await.body;
    assert!(!listing.contains("spot/"), "{listing}");
    assert!(
        listing.contains("events/\n") && listing.contains("placement/\n"),
        "{listing}"
    );
    assert_eq!(
        get(r, "/latest/meta-data/events/").await.body,
        "maintenance/"
    );
}

#[tokio::test]
async fn at_t0_the_rebalance_recommendation_appears_with_a_fixed_time() {
    let f = fixture(ten_minute_scenario(), ImdsConfig::default());
    let r = &f.responder;
    f.clock.advance(secs(60));
    let a = get(r, "/latest/meta-data/events/recommendations/rebalance").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "{\"noticeTime\": \"2026-11-25T22:19:00Z\"}");
    assert_eq!(
        get(r, "/latest/meta-data/events/").await.body,
        "maintenance/\nrecommendations/"
    );
    assert_not_found(r, "/latest/meta-data/spot/instance-action").await;
    f.clock.advance(secs(300));
    let later = get(r, "/latest/meta-data/events/recommendations/rebalance").await;
    assert_eq!(later.body, a.body, "issued timestamps never move");
}

#[tokio::test]
async fn the_notice_comes_two_minutes_before_the_interruption() {
    let f = fixture(ten_minute_scenario(), ImdsConfig::default());
    let r = &f.responder;
    f.clock.advance(secs(60 + 479));
    assert_not_found(r, "/latest/meta-data/spot/instance-action").await;
    f.clock.advance(secs(1));
    let a = get(r, "/latest/meta-data/spot/instance-action").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        "{\"action\": \"terminate\", \"time\": \"2026-11-25T22:29:00Z\"}"
    );
    assert_eq!(
        get(r, "/latest/meta-data/spot/termination-time").await.body,
        "2026-11-25T22:29:00Z"
    );
    assert_eq!(
        get(r, "/latest/meta-data/spot/").await.body,
        "instance-action\ntermination-time"
    );
    assert!(get(r, "/latest/meta-data").await.body.contains("\nspot/"));
    // The recommendation stays.
    assert_eq!(
        get(r, "/latest/meta-data/events/recommendations/rebalance")
            .await
            .status,
        StatusCode::OK
    );
    f.clock.advance(secs(90));
    assert_eq!(
        get(r, "/latest/meta-data/spot/instance-action").await.body,
        a.body
    );
}

#[tokio::test]
async fn a_stop_or_hibernate_notice_has_no_termination_time() {
    for action in [Action::Stop, Action::Hibernate] {
        let f = fixture(
            Scenario {
                action,
                ..Scenario::default()
            },
            ImdsConfig::default(),
        );
        let r = &f.responder;
        let a = get(r, "/latest/meta-data/spot/instance-action").await;
        assert!(
            a.body
                .starts_with(&format!("{{\"action\": \"{}\"", action.as_str())),
            "{}",
            a.body
        );
        assert_not_found(r, "/latest/meta-data/spot/termination-time").await;
        assert_eq!(
            get(r, "/latest/meta-data/spot").await.body,
            "instance-action"
        );
    }
}

#[tokio::test]
async fn once_interrupted_the_autoscaling_state_is_terminated() {
    let f = fixture(Scenario::default(), ImdsConfig::default());
    f.clock.advance(secs(120));
    let a = get(
        &f.responder,
        "/latest/meta-data/autoscaling/target-lifecycle-state",
    )
    .await;
    assert_eq!(a.body, "Terminated");

    let mut config = ImdsConfig::default();
    config.metadata.autoscaling = false;
    let f = fixture(Scenario::default(), config);
    let state = "/latest/meta-data/autoscaling/target-lifecycle-state";
    assert_hidden(&f.responder, &[state], "autoscaling").await;
}

#[tokio::test]
async fn static_metadata_and_the_identity_document_agree() {
    let f = fixture(ten_minute_scenario(), ImdsConfig::default());
    let r = &f.responder;
    let m = Metadata::default();
    for (path, want) in [
        ("instance-id", &m.instance_id),
        ("instance-type", &m.instance_type),
        ("ami-id", &m.ami_id),
        ("hostname", &m.hostname),
        ("local-hostname", &m.local_hostname),
        ("local-ipv4", &m.local_ipv4),
        ("mac", &m.mac),
        ("placement/availability-zone", &m.availability_zone),
        ("placement/region", &m.region),
    ] {
        let a = get(r, &format!("/latest/meta-data/{path}")).await;
        assert_eq!((a.status, &a.body), (StatusCode::OK, want), "{path}");
    }
    let doc = get(r, "/latest/dynamic/instance-identity/document")
        .await
        .body;
    assert!(
        doc.contains("  \"instanceId\" : \"i-0e5a6b3c9d2f41a78\",\n"),
        "{doc}"
    );
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("json");
    assert_eq!(doc["instanceId"], m.instance_id.as_str());
    assert_eq!(doc["region"], m.region.as_str());
    assert_eq!(doc["availabilityZone"], m.availability_zone.as_str());
    assert_eq!(doc["privateIp"], m.local_ipv4.as_str());
    assert_eq!(doc["pendingTime"], "2026-11-25T22:18:00Z");
    assert!(get(r, "/")
        .await
        .body
        .ends_with("\n2021-07-15\n2022-07-09\n2022-09-24\nlatest"));
    assert_eq!(get(r, "/latest/").await.body, "dynamic\nmeta-data");
    assert_eq!(
        get(r, "/latest/dynamic/").await.body,
        "fws/\ninstance-identity/"
    );
}

#[tokio::test]
async fn scheduled_maintenance_is_listed_the_way_imds_writes_it() {
    use crate::scenario::{parse_imds_date, EventTime, MaintenancePlan, MaintenanceState};
    let at = |s: &str| EventTime::At(parse_imds_date(s).expect("an IMDS date"));
    let scenario = Scenario {
        maintenance: vec![MaintenancePlan {
            code: "system-reboot".into(),
            description: "scheduled reboot".into(),
            event_id: "instance-event-0d59937288b749b32".into(),
            issue_in: Duration::ZERO,
            state: MaintenanceState::Active,
            not_before: at("21 Jan 2026 09:00:43 GMT"),
            not_after: Some(at("21 Jan 2026 09:17:23 GMT")),
            not_before_deadline: None,
            ends: None,
        }],
        ..Scenario::default()
    };
    let f = fixture(scenario, ImdsConfig::default());
    let a = get(
        &f.responder,
        "/latest/meta-data/events/maintenance/scheduled",
    )
    .await;
    assert_eq!(
        a.body,
        "[ {\n  \"NotBefore\" : \"21 Jan 2026 09:00:43 GMT\",\n  \"Code\" : \"system-reboot\",\n  \"Description\" : \"scheduled reboot\",\n  \"EventId\" : \"instance-event-0d59937288b749b32\",\n  \"NotAfter\" : \"21 Jan 2026 09:17:23 GMT\",\n  \"State\" : \"active\"\n} ]"
    );
}

#[tokio::test]
async fn answers_carry_the_real_headers_and_head_works_where_get_does() {
    let f = fixture(Scenario::default(), ImdsConfig::default());
    let r = &f.responder;
    let a = get(r, "/latest/meta-data/spot/instance-action").await;
    assert_eq!(a.header("server"), Some("EC2ws"));
    assert_eq!(a.header("content-type"), Some("text/plain"));
    assert_eq!(
        a.header("content-length"),
        Some(a.body.len().to_string().as_str())
    );
    assert_eq!(a.header("connection"), None);
    let h = call(
        r,
        Method::HEAD,
        "/latest/meta-data/spot/instance-action",
        &[],
    )
    .await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.body, "");
    assert_eq!(h.header("content-length"), a.header("content-length"));
    let missing = call(r, Method::HEAD, "/latest/nope", &[]).await;
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (StatusCode::NOT_FOUND, "")
    );
    assert_eq!(
        missing.header("content-length"),
        Some(NOT_FOUND.len().to_string().as_str())
    );
    let close = call(
        r,
        Method::GET,
        "/latest/meta-data/",
        &[("connection", "close")],
    )
    .await;
    assert_eq!(close.header("connection"), Some("close"));
    let post = call(r, Method::POST, "/latest/meta-data/instance-id", &[]).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn absurd_paths_are_404_never_a_panic() {
    let f = fixture(Scenario::default(), ImdsConfig::default());
    let long = format!("/latest/meta-data/{}", "a".repeat(10_000));
    for path in [
        "/latest/meta-data/../meta-data/instance-id",
        "/latest/meta-data/%2e%2e/instance-id",
        "/latest/meta-data/instance-id%00",
        "/latest/meta-data/instance-id/extra",
        "/LATEST/meta-data/",
        "/2010-01-01/meta-data/",
        "/latest/meta-data/./instance-id",
        long.as_str(),
    ] {
        assert_not_found(&f.responder, path).await;
    }
}

// --- IMDSv2 ---

/// The headers as AWS spells them (not the router's constants: a typo there must fail here).
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

async fn token(r: &Responder, ttl: &str) -> Answer {
    call(r, Method::PUT, "/latest/api/token", &[(TTL_HEADER, ttl)]).await
}

#[tokio::test]
async fn a_token_is_issued_for_a_ttl_between_1_and_21600_seconds() {
    let f = fixture(Scenario::default(), ImdsConfig::default());
    let r = &f.responder;
    for ttl in ["1", "21600"] {
        let a = token(r, ttl).await;
        assert_eq!(a.status, StatusCode::OK, "{ttl}");
        assert_eq!(a.header("x-aws-ec2-metadata-token-ttl-seconds"), Some(ttl));
        assert_eq!(a.body.len(), 80);
    }
    for ttl in ["0", "21601", "abc", "-5", "", "99999999999999999999"] {
        assert_eq!(
            token(r, ttl).await.status,
            StatusCode::BAD_REQUEST,
            "{ttl:?}"
        );
    }
    let none = call(r, Method::PUT, "/latest/api/token", &[]).await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    let proxied = call(
        r,
        Method::PUT,
        "/latest/api/token",
        &[
            ("x-aws-ec2-metadata-token-ttl-seconds", "60"),
            ("x-forwarded-for", "10.0.0.1"),
        ],
    )
    .await;
    assert_eq!(proxied.status, StatusCode::FORBIDDEN);
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let a = call(r, method.clone(), "/latest/api/token", &[]).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(a.header("allow"), Some("OPTIONS, PUT"));
    }
    assert_eq!(f.responder.stats().tokens_issued, 2);
}

async fn with(r: &Responder, t: &str) -> Answer {
    let token = [(TOKEN_HEADER, t)];
    call(r, Method::GET, "/latest/meta-data/instance-id", &token).await
}

#[tokio::test]
async fn requests_with_a_token_learn_its_remaining_seconds_until_it_expires() {
    let f = fixture(Scenario::default(), ImdsConfig::default());
    let r = &f.responder;
    let t = token(r, "60").await.body;
    let a = with(r, &t).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-aws-ec2-metadata-token-ttl-seconds"), Some("60"));
    f.clock.advance(secs(45));
    assert_eq!(
        with(r, &t)
            .await
            .header("x-aws-ec2-metadata-token-ttl-seconds"),
        Some("15")
    );
    f.clock.advance(secs(15));
    assert_eq!(with(r, &t).await.status, StatusCode::UNAUTHORIZED);
    // Even with tokens optional, a bad token is refused, as on AWS.
    assert_eq!(with(r, "forged").await.status, StatusCode::UNAUTHORIZED);
    let plain = get(r, "/latest/meta-data/instance-id").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.header("x-aws-ec2-metadata-token-ttl-seconds"), None);
}

#[tokio::test]
async fn required_mode_answers_401_to_every_request_without_a_valid_token() {
    let config = ImdsConfig {
        imdsv2: Imdsv2Mode::Required,
        ..ImdsConfig::default()
    };
    let f = fixture(Scenario::default(), config);
    let r = &f.responder;
    for path in [
        "/latest/meta-data/spot/instance-action",
        "/latest/meta-data/",
        "/nope",
        "/",
    ] {
        let a = get(r, path).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            a.body.contains("<title>401 - Unauthorized</title>"),
            "{}",
            a.body
        );
    }
    let t = token(r, "21600").await.body;
    let a = call(
        r,
        Method::GET,
        "/latest/meta-data/spot/instance-action",
        &[("x-aws-ec2-metadata-token", &t)],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let stats = r.stats();
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains("4 token-less requests were answered 401")),
        "{:?}",
        stats.warnings
    );
}

#[tokio::test]
async fn the_token_ttl_fault_expires_tokens_early() {
    let mut config = ImdsConfig::default();
    config.faults.token_ttl = Some(5);
    let f = fixture(Scenario::default(), config);
    let r = &f.responder;
    let a = token(r, "21600").await;
    assert_eq!(
        a.header("x-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600"),
        "the client is told what it asked"
    );
    f.clock.advance(secs(5));
    let b = call(
        r,
        Method::GET,
        "/latest/meta-data/",
        &[("x-aws-ec2-metadata-token", &a.body)],
    )
    .await;
    assert_eq!(b.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_503_fault_answers_the_configured_fraction() {
    let mut config = ImdsConfig::default();
    config.faults.error_503_rate = 1.0;
    let f = fixture(Scenario::default(), config);
    let a = get(&f.responder, "/latest/meta-data/instance-id").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let mut config = ImdsConfig::default();
    config.faults.error_503_rate = 0.5;
    let f = fixture(Scenario::default(), config);
    let mut unavailable = 0;
    for _ in 0..200 {
        if get(&f.responder, "/latest/meta-data/").await.status == StatusCode::SERVICE_UNAVAILABLE {
            unavailable += 1;
        }
    }
    assert!((40..=160).contains(&unavailable), "{unavailable}/200");
}

#[tokio::test]
async fn stats_count_paths_statuses_versions_and_warn_about_imdsv1_only_handlers() {
    let f = fixture(Scenario::default(), ImdsConfig::default());
    let r = &f.responder;
    for _ in 0..3 {
        get(r, "/latest/meta-data/spot/instance-action").await;
    }
    get(r, "/latest/nope").await;
    let s = r.stats();
    assert_eq!(s.target, "test");
    assert_eq!(s.requests_total, 4);
    assert_eq!(s.by_path["/latest/meta-data/spot/instance-action"][&200], 3);
    assert_eq!(s.by_path["/latest/nope"][&404], 1);
    assert_eq!((s.imds_v1_requests, s.imds_v2_requests), (4, 0));
    assert_eq!(s.last_request_at.as_deref(), Some("2026-11-25T22:18:00Z"));
    assert!(
        s.warnings.iter().any(|w| w.contains("only with IMDSv1")),
        "{:?}",
        s.warnings
    );
    let t = token(r, "60").await.body;
    call(
        r,
        Method::GET,
        "/latest/meta-data/",
        &[("x-aws-ec2-metadata-token", &t)],
    )
    .await;
    let s = r.stats();
    assert_eq!(
        (s.imds_v1_requests, s.imds_v2_requests, s.tokens_issued),
        (4, 2, 1)
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let json = serde_json::to_value(&s).expect("serializable");
    assert_eq!(json["by_path"]["/latest/nope"]["404"], 1);
}

// --- over a real 127.0.0.1 socket ---

async fn http_get(
    addr: SocketAddr,
    method: Method,
    path: &str,
) -> std::io::Result<(StatusCode, HeaderMap, Bytes)> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "169.254.169.254")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((status, headers, body))
}

#[tokio::test]
async fn served_on_a_listener_it_answers_until_the_interruption_then_refuses_connections() {
    let f = fixture(ten_minute_scenario(), ImdsConfig::default());
    let a = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let b = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (addr_a, addr_b) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));
    let (_stop, shutdown) = watch::channel(false);
    // Two listeners on one responder, as for IPv4 and IPv6.
    let serve_a = tokio::spawn(f.responder.clone().serve(a, shutdown.clone()));
    let serve_b = tokio::spawn(f.responder.clone().serve(b, shutdown));

    let (status, headers, body) = http_get(addr_a, Method::GET, "/latest/meta-data/instance-id")
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "i-0e5a6b3c9d2f41a78");
    assert_eq!(headers["server"], "EC2ws");
    assert_eq!(headers["content-length"], "19");
    assert!(headers.contains_key("date"));
    let (status, headers, body) = http_get(addr_b, Method::HEAD, "/latest/meta-data/instance-id")
        .await
        .expect("answer");
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    assert_eq!(headers["content-length"], "19");

    f.clock.advance(secs(60 + 480));
    let (status, _, body) = http_get(
        addr_b,
        Method::GET,
        "/latest/meta-data/spot/instance-action",
    )
    .await
    .expect("answer");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        "{\"action\": \"terminate\", \"time\": \"2026-11-25T22:29:00Z\"}"
    );

    // A handler holding a keep-alive connection loses it too.
    let held = TcpStream::connect(addr_a).await.expect("connect");
    f.clock.advance(secs(120));
    let ends = tokio::time::timeout(secs(3), async { (serve_a.await, serve_b.await) })
        .await
        .expect("both listeners stop within the poll interval");
    assert_eq!(ends.0.expect("task").expect("serve"), ServeEnd::Interrupted);
    assert_eq!(ends.1.expect("task").expect("serve"), ServeEnd::Interrupted);
    for addr in [addr_a, addr_b] {
        let err = TcpStream::connect(addr)
            .await
            .expect_err("the instance is gone");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    // Closed means end of stream or a reset; "would block" means still open, so wait again.
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(secs(3), async {
        loop {
            held.readable().await.expect("readable");
            match held.try_read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Ok(n) => break Ok(n),
                Err(e) => break Err(e.kind()),
            }
        }
    })
    .await
    .expect("the held connection is closed within the poll interval");
    assert!(
        matches!(closed, Ok(0) | Err(std::io::ErrorKind::ConnectionReset)),
        "held connection closed, got {closed:?}"
    );
}

#[tokio::test]
async fn shutdown_stops_serving_and_headers_over_the_limit_are_refused() {
    let f = fixture(ten_minute_scenario(), ImdsConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, shutdown) = watch::channel(false);
    let served = tokio::spawn(f.responder.clone().serve(listener, shutdown));

    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get("/latest/meta-data/")
        .header("x-padding", "p".repeat(32 * 1024))
        .body(Empty::<Bytes>::new())
        .expect("request");
    // Refused: a 431, or the connection closed before any answer (hyper may close while the
    // client is still writing the oversized head). Anything else fails.
    match sender.send_request(req).await {
        Ok(resp) => assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(e) => {
            eprintln!("refused by closing: {e:?}");
            assert!(
                e.is_incomplete_message() || e.is_closed() || e.is_canceled(),
                "the oversized head was neither answered 431 nor closed: {e:?}"
            )
        }
    }

    stop.send(true).expect("serving");
    let end = tokio::time::timeout(secs(3), served)
        .await
        .expect("stops")
        .expect("task")
        .expect("serve");
    assert_eq!(end, ServeEnd::Shutdown);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    let mut config = ImdsConfig::default();
    config.limits.max_connections = 1;
    let f = fixture(ten_minute_scenario(), config);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(f.responder.clone().serve(listener, shutdown));
    let _first = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let result = http_get(addr, Method::GET, "/latest/meta-data/").await;
    assert!(result.is_err(), "second connection served: {result:?}");
    assert_eq!(f.responder.stats().connections_over_limit, 1);
}

// --- passthrough to a stand-in for the real IMDS on 127.0.0.1 ---

/// What the stand-in upstream saw.
#[derive(Default)]
struct Upstream {
    requests: Vec<(Method, String, HeaderMap)>,
    tokens_issued: usize,
    /// Answer the next metadata request 401 (as after a token was revoked).
    reject_next: bool,
}

const UPSTREAM_TOKEN: &str = "real-imds-token";

async fn stand_in(
    state: Arc<Mutex<Upstream>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut s = state.lock().expect("lock");
    let path = req.uri().path().to_string();
    s.requests
        .push((req.method().clone(), path.clone(), req.headers().clone()));
    let answer = |status: u16, body: &str| {
        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
        *r.status_mut() = StatusCode::from_u16(status).expect("status");
        Ok(r)
    };
    if path == "/latest/api/token" {
        s.tokens_issued += 1;
        return answer(200, UPSTREAM_TOKEN);
    }
    if req
        .headers()
        .get("x-aws-ec2-metadata-token")
        .map(|v| v.as_bytes())
        != Some(UPSTREAM_TOKEN.as_bytes())
        || std::mem::take(&mut s.reject_next)
    {
        return answer(401, "");
    }
    let real: HashMap<&str, &str> = HashMap::from([
        ("/latest/meta-data/instance-id", "i-0realrealreal0001"),
        (
            "/latest/meta-data/",
            "ami-id\nevents/\niam/\ninstance-id\nplacement/\nspot/",
        ),
        (
            "/latest/meta-data/iam/security-credentials/node-role",
            "{\"AccessKeyId\": \"secret\"}",
        ),
    ]);
    match real.get(path.as_str()) {
        Some(body) => answer(200, body),
        None => answer(404, "real 404"),
    }
}

async fn start_stand_in() -> (SocketAddr, Arc<Mutex<Upstream>>) {
    let state = Arc::new(Mutex::new(Upstream::default()));
    let st = state.clone();
    let addr = serve_on_loopback(move |req| stand_in(st.clone(), req)).await;
    (addr, state)
}

/// Serves `handle` over HTTP/1.1 on a fresh 127.0.0.1 port, one task per connection: the
/// listener of every stand-in upstream here.
pub(super) async fn serve_on_loopback<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(handle.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

pub(super) fn passthrough_to(upstream: SocketAddr, timeout: Duration) -> ImdsConfig {
    ImdsConfig {
        passthrough: Some(Passthrough { upstream, timeout }),
        ..ImdsConfig::default()
    }
}

#[tokio::test]
async fn passthrough_forwards_what_is_not_simulated_over_its_own_imdsv2_session() {
    let (addr, state) = start_stand_in().await;
    let f = fixture(ten_minute_scenario(), passthrough_to(addr, secs(2)));
    let r = &f.responder;
    let t = token(r, "60").await.body;
    let a = call(
        r,
        Method::GET,
        "/latest/meta-data/instance-id",
        &[
            ("x-aws-ec2-metadata-token", &t),
            ("x-forwarded-for", "10.9.9.9"),
        ],
    )
    .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "i-0realrealreal0001")
    );
    assert_eq!(a.header("server"), Some("EC2ws"));
    assert_eq!(a.header("x-aws-ec2-metadata-token-ttl-seconds"), Some("60"));
    // The simulated parts stay ours: no notice yet, even though the real listing has spot/.
    assert_not_found(r, "/latest/meta-data/spot/instance-action").await;
    let listing = get(r, "/latest/meta-data/").await.body;
    assert_eq!(listing, "ami-id\nautoscaling/\nevents/\ninstance-action\ninstance-id\ninstance-life-cycle\nplacement/");
    let missing = get(r, "/latest/meta-data/nope").await;
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (StatusCode::NOT_FOUND, "real 404")
    );
    get(r, "/latest/meta-data/instance-id").await;

    let s = state.lock().expect("lock");
    assert_eq!(s.tokens_issued, 1, "the upstream token is cached");
    for (method, path, headers) in &s.requests {
        assert!(!headers.contains_key("x-forwarded-for"), "{method} {path}");
        if path == "/latest/api/token" {
            assert_eq!(headers["x-aws-ec2-metadata-token-ttl-seconds"], "21600");
        } else {
            assert_eq!(
                headers["x-aws-ec2-metadata-token"], UPSTREAM_TOKEN,
                "{path}"
            );
        }
    }
}

#[tokio::test]
async fn passthrough_refetches_its_token_when_upstream_rejects_it() {
    let (addr, state) = start_stand_in().await;
    let f = fixture(ten_minute_scenario(), passthrough_to(addr, secs(2)));
    assert_eq!(
        get(&f.responder, "/latest/meta-data/instance-id")
            .await
            .status,
        StatusCode::OK
    );
    state.lock().expect("lock").reject_next = true;
    assert_eq!(
        get(&f.responder, "/latest/meta-data/instance-id")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(state.lock().expect("lock").tokens_issued, 2);
}

#[tokio::test]
async fn credentials_are_refused_unless_allowed() {
    let (addr, state) = start_stand_in().await;
    let f = fixture(ten_minute_scenario(), passthrough_to(addr, secs(2)));
    let path = "/latest/meta-data/iam/security-credentials/node-role";
    let info = "/latest/meta-data/identity-credentials/ec2/info";
    assert_hidden(&f.responder, &[path, info], "iam/").await;
    assert!(
        !state
            .lock()
            .expect("lock")
            .requests
            .iter()
            .any(|(_, p, _)| p.contains("iam")),
        "a refused path never reaches upstream"
    );

    let mut config = passthrough_to(addr, secs(2));
    config.allow_credentials = true;
    let f = fixture(ten_minute_scenario(), config);
    let a = get(&f.responder, path).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "{\"AccessKeyId\": \"secret\"}")
    );
}

#[tokio::test]
async fn an_upstream_that_is_down_or_silent_gets_a_timely_502_or_504() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let f = fixture(ten_minute_scenario(), passthrough_to(closed, secs(2)));
    let begun = Instant::now();
    let a = get(&f.responder, "/latest/meta-data/instance-id").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert!(begun.elapsed() < secs(1), "{:?}", begun.elapsed());
    // The simulated paths do not depend on upstream.
    assert_eq!(
        get(&f.responder, "/latest/meta-data/instance-life-cycle")
            .await
            .status,
        StatusCode::OK
    );
    // Our own listing when upstream cannot give its own.
    assert!(get(&f.responder, "/latest/meta-data/")
        .await
        .body
        .contains("instance-id"));

    // Accepts, never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let f = fixture(
        ten_minute_scenario(),
        passthrough_to(silent_addr, Duration::from_millis(300)),
    );
    let begun = Instant::now();
    let a = get(&f.responder, "/latest/meta-data/instance-id").await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(begun.elapsed() < secs(2), "{:?}", begun.elapsed());
    drop(silent);
}

#[tokio::test]
async fn slow_and_idle_clients_are_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = ImdsConfig::default();
    config.limits.header_read_timeout = Duration::from_millis(200);
    config.limits.keep_alive_idle = Duration::from_millis(200);
    let f = fixture(ten_minute_scenario(), config);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(f.responder.clone().serve(listener, shutdown));

    // Slowloris: half a request head, then nothing.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(secs(3), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the slow client is cut off");

    // Keep-alive: one answer, then silence.
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let req = Request::get("/latest/meta-data/")
        .header("host", "x")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.expect("body");
    tokio::time::timeout(secs(3), conn)
        .await
        .expect("idle connection closed")
        .expect("task")
        .expect("clean close");
}
