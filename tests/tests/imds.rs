//! The fake IMDS through the real redirect: the timeline moves as FIS would move it, IMDSv2
//! works with curl and with an AWS SDK's own client, and passthrough reaches a stand-in
//! "real IMDS" without ever redirecting spot-sim's own upstream connection.

use spot_sim_tests::*;

const BASE: &str = "http://169.254.169.254";

fn get(node: &Node, path: &str, extra: &[&str]) -> Output {
    let url = format!("{BASE}{path}");
    let mut args = vec!["-s", "-i"];
    args.extend_from_slice(extra);
    args.push(&url);
    curl_in(&node.target, &node.target_ns, &args)
}

/// `PUT /latest/api/token` with a TTL, plus any extra curl arguments.
fn put_token(node: &Node, ttl: u32, extra: &[&str]) -> Output {
    let ttl = format!("X-aws-ec2-metadata-token-ttl-seconds: {ttl}");
    let mut args = vec!["-X", "PUT", "-H", &ttl];
    args.extend_from_slice(extra);
    get(node, "/latest/api/token", &args)
}

fn status_of(out: &Output) -> u16 {
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no HTTP status in {text:?} (stderr {:?})",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn body_of(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn sleep_until(unix: f64) {
    let now = unix_now();
    if unix > now {
        std::thread::sleep(Duration::from_secs_f64(unix - now));
    }
}

#[test]
fn the_timeline_moves_from_rebalance_to_notice_to_gone() {
    root_or_skip!();
    // t0 is a whole second and the server decides by its own clock, so only the "before the
    // notice" check depends on this test being quick: when an answer came too late to tell,
    // the scenario starts over (three tries), and never drops the check.
    let node = node("timeline");
    let mut tries = 0;
    let (run, t0) = loop {
        tries += 1;
        let run = start_run(
            &node,
            &["--rebalance-lead", "2s", "--interruption-in", "3s"],
        );
        // t0: the rebalance recommendation is out, the notice is not.
        let rebalance = get(
            &node,
            "/latest/meta-data/events/recommendations/rebalance",
            &[],
        );
        assert_eq!(status_of(&rebalance), 200);
        let notice_time: serde_json::Value = serde_json::from_str(&body_of(&rebalance)).unwrap();
        let t0 = parse_time(notice_time["noticeTime"].as_str().unwrap()).unix_timestamp();
        let early = get(&node, "/latest/meta-data/spot/instance-action", &[]);
        let listing = body_of(&get(&node, "/latest/meta-data/", &[]));
        // Both answers were given before this instant; the notice is due at t0 + 2 s.
        if unix_now() < t0 as f64 + 2.0 {
            assert_eq!(status_of(&early), 404, "no notice before t0 + lead");
            assert!(
                !listing.lines().any(|l| l == "spot/"),
                "spot/ listed early:\n{listing}"
            );
            break (run, t0);
        }
        assert!(
            tries < 3,
            "three runs in a row answered too late to check the time before the notice"
        );
        drop(run);
    };
    // t0 + lead: the notice, for an interruption at t0 + lead + D.
    sleep_until(t0 as f64 + 2.0);
    let notice = get(&node, "/latest/meta-data/spot/instance-action", &[]);
    assert_eq!(status_of(&notice), 200);
    let action: serde_json::Value = serde_json::from_str(&body_of(&notice)).unwrap();
    assert_eq!(
        parse_time(action["time"].as_str().unwrap()).unix_timestamp(),
        t0 + 5
    );
    let listing = body_of(&get(&node, "/latest/meta-data/", &[]));
    assert!(
        listing.lines().any(|l| l == "spot/"),
        "spot/ missing:\n{listing}"
    );
    let termination = get(&node, "/latest/meta-data/spot/termination-time", &[]);
    assert_eq!(body_of(&termination), action["time"].as_str().unwrap());
    // t0 + lead + D: the instance is gone; connects are refused once the responder sees the
    // time, within its poll interval however loaded the machine is. Decided by errno: still
    // redirected, to a listener that closed (ECONNREFUSED), not detached (which in this
    // private namespace would be ENETUNREACH; curl's exit 7 is the same for both).
    sleep_until(t0 as f64 + 5.0);
    let gone = poll_until(
        Duration::from_secs(10),
        "refused after the interruption",
        || {
            let got = imds_connects(Some(&node.target), &node.target_ns);
            (got[0] != "redirected").then_some(got)
        },
    );
    // IPv4, IPv6 (its endpoint is off: never redirected), IPv4-mapped.
    assert_eq!(gone, ["ECONNREFUSED", "ENETUNREACH", "ECONNREFUSED"]);
    assert_eq!(
        attached_programs(&node.target).len(),
        4,
        "the redirect stays attached until spot-sim exits"
    );
    drop(run);
}

