//! Maps shared with userspace. Names are part of the contract with `spot-sim/src/redirect`.

use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use spot_sim_common::Target;

/// Target cgroup id → where its IMDS connects go, one copy per CPU: userspace writes the same
/// ports to every copy, and each CPU counts its own redirects in its copy without atomics.
#[map(name = "TARGETS")]
pub static TARGETS: PerCpuHashMap<u64, Target> = PerCpuHashMap::with_max_entries(4096, 0);

/// Process (tgid) → kernel time of its last redirect event, so a busy process sends at most one
/// a second. LRU: processes that stopped connecting age out by themselves.
#[map(name = "LAST_EVENT")]
pub static LAST_EVENT: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// This CPU's last redirecting process and when its last event was sent: a process connecting
/// in a loop is rate-limited without a hash lookup.
#[map(name = "RECENT")]
pub static RECENT: PerCpuArray<Recent> = PerCpuArray::with_max_entries(1, 0);

/// One slot of [`RECENT`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Recent {
    pub tgid: u32,
    pub _pad: u32,
    pub event_ns: u64,
}

/// A `RedirectEvent` for a process's first redirect, then at most one a second, read by userspace for logs and counters.
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);
