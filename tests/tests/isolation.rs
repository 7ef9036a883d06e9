//! Who is redirected where the cgroup tree gets in the way: the root of a cgroup namespace
//! (the node, as a containerised spot-sim sees it), nested targets of one instance, and two
//! instances, one targeting a child of the other's target. Every client runs in a private
//! namespace with only loopback, and "not redirected" is decided by errno.

use spot_sim_tests::*;

const INSTANCE_ACTION: &str = "http://169.254.169.254/latest/meta-data/spot/instance-action";

/// The `action` of the notice a process in `cgroup` and `ns` reads.
fn action_seen(cgroup: &Path, ns: &NetNs) -> String {
    let out = curl_in(cgroup, ns, &["-f", INSTANCE_ACTION]);
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: curl failed: {}",
        cgroup.display(),
        stderr(&out)
    );
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["action"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_process_in_the_root_of_a_cgroup_namespace_is_not_redirected_while_its_child_target_is() {
    root_or_skip!();
    // The namespace's root is a test cgroup: spot-sim runs in a cgroup namespace rooted
    // there, with cgroup2 mounted afresh, and targets `/target` as it sees it. A regression
    // that took the root for a target would redirect a test cgroup, never the machine's root.
    let (cg, target, target_ns) = cgroup_child_and_ns("cgns-root", "target");
    let _sleeper = sleeper_in(&target, &target_ns);
    let control = control_path("cgns-root");
    let script = format!(
        "umount -l {m} && mount -t cgroup2 none {m} && exec {bin} run --control {ctl} --cgroup /target",
        m = cgroup2_mount().display(),
        bin = spot_sim_bin().display(),
        ctl = control.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-C", "-m", "--propagation", "private", "sh", "-c", &script]);
    Placement::new().cgroup(&cg.path).unwrap().apply(&mut cmd);
    let mut run = spawn_logged(&mut cmd);
    run.wait_for_log("serving 1 target", Duration::from_secs(20));
    assert!(
        run.log().contains("cgroup /target: IMDS connects from"),
        "the target as the namespace names it:\n{}",
        run.log()
    );

    // A process in the namespace's root cgroup (it reads "0::/"), in a private network
    // namespace of its own: its connects go where they were going (unreachable here).
    let node_ns = NetNs::new_private().unwrap();
    let probe = format!(
        "print([l for l in open('/proc/self/cgroup').read().splitlines() if l.startswith('0::')][0])\n{IMDS_CONNECTS}"
    );
    let cgns = format!("--cgroup=/proc/{}/ns/cgroup", run.pid());
    let out = output_ok(command_in(
        &cg.path,
        &node_ns,
        "nsenter",
        &[&cgns, "python3", "-c", &probe],
    ));
    let text = stdout(&out);
    let (cgroup_line, connects) = text.split_once('\n').unwrap();
    assert_eq!(cgroup_line, "0::/", "the probe is at the namespace's root");
    assert_eq!(
        connects.trim(),
        r#"["ENETUNREACH", "ENETUNREACH", "ENETUNREACH"]"#,
        "the root of the cgroup namespace (IPv4, IPv6, IPv4-mapped)"
    );
    // The child target is redirected (IPv4 and mapped; IPv6 is off by default).
    assert_eq!(
        imds_connects(Some(&target), &target_ns),
        ["redirected", "ENETUNREACH", "redirected"]
    );
    drop(run);
    assert_eq!(attached_programs(&cg.path), Vec::<String>::new());
}

#[test]
fn nested_targets_of_one_instance_the_deepest_answers() {
    root_or_skip!();
    // outer=stop.toml and outer/inner (terminate); processes in one private namespace. A
    // process in inner/leaf belongs to both: the deepest target, inner, answers it.
    let cg = TestCgroup::new("nested-one").unwrap();
    let ns = NetNs::new_private().unwrap();
    let dirs: Vec<PathBuf> = ["outer", "outer/side", "outer/inner", "outer/inner/leaf"]
        .iter()
        .map(|d| cg.child(d).unwrap())
        .collect();
    let _sleepers: Vec<Proc> = dirs.iter().map(|d| sleeper_in(d, &ns)).collect();
    let stop = OwnedPath::file(
        "nested-stop",
        "toml",
        "[scenario]\naction = \"stop\"\ninterruption-in = \"2m\"\n",
    )
    .unwrap();
    let outer = format!("{}={}", dirs[0].display(), stop.display());
    let _run = start_run_with(
        &[
            "--cgroup",
            &outer,
            "--cgroup",
            dirs[2].to_str().unwrap(),
            "--interruption-in",
            "2m",
        ],
        2,
        None,
    );
    for (dir, want) in [
        (&dirs[0], "stop"),
        (&dirs[1], "stop"),
        (&dirs[2], "terminate"),
        (&dirs[3], "terminate"),
    ] {
        assert_eq!(action_seen(dir, &ns), want, "{}", dir.display());
    }
}

#[test]
fn nested_instances_the_innermost_answers_and_the_outer_takes_over_when_it_leaves() {
    root_or_skip!();
    // Two spot-sims: one on outer (--action stop), one on outer/inner (terminate), started in
    // either order. The kernel runs the inner cgroup's programs first; the rewrite they make
    // is no longer an IMDS address for the outer's.
    let cg = TestCgroup::new("nested-two").unwrap();
    let ns = NetNs::new_private().unwrap();
    let outer = cg.child("outer").unwrap();
    let inner = cg.child("outer/inner").unwrap();
    let _sleepers = [sleeper_in(&outer, &ns), sleeper_in(&inner, &ns)];
    let start = |cgroup: &Path, action: &str| {
        start_run_with(
            &[
                "--cgroup",
                cgroup.to_str().unwrap(),
                "--action",
                action,
                "--interruption-in",
                "2m",
            ],
            1,
            None,
        )
    };
    for outer_first in [true, false] {
        let (outer_run, inner_run) = if outer_first {
            let o = start(&outer, "stop");
            (o, start(&inner, "terminate"))
        } else {
            let i = start(&inner, "terminate");
            (start(&outer, "stop"), i)
        };
        assert_eq!(
            action_seen(&inner, &ns),
            "terminate",
            "the innermost answers"
        );
        assert_eq!(action_seen(&outer, &ns), "stop");
        drop(inner_run);
        assert_eq!(
            action_seen(&inner, &ns),
            "stop",
            "with the inner instance gone, the outer one answers"
        );
        drop(outer_run);
        assert_not_redirected(Some(&inner), &ns, "inner, both instances gone");
    }
}