#[test]
fn imdsv2_works_with_curl_and_reports_the_remaining_ttl() {
    let (node, _run) = node_running!("imdsv2", &[]);
    let put = put_token(&node, 60, &[]);
    assert_eq!(status_of(&put), 200);
    let token = body_of(&put);
    assert!(token.len() >= 40, "token too short: {token:?}");
    let header = format!("X-aws-ec2-metadata-token: {token}");
    let got = get(
        &node,
        "/latest/meta-data/spot/instance-action",
        &["-H", &header],
    );
    assert_eq!(status_of(&got), 200);
    let head = String::from_utf8_lossy(&got.stdout).to_lowercase();
    let ttl: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("x-aws-ec2-metadata-token-ttl-seconds: "))
        .map(|v| v.trim().parse().unwrap())
        .expect("remaining TTL header");
    assert!((58..=60).contains(&ttl), "remaining ttl {ttl}");
    // A forged token is refused even in optional mode, as the real service does.
    let forged = get(
        &node,
        "/latest/meta-data/instance-id",
        &["-H", "X-aws-ec2-metadata-token: AAAA"],
    );
    assert_eq!(status_of(&forged), 401);
    // A PUT that came through a proxy is refused.
    let proxied = put_token(&node, 60, &["-H", "X-Forwarded-For: 10.0.0.1"]);
    assert_eq!(status_of(&proxied), 403);
}

#[test]
fn required_mode_answers_401_without_a_token() {
    let (node, _run) = node_running!("required", &["--imdsv2", "required"]);
    let plain = get(&node, "/latest/meta-data/spot/instance-action", &[]);
    assert_eq!(status_of(&plain), 401);
    let put = put_token(&node, 10, &[]);
    let header = format!("X-aws-ec2-metadata-token: {}", body_of(&put));
    assert_eq!(
        status_of(&get(
            &node,
            "/latest/meta-data/spot/instance-action",
            &["-H", &header]
        )),
        200
    );
}

/// botocore's own IMDS client, as the AWS CLI and boto3 use it.
const BOTOCORE: &str = r#"
import json
from botocore.utils import InstanceMetadataFetcher
f = InstanceMetadataFetcher(timeout=2, num_attempts=1)
token = f._fetch_metadata_token()
# botocore joins its base URL (with its trailing slash) and paths written without one.
r = f._get_request("latest/meta-data/spot/instance-action", None, token)
print(json.dumps({"token": bool(token), "status": r.status_code, "body": r.text}))
"#;

#[test]
fn botocore_fetches_a_token_and_reads_the_notice_through_the_redirect() {
    let (node, _run) = node_running!("botocore", &["--imdsv2", "required"]);
    let out = output_ok(
        command_in(&node.target, &node.target_ns, "python3", &["-c", BOTOCORE])
            .env("AWS_EC2_METADATA_DISABLED", "false"),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["token"], true, "botocore got no token: {v}");
    assert_eq!(v["status"], 200, "{v}");
    let body: serde_json::Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["action"], "terminate");
}

/// A stand-in for the real IMDS: IMDSv2-only, with its own instance id and a credentials tree,
/// refusing X-Forwarded-For like the real one (the methods of [`standin_imds`]'s handler).
const STANDIN: &str = r#"
    def do_PUT(self):
        if self.headers.get("X-Forwarded-For"):
            return self.reply(403, "forwarded")
        self.reply(200, "standin-token")
    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != "standin-token":
            return self.reply(401, "")
        pages = {
            "/latest/meta-data/instance-id": "i-0standin0000real",
            "/latest/meta-data/iam/security-credentials/": "node-role",
        }
        if self.path in pages:
            return self.reply(200, pages[self.path])
        self.reply(404, "")
"#;

#[test]
fn passthrough_reads_the_real_imds_and_never_redirects_spot_sims_own_connection() {
    root_or_skip!();
    // One private namespace holds the stand-in "real IMDS" (on an alias of lo), spot-sim and
    // the client; spot-sim itself runs inside the targeted cgroup, so its upstream connect
    // would loop back to itself if the redirect caught it.
    let (cg, target, ns) = cgroup_child_and_ns("passthrough", "target");
    let _standin = standin_imds(&cg, &ns, "", STANDIN, &[]);
    let mut run = start_run_with(
        // spot-sim runs inside its own target here, which is refused unless asked for.
        &[
            "--cgroup",
            target.to_str().unwrap(),
            "--passthrough",
            "--allow-own-cgroup",
        ],
        1,
        Some((&target, &ns)),
    );
    let node_like = |path: &str| {
        let out = curl_in(
            &target,
            &ns,
            &["-s", "-i", "--max-time", "5", &format!("{BASE}{path}")],
        );
        (status_of(&out), body_of(&out))
    };
    // Wait for the stand-in to listen.
    let mut id = (0, String::new());
    for _ in 0..50 {
        id = node_like("/latest/meta-data/instance-id");
        if id.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        id,
        (200, "i-0standin0000real".to_string()),
        "log:\n{}",
        run.log()
    );
    // The client's connection went through spot-sim (it is redirected; events reach the log
    // within the reader's drain interval)...
    run.wait_for_log(
        "(curl) → IMDS 169.254.169.254 redirected",
        Duration::from_secs(5),
    );
    // ...the simulation still answers what it simulates...
    assert_eq!(node_like("/latest/meta-data/spot/instance-action").0, 200);
    // ...and credentials stay refused without --allow-credentials.
    assert_eq!(
        node_like("/latest/meta-data/iam/security-credentials/").0,
        404
    );
}

#[test]
fn bad_scenario_options_get_one_clear_line() {
    let bin = spot_sim_bin();
    let cases: [(&[&str], &str); 3] = [
        (&["serve", "--action", "explode"], "explode"),
        (
            &["serve", "--scenario", "/nonexistent/spot.toml"],
            "/nonexistent/spot.toml",
        ),
        (&["serve", "--fault-503-rate", "7"], "503"),
    ];
    for (args, needle) in cases {
        let out = Command::new(&bin).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
