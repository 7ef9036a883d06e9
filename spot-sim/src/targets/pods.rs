//! Pods on this node, found from the node alone (no API server): kubelet's log folders
//! (`/var/log/pods/<namespace>_<name>_<uid>/`) name them, and the kubepods cgroup hierarchy
//! says which are running and where. Resolution returns the *pod* cgroup, so an attach there
//! covers every container of the pod, including ones restarted later.
//!
//! Both kubelet cgroup drivers and all QoS classes are understood:
//!
//! | driver   | Guaranteed                   | Burstable / BestEffort                                         |
//! | -------- | ---------------------------- | -------------------------------------------------------------- |
//! | systemd  | `kubepods-pod<u_i_d>.slice`  | `kubepods-burstable.slice/kubepods-burstable-pod<u_i_d>.slice` |
//! | cgroupfs | `kubepods/pod<u-i-d>`        | `kubepods/burstable/pod<u-i-d>`                                |
//!
//! The kubepods hierarchy need not be at the top of the cgroup tree (kind and other nested
//! nodes put it at `kubelet.slice/kubelet-kubepods.slice` or `kubelet/kubepods`), so it is
//! searched for.

use crate::escape::{untrusted, untrusted_path};
use std::{
    collections::{BTreeMap, VecDeque},
    fmt, fs, io,
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::Serialize;

use super::host::{HostError, HostView};

/// How deep below the cgroup root the kubepods hierarchy may be. kind nodes under Docker put
/// it at `system.slice/docker-<id>.scope/kubelet.slice/kubelet-kubepods.slice` (depth 4).
const KUBEPODS_SEARCH_DEPTH: usize = 5;

/// How many similar names an unknown-pod error suggests.
const CLOSEST_NAMES: usize = 3;

/// A pod's Kubernetes QoS class, as its cgroup's place in the kubepods hierarchy tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl fmt::Display for Qos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        })
    }
}

/// Which kubelet cgroup driver made the pod's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Driver {
    Systemd,
    Cgroupfs,
}

/// A pod known to this node.
#[derive(Clone, Debug, Serialize)]
pub struct Pod {
    /// Empty only for a pod resolved by uid whose log folder is gone.
    pub namespace: String,
    /// Empty only for a pod resolved by uid whose log folder is gone.
    pub name: String,
    /// With dashes, as the API server writes it.
    pub uid: String,
    /// `None` when the pod has no cgroup.
    pub qos: Option<Qos>,
    /// `None` when the pod has no cgroup.
    pub driver: Option<Driver>,
    /// The pod-level cgroup; `None` when only the logs are left (the pod is not running here).
    pub cgroup: Option<PathBuf>,
    /// The pod's container cgroups (containerd, CRI-O, Docker), sorted. CRI-O's `conmon`
    /// monitors are not containers and are left out.
    pub containers: Vec<PathBuf>,
}

impl Pod {
    /// `namespace/name`, as users type it.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Which pod the user means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodSelector {
    /// `NAMESPACE/NAME`.
    Name { namespace: String, name: String },
    /// `NAMESPACE/PREFIX*`: the one running pod whose name starts with the prefix. A DaemonSet
    /// of spot-sim needs it to pick, on each node, that node's pod of another DaemonSet
    /// (`kube-system/aws-node-termination-handler-*`), whose names end in a random suffix.
    NamePrefix { namespace: String, prefix: String },
    /// The pod's `metadata.uid`, with dashes.
    Uid(String),
}

impl PodSelector {
    /// Selects by uid, written with dashes (as `kubectl get pod -o jsonpath='{.metadata.uid}'`
    /// prints it) or with the underscores of systemd slice names.
    pub fn uid(uid: &str) -> Result<PodSelector, PodError> {
        let normal = normalize_uid(uid);
        let valid = !normal.is_empty() && normal.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if !valid {
            return Err(PodError::BadUid {
                given: uid.to_owned(),
            });
        }
        Ok(PodSelector::Uid(normal))
    }
}

impl FromStr for PodSelector {
    type Err = PodError;

    /// Parses `NAMESPACE/NAME` or `NAMESPACE/PREFIX*`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PodError::BadSelector {
            given: s.to_owned(),
        };
        let (namespace, name) = s.split_once('/').ok_or_else(bad)?;
        let (stem, is_prefix) = match name.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (name, false),
        };
        if namespace.is_empty()
            || stem.is_empty()
            || [namespace, stem].iter().any(|p| p.contains(['/', '*']))
        {
            return Err(bad());
        }
        let namespace = namespace.to_owned();
        Ok(if is_prefix {
            PodSelector::NamePrefix {
                namespace,
                prefix: stem.to_owned(),
            }
        } else {
            PodSelector::Name {
                namespace,
                name: stem.to_owned(),
            }
        })
    }
}

impl fmt::Display for PodSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodSelector::Name { namespace, name } => write!(f, "{namespace}/{name}"),
            PodSelector::NamePrefix { namespace, prefix } => write!(f, "{namespace}/{prefix}*"),
            PodSelector::Uid(uid) => write!(f, "uid {uid}"),
        }
    }
}

