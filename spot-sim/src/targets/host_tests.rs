//! The node's view, detected over fake filesystems laid out as a node, a debug container and
//! a pod with a host root.

use std::os::unix::fs::symlink;

use super::*;

const UNIFIED: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
24 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
27 25 0:25 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:10 - bpf bpf rw,mode=700
";

const HYBRID: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
";

const V1_ONLY: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
";

/// What a container with its own cgroup namespace sees: its sub-tree mounted at /sys/fs/cgroup.
const CONTAINER: &str = "\
1200 1100 0:300 / / rw,relatime master:400 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
1210 1200 0:310 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate
1220 1200 259:2 / /host ro,relatime master:1 - ext4 /dev/nvme0n1p2 rw
";

#[test]
fn a_pure_cgroup_v2_node_has_its_mount_at_sys_fs_cgroup() {
    assert_eq!(
        cgroup2_mount_from_mountinfo(UNIFIED),
        Some(PathBuf::from("/sys/fs/cgroup"))
    );
}

#[test]
fn a_hybrid_node_has_its_cgroup_v2_mount_at_unified() {
    assert_eq!(
        cgroup2_mount_from_mountinfo(HYBRID),
        Some(PathBuf::from("/sys/fs/cgroup/unified"))
    );
    let v1: Vec<_> = cgroup_mounts(HYBRID)
        .into_iter()
        .filter(|m| !m.v2)
        .collect();
    assert_eq!(v1.len(), 2);
    assert_eq!(
        v1[1].mount_point,
        PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
    );
}

#[test]
fn a_cgroup_v1_only_node_has_no_cgroup_v2_mount() {
    assert_eq!(cgroup2_mount_from_mountinfo(V1_ONLY), None);
    assert_eq!(cgroup2_mount_from_mountinfo(""), None);
}

#[test]
fn escaped_mount_points_are_decoded() {
    let text = "26 25 0:24 / /mnt/my\\040cgroup rw - cgroup2 none rw\n";
    assert_eq!(
        cgroup2_mount_from_mountinfo(text),
        Some(PathBuf::from("/mnt/my cgroup"))
    );
}

#[test]
fn a_mount_root_of_only_dotdots_reaches_above_the_namespace() {
    assert!(reaches_above_namespace("/.."));
    assert!(reaches_above_namespace("/../../.."));
    assert!(!reaches_above_namespace("/"));
    assert!(!reaches_above_namespace("/../kubepods.slice"));
}

/// A fake machine in a temporary directory.
struct FakeFs {
    dir: tempfile::TempDir,
}

