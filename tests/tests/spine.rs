//! The spine: a targeted process sees the simulated interruption through the redirect; its
//! neighbours do not; nothing survives spot-sim; bad input fails cleanly.

use nix::sys::signal::Signal;
use spot_sim_tests::*;

const INSTANCE_ACTION: &str = "http://169.254.169.254/latest/meta-data/spot/instance-action";

fn instance_action(cg: &Path, ns: &NetNs) -> serde_json::Value {
    let out = curl_in(cg, ns, &["-f", INSTANCE_ACTION]);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn a_targeted_process_sees_a_termination_notice_two_minutes_ahead() {
    let (node, _run) = node_running!("notice", &[]);
    let first = instance_action(&node.target, &node.target_ns);
    assert_eq!(first["action"], "terminate");
    let t = parse_time(first["time"].as_str().unwrap());
    let ahead = t.unix_timestamp()
        - SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
    assert!(
        (100..=121).contains(&ahead),
        "time should be ~2 minutes ahead, is {ahead} s"
    );
    std::thread::sleep(Duration::from_secs(1));
    let second = instance_action(&node.target, &node.target_ns);
    assert_eq!(
        first["time"], second["time"],
        "the notice time must not move"
    );
}

#[test]
fn neighbours_and_the_parent_are_not_redirected() {
    let (node, _run) = node_running!("neighbours", &[]);
    // The target works, so the redirect is in place...
    instance_action(&node.target, &node.target_ns);
    // ...and the sibling and the parent still go to the real address, which in their private
    // namespace is unreachable.
    for (cg, ns, who) in [
        (&node.sibling, &node.sibling_ns, "the sibling"),
        (&node.cg.path, &node.parent_ns, "the parent"),
    ] {
        assert_not_redirected(Some(cg), ns, who);
    }
}

#[test]
fn sigkill_leaves_no_redirect_behind() {
    let (node, mut run) = node_running!("sigkill", &[]);
    instance_action(&node.target, &node.target_ns);
    assert_eq!(
        attached_programs(&node.target).len(),
        4,
        "connect4/6 + getpeername4/6 attached"
    );
    run.signal(Signal::SIGKILL);
    run.wait_timeout(Duration::from_secs(5))
        .expect("spot-sim died");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !attached_programs(&node.target).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(attached_programs(&node.target), Vec::<String>::new());
    // The target's namespace still exists (its sleeper lives); spot-sim's listener there is
    // gone, so a redirect left behind would be refused rather than unreachable.
    assert_not_redirected(
        Some(&node.target),
        &node.target_ns,
        "the target after SIGKILL",
    );
}

#[test]
fn sigterm_detaches_and_exits_cleanly() {
    let (node, mut run) = node_running!("sigterm", &[]);
    run.signal(Signal::SIGTERM);
    let status = run.wait_timeout(Duration::from_secs(5)).expect("exited");
    assert!(status.success(), "exit status {status}");
    assert!(attached_programs(&node.target).is_empty());
}

fn exec_cgroups_of(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    let prefix = format!("spot-sim-exec-{pid}-");
    for dir in [cgroup2_mount()] {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&prefix) {
                found.push(n);
            }
        }
    }
    found
}

#[test]
fn exec_returns_the_command_status_and_leaves_no_cgroup() {
    root_or_skip!();
    let mut p = spawn_logged(&mut exec_sh("exit 7"));
    let status = p
        .wait_timeout(Duration::from_secs(20))
        .expect("exec finished");
    assert_eq!(status.code(), Some(7), "log:\n{}", p.log());
    assert_eq!(exec_cgroups_of(p.pid()), Vec::<String>::new());
}

#[test]
fn exec_with_a_private_netns_shows_the_notice_to_curl_and_logs_the_ebpf_side() {
    root_or_skip!();
    let curl = ["--", "curl", "-sS", "--max-time", "5", INSTANCE_ACTION];
    let (body, log) = debug_run(&mut exec_new(&curl), "exec");
    assert!(
        body.starts_with("{\"action\": \"terminate\", \"time\": \""),
        "body: {body}"
    );
    // Written by aya-log in the getpeername4 program (curl asks for its peer), read back
    // through aya-log's ring buffer.
    assert!(
        log.contains("getpeername: IMDS peer restored for target "),
        "no eBPF log record:\n{log}"
    );
}

