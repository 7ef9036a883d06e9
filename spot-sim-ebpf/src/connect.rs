//! connect4 / connect6: send a targeted TCP connect to the IMDS to the target's responder.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, bpf_sock_addr},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_socket_cookie},
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use aya_log_ebpf::debug;
use spot_sim_common::{
    AF_INET, AF_INET6, IMDS_IPV4_BE, IMDS_IPV6_BE, IMDS_PORT_BE, MAX_CGROUP_DEPTH, OWN_SOCKET_MARK,
    OrigDst, RedirectEvent, Target,
};

use crate::maps::{EVENTS, ORIG_DST, TARGETS};

const IPPROTO_TCP: u32 = 6;
const SOCK_STREAM: u32 = 1;
/// 127.0.0.1 in network byte order.
const LOOPBACK4_BE: u32 = u32::from_ne_bytes([127, 0, 0, 1]);
/// ::ffff:0:0/96 prefix word (the third word of an IPv4-mapped address), network order.
const MAPPED_PREFIX_BE: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
/// ::1, network order words.
const LOOPBACK6_BE: [u32; 4] = [0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])];

/// Pending event bytes past which the kernel wakes spot-sim at once (a quarter of the
/// ring buffer).
const WAKE_AT_BYTES: u64 = 64 * 1024;

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
    let Some(target) = find_target(sa) else {
        return ALLOW;
    };
    if target.port4 == 0 {
        return ALLOW;
    }
    remember(&ctx, AF_INET, [IMDS_IPV4_BE, 0, 0, 0], sa.user_port);
    sa.user_ip4 = LOOPBACK4_BE;
    sa.user_port = u32::from(target.port4.to_be());
    emit(&ctx, &target, AF_INET, [IMDS_IPV4_BE, 0, 0, 0], false);
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
    let Some(target) = find_target(sa) else {
        return ALLOW;
    };
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
    remember(&ctx, AF_INET6, ip, sa.user_port);
    sa.user_ip6[0] = dst[0];
    sa.user_ip6[1] = dst[1];
    sa.user_ip6[2] = dst[2];
    sa.user_ip6[3] = dst[3];
    sa.user_port = u32::from(port.to_be());
    emit(&ctx, &target, AF_INET6, ip, mapped);
    ALLOW
}

fn is_tcp(sa: &bpf_sock_addr) -> bool {
    sa.type_ == SOCK_STREAM && (sa.protocol == IPPROTO_TCP || sa.protocol == 0)
}

/// The target this process belongs to: the deepest ancestor cgroup userspace registered.
/// Sockets spot-sim marks as its own are never redirected.
fn find_target(sa: &bpf_sock_addr) -> Option<Target> {
    // SAFETY: `sk` is always set for sock_addr programs; the verifier checks the field read.
    let mark = unsafe { (*sa.__bindgen_anon_1.sk).mark };
    if mark == OWN_SOCKET_MARK {
        return None;
    }
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
            found = Some(*t);
        }
        level += 1;
    }
    found
}

fn remember(ctx: &SockAddrContext, family: u32, addr: [u32; 4], port: u32) {
    // SAFETY: bpf_get_socket_cookie takes the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let orig = OrigDst { addr, port, family };
    // A full LRU evicts the oldest entry; an insert error only costs getpeername fidelity,
    // never the connect, so it is ignored.
    let _ = ORIG_DST.insert(&cookie, &orig, 0);
}

fn emit(ctx: &SockAddrContext, target: &Target, family: u32, addr: [u32; 4], mapped: bool) {
    let pid_tgid = bpf_get_current_pid_tgid();
    debug!(
        ctx,
        "redirected pid {} to target {}",
        (pid_tgid >> 32) as u32,
        target.index
    );
    let Some(mut entry) = EVENTS.reserve::<RedirectEvent>(0) else {
        // Ring buffer full: userspace is behind; the redirect itself still happens.
        return;
    };
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    // SAFETY: level 0 is never deeper than the task's own cgroup.
    let cgroup_id = unsafe { aya_ebpf::helpers::bpf_get_current_cgroup_id() };
    entry.write(RedirectEvent {
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        cgroup_id,
        target_index: target.index,
        family,
        orig_addr: addr,
        mapped: u32::from(mapped),
        comm,
    });
    // No wake-up per event: at tens of thousands of connects a second, waking spot-sim for
    // each one costs the redirected clients CPU. spot-sim drains the buffer on a short timer,
    // and is woken only when the buffer is filling up.
    let flags = if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) > WAKE_AT_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(u64::from(flags));
}
