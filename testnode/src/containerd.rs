//! The private containerd: its configuration (own root, state, sockets, runc root and CNI
//! folder, all under the node's scratch folder), the daemon started in a mount namespace of
//! its own, and the sweep that takes away whatever it and its shims left.

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

use crate::Layout;

/// The runtime handler whose containers get a cgroup namespace of their own, privileged ones
/// included (see [`Layout::Unified`]).
pub const CGROUPNS_HANDLER: &str = "cgroupns";

/// Where one containerd keeps everything, under the node's scratch folder.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }
    fn cni(&self) -> PathBuf {
        self.dir.join("cni")
    }
}

/// containerd 1.6's configuration (version 2): nothing shared with the machine's own runtime.
/// The CRI plugin runs pods with runc (cgroupfs driver, as kubelet's `cgroupDriver: cgroupfs`),
/// the CNI network of [`cni_network`], and network namespaces mounted under our state folder
/// instead of /var/run/netns.
fn config(p: &Paths, pause: &str, layout: Layout) -> String {
    let d = p.dir.display();
    // On the unified layout, runc through [`RUNC_UNIFIED`]; otherwise a runc of one's own when
    // debugging the kit (e.g. a wrapper that keeps runc's log).
    let binary = match (layout, std::env::var("SPOT_SIM_TESTNODE_RUNC")) {
        (Layout::Unified, _) => format!("BinaryName = \"{d}/runc-unified\""),
        (_, Ok(b)) => format!("BinaryName = \"{b}\""),
        _ => String::new(),
    };
    let runc = |name: &str, extra: &str| {
        format!(
            r#"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]
      runtime_type = "io.containerd.runc.v2"
      {extra}
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}.options]
        SystemdCgroup = false
        Root = "{d}/runc"
        {binary}
"#
        )
    };
    let mut runtimes = runc("runc", "");
    if layout == Layout::Unified {
        runtimes += &runc(
            CGROUPNS_HANDLER,
            &format!(r#"base_runtime_spec = "{d}/cgroupns-spec.json""#),
        );
    }
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
# Plugins that would touch the machine (/opt/containerd) or need what is not here.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # The sandbox asks for oom_score_adj -998 (and Guaranteed containers -997); lowering it needs
  # CAP_SYS_RESOURCE, which this machine's root may lack (runc then fails "failed to update
  # /proc/self/oom_score_adj: Permission denied"). containerd's own setting for such hosts
  # clamps it to no lower than containerd's own score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
{runtimes}"#,
        socket = p.socket().display(),
        cni = p.cni().display(),
    )
}

/// Writes the configuration, the CNI network and, for the unified layout, the base OCI spec of
/// the `cgroupns` handler.
pub(crate) fn write_config(p: &Paths, pause: &str, layout: Layout) -> io::Result<()> {
    fs::create_dir_all(p.cni())?;
    fs::write(p.cni().join("10-pods.conflist"), cni_network(p))?;
    if layout == Layout::Unified {
        fs::write(p.dir.join("cgroupns-spec.json"), cgroupns_spec()?)?;
        let wrapper = p.dir.join("runc-unified");
        fs::write(&wrapper, RUNC_UNIFIED)?;
        fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
    }
    fs::write(p.config(), config(p, pause, layout))
}

/// runc for the unified layout. This machine's cpu, memory and pids controllers stay bound to
/// their cgroup v1 hierarchies (the host mounted them; a controller in use in v1 cannot move to
/// v2), so the cgroup2 tree has no cpu.weight or memory.max to write, and runc fails
/// "openat2 .../cpu.weight: no such file or directory" on the CPU shares containerd gives
/// every sandbox. On a real cgroup v2 only node those files exist. The wrapper drops those
/// settings from the bundle before `runc create`; every cgroup, namespace and device rule
/// stays as containerd asked.
const RUNC_UNIFIED: &str = r#"#!/bin/sh
prev=""
for a in "$@"; do
  if [ "$prev" = "--bundle" ]; then
    python3 -c 'import json, sys
p = sys.argv[1] + "/config.json"
s = json.load(open(p))
r = s.get("linux", {}).get("resources", {})
for k in ("cpu", "memory", "pids", "hugepageLimits", "blockIO"):
    r.pop(k, None)
json.dump(s, open(p, "w"))' "$a" || exit 1
  fi
  prev="$a"
done
exec runc "$@"
"#;

