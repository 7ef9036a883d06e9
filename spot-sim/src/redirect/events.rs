//! Reading from the kernel: redirect events from our ring buffer, and aya-log records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::{
    maps::{Map, MapData, MapError, RingBuf},
    Ebpf,
};
use tokio::io::unix::AsyncFd;

/// A redirect, as the kernel reported it.
#[derive(Clone, Debug)]
pub struct RedirectEvent {
    pub pid: u32,
    pub tgid: u32,
    pub cgroup_id: u64,
    pub target_index: u32,
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
            pid: raw.pid,
            tgid: raw.tgid,
            cgroup_id: raw.cgroup_id,
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

    /// Delivers events to `f` until the ring buffer fails (it does not, while spot-sim runs).
    ///
    /// The kernel side submits without waking us (a wake-up per connect costs the clients CPU
    /// under load) unless the buffer is filling up, so we also drain it on a short timer: an
    /// event reaches the log and the counters within [`DRAIN_EVERY`].
    pub async fn run(self, mut f: impl FnMut(RedirectEvent)) {
        // SAFETY: the ring buffer owns its map fd and keeps it open for as long as the
        // AsyncFd owns the ring buffer.
        let Ok(mut fd) = (unsafe { AsyncFd::register(self.ring) }) else {
            log::warn!("cannot poll the redirect event ring buffer; redirects will not be logged");
            return;
        };
        let mut tick = tokio::time::interval(DRAIN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                ready = fd.readable_mut() => {
                    let Ok(mut guard) = ready else {
                        return;
                    };
                    drain(guard.get_inner_mut(), &mut f);
                    guard.clear_ready();
                }
                _ = tick.tick() => drain(fd.get_mut(), &mut f),
            }
        }
    }
}

/// How often the event ring buffer is read when the kernel does not wake us.
pub const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

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

/// Forwards the eBPF side's aya-log records into spot-sim's log, for as long as spot-sim runs.
/// The logger must stay alive: dropping it closes the map the programs write to.
pub(super) fn forward_ebpf_logs(ebpf: &mut Ebpf) {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(l) => l,
        Err(e) => {
            log::debug!("no eBPF log records: {e}");
            return;
        }
    };
    // SAFETY: the logger owns its ring buffer map fd for as long as the AsyncFd owns it.
    let Ok(mut fd) = (unsafe { AsyncFd::register(logger) }) else {
        log::warn!("cannot poll the eBPF log ring buffer");
        return;
    };
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
