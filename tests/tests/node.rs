//! Pods on a real node: a private containerd with runc and CNI `loopback`, pods made through
//! CRI the way kubelet makes them (spot-sim-testnode), images built on this machine. spot-sim
//! runs on the node (`run --pod`, `--pod-uid`, `--list-pods`, `--follow`, `--experiment`,
//! `--on-interrupt kill`) and as a pod of its own image (the debug pod of `kubectl debug
//! --profile=sysadmin`, and deploy/daemonset.yaml's and deploy/pod.yaml's pod specs, read from
//! the files). Every pod's network namespace holds only `lo`, and so does the node's (where
//! hostNetwork pods run): a missed redirect fails with ENETUNREACH, decided by errno.
//!
//! The tests of this file share one node per layout (started by the first, stopped with the
//! last); every pod has a name and uid of its own.

use std::sync::Arc;

use spot_sim_testnode::{ContainerSpec, Layout, Node, Pod, PodSpec, Qos};
use spot_sim_tests::*;

/// An IMDS poll from a container: busybox's `nc` with a hand-made HTTP/1.0 request (the
/// static busybox's `wget` crashes in glibc's resolver, even for a numeric address).
const POLL: &str = r"printf 'GET /latest/meta-data/spot/instance-action HTTP/1.0\r\nHost: 169.254.169.254\r\n\r\n' | nc -w 2 169.254.169.254 80 2>&1";

/// A container that polls the notice every half second and writes each answer to its log.
fn poller(name: &str) -> ContainerSpec {
    ContainerSpec::sh(name, &format!("while :; do {POLL}; echo; sleep 0.5; done"))
}

/// A pod of pollers with a unique name in `namespace`.
fn polling_pod(node: &Arc<Node>, namespace: &str, tag: &str, containers: &[&str]) -> Pod {
    let spec = PodSpec::new(
        namespace,
        &unique(tag),
        containers.iter().map(|c| poller(c)).collect(),
    );
    node.run_pod(spec).unwrap()
}

