//! A fake Kubernetes node for the pod resolver's unit tests: kubelet's log folders and a
//! kubepods cgroup tree as plain directories, laid out by hand for each driver and QoS class.

use std::{fs, path::PathBuf};

use super::kubepods::{Driver, Qos};
use crate::targets::host::HostView;

pub(super) const HANDLER_UID: &str = "0f3c9a4e-5b1d-4c7e-9a2b-6d8e1f0a3b4c";
pub(super) const WEB_UID: &str = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

/// A fake Kubernetes node in a temporary directory: a root with `var/log/pods` and a
/// cgroup v2 tree of plain directories at `sys/fs/cgroup`.
pub(super) struct FakeNode {
    dir: tempfile::TempDir,
}

impl FakeNode {
    pub(super) fn new() -> FakeNode {
        let node = FakeNode::bare();
        node.mkdir("var/log/pods");
        node.mkdir("sys/fs/cgroup/system.slice/kubelet.service");
        node
    }

    /// An empty root: no pod logs, no cgroup tree.
    pub(super) fn bare() -> FakeNode {
        FakeNode {
            dir: tempfile::tempdir().expect("creating a temporary directory"),
        }
    }

    pub(super) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(super) fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).expect("creating a fake directory");
        p
    }

    pub(super) fn host(&self) -> HostView {
        HostView::new(self.path(""), self.path("sys/fs/cgroup"))
    }

    /// kubelet's log folder for a pod.
    pub(super) fn logs(&self, namespace: &str, name: &str, uid: &str) -> &Self {
        self.mkdir(&format!("var/log/pods/{namespace}_{name}_{uid}"));
        self
    }

    /// The pod cgroup kubelet makes for `uid`, below the cgroup tree's `kubepods` dir.
    pub(super) fn pod_cgroup(
        &self,
        kubepods: &str,
        driver: Driver,
        qos: Qos,
        uid: &str,
    ) -> PathBuf {
        let rel = pod_cgroup_path(kubepods, driver, qos, uid);
        self.mkdir(&format!("sys/fs/cgroup/{rel}"))
    }

    /// A running Burstable pod under the systemd driver, the common case (EKS nodes).
    pub(super) fn burstable(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.running(namespace, name, uid, Driver::Systemd, Qos::Burstable)
    }

    /// A running pod: logs plus a pod cgroup.
    pub(super) fn running(
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
