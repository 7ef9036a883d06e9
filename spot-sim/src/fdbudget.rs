//! File descriptors are the one resource every listener shares: a flood of connections on one
//! target must not leave another target, the metrics endpoint or the control socket without a
//! descriptor to accept with. At start spot-sim raises its soft `RLIMIT_NOFILE` to the hard
//! limit and turns what it has into a budget: every listener gets a [`Lane`] with a few
//! connections reserved for it alone, and the rest is shared, first come first served.
//!
//! Before [`init`] (unit tests, `spot-sim serve`) every lane admits without limit.

use std::{
    sync::{
        atomic::{AtomicIsize, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

/// Descriptors kept free of connections for everything else: scenario files, `/proc` reads,
/// namespace and cgroup handles, the setns threads, a `target add`.
pub const FIXED_RESERVE: isize = 64;
/// What a listener costs besides its connections: the listener itself, and its share of the
/// target's eBPF links, cgroup and namespace handles.
pub const LISTENER_OVERHEAD: isize = 8;

struct Budget {
    /// Connections any lane may still open beyond its reserve (negative: over-committed).
    shared: AtomicIsize,
    soft_limit: u64,
}

static BUDGET: OnceLock<Budget> = OnceLock::new();

/// Raises the soft descriptor limit to the hard one and starts the budget from what is open
/// now. Returns the limit in force.
pub fn init() -> u64 {
    let limit = raise_nofile();
    let open = open_descriptors() as isize;
    let shared = (limit as isize).saturating_sub(open + FIXED_RESERVE);
    let _ = BUDGET.set(Budget {
        shared: AtomicIsize::new(shared),
        soft_limit: limit,
    });
    log::debug!(
        "descriptor budget: limit {limit}, {open} open at start, {FIXED_RESERVE} kept free, {shared} for connections"
    );
    limit
}

fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    let (soft, hard) = (lim.rlim_cur, lim.rlim_max);
    if soft >= hard {
        log::debug!("descriptor limit: {soft} (already the hard limit)");
        return soft;
    }
    lim.rlim_cur = hard;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        log::debug!("descriptor limit raised from {soft} to the hard limit {hard}");
        hard
    } else {
        let e = std::io::Error::last_os_error();
        log::debug!("cannot raise the descriptor limit from {soft} to {hard}: {e}");
        soft
    }
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The soft descriptor limit the budget was made for (`None` before [`init`]).
pub fn limit() -> Option<u64> {
    BUDGET.get().map(|b| b.soft_limit)
}

/// One listener's share of the budget; dropping it gives its reserve back.
pub struct Lane {
    budget: Option<&'static Budget>,
    name: String,
    reserved: usize,
    reserved_used: AtomicUsize,
    /// What creating the lane took from the shared pool (0 before [`init`]).
    took: isize,
}

/// One admitted connection; dropping it returns its place.
pub struct Ticket {
    lane: Arc<Lane>,
    from_shared: bool,
}

impl Lane {
    /// A lane with `reserved` connections no other lane can take.
    pub fn new(name: impl Into<String>, reserved: usize) -> Arc<Self> {
        Self::new_in(BUDGET.get(), name, reserved)
    }

    fn new_in(
        budget: Option<&'static Budget>,
        name: impl Into<String>,
        reserved: usize,
    ) -> Arc<Self> {
        let name = name.into();
        let took = match budget {
            Some(b) => {
                let took = reserved as isize + LISTENER_OVERHEAD;
                let left = b.shared.fetch_sub(took, Ordering::AcqRel) - took;
                if left < 0 {
                    log::warn!(
                        "{}: the descriptor limit ({}) is too low for this many listeners; raise it (`ulimit -n`, LimitNOFILE=) or target fewer cgroups",
                        name,
                        b.soft_limit
                    );
                }
                took
            }
            None => 0,
        };
        Arc::new(Self {
            budget,
            name,
            reserved,
            reserved_used: AtomicUsize::new(0),
            took,
        })
    }

    /// A place for one more connection, from this lane's reserve or else the shared pool;
    /// `None` when both are used up (the caller closes the connection at once).
    pub fn try_admit(self: &Arc<Self>) -> Option<Ticket> {
        let Some(b) = self.budget else {
            return Some(Ticket {
                lane: Arc::clone(self),
                from_shared: false,
            });
        };
        let reserved = self
            .reserved_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.reserved).then_some(n + 1)
            })
            .is_ok();
        if reserved {
            return Some(Ticket {
                lane: Arc::clone(self),
                from_shared: false,
            });
        }
        b.shared
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > 0).then_some(n - 1)
            })
            .ok()
            .map(|_| Ticket {
                lane: Arc::clone(self),
                from_shared: true,
            })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(b) = self.budget {
            b.shared.fetch_add(self.took, Ordering::AcqRel);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        match self.lane.budget {
            Some(b) if self.from_shared => {
                b.shared.fetch_add(1, Ordering::AcqRel);
            }
            Some(_) => {
                self.lane.reserved_used.fetch_sub(1, Ordering::AcqRel);
            }
            None => {}
        }
    }
}

