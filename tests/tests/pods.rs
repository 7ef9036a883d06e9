//! Per-pod targeting on a fake Kubernetes node: kubelet's log folders in a temporary host root,
//! and real cgroups named the way kubelet and the runtimes name them (both cgroup drivers, every
//! QoS class, containerd and CRI-O) in a test-owned subtree, each pod with a process in its own
//! private network namespace. The pod named on the command line sees the notice; its
//! neighbours do not; restarts, per-pod scenarios, runtime add/remove and deleted pods behave
//! as someone rehearsing on one pod expects.

use spot_sim::targets::PodSelector;
use spot_sim_tests::*;

const INSTANCE_ACTION: &str = "http://169.254.169.254/latest/meta-data/spot/instance-action";
const INSTANCE_ID: &str = "http://169.254.169.254/latest/meta-data/instance-id";

/// The kubelet cgroup driver that named a pod's cgroup.
#[derive(Clone, Copy, Debug)]
enum Driver {
    Systemd,
    Cgroupfs,
}

#[derive(Clone, Copy, Debug)]
enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// The container runtime that named the container cgroups.
#[derive(Clone, Copy, Debug)]
enum Runtime {
    Containerd,
    Crio,
}

use Driver::*;
use Qos::*;
use Runtime::*;

/// How kubelet and the runtime lay out one pod's cgroups.
#[derive(Clone, Copy, Debug)]
struct Shape {
    driver: Driver,
    qos: Qos,
    runtime: Runtime,
}

const fn shape(driver: Driver, qos: Qos, runtime: Runtime) -> Shape {
    Shape {
        driver,
        qos,
        runtime,
    }
}

impl Shape {
    /// The pod cgroup below the kubepods hierarchy's parent, as kubelet names it.
    fn pod_cgroup(self, uid: &str) -> String {
        let u = uid.replace('-', "_");
        match (self.driver, self.qos) {
            (Systemd, Guaranteed) => format!("kubepods.slice/kubepods-pod{u}.slice"),
            (Systemd, Burstable) => {
                format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice")
            }
            (Systemd, BestEffort) => {
                format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice")
            }
            (Cgroupfs, Guaranteed) => format!("kubepods/pod{uid}"),
            (Cgroupfs, Burstable) => format!("kubepods/burstable/pod{uid}"),
            (Cgroupfs, BestEffort) => format!("kubepods/besteffort/pod{uid}"),
        }
    }

    /// A container cgroup below the pod's, as the runtime names it.
    fn container(self, id: &str) -> String {
        match (self.driver, self.runtime) {
            (Systemd, Containerd) => format!("cri-containerd-{id}.scope"),
            (Systemd, Crio) => format!("crio-{id}.scope"),
            (Cgroupfs, Containerd) => id.to_owned(),
            (Cgroupfs, Crio) => format!("crio-{id}"),
        }
    }

    fn qos_name(self) -> &'static str {
        match self.qos {
            Guaranteed => "Guaranteed",
            Burstable => "Burstable",
            BestEffort => "BestEffort",
        }
    }
}

/// A fresh pod uid (what the API server writes in metadata.uid).
fn pod_uid() -> String {
    let (pid, n, nanos) = fresh_numbers();
    format!(
        "{pid:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n & 0xffff,
        (n >> 16) & 0xfff,
        nanos & 0xfff,
        nanos >> 12 & 0xffff_ffff_ffff
    )
}

/// A fresh 64-hex-digit container id.
fn container_id() -> String {
    let (a, b, c) = fresh_numbers();
    format!("{a:016x}{b:016x}{c:016x}{:016x}", a ^ c)
}

fn fresh_numbers() -> (u64, u64, u64) {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (
        u64::from(std::process::id()),
        u64::from(N.fetch_add(1, Ordering::Relaxed)),
        nanos,
    )
}

/// A fake Kubernetes node: a host root holding `var/log/pods`, and a test-owned cgroup subtree
/// (what `--cgroup-root` points at) holding the kubepods hierarchies of both drivers.
struct FakeNode {
    cgroups: TestCgroup,
    root: OwnedPath,
}

