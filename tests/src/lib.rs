//! Fixtures for the end-to-end tests: a test-owned cgroup subtree, private network namespaces,
//! running commands inside both, and spot-sim itself as a child process.
//!
//! Every fixture owns what it created and removes it on drop, so a failing test leaves nothing
//! behind. Clients that might reach the IMDS address always run in a private namespace with
//! only `lo`: a missed redirect fails with "network unreachable" instead of leaving the machine.

mod fixtures;
mod scratch;

/// What every test file uses from std, so `use spot_sim_tests::*;` is a file's one prologue.
pub mod prelude {
    pub use std::{
        collections::BTreeSet,
        fs,
        io::{BufRead, BufReader, Read, Write},
        os::unix::fs::{MetadataExt, PermissionsExt},
        path::{Path, PathBuf},
        process::{Command, Output, Stdio},
        sync::atomic::{AtomicU32, Ordering},
        time::{Duration, Instant, SystemTime, UNIX_EPOCH},
    };
}
pub use prelude::*;

pub use fixtures::*;
pub use scratch::*;
pub use spot_sim_testkit::{
    heavy, heavy_or_skip, poll_until, remove_cgroup_tree, require_root, root_or_skip, skip, stderr,
    stdout, unique, Capture, ControlSocket, NetNs, OwnedPath, Placement, Proc, ScratchDir,
    TestCgroup,
};

/// The first line of a root-only test on a fresh [`Node`] with `spot-sim run` serving its
/// target (plus `extra` arguments): `let (node, run) = node_running!("tag", &[]);`.
#[macro_export]
macro_rules! node_running {
    ($tag:expr, $extra:expr) => {{
        $crate::root_or_skip!();
        let node = $crate::node($tag);
        let run = $crate::start_run(&node, $extra);
        (node, run)
    }};
}

/// The spot-sim binary `cargo xtask test` built (SPOT_SIM_BIN), else target/debug/spot-sim.
pub fn spot_sim_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SPOT_SIM_BIN") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/spot-sim")
}

/// `spot-sim exec --netns new -- sh -c SCRIPT`: a command in a throw-away namespace.
pub fn exec_sh(script: &str) -> Command {
    exec_new(&["--", "sh", "-c", script])
}

/// `spot-sim exec --netns new ARGS`: options, then `--` and the command.
pub fn exec_new(args: &[&str]) -> Command {
    let mut cmd = Command::new(spot_sim_bin());
    cmd.args(["exec", "--netns", "new"]).args(args);
    cmd
}

/// spot-sim with `args` in a private mount namespace (the host's mounts untouched), after
/// `prep` ran there: `umount -l` the cgroup v2 mount, remount it read-only.
pub fn with_private_mounts(prep: &str, args: &str) -> Command {
    let script = format!("{prep} && exec {} {args}", spot_sim_bin().display());
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    c
}

pub fn cgroup2_mount() -> PathBuf {
    spot_sim_testkit::cgroup2_mount().expect("cgroup v2 mounted")
}

/// A command set to start inside `cgroup` and `netns`.
pub fn command_in(cgroup: &Path, netns: &NetNs, program: &str, args: &[&str]) -> Command {
    spot_sim_testkit::command_in(Some(cgroup), Some(netns), program, args).unwrap()
}

/// A command inside `netns` only, staying in the test's own cgroup ("the node").
pub fn command_in_netns(netns: &NetNs, program: &str, args: &[&str]) -> Command {
    netns.command(program, args).unwrap()
}

/// curl inside `cgroup` and `netns`, with a short timeout; returns its output.
pub fn curl_in(cgroup: &Path, netns: &NetNs, args: &[&str]) -> Output {
    let mut all = vec!["-sS", "--max-time", "5"];
    all.extend_from_slice(args);
    command_in(cgroup, netns, "curl", &all).output().unwrap()
}

/// Starts spot-sim with `args`, collecting its stderr.
pub fn spawn_spot_sim(args: &[&str]) -> Proc {
    spawn_logged(Command::new(spot_sim_bin()).args(args))
}

/// Starts `cmd` with stderr collected into [`Proc::log`] (and echoed, for failing tests).
/// RUST_LOG is the command's own if it set one, else the test's, else `info`.
pub fn spawn_logged(cmd: &mut Command) -> Proc {
    if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    }
    Proc::spawn("spot-sim", cmd, Capture::Stderr).unwrap()
}

/// A process that idles inside `cgroup` and `netns`, so spot-sim finds the namespace there.
pub fn sleeper_in(cgroup: &Path, netns: &NetNs) -> Proc {
    spawn_logged(&mut command_in(cgroup, netns, "sleep", &["600"]))
}

pub fn control_path(tag: &str) -> ControlSocket {
    OwnedPath::control_socket(tag)
}

/// Names of the programs attached to `cgroup`, per `bpftool cgroup show`. Panics when bpftool
/// fails or prints something that is not its JSON list: a check that cannot look must never
/// read as "nothing attached". A cgroup that no longer exists has nothing attached.
pub fn attached_programs(cgroup: &Path) -> Vec<String> {
    if !cgroup.exists() {
        return Vec::new();
    }
    let progs = bpftool_json(&["cgroup", "show", cgroup.to_str().unwrap()]);
    progs
        .iter()
        .map(|p| match p.get("name").and_then(|n| n.as_str()) {
            Some(n) => n.to_owned(),
            None => panic!("a program without a name: {p}"),
        })
        .collect()
}

