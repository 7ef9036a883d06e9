//! Maps shared with userspace. Names are part of the contract with `spot-sim/src/redirect`.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, RingBuf},
};
use spot_sim_common::{OrigDst, Target};

/// Target cgroup id → where its IMDS connects go. Written by userspace only.
#[map(name = "TARGETS")]
pub static TARGETS: HashMap<u64, Target> = HashMap::with_max_entries(4096, 0);

/// Socket cookie → the destination the client asked for, for getpeername. LRU, so sockets that
/// closed long ago age out without userspace having to clean up.
#[map(name = "ORIG_DST")]
pub static ORIG_DST: LruHashMap<u64, OrigDst> = LruHashMap::with_max_entries(65536, 0);

/// One `RedirectEvent` per redirect, read by userspace for logs and counters.
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);