/// Waits until the container's log shows the interruption notice.
fn reads_notice(pod: &Pod, container: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pod.log(container).contains(r#""action""#) {
        assert!(
            Instant::now() < deadline,
            "{} {container} did not read the notice within 30 s; its log:\n{}",
            pod.full_name(),
            pod.log(container)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Connects to the IMDS address from the container's cgroup and the pod's network namespace,
/// and asserts by errno that nothing redirects it (ENETUNREACH: the pod has only `lo`).
fn not_redirected(pod: &Pod, container: &str) {
    let ns = NetNs::open(&pod.netns_path().unwrap()).unwrap();
    assert_not_redirected(
        Some(&pod.container_cgroup(container)),
        &ns,
        &format!("{} {container}", pod.full_name()),
    );
}

/// `spot-sim run ARGS` on the node itself (in the node's mount namespace, so on the unified
/// layout it sees /sys/fs/cgroup as the cgroup2 mount; its kubepods search kept to this node's
/// cgroup root), with a control socket of its own.
fn spawn_on_node(node: &Node, args: &[&str]) -> Proc {
    let control = control_path("node");
    let bin = spot_sim_bin();
    let mut cmd = Command::new("nsenter");
    cmd.arg("-t")
        .arg(node.containerd_pid().to_string())
        .args(["-m", "--"])
        .arg(&bin)
        .args(["run", "--control", control.to_str().unwrap()]);
    // The cgroup root as the node's mount namespace names it.
    let mount = match node.layout {
        Layout::Host => cgroup2_mount(),
        Layout::Unified => PathBuf::from("/sys/fs/cgroup"),
    };
    cmd.arg("--cgroup-root")
        .arg(mount.join(node.cgroup_root.trim_start_matches('/')))
        .args(args);
    let mut p = spawn_logged(&mut cmd);
    p.control = Some(control);
    p
}

/// [`spawn_on_node`], waiting until it serves `n` targets.
fn run_on_node(node: &Node, args: &[&str], n: usize) -> Proc {
    let mut p = spawn_on_node(node, args);
    p.wait_for_log(&format!("serving {n} target"), Duration::from_secs(30));
    p
}

#[test]
fn a_pod_named_is_served_in_every_container_and_restart_while_its_neighbour_and_the_node_are_not() {
    root_or_skip!();
    pod_named_neighbour_node_restart(Layout::Host);
}

/// The same on a cgroup v2 only node (/sys/fs/cgroup is the cgroup2 mount).
#[test]
fn on_a_cgroup_v2_only_node_a_pod_named_is_served_and_its_neighbour_and_the_node_are_not() {
    root_or_skip!();
    pod_named_neighbour_node_restart(Layout::Unified);
}

fn pod_named_neighbour_node_restart(layout: Layout) {
    let node = Node::shared(layout);
    let mut target = polling_pod(&node, "default", "target", &["app", "sidecar"]);
    let neighbour = polling_pod(&node, "default", "neighbour", &["app"]);
    let mut run = run_on_node(&node, &["--pod", &target.full_name()], 1);

    reads_notice(&target, "app");
    reads_notice(&target, "sidecar");
    if layout == Layout::Unified {
        // spot-sim saw the node as a cgroup v2 only node does: the tree at /sys/fs/cgroup.
        let at = format!("/sys/fs/cgroup{}/kubepods/", node.cgroup_root);
        assert!(run.log().contains(&at), "{}", run.log());
    }
    not_redirected(&neighbour, "app");
    let node_ns = NetNs::open(&node.netns_path()).unwrap();
    assert_not_redirected(None, &node_ns, "the node's own process");

    // kubelet restarts a container as a new one in the same sandbox: still served.
    let old = target.container_id("app");
    let new = target.restart("app").unwrap();
    assert_ne!(old, new);
    assert!(target.log_path("app").ends_with("app/1.log"));
    reads_notice(&target, "app");

    let progs = attached_programs(&target.cgroup());
    assert!(
        !progs.is_empty(),
        "nothing attached to {:?}",
        target.cgroup()
    );
    run.stop();
    assert_eq!(attached_programs(&target.cgroup()), Vec::<String>::new());
    not_redirected(&target, "app");
}

/// The ids of the programs attached directly to `cgroup`.
fn attached_ids(cgroup: &Path) -> Vec<u64> {
    bpftool_json(&["cgroup", "show", cgroup.to_str().unwrap()])
        .iter()
        .map(|p| p["id"].as_u64().unwrap_or_else(|| panic!("no id: {p}")))
        .collect()
}

/// None of `ids` is attached to `cgroup` or loaded at all.
fn gone(ids: &[u64], cgroup: &Path) {
    let attached = attached_ids(cgroup);
    let loaded: Vec<u64> = loaded_prog_ids().into_iter().map(u64::from).collect();
    for id in ids {
        assert!(
            !attached.contains(id) && !loaded.contains(id),
            "program {id} is still attached to {cgroup:?} or loaded (attached: {attached:?})"
        );
    }
}

/// spot-sim's image (`cargo xtask image`, which `cargo xtask test` builds), imported into the
/// node: `None` after a loud skip (a failure under CI) when it is not there.
fn spot_sim_image(node: &Node) -> Option<String> {
    let image = std::env::var("SPOT_SIM_IMAGE").unwrap_or_else(|_| "localhost/spot-sim:dev".into());
    match node.import_image(&image) {
        Ok(i) => Some(i),
        Err(e) => {
            skip(&format!("{e}"));
            None
        }
    }
}

/// The shared node of `layout`, spot-sim's image imported into it (see [`spot_sim_image`]), and
/// a workload for spot-sim to serve: a pod of one poller, `app`. `None` after the skip.
fn image_and_workload(layout: Layout) -> Option<(Arc<Node>, String, Pod)> {
    let node = Node::shared(layout);
    let image = spot_sim_image(&node)?;
    let workload = polling_pod(&node, "default", "handler", &["app"]);
    Some((node, image, workload))
}

/// The pod `kubectl debug node/N --profile=sysadmin --image=IMAGE -- spot-sim run --pod
/// WORKLOAD` makes (kubectl's pkg/cmd/debug: `generateNodeDebugPod` puts it in the node's PID,
/// network and IPC namespaces with the node's `/` at `/host`; the sysadmin profile makes the
/// container privileged). `host_pid: false` is the same pod without the node's PID namespace.
fn debug_pod(image: &str, workload: &Pod, host_pid: bool) -> PodSpec {
    let command = ["spot-sim", "run", "--pod", &workload.full_name()].map(str::to_owned);
    let container = ContainerSpec {
        name: "debugger".into(),
        image: image.to_owned(),
        command: command.to_vec(),
        privileged: true,
        mounts: vec![spot_sim_testnode::MountSpec {
            container_path: "/host".into(),
            host_path: "/".into(),
            readonly: false,
        }],
        ..Default::default()
    };
    let mut pod = PodSpec::new("default", &unique("node-debugger"), vec![container]);
    pod.host_pid = host_pid;
    pod.host_network = true;
    pod
}

/// What every way of running spot-sim's image must do: serve the workload, and on stop
/// (kubelet's StopContainer with the pod's grace period) detach at once, leaving no program,
/// the workload back to "not redirected".
fn serves_then_detaches(spot_sim: &Pod, container: &str, workload: &Pod) {
    let log = || spot_sim.log(container);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log().contains("serving 1 target") {
        assert!(
            Instant::now() < deadline,
            "spot-sim not serving after 30 s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    reads_notice(workload, "app");
    let ids = attached_ids(&workload.cgroup());
    assert!(
        !ids.is_empty(),
        "nothing attached to the workload; spot-sim said:\n{}",
        log()
    );
    let started = Instant::now();
    spot_sim
        .stop_container(container, spot_sim.spec.grace_seconds)
        .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    gone(&ids, &workload.cgroup());
    assert_eq!(
        spot_sim
            .wait_exited(container, Duration::from_secs(5))
            .unwrap(),
        0,
        "{}",
        log()
    );
    assert!(log().contains("detached"), "{}", log());
    not_redirected(workload, "app");
}

#[test]
fn spot_sims_image_as_the_sysadmin_debug_pod_serves_a_pod_and_detaches_when_stopped() {
    root_or_skip!();
    let Some((node, image, workload)) = image_and_workload(Layout::Host) else {
        return;
    };
    let debug = node.run_pod(debug_pod(&image, &workload, true)).unwrap();
    serves_then_detaches(&debug, "debugger", &workload);
}

/// Pods named after the DaemonSet's target prefix: one test at a time on this machine, or
/// `NS/PREFIX*` would match two.
fn nth_lock() -> std::fs::File {
    static IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let f = std::fs::File::create("/run/spot-sim-test-node-nth.lock").unwrap();
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) },
        0
    );
    f
}

fn manifest(file: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file);
    spot_sim_testnode::manifest::read(&path).unwrap()
}

/// The pod spec deploy/`file` describes, named `unique(tag)`, on the node `test-node`: its
/// `IMAGE` is `image`, and `args` are the replacements made in its args.
fn manifest_pod(node: &Node, file: &str, image: &str, args: &[(&str, &str)], tag: &str) -> PodSpec {
    let fill = spot_sim_testnode::manifest::Fill {
        image,
        args,
        node_name: "test-node",
    };
    spot_sim_testnode::manifest::pod_spec(node, &manifest(file), &unique(tag), &fill).unwrap()
}

/// deploy/pod.yaml's pod spec (see [`manifest_pod`]) with `workload` as its `NAMESPACE/NAME`.
fn pod_yaml_for(node: &Node, image: &str, workload: &Pod, tag: &str) -> PodSpec {
    let target = workload.full_name();
    manifest_pod(node, "pod.yaml", image, &[("NAMESPACE/NAME", &target)], tag)
}

#[test]
fn spot_sims_image_with_the_daemonsets_pod_spec_serves_the_handler_and_detaches_when_stopped() {
    root_or_skip!();
    let node = Node::shared(Layout::Host);
    let Some(image) = spot_sim_image(&node) else {
        return;
    };
    let _lock = nth_lock();
    // Named as the DaemonSet's selector expects: `kube-system/aws-node-termination-handler-*`.
    let suffix = unique("x").replace("spot-sim-test-x-", "");
    let name = format!("aws-node-termination-handler-{suffix}");
    let workload = node
        .run_pod(PodSpec::new("kube-system", &name, vec![poller("app")]))
        .unwrap();
    let spec = manifest_pod(&node, "daemonset.yaml", &image, &[], "spot-sim");
    assert!(
        spec.host_pid,
        "the DaemonSet asks for the node's PID namespace"
    );
    assert_eq!(spec.qos, Qos::Burstable);
    let ds = node.run_pod(spec).unwrap();
    serves_then_detaches(&ds, "spot-sim", &workload);
}

#[test]
fn spot_sims_image_with_pod_yamls_spec_serves_the_pod_named_and_detaches_when_stopped() {
    root_or_skip!();
    let Some((node, image, workload)) = image_and_workload(Layout::Host) else {
        return;
    };
    let spec = pod_yaml_for(&node, &image, &workload, "spot-sim");
    let pod = node.run_pod(spec).unwrap();
    serves_then_detaches(&pod, "spot-sim", &workload);
}

/// The defect this file was written for: a privileged debug pod with the node's `/` at /host
/// and the node's network, but not its PID namespace. spot-sim cannot see the pod's processes
/// (cgroup.procs reads 0 for each), so it used to serve its own namespace, log "serving", and
/// leave the workload refused for the whole rehearsal. Now it refuses in one line naming the
/// fix and attaches nothing.
#[test]
fn without_the_nodes_pid_namespace_spot_sim_refuses_naming_host_pid_and_attaches_nothing() {
    root_or_skip!();
    let Some((node, image, workload)) = image_and_workload(Layout::Host) else {
        return;
    };
    let debug = node.run_pod(debug_pod(&image, &workload, false)).unwrap();
    let code = debug.wait_exited("debugger", Duration::from_secs(30));
    let log = debug.log("debugger");
    let code = code.unwrap_or_else(|e| panic!("{e}; spot-sim said:\n{log}"));
    assert_ne!(code, 0, "{log}");
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("hostPID: true"))
        .collect();
    assert_eq!(refusals.len(), 1, "one line naming the fix:\n{log}");
    assert!(
        refusals[0].contains("outside spot-sim's PID namespace"),
        "{log}"
    );
    assert!(!log.contains("serving"), "{log}");
    assert!(attached_ids(&workload.cgroup()).is_empty());
    not_redirected(&workload, "app");
}

