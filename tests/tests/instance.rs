//! The instance behaves as EC2 does, seen by real clients through the redirect in private
//! network namespaces: the metadata options (hop limit, endpoint, IPv6, tags), the Auto Scaling
//! lifecycle state, maintenance events on the timeline, an absolute start time, and a `serve`
//! steered through its control socket.

use spot_sim_tests::*;

const PUT_TOKEN: &str = "curl -s -o /dev/null -w 'put=%{http_code}' --max-time 2 -X PUT \
     -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token; \
     echo \" rc=$?\"";

/// `spot-sim exec --netns new OPTIONS -- sh -c SCRIPT`: the script's output, and spot-sim's
/// log.
fn exec_sh(options: &[&str], script: &str) -> (String, String) {
    let mut args = options.to_vec();
    args.extend_from_slice(&["--", "sh", "-c", script]);
    let out = exec_new(&args).output().unwrap();
    text(out)
}

fn text(out: Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A token PUT, then the instance id, from `spot-sim exec OPTIONS` (see PUT_TOKEN).
fn token_then_instance_id(options: &[&str]) -> (String, String) {
    let script = format!("{PUT_TOKEN}; {}", curl("/latest/meta-data/instance-id"));
    exec_sh(options, &script)
}

/// `curl -s URL` followed by its HTTP status, in a script.
fn curl(path: &str) -> String {
    format!("curl -s --max-time 3 -w ' %{{http_code}}' {IMDS}{path}; echo")
}

/// Only the HTTP status of `curl URL`, on a line of its own.
fn status_of(path: &str) -> String {
    format!("curl -s --max-time 3 -o /dev/null -w '%{{http_code}}' {IMDS}{path}; echo")
}

#[test]
fn at_hop_limit_1_a_containers_token_put_times_out_and_imdsv1_still_works() {
    root_or_skip!();
    let (out, log) = token_then_instance_id(&["--http-put-response-hop-limit", "1"]);
    // curl's exit 28: timed out, no answer at all (not a refusal).
    assert!(out.contains("put=000 rc=28"), "out: {out}\nlog: {log}");
    assert!(out.contains("i-0e5a6b3c9d2f41a78 200"), "out: {out}");
    assert!(
        log.contains("left unanswered") && log.contains("http-put-response-hop-limit is 1"),
        "the request log says why: {log}"
    );

    // At the default hop limit of 2 the same client gets its token.
    let (out, log) = exec_sh(&[], PUT_TOKEN);
    assert!(out.contains("put=200 rc=0"), "out: {out}\nlog: {log}");
}

/// botocore's IMDS client with its defaults (1 s timeout, 1 attempt), as the AWS CLI and
/// boto3 use it on a pod: its token request times out and it reads the region with IMDSv1.
const BOTOCORE_REGION: &str = r#"
import json, time
from botocore.utils import InstanceMetadataRegionFetcher, InstanceMetadataFetcher
t = time.monotonic()
token = InstanceMetadataFetcher()._fetch_metadata_token()
region = InstanceMetadataRegionFetcher().retrieve_region()
print(json.dumps({"token": token is not None, "region": region, "secs": time.monotonic() - t}))
"#;

#[test]
fn botocore_falls_back_to_imdsv1_at_hop_limit_1_as_on_eks() {
    root_or_skip!();
    let out = exec_new(&[
        "--http-put-response-hop-limit",
        "1",
        "--",
        "python3",
        "-c",
        BOTOCORE_REGION,
    ])
    .env("AWS_EC2_METADATA_DISABLED", "false")
    .env_remove("AWS_EC2_METADATA_V1_DISABLED")
    .output()
    .unwrap();
    let (stdout, log) = text(out);
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\nlog: {log}"));
    assert_eq!(v["token"], false, "no token: {v}");
    assert_eq!(
        v["region"], "us-east-1",
        "read with IMDSv1: {v}\nlog: {log}"
    );
    assert!(
        v["secs"].as_f64().unwrap() >= 1.0,
        "waited for its timeout: {v}"
    );
}

#[test]
fn a_client_in_spot_sims_own_namespace_gets_its_token_at_hop_limit_1() {
    root_or_skip!();
    // spot-sim itself runs in a private namespace ("the node"), and so does the command it
    // execs without --netns new.
    let node_ns = NetNs::new_private().unwrap();
    let bin = spot_sim_bin();
    let out = command_in_netns(
        &node_ns,
        bin.to_str().unwrap(),
        &[
            "exec",
            "--http-put-response-hop-limit",
            "1",
            "--",
            "sh",
            "-c",
            PUT_TOKEN,
        ],
    )
    .output()
    .unwrap();
    let (out, log) = text(out);
    assert!(out.contains("put=200 rc=0"), "out: {out}\nlog: {log}");
    assert!(!log.contains("left unanswered"), "{log}");
}

#[test]
fn a_disabled_endpoint_answers_get_and_put_403() {
    root_or_skip!();
    let (out, log) = token_then_instance_id(&["--http-endpoint", "disabled"]);
    assert!(out.contains("put=403 rc=0"), "out: {out}\nlog: {log}");
    assert!(
        out.contains("<title>403 - Forbidden</title>") && out.ends_with(" 403\n"),
        "{out}"
    );
}

/// [`IMDS_CONNECTS`] under `spot-sim exec --netns new OPTIONS`: how each form of the IMDS
/// address (IPv4, IPv6, IPv4-mapped) ended.
fn imds_connects_under_exec(options: &[&str]) -> Vec<String> {
    let mut args = options.to_vec();
    args.extend_from_slice(&["--", "python3", "-c", IMDS_CONNECTS]);
    let got = json_ok(exec_new(&args));
    strs(&got).into_iter().map(String::from).collect()
}

#[test]
fn the_ipv6_endpoint_is_off_by_default_and_on_when_enabled() {
    root_or_skip!();
    // Off (EC2's default): the native IPv6 connect is left alone, so in the private namespace
    // it is unreachable (ENETUNREACH). Sent to a port nothing listens on, it would be
    // refused instead; curl's exit 7 says "couldn't connect" for both.
    assert_eq!(
        imds_connects_under_exec(&[]),
        ["redirected", "ENETUNREACH", "redirected"],
        "IPv4, IPv6, IPv4-mapped with the IPv6 endpoint off"
    );
    assert_eq!(
        imds_connects_under_exec(&["--http-protocol-ipv6", "enabled"]),
        ["redirected", "redirected", "redirected"],
        "with it on"
    );
    let script = "curl -s -g --max-time 3 -w ' %{http_code}' \
         'http://[fd00:ec2::254]/latest/meta-data/instance-id'";
    let (out, log) = exec_sh(&["--http-protocol-ipv6", "enabled"], script);
    assert_eq!(out, "i-0e5a6b3c9d2f41a78 200", "log: {log}");
}

#[test]
fn tags_are_listed_and_served_when_enabled_and_404_otherwise() {
    root_or_skip!();
    let script = format!(
        "{}; {}",
        curl("/latest/meta-data/tags/instance/"),
        curl("/latest/meta-data/tags/instance/team")
    );
    let tags = ["--tag", "Name=web-1", "--tag", "team=payments"];
    let mut on = vec!["--instance-metadata-tags", "enabled"];
    on.extend_from_slice(&tags);
    let (out, log) = exec_sh(&on, &script);
    assert_eq!(out, "Name\nteam 200\npayments 200\n", "log: {log}");
    let script = format!(
        "{}; {}",
        status_of("/latest/meta-data/tags/instance/"),
        status_of("/latest/meta-data/tags/instance/team")
    );
    let (out, _) = exec_sh(&tags, &script);
    assert_eq!(out, "404\n404\n", "disabled");
}

#[test]
fn the_asg_state_turns_terminated_at_its_time_while_the_instance_answers() {
    root_or_skip!();
    let path = "/latest/meta-data/autoscaling/target-lifecycle-state";
    let script = format!("{}; sleep 3; {}", curl(path), curl(path));
    let (out, log) = exec_sh(
        &["--interruption-in", "30s", "--asg-terminate-in", "2s"],
        &script,
    );
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines, ["InService 200", "Terminated 200"], "log: {log}");
    let (out, _) = exec_sh(&["--no-asg"], &status_of(path));
    assert_eq!(out, "404\n");
}

