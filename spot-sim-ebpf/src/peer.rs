//! getpeername4 / getpeername6: a redirected socket reports the IMDS address it asked for.
//!
//! As Cilium's `__sock4_xlate_rev` does, the reverse translation is decided from the socket's
//! *current* peer: only a socket still connected to its target's responder on loopback is
//! reported as connected to the IMDS. No per-socket state is kept, so connect stays cheap, and
//! a socket that disconnected (`connect(AF_UNSPEC)`) and connected elsewhere reports its real
//! peer.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use aya_log_ebpf::debug;
use spot_sim_common::{IMDS_IPV4_BE, IMDS_IPV6_BE, IMDS_PORT_BE};

use crate::target::{LOOPBACK4_BE, LOOPBACK6_BE, MAPPED_LOOPBACK4_BE, find_target};

/// getpeername programs must return 1; the verifier rejects anything else.
const ALLOW: i32 = 1;

#[cgroup_sock_addr(getpeername4)]
pub fn getpeername4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the kernel hands a valid `bpf_sock_addr` to every sock_addr program.
    let sa = unsafe { &mut *ctx.sock_addr };
    if sa.user_ip4 != LOOPBACK4_BE {
        return ALLOW;
    }
    let Some(target) = find_target(sa) else {
        return ALLOW;
    };
    // SAFETY: a map value pointer the kernel handed out, valid for this program run.
    let target = unsafe { *target };
    if target.port4 != 0 && sa.user_port == u32::from(target.port4.to_be()) {
        sa.user_ip4 = IMDS_IPV4_BE;
        sa.user_port = IMDS_PORT_BE;
        debug!(
            &ctx,
            "getpeername: IMDS peer restored for target {}", target.index
        );
    }
    ALLOW
}

#[cgroup_sock_addr(getpeername6)]
pub fn getpeername6(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in getpeername4.
    let sa = unsafe { &mut *ctx.sock_addr };
    let peer = [
        sa.user_ip6[0],
        sa.user_ip6[1],
        sa.user_ip6[2],
        sa.user_ip6[3],
    ];
    let mapped = peer == MAPPED_LOOPBACK4_BE;
    if !mapped && peer != LOOPBACK6_BE {
        return ALLOW;
    }
    let Some(target) = find_target(sa) else {
        return ALLOW;
    };
    // SAFETY: a map value pointer the kernel handed out, valid for this program run.
    let target = unsafe { *target };
    // The mapped form went to the IPv4 listener, native ::1 to the IPv6 one (see connect6).
    let (port, imds) = if mapped {
        (target.port4, [0, 0, MAPPED_LOOPBACK4_BE[2], IMDS_IPV4_BE])
    } else {
        (target.port6, IMDS_IPV6_BE)
    };
    if port != 0 && sa.user_port == u32::from(port.to_be()) {
        sa.user_ip6[0] = imds[0];
        sa.user_ip6[1] = imds[1];
        sa.user_ip6[2] = imds[2];
        sa.user_ip6[3] = imds[3];
        sa.user_port = IMDS_PORT_BE;
        debug!(
            &ctx,
            "getpeername: IMDS peer restored for target {}", target.index
        );
    }
    ALLOW
}