/// A pod of pollers with the QoS class `qos` (requests and limits as kubelet would set them).
fn pod_of_class(node: &Arc<Node>, tag: &str, qos: Qos, host_network: bool) -> Pod {
    let mut app = poller("app");
    if qos != Qos::BestEffort {
        app.cpu_request_milli = 100;
    }
    if qos == Qos::Guaranteed {
        app.memory_limit = 64 << 20;
    }
    let mut spec = PodSpec::new("default", &unique(tag), vec![app]);
    spec.qos = qos;
    spec.host_network = host_network;
    node.run_pod(spec).unwrap()
}

#[test]
fn by_uid_a_burstable_pod_and_by_name_a_host_network_pod_are_served_and_list_pods_shows_them() {
    root_or_skip!();
    let node = Node::shared(Layout::Host);
    let burstable = pod_of_class(&node, "burstable", Qos::Burstable, false);
    let host_net = pod_of_class(&node, "hostnet", Qos::Guaranteed, true);

    let root = node.cgroup_root_path();
    let listed = output_ok(
        Command::new(spot_sim_bin())
            .args(["run", "--list-pods", "--cgroup-root"])
            .arg(&root),
    );
    let table = stdout(&listed);
    for (pod, class) in [(&burstable, "Burstable"), (&host_net, "Guaranteed")] {
        let row = table
            .lines()
            .find(|l| l.contains(&pod.spec.name))
            .unwrap_or_else(|| panic!("{} not listed:\n{table}", pod.spec.name));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "default",
                pod.spec.name.as_str(),
                pod.spec.uid.as_str(),
                class,
                pod.cgroup().to_str().unwrap()
            ],
            "{table}"
        );
    }

    let run = run_on_node(
        &node,
        &[
            "--pod-uid",
            &burstable.spec.uid,
            "--pod",
            &host_net.full_name(),
        ],
        2,
    );
    reads_notice(&burstable, "app");
    // A hostNetwork pod's connects come from the node's namespace: served there.
    reads_notice(&host_net, "app");
    assert!(
        run.log().contains(&format!(
            "net:[{}]",
            std::fs::metadata(node.netns_path()).unwrap().ino()
        )),
        "{}",
        run.log()
    );
    let node_ns = NetNs::open(&node.netns_path()).unwrap();
    assert_not_redirected(
        None,
        &node_ns,
        "the node's own process beside a hostNetwork pod",
    );
}

