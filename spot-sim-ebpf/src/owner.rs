//! Which target the current task belongs to, for the programs that are not attached per cgroup
//! (the exec/exit tracepoints) and for the outbound-connect aggregate.

use aya_ebpf::helpers::generated::bpf_get_current_ancestor_cgroup_id;
use spot_sim_common::{MAX_CGROUP_DEPTH, Target};

use crate::maps::TARGETS;

/// The index of the deepest ancestor cgroup of the current task that is a target, if any.
#[inline(always)]
pub fn current_target_index() -> Option<u32> {
    let mut found = None;
    let mut level = 0;
    while level < MAX_CGROUP_DEPTH {
        // SAFETY: a plain helper call; 0 means "no ancestor at this level".
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            break;
        }
        // SAFETY: the value is copied out before the map can change.
        if let Some(t) = unsafe { TARGETS.get(&id) } {
            let t: Target = *t;
            found = Some(t.index);
        }
        level += 1;
    }
    found
}
