//! Where the node is, as spot-sim sees it: the node's root filesystem, its `/proc`, its cgroup v2
//! mount and its cgroup v1 controller mounts. On the node itself these are `/`, `/proc` and
//! `/sys/fs/cgroup`; inside a `kubectl debug node` pod or a privileged Pod they are reached
//! through the node's `/` mounted at `/host`. Everything else in `target` asks a [`HostView`]
//! instead of hard-coding a path.

use std::{
    fs,
    path::{Component, Path, PathBuf},
};

/// Where the mount point of a debug container or Pod puts the node's `/`
/// (`kubectl debug node --profile=sysadmin` and our `deploy/` manifests).
const DEBUG_HOST_ROOT: &str = "/host";

/// Why the node's view (its `/`, `/proc` and cgroup v2 tree) could not be found.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "--host-root {}: no such directory; mount the node's / there (a hostPath volume), or leave --host-root out when running on the node itself",
        .path.display()
    )]
    NoHostRoot { path: PathBuf },

    #[error(
        "this node runs cgroup v1{}: spot-sim needs cgroup v2, because the kernel attaches cgroup sock_addr programs to cgroup v2 only; switch the node to cgroup v2 (boot with systemd.unified_cgroup_hierarchy=1, the default on current distributions and EKS AL2023 AMIs)",
        v1_hint(.kubepods.as_deref())
    )]
    CgroupV1Only {
        /// Where the pods' v1 cgroups were seen, when they were.
        kubepods: Option<PathBuf>,
    },

    #[error(
        "{} shows only this container's own cgroups (it has its own cgroup namespace), not the node's: run spot-sim in the node's cgroup and mount namespaces (`nsenter -t 1 -C -m -- spot-sim ...`) or give it the node's / (mounted at /host, or --host-root)",
        .seen.display()
    )]
    CgroupNamespaced { seen: PathBuf },
}

fn v1_hint(kubepods: Option<&Path>) -> String {
    kubepods.map_or_else(String::new, |p| format!(" (pods are in {})", p.display()))
}

/// The node's filesystems as this process sees them.
#[derive(Clone, Debug)]
pub struct HostView {
    /// The node's root filesystem: `/` on the node, `/host` in a debug container.
    pub root: PathBuf,
    /// The node's `/proc` (PID 1 there is the node's init).
    pub proc: PathBuf,
    /// The node's cgroup v2 mount, showing the whole tree (not a container's sub-tree).
    pub cgroup2: PathBuf,
    /// Where to search for the kubepods hierarchy: `cgroup2` unless the caller narrowed it.
    pub cgroup_root: PathBuf,
    /// The node's cgroup v1 controller mounts (empty on a pure cgroup v2 node); only used to
    /// explain that a cgroup v1 node cannot be targeted.
    pub cgroup_v1: Vec<PathBuf>,
}

impl HostView {
    /// A view with fixed paths and no detection: `proc` is `<root>/proc` and the kubepods search
    /// starts at `cgroup2`. For tests and callers that already know the layout.
    pub fn new(root: impl Into<PathBuf>, cgroup2: impl Into<PathBuf>) -> HostView {
        let root = root.into();
        let cgroup2 = cgroup2.into();
        HostView {
            proc: root.join("proc"),
            cgroup_root: cgroup2.clone(),
            root,
            cgroup2,
            cgroup_v1: Vec::new(),
        }
    }

