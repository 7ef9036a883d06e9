//! A target's connects to anything but the IMDS, aggregated per (destination, command) in a
//! hash map that spot-sim drains on its timer: one map update per connect, no event, so a
//! workload making thousands of connects a second costs little.

use aya_ebpf::{
    bindings::{BPF_NOEXIST, bpf_sock_addr},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use spot_sim_common::{OutboundKey, OutboundValue};

use crate::target::find_target;

/// Distinct (target, destination, command) entries held between two drains.
#[map(name = "OUTBOUND")]
pub static OUTBOUND: HashMap<OutboundKey, OutboundValue> = HashMap::with_max_entries(4096, 0);

/// Connects not counted because `OUTBOUND` was full.
#[map(name = "OUTBOUND_DROPPED")]
pub static OUTBOUND_DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;

/// An IPv4 connect that is not to the IMDS.
#[inline(always)]
pub fn record4(sa: &bpf_sock_addr) {
    let ip = sa.user_ip4.to_ne_bytes();
    let mut addr = [0u8; 16];
    addr[0] = ip[0];
    addr[1] = ip[1];
    addr[2] = ip[2];
    addr[3] = ip[3];
    record(sa, 4, addr);
}

/// An IPv6 connect that is not to the IMDS.
#[inline(always)]
pub fn record6(sa: &bpf_sock_addr) {
    let mut addr = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let w = sa.user_ip6[i].to_ne_bytes();
        addr[i * 4] = w[0];
        addr[i * 4 + 1] = w[1];
        addr[i * 4 + 2] = w[2];
        addr[i * 4 + 3] = w[3];
        i += 1;
    }
    record(sa, 6, addr);
}

#[inline(always)]
fn record(sa: &bpf_sock_addr, family: u8, addr: [u8; 16]) {
    let proto = match sa.type_ {
        SOCK_STREAM => 6,
        SOCK_DGRAM => 17,
        _ => return,
    };
    let Some(target) = find_target(sa) else {
        return;
    };
    // SAFETY: a map value pointer the kernel handed out, valid for this program run.
    let target_index = unsafe { (*target).index };
    let key = OutboundKey {
        target_index,
        port: u16::from_be(sa.user_port as u16),
        family,
        proto,
        addr,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    // SAFETY: a plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(v) = OUTBOUND.get_ptr_mut(key) {
        // SAFETY: the pointer is to a live map value. The increment is not atomic (the BPF
        // target has no fetch_add in core): two CPUs counting the same destination in the
        // same instant may lose one, which a count of connects can afford.
        unsafe {
            (*v).count += 1;
            (*v).last_ns = now;
        }
        return;
    }
    let value = OutboundValue {
        first_ns: now,
        last_ns: now,
        count: 1,
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
    };
    if OUTBOUND.insert(key, value, u64::from(BPF_NOEXIST)).is_err() {
        // Another CPU inserted the same destination first: count on its entry.
        if let Some(v) = OUTBOUND.get_ptr_mut(key) {
            // SAFETY: as above.
            unsafe { (*v).count += 1 };
        } else if let Some(n) = OUTBOUND_DROPPED.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, only this CPU writes it now.
            unsafe { *n += 1 };
        }
    }
}
