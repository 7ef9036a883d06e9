//! The one way spot-sim takes a lock.

use std::sync::{Mutex, MutexGuard};

/// A poisoned lock only means another thread panicked mid-update of a plain value; the value
/// itself is still whole (a counter, a map the kernel's own state backs), so carry on with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