/// The pods' network: `lo` up (the `loopback` plugin), and the `eth0` that containerd's CRI
/// insists on (RunPodSandbox fails with "failed to find network info for sandbox" unless the
/// CNI result names an `eth0` with an address: pkg/cri/server/sandbox_run.go,
/// `setupPodNetwork`) as a `ptp` veth to the node's namespace with an address from the
/// benchmarking range 198.18.0.0/15 and no route beyond its peer. No default route: a connect
/// to the IMDS address that is not redirected fails with ENETUNREACH, and the node's end is in
/// containerd's private namespace, which has no way out either. IPAM state stays in scratch.
fn cni_network(p: &Paths) -> String {
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "spot-sim-test-pods",
  "plugins": [
    {{"type": "loopback"}},
    {{"type": "ptp", "ipMasq": false, "ipam": {{
      "type": "host-local", "dataDir": "{}",
      "ranges": [[{{"subnet": "198.18.0.0/16"}}]], "routes": []
    }}}}
  ]
}}"#,
        p.dir.join("cni-ipam").display()
    )
}

/// containerd's own default OCI spec (`ctr oci spec`) with a cgroup namespace added. The CRI
/// plugin gives a container a cgroup namespace on a cgroup v2 host only when it is not
/// privileged ("For compatibility, cgroupns is not used when running in cgroup v1 mode or in
/// privileged", containerd pkg/cri/server/container_create_linux.go); a base spec that already
/// holds one keeps it for privileged containers too, so the debug pod sees only its own
/// sub-tree at /sys/fs/cgroup, as it would under a runtime that namespaces everything.
fn cgroupns_spec() -> io::Result<String> {
    let out = Command::new("ctr").args(["oci", "spec"]).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`ctr oci spec` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut spec: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(io::Error::other)?;
    let namespaces = spec
        .pointer_mut("/linux/namespaces")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or_else(|| io::Error::other("`ctr oci spec` has no linux.namespaces"))?;
    namespaces.push(serde_json::json!({"type": "cgroup"}));
    serde_json::to_string_pretty(&spec).map_err(io::Error::other)
}

/// Starts containerd in a private mount namespace, so every mount it and its shims make
/// (image root filesystems, /dev/shm, network namespace files) goes when they go and never
/// shows in the machine's mount table; and in a private network namespace with only `lo` up,
/// which is the node's network: a hostNetwork pod (and so a missed redirect from one) can
/// reach nothing off this machine. With [`Layout::Unified`] the mount namespace's
/// /sys/fs/cgroup is the cgroup2 mount itself, as on a cgroup v2 only node: containerd and
/// runc then see a unified host.
pub(crate) fn spawn(p: &Paths, layout: Layout) -> io::Result<Child> {
    let exec = format!(
        "ip link set lo up && exec containerd --config '{}'",
        p.config().display()
    );
    let script = match layout {
        Layout::Host => exec,
        Layout::Unified => {
            format!("umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && {exec}")
        }
    };
    let log = fs::File::create(p.log())?;
    Command::new("unshare")
        .args(["-m", "-n", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting containerd (unshare): {e}")))
}

/// The last lines containerd wrote, for an error.
pub(crate) fn log_tail(p: &Paths) -> String {
    let text = fs::read_to_string(p.log()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Stops containerd: SIGTERM, then SIGKILL after 10 s.
pub(crate) fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The shims (`containerd-shim-runc-v2 ... -address SOCKET`) that our containerd started: they
/// outlive it by design, so a node that could not remove a pod kills them itself, by pid.
pub(crate) fn our_shims(socket: &Path) -> Vec<i32> {
    processes_of(b"containerd-shim-runc-v2", b"-address", socket)
}

/// containerd daemons started with `--config CONFIG`, by pid.
pub(crate) fn our_daemons(config: &Path) -> Vec<i32> {
    processes_of(b"containerd", b"--config", config)
}

/// The pids of processes whose program ends with `program` and whose arguments hold `flag`
/// followed by `value`.
fn processes_of(program: &[u8], flag: &[u8], value: &Path) -> Vec<i32> {
    let want = value.as_os_str().as_encoded_bytes();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_it = args.first().is_some_and(|a| a.ends_with(program));
            let ours = args.windows(2).any(|w| w[0] == flag && w[1] == want);
            (is_it && ours).then_some(pid)
        })
        .collect()
}

/// Unmounts whatever is mounted under `dir` in our mount namespace (deepest first), so the
/// folder can be removed without reaching into a mount.
pub(crate) fn unmount_under(dir: &Path) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for _ in 0..3 {
        let mut mounts = mounts_under(dir);
        if mounts.is_empty() {
            return left;
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in &mounts {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        left = mounts;
    }
    mounts_under(dir)
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Every cgroup hierarchy this process sees that shows the whole tree (v1 controllers and v2),
/// from mountinfo, each with whether it is the v2 one.
pub(crate) fn cgroup_mounts() -> Vec<(PathBuf, bool)> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split_whitespace().collect();
            let fstype = right.split_whitespace().next()?;
            let mount = PathBuf::from(f.get(4)?);
            (matches!(fstype, "cgroup" | "cgroup2") && f.get(3) == Some(&"/"))
                .then_some((mount, fstype == "cgroup2"))
        })
        .collect()
}
