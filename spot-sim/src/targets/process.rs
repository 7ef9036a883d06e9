//! What the node's `/proc` says of one process of a target.

use std::path::Path;

/// Longest command line read (the kernel's exec record holds as much).
const MAX_COMMAND_LINE: usize = spot_sim_common::EXEC_ARGS_LEN;

/// A process's command line while it is still there, as `/proc/PID/cmdline` has it (words
/// ended by NULs, cut short; escaped word by word where the journal takes it in,
/// journal/kernel.rs): only when the pid still names the program the kernel saw start
/// (`comm`), not a later process that got its pid. Empty when it cannot tell. The kernel's own
/// copy, taken at the exec, is preferred: this is for kernels whose BTF did not say where to
/// find it.
pub fn command_line(proc: &Path, pid: u32, comm: &str) -> Vec<u8> {
    let dir = proc.join(pid.to_string());
    // `comm` was escaped where it entered (redirect/activity.rs): compare it escaped.
    let same = std::fs::read(dir.join("comm"))
        .is_ok_and(|c| crate::escape::untrusted_bytes(c.strip_suffix(b"\n").unwrap_or(&c)) == comm);
    if !same {
        return Vec::new();
    }
    let mut line = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    line.truncate(MAX_COMMAND_LINE);
    line
}
