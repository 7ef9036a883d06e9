//! The clock every scenario decision reads, injected so tests move time instead of sleeping.

use std::sync::Mutex;

use crate::lock::lock;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// Where the timeline and the token store read the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> SystemTime;

    /// Fires when the clock moves other than by time passing (a test advancing a manual
    /// clock, the wall clock being set), so waiters need not poll for it. `None`: no way to
    /// tell, so waiters must look again now and then.
    fn jumps(&self) -> Option<watch::Receiver<()>> {
        None
    }
}

/// The wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn jumps(&self) -> Option<watch::Receiver<()>> {
        wall_clock_steps()
    }
}

/// Steps of the wall clock (`date -s`, an NTP step, a VM resumed), from the kernel: a
/// timerfd on CLOCK_REALTIME armed with `TFD_TIMER_CANCEL_ON_SET` fails its read with
/// `ECANCELED` whenever the clock is set (timerfd_create(2)). One thread for the whole
/// process sleeps in that read, so 200 idle responders need no timer to notice a step.
fn wall_clock_steps() -> Option<watch::Receiver<()>> {
    static STEPS: std::sync::OnceLock<Option<watch::Sender<()>>> = std::sync::OnceLock::new();
    STEPS
        .get_or_init(|| match watch_wall_clock() {
            Ok(tx) => Some(tx),
            Err(e) => {
                log::debug!("cannot watch the wall clock for steps ({e}); polling instead");
                None
            }
        })
        .as_ref()
        .map(watch::Sender::subscribe)
}

fn watch_wall_clock() -> std::io::Result<watch::Sender<()>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain syscall; the result is checked before use.
    let fd = unsafe { libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let arm = |fd: &OwnedFd| {
        // Far in the future: only the cancellation on a clock set is of interest.
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::MAX / 2,
                tv_nsec: 0,
            },
        };
        // SAFETY: our own timerfd and a valid itimerspec; the old value is not wanted.
        let r = unsafe {
            libc::timerfd_settime(
                fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    arm(&fd)?;
    let (tx, _) = watch::channel(());
    let sender = tx.clone();
    std::thread::Builder::new()
        .name("spot-sim-clock".into())
        .spawn(move || loop {
            let mut expirations = 0u64;
            // SAFETY: reads 8 bytes into a u64 from our own blocking timerfd.
            let n = unsafe {
                libc::read(
                    fd.as_raw_fd(),
                    (&mut expirations as *mut u64).cast(),
                    size_of::<u64>(),
                )
            };
            let err = std::io::Error::last_os_error();
            if n < 0 && err.raw_os_error() == Some(libc::ECANCELED) {
                sender.send_replace(());
            } else if n < 0 && err.kind() != std::io::ErrorKind::Interrupted {
                log::debug!("the wall-clock watch stopped: {err}");
                return;
            }
            // After a cancellation the timer must be armed again to hear of the next one.
            if arm(&fd).is_err() {
                return;
            }
        })?;
    Ok(tx)
}

/// A clock that only moves when told to: tests drive whole timelines with it.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
    moved: watch::Sender<()>,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: Mutex::new(start),
            moved: watch::Sender::new(()),
        }
    }

    pub fn advance(&self, by: Duration) {
        *lock(&self.now) += by;
        self.moved.send_replace(());
    }

    pub fn set(&self, to: SystemTime) {
        *lock(&self.now) = to;
        self.moved.send_replace(());
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *lock(&self.now)
    }

    fn jumps(&self) -> Option<watch::Receiver<()>> {
        Some(self.moved.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_can_tell_of_steps_and_every_subscriber_shares_one_watch() {
        // A step itself is not made here (it would set this machine's clock); what is
        // checked is that the kernel accepted the cancel-on-set timer, so listeners wait
        // without polling.
        let a = SystemClock
            .jumps()
            .expect("timerfd with TFD_TIMER_CANCEL_ON_SET");
        let b = SystemClock.jumps().expect("the same watch");
        assert!(a.same_channel(&b));
        assert!(!a.has_changed().unwrap_or(true));
    }
}
