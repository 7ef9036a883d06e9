//! What README.md and SECURITY.md promise about a running spot-sim, each checked where it can
//! fail: a target's other traffic passes untouched, the control socket checks its peer, the
//! fake IMDS (and metrics) listen nowhere else, faults delay answers, secrets stay out of the
//! log, the log is rate-limited, `exec` reports signals the shell way, and `run` detaches
//! before it stops answering.

use nix::sys::signal::Signal;
use spot_sim_tests::*;

/// Runs a Python script inside the node's target; returns its stdout parsed as JSON.
fn python(node: &Node, script: &str, args: &[&str]) -> serde_json::Value {
    python_json(&node.target, &node.target_ns, script, args)
}

// ---------------------------------------------------------------------------------------------
// The redirect touches only TCP to the IMDS address and port.

/// From inside a target: TCP to a local listener (another address), TCP to the IMDS address on
/// another port (IPv4, IPv4-mapped from an IPv6 socket, IPv6), UDP to the IMDS address and
/// port, and, for contrast, TCP to the IMDS.
const OTHER_TRAFFIC: &str = r#"
import errno, json, socket, sys
port = int(sys.argv[1])
def tcp(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(addr)
        return "connected to %s:%d" % s.getpeername()[:2]
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
def udp(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"x", addr)
        return "sent"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
print(json.dumps({
    "loopback": tcp(socket.AF_INET, ("127.0.0.1", port)),
    "loopback6": tcp(socket.AF_INET6, ("::1", port)),
    "imds port 81": tcp(socket.AF_INET, ("169.254.169.254", 81)),
    "imds port 443": tcp(socket.AF_INET, ("169.254.169.254", 443)),
    "imds mapped port 81": tcp(socket.AF_INET6, ("::ffff:169.254.169.254", 81)),
    "imds6 port 81": tcp(socket.AF_INET6, ("fd00:ec2::254", 81)),
    "imds udp 80": udp(("169.254.169.254", 80)),
    "imds": tcp(socket.AF_INET, ("169.254.169.254", 80)),
}))
"#;

#[test]
fn a_targets_other_tcp_and_its_udp_pass_untouched() {
    root_or_skip!();
    let node = node("other-traffic");
    // A listener of the workload's own, on both loopbacks of its namespace.
    let (l4, l6) = node
        .target_ns
        .run(|| {
            let l4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l4.local_addr().unwrap().port();
            (l4, std::net::TcpListener::bind(("::1", port)).unwrap())
        })
        .unwrap();
    let port = l4.local_addr().unwrap().port();
    let _run = start_run(&node, &[]);
    let r = python(&node, OTHER_TRAFFIC, &[&port.to_string()]);
    println!("FIGURE other traffic from a target: {r}");
    assert_eq!(
        r["loopback"],
        format!("connected to 127.0.0.1:{port}"),
        "{r}"
    );
    assert_eq!(r["loopback6"], format!("connected to ::1:{port}"), "{r}");
    // Not rewritten: the namespace has no route to the IMDS address.
    assert_eq!(r["imds port 81"], "ENETUNREACH", "{r}");
    assert_eq!(r["imds port 443"], "ENETUNREACH", "{r}");
    assert_eq!(r["imds mapped port 81"], "ENETUNREACH", "{r}");
    assert_eq!(r["imds6 port 81"], "ENETUNREACH", "{r}");
    assert_eq!(r["imds udp 80"], "ENETUNREACH", "{r}");
    // While TCP to the IMDS address and port is redirected.
    assert_eq!(r["imds"], "connected to 169.254.169.254:80", "{r}");
    drop((l4, l6));
}

// ---------------------------------------------------------------------------------------------
// The control socket checks its peer's credentials.

/// Connects to the control socket at argv[1], sends a status request, prints what came back.
const CONTROL_CLIENT: &str = r#"
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(json.dumps({"connected": False, "error": str(e)}))
    sys.exit(0)
data = b""
try:
    # The server may close before the request is even written (a broken pipe): no answer.
    s.sendall(b'{"op": "status"}\n')
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError as e:
    pass
print(json.dumps({"connected": True, "reply": data.decode(errors="replace")}))
"#;

#[test]
fn the_control_socket_refuses_another_user_by_peer_credentials() {
    root_or_skip!();
    let node = node("peercred");
    // A control socket in a directory anyone may enter, then opened to everyone: only the
    // peer-credential check is left to refuse another user.
    let dir = OwnedPath::scratch_dir("control").unwrap();
    fs::set_permissions(&*dir, fs::Permissions::from_mode(0o755)).unwrap();
    let control = dir.join("ctl.sock");
    let mut run = spawn_logged(Command::new(spot_sim_bin()).args([
        "run",
        "--control",
        control.to_str().unwrap(),
        "--cgroup",
        node.target.to_str().unwrap(),
    ]));
    run.wait_for_log("serving 1 target", Duration::from_secs(20));
    fs::set_permissions(&control, fs::Permissions::from_mode(0o666)).unwrap();

    let as_root = Command::new("python3")
        .args(["-c", CONTROL_CLIENT, control.to_str().unwrap()])
        .output()
        .unwrap();
    let root: serde_json::Value = serde_json::from_slice(&as_root.stdout).unwrap();
    assert_eq!(root["connected"], true, "{root}");
    assert!(
        root["reply"].as_str().unwrap().contains("targets"),
        "root gets the status: {root}"
    );

    let as_nobody = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            // The system's: a per-user Python shim under /root is out of another user's reach.
            "/usr/bin/python3",
            "-c",
            CONTROL_CLIENT,
            control.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let nobody: serde_json::Value = serde_json::from_slice(&as_nobody.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {}{}",
            String::from_utf8_lossy(&as_nobody.stdout),
            String::from_utf8_lossy(&as_nobody.stderr)
        )
    });
    println!("FIGURE control socket, another user: {nobody}");
    // The file mode let it connect; spot-sim closed the connection without an answer.
    assert_eq!(nobody["connected"], true, "{nobody}");
    assert_eq!(nobody["reply"], "", "another user got an answer: {nobody}");
    run.signal(Signal::SIGTERM);
    let status = run.wait_timeout(Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{status}");
}

