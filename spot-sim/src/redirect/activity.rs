//! What a target does besides polling, as the kernel sees it: programs started and processes
//! exited (BTF tracepoints, a ring buffer record each) and connects elsewhere (aggregated by
//! the connect programs in a hash map we drain and clear).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd};

use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::BtfTracePoint,
    Btf, Ebpf, Endianness,
};
use spot_sim_common::{ExecEvent, OutboundKey, OutboundValue, ProcEvent, PROC_EXEC};

/// The tracepoints, by their function name.
const TRACEPOINTS: [&str; 2] = ["sched_process_exec", "sched_process_exit"];

/// One thing the kernel saw a target do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelActivity {
    Exec {
        target_index: u32,
        tgid: u32,
        ktime_ns: u64,
        comm: String,
        /// The command line the kernel copied at the exec (NUL-separated, as
        /// `/proc/PID/cmdline`), empty when it could not.
        args: Vec<u8>,
        /// `args` is the start of a longer command line.
        args_cut: bool,
    },
    Exit {
        target_index: u32,
        tgid: u32,
        ktime_ns: u64,
        comm: String,
    },
    /// Connects to one destination from one command since the last drain.
    Outbound {
        target_index: u32,
        /// `10.0.0.1:443/tcp`, `[fd00::1]:53/udp`.
        destination: String,
        comm: String,
        tgid: u32,
        first_ns: u64,
        last_ns: u64,
        count: u64,
    },
}

impl KernelActivity {
    /// The target it happened in.
    pub fn target_index(&self) -> u32 {
        match self {
            KernelActivity::Exec { target_index, .. }
            | KernelActivity::Exit { target_index, .. }
            | KernelActivity::Outbound { target_index, .. } => *target_index,
        }
    }
}

/// The readers of the activity maps. The tracepoint links live in the `Ebpf` they were
/// attached from (the [`super::Redirector`]), so they go when it does.
pub struct ActivityReader {
    procs: Option<RingBuf<MapData>>,
    procs_dropped: Dropped,
    outbound: Option<HashMap<MapData, OutboundKey, OutboundValue>>,
    dropped: Dropped,
}

/// A kernel counter of records it could not keep, and how much of it was said already.
struct Dropped {
    map: Option<PerCpuArray<MapData, u64>>,
    seen: u64,
}

impl Dropped {
    fn take(ebpf: &mut Ebpf, name: &str) -> Self {
        Self {
            map: ebpf
                .take_map(name)
                .and_then(|m| PerCpuArray::try_from(m).ok()),
            seen: 0,
        }
    }

    /// How many more were dropped since the last call.
    fn new_since(&mut self) -> u64 {
        let Some(d) = &self.map else { return 0 };
        let total: u64 = d
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0);
        let new = total.saturating_sub(self.seen);
        self.seen = self.seen.max(total);
        new
    }
}

impl ActivityReader {
    /// Takes the maps and attaches the tracepoints. Nothing here is fatal: without BTF the
    /// report just has no process starts and exits (and says so through
    /// [`ActivityReader::sees_processes`]).
    /// `kernel_btf`: the kernel's BTF as read at start (or why it could not be).
    pub(super) fn load(ebpf: &mut Ebpf, kernel_btf: Result<&[u8], &String>) -> Self {
        let outbound = ebpf
            .take_map("OUTBOUND")
            .and_then(|m| HashMap::try_from(m).ok());
        let dropped = Dropped::take(ebpf, "OUTBOUND_DROPPED");
        let procs_dropped = Dropped::take(ebpf, "PROCS_DROPPED");
        let procs = match attach_tracepoints(ebpf, kernel_btf) {
            Ok(()) => ebpf
                .take_map("PROCS")
                .and_then(|m| RingBuf::try_from(m).ok()),
            Err(e) => {
                log::warn!("cannot watch the targets' processes (the report will show no program starts or exits): {e}");
                None
            }
        };
        Self {
            procs,
            procs_dropped,
            outbound,
            dropped,
        }
    }

    /// Whether program starts and process exits are visible.
    pub fn sees_processes(&self) -> bool {
        self.procs.is_some()
    }

