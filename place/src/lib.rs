//! Where a child process starts: a network namespace, a cgroup, and whether it dies with its
//! parent, applied between fork and exec so the program's first instruction already runs there.
//!
//! One type serves `spot-sim exec` and the test kit alike. Everything is opened in the parent;
//! the child only makes async-signal-safe syscalls (prctl, getppid, setns, write, setrlimit,
//! umask) on descriptors and values captured by the closure, and allocates nothing.
#![deny(unsafe_op_in_unsafe_fn)]

use std::{
    fs::OpenOptions,
    io,
    os::{
        fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::Path,
    process::Command,
};

/// A place for a child process. Built in the parent, applied with [`Placement::apply`].
#[derive(Debug, Default)]
pub struct Placement {
    netns: Option<OwnedFd>,
    procs: Option<OwnedFd>,
    die_with_parent: Option<libc::pid_t>,
    nofile: Option<(libc::rlim_t, Option<libc::rlim_t>)>,
    umask: Option<libc::mode_t>,
}

impl Placement {
    /// Nowhere in particular: the child stays where its parent is.
    pub fn new() -> Self {
        Self::default()
    }

    /// Enter the network namespace open at `ns` (a `/proc/…/ns/net` handle).
    pub fn netns(mut self, ns: impl AsFd) -> io::Result<Self> {
        self.netns = Some(ns.as_fd().try_clone_to_owned()?);
        Ok(self)
    }

    /// Join a cgroup through its `cgroup.procs`, already open for writing.
    pub fn cgroup_procs(mut self, procs: impl AsFd) -> io::Result<Self> {
        self.procs = Some(procs.as_fd().try_clone_to_owned()?);
        Ok(self)
    }

    /// Join the cgroup whose directory is open at `dir`.
    pub fn cgroup_dir_fd(mut self, dir: impl AsFd) -> io::Result<Self> {
        let name = c"cgroup.procs";
        // SAFETY: openat on a descriptor we borrow, with a NUL-terminated name; the result is
        // checked and owned at once.
        let fd = unsafe {
            libc::openat(
                dir.as_fd().as_raw_fd(),
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is fresh and nobody else owns it.
        self.procs = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(self)
    }

    /// Join the cgroup at the path `dir`.
    pub fn cgroup(mut self, dir: &Path) -> io::Result<Self> {
        let procs = OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open {}/cgroup.procs: {e}", dir.display()),
                )
            })?;
        self.procs = Some(procs.into());
        Ok(self)
    }

    /// The child is killed when this process ends (even by SIGKILL), and does not start at all
    /// if this process is already gone. The signal follows the thread that forks.
    pub fn die_with_parent(mut self) -> Self {
        // SAFETY: getpid has no preconditions.
        self.die_with_parent = Some(unsafe { libc::getpid() });
        self
    }

    /// `ulimit -n`: the soft limit, and the hard one (`None` keeps the current hard limit).
    pub fn nofile(mut self, soft: libc::rlim_t, hard: Option<libc::rlim_t>) -> Self {
        self.nofile = Some((soft, hard));
        self
    }

    /// The file mode creation mask the child starts with.
    pub fn umask(mut self, mask: libc::mode_t) -> Self {
        self.umask = Some(mask);
        self
    }

    /// Sets `cmd` to start in this place. Order: the parent-death signal first (so a parent
    /// that dies later still takes the child), then the namespace, then the cgroup.
    pub fn apply(self, cmd: &mut Command) {
        let Self {
            netns,
            procs,
            die_with_parent,
            nofile,
            umask,
        } = self;
        // SAFETY: the closure makes only async-signal-safe syscalls on values it owns, and
        // builds no io::Error that allocates (last_os_error and from_raw_os_error do not).
        unsafe {
            cmd.pre_exec(move || {
                if let Some(parent) = die_with_parent {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // The parent died between fork and prctl: do not start at all.
                    if libc::getppid() != parent {
                        return Err(io::Error::from_raw_os_error(libc::ESRCH));
                    }
                }
                if let Some(ns) = &netns {
                    if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                // "0" moves the writing process: the child joins the cgroup before it execs.
                if let Some(procs) = &procs {
                    if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if let Some((soft, hard)) = nofile {
                    set_nofile(soft, hard)?;
                }
                if let Some(mask) = umask {
                    libc::umask(mask);
                }
                Ok(())
            });
        }
    }
}

/// setrlimit(RLIMIT_NOFILE), keeping the hard limit when `hard` is `None`.
fn set_nofile(soft: libc::rlim_t, hard: Option<libc::rlim_t>) -> io::Result<()> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return Err(io::Error::last_os_error());
        }
        l.rlim_cur = soft;
        if let Some(h) = hard {
            l.rlim_max = h;
        }
        if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placed_child_starts_with_the_limits_it_was_given() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "ulimit -Sn; ulimit -Hn; umask"]);
        Placement::new()
            .die_with_parent()
            .nofile(64, Some(128))
            .umask(0o027)
            .apply(&mut cmd);
        let out = cmd.output().expect("sh runs");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "64\n128\n0027\n");
    }

    #[test]
    fn a_cgroup_that_does_not_exist_is_named_in_the_error() {
        let err = Placement::new()
            .cgroup(Path::new("/nonexistent/cgroup"))
            .expect_err("no such cgroup");
        assert!(
            err.to_string().contains("/nonexistent/cgroup/cgroup.procs"),
            "{err}"
        );
    }
}
