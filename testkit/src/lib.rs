//! Fixtures that the end-to-end tests (`tests/`) and the benchmark (`cargo xtask bench`) share:
//! private network namespaces, test-owned cgroups, commands placed in both, child processes,
//! control-socket paths and scratch folders.
//!
//! Every fixture owns what it created and releases it on drop, so a failing test or an
//! interrupted benchmark leaves nothing behind. Clients that might reach the IMDS address run
//! in a private namespace with only `lo`: a missed redirect fails with "network unreachable"
//! instead of leaving the machine. Nothing here knows spot-sim's command line.

mod cgroup;
mod netns;
mod proc;
mod scratch;
mod suite;

use std::{
    ffi::OsStr,
    io,
    path::Path,
    process::{Command, Output},
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex, MutexGuard,
    },
};

pub use cgroup::{cgroup2_mount, remove_cgroup_tree, TestCgroup};
pub use netns::NetNs;
pub use proc::{interrupted, stop_on_signals, Capture, Proc};
pub use scratch::{ControlSocket, OwnedPath, ScratchDir};
pub use spot_sim_place::Placement;
pub use suite::{heavy, poll_until, require_root, skip};

/// A name unique to this process and call: `spot-sim-test-TAG-PID-N`. Tests of one binary run
/// on parallel threads and other people's tests run beside them, so every object gets one.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "spot-sim-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A lock of the fixtures' shared state (a process's lines, a node's sandboxes), even when a
/// panicking test thread poisoned it: what it guards is a plain list, still whole.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a command starts: `cgroup` (or the caller's own) and `netns` (or the caller's own).
pub fn place(cgroup: Option<&Path>, netns: Option<&NetNs>) -> io::Result<Placement> {
    let mut p = Placement::new();
    if let Some(ns) = netns {
        p = p.netns(ns)?;
    }
    if let Some(cg) = cgroup {
        p = p.cgroup(cg)?;
    }
    Ok(p)
}

/// `program ARGS`, set to start in `place`.
pub fn placed(place: Placement, program: impl AsRef<OsStr>, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    place.apply(&mut cmd);
    cmd
}

/// `program ARGS` set to start inside `cgroup` (if any) and `netns` (if any).
pub fn command_in(
    cgroup: Option<&Path>,
    netns: Option<&NetNs>,
    program: impl AsRef<OsStr>,
    args: &[&str],
) -> io::Result<Command> {
    Ok(placed(place(cgroup, netns)?, program, args))
}

/// A command's stdout, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An error that says what was being done.
pub(crate) fn context(what: impl std::fmt::Display, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_paths_are_gone_after_drop() {
        let dir = OwnedPath::scratch_dir("kit").expect("scratch dir");
        std::fs::write(dir.join("x"), "x").expect("a file inside");
        let file = OwnedPath::file("kit", "toml", "a = 1").expect("file");
        assert_eq!(std::fs::read_to_string(&*file).expect("read"), "a = 1");
        let (d, f) = (dir.to_path_buf(), file.to_path_buf());
        drop((dir, file));
        assert!(!d.exists() && !f.exists());
        assert_ne!(unique("kit"), unique("kit"));
    }

    #[test]
    fn a_private_namespace_has_loopback_up_and_nothing_else() {
        root_or_skip!();
        let ns = NetNs::new_private().expect("namespace");
        let out = ns
            .command("ip", &["-o", "link"])
            .expect("ip")
            .output()
            .expect("ip runs");
        let text = stdout(&out);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(": lo:") && text.contains("UP"), "{text}");
        let echoed = ns.run(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            std::net::TcpStream::connect(l.local_addr().expect("addr")).is_ok()
        });
        assert!(echoed.expect("thread in the namespace"));
        let other = ns.run(|| std::net::TcpStream::connect("169.254.169.254:80").map(|_| ()));
        let err = other
            .expect("thread")
            .expect_err("no route off the machine");
        assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
    }

    #[test]
    fn a_test_cgroup_kills_what_runs_in_it_and_goes() {
        root_or_skip!();
        let cg = TestCgroup::new("kit").expect("cgroup");
        let leaf = cg.child("a/b").expect("child");
        let mut cmd = command_in(Some(&leaf), None, "sleep", &["600"]).expect("placed");
        let mut p = Proc::spawn("sleep", &mut cmd, Capture::Both).expect("spawn");
        let procs = std::fs::read_to_string(leaf.join("cgroup.procs")).expect("procs");
        assert_eq!(procs.trim(), p.pid().to_string());
        let path = cg.path.clone();
        drop(cg);
        assert!(!path.exists());
        assert!(p.wait_timeout(std::time::Duration::from_secs(5)).is_some());
    }
}
