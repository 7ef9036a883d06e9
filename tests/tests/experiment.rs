//! A game day across a cluster: `experiment plan` shows which nodes an experiment file hits;
//! two fake Kubernetes nodes (kubelet log folders in a temporary host root, kubelet-shaped pod
//! cgroups in a test-owned subtree, each pod in its own private network namespace) run the same
//! file, and only the selected node's pod is interrupted, at start-at and not before. The
//! manifests validate against the Kubernetes schemas offline, and the arm64 binary is static
//! and serves under qemu-user.

use spot_sim_tests::*;

const REBALANCE: &str = "http://169.254.169.254/latest/meta-data/events/recommendations/rebalance";
const INSTANCE_ACTION: &str = "http://169.254.169.254/latest/meta-data/spot/instance-action";

fn experiment_file(dir: &ScratchDir, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, body).unwrap();
    p
}

/// `spot-sim experiment plan FILE --nodes NODES`: (node, selected, start) per line.
fn plan(file: &Path, nodes: &[String]) -> Vec<(String, bool, Option<String>)> {
    let out = Command::new(spot_sim_bin())
        .args(["experiment", "plan"])
        .arg(file)
        .arg("--nodes")
        .arg(nodes.join(","))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<(String, bool, Option<String>)> = stdout
        .lines()
        .map(|l| {
            let mut cols = l.split(' ');
            let node = cols.next().unwrap().to_string();
            let verdict = cols.next().unwrap();
            assert!(["selected", "skipped"].contains(&verdict), "{l}");
            (node, verdict == "selected", cols.next().map(str::to_string))
        })
        .collect();
    assert_eq!(
        lines.iter().map(|l| &l.0).collect::<Vec<_>>(),
        nodes.iter().collect::<Vec<_>>(),
        "one line per node, in order"
    );
    lines
}

fn selected_set(lines: &[(String, bool, Option<String>)]) -> BTreeSet<String> {
    lines.iter().filter(|l| l.1).map(|l| l.0.clone()).collect()
}

fn experiment_text(name: &str, nodes: &str, start_at: &str, extra: &str) -> String {
    format!(
        "[experiment]\nname = \"{name}\"\nnodes = {nodes}\nstart-at = \"{start_at}\"\npods = [\"shop/checkout-*\"]\n{extra}"
    )
}

#[test]
fn plan_selects_about_half_of_forty_nodes_the_same_way_twice_and_anew_after_a_rename() {
    let dir = ScratchDir::scratch_dir("plan").unwrap();
    let nodes: Vec<String> = (0..40)
        .map(|i| format!("ip-10-0-{}-{}.ec2.internal", i / 8, 10 + i))
        .collect();
    let a = experiment_file(
        &dir,
        "a.toml",
        &experiment_text("gameday-a", "\"50%\"", "2030-01-01T00:00:00Z", ""),
    );
    let first = selected_set(&plan(&a, &nodes));
    assert!(
        (12..=28).contains(&first.len()),
        "50 % of 40 nodes: {} selected",
        first.len()
    );
    assert_eq!(first, selected_set(&plan(&a, &nodes)), "the same set twice");
    let renamed = experiment_file(
        &dir,
        "b.toml",
        &experiment_text("gameday-b", "\"50%\"", "2030-01-01T00:00:00Z", ""),
    );
    let other = selected_set(&plan(&renamed, &nodes));
    assert!((12..=28).contains(&other.len()), "{}", other.len());
    assert_ne!(first, other, "renaming the experiment draws another set");

    // With stagger, each selected node gets its own start within the window, whole seconds.
    let staggered = experiment_file(
        &dir,
        "c.toml",
        &experiment_text(
            "gameday-a",
            "\"50%\"",
            "2030-01-01T00:00:00Z",
            "stagger = \"10m\"\n",
        ),
    );
    let lines = plan(&staggered, &nodes);
    assert_eq!(selected_set(&lines), first, "stagger does not change who");
    let mut starts = BTreeSet::new();
    for (node, selected, start) in &lines {
        match (selected, start) {
            (true, Some(s)) => {
                let t = parse_time(s);
                let base = parse_time("2030-01-01T00:00:00Z");
                assert!(
                    t >= base && t < base + time::Duration::minutes(10),
                    "{node} {s}"
                );
                starts.insert(s.clone());
            }
            (false, None) => {}
            other => panic!("{node}: {other:?}"),
        }
    }
    assert!(
        starts.len() > first.len() / 2,
        "starts are spread: {starts:?}"
    );
}

