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
            cgroup2 = self.node_cgroup2(&root, &proc, &mut v1);
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

    /// The node's cgroup v2 mount seen through its root (from PID 1's mountinfo, or where
    /// systemd puts it); `v1` becomes the node's v1 mounts when that tells more.
    fn node_cgroup2(&self, root: &Path, proc: &Path, v1: &mut Vec<PathBuf>) -> Option<PathBuf> {
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
                .map(|m| under(root, &m.mount_point))
                .collect()
        };
        let cgroup2 = node_v2.into_iter().find(|p| (self.is_cgroup2)(p));
        if cgroup2.is_some() || v1.is_empty() {
            *v1 = node_mounts
                .iter()
                .filter(|m| !m.v2)
                .map(|m| under(root, &m.mount_point))
                .collect();
        }
        cgroup2
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
#[path = "host_tests.rs"]
mod tests;
