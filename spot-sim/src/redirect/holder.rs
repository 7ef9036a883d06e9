//! Who else redirects a cgroup: another spot-sim's programs attached directly to it, found in
//! the kernel (BPF_PROG_QUERY), not through a lock file that a debug container with its own
//! `/run` would not see.

use std::{
    fs,
    os::fd::{AsFd, AsRawFd},
};

use aya::{maps::MapInfo, programs::loaded_programs};

/// `BPF_PROG_QUERY` from `enum bpf_cmd`.
const BPF_PROG_QUERY: libc::c_long = 16;
/// `BPF_CGROUP_INET4_CONNECT` from `enum bpf_attach_type`.
const BPF_CGROUP_INET4_CONNECT: u32 = 10;
/// More programs than this on one hook of one cgroup is not a spot-sim setup we care about.
const MAX_QUERIED: usize = 64;

/// The `query` member of `union bpf_attr`, as far as we use it (the rest stays zero).
#[repr(C)]
#[derive(Default)]
struct ProgQuery {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// Another spot-sim's connect4 program on the cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub prog_id: u32,
    /// The process holding the program's link, when it is visible in our `/proc`.
    pub process: Option<(u32, String)>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.process {
            Some((pid, comm)) => write!(f, "pid {pid} ({comm}), eBPF program id {}", self.prog_id),
            None => write!(
                f,
                "eBPF program id {} (its process is not visible from here)",
                self.prog_id
            ),
        }
    }
}

/// A program named `connect4` that uses a map named `TARGETS`, attached directly to `cgroup`,
/// other than `ours`. Inherited programs (a spot-sim on a parent cgroup) do not count: the
/// innermost rewrite wins, so nested targets work by design.
pub fn other_spot_sim(cgroup: impl AsFd, ours: u32) -> Option<Holder> {
    let ids = attached_connect4(cgroup.as_fd().as_raw_fd()).ok()?;
    ids.into_iter()
        .filter(|id| *id != ours)
        .find(|id| is_spot_sim(*id))
        .map(|prog_id| Holder {
            prog_id,
            process: process_holding(prog_id),
        })
}

/// Program ids attached directly (not inherited) to the cgroup's connect4 hook.
fn attached_connect4(fd: i32) -> std::io::Result<Vec<u32>> {
    let mut ids = [0u32; MAX_QUERIED];
    let mut attr = ProgQuery {
        target_fd: fd as u32,
        attach_type: BPF_CGROUP_INET4_CONNECT,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: MAX_QUERIED as u32,
        ..Default::default()
    };
    // SAFETY: `attr` is a zero-padded bpf_attr prefix the kernel reads and writes within its
    // size; `prog_ids` points at MAX_QUERIED u32s that outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            std::ptr::addr_of_mut!(attr),
            std::mem::size_of::<ProgQuery>(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = (attr.prog_cnt as usize).min(MAX_QUERIED);
    Ok(ids[..n].to_vec())
}

fn is_spot_sim(id: u32) -> bool {
    let Some(info) = loaded_programs().flatten().find(|p| p.id() == id) else {
        return false;
    };
    if info.name_as_str() != Some("connect4") {
        return false;
    }
    let maps = info.map_ids().ok().flatten().unwrap_or_default();
    maps.into_iter().any(|m| {
        MapInfo::from_id(m)
            .ok()
            .is_some_and(|i| i.name_as_str() == Some("TARGETS"))
    })
}

/// The process with an fd on the program (its link or the program itself), from
/// `/proc/*/fdinfo`.
fn process_holding(prog_id: u32) -> Option<(u32, String)> {
    let needle = format!("prog_id:\t{prog_id}\n");
    let me = std::process::id();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_to_string(fd.path()).is_ok_and(|t| t.contains(&needle)) {
                let comm = fs::read(entry.path().join("comm")).unwrap_or_default();
                let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
                return Some((pid, crate::escape::untrusted_bytes(comm)));
            }
        }
    }
    None
}