impl FakeFs {
    fn new() -> FakeFs {
        FakeFs {
            dir: tempfile::tempdir().expect("creating a temporary directory"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn dir(&self, rel: &str) -> &Self {
        fs::create_dir_all(self.path(rel)).expect("creating a fake directory");
        self
    }

    fn file(&self, rel: &str, text: &str) -> &Self {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().expect("a file below the root")).expect("creating parents");
        fs::write(p, text).expect("writing a fake file");
        self
    }

    /// Namespace links are symlinks to names like `cgroup:[4026531835]`.
    fn ns_link(&self, rel: &str, target: &str) -> &Self {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().expect("a link below the root")).expect("creating parents");
        symlink(target, p).expect("creating a fake namespace link");
        self
    }

    /// Detection as if this directory were `/`; cgroup2 mounts are the directories named
    /// in `cgroup2_dirs`.
    fn detect(
        &self,
        host_root: Option<&Path>,
        cgroup2_dirs: &[&str],
    ) -> Result<HostView, HostError> {
        let mounts: Vec<PathBuf> = cgroup2_dirs.iter().map(|d| self.path(d)).collect();
        let is_cgroup2 = |p: &Path| mounts.iter().any(|m| m == p);
        Probe {
            fs_root: self.dir.path(),
            is_cgroup2: &is_cgroup2,
        }
        .detect(host_root, None)
    }
}

#[test]
fn on_the_node_itself_everything_is_where_the_node_keeps_it() {
    let node = FakeFs::new();
    node.dir("var/log/pods")
        .dir("proc/1")
        .file("proc/self/mountinfo", UNIFIED)
        .ns_link("proc/self/ns/cgroup", "cgroup:[4026531835]")
        .ns_link("proc/1/ns/cgroup", "cgroup:[4026531835]")
        .dir("host/var/log/pods"); // a stray /host does not win over the node's own logs

    let host = node.detect(None, &[]).expect("detecting the node");
    assert_eq!(host.root, node.path(""));
    assert_eq!(host.proc, node.path("proc"));
    assert_eq!(host.cgroup2, node.path("sys/fs/cgroup"));
    assert_eq!(host.cgroup_root, host.cgroup2);
    assert!(host.cgroup_v1.is_empty());
}

/// `kubectl debug node/N --profile=sysadmin`: the node's / at /host, hostPID, and our own
/// cgroup namespace, so our /sys/fs/cgroup is only the debug container's sub-tree.
fn debug_container() -> FakeFs {
    let fs = FakeFs::new();
    fs.file("proc/self/mountinfo", CONTAINER)
        .ns_link("proc/self/ns/cgroup", "cgroup:[4026532999]")
        .ns_link("host/proc/1/ns/cgroup", "cgroup:[4026531835]")
        .file("host/proc/1/mountinfo", UNIFIED)
        .dir("host/var/log/pods")
        .dir("host/sys/fs/cgroup/kubepods.slice")
        .dir("sys/fs/cgroup");
    fs
}

#[test]
fn a_debug_container_finds_the_node_under_host() {
    let fs = debug_container();
    let host = fs
        .detect(None, &["sys/fs/cgroup", "host/sys/fs/cgroup"])
        .expect("detecting the node from a debug container");
    assert_eq!(host.root, fs.path("host"));
    assert_eq!(host.proc, fs.path("host/proc"));
    // Not the container's own /sys/fs/cgroup: that shows only the container's cgroup.
    assert_eq!(host.cgroup2, fs.path("host/sys/fs/cgroup"));
}

#[test]
fn a_debug_container_notices_the_namespace_from_pid_1s_cgroup_path_alone() {
    let fs = FakeFs::new();
    fs.file("proc/self/mountinfo", CONTAINER)
        .file("host/proc/1/cgroup", "0::/../../../init.scope\n")
        .file("host/proc/1/mountinfo", UNIFIED)
        .dir("host/etc/kubernetes")
        .dir("host/sys/fs/cgroup");
    let host = fs
        .detect(None, &["sys/fs/cgroup", "host/sys/fs/cgroup"])
        .expect("detecting the node");
    assert_eq!(host.root, fs.path("host"));
    assert_eq!(host.cgroup2, fs.path("host/sys/fs/cgroup"));
}

#[test]
fn a_hostpath_bind_of_the_nodes_cgroup_tree_is_used_in_place() {
    let fs = FakeFs::new();
    let bound = "1210 1200 0:24 /../../.. /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
    fs.file("proc/self/mountinfo", bound)
        .ns_link("proc/self/ns/cgroup", "cgroup:[4026532999]")
        .ns_link("proc/1/ns/cgroup", "cgroup:[4026531835]")
        .dir("host/var/log/pods")
        .dir("sys/fs/cgroup");
    let host = fs.detect(None, &[]).expect("detecting the node");
    assert_eq!(host.cgroup2, fs.path("sys/fs/cgroup"));
}

#[test]
fn the_deploy_manifests_layout_finds_the_nodes_cgroup_tree_under_host() {
    // deploy/pod.yaml: hostPID, only /var/log/pods and /sys/fs/cgroup of the node mounted
    // under /host, and the container's own cgroup namespace mount at /sys/fs/cgroup.
    let fs = FakeFs::new();
    let mounts = format!(
        "{CONTAINER}1230 1200 259:2 /var/log/pods /host/var/log/pods ro,relatime - ext4 /dev/nvme0n1p2 rw\n\
         1240 1200 0:24 /../../.. /host/sys/fs/cgroup ro,relatime - cgroup2 cgroup2 rw\n"
    );
    fs.file("proc/self/mountinfo", &mounts)
        .ns_link("proc/self/ns/cgroup", "cgroup:[4026532999]")
        .ns_link("proc/1/ns/cgroup", "cgroup:[4026531835]")
        .dir("host/var/log/pods")
        .dir("host/sys/fs/cgroup")
        .dir("sys/fs/cgroup");
    let host = fs
        .detect(Some(Path::new("/host")), &[])
        .expect("detecting the node in the deploy Pod");
    assert_eq!(host.root, fs.path("host"));
    assert_eq!(
        host.proc,
        fs.path("proc"),
        "hostPID: our own /proc is the node's"
    );
    assert_eq!(host.cgroup2, fs.path("host/sys/fs/cgroup"));
}

#[test]
fn an_explicit_host_root_wins_and_must_exist() {
    let fs = debug_container();
    fs.dir("node/var/log/pods");
    let host = fs
        .detect(Some(Path::new("/node")), &["host/sys/fs/cgroup"])
        .expect("detecting with --host-root");
    assert_eq!(host.root, fs.path("node"));

    let err = fs
        .detect(Some(Path::new("/nowhere")), &[])
        .expect_err("a missing --host-root is an error");
    assert!(matches!(err, HostError::NoHostRoot { .. }), "{err:?}");
    assert_says(&err, &["--host-root"]);
}

#[test]
fn a_namespaced_container_without_the_nodes_root_is_told_how_to_run() {
    let fs = FakeFs::new();
    fs.file("proc/self/mountinfo", CONTAINER)
        .ns_link("proc/self/ns/cgroup", "cgroup:[4026532999]")
        .ns_link("proc/1/ns/cgroup", "cgroup:[4026531835]")
        .dir("sys/fs/cgroup");
    let err = fs
        .detect(None, &["sys/fs/cgroup"])
        .expect_err("only a sub-tree is visible");
    assert!(matches!(err, HostError::CgroupNamespaced { .. }), "{err:?}");
    assert_says(&err, &["nsenter -t 1 -C", "--host-root"]);
}

#[test]
fn a_cgroup_v1_only_node_is_refused_with_the_switch_to_flip() {
    let fs = FakeFs::new();
    fs.dir("var/log/pods").file("proc/self/mountinfo", V1_ONLY);
    let err = fs.detect(None, &[]).expect_err("no cgroup v2 at all");
    assert!(matches!(err, HostError::CgroupV1Only { .. }), "{err:?}");
    assert_says(&err, &["cgroup v2", "systemd.unified_cgroup_hierarchy=1"]);
}

/// The error's message names each of `says` (the problem and its fix).
fn assert_says(err: &HostError, says: &[&str]) {
    let msg = err.to_string();
    for s in says {
        assert!(msg.contains(s), "{s}: {msg}");
    }
}

#[test]
fn a_hybrid_node_uses_its_unified_mount_and_remembers_the_v1_controllers() {
    let fs = FakeFs::new();
    fs.dir("var/log/pods").file("proc/self/mountinfo", HYBRID);
    let host = fs.detect(None, &[]).expect("detecting a hybrid node");
    assert_eq!(host.cgroup2, fs.path("sys/fs/cgroup/unified"));
    assert_eq!(
        host.cgroup_v1,
        vec![
            fs.path("sys/fs/cgroup/systemd"),
            fs.path("sys/fs/cgroup/cpu,cpuacct")
        ]
    );
}
