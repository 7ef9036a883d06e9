//! What to target: cgroup v2 directories (given, transient, or a pod's), the node they live on
//! (seen from the node itself or from a debug container), and the network namespaces their
//! processes use.

pub mod cgroup;
pub mod host;
pub mod kind;
pub mod netns;
pub mod pods;
pub mod process;
pub mod visible;
pub mod watch;

pub use cgroup::{CgroupDir, CgroupError, TargetScope, TransientCgroup};
pub use host::{HostError, HostView};
pub use kind::{ExecNetns, TargetKind};
pub use netns::{NetNs, NetNsError};
pub use pods::{Pod, PodError, PodSelector};
pub use visible::{visible_pids, HiddenPids};
pub use watch::{CgroupChange, CgroupWatch};