#[test]
fn with_follow_a_pod_deleted_and_recreated_under_its_name_is_targeted_again() {
    root_or_skip!();
    let node = Node::shared(Layout::Host);
    let name = unique("follow");
    let first = node
        .run_pod(PodSpec::new("default", &name, vec![poller("app")]))
        .unwrap();
    let mut run = run_on_node(&node, &["--pod", &format!("default/{name}"), "--follow"], 1);
    reads_notice(&first, "app");
    first.delete().unwrap();

    let second = node
        .run_pod(PodSpec::new("default", &name, vec![poller("app")]))
        .unwrap();
    run.wait_for_log("following it (--follow)", Duration::from_secs(20));
    reads_notice(&second, "app");
    assert!(!attached_ids(&second.cgroup()).is_empty());
}

#[test]
fn an_experiment_serves_this_nodes_matching_pods_from_start_at_and_not_the_others() {
    root_or_skip!();
    let node = Node::shared(Layout::Host);
    let namespace = unique("gd");
    let checkout = polling_pod(&node, &namespace, "checkout", &["app"]);
    let cart = polling_pod(&node, &namespace, "cart", &["app"]);
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 4;
    let start_at = time::OffsetDateTime::from_unix_timestamp(start as i64)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let file = OwnedPath::file(
        "experiment",
        "toml",
        &format!(
            "[experiment]\nname = \"{namespace}\"\nnodes = [\"test-node\"]\nstart-at = \"{start_at}\"\npods = [\"{namespace}/spot-sim-test-checkout-*\"]\n\n[scenario]\ninterruption-in = \"60s\"\n"
        ),
    )
    .unwrap();
    let args = [
        "--experiment",
        file.to_str().unwrap(),
        "--node-name",
        "test-node",
    ];
    let mut run = spawn_on_node(&node, &args);
    run.wait_for_log(
        &format!("targeting pod {}", checkout.full_name()),
        Duration::from_secs(20),
    );
    reads_notice(&checkout, "app");
    assert!(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            >= start,
        "read before start-at"
    );
    not_redirected(&cart, "app");
}