// ---------------------------------------------------------------------------------------------
// Where spot-sim listens.

/// The inodes of the sockets `pid` holds.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let dir = format!("/proc/{pid}/fd");
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"))
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Listening TCP sockets in the current thread's namespace whose inode is in `inodes`, as
/// (address in the kernel's hex form, port).
fn listening_among(inodes: &[u64]) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for table in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_else(|e| panic!("cannot read {table}: {e}"));
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(f.len() > 9, "unexpected line in {table}: {line}");
            let inode: u64 = f[9].parse().unwrap();
            if f[3] == "0A" && inodes.contains(&inode) {
                let (addr, port) = f[1].split_once(':').unwrap();
                out.push((addr.to_owned(), u16::from_str_radix(port, 16).unwrap()));
            }
        }
    }
    out
}

/// 127.0.0.1 or ::1 in /proc/net/tcp's hex form.
fn is_loopback(hex: &str) -> bool {
    hex == "0100007F" || hex == "00000000000000000000000001000000"
}

#[test]
fn the_fake_imds_listens_only_on_loopback_in_the_target_and_metrics_only_where_bound() {
    root_or_skip!();
    let node = node("listeners");
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let run = start_run(&node, &["--metrics", &metrics]);
    let inodes = socket_inodes(run.pid());
    // spot-sim's own namespace (the test's): the metrics listener and nothing else.
    let here = listening_among(&inodes);
    println!("FIGURE listeners in spot-sim's namespace: {here:?}");
    assert_eq!(here, [("0100007F".to_owned(), metrics_port)], "{here:?}");
    // The target's namespace: the fake IMDS, on loopback only.
    let there = node.target_ns.run(|| listening_among(&inodes)).unwrap();
    println!("FIGURE listeners in the target's namespace: {there:?}");
    assert!(!there.is_empty(), "no responder in the target's namespace");
    assert!(
        there.iter().all(|(a, _)| is_loopback(a)),
        "a listener off loopback: {there:?}"
    );
    // The sibling's namespace (no process of the target there): nothing.
    let sibling = node.sibling_ns.run(|| listening_among(&inodes)).unwrap();
    assert_eq!(sibling, Vec::<(String, u16)>::new());
    // And the metrics answer where they were bound.
    output_ok(Command::new("curl").args([
        "-sS",
        "--max-time",
        "5",
        &format!("http://{metrics}/metrics"),
    ]));
}