    /// The ring buffer's fd, readable when the kernel asks to be drained early.
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.procs.as_ref().map(|r| r.as_fd())
    }

    /// Delivers everything the kernel recorded since the last drain: with `outbound`, the
    /// outbound-connect map too. The process ring buffer is read from shared memory (no
    /// syscall); the map takes a few syscalls even when empty, so an idle session sweeps it
    /// less often (its entries carry the kernel's own times, and it holds 4,096 distinct
    /// destinations between sweeps).
    pub fn drain(&mut self, outbound: bool, mut f: impl FnMut(KernelActivity)) {
        if let Some(ring) = &mut self.procs {
            while let Some(item) = ring.next() {
                if item.len() < size_of::<ProcEvent>() {
                    continue;
                }
                // SAFETY: the kernel wrote a whole ProcEvent there; read_unaligned copes with
                // the ring buffer's 8-byte alignment.
                let raw = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<ProcEvent>()) };
                let comm = comm(&raw.comm);
                f(if raw.kind == PROC_EXEC {
                    let (args, args_cut) = exec_args(&item);
                    KernelActivity::Exec {
                        target_index: raw.target_index,
                        tgid: raw.tgid,
                        ktime_ns: raw.ktime_ns,
                        comm,
                        args,
                        args_cut,
                    }
                } else {
                    KernelActivity::Exit {
                        target_index: raw.target_index,
                        tgid: raw.tgid,
                        ktime_ns: raw.ktime_ns,
                        comm,
                    }
                });
            }
        }
        if !outbound {
            return;
        }
        if let Some(map) = &mut self.outbound {
            // Keys first: deleting while walking would restart the walk.
            let keys: Vec<OutboundKey> = map.keys().filter_map(Result::ok).collect();
            for key in keys {
                let Ok(v) = map.get(&key, 0) else { continue };
                // A connect counted between the read and the remove is lost; the next one to
                // the same place starts a new entry.
                let _ = map.remove(&key);
                f(KernelActivity::Outbound {
                    target_index: key.target_index,
                    destination: destination(&key),
                    comm: comm(&key.comm),
                    tgid: v.tgid,
                    first_ns: v.first_ns,
                    last_ns: v.last_ns,
                    count: v.count,
                });
            }
        }
        let lost = self.dropped.new_since();
        if lost > 0 {
            log::warn!(
                "{lost} outbound connects were not counted: more distinct destinations than the kernel map holds between two reads"
            );
        }
        let lost = self.procs_dropped.new_since();
        if lost > 0 {
            log::warn!(
                "{lost} program starts or exits were not recorded: they came faster than spot-sim read them"
            );
        }
    }
}

/// The command line of an [`ExecEvent`] record: the bytes the kernel filled, and whether the
/// command line was longer.
fn exec_args(item: &[u8]) -> (Vec<u8>, bool) {
    if item.len() < size_of::<ExecEvent>() {
        return (Vec::new(), false);
    }
    // SAFETY: a whole ExecEvent is there (checked above); read_unaligned as for ProcEvent.
    let ev = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<ExecEvent>()) };
    let len = (ev.args_len as usize).min(ev.args.len());
    (ev.args[..len].to_vec(), ev.args_total as usize > len)
}

fn attach_tracepoints(ebpf: &mut Ebpf, kernel_btf: Result<&[u8], &String>) -> Result<(), String> {
    let started = std::time::Instant::now();
    let btf = kernel_btf
        .map_err(|e| format!("no kernel BTF: {e}"))
        .and_then(|data| {
            Btf::parse(data, Endianness::default()).map_err(|e| format!("no kernel BTF: {e}"))
        })?;
    log::debug!(target: super::STARTUP, "process watchers: kernel BTF parsed in {}", super::ms(started));
    for name in TRACEPOINTS {
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("the eBPF object has no {name}: rebuild it"))?
            .try_into()
            .map_err(|e| format!("{name}: {e}"))?;
        prog.load(name, &btf).map_err(|e| format!("{name}: {e}"))?;
        prog.attach().map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// A process name as the target chose it, escaped where it enters (escape.rs).
fn comm(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    crate::escape::untrusted_bytes(&raw[..end])
}

fn destination(k: &OutboundKey) -> String {
    let proto = if k.proto == 17 { "udp" } else { "tcp" };
    let ip = if k.family == 4 {
        IpAddr::V4(Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3]))
    } else {
        let v6 = Ipv6Addr::from(k.addr);
        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
    };
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{}/{proto}", k.port),
        IpAddr::V6(v6) => format!("[{v6}]:{}/{proto}", k.port),
    }
}
