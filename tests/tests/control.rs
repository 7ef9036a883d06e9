//! Driving a running spot-sim: `status` shows the timeline, `trigger` starts a manual one,
//! `--on-interrupt kill` ends the target's processes, and `serve` runs without eBPF.

use spot_sim_tests::*;

const ACTION: &str = "http://169.254.169.254/latest/meta-data/spot/instance-action";

fn spot_sim(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(spot_sim_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn http_code(node: &Node, url: &str) -> String {
    let out = curl_in(
        &node.target,
        &node.target_ns,
        &["-o", "/dev/null", "-w", "%{http_code}", url],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_manual_scenario_waits_for_trigger_and_status_shows_it() {
    let (node, run) = node_running!("manual", &["--manual"]);
    let control = run.control.as_ref().unwrap().to_str().unwrap().to_string();
    assert_eq!(
        http_code(&node, ACTION),
        "404",
        "no notice before the trigger"
    );

    let (ok, out, err) = spot_sim(&["status", "--json", "--control", &control]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let target = &v[0]["targets"][0];
    assert_eq!(target["timeline"]["phase"], "waiting", "{target}");
    assert_eq!(target["timeline"]["waiting_for_trigger"], true, "{target}");

    let (ok, out, err) = spot_sim(&["trigger", "--control", &control]);
    assert!(ok, "{err}");
    assert!(out.contains("triggered"), "{out}");
    assert_eq!(http_code(&node, ACTION), "200");

    let (ok, out, err) = spot_sim(&["status", "--control", &control]);
    assert!(ok, "{err}");
    assert!(out.contains(" redirects, "), "{out}");
    assert!(out.to_lowercase().contains("notice"), "{out}");
    // A second trigger is refused: a timeline starts once.
    let (ok, _, err) = spot_sim(&["trigger", "--control", &control]);
    assert!(!ok);
    assert!(err.contains("already started"), "{err}");
}

#[test]
fn on_interrupt_kill_ends_the_targets_processes() {
    root_or_skip!();
    let node = node("kill");
    let mut victim = sleeper_in(&node.target, &node.target_ns);
    let mut bystander = sleeper_in(&node.sibling, &node.sibling_ns);
    let _run = start_run(
        &node,
        &["--interruption-in", "1s", "--on-interrupt", "kill"],
    );
    let status = victim
        .wait_timeout(Duration::from_secs(6))
        .expect("the target's process was killed at the interruption");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "{status}"
    );
    // The process in the sibling cgroup lives on, still in its cgroup.
    assert!(
        bystander.child.try_wait().unwrap().is_none(),
        "the sibling's process was killed too"
    );
    let procs = std::fs::read_to_string(node.sibling.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == bystander.pid().to_string()),
        "the sibling's process left its cgroup: {procs:?}"
    );
}

#[test]
fn status_without_a_running_instance_says_how_to_start_one() {
    let (ok, _, err) = spot_sim(&[
        "status",
        "--control",
        "/run/spot-sim/none-such-spot-sim-test.sock",
    ]);
    assert!(!ok);
    assert!(err.contains("cannot reach spot-sim"), "{err}");
}

#[test]
fn serve_answers_without_ebpf_on_its_listen_address() {
    // serve needs no root; it listens on loopback only.
    let listen = format!("127.0.0.1:{}", free_port());
    let mut serve = spawn_spot_sim(&["serve", "--listen", &listen]);
    let url = format!("http://{listen}/latest/meta-data/spot/instance-action");
    let body = first_answer(&mut serve, &url);
    assert!(
        body.starts_with("{\"action\": \"terminate\""),
        "{body}\n{}",
        serve.log()
    );
    serve.signal(nix::sys::signal::Signal::SIGINT);
    let status = serve
        .wait_timeout(Duration::from_secs(5))
        .expect("serve exits on SIGINT");
    assert!(status.success(), "serve exited {status}:\n{}", serve.log());
}