/// Runs spot-sim expecting a refusal: non-zero exit, one `spot-sim:` line, no panic.
fn refused(args: &[&str]) -> String {
    let out = Command::new(spot_sim_bin())
        .args(args)
        .env_remove("NODE_NAME")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "should fail: {args:?}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("spot-sim:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{err}");
    lines[0].to_string()
}

#[test]
fn bad_experiments_are_refused_with_one_line_naming_the_fix() {
    let dir = ScratchDir::scratch_dir("bad").unwrap();
    let good = experiment_text("gd", "\"100%\"", "2030-01-01T00:00:00Z", "");
    let share = experiment_text("gd", "\"150%\"", "2030-01-01T00:00:00Z", "");
    let past_and_over = experiment_text("gd", "\"100%\"", "2020-01-01T00:00:00Z", "");
    let no_name =
        "[experiment]\nnodes = \"50%\"\nstart-at = \"2030-01-01T00:00:00Z\"\npods = [\"a/b\"]\n";
    // (the experiment file, the command line with FILE for its path, what the line must say)
    let bad_switch = experiment_text(
        "gd",
        "\"100%\"",
        "2030-01-01T00:00:00Z",
        "abort = \"yes\"\n",
    );
    let cases: [(&str, &[&str], &str); 6] = [
        (
            no_name,
            &["run", "--experiment", "FILE", "--node-name", "n-1"],
            "experiment.name",
        ),
        (
            &share,
            &["run", "--experiment", "FILE", "--node-name", "n-1"],
            "share outside 0-100 %",
        ),
        // Neither --node-name nor NODE_NAME: which node is this?
        (
            &good,
            &["run", "--experiment", "FILE"],
            "pass --node-name NAME, or set NODE_NAME",
        ),
        (
            &past_and_over,
            &["run", "--experiment", "FILE", "--node-name", "n-1"],
            "the game day is over here",
        ),
        (
            &good,
            &["experiment", "plan", "FILE", "--nodes", "n-1,Bad Node"],
            "is not a node name",
        ),
        // The kill switch is a boolean: a typo in it is refused, not read as "go on".
        (
            &bad_switch,
            &["run", "--experiment", "FILE", "--node-name", "n-1"],
            "field `abort`: invalid type: string \"yes\", expected a boolean",
        ),
    ];
    for (i, (body, args, needle)) in cases.into_iter().enumerate() {
        let file = experiment_file(&dir, &format!("case-{i}.toml"), body);
        let file = file.to_str().unwrap();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "FILE" { file } else { a })
            .collect();
        let line = refused(&args);
        assert!(line.contains(needle), "{needle:?} not in {line:?}");
    }
}

/// A fake Kubernetes node: `var/log/pods` in a temporary host root, and the kubepods hierarchy
/// (systemd driver, Burstable, containerd) in a test-owned cgroup subtree.
struct FakeNode {
    name: String,
    cgroups: TestCgroup,
    root: ScratchDir,
}

/// A running pod: its pod cgroup, its container's cgroup with a process idling in it, and the
/// private network namespace the process is in.
struct FakePod {
    cgroup: PathBuf,
    container: PathBuf,
    netns: NetNs,
    _sleeper: Proc,
}

fn fresh() -> u64 {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (u64::from(std::process::id()) << 32)
        ^ (u64::from(N.fetch_add(1, Ordering::Relaxed)) << 20)
        ^ u64::from(nanos)
}

impl FakeNode {
    fn new(name: &str) -> FakeNode {
        let root = ScratchDir::scratch_dir("gd-root").unwrap();
        fs::create_dir_all(root.join("var/log/pods")).unwrap();
        let cgroups = TestCgroup::new("gd-node").unwrap();
        // kubelet makes the QoS hierarchy when it starts, before any pod.
        for qos in ["burstable", "besteffort"] {
            cgroups
                .child(&format!("kubepods.slice/kubepods-{qos}.slice"))
                .unwrap();
        }
        FakeNode {
            name: name.to_string(),
            cgroups,
            root,
        }
    }

