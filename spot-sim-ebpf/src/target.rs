//! Which target a process belongs to, and the loopback addresses its IMDS connects go to. Shared
//! by the forward (connect) and reverse (getpeername) translation.

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{bpf_get_current_cgroup_id, generated::bpf_get_current_ancestor_cgroup_id},
};
use spot_sim_common::{MAX_CGROUP_DEPTH, OWN_SOCKET_MARK, Target};

use crate::maps::TARGETS;

/// 127.0.0.1 in network byte order.
pub const LOOPBACK4_BE: u32 = u32::from_ne_bytes([127, 0, 0, 1]);
/// ::ffff:0:0/96 prefix word (the third word of an IPv4-mapped address), network order.
pub const MAPPED_PREFIX_BE: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
/// ::1, network order words.
pub const LOOPBACK6_BE: [u32; 4] = [0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])];
/// ::ffff:127.0.0.1, network order words.
pub const MAPPED_LOOPBACK4_BE: [u32; 4] = [0, 0, MAPPED_PREFIX_BE, LOOPBACK4_BE];

/// The target this process belongs to: the deepest ancestor cgroup userspace registered, as a
/// pointer into the map (its redirect counter is updated in place). Sockets spot-sim marks as
/// its own never belong to a target.
#[inline(always)]
pub fn find_target(sa: &bpf_sock_addr) -> Option<*mut Target> {
    // SAFETY: `sk` is always set for sock_addr programs; the verifier checks the field read.
    let mark = unsafe { (*sa.__bindgen_anon_1.sk).mark };
    if mark == OWN_SOCKET_MARK {
        return None;
    }
    current_target()
}

/// The current task's target entry (this CPU's copy), if it is in a target cgroup: the leaf
/// cgroup first, then its ancestors from the leaf upwards, so the deepest registered one wins
/// and the common case (the task sits in the target cgroup itself) costs one lookup.
#[inline(always)]
pub fn current_target() -> Option<*mut Target> {
    // SAFETY: a plain helper call with no arguments.
    let leaf = unsafe { bpf_get_current_cgroup_id() };
    if let Some(t) = TARGETS.get_ptr_mut(leaf) {
        return Some(t);
    }
    // Depth of the leaf: the first level with no ancestor. Helper calls only, no map lookups.
    let mut depth = 0;
    while depth < MAX_CGROUP_DEPTH {
        // SAFETY: a plain helper call; 0 means "no ancestor at this level".
        if unsafe { bpf_get_current_ancestor_cgroup_id(depth as i32) } == 0 {
            break;
        }
        depth += 1;
    }
    // The leaf (level depth-1) was looked up already; walk its ancestors upwards.
    let mut level = depth.saturating_sub(1);
    while level > 0 {
        level -= 1;
        // SAFETY: as above.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if let Some(t) = TARGETS.get_ptr_mut(id) {
            return Some(t);
        }
    }
    None
}

/// The index of the current task's target, if any: for the programs that are not attached per
/// cgroup (the exec/exit tracepoints).
#[inline(always)]
pub fn current_target_index() -> Option<u32> {
    // SAFETY: a map value pointer the kernel handed out, valid for this program run.
    current_target().map(|t| unsafe { (*t).index })
}