/// Why a pod could not be listed or resolved. Each message names the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(
        "invalid pod `{given}`: expected NAMESPACE/NAME or NAMESPACE/PREFIX*, e.g. kube-system/aws-node-termination-handler-x7k2p or kube-system/aws-node-termination-handler-* (or select by uid with --pod-uid)"
    )]
    BadSelector { given: String },

    #[error(
        "invalid pod uid `{given}`: expected the pod's metadata.uid, e.g. 0f3c9a4e-5b1d-4c7e-9a2b-6d8e1f0a3b4c (kubectl get pod NAME -o jsonpath='{{.metadata.uid}}')"
    )]
    BadUid { given: String },

    #[error("no pod {pod} on this node{}; list pods with --list-pods", closest_hint(.closest))]
    UnknownPod {
        /// What the user asked for: `namespace/name` or `namespace/prefix*`.
        pod: String,
        /// Up to three similar `namespace/name`s on this node.
        closest: Vec<String>,
    },

    #[error("no pod with uid {uid} on this node; list pods with --list-pods")]
    UnknownUid { uid: String },

    #[error(
        "pod {pod} (uid {uid}) is not running on this node anymore: its logs are here but its cgroup is gone; list running pods with --list-pods"
    )]
    PodGone { pod: String, uid: String },

    #[error(
        "{pod} matches {} running pods on this node ({}), e.g. while a pod is being recreated; pick one with --pod-uid",
        .running.len(),
        .running.join(", ")
    )]
    Ambiguous {
        /// What the user asked for: `namespace/name` or `namespace/prefix*`.
        pod: String,
        /// `namespace/name uid <uid>` of each running match.
        running: Vec<String>,
    },

    #[error(
        "no kubepods cgroup hierarchy under {}: not a Kubernetes node? use --cgroup or --host-root",
        .cgroup_root.display()
    )]
    NoKubepods { cgroup_root: PathBuf },

    #[error(
        "no pod logs at {}: not a Kubernetes node, or the node's / is mounted elsewhere? point at it with --host-root (e.g. --host-root /host)",
        .dir.display()
    )]
    NoPodLogs { dir: PathBuf },

    /// Where the node's pods live could not be found (see [`HostError`]).
    #[error(transparent)]
    Host(#[from] HostError),

    #[error("reading {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn closest_hint(closest: &[String]) -> String {
    if closest.is_empty() {
        String::new()
    } else {
        format!(" (closest: {})", closest.join(", "))
    }
}

/// Every pod kubelet keeps logs for on this node, running or not, sorted by namespace/name.
pub fn list_pods(host: &HostView) -> Result<Vec<Pod>, PodError> {
    let logs = pod_log_dirs(host)?;
    let cgroups = PodCgroups::scan(host)?;
    let mut pods: Vec<Pod> = logs.into_iter().map(|l| cgroups.pod(l)).collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)));
    Ok(pods)
}

/// The running pod `sel` names, with its pod cgroup.
pub fn resolve(host: &HostView, sel: &PodSelector) -> Result<Pod, PodError> {
    match sel {
        PodSelector::Name { namespace, name } => resolve_by_name(host, namespace, name, false),
        PodSelector::NamePrefix { namespace, prefix } => {
            resolve_by_name(host, namespace, prefix, true)
        }
        PodSelector::Uid(uid) => {
            let uid = normalize_uid(uid);
            let cgroups = PodCgroups::scan(host)?;
            // The logs only add the name; without them the uid alone still targets the pod.
            let log = match pod_log_dirs(host) {
                Ok(logs) => logs.into_iter().find(|l| l.uid == uid),
                Err(PodError::NoPodLogs { .. }) => None,
                Err(e) => return Err(e),
            };
            let pod = cgroups.pod(log.unwrap_or_else(|| LogDir {
                namespace: String::new(),
                name: String::new(),
                uid: uid.clone(),
            }));
            match pod.cgroup {
                Some(_) => Ok(pod),
                None if pod.name.is_empty() => Err(PodError::UnknownUid { uid }),
                None => Err(PodError::PodGone {
                    pod: pod.full_name(),
                    uid,
                }),
            }
        }
    }
}