    fn running_pod(&self, namespace: &str, name: &str) -> FakePod {
        let n = fresh();
        let uid = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            n >> 32,
            n & 0xffff,
            (n >> 16) & 0xfff,
            (n >> 28) & 0xfff,
            n & 0xffff_ffff_ffff
        );
        fs::create_dir_all(
            self.root
                .join(format!("var/log/pods/{namespace}_{name}_{uid}/app")),
        )
        .unwrap();
        let u = uid.replace('-', "_");
        let cgroup = self
            .cgroups
            .child(&format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice"
            ))
            .unwrap();
        let container = cgroup.join(format!("cri-containerd-{n:064x}.scope"));
        fs::create_dir(&container).unwrap();
        let netns = NetNs::new_private().unwrap();
        let sleeper = sleeper_in(&container, &netns);
        FakePod {
            cgroup,
            container,
            netns,
            _sleeper: sleeper,
        }
    }

    /// `spot-sim run --experiment FILE --metrics 127.0.0.1:0` as this node, its stdout (the
    /// result line) in a file.
    fn run(&self, experiment: &Path) -> (Proc, PathBuf) {
        self.run_with(experiment, &[])
    }

    /// [`FakeNode::run`] with `extra` arguments.
    fn run_with(&self, experiment: &Path, extra: &[&str]) -> (Proc, PathBuf) {
        let control = control_path("gd");
        let stdout = self.root.join("stdout");
        let mut cmd = Command::new(spot_sim_bin());
        cmd.arg("run")
            .arg("--experiment")
            .arg(experiment)
            .args(["--host-root", self.root.to_str().unwrap()])
            .args(["--cgroup-root", self.cgroups.path.to_str().unwrap()])
            .arg("--control")
            .arg(&*control)
            .args(["--metrics", "127.0.0.1:0"])
            .args(extra)
            // The DaemonSet's way of naming the node.
            .env("NODE_NAME", &self.name)
            .stdout(Stdio::from(fs::File::create(&stdout).unwrap()));
        let mut p = spawn_logged(&mut cmd);
        p.control = Some(control);
        (p, stdout)
    }
}

