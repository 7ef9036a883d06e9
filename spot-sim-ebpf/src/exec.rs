//! sched_process_exec / sched_process_exit (BTF tracepoints: no tracefs needed): a target's
//! process starting a program, or a target's process (thread-group leader) exiting. These are
//! what a handler does after it saw the notice: `kubectl drain`, a shutdown script, the
//! workload going away. Every other process on the node costs one cgroup walk and no event.

use aya_ebpf::{
    Global,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_user_buf, generated::bpf_get_current_task,
    },
    macros::{btf_tracepoint, map},
    maps::{PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use spot_sim_common::{ArgvOffsets, EXEC_ARGS_LEN, ExecEvent, PROC_EXEC, PROC_EXIT, ProcEvent};

use crate::target::current_target_index;

/// One `ExecEvent` per program start and one `ProcEvent` per exit in a target. 256 KiB: some
/// 850 program starts between two reads (each wakes spot-sim at once).
#[map(name = "PROCS")]
pub static PROCS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Records lost because `PROCS` was full: counted, so the report can say so.
#[map(name = "PROCS_DROPPED")]
pub static PROCS_DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Where this kernel keeps a process's command line; written by userspace before load from
/// the kernel's BTF (Rust eBPF has no CO-RE field relocations). Zero: not known.
#[unsafe(no_mangle)]
pub static ARGV_OFFSETS: Global<ArgvOffsets> = Global::new(ArgvOffsets::UNKNOWN);

/// Pending bytes past which the kernel wakes spot-sim at once; below it spot-sim drains on
/// its timer, as for redirect events.
const WAKE_AT_BYTES: u64 = 16 * 1024;

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(_ctx: BtfTracePointContext) -> i32 {
    let Some(target_index) = current_target_index() else {
        return 0;
    };
    let Some(mut entry) = PROCS.reserve::<ExecEvent>(0) else {
        count_dropped();
        return 0;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points to the reserved record, written field by field (a whole ExecEvent
    // would not fit on the eBPF stack) before it is submitted.
    unsafe {
        (*ev).proc = proc_event(PROC_EXEC, target_index);
        let (len, total) = read_args(&mut (*ev).args);
        (*ev).args_len = len;
        (*ev).args_total = total;
    }
    // A program start wakes spot-sim at once: it may be a process in a new network namespace
    // that needs a listener there before its first IMDS connect.
    entry.submit(u64::from(BPF_RB_FORCE_WAKEUP));
    0
}

/// The new program's command line, read where `/proc/PID/cmdline` reads it: the argv strings
/// the kernel just laid out between `mm->arg_start` and `mm->arg_end`, resident since the exec
/// wrote them. Returns (bytes copied, whole length); (0, 0) when the offsets are unknown or a
/// read fails.
#[inline(always)]
fn read_args(args: &mut [u8; EXEC_ARGS_LEN]) -> (u32, u32) {
    let off = ARGV_OFFSETS.load();
    if !off.known() {
        return (0, 0);
    }
    // SAFETY: reads of kernel memory through the helper, which fails rather than faults.
    let (start, end) = unsafe {
        let task = bpf_get_current_task() as *const u8;
        let Ok(mm) = bpf_probe_read_kernel(task.add(off.task_mm as usize).cast::<u64>()) else {
            return (0, 0);
        };
        if mm == 0 {
            return (0, 0);
        }
        let mm = mm as *const u8;
        let (Ok(start), Ok(end)) = (
            bpf_probe_read_kernel(mm.add(off.mm_arg_start as usize).cast::<u64>()),
            bpf_probe_read_kernel(mm.add(off.mm_arg_end as usize).cast::<u64>()),
        ) else {
            return (0, 0);
        };
        (start, end)
    };
    if end <= start {
        return (0, 0);
    }
    let total = end - start;
    let len = if total > EXEC_ARGS_LEN as u64 {
        EXEC_ARGS_LEN
    } else {
        total as usize
    };
    // SAFETY: a read of the current process's own memory through the helper.
    match unsafe { bpf_probe_read_user_buf(start as *const u8, &mut args[..len]) } {
        Ok(()) => (len as u32, total.min(u64::from(u32::MAX)) as u32),
        Err(_) => (0, 0),
    }
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
fn proc_event(kind: u32, target_index: u32) -> ProcEvent {
    ProcEvent {
        kind,
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        target_index,
        _pad: 0,
        // SAFETY: a plain helper call.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// A process exit; it waits for spot-sim's timer unless records pile up.
#[inline(always)]
fn emit(kind: u32) {
    let Some(target_index) = current_target_index() else {
        return;
    };
    let Some(mut entry) = PROCS.reserve::<ProcEvent>(0) else {
        count_dropped();
        return;
    };
    entry.write(proc_event(kind, target_index));
    let flags = if PROCS.query(u64::from(BPF_RB_AVAIL_DATA)) > WAKE_AT_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(u64::from(flags));
}

/// `PROCS` was full: spot-sim is behind.
#[inline(always)]
fn count_dropped() {
    if let Some(n) = PROCS_DROPPED.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; nothing else writes it while this program runs.
        unsafe { *n += 1 };
    }
}
