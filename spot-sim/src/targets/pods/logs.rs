//! kubelet's log folders, `/var/log/pods/<namespace>_<name>_<uid>/`: the one place on the
//! node that names its pods. They outlive a pod's cgroup, so a pod listed here need not be
//! running.

use std::{fs, io};

use super::error::PodError;
use super::selector::normalize_uid;
use crate::targets::host::HostView;

/// One `/var/log/pods/<namespace>_<name>_<uid>` folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LogDir {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) uid: String,
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

/// Every pod log folder under the node's root; other folders are skipped.
pub(super) fn pod_log_dirs(host: &HostView) -> Result<Vec<LogDir>, PodError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::pods::test_node::FakeNode;

    #[test]
    fn a_log_folder_name_is_namespace_name_and_uid() {
        assert_eq!(
            parse_log_dir("kube-system_handler_0F3C9A4E-5B1D-4C7E-9A2B-6D8E1F0A3B4C"),
            Some(LogDir {
                namespace: "kube-system".into(),
                name: "handler".into(),
                uid: "0f3c9a4e-5b1d-4c7e-9a2b-6d8e1f0a3b4c".into(),
            })
        );
        for other in ["not-a-pod-folder", "a_b", "a_b_c_d", "_b_c", "a__c", "a_b_"] {
            assert_eq!(parse_log_dir(other), None, "{other}");
        }
    }

    #[test]
    fn other_folders_beside_the_pods_are_skipped() {
        let node = FakeNode::new();
        node.logs("default", "web", "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
        node.mkdir("var/log/pods/not-a-pod-folder");
        let logs = pod_log_dirs(&node.host()).expect("reading the log folders");
        let names: Vec<&str> = logs.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["web"]);
    }

    #[test]
    fn a_machine_without_pod_logs_asks_for_the_host_root() {
        let node = FakeNode::bare();
        node.mkdir("sys/fs/cgroup/kubepods.slice");
        let err = pod_log_dirs(&node.host()).expect_err("no /var/log/pods");
        assert!(matches!(err, PodError::NoPodLogs { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&node.path("var/log/pods").display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("--host-root"), "{msg}");
    }
}
