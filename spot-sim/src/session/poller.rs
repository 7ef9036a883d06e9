//! Where the owner thread sleeps: one epoll set of the job doorbell, the kernel's ring
//! buffers and the cgroup watch.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::Arc,
    time::Duration,
};

/// Wakes the owner thread: an eventfd it polls beside the kernel's and inotify's.
pub(super) struct Doorbell(OwnedFd);

impl Doorbell {
    pub(super) fn new() -> std::io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(super) fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a u64 to our own eventfd; a full counter only means
        // the owner is already due to wake.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter after a wake-up.
    fn clear(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads 8 bytes into a u64 from our own non-blocking eventfd.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    }

    fn raw(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// Sweeps of the kernel's outbound-connect map that journals asked for when their handler
/// first read an event: the owner does them as soon as the doorbell wakes it, then tells each
/// asker (whose responder holds that answer until then).
pub(super) struct SweepAsks {
    waiting: std::sync::Mutex<Vec<tokio::sync::oneshot::Sender<()>>>,
    doorbell: Arc<Doorbell>,
}

impl SweepAsks {
    pub(super) fn new(doorbell: Arc<Doorbell>) -> Arc<Self> {
        Arc::new(Self {
            waiting: std::sync::Mutex::new(Vec::new()),
            doorbell,
        })
    }

    /// A journal's way to ask (see [`crate::journal::Journal::set_sweeper`]).
    pub(super) fn sweeper(self: &Arc<Self>) -> crate::journal::Sweeper {
        let asks = Arc::clone(self);
        Box::new(move || {
            let (tx, rx) = tokio::sync::oneshot::channel();
            crate::lock::lock(&asks.waiting).push(tx);
            asks.doorbell.ring();
            rx
        })
    }

    /// The askers waiting for a sweep, taken.
    pub(super) fn take(&self) -> Vec<tokio::sync::oneshot::Sender<()>> {
        std::mem::take(&mut *crate::lock::lock(&self.waiting))
    }
}

/// What woke the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wake {
    Jobs,
    Kernel,
    Cgroups,
}

#[derive(Default)]
pub(super) struct Woke {
    pub(super) kernel: bool,
    pub(super) cgroups: bool,
}

/// The owner's one place to sleep: an epoll set of the job doorbell, the kernel's ring
/// buffers and the cgroup watch.
pub(super) struct Poller {
    epoll: OwnedFd,
    doorbell: Arc<Doorbell>,
    kinds: Vec<(RawFd, Wake)>,
}

impl Poller {
    pub(super) fn new(doorbell: Arc<Doorbell>) -> std::io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut p = Self {
            // SAFETY: a fresh descriptor nothing else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            doorbell,
            kinds: Vec::new(),
        };
        p.add(p.doorbell.raw(), Wake::Jobs, false);
        Ok(p)
    }

    /// Adds `fd` (which must outlive the poller's use of it: the owner keeps every reader for
    /// its whole life).
    pub(super) fn add(&mut self, fd: RawFd, kind: Wake, edge: bool) {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | if edge { libc::EPOLLET } else { 0 }) as u32,
            u64: self.kinds.len() as u64,
        };
        // SAFETY: our own epoll fd, a live fd and one event description.
        let r =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r != 0 {
            log::warn!(
                "cannot poll {kind:?} ({}); the tick covers it",
                std::io::Error::last_os_error()
            );
            return;
        }
        self.kinds.push((fd, kind));
    }

    /// Sleeps until something is ready or `timeout` passes.
    pub(super) fn wait(&self, timeout: Duration) -> Woke {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // Round up: a 0 ms wait for a tick 0.4 ms away would spin.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: our own epoll fd and a buffer of 8 events.
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), evs.as_mut_ptr(), 8, ms) };
        let mut woke = Woke::default();
        for ev in evs.iter().take(n.max(0) as usize) {
            match self.kinds.get(ev.u64 as usize).map(|(_, k)| *k) {
                Some(Wake::Jobs) => self.doorbell.clear(),
                Some(Wake::Kernel) => woke.kernel = true,
                Some(Wake::Cgroups) => woke.cgroups = true,
                None => {}
            }
        }
        woke
    }
}
