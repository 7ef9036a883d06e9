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

/// `spot-sim run ARGS` on the node itself (its kubepods search kept to this node's cgroup
/// root), waiting until it serves `n` targets.
fn run_on_node(node: &Node, args: &[&str], n: usize) -> Proc {
    let root = node.cgroup_root_path();
    let mut all = vec!["--cgroup-root", root.to_str().unwrap()];
    all.extend_from_slice(args);
    start_run_with(&all, n, None)
}

#[test]
fn a_pod_named_is_served_in_every_container_and_restart_while_its_neighbour_and_the_node_are_not() {
    root_or_skip!();
    let node = Node::shared(Layout::Host);
    let mut target = polling_pod(&node, "default", "target", &["app", "sidecar"]);
    let neighbour = polling_pod(&node, "default", "neighbour", &["app"]);
    let mut run = run_on_node(&node, &["--pod", &target.full_name()], 1);

    reads_notice(&target, "app");
    reads_notice(&target, "sidecar");
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
    let _ = Qos::BestEffort;
}
