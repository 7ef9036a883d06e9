//! The redirect is complete and observable: every way a client reaches the IMDS (IPv4, IPv6,
//! IPv4-mapped IPv6) lands on spot-sim, the client still sees the IMDS as its peer, UDP is
//! left alone, and each redirect shows up in the log and the metrics.

use spot_sim_tests::*;

/// A real client: connects with the given family to `addr`:80, records its peer as
/// getpeername() reports it, and fetches the instance action over raw HTTP/1.1.
const CLIENT: &str = r#"
import json, os, socket, sys
family, addr = sys.argv[1], sys.argv[2]
if family == "6":
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # dual-stack, as Java does
elif family == "mptcp":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_MPTCP)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5)
s.connect((addr, 80))
peer = s.getpeername()
s.sendall(b"GET /latest/meta-data/spot/instance-action HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n")
data = b"".join(iter(lambda: s.recv(65536), b""))
print(json.dumps({"pid": os.getpid(), "peer": [peer[0], peer[1]], "response": data.decode("latin-1")}))
"#;

const UDP_CLIENT: &str = r#"
import json, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.connect(("169.254.169.254", 80))
    print(json.dumps({"connected": True, "peer": list(s.getpeername())}))
except OSError as e:
    print(json.dumps({"connected": False, "errno": e.errno}))
"#;

fn python_in(node: &Node, script: &str, args: &[&str]) -> serde_json::Value {
    python_json(&node.target, &node.target_ns, script, args)
}

/// CLIENT over IPv`family` to `addr` from the node's target gets the notice and sees `addr`
/// (port 80) as its peer.
fn assert_peer_is_the_imds(node: &Node, family: &str, addr: &str) {
    let reply = python_in(node, CLIENT, &[family, addr]);
    assert_notice(&reply);
    assert_eq!(reply["peer"], serde_json::json!([addr, 80]));
}

fn assert_notice(reply: &serde_json::Value) {
    let response = reply["response"].as_str().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("{\"action\": \"terminate\", \"time\": \""),
        "{response}"
    );
}

#[test]
fn a_dual_stack_socket_asking_for_the_ipv4_imds_gets_the_notice_and_sees_the_imds_as_peer() {
    let (node, _run) = node_running!("mapped", &[]);
    let reply = python_in(&node, CLIENT, &["6", "::ffff:169.254.169.254"]);
    assert_notice(&reply);
    assert_eq!(
        reply["peer"],
        serde_json::json!(["::ffff:169.254.169.254", 80])
    );
}

#[test]
fn the_ipv6_imds_endpoint_gets_the_notice_and_sees_the_imds_as_peer() {
    root_or_skip!();
    let node = node("ipv6");
    // Off by default, as on EC2 (HttpProtocolIpv6); instance.rs checks that side.
    let _run = start_run(&node, &["--http-protocol-ipv6", "enabled"]);
    assert_peer_is_the_imds(&node, "6", "fd00:ec2::254");
}

#[test]
fn an_ipv4_client_sees_the_imds_as_its_peer() {
    let (node, _run) = node_running!("peer4", &[]);
    assert_peer_is_the_imds(&node, "4", "169.254.169.254");
}

#[test]
fn udp_to_the_imds_address_is_not_rewritten() {
    let (node, _run) = node_running!("udp", &[]);
    // Unrewritten, a UDP connect to 169.254.169.254 finds no route in the private namespace.
    let reply = python_in(&node, UDP_CLIENT, &[]);
    assert_eq!(reply["connected"], false, "{reply}");
    assert_eq!(reply["errno"], libc::ENETUNREACH, "{reply}");
}