/// An accept loop's answer to errors: out of descriptors (`EMFILE`, `ENFILE`) or memory, the
/// pending connection stays queued and `accept` fails again at once, so the loop would spin a
/// core and flood the log. It sleeps instead, longer each time (10 ms up to 1 s), and logs at
/// most one line in 5 s.
pub struct AcceptBackoff {
    what: String,
    delay: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl AcceptBackoff {
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            delay: Duration::ZERO,
            last_log: None,
            suppressed: 0,
        }
    }

    pub fn reset(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// An accept's outcome: the connection (and the back-off reset), or `None` after backing
    /// off from the error, for the caller to accept again.
    pub async fn settle<T>(&mut self, accepted: std::io::Result<T>) -> Option<T> {
        match accepted {
            Ok(v) => {
                self.reset();
                Some(v)
            }
            Err(e) => {
                self.wait(&e).await;
                None
            }
        }
    }

    /// Logs (rate-limited) and sleeps after a failed accept.
    pub async fn wait(&mut self, e: &std::io::Error) {
        let exhausted = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        self.delay = if exhausted {
            (self.delay * 2).clamp(Duration::from_millis(10), Duration::from_secs(1))
        } else {
            // A connection reset before we took it, and the like: try the next one soon.
            Duration::from_millis(1)
        };
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(5))
        {
            let more = std::mem::take(&mut self.suppressed);
            let more = if more > 0 {
                format!(" (+{more} more since the last line)")
            } else {
                String::new()
            };
            let hint = if exhausted {
                "; backing off (raise the descriptor limit if this persists)"
            } else {
                ""
            };
            log::warn!("{}: accept failed: {e}{hint}{more}", self.what);
            self.last_log = Some(now);
        } else {
            self.suppressed += 1;
        }
        tokio::time::sleep(self.delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(shared: isize) -> &'static Budget {
        Box::leak(Box::new(Budget {
            shared: AtomicIsize::new(shared),
            soft_limit: 1024,
        }))
    }

    #[test]
    fn a_lane_that_takes_the_whole_shared_pool_leaves_every_other_lane_its_reserve() {
        // Two lanes of reserve 2 each take 2 + 8 (overhead): 10 shared places are left.
        let b = budget(30);
        let flooded = Lane::new_in(Some(b), "flooded", 2);
        let calm = Lane::new_in(Some(b), "calm", 2);
        let held: Vec<_> = std::iter::from_fn(|| flooded.try_admit())
            .take(100)
            .collect();
        assert_eq!(held.len(), 12, "its reserve of 2 and the 10 shared");
        assert!(flooded.try_admit().is_none());
        let calm_tickets: Vec<_> = std::iter::from_fn(|| calm.try_admit()).take(100).collect();
        assert_eq!(calm_tickets.len(), 2, "the calm lane still has its reserve");
        drop(held);
        assert_eq!(
            b.shared.load(Ordering::Acquire),
            10,
            "shared places come back"
        );
        drop(calm_tickets);
        drop((flooded, calm));
        assert_eq!(
            b.shared.load(Ordering::Acquire),
            30,
            "lanes give their share back"
        );
    }

    #[test]
    fn without_a_budget_every_lane_admits() {
        let lane = Lane::new_in(None, "free", 0);
        let all: Vec<_> = std::iter::from_fn(|| lane.try_admit()).take(5000).collect();
        assert_eq!(all.len(), 5000);
    }
}