    /// Finds the node from wherever spot-sim runs.
    ///
    /// * **Root.** `host_root` (`--host-root`) when given. Otherwise `/` when `/var/log/pods`
    ///   is there (we run on the node, or with the node's `/var/log/pods` mounted in place),
    ///   else `/host` when it holds `var/log/pods` or `etc/kubernetes` (a debug container),
    ///   else `/` (pod listing then says to pass `--host-root`).
    /// * **proc.** `<root>/proc` when it shows a PID 1, else our own `/proc` (right with
    ///   `hostPID: true`, which debug node pods have).
    /// * **cgroup v2.** A cgroup v2 mount shows the cgroup it was mounted from, and a container
    ///   with its own cgroup namespace (the default on cgroup v2 nodes) mounts only its own
    ///   sub-tree at `/sys/fs/cgroup`. So we take our own cgroup2 mount (from
    ///   `/proc/self/mountinfo`, never a hard-coded path: hybrid hosts mount it at
    ///   `/sys/fs/cgroup/unified`) only when it shows the whole tree: we share PID 1's cgroup
    ///   namespace and the mount's root is `/`, or the mount reaches above our namespace (a
    ///   hostPath bind of the node's `/sys/fs/cgroup`, whose root reads `/../..`). Otherwise we
    ///   use the node's own cgroup2 mount (from `<proc>/1/mountinfo`) under `root`, which shows
    ///   the whole tree whoever looks at it. With neither, detection fails and says to run in
    ///   the host's cgroup namespace (`nsenter -t 1 -C -m`) or with the node's `/` at
    ///   `/host`; guessing a narrower tree would resolve pods that are not the ones asked for.
    /// * **cgroup root.** `cgroup_root` when given (trusted as is, even when no cgroup v2
    ///   mount was found), else the cgroup v2 mount.
    ///
    /// A node with no cgroup v2 mount at all fails with [`HostError::CgroupV1Only`].
    pub fn detect(
        host_root: Option<&Path>,
        cgroup_root: Option<&Path>,
    ) -> Result<HostView, HostError> {
        Probe {
            fs_root: Path::new("/"),
            is_cgroup2: &is_cgroup2_mount,
        }
        .detect(host_root, cgroup_root)
    }
}

/// Parses `/proc/<pid>/mountinfo` text and returns the first cgroup v2 mount point.
pub fn cgroup2_mount_from_mountinfo(text: &str) -> Option<PathBuf> {
    cgroup_mounts(text)
        .into_iter()
        .find(|m| m.v2)
        .map(|m| m.mount_point)
}

/// One cgroup mount from mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CgroupMount {
    /// The cgroup the mount shows, relative to the reader's cgroup namespace (`/`, `/../..`).
    root: String,
    mount_point: PathBuf,
    /// `cgroup2` rather than a v1 `cgroup` controller mount.
    v2: bool,
}