// ---------------------------------------------------------------------------------------------
// Faults and logs.

#[test]
fn fault_latency_delays_every_answer() {
    let (node, _run) = node_running!("latency", &["--fault-latency", "800ms"]);
    for path in [
        "/latest/meta-data/instance-id",
        "/latest/meta-data/spot/instance-action",
    ] {
        let t0 = Instant::now();
        let out = curl_in(
            &node.target,
            &node.target_ns,
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{IMDS}{path}"),
            ],
        );
        let took = t0.elapsed();
        println!(
            "FIGURE fault latency 800 ms: {path} answered after {} ms",
            took.as_millis()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        assert!(took >= Duration::from_millis(800), "{path}: {took:?}");
        assert!(took < Duration::from_secs(4), "{path}: {took:?}");
    }
}

/// A token PUT, a GET with it and a secret-bearing header, and a GET with a made-up token.
const SECRETS: &str = r#"
import http.client, json
c = http.client.HTTPConnection("169.254.169.254", 80, timeout=5)
c.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
r = c.getresponse(); token = r.read().decode()
c.request("GET", "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token, "Authorization": "Bearer hdr-secret-6f1c9a", "X-Custom": "hdr-secret-b27e40"})
r = c.getresponse(); r.read(); ok = r.status
c.request("GET", "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": "made-up-token-c4d1e8a0"})
r = c.getresponse(); r.read(); forged = r.status
print(json.dumps({"token": token, "ok": ok, "forged": forged}))
"#;