/// A running pod: its cgroup, the cgroup of its (first) container, and the network namespace
/// its containers share, with a process idling in the container.
struct FakePod {
    full_name: String,
    uid: String,
    shape: Shape,
    cgroup: PathBuf,
    container: PathBuf,
    netns: NetNs,
    sleeper: Option<Proc>,
}

/// The first line of a root-only test on a [`FakeNode`]: skips when not root.
macro_rules! fake_node {
    ($tag:expr) => {{
        root_or_skip!();
        FakeNode::new($tag)
    }};
}

impl FakeNode {
    fn new(tag: &str) -> FakeNode {
        let root = OwnedPath::scratch_dir(tag).unwrap();
        fs::create_dir_all(root.join("var/log/pods")).unwrap();
        FakeNode {
            cgroups: TestCgroup::new(tag).unwrap(),
            root,
        }
    }

    fn host_root(&self) -> &str {
        self.root.to_str().unwrap()
    }

    fn cgroup_root(&self) -> &str {
        self.cgroups.path.to_str().unwrap()
    }

    /// kubelet's log folder for a pod (with one container's folder inside, as kubelet makes it).
    fn pod_logs(&self, namespace: &str, name: &str, uid: &str) {
        let dir = self
            .root
            .join(format!("var/log/pods/{namespace}_{name}_{uid}/app"));
        fs::create_dir_all(dir).unwrap();
    }

    /// The pod's cgroup and one container cgroup in it, with no process yet.
    fn pod_cgroups(&self, shape: Shape, uid: &str) -> (PathBuf, PathBuf) {
        let pod = self.cgroups.child(&shape.pod_cgroup(uid)).unwrap();
        let container = pod.join(shape.container(&container_id()));
        fs::create_dir(&container).unwrap();
        (pod, container)
    }

    /// A pod with logs, cgroups, its own network namespace and a process in its container.
    /// A running pod of the most common shape: systemd driver, Burstable, containerd.
    fn pod(&self, namespace: &str, name: &str) -> FakePod {
        self.running_pod(namespace, name, shape(Systemd, Burstable, Containerd))
    }

    /// `spot-sim run ARGS` on this node, with a control socket of its own, expected to fail:
    /// its one error line, and the socket's path (to check nothing was left there).
    fn refused(&self, tag: &str, args: &[&str]) -> (String, ControlSocket) {
        let control = control_path(tag);
        (fails(&mut self.run_command(&control, args)), control)
    }

    fn running_pod(&self, namespace: &str, name: &str, shape: Shape) -> FakePod {
        let uid = pod_uid();
        self.pod_logs(namespace, name, &uid);
        let (cgroup, container) = self.pod_cgroups(shape, &uid);
        let netns = NetNs::new_private().unwrap();
        let sleeper = sleeper_in(&container, &netns);
        FakePod {
            full_name: format!("{namespace}/{name}"),
            uid,
            shape,
            cgroup,
            container,
            netns,
            sleeper: Some(sleeper),
        }
    }

    /// `spot-sim run TARGETS` pointed at this node, with its own control socket.
    fn run_command(&self, control: &Path, targets: &[&str]) -> Command {
        let mut cmd = Command::new(spot_sim_bin());
        cmd.arg("run")
            .args(targets)
            .args(["--host-root", self.host_root()])
            .args(["--cgroup-root", self.cgroup_root()])
            .arg("--control")
            .arg(control);
        cmd
    }

    /// Starts `spot-sim run TARGETS` on this node and waits until it serves them all.
    fn start(&self, targets: &[&str]) -> Proc {
        let control = control_path("pods");
        let mut run = spawn_logged(&mut self.run_command(&control, targets));
        run.control = Some(control);
        let n = targets
            .iter()
            .filter(|a| ["--pod", "--pod-uid"].contains(a))
            .count();
        run.wait_for_log(&format!("serving {n} target(s)"), Duration::from_secs(20));
        run
    }
}