#[test]
fn a_maintenance_event_appears_at_its_issue_and_is_canceled_later() {
    root_or_skip!();
    let file = OwnedPath::file(
        "maintenance",
        "toml",
        "[scenario]\ninterruption-in = \"1m\"\n\n[[maintenance]]\ncode = \"system-reboot\"\n\
         issue-in = \"2s\"\nnot-before-in = \"1h\"\nnot-before-deadline-in = \"2h\"\n\
         cancel-in = \"2s\"\n",
    )
    .unwrap();
    let scheduled = curl("/latest/meta-data/events/maintenance/scheduled");
    let history = curl("/latest/meta-data/events/maintenance/history");
    let script =
        format!("{scheduled}; echo ---; sleep 2.5; {scheduled}; echo ---; sleep 2; {history}");
    let (out, log) = exec_sh(&["--scenario", file.to_str().unwrap()], &script);
    let parts: Vec<_> = out.split("---\n").collect();
    assert_eq!(parts.len(), 3, "out: {out}\nlog: {log}");
    assert_eq!(parts[0], "[] 200\n", "absent before its issue");
    let json = |s: &str| -> serde_json::Value {
        serde_json::from_str(s.trim_end().trim_end_matches(" 200")).unwrap()
    };
    let active = json(parts[1]);
    assert_eq!(active[0]["State"], "active", "{active}");
    let date = |v: &serde_json::Value| {
        time::PrimitiveDateTime::parse(
            v.as_str().unwrap(),
            time::macros::format_description!(
                "[day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
            ),
        )
        .unwrap()
    };
    assert_eq!(
        date(&active[0]["NotBeforeDeadline"]) - date(&active[0]["NotBefore"]),
        time::Duration::hours(1),
        "{active}"
    );
    let canceled = json(parts[2]);
    assert_eq!(canceled[0]["State"], "canceled", "{canceled}");
    assert_eq!(
        canceled[0]["NotBefore"], active[0]["NotBefore"],
        "dates fixed at issue"
    );
}