#[test]
fn tokens_and_headers_never_reach_the_log_even_at_debug() {
    root_or_skip!();
    let node = node("secrets");
    let mut cmd = Command::new(spot_sim_bin());
    let control = control_path("secrets");
    cmd.args([
        "run",
        "--control",
        control.to_str().unwrap(),
        "--cgroup",
        node.target.to_str().unwrap(),
    ])
    .env("RUST_LOG", "debug");
    let mut run = spawn_logged(&mut cmd);
    run.control = Some(control);
    run.wait_for_log("serving 1 target", Duration::from_secs(20));
    let r = python(&node, SECRETS, &[]);
    assert_eq!(r["ok"], 200, "{r}");
    assert_eq!(r["forged"], 401, "{r}");
    let token = r["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 40, "{r}");
    // The requests were logged (at debug every one is)...
    run.wait_for_log(
        "/latest/meta-data/instance-id → 401",
        Duration::from_secs(5),
    );
    let log = run.log();
    // ...and nothing secret with them.
    for secret in [
        token.as_str(),
        "hdr-secret-6f1c9a",
        "hdr-secret-b27e40",
        "made-up-token-c4d1e8a0",
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}

/// Requests over one keep-alive connection and fresh connects, for `secs` seconds.
const STEADY: &str = r#"
import http.client, json, socket, sys, time
secs = float(sys.argv[1])
c = http.client.HTTPConnection("169.254.169.254", 80, timeout=5)
t0 = time.time(); requests = connects = 0
while time.time() - t0 < secs:
    c.request("GET", "/latest/meta-data/instance-id")
    r = c.getresponse(); r.read(); requests += 1
    s = socket.create_connection(("169.254.169.254", 80), timeout=5); s.close(); connects += 1
    time.sleep(0.01)
print(json.dumps({"requests": requests, "connects": connects, "secs": time.time() - t0}))
"#;

#[test]
fn a_busy_target_gets_at_most_one_log_line_a_second_for_requests_and_for_redirects() {
    let (node, mut run) = node_running!("log-rate", &[]);
    let before = run.log().lines().count();
    let r = python(&node, STEADY, &["3"]);
    // The redirect events drain every 100 ms: let the last batch reach the log.
    std::thread::sleep(Duration::from_millis(500));
    run.wait_for_log("more since the last line", Duration::from_secs(5));
    let log = run.log();
    let new: Vec<&str> = log.lines().skip(before).collect();
    let requests = new
        .iter()
        .filter(|l| l.contains("GET /latest/meta-data/instance-id → 200"))
        .count();
    let redirects = new
        .iter()
        .filter(|l| l.contains("→ IMDS 169.254.169.254 redirected"))
        .count();
    let secs = r["secs"].as_f64().unwrap();
    println!(
        "FIGURE log rate: {} requests and {} connects in {secs:.1} s gave {requests} request lines and {redirects} redirect lines",
        r["requests"], r["connects"]
    );
    assert!(r["requests"].as_u64().unwrap() >= 20, "{r}");
    // One line a second, the first one included: ceil(secs) + 1 at the most.
    let most = secs.ceil() as usize + 1;
    assert!(
        (1..=most).contains(&requests),
        "{requests} request lines:\n{}",
        new.join("\n")
    );
    assert!(
        (1..=most).contains(&redirects),
        "{redirects} redirect lines:\n{}",
        new.join("\n")
    );
}

#[test]
fn per_path_statistics_keep_at_most_256_paths() {
    root_or_skip!();
    const PATHS: &str = r#"
import http.client, json
c = http.client.HTTPConnection("169.254.169.254", 80, timeout=5)
for i in range(300):
    c.request("GET", "/latest/meta-data/no-such-%d" % i)
    r = c.getresponse(); r.read()
print(json.dumps({"sent": 300}))
"#;
    let node = node("path-cap");
    let run = start_run(&node, &[]);
    python(&node, PATHS, &[]);
    let by_path = status_json(&run)["targets"][0]["responder"]["by_path"].clone();
    let paths = by_path.as_object().unwrap();
    let other: u64 = paths["(other)"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    println!(
        "FIGURE per-path statistics after 300 distinct paths: {} kept, {other} counted as (other)",
        paths.len()
    );
    assert_eq!(paths.len(), 256 + 1, "256 paths plus (other)");
    assert_eq!(other, 300 - 256);
}

// ---------------------------------------------------------------------------------------------
// exec and run at the end.

#[test]
fn exec_exits_128_plus_the_signal_that_ended_the_command() {
    root_or_skip!();
    let mut p = spawn_logged(&mut exec_sh("kill -KILL $$"));
    let status = p.wait_timeout(Duration::from_secs(20)).expect("exec ended");
    assert_eq!(status.code(), Some(128 + 9), "log:\n{}", p.log());
}

#[test]
fn exec_forwards_sigint_to_the_command_without_a_terminal() {
    root_or_skip!();
    let mut p = spawn_logged(
        exec_sh("trap 'exit 43' INT; echo ready >&2; sleep 30 & wait").stdout(Stdio::null()),
    );
    p.wait_for_log("ready", Duration::from_secs(20));
    p.signal(Signal::SIGINT);
    let status = p.wait_timeout(Duration::from_secs(10)).expect("exec ended");
    assert_eq!(status.code(), Some(43), "log:\n{}", p.log());
}

/// spot-sim's descriptors: the target's cgroup bpf links (their fdinfo has a `link_id` and
/// `link_type: cgroup`; the game-day tracepoints' links are `tracing`), and the sockets
/// listening in `ns` (the fake IMDS in a target's namespace).
fn links_and_listeners(pid: u32, ns: &NetNs) -> (Vec<u32>, Vec<u32>) {
    let inodes = socket_inodes(pid);
    let listening: Vec<u64> = ns
        .run(|| {
            let mut out = Vec::new();
            for table in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
                for line in fs::read_to_string(table).unwrap().lines().skip(1) {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    if f[3] == "0A" {
                        out.push(f[9].parse::<u64>().unwrap());
                    }
                }
            }
            out
        })
        .unwrap();
    let (mut links, mut listeners) = (Vec::new(), Vec::new());
    for e in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let fd: u32 = e.file_name().to_str().unwrap().parse().unwrap();
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        if info.lines().any(|l| l.starts_with("link_id:"))
            && info
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["link_type:", "cgroup"])
        {
            links.push(fd);
        }
        let target = fs::read_link(e.path()).unwrap_or_default();
        let inode = target.to_str().and_then(|t| {
            t.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        });
        if inode.is_some_and(|i| inodes.contains(&i) && listening.contains(&i)) {
            listeners.push(fd);
        }
    }
    (links, listeners)
}