/// Runs spot-sim, expecting failure: returns (exit code, stderr).
fn fails(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "should fail; stderr:\n{err}");
    assert!(!err.contains("panicked"), "panicked:\n{err}");
    let lines: Vec<_> = err
        .lines()
        .filter(|l| l.starts_with("spot-sim:") || l.starts_with("error:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{err}");
    (out.status.code().unwrap_or(-1), err)
}

#[test]
fn bad_input_gets_one_clear_line_and_leaves_nothing() {
    root_or_skip!();
    let bin = spot_sim_bin();
    // A cgroup that does not exist.
    let (code, err) =
        fails(Command::new(&bin).args(["run", "--cgroup", "/no/such/cgroup-spot-sim-test"]));
    assert_ne!(code, 0);
    assert!(
        err.contains("does not exist") && err.contains("cgroup v2 mount"),
        "{err}"
    );
    // A directory that is not a cgroup v2 directory.
    let (_, err) = fails(Command::new(&bin).args(["run", "--cgroup", "/tmp"]));
    assert!(err.contains("is not a cgroup v2 directory"), "{err}");
    // A command that does not exist: nothing created.
    let mut p = spawn_logged(Command::new(&bin).args([
        "exec",
        "--netns",
        "new",
        "--",
        "no-such-command-spot-sim",
    ]));
    let status = p.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(!status.success());
    assert!(
        p.log()
            .contains("command not found: no-such-command-spot-sim"),
        "{}",
        p.log()
    );
    assert_eq!(exec_cgroups_of(p.pid()), Vec::<String>::new());
    // Nothing to target.
    let (_, err) = fails(Command::new(&bin).args(["run"]));
    assert!(err.contains("--cgroup"), "{err}");
}

#[test]
fn a_taken_responder_port_is_reported_and_nothing_is_left() {
    root_or_skip!();
    let node = node("port");
    // The workload already listens on the port inside its namespace: spot-sim serves this
    // target on another port (the redirect carries each target's own), and says so.
    let taken = node
        .target_ns
        .run(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut run = start_run(&node, &["--port", &port]);
    assert!(
        run.log().contains(&format!(
            "port {port} is already in use in its network namespace"
        )),
        "{}",
        run.log()
    );
    instance_action(&node.target, &node.target_ns);
    run.signal(Signal::SIGTERM);
    let status = run.wait_timeout(Duration::from_secs(5)).expect("exited");
    assert!(status.success(), "exit status {status}");
    assert!(attached_programs(&node.target).is_empty());
    let control = run.control.take().unwrap();
    assert!(!control.exists());
}

#[test]
fn without_root_it_says_so() {
    root_or_skip!();
    let (_, err) = fails(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(spot_sim_bin())
            .args(["exec", "--netns", "new", "--", "true"]),
    );
    assert!(err.contains("needs root"), "{err}");
}

#[test]
fn without_cgroup_v2_it_says_so() {
    root_or_skip!();
    // A private mount namespace where the cgroup v2 mount is gone; the host is untouched.
    let prep = format!("umount -l {}", cgroup2_mount().display());
    let (_, err) = fails(&mut with_private_mounts(&prep, "exec --netns new -- true"));
    assert!(err.contains("no cgroup v2 filesystem is mounted"), "{err}");
}

#[test]
fn exec_forwards_sigterm_to_the_command_and_exits_with_its_status() {
    root_or_skip!();
    let mut p = spawn_logged(&mut exec_sh(
        "trap 'exit 42' TERM; echo ready >&2; sleep 30 & wait",
    ));
    p.wait_for_log("ready", Duration::from_secs(20));
    p.signal(Signal::SIGTERM);
    let status = p.wait_timeout(Duration::from_secs(10)).expect("exec ended");
    assert_eq!(status.code(), Some(42), "log:\n{}", p.log());
    assert_eq!(exec_cgroups_of(p.pid()), Vec::<String>::new());
}
