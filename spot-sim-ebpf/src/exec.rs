//! sched_process_exec / sched_process_exit (BTF tracepoints: no tracefs needed): a target's
//! process starting a program, or a target's process (thread-group leader) exiting. These are
//! what a handler does after it saw the notice: `kubectl drain`, a shutdown script, the
//! workload going away. Every other process on the node costs one cgroup walk and no event.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{btf_tracepoint, map},
    maps::RingBuf,
    programs::BtfTracePointContext,
};
use spot_sim_common::{PROC_EXEC, PROC_EXIT, ProcEvent};

use crate::target::current_target_index;

/// One `ProcEvent` per exec or exit in a target.
#[map(name = "PROCS")]
pub static PROCS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

/// Pending bytes past which the kernel wakes spot-sim at once; below it spot-sim drains on
/// its timer, as for redirect events.
const WAKE_AT_BYTES: u64 = 16 * 1024;

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(_ctx: BtfTracePointContext) -> i32 {
    emit(PROC_EXEC);
    0
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(_ctx: BtfTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Threads exiting are not the process exiting: only the thread-group leader counts.
    if pid_tgid as u32 == (pid_tgid >> 32) as u32 {
        emit(PROC_EXIT);
    }
    0
}

#[inline(always)]
fn emit(kind: u32) {
    let Some(target_index) = current_target_index() else {
        return;
    };
    let Some(mut entry) = PROCS.reserve::<ProcEvent>(0) else {
        // Full: spot-sim is behind; it counts the gap from the exits it never saw.
        return;
    };
    entry.write(ProcEvent {
        kind,
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        target_index,
        _pad: 0,
        // SAFETY: a plain helper call.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    });
    // A program start wakes spot-sim at once: it may be a process in a new network namespace
    // that needs a listener there before its first IMDS connect. Exits wait for the timer.
    let flags = if kind == PROC_EXEC || PROCS.query(u64::from(BPF_RB_AVAIL_DATA)) > WAKE_AT_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(u64::from(flags));
}
