//! Why a pod could not be listed or resolved: one error for the whole pod resolver, each
//! message naming the problem and the fix.

use std::{io, path::PathBuf};

use crate::targets::host::HostError;

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