impl FakePod {
    fn curl(&self, args: &[&str]) -> Output {
        curl_in(&self.container, &self.netns, args)
    }

    /// The pod's view of `url`, which must answer 200.
    fn get(&self, url: &str) -> String {
        let out = self.curl(&["-f", url]);
        assert!(
            out.status.success(),
            "{}: curl {url} failed: {}",
            self.full_name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The interruption notice the pod sees.
    fn notice(&self) -> serde_json::Value {
        let body = self.get(INSTANCE_ACTION);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    }

    fn is_not_redirected(&self) {
        not_redirected(&self.container, &self.netns, &self.full_name);
    }

    /// The container is restarted: its process ends, its cgroup goes, and a new container
    /// cgroup with a new process appears in the same pod (and the same network namespace).
    fn restart_container(&mut self) {
        drop(self.sleeper.take());
        remove_cgroup_tree(&self.container);
        assert!(!self.container.exists(), "the old container cgroup is gone");
        self.container = self.cgroup.join(self.shape.container(&container_id()));
        fs::create_dir(&self.container).unwrap();
        self.sleeper = Some(sleeper_in(&self.container, &self.netns));
    }
}

/// A client in `cgroup` and `netns` still goes to the real address, which in its private
/// namespace is unreachable (decided by errno: a leaked redirect would be refused instead).
fn not_redirected(cgroup: &Path, netns: &NetNs, who: &str) {
    assert_not_redirected(Some(cgroup), netns, who);
}

/// Runs `spot-sim ARGS` to completion: (success, stdout, stderr).
fn spot_sim(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(spot_sim_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs spot-sim expecting failure: checks the non-zero exit and the single `spot-sim:` line,
/// and returns that line without its prefix.
fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "should fail; stderr:\n{err}");
    assert_ne!(out.status.code(), Some(0));
    assert!(!err.contains("panicked"), "panicked:\n{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("spot-sim:") || l.starts_with("error:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{err}");
    lines[0].trim_start_matches("spot-sim: ").to_owned()
}

/// What a refused run must not leave behind: a control socket, or a program on a pod.
fn nothing_left(control: &Path, pods: &[&FakePod]) {
    assert!(
        !control.exists(),
        "control socket {} left behind",
        control.display()
    );
    for pod in pods {
        assert_eq!(
            attached_programs(&pod.cgroup),
            Vec::<String>::new(),
            "{}",
            pod.full_name
        );
    }
}

fn seconds_from_now(time: &serde_json::Value) -> i64 {
    let t = parse_time(time.as_str().unwrap());
    t.unix_timestamp()
        - SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
}

#[test]
fn only_the_pod_named_on_the_command_line_sees_the_notice() {
    let node = fake_node!("pod-only");
    let checkout = node.pod("shop", "checkout");
    // Same QoS slice: the two pod cgroups are siblings.
    let cart = node.pod("shop", "cart");
    let run = node.start(&["--pod", "shop/checkout"]);
    assert!(
        run.log()
            .contains("serving inside the network namespace of pid"),
        "the responder listens in the pod's namespace:\n{}",
        run.log()
    );

    let notice = checkout.notice();
    assert_eq!(notice["action"], "terminate");
    assert!((100..=121).contains(&seconds_from_now(&notice["time"])));
    // Attached at the pod level, so every container of the pod is covered.
    assert_eq!(attached_programs(&checkout.cgroup).len(), 4);
    assert_eq!(attached_programs(&checkout.container), Vec::<String>::new());

    cart.is_not_redirected();
    // Neither is a process elsewhere on the node (the subtree's root cgroup).
    let elsewhere = NetNs::new_private().unwrap();
    not_redirected(&node.cgroups.path, &elsewhere, "a process outside the pods");
}

#[test]
fn a_restarted_container_of_the_pod_is_still_redirected() {
    let node = fake_node!("pod-restart");
    let mut web = node.running_pod("shop", "web", shape(Cgroupfs, Burstable, Containerd));
    let _run = node.start(&["--pod", "shop/web"]);
    let before = web.notice();

    let old = web.container.clone();
    web.restart_container();
    assert_ne!(old, web.container);
    let after = web.notice();
    assert_eq!(
        before["time"], after["time"],
        "the pod's timeline goes on across the restart"
    );
}

#[test]
fn two_pods_with_their_own_scenario_files_see_different_answers_at_once() {
    let node = fake_node!("pod-scenarios");
    let batch = node.running_pod("jobs", "batch", shape(Cgroupfs, BestEffort, Containerd));
    let api = node.running_pod("jobs", "api", shape(Systemd, Guaranteed, Crio));
    let batch_file = node.root.join("batch.toml");
    fs::write(
        &batch_file,
        "[scenario]\naction = \"stop\"\n\n[metadata]\ninstance-id = \"i-0batchbatchbatch0\"\n",
    )
    .unwrap();
    let api_file = node.root.join("api.toml");
    fs::write(
        &api_file,
        "[scenario]\naction = \"terminate\"\ninterruption-in = \"100s\"\n\n[metadata]\ninstance-id = \"i-0apiapiapiapiap0\"\n",
    )
    .unwrap();
    let batch_arg = format!("jobs/batch={}", batch_file.display());
    let api_arg = format!("jobs/api={}", api_file.display());
    let _run = node.start(&["--pod", &batch_arg, "--pod", &api_arg]);

    let (b, a) = (batch.notice(), api.notice());
    assert_eq!(b["action"], "stop", "{b}");
    assert_eq!(a["action"], "terminate", "{a}");
    let gap = seconds_from_now(&b["time"]) - seconds_from_now(&a["time"]);
    assert!(
        (17..=23).contains(&gap),
        "2m vs 100s: the notices' times should be 20 s apart, are {gap} s ({b} / {a})"
    );
    assert_eq!(batch.get(INSTANCE_ID), "i-0batchbatchbatch0");
    assert_eq!(api.get(INSTANCE_ID), "i-0apiapiapiapiap0");
}

#[test]
fn pods_are_added_and_removed_at_runtime_without_a_restart() {
    let node = fake_node!("pod-runtime");
    let checkout = node.running_pod("shop", "checkout", shape(Systemd, Guaranteed, Containerd));
    let cart = node.running_pod("shop", "cart", shape(Cgroupfs, Guaranteed, Crio));
    let mut run = node.start(&["--pod", "shop/checkout"]);
    let control = run.control.as_ref().unwrap().to_str().unwrap().to_owned();
    checkout.notice();
    cart.is_not_redirected();

    let (ok, out, err) = spot_sim(&["target", "add", "--pod", "shop/cart", "--control", &control]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "added pod shop/cart");
    assert_eq!(cart.notice()["action"], "terminate");
    let (ok, list, err) = spot_sim(&["target", "list", "--control", &control]);
    assert!(ok, "{err}");
    let targets: Vec<(&str, &str)> = list
        .lines()
        .map(|l| {
            let mut cols = l.split('\t');
            (cols.next().unwrap(), cols.next().unwrap())
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("pod shop/checkout", checkout.cgroup.to_str().unwrap()),
            ("pod shop/cart", cart.cgroup.to_str().unwrap())
        ],
        "{list}"
    );

    // A pod that is not there is refused by the running instance, which carries on.
    let (ok, _, err) = spot_sim(&["target", "add", "--pod", "shop/cat", "--control", &control]);
    assert!(!ok);
    assert!(
        err.contains("no pod shop/cat on this node (closest: shop/cart)"),
        "{err}"
    );

    let (ok, out, err) = spot_sim(&["target", "remove", "pod shop/cart", "--control", &control]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "removed pod shop/cart");
    cart.is_not_redirected();
    assert_eq!(attached_programs(&cart.cgroup), Vec::<String>::new());
    checkout.notice();
    let (ok, list, err) = spot_sim(&["target", "list", "--control", &control]);
    assert!(ok, "{err}");
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.starts_with("pod shop/checkout\t"), "{list}");
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "still the same run"
    );
}

#[test]
fn list_pods_shows_every_pod_with_its_qos_class_and_cgroup() {
    let node = fake_node!("pod-list");
    let shapes = [
        ("guaranteed-systemd", shape(Systemd, Guaranteed, Containerd)),
        ("burstable-systemd", shape(Systemd, Burstable, Crio)),
        ("besteffort-systemd", shape(Systemd, BestEffort, Containerd)),
        ("guaranteed-cgroupfs", shape(Cgroupfs, Guaranteed, Crio)),
        ("burstable-cgroupfs", shape(Cgroupfs, Burstable, Containerd)),
        ("besteffort-cgroupfs", shape(Cgroupfs, BestEffort, Crio)),
    ];
    let mut expected = Vec::new();
    for (name, shape) in shapes {
        let uid = pod_uid();
        node.pod_logs("zoo", name, &uid);
        let (cgroup, _) = node.pod_cgroups(shape, &uid);
        expected.push((name, uid, shape.qos_name(), cgroup));
    }
    let finished_uid = pod_uid();
    node.pod_logs("zoo", "finished-job", &finished_uid);

    let (ok, out, err) = spot_sim(&[
        "run",
        "--list-pods",
        "--host-root",
        node.host_root(),
        "--cgroup-root",
        node.cgroup_root(),
    ]);
    assert!(ok, "{err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAMESPACE", "NAME", "UID", "QOS", "CGROUP"],
        "{out}"
    );
    assert_eq!(rows.len(), 1 + shapes.len() + 1, "{out}");
    for (name, uid, qos, cgroup) in &expected {
        let row = rows
            .iter()
            .find(|r| r[1] == *name)
            .unwrap_or_else(|| panic!("{name} is not listed:\n{out}"));
        assert_eq!(
            row[..],
            ["zoo", name, uid, qos, cgroup.to_str().unwrap()],
            "{out}"
        );
    }
    let finished = rows.iter().find(|r| r[1] == "finished-job").unwrap();
    assert_eq!(
        finished[..],
        ["zoo", "finished-job", &finished_uid, "-", "-"],
        "a pod with only its logs left has no QoS class and no cgroup:\n{out}"
    );
}

