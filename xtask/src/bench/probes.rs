//! Probes: small real processes the bench starts inside its namespaces and cgroups, and what
//! it reads about a running spot-sim from /proc.

use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use super::{IMDS, PATH};

pub(super) fn status_field(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub(super) fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

/// The largest VmRSS of a process, sampled every 100 ms until finished.
pub(super) struct RssSampler {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    pub(super) fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                max = max.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(100));
            }
            max
        });
        Self { stop, thread }
    }

    pub(super) fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// Runs one probe by name (`cargo xtask bench --probe KIND`, started by the bench itself).
pub(super) fn probe(kind: &str, args: &super::BenchArgs) -> Result<ExitCode> {
    match kind {
        "first-answer" => probe_first_answer(),
        "connect-latency" => probe_connect_latency(),
        "connect-rate" => {
            let to = args.probe_to.as_deref().unwrap_or("169.254.169.254:80");
            probe_connect_rate(to.parse()?, args.probe_rate, args.duration)
        }
        other => bail!("unknown probe {other}"),
    }
}

/// Connects to `to` at `rate` connects a second (0: one after another, as fast as one
/// process can) for `secs` seconds, closing each at once with a reset (no TIME_WAIT, so ports
/// never run out); prints `connects failed seconds`.
pub(super) fn probe_connect_rate(to: SocketAddr, rate: u32, secs: u64) -> Result<ExitCode> {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let (mut n, mut failed) = (0u64, 0u64);
    while Instant::now() < end {
        if rate > 0 {
            // Paced from the start, so a late connect does not shift the ones after it.
            let due = start + Duration::from_secs_f64(n as f64 / f64::from(rate));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            Ok(s) => close_with_reset(&s),
            Err(_) => failed += 1,
        }
        n += 1;
    }
    println!("{n} {failed} {:.3}", start.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// Closing with RST leaves no TIME_WAIT behind.
fn close_with_reset(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Polls the IMDS address every millisecond, as a handler would, and says when it answered.
/// Runs only in the bench's private namespace: before the redirect is attached the connect
/// fails at once with "network unreachable".
pub(super) fn probe_first_answer() -> Result<ExitCode> {
    let addr = SocketAddr::from(([169, 254, 169, 254], 80));
    println!("polling");
    std::io::stdout().flush()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET {PATH} HTTP/1.1\r\nHost: {IMDS}\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.1 200")
            {
                println!("answered");
                std::io::stdout().flush()?;
                return Ok(ExitCode::SUCCESS);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    bail!("no answer within 30 s")
}

/// Times 20,000 connects to a local listener; prints the p50 and p99 in µs.
pub(super) fn probe_connect_latency() -> Result<ExitCode> {
    const N: usize = 20_000;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    // A deep accept queue: a full one drops SYNs, and the retry after 1 s is not what we time.
    // SAFETY: listen on our own bound socket only changes its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let mut times = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        let s = TcpStream::connect(addr)?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        close_with_reset(&s);
    }
    times.sort_by(f64::total_cmp);
    println!("{:.2} {:.2}", times[N / 2], times[N * 99 / 100]);
    Ok(ExitCode::SUCCESS)
}

/// The machine, as the results state it: CPUs, kernel, and the load when the run began.
pub(super) fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{cpus} × {model}, Linux {}, load average {load} (1, 5, 15 min) when the run began",
        kernel.trim()
    )
}
