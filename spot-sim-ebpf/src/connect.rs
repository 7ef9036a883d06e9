//! connect4 / connect6: send a targeted TCP connect to the IMDS to the target's responder.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, bpf_sock_addr},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use spot_sim_common::{
    AF_INET, AF_INET6, IMDS_IPV4_BE, IMDS_IPV6_BE, IMDS_PORT_BE, RedirectEvent, Target,
};

use crate::{
    maps::{EVENTS, LAST_EVENT, RECENT},
    target::{LOOPBACK4_BE, LOOPBACK6_BE, MAPPED_PREFIX_BE, find_target},
};

const IPPROTO_TCP: u32 = 6;
const SOCK_STREAM: u32 = 1;

/// Pending event bytes past which the kernel wakes spot-sim at once (a quarter of the
/// ring buffer).
const WAKE_AT_BYTES: u64 = 64 * 1024;

/// At most one redirect event a second per process (the counter stays exact).
const EVENT_EVERY_NS: u64 = 1_000_000_000;

/// Allow the syscall. Every path returns this: a 0 would fail the user's connect with EPERM.
const ALLOW: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the kernel hands a valid `bpf_sock_addr` to every sock_addr program.
    let sa = unsafe { &mut *ctx.sock_addr };
    if !is_tcp(sa) || sa.user_ip4 != IMDS_IPV4_BE || sa.user_port != IMDS_PORT_BE {
        crate::outbound::record4(sa);
        return ALLOW;
    }
    let Some(entry) = find_target(sa) else {
        return ALLOW;
    };
    // SAFETY: a map value pointer the kernel handed out, valid for this program run.
    let target = unsafe { *entry };
    if target.port4 == 0 {
        return ALLOW;
    }
    sa.user_ip4 = LOOPBACK4_BE;
    sa.user_port = u32::from(target.port4.to_be());
    record(entry, &target, AF_INET, [IMDS_IPV4_BE, 0, 0, 0], false);
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in connect4.
    let sa = unsafe { &mut *ctx.sock_addr };
    if !is_tcp(sa) || sa.user_port != IMDS_PORT_BE {
        crate::outbound::record6(sa);
        return ALLOW;
    }
    let ip = [
        sa.user_ip6[0],
        sa.user_ip6[1],
        sa.user_ip6[2],
        sa.user_ip6[3],
    ];
    let mapped = ip[0] == 0 && ip[1] == 0 && ip[2] == MAPPED_PREFIX_BE && ip[3] == IMDS_IPV4_BE;
    if !mapped && ip != IMDS_IPV6_BE {
        crate::outbound::record6(sa);
        return ALLOW;
    }
    let Some(entry) = find_target(sa) else {
        return ALLOW;
    };
    // SAFETY: a map value pointer the kernel handed out, valid for this program run.
    let target = unsafe { *entry };
    // A dual-stack socket asking for the IPv4 IMDS goes to the IPv4 listener through its mapped
    // form; a native IPv6 connect goes to the listener on ::1.
    let (port, dst) = if mapped {
        (target.port4, [0, 0, MAPPED_PREFIX_BE, LOOPBACK4_BE])
    } else {
        (target.port6, LOOPBACK6_BE)
    };
    if port == 0 {
        return ALLOW;
    }
    sa.user_ip6[0] = dst[0];
    sa.user_ip6[1] = dst[1];
    sa.user_ip6[2] = dst[2];
    sa.user_ip6[3] = dst[3];
    sa.user_port = u32::from(port.to_be());
    record(entry, &target, AF_INET6, ip, mapped);
    ALLOW
}

fn is_tcp(sa: &bpf_sock_addr) -> bool {
    sa.type_ == SOCK_STREAM && (sa.protocol == IPPROTO_TCP || sa.protocol == 0)
}

/// Counts the redirect in this CPU's copy of the target's entry (exact once userspace sums the
/// CPUs; no atomics needed) and
/// sends an event for the first redirect of a process and then at most one a second per
/// process: the event stream says who connects, the counter says how often. A ring-buffer
/// record per connect cost more than the whole rewrite.
fn record(entry: *mut Target, target: &Target, family: u32, addr: [u32; 4], mapped: bool) {
    // SAFETY: this CPU's copy of the map value, valid for this program run; a program runs to
    // its end on one CPU, so no other writer touches this copy meanwhile.
    unsafe { (*entry).redirects += 1 };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: a plain helper call with no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let recent = RECENT.get_ptr_mut(0);
    // Fast path: this CPU's last redirecting process, its event less than a second old (a
    // handler or a load generator connecting in a loop): no hash lookup at all.
    if let Some(r) = recent {
        // SAFETY: this CPU's slot, valid for this program run, written only on this CPU.
        unsafe {
            if (*r).tgid == tgid && now.wrapping_sub((*r).event_ns) < EVENT_EVERY_NS {
                return;
            }
        }
    }
    let event_ns = match LAST_EVENT.get_ptr_mut(tgid) {
        // SAFETY: a live map value; a racing CPU can only make two events out of one second,
        // never none.
        Some(last) if now.wrapping_sub(unsafe { *last }) < EVENT_EVERY_NS => unsafe { *last },
        Some(last) => {
            // SAFETY: as above.
            unsafe { *last = now };
            now
        }
        None => {
            // A full LRU evicts the least recently seen process; an error only costs an event.
            let _ = LAST_EVENT.insert(tgid, now, 0);
            now
        }
    };
    if let Some(r) = recent {
        // SAFETY: as above.
        unsafe {
            (*r).tgid = tgid;
            (*r).event_ns = event_ns;
        }
    }
    if event_ns == now {
        emit(pid_tgid, now, target, family, addr, mapped);
    }
}

fn emit(pid_tgid: u64, ktime_ns: u64, target: &Target, family: u32, addr: [u32; 4], mapped: bool) {
    let Some(mut entry) = EVENTS.reserve::<RedirectEvent>(0) else {
        // Ring buffer full: userspace is behind; the redirect itself still happens.
        return;
    };
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    // SAFETY: a plain helper call with no arguments.
    let cgroup_id = unsafe { aya_ebpf::helpers::bpf_get_current_cgroup_id() };
    entry.write(RedirectEvent {
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        cgroup_id,
        ktime_ns,
        target_index: target.index,
        family,
        orig_addr: addr,
        mapped: u32::from(mapped),
        comm,
    });
    // Events are already at most one a second per process (above). The kernel's adaptive
    // wake-up (flags 0) wakes spot-sim only when it has read everything before this record,
    // so a burst costs one wake-up, not one per record, and an idle spot-sim needs no short
    // timer to see a redirect. Past a quarter of the buffer it is woken regardless.
    let flags = if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) > WAKE_AT_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        0
    };
    entry.submit(u64::from(flags));
}