#[test]
fn an_unknown_pod_is_refused_with_the_closest_names() {
    let node = fake_node!("pod-unknown");
    let checkout = node.pod("shop", "checkout");
    let cart = node.pod("shop", "cart");
    let (err, control) = node.refused("pods-unknown", &["--pod", "shop/chekout"]);
    assert_eq!(
        err,
        "no pod shop/chekout on this node (closest: shop/checkout); list pods with --list-pods"
    );
    nothing_left(&control, &[&checkout, &cart]);
}

#[test]
fn a_pod_whose_cgroup_is_gone_is_refused() {
    let node = fake_node!("pod-gone");
    let checkout = node.pod("shop", "checkout");
    let uid = pod_uid();
    node.pod_logs("shop", "old-job", &uid);
    let control = control_path("pods-gone");
    // Named alongside a pod that is there: nothing at all starts.
    let err = fails(&mut node.run_command(
        &control,
        &["--pod", "shop/checkout", "--pod", "shop/old-job"],
    ));
    assert_eq!(
        err,
        format!("pod shop/old-job (uid {uid}) is not running on this node anymore: its logs are here but its cgroup is gone; list running pods with --list-pods")
    );
    nothing_left(&control, &[&checkout]);
}

#[test]
fn a_name_two_live_pods_share_is_refused_until_a_uid_is_given() {
    let node = fake_node!("pod-ambiguous");
    // The old pod is still terminating while its replacement runs.
    let [old, new] = [(); 2].map(|()| node.pod("shop", "web"));
    let (err, control) = node.refused("pods-ambiguous", &["--pod", "shop/web"]);
    assert!(
        err.starts_with("shop/web matches 2 running pods on this node ("),
        "{err}"
    );
    assert!(err.contains(&old.uid) && err.contains(&new.uid), "{err}");
    assert!(err.ends_with("pick one with --pod-uid"), "{err}");
    nothing_left(&control, &[&old, &new]);

    let _run = node.start(&["--pod-uid", &new.uid]);
    assert_eq!(new.notice()["action"], "terminate");
    old.is_not_redirected();
}