impl FakePod {
    fn curl(&self, url: &str) -> (bool, String, String) {
        let out = curl_in(&self.container, &self.netns, &[url]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The HTTP status the pod gets for `url`.
    fn curl_status(&self, url: &str) -> (bool, String, String) {
        let out = curl_in(
            &self.container,
            &self.netns,
            &["-o", "/dev/null", "-w", "%{http_code}", url],
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Connects to the IMDS address and reports the errno's text: in the pod's private
    /// namespace (only `lo`), ENETUNREACH means the connect went to the real address, i.e. was
    /// not redirected.
    fn connect_error(&self) -> String {
        let out = command_in(
            &self.container,
            &self.netns,
            "bash",
            &[
                "-c",
                "exec 3<>/dev/tcp/169.254.169.254/80 && echo connected",
            ],
        )
        .output()
        .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn is_not_redirected(&self, who: &str) {
        let seen = self.connect_error();
        assert!(
            seen.contains("Network is unreachable"),
            "{who}: expected ENETUNREACH (not redirected), got: {seen}"
        );
        assert_eq!(
            attached_programs(&self.cgroup),
            Vec::<String>::new(),
            "{who}"
        );
    }
}

/// A node name the experiment selects and one it skips, as `experiment plan` says.
fn one_selected_one_skipped(file: &Path) -> (String, String) {
    let candidates: Vec<String> = (0..32).map(|i| format!("gd-node-{i}")).collect();
    let lines = plan(file, &candidates);
    let pick = |want: bool| lines.iter().find(|l| l.1 == want).unwrap().0.clone();
    (pick(true), pick(false))
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn two_nodes_run_one_experiment_and_only_the_selected_nodes_pod_is_interrupted_at_start_at() {
    root_or_skip!();
    let dir = ScratchDir::scratch_dir("gd-file").unwrap();
    let start = unix(SystemTime::now()) + 15;
    let start_at = time::OffsetDateTime::from_unix_timestamp(start)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let name = format!("gd-{}", fresh() % 100_000);
    let file = experiment_file(
        &dir,
        "experiment.toml",
        &experiment_text(
            &name,
            "\"50%\"",
            &start_at,
            "\n[scenario]\ninterruption-in = \"6s\"\n",
        ),
    );
    let (picked, skipped) = one_selected_one_skipped(&file);
    let selected_node = FakeNode::new(&picked);
    let skipped_node = FakeNode::new(&skipped);

    // spot-sim starts on both nodes before the pods exist (a DaemonSet comes up first).
    let (mut on_selected, selected_out) = selected_node.run(&file);
    let (mut on_skipped, skipped_out) = skipped_node.run(&file);
    on_selected.wait_for_log(
        "is selected; its timeline starts at",
        Duration::from_secs(10),
    );
    on_selected.wait_for_log(
        "no running pod on this node matches shop/checkout-* yet",
        Duration::from_secs(10),
    );
    on_skipped.wait_for_log("is not selected", Duration::from_secs(10));

    let pod = selected_node.running_pod("shop", "checkout-7d9f8");
    let neighbour = selected_node.running_pod("shop", "cart-5b6c4");
    let other_pod = skipped_node.running_pod("shop", "checkout-1a2b3");
    on_selected.wait_for_log("targeting pod shop/checkout-7d9f8", Duration::from_secs(10));

    // Attached, but before start-at nothing is issued.
    assert!(
        unix(SystemTime::now()) < start,
        "the test was too slow to look before start-at"
    );
    let (ok, code, err) = pod.curl_status(REBALANCE);
    assert!(ok, "{err}");
    assert_eq!(code, "404", "before start-at, no recommendation yet");
    other_pod.is_not_redirected("the skipped node's pod");
    neighbour.is_not_redirected("a pod the selectors do not match");

    // From start-at on: the recommendation, stamped start-at.
    while unix(SystemTime::now()) < start {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, body, err) = pod.curl(REBALANCE);
    assert!(ok, "{err}");
    let rebalance: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(rebalance["noticeTime"], start_at.as_str(), "{body}");
    let (ok, notice, err) = pod.curl(INSTANCE_ACTION);
    assert!(ok && notice.contains("terminate"), "{notice} {err}");
    other_pod.is_not_redirected("the skipped node's pod, after start-at");

    // The interruption comes 6 s after start-at; then the node reports.
    on_selected.wait_for_log(
        "the interruption has come on this node",
        Duration::from_secs(20),
    );
    let line = fs::read_to_string(&selected_out).unwrap();
    let result: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(result["experiment"], name.as_str());
    assert_eq!(result["node"], picked.as_str());
    assert_eq!(result["selected"], true);
    assert_eq!(result["start_at"], start_at.as_str());
    assert_eq!(result["verdict"], "passed", "{result}");
    assert_eq!(result["targets"].as_array().unwrap().len(), 1, "{result}");
    assert_eq!(result["targets"][0]["name"], "pod shop/checkout-7d9f8");
    assert_eq!(result["targets"][0]["read_notice"], true);

    let skipped_result: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&skipped_out).unwrap().trim()).unwrap();
    assert_eq!(skipped_result["selected"], false);
    assert_eq!(skipped_result["verdict"], "skipped");
    assert!(
        !on_skipped.log().contains("targeting"),
        "{}",
        on_skipped.log()
    );
    other_pod.is_not_redirected("the skipped node's pod, at the end");

    // The same results as Prometheus series, labelled by experiment and node.
    let labels = |node: &str| format!("{{experiment=\"{name}\",node=\"{node}\"}}");
    let m = metrics(&mut on_selected);
    for series in [
        format!("spot_sim_experiment_selected{} 1", labels(&picked)),
        format!("spot_sim_experiment_passed{} 1", labels(&picked)),
        format!(
            "spot_sim_experiment_targets_read_notice{} 1",
            labels(&picked)
        ),
        format!(
            "spot_sim_experiment_start_time_seconds{} {start}",
            labels(&picked)
        ),
    ] {
        assert!(m.contains(&series), "{series} not in:\n{m}");
    }
    let m = metrics(&mut on_skipped);
    assert!(
        m.contains(&format!(
            "spot_sim_experiment_selected{} 0",
            labels(&skipped)
        )),
        "{m}"
    );
    assert!(!m.contains("spot_sim_experiment_passed{"), "{m}");
}

/// An experiment `name` for the one node `NAME-node`, starting `offset` seconds from now, its
/// interruption `interruption_in` after that: the file and its start-at.
fn listed_experiment(
    dir: &ScratchDir,
    name: &str,
    offset: i64,
    interruption_in: &str,
) -> (PathBuf, String) {
    let start_at = time::OffsetDateTime::from_unix_timestamp(unix(SystemTime::now()) + offset)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let file = experiment_file(
        dir,
        "experiment.toml",
        &experiment_text(
            name,
            &format!("[\"{name}-node\"]"),
            &start_at,
            &format!("\n[scenario]\ninterruption-in = \"{interruption_in}\"\n"),
        ),
    );
    (file, start_at)
}

#[test]
fn a_listed_node_started_after_start_at_joins_the_same_timeline_and_follows_a_recreated_pod() {
    root_or_skip!();
    let dir = ScratchDir::scratch_dir("gd-late").unwrap();
    let node = FakeNode::new("gd-late-node");
    let other = FakeNode::new("gd-late-other");
    let (file, start_at) = listed_experiment(&dir, "gd-late", -5, "5m");
    let pod = node.running_pod("shop", "checkout-late1");
    let other_pod = other.running_pod("shop", "checkout-late2");
    let (mut run, out) = node.run(&file);
    let (mut other_run, _) = other.run(&file);
    run.wait_for_log(
        "joining the timeline where it stands",
        Duration::from_secs(10),
    );
    run.wait_for_log("targeting pod shop/checkout-late1", Duration::from_secs(10));
    other_run.wait_for_log("not in experiment.nodes", Duration::from_secs(10));
    // The recommendation carries start-at, as on every other node, not the time of joining.
    let (ok, body, err) = pod.curl(REBALANCE);
    assert!(ok, "{err}");
    let rebalance: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(rebalance["noticeTime"], start_at.as_str(), "{body}");
    other_pod.is_not_redirected("a node not in the list");

    // The handler's pod is deleted and its DaemonSet makes a new one under another name: the
    // new pod is targeted with the same timeline.
    let pod_cgroup = pod.cgroup.clone();
    drop(pod);
    remove_cgroup_tree(&pod_cgroup);
    let recreated = node.running_pod("shop", "checkout-late3");
    run.wait_for_log("pod shop/checkout-late1 is gone", Duration::from_secs(10));
    run.wait_for_log("targeting pod shop/checkout-late3", Duration::from_secs(10));
    let (ok, body, err) = recreated.curl(REBALANCE);
    assert!(ok, "{err}");
    assert!(body.contains(&start_at), "{body}");

    // Stopped before its interruption, the node still reports, as not decided yet.
    run.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(run
        .wait_timeout(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let result: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&out).unwrap().trim()).unwrap();
    assert_eq!(result["verdict"], "pending", "{result}");
    assert_eq!(result["finished"], false);
    let names: Vec<&str> = result["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["pod shop/checkout-late1", "pod shop/checkout-late3"],
        "{result}"
    );
    assert_eq!(
        attached_programs(&recreated.cgroup),
        Vec::<String>::new(),
        "detached on exit"
    );
}

/// Handlers that read the notice only through a dated API version, or only through doubled
/// slashes (as AWS's JavaScript SDK asks), read it: the node's JSON line, its metrics and the
/// game-day report say so alike.
#[test]
fn a_notice_read_through_a_dated_version_or_doubled_slashes_counts_in_the_line_the_metrics_and_the_report(
) {
    root_or_skip!();
    let dir = ScratchDir::scratch_dir("gd-spelled").unwrap();
    let node = FakeNode::new("gd-spelled-node");
    // Joined where it stands: the notice is out at once, the interruption 8 s after start-at.
    let (file, _) = listed_experiment(&dir, "gd-spelled", -1, "8s");
    let dated = node.running_pod("shop", "checkout-dated");
    let slashes = node.running_pod("shop", "checkout-slashes");
    let (mut run, out) = node.run(&file);
    run.wait_for_log("targeting pod shop/checkout-dated", Duration::from_secs(10));
    run.wait_for_log(
        "targeting pod shop/checkout-slashes",
        Duration::from_secs(10),
    );
    let (ok, body, err) =
        dated.curl("http://169.254.169.254/2021-03-23/meta-data/spot/instance-action");
    assert!(ok && body.contains("terminate"), "{body} {err}");
    // curl would keep `//` anyway; --path-as-is makes sure nothing is cleaned on the way.
    let out_slashes = curl_in(
        &slashes.container,
        &slashes.netns,
        &[
            "--path-as-is",
            "http://169.254.169.254//latest/meta-data/spot/instance-action",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out_slashes.stdout).contains("terminate"),
        "{}",
        String::from_utf8_lossy(&out_slashes.stderr)
    );

    run.wait_for_log(
        "the interruption has come on this node",
        Duration::from_secs(20),
    );
    let result: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&out).unwrap().trim()).unwrap();
    let read: Vec<(&str, bool)> = result["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["read_notice"] == true))
        .collect();
    assert_eq!(
        read,
        [
            ("pod shop/checkout-dated", true),
            ("pod shop/checkout-slashes", true)
        ],
        "{result}"
    );
    assert_eq!(result["verdict"], "passed", "{result}");
    let m = metrics(&mut run);
    let series = "spot_sim_experiment_targets_read_notice{experiment=\"gd-spelled\",node=\"gd-spelled-node\"} 2";
    assert!(m.contains(series), "{series} not in:\n{m}");
    let control = run.control.as_ref().unwrap().to_str().unwrap().to_string();
    let report =
        output_ok(Command::new(spot_sim_bin()).args(["report", "--json", "--control", &control]));
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    for t in report["targets"].as_array().unwrap() {
        let notice = t["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "notice")
            .unwrap();
        assert!(notice["first_read_at"].is_string(), "{t:#}");
    }
    assert_eq!(report["targets"].as_array().unwrap().len(), 2, "{report:#}");
}

/// A folder laid out as kubelet lays out a ConfigMap volume: each key a symlink through
/// `..data`, which points to a timestamped folder and is swapped for a new one on an update
/// (pkg/volume/util/atomic_writer.go).
struct ConfigMapVolume {
    dir: ScratchDir,
    n: u32,
}

impl ConfigMapVolume {
    fn new(experiment: &str) -> ConfigMapVolume {
        let mut v = ConfigMapVolume {
            dir: ScratchDir::scratch_dir("gd-cm-volume").unwrap(),
            n: 0,
        };
        v.update(experiment);
        std::os::unix::fs::symlink("..data/experiment.toml", v.file()).unwrap();
        v
    }

    fn file(&self) -> PathBuf {
        self.dir.join("experiment.toml")
    }

    /// kubelet's update: the new content in a new folder, `..data` renamed over to it.
    fn update(&mut self, experiment: &str) {
        self.n += 1;
        let ts = format!("..2026_11_26_14_00_00.{:09}", self.n);
        fs::create_dir(self.dir.join(&ts)).unwrap();
        fs::write(self.dir.join(&ts).join("experiment.toml"), experiment).unwrap();
        std::os::unix::fs::symlink(&ts, self.dir.join("..data_tmp")).unwrap();
        fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
    }
}

/// The last result line a node printed, waiting up to 10 s for one: a stop's line is printed
/// just after its log line, which a test may have seen first.
fn last_result(out: &Path) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let text = fs::read_to_string(out).unwrap();
        let line = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        match serde_json::from_str(line) {
            Ok(v) => return v,
            Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("{e}: {text}"),
        }
    }
}

#[test]
fn flipping_the_kill_switch_in_the_configmap_detaches_every_selected_node_within_an_interval() {
    root_or_skip!();
    let start = unix(SystemTime::now()) - 5;
    let start_at = time::OffsetDateTime::from_unix_timestamp(start)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let file = |abort: bool| {
        experiment_text(
            "gd-abort",
            "[\"gd-abort-a\", \"gd-abort-b\"]",
            &start_at,
            &format!("abort = {abort}\n\n[scenario]\ninterruption-in = \"5m\"\n"),
        )
    };
    let mut volume = ConfigMapVolume::new(&file(false));
    let nodes = [FakeNode::new("gd-abort-a"), FakeNode::new("gd-abort-b")];
    let pods = [
        nodes[0].running_pod("shop", "checkout-a1"),
        nodes[1].running_pod("shop", "checkout-b1"),
    ];
    let mut runs: Vec<(Proc, PathBuf)> = nodes
        .iter()
        .map(|n| n.run_with(&volume.file(), &["--stop-check-every", "1s"]))
        .collect();
    for (run, _) in &mut runs {
        run.wait_for_log("targeting pod shop/checkout-", Duration::from_secs(15));
    }
    for pod in &pods {
        let (ok, body, err) = pod.curl(REBALANCE);
        assert!(
            ok && body.contains(&start_at),
            "redirected before the flip: {body} {err}"
        );
    }

    // `kubectl edit configmap`: abort = true reaches the nodes through the ..data swap.
    let flipped = time::OffsetDateTime::now_utc();
    volume.update(&file(true));
    for (run, _) in &mut runs {
        run.wait_for_log("stopped (abort)", Duration::from_secs(10));
    }
    for (i, pod) in pods.iter().enumerate() {
        assert_not_redirected(Some(&pod.container), &pod.netns, &format!("node {i}'s pod"));
        pod.is_not_redirected(&format!("node {i}'s pod"));
    }
    for (run, out) in &mut runs {
        let result = last_result(out);
        assert_eq!(result["verdict"], "stopped", "{result}");
        assert_eq!(result["stopped"]["reason"], "abort", "{result}");
        let condition = result["stopped"]["condition"].as_str().unwrap();
        assert!(
            condition.starts_with("experiment.abort in ") && condition.ends_with(": set to true"),
            "{condition}"
        );
        // Within one re-read interval (1 s), plus a second for a loaded machine.
        let at = parse_time(result["stopped"]["at"].as_str().unwrap());
        let took = (at - flipped).as_seconds_f64();
        assert!(
            (0.0..2.0).contains(&took),
            "stopped {took} s after the flip"
        );
        let m = metrics(run);
        assert!(m.contains("spot_sim_stopped{reason=\"abort\""), "{m}");
        assert!(!m.contains("spot_sim_experiment_passed{"), "{m}");
        // The node stays up (a DaemonSet would restart it), detached, until SIGTERM.
        assert!(run.child.try_wait().unwrap().is_none(), "{}", run.log());
        run.signal(nix::sys::signal::Signal::SIGTERM);
        let status = run.wait_timeout(Duration::from_secs(10)).expect("exited");
        assert!(status.success(), "{}", run.log());
    }
}

/// The deploy/ manifests, validated offline against the Kubernetes schemas
/// (`kubernetes-validate` bundles them; strict: unknown fields fail).
#[test]
fn the_manifests_pass_kubernetes_validate_and_the_configmap_holds_a_valid_experiment() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let manifests: Vec<PathBuf> = ["daemonset.yaml", "pod.yaml", "gameday.yaml"]
        .iter()
        .map(|m| deploy.join(m))
        .collect();
    // The oldest minor version EKS still runs under extended support, and the newest the
    // package knows.
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict", "-k", version])
            .args(&manifests)
            .output()
            .expect("python3 is installed");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains("No module named kubernetes_validate"),
            "kubernetes-validate is missing: `cargo xtask test` installs it (pip)"
        );
        assert!(out.status.success(), "against {version}:\n{text}");
        for kind in [
            "daemonset/spot-sim",
            "pod/spot-sim",
            "configmap/spot-sim-experiment",
            "daemonset/spot-sim-gameday",
        ] {
            assert!(
                text.contains(&format!("passed for resource {kind} ")),
                "{kind} not validated against {version}:\n{text}"
            );
        }
    }

    // The DaemonSet reads the ConfigMap's experiment where it mounts it, and names the node
    // from the downward API: what the schemas cannot check.
    let script = "import json, sys, yaml\n\
                  json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)\n";
    let out = output_ok(
        Command::new("python3")
            .args(["-c", script])
            .arg(deploy.join("gameday.yaml")),
    );
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let of_kind = |kind: &str| {
        docs.as_array()
            .unwrap()
            .iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in gameday.yaml"))
            .clone()
    };
    let (cm, ds) = (of_kind("ConfigMap"), of_kind("DaemonSet"));
    let spec = &ds["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let args: Vec<&str> = strs(&c["args"]);
    let after = |flag: &str| {
        let i = args.iter().position(|a| *a == flag).unwrap();
        Path::new(args[i + 1])
    };
    let experiment = after("--experiment");
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == experiment.parent().unwrap())
        .unwrap_or_else(|| panic!("nothing mounted where --experiment {experiment:?} is"));
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["configMap"]["name"], cm["metadata"]["name"]);
    assert_eq!(ds["metadata"]["namespace"], cm["metadata"]["namespace"]);
    let key = experiment.file_name().unwrap().to_str().unwrap();
    let toml = cm["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has no {key}"));
    let node_name = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("NODE_NAME is set");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(after("--host-root"), Path::new("/host"));

    // The example experiment in the ConfigMap is one spot-sim accepts.
    let dir = ScratchDir::scratch_dir("gd-cm").unwrap();
    let file = dir.join("experiment.toml");
    fs::write(&file, toml).unwrap();
    let nodes: Vec<String> = (0..10)
        .map(|i| format!("ip-10-0-0-{i}.ec2.internal"))
        .collect();
    plan(&file, &nodes);
}

