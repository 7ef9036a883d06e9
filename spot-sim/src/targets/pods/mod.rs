//! Pods on this node, found from the node alone (no API server): kubelet's log folders
//! (`/var/log/pods/<namespace>_<name>_<uid>/`, `logs.rs`) name them, and the kubepods cgroup
//! hierarchy (`kubepods.rs`) says which are running and where. Resolution returns the *pod*
//! cgroup, so an attach there covers every container of the pod, including ones restarted
//! later. What the user typed is a [`PodSelector`]; a name that matches no pod is answered
//! with the closest ones (`suggestions.rs`).

mod error;
mod kubepods;
mod logs;
mod selector;
mod suggestions;
#[cfg(test)]
mod test_node;

use std::path::PathBuf;

use serde::Serialize;

use crate::escape::{untrusted, untrusted_path};
use crate::targets::host::HostView;
use kubepods::PodCgroups;
use logs::{pod_log_dirs, LogDir};
use selector::normalize_uid;
use suggestions::closest_names;

pub use error::PodError;
pub use kubepods::{Driver, Qos};
pub use selector::PodSelector;

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

/// Every pod kubelet keeps logs for on this node, running or not, sorted by namespace/name.
pub fn list_pods(host: &HostView) -> Result<Vec<Pod>, PodError> {
    let logs = pod_log_dirs(host)?;
    let cgroups = PodCgroups::scan(host)?;
    let mut pods: Vec<Pod> = logs.into_iter().map(|l| pod(&cgroups, l)).collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)));
    Ok(pods)
}

/// The running pod `sel` names, with its pod cgroup.
pub fn resolve(host: &HostView, sel: &PodSelector) -> Result<Pod, PodError> {
    match sel {
        PodSelector::Name { .. } | PodSelector::NamePrefix { .. } => resolve_by_name(host, sel),
        PodSelector::Uid(uid) => {
            let uid = normalize_uid(uid);
            let cgroups = PodCgroups::scan(host)?;
            // The logs only add the name; without them the uid alone still targets the pod.
            let log = match pod_log_dirs(host) {
                Ok(logs) => logs.into_iter().find(|l| l.uid == uid),
                Err(PodError::NoPodLogs { .. }) => None,
                Err(e) => return Err(e),
            };
            let pod = pod(
                &cgroups,
                log.unwrap_or_else(|| LogDir {
                    namespace: String::new(),
                    name: String::new(),
                    uid: uid.clone(),
                }),
            );
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

/// The one running pod `sel` (by name or name prefix) names.
fn resolve_by_name(host: &HostView, sel: &PodSelector) -> Result<Pod, PodError> {
    let typed = sel.to_string();
    let pods = list_pods(host)?;
    let known: Vec<&Pod> = pods.iter().filter(|p| sel.matches(p)).collect();
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
            closest: closest_names(
                typed.trim_end_matches('*'),
                pods.iter().map(|p| (p.namespace.as_str(), p.name.as_str())),
            ),
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
/// What the node knows of the pod a log folder names: its cgroup, if it still runs here.
fn pod(cgroups: &PodCgroups, log: LogDir) -> Pod {
    let found = cgroups.get(&log.uid);
    Pod {
        qos: found.map(|c| c.qos),
        driver: found.map(|c| c.driver),
        containers: found.map(|c| c.containers()).unwrap_or_default(),
        cgroup: found.map(|c| c.path.clone()),
        namespace: log.namespace,
        name: log.name,
        uid: log.uid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_node::{FakeNode, HANDLER_UID, WEB_UID};

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
        node.burstable("kube-system", "handler-7d9f", HANDLER_UID);
        node.burstable("default", "web", WEB_UID);
        node.burstable(
            "kube-system",
            "coredns-5d78c",
            "aaaaaaaa-0000-4000-8000-000000000001",
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
    fn a_pod_whose_cgroup_is_gone_is_not_running_here_anymore() {
        let node = FakeNode::new();
        node.burstable("default", "web", WEB_UID);
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
        node.burstable("kube-system", "handler", old_uid);
        let new = node.burstable("kube-system", "handler", new_uid);

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
        let cgroup = node.burstable("kube-system", &format!("{nth}-x7k2p"), HANDLER_UID);
        node.burstable("kube-system", "coredns-5d78c", WEB_UID);
        let sel = by_name(&format!("kube-system/{nth}-*"));

        let pod = resolve(&node.host(), &sel).expect("one pod matches the prefix");
        assert_eq!(pod.cgroup, Some(cgroup));
        assert_eq!(pod.name, format!("{nth}-x7k2p"));

        let other = "1e2d3c4b-5a69-4788-9a6b-5c4d3e2f1a0b";
        node.burstable("kube-system", &format!("{nth}-webhook-abcde"), other);
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
}
