//! The kernel's records of a target (redirects, program starts and exits, outbound connects)
//! as journal entries, their CLOCK_MONOTONIC times turned into wall-clock milliseconds.

use std::time::SystemTime;

use super::{ms, Journal, OutboundRecord, ProcRecord, RedirectRecord};
use crate::redirect::{KernelActivity, RedirectEvent};

/// The kernel's clock as of one instant: turns `bpf_ktime_get_ns` times into wall-clock
/// milliseconds. Taken once per drain, so every record of a drain shares it.
#[derive(Clone, Copy, Debug)]
pub struct KernelClock {
    wall_ms: u64,
    mono_ns: u64,
}

impl KernelClock {
    /// The monotonic clock read now, against the wall-clock `now`.
    pub fn at(now: SystemTime) -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec; bpf_ktime_get_ns reads the same clock.
        let mono_ns = if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } == 0 {
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        } else {
            0
        };
        Self {
            wall_ms: ms(now),
            mono_ns,
        }
    }

    /// Wall-clock milliseconds of the kernel time `ns`.
    pub fn ms(&self, ns: u64) -> u64 {
        self.wall_ms
            .saturating_sub(self.mono_ns.saturating_sub(ns) / 1_000_000)
    }
}

impl Journal {
    /// The kernel redirected one of the target's connects to its responder.
    pub fn kernel_redirect(&self, ev: &RedirectEvent, clock: &KernelClock) {
        self.redirect(RedirectRecord {
            at_ms: clock.ms(ev.ktime_ns),
            pid: ev.tgid,
            comm: ev.comm.clone(),
            destination: ev.original.to_string(),
        });
    }

    /// The kernel saw the target start a program, lose a process or connect elsewhere.
    /// `command_line`: a started program's, read while it ran (empty if it was not).
    pub fn kernel_activity(&self, x: KernelActivity, clock: &KernelClock, command_line: String) {
        match x {
            KernelActivity::Exec {
                tgid,
                ktime_ns,
                comm,
                ..
            } => self.exec(ProcRecord {
                at_ms: clock.ms(ktime_ns),
                pid: tgid,
                comm,
                detail: command_line,
            }),
            KernelActivity::Exit {
                tgid,
                ktime_ns,
                comm,
                ..
            } => self.exit(ProcRecord {
                at_ms: clock.ms(ktime_ns),
                pid: tgid,
                comm,
                detail: String::new(),
            }),
            KernelActivity::Outbound {
                destination,
                comm,
                tgid,
                first_ns,
                last_ns,
                count,
                ..
            } => self.outbound(OutboundRecord {
                destination,
                comm,
                pid: tgid,
                first_ms: clock.ms(first_ns),
                last_ms: clock.ms(last_ns),
                count,
            }),
        }
    }
}
