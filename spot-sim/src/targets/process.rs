//! What the node's `/proc` says of one process of a target.

use std::path::Path;

/// Longest command line kept (it is the target's, shown in reports).
const MAX_COMMAND_LINE: usize = 200;

/// A process's command line while it is still there (NULs as spaces, cut short, escaped: it is
/// the target's): only when the pid still names the program the kernel saw start (`comm`),
/// not a later process that got its pid. Empty when it cannot tell.
pub fn command_line(proc: &Path, pid: u32, comm: &str) -> String {
    let dir = proc.join(pid.to_string());
    // `comm` was escaped where it entered (redirect/activity.rs): compare it escaped.
    let same = std::fs::read(dir.join("comm"))
        .is_ok_and(|c| crate::escape::untrusted_bytes(c.strip_suffix(b"\n").unwrap_or(&c)) == comm);
    if !same {
        return String::new();
    }
    std::fs::read(dir.join("cmdline"))
        .map(|b| {
            let b: Vec<u8> = b.iter().map(|&c| if c == 0 { b' ' } else { c }).collect();
            let cut = &b[..b.len().min(MAX_COMMAND_LINE)];
            crate::escape::untrusted_bytes(cut.trim_ascii())
        })
        .unwrap_or_default()
}