#[test]
fn on_interrupt_kill_kills_the_pods_processes_and_containerd_sees_them_exit() {
    root_or_skip!();
    let node = Node::shared(Layout::Host);
    let pod = polling_pod(&node, "default", "doomed", &["app", "sidecar"]);
    let _run = run_on_node(
        &node,
        &[
            "--pod",
            &pod.full_name(),
            "--interruption-in",
            "3s",
            "--on-interrupt",
            "kill",
        ],
        1,
    );
    reads_notice(&pod, "app");
    for c in ["app", "sidecar"] {
        let code = pod.wait_exited(c, Duration::from_secs(20)).unwrap();
        assert_eq!(code, 128 + libc::SIGKILL, "{c} was killed");
    }
}

#[test]
fn a_pod_gone_before_attach_is_refused_in_one_line_and_one_gone_during_it_leaves_nothing() {
    root_or_skip!();
    let node = Node::shared(Layout::Host);
    // Gone between discovery and attach, deterministically: the sandbox removed, kubelet's
    // log folder still naming the pod.
    let mut gone_pod = polling_pod(&node, "default", "gone", &["app"]);
    let cgroup = gone_pod.cgroup();
    gone_pod.remove_sandbox().unwrap();
    let out = spawn_on_node(&node, &["--pod", &gone_pod.full_name()]);
    let (code, errors) = exit_and_errors(out);
    assert_ne!(code, 0);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("not running on this node anymore"),
        "{errors:?}"
    );
    assert!(!cgroup.exists());

    // Gone while spot-sim starts: whichever comes first, one line and nothing left.
    let racing = polling_pod(&node, "default", "racing", &["app"]);
    let cgroup = racing.cgroup();
    let mut run = spawn_on_node(&node, &["--pod", &racing.full_name()]);
    racing.delete().unwrap();
    let said = run
        .wait_for("is gone", Duration::from_secs(20))
        .map(|_| run.log());
    match said {
        Ok(log) => assert!(log.contains("serving 1 target"), "{log}"),
        Err(_) => {
            let (code, errors) = exit_and_errors(run);
            assert_ne!(code, 0);
            assert_eq!(errors.len(), 1, "{errors:?}");
        }
    }
    assert!(!cgroup.exists());
}