/// The ids of every eBPF program loaded in the kernel, per `bpftool prog show`; panics when
/// bpftool cannot tell.
pub fn loaded_prog_ids() -> Vec<u32> {
    bpftool_ids("prog")
}

/// The ids of every eBPF map in the kernel, per `bpftool map show`; panics when bpftool
/// cannot tell.
pub fn loaded_map_ids() -> Vec<u32> {
    bpftool_ids("map")
}

fn bpftool_ids(kind: &str) -> Vec<u32> {
    let all = bpftool_json(&[kind, "show"]);
    all.iter()
        .map(|p| {
            let id = p.get("id").and_then(serde_json::Value::as_u64);
            id.and_then(|id| u32::try_from(id).ok())
                .unwrap_or_else(|| panic!("an entry without an id: {p}"))
        })
        .collect()
}

/// A Python probe that connects to the IMDS address in its three forms — IPv4
/// `169.254.169.254`, IPv6 `fd00:ec2::254` and IPv4-mapped `::ffff:169.254.169.254`, port 80
/// each — and prints, as a JSON list in that order, how each connect ended: "redirected"
/// (connected, and getpeername still says the IMDS), "connected elsewhere", or the errno's
/// name (ENETUNREACH: not redirected, in a private namespace; ECONNREFUSED: sent somewhere
/// nothing listens).
pub const IMDS_CONNECTS: &str = r#"
import errno, json, socket
out = []
for family, addr in ((socket.AF_INET, ("169.254.169.254", 80)), (socket.AF_INET6, ("fd00:ec2::254", 80)), (socket.AF_INET6, ("::ffff:169.254.169.254", 80))):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(addr)
        out.append("redirected" if s.getpeername()[0] == addr[0] else "connected elsewhere")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
    s.close()
print(json.dumps(out))
"#;

/// [`IMDS_CONNECTS`] from `cgroup` (or the test's own) inside `netns`.
pub fn imds_connects(cgroup: Option<&Path>, netns: &NetNs) -> Vec<String> {
    let probe =
        spot_sim_testkit::command_in(cgroup, Some(netns), "python3", &["-c", IMDS_CONNECTS]);
    let got = json_ok(probe.unwrap());
    strs(&got).into_iter().map(String::from).collect()
}

/// A process in `cgroup` (the test's own with `None`) inside the private namespace `netns`
/// (only `lo`) is not redirected: its connects to the IMDS address, in each of its three forms,
/// fail with ENETUNREACH. A leaked redirect ends otherwise: connected, or ECONNREFUSED when
/// nothing listens on the port it was sent to. curl says "Couldn't connect" for both, so this
/// decides by errno.
pub fn assert_not_redirected(cgroup: Option<&Path>, netns: &NetNs, who: &str) {
    let got = imds_connects(cgroup, netns);
    assert_eq!(
        got,
        ["ENETUNREACH", "ENETUNREACH", "ENETUNREACH"],
        "{who}: connects to the IMDS address (IPv4, IPv6, IPv4-mapped) should be unreachable, not redirected"
    );
}

/// The resident set size of process `pid` in KiB, per /proc/PID/status (0 when it cannot be
/// read there).
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Parses an RFC 3339 `...Z` timestamp.
pub fn parse_time(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
}

/// A fake "node": a parent cgroup with a target child and a sibling, each with a process
/// idling in its own private network namespace.
pub struct Node {
    pub cg: TestCgroup,
    pub target: PathBuf,
    pub sibling: PathBuf,
    pub target_ns: NetNs,
    pub sibling_ns: NetNs,
    pub parent_ns: NetNs,
    _sleepers: Vec<Proc>,
}

pub fn node(tag: &str) -> Node {
    let cg = TestCgroup::new(tag).unwrap();
    let target = cg.child("target").unwrap();
    let sibling = cg.child("sibling").unwrap();
    let target_ns = NetNs::new_private().unwrap();
    let sibling_ns = NetNs::new_private().unwrap();
    let parent_ns = NetNs::new_private().unwrap();
    let sleepers = vec![sleeper_in(&target, &target_ns)];
    Node {
        cg,
        target,
        sibling,
        target_ns,
        sibling_ns,
        parent_ns,
        _sleepers: sleepers,
    }
}

/// Starts `spot-sim run ARGS` with a control socket of its own and waits until it serves `n`
/// targets. With `inside`, spot-sim itself runs in that cgroup and network namespace.
pub fn start_run_with(args: &[&str], n: usize, inside: Option<(&Path, &NetNs)>) -> Proc {
    let control = control_path("run");
    let mut all = vec!["run", "--control", control.to_str().unwrap()];
    all.extend_from_slice(args);
    let bin = spot_sim_bin();
    let mut cmd = match inside {
        Some((cgroup, netns)) => command_in(cgroup, netns, bin.to_str().unwrap(), &all),
        None => {
            let mut c = Command::new(&bin);
            c.args(&all);
            c
        }
    };
    let mut p = spawn_logged(&mut cmd);
    p.control = Some(control);
    p.wait_for_log(&format!("serving {n} target"), Duration::from_secs(20));
    p
}

/// Starts `spot-sim run` on the node's target cgroup (plus `extra` arguments) and waits
/// until it serves.
pub fn start_run(node: &Node, extra: &[&str]) -> Proc {
    let mut args = vec!["--cgroup", node.target.to_str().unwrap()];
    args.extend_from_slice(extra);
    start_run_with(&args, 1, None)
}
