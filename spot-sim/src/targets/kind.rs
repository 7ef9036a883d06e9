//! What the user names as a target, parsed once where it is typed (the command line, the
//! experiment file) and carried as such: over the control socket, to the one resolver that
//! turns it into a cgroup and a network namespace (`cli/resolve.rs`).

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::PodSelector;

/// A kind of target. Adding one is a variant here and its resolution in `Resolver::resolve`:
/// the compiler shows every other place that must handle it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// A cgroup, absolute or relative to the cgroup v2 mount (`--cgroup`).
    Cgroup(PathBuf),
    /// A pod on this node, by name, name prefix or uid (`--pod`, `--pod-uid`); its pod-level
    /// cgroup, so containers restarted later stay covered.
    Pod(PodSelector),
    /// The command `spot-sim exec` runs: the transient cgroup made for it, and the network
    /// namespace it runs in.
    Exec { cgroup: PathBuf, netns: ExecNetns },
}

/// The network namespace of `exec`'s command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ExecNetns {
    /// The command keeps spot-sim's network namespace (a real handler's normal network).
    Current,
    /// A fresh namespace with only loopback: nothing the command does can leave the machine.
    New,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetKind::Cgroup(path) => write!(f, "cgroup {}", path.display()),
            TargetKind::Pod(sel) => write!(f, "pod {sel}"),
            TargetKind::Exec { .. } => f.write_str("exec"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_crosses_the_control_socket_as_it_was_parsed() {
        for kind in [
            TargetKind::Cgroup("/system.slice/handler.service".into()),
            TargetKind::Pod("kube-system/nth-*".parse().unwrap()),
            TargetKind::Pod("shop/checkout".parse().unwrap()),
            TargetKind::Pod(PodSelector::uid("0F3C9A4E_5B1D").unwrap()),
            TargetKind::Exec {
                cgroup: "/spot-sim-exec-1".into(),
                netns: ExecNetns::New,
            },
        ] {
            let wire = serde_json::to_string(&kind).unwrap();
            assert_eq!(
                serde_json::from_str::<TargetKind>(&wire).unwrap(),
                kind,
                "{wire}"
            );
        }
        // What arrives is checked as what is typed: a uid of spaces is no pod.
        let bad = r#"{"pod":{"uid":"not a uid"}}"#;
        assert!(serde_json::from_str::<TargetKind>(bad).is_err());
    }
}