#[test]
fn each_redirect_is_logged_with_pid_and_target_and_counted_in_the_metrics() {
    let (node, mut run) = node_running!("events", &["--metrics", "127.0.0.1:0"]);
    let reply = python_in(&node, CLIENT, &["4", "169.254.169.254"]);
    assert_notice(&reply);
    let pid = reply["pid"].as_u64().unwrap();
    let target = format!(
        "cgroup /{}",
        node.target.strip_prefix(cgroup2_mount()).unwrap().display()
    );
    run.wait_for_log(&format!("{target}: pid {pid} ("), Duration::from_secs(5));
    assert!(
        run.log().contains("→ IMDS 169.254.169.254 redirected"),
        "{}",
        run.log()
    );

    // The metrics address is in the log; scrape it from the host side (loopback only).
    let log = run.log();
    let addr = log
        .split("metrics on http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("metrics address logged")
        .to_string();
    let want = format!("spot_sim_redirects_total{{target=\"{target}\"}} 1");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    while Instant::now() < deadline {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "2", &format!("http://{addr}/metrics")])
            .output()
            .unwrap();
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(&want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(text.contains(&want), "metrics lack {want}:\n{text}");
    assert!(
        text.contains(&format!(
            "spot_sim_requests_total{{target=\"{target}\",path=\"/latest/meta-data/spot/instance-action\",status=\"200\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "spot_sim_scenario_phase{{target=\"{target}\",phase=\"notice\"}} 1"
        )),
        "{text}"
    );
}

#[test]
fn a_process_that_joins_the_target_in_a_namespace_of_its_own_is_served_there_too() {
    let (node, mut run) = node_running!("late-netns", &[]);
    // A second workload starts in the target cgroup, in a network namespace of its own (a pod
    // that starts after spot-sim, or a slice holding several pods).
    let late_ns = NetNs::new_private().unwrap();
    let _late = sleeper_in(&node.target, &late_ns);
    run.wait_for_log(
        &format!("also serving inside net:[{}]", late_ns.inode().unwrap()),
        Duration::from_secs(5),
    );
    let out = curl_in(
        &node.target,
        &late_ns,
        &[
            "-f",
            "http://169.254.169.254/latest/meta-data/spot/instance-action",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first namespace is still served.
    let reply = python_in(&node, CLIENT, &["4", "169.254.169.254"]);
    assert_notice(&reply);
}

/// The kernel runs the connect hook on an MPTCP socket's first subflow, which is plain TCP: a
/// runtime that dials with MPTCP must not escape the simulation.
#[test]
fn a_multipath_tcp_client_does_not_escape_the_simulation() {
    root_or_skip!();
    let mptcp = std::fs::read_to_string("/proc/sys/net/mptcp/enabled").unwrap_or_default();
    if mptcp.trim() != "1" {
        skip("MPTCP is not enabled on this kernel (sysctl net.mptcp.enabled=1)");
        return;
    }
    let node = node("mptcp");
    let _run = start_run(&node, &[]);
    let reply = python_in(&node, CLIENT, &["mptcp", "169.254.169.254"]);
    assert_notice(&reply);
}

/// Redirected, then disconnected with connect(AF_UNSPEC) and connected to a listener of its own
/// on loopback: getpeername must report that listener, not the IMDS it asked for earlier.
const RECONNECT_CLIENT: &str = r#"
import ctypes, json, socket
libc = ctypes.CDLL(None, use_errno=True)
other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
other.bind(("127.0.0.1", 0))
other.listen(1)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(("169.254.169.254", 80))
first = s.getpeername()
unspec = (ctypes.c_ubyte * 16)()  # sa_family 0 = AF_UNSPEC
if libc.connect(s.fileno(), unspec, 16) != 0:
    raise OSError(ctypes.get_errno(), "connect(AF_UNSPEC)")
s.connect(other.getsockname())
print(json.dumps({"first": list(first), "second": list(s.getpeername()),
                  "listener": list(other.getsockname())}))
"#;

#[test]
fn a_redirected_socket_that_reconnects_elsewhere_reports_its_real_peer() {
    let (node, _run) = node_running!("reconnect", &[]);
    let reply = python_in(&node, RECONNECT_CLIENT, &[]);
    assert_eq!(reply["first"], serde_json::json!(["169.254.169.254", 80]));
    assert_eq!(reply["second"], reply["listener"], "{reply}");
}