#[test]
fn a_machine_without_kubepods_is_not_a_kubernetes_node() {
    let node = fake_node!("pod-nokube");
    node.pod_logs("shop", "checkout", &pod_uid());
    let (err, control) = node.refused("pods-nokube", &["--pod", "shop/checkout"]);
    assert_eq!(
        err,
        format!(
            "no kubepods cgroup hierarchy under {}: not a Kubernetes node? use --cgroup or --host-root",
            node.cgroup_root()
        )
    );
    nothing_left(&control, &[]);
}

#[test]
fn a_cgroup_v1_only_node_is_told_to_switch_to_cgroup_v2() {
    let node = fake_node!("pod-v1");
    node.pod_logs("shop", "checkout", &pod_uid());
    // A private mount namespace without the cgroup v2 mount (the v1 controllers of a hybrid
    // host stay); the host is untouched. The unit tests in target/host.rs and target/pods.rs
    // cover the v1 layouts themselves.
    let control = control_path("pods-v1");
    let prep = format!("umount -l {}", cgroup2_mount().display());
    let args = format!(
        "run --pod shop/checkout --host-root {} --control {}",
        node.host_root(),
        control.display()
    );
    let err = fails(&mut with_private_mounts(&prep, &args));
    assert!(
        err.starts_with("this node runs cgroup v1: spot-sim needs cgroup v2"),
        "{err}"
    );
    assert!(err.contains("systemd.unified_cgroup_hierarchy=1"), "{err}");
    nothing_left(&control, &[]);
}