/// Every cgroup (v1 and v2) mount in mountinfo order. Lines look like
/// `30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate`; the
/// optional fields before `-` vary in number, so the filesystem type is found after the `-`.
fn cgroup_mounts(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            let fstype = *fields.get(dash + 1)?;
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let root = fields.get(3)?;
            let mount_point = fields.get(4)?;
            Some(CgroupMount {
                root: unescape_octal(root),
                mount_point: PathBuf::from(unescape_octal(mount_point)),
                v2,
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in paths as `\040`-style octal escapes.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match escape {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup v2 line (`0::/path`) of `/proc/<pid>/cgroup`.
fn v2_cgroup_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// A mount root made only of `..` (`/..`, `/../..`): the mount shows a cgroup above the
/// reader's cgroup namespace root, i.e. more than our own sub-tree.
fn reaches_above_namespace(root: &str) -> bool {
    let mut parts = root.split('/').filter(|p| !p.is_empty()).peekable();
    parts.peek().is_some() && parts.all(|p| p == "..")
}

fn is_cgroup2_mount(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Detection over a filesystem rooted at `fs_root`, so tests can lay out a fake container
/// with a fake `/host` in a temporary directory.
struct Probe<'a> {
    fs_root: &'a Path,
    is_cgroup2: &'a dyn Fn(&Path) -> bool,
}

impl Probe<'_> {
    /// An absolute path of our own filesystem, under `fs_root`.
    fn at(&self, abs: impl AsRef<Path>) -> PathBuf {
        under(self.fs_root, abs.as_ref())
    }

    fn detect(
        &self,
        host_root: Option<&Path>,
        cgroup_root: Option<&Path>,
    ) -> Result<HostView, HostError> {
        let root = match host_root {
            Some(r) => {
                let r = self.at(r);
                if !r.is_dir() {
                    return Err(HostError::NoHostRoot { path: r });
                }
                r
            }
            None => self.default_root(),
        };
        let own_root = root == self.at("/");
        let proc = if !own_root && root.join("proc/1").is_dir() {
            root.join("proc")
        } else {
            self.at("/proc")
        };

        let own_mounts = fs::read_to_string(self.at("/proc/self/mountinfo"))
            .map(|t| cgroup_mounts(&t))
            .unwrap_or_default();
        let namespaced = self.cgroup_namespaced(&proc);
        log::debug!(
            "host root {}, proc {}, own cgroup namespace: {namespaced}",
            root.display(),
            proc.display()
        );

        // Our own mount, when it shows the whole tree.
        let own_v2 = own_mounts.iter().find(|m| {
            m.v2 && if namespaced {
                reaches_above_namespace(&m.root)
            } else {
                m.root == "/"
            }
        });
        let mut v1: Vec<PathBuf> = own_mounts
            .iter()
            .filter(|m| !m.v2)
            .map(|m| self.at(&m.mount_point))
            .collect();
        let mut cgroup2 = own_v2.map(|m| self.at(&m.mount_point));

        // Otherwise the node's own mount, through the node's root.
        if cgroup2.is_none() && !own_root {
            let node_mounts = fs::read_to_string(proc.join("1/mountinfo"))
                .map(|t| cgroup_mounts(&t))
                .unwrap_or_default();
            let node_v2: Vec<PathBuf> = if node_mounts.is_empty() {
                // PID 1's mountinfo is unreadable (no hostPID): try where systemd puts it.
                vec![
                    root.join("sys/fs/cgroup"),
                    root.join("sys/fs/cgroup/unified"),
                ]
            } else {
                node_mounts
                    .iter()
                    .filter(|m| m.v2)
                    .map(|m| under(&root, &m.mount_point))
                    .collect()
            };
            cgroup2 = node_v2.into_iter().find(|p| (self.is_cgroup2)(p));
            if cgroup2.is_some() || v1.is_empty() {
                v1 = node_mounts
                    .iter()
                    .filter(|m| !m.v2)
                    .map(|m| under(&root, &m.mount_point))
                    .collect();
            }
        }

        let cgroup2 = match (cgroup2, cgroup_root) {
            (Some(c), _) => c,
            (None, Some(given)) => self.at(given),
            (None, None) => {
                let any_v2 = own_mounts.iter().any(|m| m.v2);
                return Err(if any_v2 {
                    HostError::CgroupNamespaced {
                        seen: own_mounts
                            .iter()
                            .find(|m| m.v2)
                            .map(|m| self.at(&m.mount_point))
                            .unwrap_or_default(),
                    }
                } else {
                    HostError::CgroupV1Only { kubepods: None }
                });
            }
        };
        Ok(HostView {
            cgroup_root: cgroup_root.map_or_else(|| cgroup2.clone(), |c| self.at(c)),
            root,
            proc,
            cgroup2,
            cgroup_v1: v1,
        })
    }

    fn default_root(&self) -> PathBuf {
        let own = self.at("/");
        if own.join("var/log/pods").is_dir() {
            return own;
        }
        let host = self.at(DEBUG_HOST_ROOT);
        if host.join("var/log/pods").is_dir() || host.join("etc/kubernetes").is_dir() {
            log::info!(
                "running in a debug container: the node's root is {}",
                host.display()
            );
            return host;
        }
        own
    }

    /// Whether we are in a cgroup namespace other than the node's PID 1. The namespace links
    /// answer directly; when PID 1's link is unreadable, its cgroup path still gives it away,
    /// since cgroups outside our namespace read as `/../..`.
    fn cgroup_namespaced(&self, proc: &Path) -> bool {
        let ours = fs::read_link(self.at("/proc/self/ns/cgroup"));
        let init = fs::read_link(proc.join("1/ns/cgroup"));
        if let (Ok(ours), Ok(init)) = (ours, init) {
            return ours != init;
        }
        fs::read_to_string(proc.join("1/cgroup"))
            .ok()
            .as_deref()
            .and_then(v2_cgroup_path)
            .is_some_and(|p| p.starts_with("/.."))
    }
}

/// `abs` (an absolute path as some process sees it) below `base`.
fn under(base: &Path, abs: &Path) -> PathBuf {
    let mut out = base.to_path_buf();
    out.extend(
        abs.components()
            .filter(|c| matches!(c, Component::Normal(_))),
    );
    out
}

#[cfg(test)]
mod tests {
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
            fs::create_dir_all(p.parent().expect("a file below the root"))
                .expect("creating parents");
            fs::write(p, text).expect("writing a fake file");
            self
        }

        /// Namespace links are symlinks to names like `cgroup:[4026531835]`.
        fn ns_link(&self, rel: &str, target: &str) -> &Self {
            let p = self.path(rel);
            fs::create_dir_all(p.parent().expect("a link below the root"))
                .expect("creating parents");
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
}
