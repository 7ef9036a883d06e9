//! The kubepods cgroup hierarchy: which pods run on this node, their pod cgroup, QoS class and
//! containers. Both kubelet cgroup drivers and all QoS classes are understood:
//!
//! | driver   | Guaranteed                   | Burstable / BestEffort                                         |
//! | -------- | ---------------------------- | -------------------------------------------------------------- |
//! | systemd  | `kubepods-pod<u_i_d>.slice`  | `kubepods-burstable.slice/kubepods-burstable-pod<u_i_d>.slice` |
//! | cgroupfs | `kubepods/pod<u-i-d>`        | `kubepods/burstable/pod<u-i-d>`                                |
//!
//! The kubepods hierarchy need not be at the top of the cgroup tree (kind and other nested
//! nodes put it at `kubelet.slice/kubelet-kubepods.slice` or `kubelet/kubepods`), so it is
//! searched for.

use std::{
    collections::{BTreeMap, VecDeque},
    fmt, fs,
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::error::PodError;
use super::selector::normalize_uid;
use crate::targets::host::{HostError, HostView};

/// How deep below the cgroup root the kubepods hierarchy may be. kind nodes under Docker put
/// it at `system.slice/docker-<id>.scope/kubelet.slice/kubelet-kubepods.slice` (depth 4).
const KUBEPODS_SEARCH_DEPTH: usize = 5;

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

/// One pod cgroup found in a kubepods hierarchy.
#[derive(Clone, Debug)]
pub(super) struct PodCgroup {
    pub(super) path: PathBuf,
    pub(super) qos: Qos,
    pub(super) driver: Driver,
}

impl PodCgroup {
    /// The pod's container cgroups, sorted.
    pub(super) fn containers(&self) -> Vec<PathBuf> {
        subdirs(&self.path)
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_container_name)
            })
            .collect()
    }
}

/// Every pod cgroup on the node, by uid.
pub(super) struct PodCgroups {
    by_uid: BTreeMap<String, PodCgroup>,
}

impl PodCgroups {
    pub(super) fn scan(host: &HostView) -> Result<PodCgroups, PodError> {
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

    /// The pod cgroup of `uid` (normalized), if the pod runs here.
    pub(super) fn get(&self, uid: &str) -> Option<&PodCgroup> {
        self.by_uid.get(uid)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::pods::test_node::{FakeNode, HANDLER_UID, WEB_UID};

    const CONTAINERD_ID: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const SANDBOX_ID: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn scan(host: &HostView) -> PodCgroups {
        PodCgroups::scan(host).expect("scanning the kubepods hierarchy")
    }

    #[test]
    fn containerd_crio_and_docker_containers_are_listed_but_conmon_is_not() {
        let node = FakeNode::new();
        let pod = node.burstable("default", "web", WEB_UID);
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

        let cgroups = scan(&node.host());
        let found = cgroups.get(WEB_UID).expect("the pod cgroup");
        let names: Vec<String> = found
            .containers()
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
        let nested = "system.slice/docker-abc.scope/kubelet.slice/kubelet-kubepods.slice";
        let cgroup = node.pod_cgroup(nested, Driver::Systemd, Qos::BestEffort, HANDLER_UID);
        assert!(cgroup.ends_with(format!(
            "kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{}.slice",
            HANDLER_UID.replace('-', "_")
        )));
        let web = node.pod_cgroup(
            "kubelet/kubepods",
            Driver::Cgroupfs,
            Qos::Guaranteed,
            WEB_UID,
        );

        let cgroups = scan(&node.host());
        let found = cgroups.get(HANDLER_UID).expect("the pod in a nested node");
        assert_eq!(found.path, cgroup);
        assert_eq!(found.qos, Qos::BestEffort);
        let found = cgroups
            .get(WEB_UID)
            .expect("the pod under kubelet/kubepods");
        assert_eq!(found.path, web);
    }

    #[test]
    fn the_search_does_not_follow_symlinks() {
        let node = FakeNode::new();
        let elsewhere = node.mkdir("elsewhere/kubepods.slice");
        fs::create_dir(elsewhere.join(format!("kubepods-pod{}.slice", WEB_UID.replace('-', "_"))))
            .expect("creating a pod cgroup outside the tree");
        std::os::unix::fs::symlink(node.path("elsewhere"), node.path("sys/fs/cgroup/link"))
            .expect("creating a symlink into the tree");
        let err = PodCgroups::scan(&node.host())
            .err()
            .expect("symlinks are not cgroups");
        assert!(matches!(err, PodError::NoKubepods { .. }), "{err:?}");
    }

    #[test]
    fn a_machine_without_kubepods_is_not_a_kubernetes_node() {
        let node = FakeNode::new();
        let err = PodCgroups::scan(&node.host()).err().expect("no kubepods");
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
    fn a_cgroup_v1_node_with_pods_under_a_controller_is_told_to_switch_to_v2() {
        let node = FakeNode::new();
        // Hybrid layout: an empty unified tree, the pods under the v1 controllers.
        node.mkdir("sys/fs/cgroup/unified/system.slice");
        let cpu = node.mkdir(&format!(
            "sys/fs/cgroup/cpu,cpuacct/kubepods/burstable/pod{WEB_UID}"
        ));
        let mut host = HostView::new(node.path(""), node.path("sys/fs/cgroup/unified"));
        host.cgroup_v1 = vec![node.path("sys/fs/cgroup/cpu,cpuacct")];
        assert!(cpu.is_dir());

        let err = PodCgroups::scan(&host).err().expect("cgroup v1 pods");
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