#[test]
fn a_deleted_pod_is_reported_gone_and_spot_sim_keeps_serving_the_others() {
    let node = fake_node!("pod-deleted");
    let mut checkout = node.pod("shop", "checkout");
    let cart = node.running_pod("shop", "cart", shape(Cgroupfs, BestEffort, Crio));
    let mut run = node.start(&["--pod", "shop/checkout", "--pod", "shop/cart"]);
    let control = run.control.as_ref().unwrap().to_str().unwrap().to_owned();
    checkout.notice();

    // kubelet deletes the pod: its processes end and its cgroup tree goes.
    drop(checkout.sleeper.take());
    remove_cgroup_tree(&checkout.cgroup);
    assert!(!checkout.cgroup.exists());
    run.wait_for_log(
        &format!(
            "pod shop/checkout: cgroup {} is gone (pod deleted?)",
            checkout.cgroup.display()
        ),
        Duration::from_secs(5),
    );

    assert!(run.child.try_wait().unwrap().is_none(), "spot-sim exited");
    let (ok, out, err) = spot_sim(&["status", "--control", &control, "--json"]);
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let exists = |name: &str| {
        status[0]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no target {name}: {out}"))["cgroup_exists"]
            .clone()
    };
    assert_eq!(exists("pod shop/checkout"), false, "{out}");
    assert_eq!(exists("pod shop/cart"), true, "{out}");
    assert_eq!(cart.notice()["action"], "terminate");
}

/// A manifest as JSON, through PyYAML (`.ci/run` installs it with pip when missing).
fn manifest(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    let script = "import json, sys, yaml\n\
                  docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
                  json.dump(docs, sys.stdout)\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("python3 is installed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named 'yaml'"),
        "PyYAML is missing: `.ci/run` installs it (python3 -m pip install pyyaml)"
    );
    assert!(
        out.status.success(),
        "{} is not valid YAML: {err}",
        path.display()
    );
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(docs.as_array().unwrap().len(), 1, "{name}: one object");
    docs[0].clone()
}

