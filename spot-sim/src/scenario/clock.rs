//! The clock every scenario decision reads, injected so tests move time instead of sleeping.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// Where the timeline and the token store read the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> SystemTime;

    /// Fires when the clock moves other than by time passing (a test advancing a manual
    /// clock), so waiters need not poll for it. The wall clock has none.
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

/// A poisoned lock only means another thread panicked mid-update of a plain value; the value
/// itself is still whole, so carry on with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
