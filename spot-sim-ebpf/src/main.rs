//! The kernel side of spot-sim: cgroup sock_addr programs attached to each target cgroup.
//!
//! `connect4`/`connect6` rewrite a TCP connect to the IMDS address to the target's responder
//! on loopback; `getpeername4`/`getpeername6` put the IMDS address back for a socket still
//! connected to that responder, so the client sees the peer it asked for. `exec` and
//! `outbound` watch what a target does besides polling (programs it starts, processes that
//! exit, connects elsewhere) for the game-day verdict. Every program returns 1 (allow) on every
//! path: spot-sim must never make a
//! connect fail, it only changes where one goes.
#![no_std]
#![no_main]

mod connect;
mod exec;
mod maps;
mod outbound;
mod peer;
mod target;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this, so it is never called.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