/// What a Pod spec of spot-sim needs: the node's processes, privileges, a parseable --pod,
/// and the node's pod logs and cgroup tree mounted under --host-root.
fn check_pod_spec(what: &str, spec: &serde_json::Value) {
    assert_eq!(spec["hostPID"], true, "{what}: hostPID");
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{what}");
    let c = &containers[0];
    assert!(c["name"].as_str().is_some_and(|n| !n.is_empty()), "{what}");
    assert!(c["image"].is_string(), "{what}: image");
    assert_eq!(
        c["securityContext"]["privileged"], true,
        "{what}: privileged"
    );
    let args: Vec<&str> = strs(&c["args"]);
    assert_eq!(args[0], "run", "{what}: {args:?}");
    let after = |flag: &str| {
        let i = args.iter().position(|a| *a == flag);
        i.and_then(|i| args.get(i + 1)).copied()
    };
    let pod = after("--pod").unwrap_or_else(|| panic!("{what}: no --pod in {args:?}"));
    pod.parse::<PodSelector>()
        .unwrap_or_else(|e| panic!("{what}: --pod {pod}: {e}"));
    assert_eq!(after("--host-root"), Some("/host"), "{what}");

    let volumes: Vec<&serde_json::Value> = spec["volumes"].as_array().unwrap().iter().collect();
    let host_path_of = |mount: &str| {
        let m = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == mount)
            .unwrap_or_else(|| panic!("{what}: nothing mounted at {mount}"));
        let v = volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap_or_else(|| panic!("{what}: no volume named {}", m["name"]));
        v["hostPath"]["path"].as_str().map(str::to_owned)
    };
    assert_eq!(
        host_path_of("/host/var/log/pods").as_deref(),
        Some("/var/log/pods")
    );
    assert_eq!(
        host_path_of("/host/sys/fs/cgroup").as_deref(),
        Some("/sys/fs/cgroup")
    );
    for m in c["volumeMounts"].as_array().unwrap() {
        assert!(
            volumes.iter().any(|v| v["name"] == m["name"]),
            "{what}: mount of an undeclared volume {}",
            m["name"]
        );
    }
}

#[test]
fn the_deploy_manifests_are_kubernetes_objects_that_can_target_a_pod() {
    let pod = manifest("pod.yaml");
    assert_eq!(pod["apiVersion"], "v1");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["name"], "spot-sim");
    assert!(pod["metadata"]["namespace"].is_string());
    assert!(pod["spec"]["nodeName"].is_string(), "pinned to the node");
    check_pod_spec("pod.yaml", &pod["spec"]);

    let ds = manifest("daemonset.yaml");
    assert_eq!(ds["apiVersion"], "apps/v1");
    assert_eq!(ds["kind"], "DaemonSet");
    assert_eq!(ds["metadata"]["name"], "spot-sim");
    let selector = ds["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(
            &labels[k], v,
            "the selector must match the template's labels"
        );
    }
    check_pod_spec("daemonset.yaml", &ds["spec"]["template"]["spec"]);
}

#[test]
fn a_followed_daemonset_pod_that_is_recreated_under_a_new_name_is_redirected_again() {
    let node = fake_node!("pod-follow");
    let shape = shape(Systemd, Burstable, Containerd);
    let mut old = node.running_pod("kube-system", "nth-abc12", shape);
    let mut run = node.start(&["--pod", "kube-system/nth-*", "--follow"]);
    old.notice();

    // The DaemonSet's pod is deleted (its logs stay a while, as kubelet keeps them) ...
    drop(old.sleeper.take());
    remove_cgroup_tree(&old.cgroup);
    // ... and recreated with a new name suffix, uid, cgroup and network namespace.
    let new = node.running_pod("kube-system", "nth-xyz89", shape);
    run.wait_for_log(
        "pod kube-system/nth-abc12: recreated as pod kube-system/nth-xyz89; following it",
        Duration::from_secs(10),
    );
    assert_eq!(new.notice()["action"], "terminate");
    assert_eq!(attached_programs(&new.cgroup).len(), 4);
}