/// Waits for a spot-sim that should exit; its status and its `spot-sim:` error lines.
fn exit_and_errors(mut p: Proc) -> (i32, Vec<String>) {
    let status = p
        .wait_timeout(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("spot-sim did not exit:\n{}", p.log()));
    // Its last lines may still be on their way through the pipe.
    std::thread::sleep(Duration::from_millis(200));
    let errors = p
        .log()
        .lines()
        .filter(|l| l.starts_with("spot-sim:"))
        .map(str::to_owned)
        .collect();
    (status.code().unwrap_or(-1), errors)
}

#[test]
fn a_container_that_exits_while_spot_sim_opens_its_listener_is_served_when_restarted() {
    root_or_skip!();
    let node = Node::shared(Layout::Host);
    // One poll, then exit: kubelet would restart it over and over (CrashLoopBackOff).
    let once = ContainerSpec::sh("app", &format!("{POLL}; echo; exit 3"));
    let mut pod = node
        .run_pod(PodSpec::new("default", &unique("crashing"), vec![once]))
        .unwrap();
    let run = run_on_node(&node, &["--pod", &pod.full_name()], 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pod.log("app").contains(r#""action""#) {
        assert!(Instant::now() < deadline, "never served:\n{}", run.log());
        let _ = pod.wait_exited("app", Duration::from_secs(10));
        pod.restart("app").unwrap();
    }
    assert!(!run.log().contains("WARN"), "{}", run.log());
}

/// Two spot-sim pods on one node for the same pod: the second refuses in one line, naming
/// the first; the first keeps serving, and a runtime's SIGKILL of it leaves no program.
#[test]
fn a_second_spot_sim_pod_for_the_same_pod_refuses_and_a_sigkilled_one_leaves_nothing() {
    root_or_skip!();
    let Some((node, image, workload)) = image_and_workload(Layout::Host) else {
        return;
    };
    let spec = |tag| pod_yaml_for(&node, &image, &workload, tag);
    let first = node.run_pod(spec("first")).unwrap();
    poll_until(Duration::from_secs(30), "the first serving", || {
        first
            .log("spot-sim")
            .contains("serving 1 target")
            .then_some(())
    });
    reads_notice(&workload, "app");
    let ids = attached_ids(&workload.cgroup());

    let second = node.run_pod(spec("second")).unwrap();
    let code = second
        .wait_exited("spot-sim", Duration::from_secs(30))
        .unwrap();
    let log = second.log("spot-sim");
    assert_ne!(code, 0, "{log}");
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("already redirected"))
        .collect();
    assert_eq!(refusals.len(), 1, "{log}");
    assert_eq!(
        attached_ids(&workload.cgroup()),
        ids,
        "the first's programs, only"
    );

    // The runtime's SIGKILL (StopContainer with no grace): the kernel drops the links.
    first.stop_container("spot-sim", 0).unwrap();
    first
        .wait_exited("spot-sim", Duration::from_secs(10))
        .unwrap();
    gone(&ids, &workload.cgroup());
    not_redirected(&workload, "app");
}