#[test]
fn run_detaches_before_it_stops_answering() {
    // The order is a matter of microseconds, too short for a client to sample on a loaded
    // machine (loopback SYNs then wait in a queue longer than the gap), so this watches
    // spot-sim's own close() calls: every bpf link closed before any listener of the target.
    let (node, mut run) = node_running!("detach-order", &[]);
    let (links, listeners) = links_and_listeners(run.pid(), &node.target_ns);
    assert_eq!(
        links.len(),
        4,
        "connect4/6 + getpeername4/6 links: {links:?}"
    );
    assert!(
        !listeners.is_empty(),
        "no listener in the target's namespace"
    );
    let trace = std::env::temp_dir().join(format!("{}.strace", unique("detach")));
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=close", "-e", "signal=none", "-o"])
        .arg(&trace)
        .args(["-p", &run.pid().to_string()])
        .stderr(Stdio::null())
        .spawn()
        .expect("strace is installed (cargo xtask deps)");
    let status_of = |pid: u32| fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    poll_until(Duration::from_secs(5), "strace attached", || {
        status_of(run.pid())
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
            .then_some(())
    });
    run.signal(Signal::SIGTERM);
    let status = run.wait_timeout(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status}");
    strace.wait().unwrap();
    let text = fs::read_to_string(&trace).unwrap();
    let _ = fs::remove_file(&trace);
    // "PID close(FD" in the order the calls were made; only the first close of each fd counts
    // (a number is reused only after it was closed).
    let mut order = Vec::new();
    for line in text.lines() {
        if let Some(fd) = line.split_once("close(").and_then(|(_, r)| {
            r.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u32>()
                .ok()
        }) {
            if !order.contains(&fd) {
                order.push(fd);
            }
        }
    }
    let at = |fd: &u32| order.iter().position(|f| f == fd);
    let link_closes: Vec<_> = links.iter().map(at).collect();
    let listener_closes: Vec<_> = listeners.iter().map(at).collect();
    println!(
        "FIGURE shutdown order: links {links:?} closed at {link_closes:?}, listeners {listeners:?} at {listener_closes:?} (of {} closes)",
        order.len()
    );
    // An fd not seen closed was closed by the exit itself, after every traced close.
    let last_link = link_closes
        .iter()
        .map(|p| p.unwrap_or(usize::MAX))
        .max()
        .unwrap();
    let first_listener = listener_closes
        .iter()
        .map(|p| p.unwrap_or(usize::MAX))
        .min()
        .unwrap();
    assert!(
        link_closes.iter().all(Option::is_some),
        "a link was not closed before exit: {text}"
    );
    assert!(
        last_link < first_listener,
        "spot-sim stopped answering before it detached: {text}"
    );
}

#[test]
fn a_second_signal_during_runs_cleanup_exits_at_once() {
    // Cleanup made slow on purpose: strace holds every close() spot-sim makes for 1 s, so the
    // four link closes alone take 4 s; a second signal must not wait for them.
    let (_node, mut run) = node_running!("second-signal", &[]);
    let mut strace = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=close",
            "-e",
            "signal=none",
            "-e",
            "inject=close:delay_enter=1000000",
            "-p",
            &run.pid().to_string(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("strace is installed (cargo xtask deps)");
    let pid = run.pid();
    poll_until(Duration::from_secs(5), "strace attached", || {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
            .then_some(())
    });
    run.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "the first signal's cleanup should still be running"
    );
    let t0 = Instant::now();
    run.signal(Signal::SIGTERM);
    let status = run.wait_timeout(Duration::from_secs(10)).expect("exits");
    let took = t0.elapsed();
    strace.wait().unwrap();
    println!(
        "FIGURE second signal: exited {status} {} ms after it",
        took.as_millis()
    );
    assert_eq!(status.code(), Some(130), "log:\n{}", run.log());
    assert!(
        run.log().contains("second signal, exiting now"),
        "{}",
        run.log()
    );
    // One close may be in flight when the signal lands (up to 1 s), then the exit; what was
    // left of the cleanup was at least three more 1 s closes (four cgroup links and the
    // tracepoints' two, less the one or two done in the first 500 ms).
    assert!(took < Duration::from_millis(2500), "{took:?}");
}