/// The one running pod in `namespace` named `stem`, or whose name starts with it.
fn resolve_by_name(
    host: &HostView,
    namespace: &str,
    stem: &str,
    is_prefix: bool,
) -> Result<Pod, PodError> {
    let matches = |name: &str| {
        if is_prefix {
            name.starts_with(stem)
        } else {
            name == stem
        }
    };
    let typed = if is_prefix {
        format!("{namespace}/{stem}*")
    } else {
        format!("{namespace}/{stem}")
    };
    let pods = list_pods(host)?;
    let known: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.namespace == namespace && matches(&p.name))
        .collect();
    let mut running: Vec<&Pod> = known
        .iter()
        .copied()
        .filter(|p| p.cgroup.is_some())
        .collect();
    match (running.len(), known.first()) {
        (1, _) => Ok(running.remove(0).clone()),
        (0, Some(gone)) => Err(PodError::PodGone {
            pod: gone.full_name(),
            uid: gone.uid.clone(),
        }),
        (0, None) => Err(PodError::UnknownPod {
            closest: closest_names(&format!("{namespace}/{stem}"), &pods),
            pod: typed,
        }),
        _ => Err(PodError::Ambiguous {
            pod: typed,
            running: running
                .iter()
                .map(|p| format!("{} uid {}", p.full_name(), p.uid))
                .collect(),
        }),
    }
}

/// The `--list-pods` table: NAMESPACE NAME UID QOS CGROUP, `-` where a pod has no cgroup.
pub fn render_table(pods: &[Pod]) -> String {
    let header = ["NAMESPACE", "NAME", "UID", "QOS", "CGROUP"].map(String::from);
    let rows: Vec<[String; 5]> = pods
        .iter()
        .map(|p| {
            // Folder names on the node: whoever can write /var/log/pods chose them.
            [
                untrusted(&p.namespace),
                untrusted(&p.name),
                untrusted(&p.uid),
                p.qos.map_or_else(|| "-".to_owned(), |q| q.to_string()),
                p.cgroup
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |c| untrusted_path(c)),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One `/var/log/pods/<namespace>_<name>_<uid>` folder.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LogDir {
    namespace: String,
    name: String,
    uid: String,
}

/// Namespaces and pod names are DNS names and uids are hex with dashes, so none holds `_`:
/// splitting on it is exact.
fn parse_log_dir(dir_name: &str) -> Option<LogDir> {
    let mut parts = dir_name.split('_');
    let (namespace, name, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || namespace.is_empty() || name.is_empty() || uid.is_empty() {
        return None;
    }
    Some(LogDir {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: normalize_uid(uid),
    })
}

fn pod_log_dirs(host: &HostView) -> Result<Vec<LogDir>, PodError> {
    let dir = host.root.join("var/log/pods");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(PodError::NoPodLogs { dir }),
        Err(source) => return Err(PodError::Io { path: dir, source }),
    };
    let mut logs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PodError::Io {
            path: dir.clone(),
            source,
        })?;
        match entry.file_name().to_str().and_then(parse_log_dir) {
            Some(log) => logs.push(log),
            None => log::debug!(
                "ignoring {}: not <namespace>_<name>_<uid>",
                entry.path().display()
            ),
        }
    }
    Ok(logs)
}

fn normalize_uid(uid: &str) -> String {
    uid.trim().replace('_', "-").to_ascii_lowercase()
}

/// One pod cgroup found in a kubepods hierarchy.
#[derive(Clone, Debug)]
struct PodCgroup {
    path: PathBuf,
    qos: Qos,
    driver: Driver,
}

/// Every pod cgroup on the node, by uid.
struct PodCgroups {
    by_uid: BTreeMap<String, PodCgroup>,
}

impl PodCgroups {
    fn scan(host: &HostView) -> Result<PodCgroups, PodError> {
        let roots = find_kubepods(&host.cgroup_root);
        if roots.is_empty() {
            return Err(no_kubepods(host));
        }
        let mut by_uid = BTreeMap::new();
        for root in &roots {
            scan_kubepods(root, &mut by_uid);
        }
        Ok(PodCgroups { by_uid })
    }

    fn pod(&self, log: LogDir) -> Pod {
        let found = self.by_uid.get(&log.uid);
        Pod {
            qos: found.map(|c| c.qos),
            driver: found.map(|c| c.driver),
            containers: found.map(|c| containers(&c.path)).unwrap_or_default(),
            cgroup: found.map(|c| c.path.clone()),
            namespace: log.namespace,
            name: log.name,
            uid: log.uid,
        }
    }
}

/// Without kubepods under the cgroup v2 root, a kubepods under a cgroup v1 controller means a
/// cgroup v1 node, which deserves its own explanation.
fn no_kubepods(host: &HostView) -> PodError {
    let v1_kubepods = host
        .cgroup_v1
        .iter()
        .find_map(|m| find_kubepods(m).into_iter().next());
    match v1_kubepods {
        Some(kubepods) => PodError::Host(HostError::CgroupV1Only {
            kubepods: Some(kubepods),
        }),
        None => PodError::NoKubepods {
            cgroup_root: host.cgroup_root.clone(),
        },
    }
}

fn is_kubepods_name(name: &str) -> bool {
    name == "kubepods" || name == "kubepods.slice" || name.ends_with("-kubepods.slice")
}

/// Breadth-first search for kubepods hierarchies, a few levels deep, without following
/// symlinks and without descending into a hierarchy once found. There is usually one; a host
/// running several kind nodes has one per node.
fn find_kubepods(cgroup_root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut queue = VecDeque::from([(cgroup_root.to_path_buf(), 0usize)]);
    while let Some((dir, depth)) = queue.pop_front() {
        for child in subdirs(&dir) {
            let is_kubepods = child
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_kubepods_name);
            if is_kubepods {
                found.push(child);
            } else if depth + 1 < KUBEPODS_SEARCH_DEPTH {
                queue.push_back((child, depth + 1));
            }
        }
    }
    found
}

