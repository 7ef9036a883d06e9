//! Private network namespaces: only `lo`, up. Nothing inside can reach another machine.

use std::{
    fs::File,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    process::Command,
};

use crate::{context, placed, Placement};

/// A handle on a network namespace. The namespace lives as long as a handle or a process
/// inside it; dropping the last handle of an empty one removes it.
#[derive(Debug)]
pub struct NetNs(File);

impl NetNs {
    /// A new namespace with only `lo`, brought up.
    pub fn new_private() -> io::Result<Self> {
        std::thread::spawn(|| {
            // SAFETY: unshare on this short-lived thread only; the thread ends right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(context(
                    "cannot create a network namespace",
                    io::Error::last_os_error(),
                ));
            }
            loopback_up().map_err(|e| context("cannot bring up lo", e))?;
            File::open("/proc/thread-self/ns/net").map(NetNs)
        })
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
    }

    /// The namespace at `path` (a `/proc/PID/ns/net` link, e.g. a container's).
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        File::open(path)
            .map(NetNs)
            .map_err(|e| context(format!("opening {}", path.display()), e))
    }

    /// The namespace's inode number, as `ip netns identify` and `/proc/PID/ns/net` name it
    /// (`net:[INODE]`).
    pub fn inode(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.0.metadata()?.ino())
    }

    /// A second handle on the same namespace.
    pub fn try_clone(&self) -> io::Result<Self> {
        self.0.try_clone().map(Self)
    }

    /// Runs `f` on a thread inside this namespace (for sockets opened there).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a scoped thread that ends with `f`.
                if unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(context(
                        "cannot enter the namespace",
                        io::Error::last_os_error(),
                    ));
                }
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("a thread inside the namespace panicked"))?
        })
    }

    /// `program ARGS` set to start inside this namespace (and the caller's cgroup).
    pub fn command(&self, program: &str, args: &[&str]) -> io::Result<Command> {
        Ok(placed(Placement::new().netns(self)?, program, args))
    }

    /// Runs `sh -c SCRIPT` inside this namespace (iproute2, iptables); its stdout, or an error
    /// with its stderr.
    pub fn sh(&self, script: &str) -> io::Result<String> {
        let out = self.command("sh", &["-c", script])?.output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "`{script}` inside the namespace failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// `ip link set lo up`, without needing iproute2: the interface flags through a socket.
fn loopback_up() -> io::Result<()> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: ifreq is plain data; zeroed is a valid value (and NUL-terminates the name).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name[0] = b'l' as libc::c_char;
    req.ifr_name[1] = b'o' as libc::c_char;
    let flags = |request: libc::Ioctl, req: &mut libc::ifreq| {
        // SAFETY: SIOCGIFFLAGS / SIOCSIFFLAGS read and write the ifreq we own.
        if unsafe { libc::ioctl(sock.as_raw_fd(), request, req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    flags(libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: after SIOCGIFFLAGS the union holds the flags.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    flags(libc::SIOCSIFFLAGS, &mut req)
}
