//! Faults handlers meet on EC2, through the real redirect: IMDS throttling as a polling client,
//! botocore's own IMDS client and a client with a timeout see it; the token PUT to a dated
//! version; and bad fault or date settings refused before anything starts.

use spot_sim_tests::*;

const BASE: &str = "http://169.254.169.254";
const INSTANCE_ID: &str = "http://169.254.169.254/latest/meta-data/instance-id";

/// The HTTP status of each of `n` GETs of the instance id, sent by one curl as fast as it can
/// (one keep-alive connection), and how long they took.
fn burst(node: &Node, n: usize) -> (Vec<String>, Duration) {
    let mut args = vec!["-s", "-w", "%{http_code}\\n"];
    for _ in 0..n {
        args.extend(["-o", "/dev/null", INSTANCE_ID]);
    }
    let started = Instant::now();
    let out = curl_in(&node.target, &node.target_ns, &args);
    let took = started.elapsed();
    (stdout(&out).lines().map(str::to_string).collect(), took)
}

#[test]
fn a_client_polling_faster_than_the_rate_sees_429s_and_one_at_1_per_second_sees_none() {
    let (node, run) = node_running!("throttle", &["--fault-throttle", "5/s"]);
    let (codes, took) = burst(&node, 40);
    assert_eq!(codes.len(), 40, "{codes:?}");
    let ok = codes.iter().filter(|c| *c == "200").count();
    let throttled = codes.iter().filter(|c| *c == "429").count();
    assert_eq!(ok + throttled, 40, "{codes:?}");
    // The first second's five, then at most five a second.
    assert!(codes[..5].iter().all(|c| c == "200"), "{codes:?}");
    let allowed = 5 + (5.0 * took.as_secs_f64()).ceil() as usize;
    assert!(
        throttled > 0 && ok <= allowed,
        "{ok} answered in {took:?} (at most {allowed}): {codes:?}"
    );
    let seen = status_json(&run)["targets"][0]["responder"].clone();
    assert_eq!(seen["requests_throttled"], throttled as u64, "{seen}");
    assert_eq!(
        seen["by_path"]["/latest/meta-data/instance-id"]["429"],
        throttled as u64
    );

    // A handler polling once a second, as KSTNH does, is never throttled.
    std::thread::sleep(Duration::from_millis(1200));
    let script = format!(
        "for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}}\\n' --max-time 5 {INSTANCE_ID}; sleep 1; done"
    );
    let out = output_ok(command_in(
        &node.target,
        &node.target_ns,
        "sh",
        &["-c", &script],
    ));
    assert_eq!(stdout(&out), "200\n".repeat(6));
}

/// botocore's IMDS client (as the AWS CLI and boto3 use it) with three attempts, each request
/// it sends recorded: what it does when throttled.
const BOTOCORE_THROTTLED: &str = r#"
import json, time
from botocore.utils import InstanceMetadataFetcher
f = InstanceMetadataFetcher(timeout=2, num_attempts=3)
sent = []
send = f._session.send
def recorded(request):
    response = send(request)
    sent.append({"method": request.method, "status": response.status_code, "at": time.monotonic()})
    return response
f._session.send = recorded
token = f._fetch_metadata_token()
try:
    f._get_request("latest/meta-data/instance-id", None, token)
    gave_up = False
except f._RETRIES_EXCEEDED_ERROR_CLS:
    gave_up = True
second_token = f._fetch_metadata_token()
time.sleep(1.2)
later = f._get_request("latest/meta-data/instance-id", None, None)
print(json.dumps({"token": bool(token), "gave_up": gave_up, "second_token": second_token,
                  "later": [later.status_code, later.text], "sent": sent}))
"#;

