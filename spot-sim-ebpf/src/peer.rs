//! getpeername4 / getpeername6: a redirected socket reports the IMDS address it asked for,
//! as Cilium's socket load balancer does, so clients that check their peer are not surprised.

use aya_ebpf::{
    EbpfContext, helpers::generated::bpf_get_socket_cookie, macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use spot_sim_common::{AF_INET, AF_INET6};

use crate::maps::ORIG_DST;

#[cgroup_sock_addr(getpeername4)]
pub fn getpeername4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the kernel hands a valid `bpf_sock_addr` to every sock_addr program.
    let sa = unsafe { &mut *ctx.sock_addr };
    // SAFETY: bpf_get_socket_cookie takes the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the value is copied out before the map can change.
    if let Some(orig) = unsafe { ORIG_DST.get(&cookie) }.copied() {
        if orig.family == AF_INET {
            sa.user_ip4 = orig.addr[0];
            sa.user_port = orig.port;
        }
    }
    // getpeername programs must return 1; the verifier rejects anything else.
    1
}

#[cgroup_sock_addr(getpeername6)]
pub fn getpeername6(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in getpeername4.
    let sa = unsafe { &mut *ctx.sock_addr };
    // SAFETY: as in getpeername4.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: as in getpeername4.
    if let Some(orig) = unsafe { ORIG_DST.get(&cookie) }.copied() {
        if orig.family == AF_INET6 {
            sa.user_ip6[0] = orig.addr[0];
            sa.user_ip6[1] = orig.addr[1];
            sa.user_ip6[2] = orig.addr[2];
            sa.user_ip6[3] = orig.addr[3];
            sa.user_port = orig.port;
        }
    }
    1
}