/// The debug pod on a cgroup v2 only node, in a cgroup namespace of its own: its
/// /sys/fs/cgroup shows only its own cgroup, and spot-sim finds the node's tree under /host.
#[test]
fn on_a_cgroup_v2_only_node_the_debug_pod_in_its_own_cgroup_namespace_serves_and_detaches() {
    root_or_skip!();
    let Some((node, image, workload)) = image_and_workload(Layout::Unified) else {
        return;
    };
    let mut spec = debug_pod(&image, &workload, true);
    spec.runtime_handler = spot_sim_testnode::CGROUPNS_HANDLER.into();
    let debug = node.run_pod(spec).unwrap();
    let pid = debug.pid("debugger").unwrap();
    let own = std::fs::read_link(format!("/proc/{pid}/ns/cgroup")).unwrap();
    let init = std::fs::read_link("/proc/self/ns/cgroup").unwrap();
    assert_ne!(own, init, "the debug pod has a cgroup namespace of its own");
    serves_then_detaches(&debug, "debugger", &workload);
    // It found the node's whole tree under /host, not its own namespace's view.
    let at = format!("/host/sys/fs/cgroup{}/kubepods/", node.cgroup_root);
    assert!(
        debug.log("debugger").contains(&at),
        "{}",
        debug.log("debugger")
    );
}

/// A target that fills after spot-sim started, with processes spot-sim cannot see (spot-sim in
/// a PID namespace of its own, as in a pod without `hostPID`): the kernel redirects their
/// connects, nothing answers them (ECONNREFUSED: redirected, not served), spot-sim says so
/// once naming `hostPID: true`, and its verdict says "not served", never that the handler
/// made no request.
#[test]
fn processes_spot_sim_cannot_see_are_not_served_and_the_verdict_does_not_blame_the_handler() {
    root_or_skip!();
    let cg = TestCgroup::new("hidden").unwrap();
    let ns = NetNs::new_private().unwrap();
    let control = control_path("hidden");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child=SIGTERM",
        "--",
    ])
    .arg(spot_sim_bin())
    .args(["run", "--control", control.to_str().unwrap(), "--cgroup"])
    .arg(&cg.path);
    let mut p = spawn_logged(&mut cmd);
    p.control = Some(control);
    p.wait_for_log("serving 1 target", Duration::from_secs(20));

    let got = imds_connects(Some(&cg.path), &ns);
    // IPv4 and the IPv4-mapped form redirected and refused (nothing serves them); native
    // IPv6 left alone (the IPv6 endpoint is off), unreachable in the private namespace.
    assert_eq!(
        got,
        ["ECONNREFUSED", "ENETUNREACH", "ECONNREFUSED"],
        "redirected, and not served"
    );
    p.wait_for_log(
        "not served: cannot see the processes",
        Duration::from_secs(10),
    );
    let warnings: Vec<String> = p
        .log()
        .lines()
        .filter(|l| l.contains("hostPID: true"))
        .map(str::to_owned)
        .collect();
    assert_eq!(warnings.len(), 1, "said once:\n{}", p.log());

    // spot-sim is PID 1 of its namespace: its pid here is unshare's child.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", p.pid())).unwrap();
    let spot_sim: i32 = children.trim().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(spot_sim),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    p.wait_timeout(Duration::from_secs(20))
        .expect("spot-sim exits on SIGTERM");
    std::thread::sleep(Duration::from_millis(200));
    let log = p.log();
    assert!(
        log.contains("not served: the kernel redirected the handler's IMDS connects"),
        "{log}"
    );
    assert!(!log.contains("not asked"), "{log}");
}
