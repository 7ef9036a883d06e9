//! Reading from the kernel: redirect events from our ring buffer, and aya-log records.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, RawFd},
    sync::{Arc, Mutex},
};

use aya::{
    maps::{Map, MapData, MapError, RingBuf},
    Ebpf,
};
use aya_log::EbpfLogger;
use tokio::io::unix::AsyncFd;

/// A redirect, as the kernel reported it: what the log and the journal show of it (the
/// record also has the thread and cgroup ids, which nothing shows).
#[derive(Clone, Debug)]
pub struct RedirectEvent {
    pub target_index: u32,
    /// The process (thread group) that connected.
    pub tgid: u32,
    /// When the kernel redirected it (CLOCK_MONOTONIC nanoseconds).
    pub ktime_ns: u64,
    /// The destination the client asked for.
    pub original: IpAddr,
    /// The client used an IPv6 socket (native, or IPv4-mapped).
    pub ipv6_socket: bool,
    pub comm: String,
}

impl RedirectEvent {
    fn from_raw(raw: &spot_sim_common::RedirectEvent) -> Self {
        let w = raw.orig_addr;
        let original = if raw.family == spot_sim_common::AF_INET || raw.mapped != 0 {
            let word = if raw.mapped != 0 { w[3] } else { w[0] };
            IpAddr::V4(Ipv4Addr::from(word.to_ne_bytes()))
        } else {
            let mut bytes = [0u8; 16];
            for (i, word) in w.iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        };
        let end = raw
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(raw.comm.len());
        Self {
            tgid: raw.tgid,
            ktime_ns: raw.ktime_ns,
            target_index: raw.target_index,
            original,
            ipv6_socket: raw.family == spot_sim_common::AF_INET6,
            // A process names itself: escaped here, once, so no log or status line shows it raw.
            comm: crate::escape::untrusted_bytes(&raw.comm[..end]),
        }
    }
}

/// The ring buffer of redirect events.
pub struct EventReader {
    ring: RingBuf<MapData>,
}

impl EventReader {
    pub(super) fn new(map: Map) -> Result<Self, MapError> {
        Ok(Self {
            ring: RingBuf::try_from(map)?,
        })
    }

    /// Delivers every event the kernel submitted so far.
    ///
    /// The kernel side wakes us (through [`EventReader::wake_fd`], edge-triggered) when a
    /// record arrives after we had read everything, or when the buffer is filling up; the
    /// session drains then, on its tick, and once more before anything is reported or
    /// spot-sim exits. Each event carries the kernel's time, so a late read changes nothing.
    pub fn drain(&mut self, mut f: impl FnMut(RedirectEvent)) {
        drain(&mut self.ring, &mut f);
    }

    /// Readable when the kernel wants the buffer drained early.
    pub fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.ring.as_fd()
    }
}

fn drain(ring: &mut RingBuf<MapData>, f: &mut impl FnMut(RedirectEvent)) {
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<spot_sim_common::RedirectEvent>() {
            // SAFETY: the kernel wrote a whole RedirectEvent there; read_unaligned copes with
            // the ring buffer's 8-byte alignment.
            let raw = unsafe {
                std::ptr::read_unaligned(item.as_ptr().cast::<spot_sim_common::RedirectEvent>())
            };
            f(RedirectEvent::from_raw(&raw));
        }
    }
}

/// The eBPF side's aya-log records, forwarded into spot-sim's log for as long as spot-sim
/// runs. The logger must stay alive: dropping it closes the map the programs write to.
#[derive(Clone)]
pub(super) struct EbpfLogs(Arc<Mutex<EbpfLogger<&'static dyn log::Log>>>);

impl EbpfLogs {
    /// Starts forwarding; `None` when the object has no log records or they cannot be polled.
    pub(super) fn forward(ebpf: &mut Ebpf) -> Option<Self> {
        let logger = match EbpfLogger::init(ebpf) {
            Ok(l) => l,
            Err(e) => {
                log::debug!("no eBPF log records: {e}");
                return None;
            }
        };
        let fd = logger.as_raw_fd();
        let logs = Self(Arc::new(Mutex::new(logger)));
        // SAFETY: the registration polls the fd number only; the logger that owns the fd is
        // kept in the same `Poller`, whose fields drop in order: deregister first, then (when
        // it is the last handle) close.
        let Ok(ready) = (unsafe { AsyncFd::register(RawFdRef(fd)) }) else {
            log::warn!("cannot poll the eBPF log ring buffer");
            return None;
        };
        let poller = Poller {
            ready,
            logs: logs.clone(),
        };
        tokio::spawn(async move {
            loop {
                let Ok(mut guard) = poller.ready.readable().await else {
                    return;
                };
                poller.logs.flush();
                guard.clear_ready();
            }
        });
        Some(logs)
    }

    /// Writes out every record the programs have produced so far: called on a wake-up and once
    /// more when the redirect is dropped, so a short command's last records are not lost.
    pub(super) fn flush(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush();
    }
}

/// The log ring buffer's readiness and the logger that owns its fd; field order is drop order.
struct Poller {
    ready: AsyncFd<RawFdRef>,
    logs: EbpfLogs,
}

/// A file descriptor number to poll, owned elsewhere.
struct RawFdRef(RawFd);

impl AsRawFd for RawFdRef {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}
