//! Which target the current task belongs to, for the programs that are not attached per cgroup
//! (the exec/exit tracepoints) and for the outbound-connect aggregate.

use crate::target::current_target;

/// The index of the deepest ancestor cgroup of the current task that is a target, if any.
#[inline(always)]
pub fn current_target_index() -> Option<u32> {
    // SAFETY: a map value pointer the kernel handed out, valid for this program run.
    current_target().map(|t| unsafe { (*t).index })
}