/// Real subdirectories, sorted; symlinks and unreadable directories are skipped, since a
/// cgroup tree has neither and we only read it.
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// Records the pod cgroups of one kubepods hierarchy.
fn scan_kubepods(kubepods: &Path, by_uid: &mut BTreeMap<String, PodCgroup>) {
    let name = kubepods
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    // systemd nests slice names: `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice`,
    // and `kubelet-kubepods.slice` on nested nodes prefixes each of them with `kubelet-`.
    let (driver, prefix) = match name.strip_suffix(".slice") {
        Some(prefix) => (Driver::Systemd, prefix),
        None => (Driver::Cgroupfs, ""),
    };
    let classes = [
        (Qos::Guaranteed, None),
        (Qos::Burstable, Some("burstable")),
        (Qos::BestEffort, Some("besteffort")),
    ];
    for (qos, class) in classes {
        let (dir, pod_prefix) = match (driver, class) {
            (Driver::Systemd, None) => (kubepods.to_path_buf(), format!("{prefix}-pod")),
            (Driver::Systemd, Some(c)) => (
                kubepods.join(format!("{prefix}-{c}.slice")),
                format!("{prefix}-{c}-pod"),
            ),
            (Driver::Cgroupfs, None) => (kubepods.to_path_buf(), "pod".to_owned()),
            (Driver::Cgroupfs, Some(c)) => (kubepods.join(c), "pod".to_owned()),
        };
        for pod_dir in subdirs(&dir) {
            let Some(file_name) = pod_dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let uid = file_name
                .strip_prefix(pod_prefix.as_str())
                .and_then(|rest| match driver {
                    Driver::Systemd => rest.strip_suffix(".slice"),
                    Driver::Cgroupfs => Some(rest),
                });
            if let Some(uid) = uid.filter(|u| !u.is_empty()) {
                by_uid.insert(
                    normalize_uid(uid),
                    PodCgroup {
                        path: pod_dir.clone(),
                        qos,
                        driver,
                    },
                );
            }
        }
    }
}

/// The container cgroups below a pod cgroup.
fn containers(pod_cgroup: &Path) -> Vec<PathBuf> {
    subdirs(pod_cgroup)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_container_name)
        })
        .collect()
}