#[test]
fn botocore_retries_a_429_at_once_until_its_attempts_run_out_as_on_ec2() {
    let (node, run) = node_running!("botocore-429", &["--fault-throttle", "1/s"]);
    let out = output_ok(
        command_in(
            &node.target,
            &node.target_ns,
            "python3",
            &["-c", BOTOCORE_THROTTLED],
        )
        .env("AWS_EC2_METADATA_DISABLED", "false"),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent = v["sent"].as_array().unwrap();
    let seen: Vec<(&str, u64)> = sent
        .iter()
        .map(|s| (s["method"].as_str().unwrap(), s["status"].as_u64().unwrap()))
        .collect();
    // botocore/utils.py IMDSFetcher: `_get_request` sends again on any non-200 (its default
    // retry_func), with no pause and no look at Retry-After, `num_attempts` times, then raises;
    // `_fetch_metadata_token` treats 429 like a connection error (neither 400 nor
    // 403/404/405): tries again, then returns None and the client goes on with IMDSv1.
    assert_eq!(
        seen,
        [
            ("PUT", 200),
            ("GET", 429),
            ("GET", 429),
            ("GET", 429),
            ("PUT", 429),
            ("PUT", 429),
            ("PUT", 429),
            ("GET", 200),
        ],
        "{v}"
    );
    assert_eq!(v["token"], true, "{v}");
    assert_eq!(v["gave_up"], true, "{v}");
    assert_eq!(v["second_token"], serde_json::Value::Null, "{v}");
    assert_eq!(v["later"][1], "i-0e5a6b3c9d2f41a78", "{v}");
    // No backoff: the three GETs went out within the second the rate needs to refill.
    let at = |i: usize| sent[i]["at"].as_f64().unwrap();
    assert!(
        at(3) - at(1) < 1.0,
        "retries spread over {}s: {v}",
        at(3) - at(1)
    );
    let seen = status_json(&run)["targets"][0]["responder"].clone();
    assert_eq!(seen["requests_throttled"], 6, "{seen}");
}

/// A raw client: connects (the redirect works), sends a GET and waits `timeout` for an answer.
const PATIENCE: &str = r#"
import json, socket, sys, time
def get(timeout):
    s = socket.create_connection(("169.254.169.254", 80), timeout=2)
    s.sendall(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n")
    s.settimeout(timeout)
    asked = time.monotonic()
    try:
        head = s.recv(4096).decode()
        return {"status": head.split(" ")[1], "after": time.monotonic() - asked}
    except socket.timeout:
        return {"status": "timeout", "after": time.monotonic() - asked}
    finally:
        s.close()
print(json.dumps([get(5), get(0.8), get(5)]))
"#;

#[test]
fn in_drop_mode_a_client_above_the_rate_times_out_and_a_patient_one_is_answered_late() {
    let (node, run) = node_running!(
        "throttle-drop",
        &["--fault-throttle", "1/s", "--fault-throttle-mode", "drop"]
    );
    let v = python_json(&node.target, &node.target_ns, PATIENCE, &[]);
    let status = |i: usize| v[i]["status"].as_str().unwrap().to_string();
    let after = |i: usize| v[i]["after"].as_f64().unwrap();
    assert_eq!(status(0), "200", "{v}");
    // Connected (the socket is spot-sim's), then nothing: botocore's 1 s would run out too.
    assert_eq!(status(1), "timeout", "{v}");
    // Answered at its first resend (1 s): the rate has room by then, as the client that gave up
    // took no turn.
    assert_eq!(status(2), "200", "{v}");
    assert!(
        (0.95..1.8).contains(&after(2)),
        "answered after {}s: {v}",
        after(2)
    );
    let seen = status_json(&run)["targets"][0]["responder"].clone();
    assert_eq!(seen["requests_throttled"], 2, "{seen}");
}

#[test]
fn a_token_put_to_a_dated_version_is_forbidden_as_on_ec2() {
    let (node, _run) = node_running!("dated-token", &[]);
    let put = |path: &str| {
        let url = format!("{BASE}{path}");
        let args = [
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-H",
            "X-aws-ec2-metadata-token-ttl-seconds: 60",
            url.as_str(),
        ];
        stdout(&curl_in(&node.target, &node.target_ns, &args))
    };
    assert_eq!(put("/2021-03-23/api/token"), "403");
    assert_eq!(put("/latest/api/token"), "200");
}

/// `spot-sim exec --netns new ARGS -- touch MARK`, expected to be refused: its stderr.
fn refused(args: &[&str], mark: &Path) -> String {
    let mut all = vec!["exec", "--netns", "new"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "touch", mark.to_str().unwrap()]);
    let child = Command::new(spot_sim_bin())
        .args(&all)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} ran: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines = err
        .lines()
        .filter(|l| l.starts_with("spot-sim:") || l.starts_with("error:"))
        .count();
    assert_eq!(lines, 1, "one error line expected:\n{err}");
    assert!(!mark.exists(), "{args:?} started the command");
    let leftover = fs::read_dir(cgroup2_mount()).unwrap().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with(&format!("spot-sim-exec-{pid}-"))
    });
    assert!(!leftover, "{args:?} left its cgroup");
    err
}

#[test]
fn bad_throttle_rates_and_zoneless_dates_are_refused_before_anything_starts() {
    root_or_skip!();
    let mark = std::env::temp_dir().join(unique("faults-must-not-run"));
    let zoneless = OwnedPath::file(
        "zoneless",
        "toml",
        "[[maintenance]]\ncode = \"system-reboot\"\nnot-before = \"2026-12-01T09:00:00\"\n",
    )
    .unwrap();
    for (args, needle) in [
        (vec!["--fault-throttle", "0"], "would refuse every request"),
        (vec!["--fault-throttle=-5/s"], "is negative"),
        (vec!["--fault-throttle", "5/fortnight"], "unknown unit `/fortnight`"),
        (vec!["--fault-throttle-mode", "drop"], "does nothing without a rate"),
        (
            vec!["--scenario", zoneless.to_str().unwrap()],
            "an RFC 3339 time without a zone (allowed: the same with its zone, like \"2026-12-01T09:00:00Z\" (UTC))",
        ),
    ] {
        let err = refused(&args, &mark);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
