//! What a node left when its test process was killed (SIGKILL gives Drop no chance): found by
//! the process id in every name the kit makes (`spot-sim-test-TAG-PID-N`), and removed by the
//! next node that starts, only when that process is gone.

use std::{fs, path::Path};

use nix::{sys::signal::Signal, unistd::Pid};

use crate::{containerd, remove_cgroup_everywhere, POD_LOGS};

/// The pid in a `spot-sim-test-TAG-PID-N` name, if that process is gone.
fn dead_owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("spot-sim-test-")?;
    let mut parts = rest.rsplitn(3, '-');
    let (_n, pid) = (parts.next()?, parts.next()?);
    let pid: i32 = pid.parse().ok()?;
    let alive = Path::new(&format!("/proc/{pid}")).exists();
    (!alive).then_some(pid)
}

/// Stops the containerd and shims of dead nodes' scratch folders, removes their cgroups and
/// their pods' log folders, then the folders themselves (only when nothing is mounted there).
pub(crate) fn stale_nodes() {
    let tmp = std::env::temp_dir();
    for e in fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("spot-sim-test-node-") || dead_owner(&name).is_none() {
            continue;
        }
        let dir = e.path();
        let socket = dir.join("containerd.sock");
        for pid in containerd::our_daemons(&dir.join("config.toml"))
            .into_iter()
            .chain(containerd::our_shims(&socket))
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        if containerd::unmount_under(&dir).is_empty() {
            let _ = fs::remove_dir_all(&dir);
        }
    }
    for (mount, _) in containerd::cgroup_mounts() {
        for e in fs::read_dir(&mount).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("spot-sim-test-node-") && dead_owner(&name).is_some() {
                remove_cgroup_everywhere(&name);
            }
        }
    }
    for e in fs::read_dir(POD_LOGS).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // <namespace>_<name>_<uid>: the kit's pod names and namespaces are unique() names.
        let ours = name
            .split('_')
            .take(2)
            .any(|part| part.starts_with("spot-sim-test-") && dead_owner(part).is_some());
        if ours {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_dead_processes_are_swept() {
        let me = std::process::id();
        assert_eq!(dead_owner(&format!("spot-sim-test-node-{me}-3")), None);
        assert_eq!(dead_owner("spot-sim-test-node-4194999-3"), Some(4194999));
        assert_eq!(dead_owner("spot-sim-test-aws-x-4194999-7"), Some(4194999));
        assert_eq!(dead_owner("kube-system"), None);
        assert_eq!(dead_owner("spot-sim-test-node-x-3"), None);
    }
}
