//! Start-up checks with messages that say what to do, before the kernel says EPERM.

use std::fs;

/// Root, or CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN; kernel ≥ 5.8 (getpeername hooks and the
/// BPF ring buffer).
pub fn preflight() -> Result<(), String> {
    if let Ok(release) = fs::read_to_string("/proc/sys/kernel/osrelease") {
        if let Some((major, minor)) = parse_release(release.trim()) {
            if (major, minor) < (5, 8) {
                return Err(format!(
                    "kernel {} is too old: spot-sim needs Linux 5.8 or newer (getpeername hooks, BPF ring buffer); or run `spot-sim serve` and point the client at it",
                    release.trim()
                ));
            }
        }
    }
    let caps = effective_caps().unwrap_or(0);
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    let missing: Vec<&str> = [
        (CAP_BPF, "CAP_BPF"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ]
    .into_iter()
    .filter(|(bit, _)| caps & (1u64 << bit) == 0)
    .map(|(_, name)| name)
    .collect();
    // Before 5.8 there was no CAP_BPF and CAP_SYS_ADMIN covered it; we require 5.8 anyway.
    if !missing.is_empty() {
        return Err(format!(
            "spot-sim needs root (or {}) to attach eBPF programs: run it with sudo, or in a privileged container",
            missing.join(" + ")
        ));
    }
    Ok(())
}

fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn effective_caps() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Turns a load failure into a sentence: EPERM usually means lockdown or a seccomp profile.
///
/// aya keeps the kernel's errno in the error's `#[source]` chain (e.g.
/// `MapError::CreateError { io_error, .. }`), not in its message, so the chain is searched for
/// an `io::Error` rather than matching text.
pub fn explain_load_error(e: aya::EbpfError) -> String {
    let text = with_sources(&e);
    let lockdown = fs::read_to_string("/sys/kernel/security/lockdown").unwrap_or_default();
    explain(&text, errno_in(&e), &lockdown)
}

fn explain(text: &str, errno: Option<i32>, lockdown: &str) -> String {
    if lockdown.contains("[confidentiality]") || lockdown.contains("[integrity]") {
        return format!(
            "the kernel is in lockdown mode ({}), which forbids the eBPF programs spot-sim needs: {text}",
            lockdown.trim()
        );
    }
    if matches!(errno, Some(libc::EPERM | libc::EACCES)) {
        return format!(
            "the kernel refused the BPF syscall ({text}): a seccomp profile or a security module blocks it; run spot-sim privileged (e.g. --profile=sysadmin)"
        );
    }
    format!("loading the eBPF object failed: {text}")
}

/// The first OS error number in `e`'s source chain.
fn errno_in(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(code) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return Some(code);
        }
        cur = err.source();
    }
    None
}

/// The error and its sources, as "outer: inner: innermost" (each said once).
fn with_sources(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let part = err.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        cur = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_kernel_releases() {
        assert_eq!(super::parse_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(super::parse_release("5.4.0-1045-aws"), Some((5, 4)));
        assert_eq!(super::parse_release("junk"), None);
    }

    fn map_create_error(errno: i32) -> aya::EbpfError {
        aya::EbpfError::MapError(aya::maps::MapError::CreateError {
            name: "TARGETS".into(),
            io_error: std::io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn an_eperm_deep_in_aya_s_error_gets_the_seccomp_hint() {
        let e = map_create_error(libc::EPERM);
        let msg = super::explain(&super::with_sources(&e), super::errno_in(&e), "");
        assert!(msg.contains("seccomp profile"), "{msg}");
        assert!(msg.contains("TARGETS"), "{msg}");
    }

    #[test]
    fn other_errors_are_not_blamed_on_seccomp() {
        let e = map_create_error(libc::ENOMEM);
        let msg = super::explain(&super::with_sources(&e), super::errno_in(&e), "");
        assert!(msg.starts_with("loading the eBPF object failed"), "{msg}");
    }

    #[test]
    fn lockdown_is_named_first() {
        let e = map_create_error(libc::EPERM);
        let msg = super::explain(
            &super::with_sources(&e),
            super::errno_in(&e),
            "none [integrity] confidentiality",
        );
        assert!(msg.contains("lockdown mode"), "{msg}");
    }
}