/// The arm64 spot-sim `cargo xtask test` builds (SPOT_SIM_ARM64_BIN) is static and, under
/// qemu-user, prints its version and serves the fake IMDS on loopback.
#[test]
fn the_arm64_binary_is_static_and_serves_under_qemu_user() {
    let Some(bin) = std::env::var_os("SPOT_SIM_ARM64_BIN").map(PathBuf::from) else {
        if std::env::var_os("CI").is_some() {
            panic!("SPOT_SIM_ARM64_BIN is not set: run the suite with `cargo xtask test`");
        }
        eprintln!(
            "\n!!!!! SKIPPED: no arm64 spot-sim; `cargo xtask test` builds one (SPOT_SIM_ARM64_BIN) !!!!!\n"
        );
        return;
    };
    let data = fs::read(&bin).unwrap();
    assert_eq!(&data[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([data[18], data[19]]),
        183,
        "e_machine: EM_AARCH64"
    );
    assert!(!has_interpreter(&data), "static: no PT_INTERP");

    let qemu = "qemu-aarch64-static";
    let out = output_ok(Command::new(qemu).arg(&bin).arg("--version"));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("spot-sim "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // `serve` on a free loopback port, asked by curl.
    let listen = format!("127.0.0.1:{}", free_port());
    let mut serve = spawn_logged(Command::new(qemu).arg(&bin).args([
        "serve",
        "--listen",
        &listen,
        "--interruption-in",
        "5s",
    ]));
    let url = format!("http://{listen}/latest/meta-data/spot/instance-action");
    let answer = first_answer(&mut serve, &url);
    let notice: serde_json::Value = serde_json::from_str(&answer).unwrap_or_else(|e| {
        panic!(
            "no notice from the arm64 serve ({e}): {answer:?}\n{}",
            serve.log()
        )
    });
    assert_eq!(notice["action"], "terminate");
}

/// Whether a 64-bit little-endian ELF image has a PT_INTERP program header.
fn has_interpreter(data: &[u8]) -> bool {
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([data[o], data[o + 1]]));
    let phoff = u64::from_le_bytes(data[32..40].try_into().unwrap()) as usize;
    (0..u16_at(56)).any(|i| {
        let o = phoff + i * u16_at(54);
        data.get(o..o + 4)
            .is_some_and(|b| u32::from_le_bytes(b.try_into().unwrap()) == 3)
    })
}
