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

use std::{
    ffi::OsStr,
    io,
    path::Path,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

pub use cgroup::{cgroup2_mount, remove_cgroup_tree, TestCgroup};
pub use netns::NetNs;
pub use proc::{interrupted, stop_on_signals, Capture, Proc};
pub use scratch::{ControlSocket, OwnedPath, ScratchDir};
pub use spot_sim_place::Placement;

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
