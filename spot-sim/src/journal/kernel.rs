//! The kernel's records of a target (redirects, program starts and exits, outbound connects)
//! as journal entries, their CLOCK_MONOTONIC times turned into wall-clock milliseconds.

use std::time::SystemTime;

use super::{ms, Journal, OutboundRecord, ProcRecord, RedirectRecord};
use crate::escape::untrusted_bytes as untrusted;
use crate::redirect::{KernelActivity, RedirectEvent};

/// Most words kept of a command line (it is already cut at 256 bytes).
const MAX_ARGV_WORDS: usize = 64;

/// A command line as `/proc/PID/cmdline` and the kernel's exec record hold it (words ended by
/// NULs) word by word, each escaped (it is the target's text, shown in terminals, logs and
/// pages), at most [`MAX_ARGV_WORDS`]; `cut` (or more words) adds a last `…`.
pub fn argv_words(raw: &[u8], cut: bool) -> Vec<String> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    let mut words: Vec<String> = raw
        .split(|&b| b == 0)
        .take(MAX_ARGV_WORDS + 1)
        .map(untrusted)
        .collect();
    if cut || words.len() > MAX_ARGV_WORDS {
        words.truncate(MAX_ARGV_WORDS);
        words.push("…".into());
    }
    words
}

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
    /// `from_proc`: a started program's command line read from `/proc` while it ran, for when
    /// the kernel could not copy it (empty if it was gone).
    pub fn kernel_activity(&self, x: KernelActivity, clock: &KernelClock, from_proc: Vec<u8>) {
        match x {
            KernelActivity::Exec {
                tgid,
                ktime_ns,
                comm,
                args,
                args_cut,
                ..
            } => self.exec(ProcRecord {
                at_ms: clock.ms(ktime_ns),
                pid: tgid,
                comm,
                argv: if args.is_empty() {
                    argv_words(&from_proc, false)
                } else {
                    argv_words(&args, args_cut)
                },
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
                argv: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::argv_words;

    #[test]
    fn a_command_line_becomes_escaped_words_cut_with_an_ellipsis() {
        assert_eq!(
            argv_words(b"/bin/sh\0/usr/bin/kubectl\0drain\0node-1\0", false),
            ["/bin/sh", "/usr/bin/kubectl", "drain", "node-1"]
        );
        assert_eq!(argv_words(b"date\0", false), ["date"]);
        assert_eq!(argv_words(b"", false), Vec::<String>::new());
        assert_eq!(argv_words(b"kubectl\0dra", true), ["kubectl", "dra", "…"]);
        // The empty word of `printf ''` stays a word.
        assert_eq!(argv_words(b"printf\0\0", false), ["printf", ""]);
        assert_eq!(
            argv_words(b"x\0\x1b[2J\nfake\0", false),
            ["x", "\\x1b[2J\\x0afake"]
        );
        let many = b"a\0".repeat(100);
        let words = argv_words(&many, false);
        assert_eq!(words.len(), 65);
        assert_eq!(words.last().unwrap(), "…");
    }
}