#[test]
fn start_at_three_seconds_ahead_is_the_rebalance_notice_time() {
    root_or_skip!();
    let path = "/latest/meta-data/events/recommendations/rebalance";
    // The script says when its first answer came (`date`): one that came after t0 (a start
    // slowed by a loaded machine) proves nothing about "before t0", so that try starts over
    // with a new t0, three times at most, and never drops the check.
    let script = format!("{}; date +%s.%N; sleep 4; {}", status_of(path), curl(path));
    for attempt in 1..=3 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let t0 = now as i64 + 3;
        let at = time::OffsetDateTime::from_unix_timestamp(t0).unwrap();
        let at = at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let (out, log) = exec_sh(&["--start-at", &at], &script);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 3, "out: {out}\nlog: {log}");
        let first_done: f64 = lines[1].parse().unwrap();
        if first_done >= t0 as f64 {
            assert!(attempt < 3, "three tries all answered after t0: {out}");
            continue;
        }
        assert_eq!(lines[0], "404", "nothing before t0: {out}");
        assert_eq!(lines[2], format!("{{\"noticeTime\": \"{at}\"}} 200"));
        return;
    }
}

#[test]
fn bad_instance_options_start_nothing() {
    root_or_skip!();
    for (args, needle) in [
        (
            vec!["--http-put-response-hop-limit", "65"],
            "http-put-response-hop-limit",
        ),
        (vec!["--http-endpoint", "off"], "--http-endpoint"),
        (vec!["--no-asg", "--asg-terminate-in", "1m"], "--no-asg"),
        (vec!["--tag", "a/b=1"], "tags = \"a/b\""),
        (
            vec!["--start-at", "2020-01-01T00:00:00Z"],
            "in the past (it is now",
        ),
        (vec!["--start-at", "soon"], "not an RFC 3339 time"),
    ] {
        let mut all = vec!["exec", "--netns", "new"];
        all.extend_from_slice(&args);
        all.extend_from_slice(&["--", "touch", "/tmp/spot-sim-instance-must-not-run"]);
        let out = Command::new(spot_sim_bin()).args(&all).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !std::path::Path::new("/tmp/spot-sim-instance-must-not-run").exists(),
            "{args:?} started the command"
        );
    }
}

#[test]
fn serve_manual_is_triggered_through_its_control_socket() {
    root_or_skip!();
    let control = control_path("serve");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut serve = spawn_spot_sim(&[
        "serve",
        "--listen",
        &listen,
        "--manual",
        "--control",
        control.to_str().unwrap(),
    ]);
    serve.wait_for_log("control socket", Duration::from_secs(10));
    // The fake IMDS on loopback, not the IMDS address: no redirect involved.
    let action = format!("http://{listen}/latest/meta-data/spot/instance-action");
    let code = || {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "3",
            ])
            .arg(&action)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(code(), "404", "nothing before the trigger");
    let ctl = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--control", control.to_str().unwrap()]);
        let out = Command::new(spot_sim_bin()).args(&all).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status: serde_json::Value = serde_json::from_str(&ctl(&["status", "--json"])).unwrap();
    let target = &status[0]["targets"][0];
    assert_eq!(target["timeline"]["waiting_for_trigger"], true, "{target}");
    assert_eq!(
        target["responder"]["options"]["http-put-response-hop-limit"],
        "2"
    );
    assert!(ctl(&["trigger"]).contains("triggered"));
    assert_eq!(code(), "200");
    assert!(ctl(&["status"]).contains("options:   asg=enabled"));
    drop(serve);
    assert!(!control.exists(), "the socket is removed on SIGTERM");
}

#[test]
fn serve_without_root_puts_its_socket_under_xdg_runtime_dir_and_status_finds_it() {
    root_or_skip!();
    // An unprivileged user (nobody) with a runtime directory of its own.
    let dir = OwnedPath::scratch_dir("xdg").unwrap();
    nix::unistd::chown(
        &*dir,
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    let bin = spot_sim_bin();
    let mut serve = spawn_logged(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--manual"])
            .env("XDG_RUNTIME_DIR", &dir),
    );
    serve.wait_for_log("control socket", Duration::from_secs(10));
    let socket = dir
        .join("spot-sim")
        .join(format!("serve-{}.sock", serve.pid()));
    assert!(socket.exists(), "{}", serve.log());
    // `status` without --control looks there too, for the same user (a client talks only to
    // an instance of its own user or root's).
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["status", "--json"])
        .env("XDG_RUNTIME_DIR", &dir)
        .output()
        .unwrap();
    let all: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let ours = all
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["control"] == socket.to_str().unwrap())
        .unwrap_or_else(|| panic!("not found: {all}"));
    assert_eq!(ours["targets"][0]["timeline"]["waiting_for_trigger"], true);
    drop(serve);
    assert!(!socket.exists(), "removed on SIGTERM");
}