/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `crio-<id>`, `docker-<id>.scope` (systemd
/// driver) or a bare `<id>` (cgroupfs driver), `<id>` being 64 hex digits. CRI-O's
/// `crio-conmon-<id>.scope` holds the container's monitor process, not the container.
fn is_container_name(name: &str) -> bool {
    let is_id = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let scoped = name.strip_suffix(".scope");
    let prefixed = |prefix: &str| {
        scoped
            .and_then(|s| s.strip_prefix(prefix))
            .is_some_and(is_id)
    };
    is_id(name)
        || prefixed("cri-containerd-")
        || prefixed("crio-")
        || prefixed("docker-")
        || name.strip_prefix("crio-").is_some_and(is_id)
}

/// Up to [`CLOSEST_NAMES`] `namespace/name`s like `wanted`: names containing the wanted name
/// (or contained in it) first, then by edit distance between the names, the same namespace
/// winning ties. Names that share too little to help are left out; a right name in the wrong
/// namespace is always offered.
fn closest_names(wanted: &str, pods: &[Pod]) -> Vec<String> {
    let (wanted_ns, wanted_name) = wanted.split_once('/').unwrap_or(("", wanted));
    let mut scored: Vec<(bool, usize, bool, String)> = pods
        .iter()
        .filter_map(|pod| {
            let name = pod.name.as_str();
            let contains = !wanted_name.is_empty()
                && !name.is_empty()
                && (name.contains(wanted_name) || wanted_name.contains(name));
            let distance = edit_distance(wanted_name, name);
            let near = distance <= wanted_name.chars().count().max(name.chars().count()) / 2;
            (contains || near).then(|| {
                (
                    !contains,
                    distance,
                    pod.namespace != wanted_ns,
                    pod.full_name(),
                )
            })
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.3 == b.3);
    scored
        .into_iter()
        .take(CLOSEST_NAMES)
        .map(|(_, _, _, name)| name)
        .collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANDLER_UID: &str = "0f3c9a4e-5b1d-4c7e-9a2b-6d8e1f0a3b4c";
    const WEB_UID: &str = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    const CONTAINERD_ID: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const SANDBOX_ID: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    /// A fake Kubernetes node in a temporary directory: a root with `var/log/pods` and a
    /// cgroup v2 tree of plain directories at `sys/fs/cgroup`.
    struct FakeNode {
        dir: tempfile::TempDir,
    }

    impl FakeNode {
        fn new() -> FakeNode {
            let node = FakeNode {
                dir: tempfile::tempdir().expect("creating a temporary directory"),
            };
            node.mkdir("var/log/pods");
            node.mkdir("sys/fs/cgroup/system.slice/kubelet.service");
            node
        }

        fn bare() -> FakeNode {
            FakeNode {
                dir: tempfile::tempdir().expect("creating a temporary directory"),
            }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn mkdir(&self, rel: &str) -> PathBuf {
            let p = self.path(rel);
            fs::create_dir_all(&p).expect("creating a fake directory");
            p
        }

        fn host(&self) -> HostView {
            HostView::new(self.path(""), self.path("sys/fs/cgroup"))
        }

        /// kubelet's log folder for a pod.
        fn logs(&self, namespace: &str, name: &str, uid: &str) -> &Self {
            self.mkdir(&format!("var/log/pods/{namespace}_{name}_{uid}"));
            self
        }

        /// The pod cgroup kubelet makes for `uid`, below the cgroup tree's `kubepods` dir.
        fn pod_cgroup(&self, kubepods: &str, driver: Driver, qos: Qos, uid: &str) -> PathBuf {
            let rel = pod_cgroup_path(kubepods, driver, qos, uid);
            self.mkdir(&format!("sys/fs/cgroup/{rel}"))
        }

        /// A running pod: logs plus a pod cgroup.
        fn running(
            &self,
            namespace: &str,
            name: &str,
            uid: &str,
            driver: Driver,
            qos: Qos,
        ) -> PathBuf {
            self.logs(namespace, name, uid);
            let kubepods = match driver {
                Driver::Systemd => "kubepods.slice",
                Driver::Cgroupfs => "kubepods",
            };
            self.pod_cgroup(kubepods, driver, qos, uid)
        }
    }

    /// Where kubelet puts a pod cgroup, written out by hand for each driver and class.
    fn pod_cgroup_path(kubepods: &str, driver: Driver, qos: Qos, uid: &str) -> String {
        let u = uid.replace('-', "_");
        let p = kubepods.trim_end_matches(".slice");
        let p = p.rsplit('/').next().unwrap_or(p);
        match (driver, qos) {
            (Driver::Systemd, Qos::Guaranteed) => format!("{kubepods}/{p}-pod{u}.slice"),
            (Driver::Systemd, Qos::Burstable) => {
                format!("{kubepods}/{p}-burstable.slice/{p}-burstable-pod{u}.slice")
            }
            (Driver::Systemd, Qos::BestEffort) => {
                format!("{kubepods}/{p}-besteffort.slice/{p}-besteffort-pod{u}.slice")
            }
            (Driver::Cgroupfs, Qos::Guaranteed) => format!("{kubepods}/pod{uid}"),
            (Driver::Cgroupfs, Qos::Burstable) => format!("{kubepods}/burstable/pod{uid}"),
            (Driver::Cgroupfs, Qos::BestEffort) => format!("{kubepods}/besteffort/pod{uid}"),
        }
    }

    fn by_name(s: &str) -> PodSelector {
        s.parse().expect("a valid NAMESPACE/NAME")
    }

    #[test]
    fn every_driver_and_qos_class_resolves_by_name_and_by_uid() {
        for driver in [Driver::Systemd, Driver::Cgroupfs] {
            for qos in [Qos::Guaranteed, Qos::Burstable, Qos::BestEffort] {
                let node = FakeNode::new();
                let cgroup = node.running("kube-system", "handler", HANDLER_UID, driver, qos);
                node.running("default", "web", WEB_UID, driver, Qos::Burstable);
                let host = node.host();

                let pod = resolve(&host, &by_name("kube-system/handler"))
                    .unwrap_or_else(|e| panic!("{driver:?}/{qos:?} by name: {e}"));
                assert_eq!(pod.cgroup.as_ref(), Some(&cgroup), "{driver:?}/{qos:?}");
                assert_eq!(pod.qos, Some(qos));
                assert_eq!(pod.driver, Some(driver));
                assert_eq!(pod.uid, HANDLER_UID);

                let sel = PodSelector::uid(HANDLER_UID).expect("a valid uid");
                let pod = resolve(&host, &sel)
                    .unwrap_or_else(|e| panic!("{driver:?}/{qos:?} by uid: {e}"));
                assert_eq!(pod.cgroup.as_ref(), Some(&cgroup));
                assert_eq!(pod.full_name(), "kube-system/handler");
            }
        }
    }

    #[test]
    fn a_uid_written_with_underscores_or_capitals_selects_the_same_pod() {
        assert_eq!(
            PodSelector::uid(&HANDLER_UID.replace('-', "_").to_uppercase()).expect("a valid uid"),
            PodSelector::Uid(HANDLER_UID.to_owned())
        );
        let err = PodSelector::uid("not a uid").expect_err("spaces are not a uid");
        assert!(err.to_string().contains("metadata.uid"), "{err}");
    }

    #[test]
    fn a_pod_selector_is_namespace_slash_name() {
        assert_eq!(
            by_name("kube-system/handler"),
            PodSelector::Name {
                namespace: "kube-system".into(),
                name: "handler".into()
            }
        );
        assert_eq!(
            by_name("kube-system/handler-*"),
            PodSelector::NamePrefix {
                namespace: "kube-system".into(),
                prefix: "handler-".into()
            }
        );
        assert_eq!(
            by_name("kube-system/handler-*").to_string(),
            "kube-system/handler-*"
        );
        for bad in [
            "handler",
            "/handler",
            "kube-system/",
            "a/b/c",
            "",
            "ns/*",
            "ns/a*b",
            "*/a",
        ] {
            let err = bad.parse::<PodSelector>().expect_err("not NAMESPACE/NAME");
            assert!(
                err.to_string().contains("expected NAMESPACE/NAME"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn containerd_crio_and_docker_containers_are_listed_but_conmon_is_not() {
        let node = FakeNode::new();
        let pod = node.running("default", "web", WEB_UID, Driver::Systemd, Qos::Burstable);
        for leaf in [
            format!("cri-containerd-{CONTAINERD_ID}.scope"),
            format!("crio-{SANDBOX_ID}.scope"),
            format!("crio-conmon-{SANDBOX_ID}.scope"),
            format!("docker-{}.scope", "3".repeat(64)),
            format!("crio-{}", "4".repeat(64)),
            "5".repeat(64),
            "not-a-container".to_owned(),
        ] {
            fs::create_dir(pod.join(leaf)).expect("creating a container cgroup");
        }
        fs::write(pod.join("cgroup.procs"), "").expect("writing a cgroup file");

        let found = resolve(&node.host(), &by_name("default/web")).expect("resolving default/web");
        let names: Vec<String> = found
            .containers
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            names,
            vec![
                "5".repeat(64),
                format!("cri-containerd-{CONTAINERD_ID}.scope"),
                format!("crio-{SANDBOX_ID}.scope"),
                format!("crio-{}", "4".repeat(64)),
                format!("docker-{}.scope", "3".repeat(64)),
            ]
        );
    }

    #[test]
    fn a_kind_node_nested_below_the_cgroup_root_is_found() {
        let node = FakeNode::new();
        node.logs("kube-system", "handler", HANDLER_UID);
        let nested = "system.slice/docker-abc.scope/kubelet.slice/kubelet-kubepods.slice";
        let cgroup = node.pod_cgroup(nested, Driver::Systemd, Qos::BestEffort, HANDLER_UID);
        assert!(cgroup.ends_with(format!(
            "kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{}.slice",
            HANDLER_UID.replace('-', "_")
        )));
        node.logs("default", "web", WEB_UID);
        let web = node.pod_cgroup(
            "kubelet/kubepods",
            Driver::Cgroupfs,
            Qos::Guaranteed,
            WEB_UID,
        );

        let host = node.host();
        let pod =
            resolve(&host, &by_name("kube-system/handler")).expect("resolving in a nested node");
        assert_eq!(pod.cgroup, Some(cgroup));
        assert_eq!(pod.qos, Some(Qos::BestEffort));
        let pod =
            resolve(&host, &by_name("default/web")).expect("resolving under kubelet/kubepods");
        assert_eq!(pod.cgroup, Some(web));
    }

    #[test]
    fn the_search_does_not_follow_symlinks() {
        let node = FakeNode::new();
        node.logs("default", "web", WEB_UID);
        let elsewhere = node.mkdir("elsewhere/kubepods.slice");
        fs::create_dir(elsewhere.join(format!("kubepods-pod{}.slice", WEB_UID.replace('-', "_"))))
            .expect("creating a pod cgroup outside the tree");
        std::os::unix::fs::symlink(node.path("elsewhere"), node.path("sys/fs/cgroup/link"))
            .expect("creating a symlink into the tree");
        let err =
            resolve(&node.host(), &by_name("default/web")).expect_err("symlinks are not cgroups");
        assert!(matches!(err, PodError::NoKubepods { .. }), "{err:?}");
    }

    #[test]
    fn pods_are_listed_sorted_and_rendered_as_a_table() {
        let node = FakeNode::new();
        node.running(
            "kube-system",
            "handler",
            HANDLER_UID,
            Driver::Systemd,
            Qos::Guaranteed,
        );
        node.running("default", "web", WEB_UID, Driver::Systemd, Qos::BestEffort);
        node.logs("default", "old-job", "9d8c7b6a-0000-4000-8000-000000000000");
        node.mkdir("var/log/pods/not-a-pod-folder");

        let pods = list_pods(&node.host()).expect("listing pods");
        let names: Vec<String> = pods.iter().map(Pod::full_name).collect();
        assert_eq!(
            names,
            ["default/old-job", "default/web", "kube-system/handler"]
        );
        assert_eq!(pods[0].cgroup, None);
        assert_eq!(pods[0].qos, None);

        let table = render_table(&pods);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        for column in ["NAMESPACE", "NAME", "UID", "QOS", "CGROUP"] {
            assert!(lines[0].contains(column), "{table}");
        }
        let first: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(first[..2], ["default", "old-job"], "{table}");
        assert!(
            lines[1].ends_with('-'),
            "a pod without a cgroup shows -: {table}"
        );
        assert!(lines[2].contains("BestEffort"), "{table}");
        assert!(
            lines[3].contains(WEB_UID) || lines[3].contains(HANDLER_UID),
            "{table}"
        );
        // Columns line up: every row starts its UID where the header's UID starts.
        let uid_col = lines[0].find("UID").expect("a UID column");
        assert!(lines[3][uid_col..].starts_with(HANDLER_UID), "{table}");
    }

    #[test]
    fn a_misspelt_pod_is_refused_with_the_closest_names() {
        let node = FakeNode::new();
        node.running(
            "kube-system",
            "handler-7d9f",
            HANDLER_UID,
            Driver::Systemd,
            Qos::Burstable,
        );
        node.running("default", "web", WEB_UID, Driver::Systemd, Qos::Burstable);
        node.running(
            "kube-system",
            "coredns-5d78c",
            "aaaaaaaa-0000-4000-8000-000000000001",
            Driver::Systemd,
            Qos::Burstable,
        );

        let err = resolve(&node.host(), &by_name("kube-system/handlr")).expect_err("no such pod");
        assert!(matches!(err, PodError::UnknownPod { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "no pod kube-system/handlr on this node (closest: kube-system/handler-7d9f); list pods with --list-pods"
        );

        let err = resolve(&node.host(), &by_name("kube-system/web")).expect_err("wrong namespace");
        assert!(err.to_string().contains("(closest: default/web)"), "{err}");

        let err = resolve(&node.host(), &by_name("kube-system/zzzzzzzzzzzzzzzzzzzz"))
            .expect_err("no such pod");
        assert_eq!(
            err.to_string(),
            "no pod kube-system/zzzzzzzzzzzzzzzzzzzz on this node; list pods with --list-pods"
        );
    }

    #[test]
    fn closest_names_prefer_substrings_and_stop_at_three() {
        let pods: Vec<Pod> = [
            "handler-a",
            "handler-b",
            "handler-c",
            "handler-d",
            "handlers",
        ]
        .iter()
        .map(|n| Pod {
            namespace: "ns".into(),
            name: (*n).into(),
            uid: String::new(),
            qos: None,
            driver: None,
            cgroup: None,
            containers: Vec::new(),
        })
        .collect();
        assert_eq!(
            closest_names("ns/handler", &pods),
            ["ns/handlers", "ns/handler-a", "ns/handler-b"]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn a_pod_whose_cgroup_is_gone_is_not_running_here_anymore() {
        let node = FakeNode::new();
        node.running("default", "web", WEB_UID, Driver::Systemd, Qos::Burstable);
        node.logs("kube-system", "handler", HANDLER_UID);

        let err =
            resolve(&node.host(), &by_name("kube-system/handler")).expect_err("the pod is gone");
        assert!(matches!(err, PodError::PodGone { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("kube-system/handler"), "{msg}");
        assert!(msg.contains("not running on this node anymore"), "{msg}");

        let sel = PodSelector::uid(HANDLER_UID).expect("a valid uid");
        let err = resolve(&node.host(), &sel).expect_err("the pod is gone");
        assert!(matches!(err, PodError::PodGone { .. }), "{err:?}");

        let sel = PodSelector::uid("deadbeef-0000-4000-8000-000000000000").expect("a valid uid");
        let err = resolve(&node.host(), &sel).expect_err("no such uid");
        assert!(
            err.to_string().starts_with("no pod with uid deadbeef-"),
            "{err}"
        );
    }

    #[test]
    fn a_pod_being_recreated_is_ambiguous_until_a_uid_is_given() {
        let node = FakeNode::new();
        let old_uid = HANDLER_UID;
        let new_uid = "1e2d3c4b-5a69-4788-9a6b-5c4d3e2f1a0b";
        node.running(
            "kube-system",
            "handler",
            old_uid,
            Driver::Systemd,
            Qos::Burstable,
        );
        let new = node.running(
            "kube-system",
            "handler",
            new_uid,
            Driver::Systemd,
            Qos::Burstable,
        );

        let err =
            resolve(&node.host(), &by_name("kube-system/handler")).expect_err("two live pods");
        assert!(matches!(err, PodError::Ambiguous { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(old_uid) && msg.contains(new_uid), "{msg}");
        assert!(msg.contains("--pod-uid"), "{msg}");

        let pod = resolve(
            &node.host(),
            &PodSelector::uid(new_uid).expect("a valid uid"),
        )
        .expect("the uid picks one");
        assert_eq!(pod.cgroup, Some(new));
    }

    #[test]
    fn a_daemonset_pod_is_picked_on_each_node_by_its_name_prefix() {
        let node = FakeNode::new();
        let nth = "aws-node-termination-handler";
        let cgroup = node.running(
            "kube-system",
            &format!("{nth}-x7k2p"),
            HANDLER_UID,
            Driver::Systemd,
            Qos::Burstable,
        );
        node.running(
            "kube-system",
            "coredns-5d78c",
            WEB_UID,
            Driver::Systemd,
            Qos::Burstable,
        );
        let sel = by_name(&format!("kube-system/{nth}-*"));

        let pod = resolve(&node.host(), &sel).expect("one pod matches the prefix");
        assert_eq!(pod.cgroup, Some(cgroup));
        assert_eq!(pod.name, format!("{nth}-x7k2p"));

        let other = "1e2d3c4b-5a69-4788-9a6b-5c4d3e2f1a0b";
        node.running(
            "kube-system",
            &format!("{nth}-webhook-abcde"),
            other,
            Driver::Systemd,
            Qos::Burstable,
        );
        let err = resolve(&node.host(), &sel).expect_err("two pods match the prefix");
        assert_eq!(
            err.to_string(),
            format!(
                "kube-system/{nth}-* matches 2 running pods on this node (kube-system/{nth}-webhook-abcde uid {other}, kube-system/{nth}-x7k2p uid {HANDLER_UID}), e.g. while a pod is being recreated; pick one with --pod-uid"
            )
        );

        let err =
            resolve(&node.host(), &by_name("default/aws-node-*")).expect_err("wrong namespace");
        assert!(err.to_string().starts_with("no pod default/aws-node-* on this node (closest: kube-system/aws-node-termination-handler-"), "{err}");
    }

    #[test]
    fn an_old_instance_whose_cgroup_is_gone_does_not_make_a_name_ambiguous() {
        let node = FakeNode::new();
        node.logs(
            "kube-system",
            "handler",
            "1e2d3c4b-5a69-4788-9a6b-5c4d3e2f1a0b",
        );
        let live = node.running(
            "kube-system",
            "handler",
            HANDLER_UID,
            Driver::Cgroupfs,
            Qos::Burstable,
        );
        let pod =
            resolve(&node.host(), &by_name("kube-system/handler")).expect("one live instance");
        assert_eq!(pod.cgroup, Some(live));
    }

    #[test]
    fn a_machine_without_kubepods_is_not_a_kubernetes_node() {
        let node = FakeNode::new();
        node.logs("default", "web", WEB_UID);
        let err = list_pods(&node.host()).expect_err("no kubepods");
        assert!(matches!(err, PodError::NoKubepods { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "no kubepods cgroup hierarchy under {}: not a Kubernetes node? use --cgroup or --host-root",
                node.path("sys/fs/cgroup").display()
            )
        );
    }

    #[test]
    fn a_machine_without_pod_logs_asks_for_the_host_root() {
        let node = FakeNode::bare();
        node.mkdir("sys/fs/cgroup/kubepods.slice");
        let err = list_pods(&node.host()).expect_err("no /var/log/pods");
        assert!(matches!(err, PodError::NoPodLogs { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&node.path("var/log/pods").display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("--host-root"), "{msg}");
    }

    #[test]
    fn a_uid_resolves_even_without_pod_logs() {
        let node = FakeNode::bare();
        let cgroup = node.pod_cgroup(
            "kubepods.slice",
            Driver::Systemd,
            Qos::Guaranteed,
            HANDLER_UID,
        );
        let pod = resolve(
            &node.host(),
            &PodSelector::uid(HANDLER_UID).expect("a valid uid"),
        )
        .expect("the cgroup alone is enough");
        assert_eq!(pod.cgroup, Some(cgroup));
        assert_eq!(pod.name, "");
    }

    #[test]
    fn a_cgroup_v1_node_with_pods_under_a_controller_is_told_to_switch_to_v2() {
        let node = FakeNode::new();
        node.logs("default", "web", WEB_UID);
        // Hybrid layout: an empty unified tree, the pods under the v1 controllers.
        node.mkdir("sys/fs/cgroup/unified/system.slice");
        let cpu = node.mkdir(&format!(
            "sys/fs/cgroup/cpu,cpuacct/kubepods/burstable/pod{WEB_UID}"
        ));
        let mut host = HostView::new(node.path(""), node.path("sys/fs/cgroup/unified"));
        host.cgroup_v1 = vec![node.path("sys/fs/cgroup/cpu,cpuacct")];
        assert!(cpu.is_dir());

        let err = resolve(&host, &by_name("default/web")).expect_err("cgroup v1 pods");
        assert!(
            matches!(
                err,
                PodError::Host(HostError::CgroupV1Only { kubepods: Some(_) })
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("needs cgroup v2"), "{msg}");
        assert!(msg.contains("systemd.unified_cgroup_hierarchy=1"), "{msg}");
        assert!(msg.contains("cpu,cpuacct/kubepods"), "{msg}");
    }
}
