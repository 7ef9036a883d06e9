//! Whether spot-sim can see a target's processes. The kernel writes every pid of
//! `cgroup.procs` as the reader's PID namespace numbers it, and a process outside that
//! namespace as 0 (kernel/cgroup/cgroup.c: `cgroup_procs_show` prints `task_pid_vnr`). spot-sim
//! finds the network namespace to serve from a target's pids, so a spot-sim in a pod without
//! the node's PID namespace (no `hostPID: true`) sees only zeros: it must say so, never guess
//! a namespace (it used to serve its own and log "serving", while the workload was refused).

use std::path::PathBuf;

use super::CgroupDir;
use crate::escape::untrusted_path;

/// A target whose processes are outside spot-sim's PID namespace.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot see the processes of {}: they are outside spot-sim's PID namespace (cgroup.procs lists them as pid 0), so spot-sim cannot find the network namespace to serve them in; run spot-sim in the node's PID namespace: `hostPID: true` in its Pod spec (as in deploy/pod.yaml; `kubectl debug node --profile=sysadmin` has it), or on the node itself",
    untrusted_path(.cgroup)
)]
pub struct HiddenPids {
    pub cgroup: PathBuf,
}

/// Every pid in `cgroup` and below, or [`HiddenPids`] when any of them is outside spot-sim's
/// PID namespace.
pub fn visible_pids(cgroup: &CgroupDir) -> Result<Vec<u32>, HiddenPids> {
    let pids = cgroup.pids();
    if pids.contains(&0) {
        return Err(HiddenPids {
            cgroup: cgroup.path().to_path_buf(),
        });
    }
    Ok(pids)
}
