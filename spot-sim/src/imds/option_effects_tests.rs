//! The instance options as a handler sees them through the responder: the endpoint switched
//! off, the hop limit, tags, the ASG lifecycle state and maintenance events on the timeline.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use hyper::{Method, Request, StatusCode};

use super::option_effects::Origin;
use super::*;
use crate::scenario::{ManualClock, Timeline};
use crate::settings::Settings;

/// 2026-11-25T22:18:00Z
fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_645_080)
}

fn responder(toml: &str) -> (Arc<ManualClock>, Arc<Responder>) {
    let s = Settings::from_toml(std::path::Path::new("t.toml"), toml).expect("valid scenario");
    let clock = Arc::new(ManualClock::new(start()));
    let timeline = Timeline::new(s.scenario, clock.clone());
    let r = Responder::new("test".into(), timeline, s.imds, clock.clone());
    (clock, r)
}

fn req(method: Method, path: &str) -> Request<()> {
    let mut b = Request::builder().method(method.clone()).uri(path);
    if method == Method::PUT {
        b = b.header("x-aws-ec2-metadata-token-ttl-seconds", "60");
    }
    b.body(()).expect("request")
}

async fn get(r: &Responder, path: &str) -> (StatusCode, String) {
    let resp = r.handle(req(Method::GET, path)).await;
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_disabled_endpoint_answers_everything_403() {
    let (_, r) = responder("[imds]\nhttp-endpoint = \"disabled\"\n");
    assert_eq!(
        get(&r, "/latest/meta-data/instance-id").await.0,
        StatusCode::FORBIDDEN
    );
    let put = r.handle(req(Method::PUT, "/latest/api/token")).await;
    assert_eq!(put.status(), StatusCode::FORBIDDEN);
    let (_, on) = responder("");
    assert_eq!(
        get(&on, "/latest/meta-data/instance-id").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn at_hop_limit_1_a_token_put_from_another_namespace_is_never_answered() {
    let (_, r) = responder("[imds]\nhttp-put-response-hop-limit = 1\n");
    let put = r.handle_from(req(Method::PUT, "/latest/api/token"), Origin::OtherNetns);
    tokio::pin!(put);
    // Held (for UNANSWERED_HOLD, past any client's patience), never answered.
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut put)
        .await
        .is_err());
    assert_eq!(r.stats().token_puts_unanswered, 1);
    assert!(r
        .stats()
        .warnings
        .iter()
        .any(|w| w.contains("left unanswered")));
    // GETs from there, and PUTs from the node, are answered.
    let g = r
        .handle_from(
            req(Method::GET, "/latest/meta-data/instance-id"),
            Origin::OtherNetns,
        )
        .await
        .expect("answered");
    assert_eq!(g.status(), StatusCode::OK);
    let p = r
        .handle_from(req(Method::PUT, "/latest/api/token"), Origin::Node)
        .await
        .expect("answered");
    assert_eq!(p.status(), StatusCode::OK);
    // At the default hop limit of 2 the container gets its token.
    let (_, two) = responder("");
    let p = two
        .handle_from(req(Method::PUT, "/latest/api/token"), Origin::OtherNetns)
        .await
        .expect("answered");
    assert_eq!(p.status(), StatusCode::OK);
}

#[tokio::test]
async fn tags_are_listed_and_served_only_when_enabled() {
    let tags = "[tags]\nName = \"web-1\"\nteam = \"payments\"\n";
    let (_, r) = responder(&format!(
        "[imds]\ninstance-metadata-tags = \"enabled\"\n{tags}"
    ));
    assert_eq!(
        get(&r, "/latest/meta-data/tags/instance/").await,
        (StatusCode::OK, "Name\nteam".into())
    );
    assert_eq!(
        get(&r, "/latest/meta-data/tags/instance/team").await,
        (StatusCode::OK, "payments".into())
    );
    assert!(get(&r, "/latest/meta-data/").await.1.contains("tags/"));
    let (_, off) = responder(tags);
    assert_eq!(
        get(&off, "/latest/meta-data/tags/instance/").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&off, "/latest/meta-data/tags/instance/team").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_asg_lifecycle_state_turns_terminated_while_the_instance_answers() {
    let path = "/latest/meta-data/autoscaling/target-lifecycle-state";
    let (clock, r) =
        responder("[scenario]\ninterruption-in = \"5m\"\nasg-terminate-in = \"30s\"\n");
    assert_eq!(get(&r, path).await, (StatusCode::OK, "InService".into()));
    clock.advance(Duration::from_secs(30));
    assert_eq!(get(&r, path).await, (StatusCode::OK, "Terminated".into()));
    let (_, none) = responder("[scenario]\nasg = false\n");
    assert_eq!(get(&none, path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&none, "/latest/meta-data/autoscaling/").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn maintenance_events_follow_the_timeline_with_a_deadline_an_hour_after_not_before() {
    let (clock, r) = responder(
        "[[maintenance]]\ncode = \"system-reboot\"\nevent-id = \"instance-event-0d59937288b749b32\"\n\
         description = \"scheduled reboot\"\nissue-in = \"10s\"\nnot-before-in = \"1h\"\n\
         not-before-deadline-in = \"2h\"\ncancel-in = \"20s\"\n",
    );
    let scheduled = "/latest/meta-data/events/maintenance/scheduled";
    let history = "/latest/meta-data/events/maintenance/history";
    assert_eq!(get(&r, scheduled).await.1, "[]");
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        get(&r, scheduled).await.1,
        "[ {\n  \"NotBefore\" : \"25 Nov 2026 23:18:10 GMT\",\n  \"Code\" : \"system-reboot\",\n  \"Description\" : \"scheduled reboot\",\n  \"EventId\" : \"instance-event-0d59937288b749b32\",\n  \"NotBeforeDeadline\" : \"26 Nov 2026 00:18:10 GMT\",\n  \"State\" : \"active\"\n} ]"
    );
    assert_eq!(get(&r, history).await.1, "[]");
    clock.advance(Duration::from_secs(20));
    let h = get(&r, history).await.1;
    assert!(
        h.contains("\"State\" : \"canceled\"") && h.contains("[Canceled] scheduled reboot"),
        "{h}"
    );
    assert!(get(&r, scheduled)
        .await
        .1
        .contains("\"State\" : \"canceled\""));
}

#[tokio::test]
async fn every_option_is_in_the_stats() {
    let (_, r) = responder("[imds]\nhttp-put-response-hop-limit = 3\n");
    let o = r.stats().options;
    for (k, v) in [
        ("http-tokens", "optional"),
        ("http-put-response-hop-limit", "3"),
        ("http-endpoint", "enabled"),
        ("http-protocol-ipv6", "disabled"),
        ("instance-metadata-tags", "disabled"),
        ("asg", "enabled"),
        ("asg-terminate-in", "never"),
    ] {
        assert_eq!(o.get(k).map(String::as_str), Some(v), "{k}: {o:?}");
    }
}

#[tokio::test]
async fn the_metrics_show_every_option_and_unanswered_puts() {
    let (_, r) = responder("[imds]\nhttp-put-response-hop-limit = 1\n");
    let status = crate::session::TargetStatus {
        name: "exec".into(),
        cgroup: Default::default(),
        cgroup_id: 0,
        netns: 0,
        listen: Vec::new(),
        redirects: 0,
        cgroup_exists: true,
        timeline: serde_json::Value::Null,
        timeline_text: String::new(),
        responder: serde_json::to_value(r.stats()).expect("json"),
    };
    let text = crate::control::metrics::render(&[status]);
    assert!(
        text.contains(
            "spot_sim_imds_option{target=\"exec\",name=\"http-put-response-hop-limit\",value=\"1\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("spot_sim_imds_option{target=\"exec\",name=\"http-protocol-ipv6\",value=\"disabled\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("spot_sim_token_puts_unanswered_total{target=\"exec\"} 0"),
        "{text}"
    );
}

/// An accepted loopback connection: (server side, the client's address).
fn accepted() -> (
    std::net::TcpStream,
    std::net::SocketAddr,
    std::net::TcpStream,
) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let c = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (s, peer) = l.accept().expect("accept");
    (s, peer, c)
}

#[test]
fn a_connection_in_our_namespace_from_our_address_is_the_node() {
    let (s, peer, _c) = accepted();
    assert_eq!(super::option_effects::origin_of(&s, peer), Origin::Node);
    // A peer address that is none of ours (TEST-NET-1) came over a bridge: one hop further.
    let far: std::net::SocketAddr = "192.0.2.1:40000".parse().expect("addr");
    assert_eq!(
        super::option_effects::origin_of(&s, far),
        Origin::OtherNetns
    );
}

#[test]
fn a_connection_inside_another_namespace_is_one_hop_further() {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: this must not skip"
        );
        eprintln!("SKIPPED: needs root (a private network namespace)");
        return;
    }
    let ns = crate::targets::NetNs::new_private().expect("private netns");
    let (s, peer, _c) = ns.run(accepted).expect("run in netns");
    assert_eq!(
        super::option_effects::origin_of(&s, peer),
        Origin::OtherNetns
    );
}
