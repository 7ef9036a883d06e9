//! What the node's `/proc` says of one process of a target.

use std::path::Path;

/// Longest command line kept (it is the target's, shown in reports).
const MAX_COMMAND_LINE: usize = 200;

/// A process's command line while it is still there (NULs as spaces, cut short): only when
/// the pid still names the program the kernel saw start (`comm`), not a later process that
/// got its pid. Empty when it cannot tell.
pub fn command_line(proc: &Path, pid: u32, comm: &str) -> String {
    let dir = proc.join(pid.to_string());
    let same = std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == comm);
    if !same {
        return String::new();
    }
    std::fs::read(dir.join("cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .chars()
                .take(MAX_COMMAND_LINE)
                .collect()
        })
        .unwrap_or_default()
}
