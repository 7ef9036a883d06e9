//! `cargo xtask bench`: spot-sim against what people use today, measured in one run on one
//! machine. Every client and server runs inside private network namespaces the bench creates
//! (only `lo`), in cgroups it creates under its own `spot-sim-bench-PID` folder; guards remove
//! both on every exit path, so nothing is left on the host and no packet leaves the machine.

use std::{
    fmt::Write as _,
    fs::{self, File},
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};

mod kernel;

/// The responder port of the main `spot-sim run`, inside the bench's namespace.
const PORT: u16 = 1338;
const IMDS: &str = "169.254.169.254";
/// What every load run asks for: a small 200 answer, like a handler's poll.
const PATH: &str = "/latest/meta-data/instance-id";

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Seconds each load run lasts.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Seconds of unrecorded load on both sides before each comparison (warm-up).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Open connections per load run (wrk -c); the responder takes at most 512.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Measured runs per setup and mode, each paired with a direct run in ABBA order; rows show
    /// min / median / max. Published figures use at least 5.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Starts of `spot-sim run` timed for the first redirected answer.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    starts: u64,
    /// Targets (each a process in a network namespace of its own) for the idle-CPU row.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    idle_targets: u64,
    /// The largest number of cgroups attached at once for the attach-cost rows.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    max_cgroups: u64,
    /// Measure this spot-sim binary instead of building a release one (to check the bench
    /// itself in a short run; its figures are not the release build's).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Internal: run one probe (`first-answer`, `connect-latency`) in the bench's namespaces.
    #[arg(long, hide = true)]
    probe: Option<String>,
}

pub fn run(root: &Path, args: BenchArgs) -> Result<ExitCode> {
    if let Some(p) = &args.probe {
        return probe(p);
    }
    if !super::is_root() {
        eprintln!("xtask: not root; running the benchmark through sudo -E");
        let exe = std::env::current_exe().context("finding the xtask binary")?;
        let status = Command::new("sudo")
            .arg("-E")
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .status()
            .context("starting sudo")?;
        return Ok(super::exit_code(status));
    }
    let started = Instant::now();
    let bin = match &args.bin {
        Some(bin) => bin.clone(),
        None => {
            super::build_ebpf(root)?;
            super::build_spot_sim(root, true)?;
            let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            target_dir.join("release/spot-sim")
        }
    };
    crate::deps::ensure(crate::deps::BENCH)?;
    install_signal_flag();
    let out = root.join("target/bench");
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let report = Bench::new(bin.clone(), &args)?.run()?;
    let elapsed = started.elapsed();
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let md = format!(
        "{report}\nWhole run (build included): {:.0} s. Command: `cargo xtask {command}`; binary {}.\n",
        elapsed.as_secs_f64(),
        bin.display()
    );
    println!("\n{md}");
    fs::write(out.join("results.md"), &md)?;
    println!(
        "written: {} and {}",
        out.join("results.md").display(),
        out.join("requests.svg").display()
    );
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Interruption: Ctrl-C ends the run through the normal error path, so the guards clean up.

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_flag() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; cleaned up");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Owned resources: a cgroup subtree, network namespaces, child processes.

/// The bench's own cgroup subtree; dropping it kills what is inside and removes it.
struct BenchCgroup {
    path: PathBuf,
}

impl BenchCgroup {
    fn create() -> Result<Self> {
        let mount = cgroup2_mount()?;
        let path = mount.join(format!("spot-sim-bench-{}", std::process::id()));
        fs::create_dir(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Self { path })
    }

    fn child(&self, rel: &str) -> Result<PathBuf> {
        let p = self.path.join(rel);
        fs::create_dir_all(&p).with_context(|| format!("creating cgroup {}", p.display()))?;
        Ok(p)
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        let _ = fs::write(self.path.join("cgroup.kill"), "1");
        let mut dirs = Vec::new();
        collect_dirs(&self.path, &mut dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            for _ in 0..200 {
                if fs::remove_dir(&d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn collect_dirs(p: &Path, out: &mut Vec<PathBuf>) {
    out.push(p.to_path_buf());
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// The cgroup v2 mount point, from `/proc/self/mountinfo`.
fn cgroup2_mount() -> Result<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    text.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
        })
        .ok_or_else(|| anyhow!("no cgroup v2 mount in /proc/self/mountinfo"))
}

/// A private network namespace with only `lo`, up. It lives as long as this handle (or a
/// process inside it); nothing in it can reach another machine.
struct NetNs(File);

impl NetNs {
    fn new() -> Result<Self> {
        std::thread::spawn(|| -> Result<NetNs> {
            // SAFETY: unshare on this short-lived thread only; no other thread changes namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                bail!(
                    "cannot create a network namespace: {}",
                    std::io::Error::last_os_error()
                );
            }
            // A child inherits this thread's namespace.
            let st = Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()?;
            if !st.success() {
                bail!("cannot bring up lo in the bench's namespace");
            }
            Ok(NetNs(File::open("/proc/thread-self/ns/net")?))
        })
        .join()
        .map_err(|_| anyhow!("the namespace thread panicked"))?
    }

    /// Runs `f` on a thread inside this namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a scoped thread that ends with `f`.
                if unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!(
                        "cannot enter the bench's namespace: {}",
                        std::io::Error::last_os_error()
                    );
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow!("a thread in the bench's namespace panicked"))?
        })
    }

    /// Runs a command (iproute2, iptables, sh) inside the namespace, outside any bench cgroup.
    fn sh(&self, script: &str) -> Result<String> {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        let fd = self.0.as_raw_fd();
        // SAFETY: only setns runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!(
                "`{script}` in the bench's namespace failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A command set to start inside `netns` and `cgroup`, and to die with the bench.
fn command_in(netns: &NetNs, cgroup: &Path, program: &Path, args: &[&str]) -> Result<Command> {
    let procs = fs::OpenOptions::new()
        .write(true)
        .open(cgroup.join("cgroup.procs"))
        .with_context(|| format!("opening {}/cgroup.procs", cgroup.display()))?;
    let ns = netns.0.try_clone()?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: only prctl, setns and write run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // "0" moves the writing process: the child joins the cgroup before it execs.
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Lines a child printed, each with when it arrived.
type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// A child process, stopped (SIGTERM, then SIGKILL) by its pid when dropped.
struct Proc {
    child: Child,
    name: String,
    lines: Lines,
}

impl Proc {
    /// Starts `cmd`, collecting stdout and stderr lines with their arrival times.
    fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let lines: Lines = Arc::default();
        let out = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for stream in [out, err].into_iter().flatten() {
            let sink = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((Instant::now(), line));
                }
            });
        }
        Ok(Self {
            child,
            name: name.to_string(),
            lines,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When a line containing `needle` arrived, waiting at most `timeout`.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((at, _)) = self.locked().iter().find(|(_, l)| l.contains(needle)) {
                return Ok(*at);
            }
            check_interrupted()?;
            if let Ok(Some(status)) = self.child.try_wait() {
                // Its last lines may still be on their way through the pipe.
                std::thread::sleep(Duration::from_millis(50));
                if let Some((at, _)) = self.locked().iter().find(|(_, l)| l.contains(needle)) {
                    return Ok(*at);
                }
                bail!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, String)>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn text(&self) -> String {
        self.locked()
            .iter()
            .map(|(_, l)| format!("  {l}\n"))
            .collect()
    }

    /// SIGTERM, then SIGKILL after 5 s; waits for the exit.
    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill on the pid of our own child, not yet reaped.
            unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A control socket path for one spot-sim, removed on drop.
struct ControlSocket(PathBuf);

impl ControlSocket {
    fn new(n: usize) -> Self {
        Self(PathBuf::from(format!(
            "/run/spot-sim/bench-{}-{n}.sock",
            std::process::id()
        )))
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    NewConnection,
    KeepAlive,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::NewConnection => "new connection per request",
            Mode::KeepAlive => "keep-alive",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Load {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// Socket errors and non-2xx answers wrk counted.
    errors: u64,
    /// wrk itself exited with a failure status.
    wrk_failed: bool,
}

/// One setup in one mode: its measured runs, and each run's requests/s over the direct run it
/// was paired with (empty for direct itself, the reference).
struct Row {
    setup: &'static str,
    mode: Mode,
    runs: Vec<Load>,
    ratios: Vec<f64>,
    note: String,
}

impl Row {
    /// The median run (medians of each figure), or none when the setup could not run.
    fn median(&self) -> Option<Load> {
        (!self.runs.is_empty()).then(|| median_load(&self.runs))
    }

    /// Any run with errors or a failed wrk: the row is flagged.
    fn flagged(&self) -> bool {
        self.runs.iter().any(|l| l.errors > 0 || l.wrk_failed)
    }
}

/// Which side goes first in each pair: ABBA (direct first, then the setup first, and so on),
/// so a machine that speeds up or slows down during the run favours neither.
fn abba(n: u64) -> impl Iterator<Item = bool> {
    (0..n).map(|i| i % 2 == 0)
}

/// min, median, max.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    let m = median(&mut v);
    (
        v.first().copied().unwrap_or(f64::NAN),
        m,
        v.last().copied().unwrap_or(f64::NAN),
    )
}

/// A ratio to 3 decimals, rounded down: beside a "≥ 0.95" verdict, 0.9496 must not print as
/// 0.95 (or 0.950).
fn fmt_ratio(r: f64) -> String {
    format!("{:.3}", (r * 1000.0).floor() / 1000.0)
}

#[derive(Default)]
struct Attach {
    n: usize,
    secs: f64,
    rss_kib: u64,
    threads: u64,
}

struct Bench<'a> {
    bin: PathBuf,
    args: &'a BenchArgs,
    xtask: PathBuf,
    sockets: usize,
}

impl<'a> Bench<'a> {
    fn new(bin: PathBuf, args: &'a BenchArgs) -> Result<Self> {
        if !bin.is_file() {
            bail!("no spot-sim binary at {}", bin.display());
        }
        Ok(Self {
            bin,
            args,
            xtask: std::env::current_exe()?,
            sockets: 0,
        })
    }

    fn control(&mut self) -> ControlSocket {
        self.sockets += 1;
        ControlSocket::new(self.sockets)
    }

    /// `spot-sim run` inside `netns` (so targets with no process get their responder there).
    fn spot_sim_run(
        &mut self,
        netns: &NetNs,
        servers: &Path,
        cgroups: &[PathBuf],
        port: u16,
    ) -> Result<(Proc, ControlSocket)> {
        let control = self.control();
        let port = port.to_string();
        let mut args = vec!["run", "--control"];
        let ctl = control.0.to_string_lossy().into_owned();
        args.push(&ctl);
        args.extend(["--port", &port, "--interruption-in", "1h"]);
        let paths: Vec<String> = cgroups
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        for p in &paths {
            args.extend(["--cgroup", p]);
        }
        let mut cmd = command_in(netns, servers, &self.bin, &args)?;
        cmd.env("RUST_LOG", "info");
        Ok((Proc::spawn("spot-sim run", &mut cmd)?, control))
    }

    fn run(mut self) -> Result<String> {
        let cg = BenchCgroup::create()?;
        let target = cg.child("target")?;
        let clients = cg.child("clients")?;
        let servers = cg.child("servers")?;
        let ns = NetNs::new()?;
        // Idles in the target cgroup inside the namespace: spot-sim serves where it lives.
        let _anchor = Proc::spawn(
            "sleep",
            &mut command_in(&ns, &target, Path::new("sleep"), &["3600"])?,
        )?;

        let binary_size = fs::metadata(&self.bin)?.len();
        eprintln!("== load: direct and spot-sim");
        let (mut sim, _ctl) =
            self.spot_sim_run(&ns, &servers, std::slice::from_ref(&target), PORT)?;
        sim.wait_for("serving 1 target", Duration::from_secs(30))?;
        std::thread::sleep(Duration::from_secs(1));
        let rss_idle = rss_kib(sim.pid());
        let direct_url = format!("http://127.0.0.1:{PORT}{PATH}");
        let imds_url = format!("http://{IMDS}{PATH}");
        check_answer(&ns, &clients, &direct_url)?;
        check_answer(&ns, &target, &imds_url)?;

        // Direct is the reference: every setup's runs are paired with direct runs (ABBA),
        // after an unrecorded warm-up of both.
        let mut rows: Vec<Row> = Vec::new();
        let mut direct: Vec<(Mode, Load)> = Vec::new();
        let mut rss_load = 0;
        let reference = (clients.as_path(), direct_url.as_str());
        for mode in [Mode::NewConnection, Mode::KeepAlive] {
            let sampler = RssSampler::start(sim.pid());
            let (d, row) = self.compare(&ns, reference, "spot-sim", (&target, &imds_url), mode)?;
            rss_load = rss_load.max(sampler.finish());
            direct.extend(d.into_iter().map(|l| (mode, l)));
            rows.push(row);
        }
        let (redirect_ns, other_ns) =
            self.kernel_connect_rows(&ns, &target, sim.pid(), &imds_url, &direct_url)?;

        eprintln!("== load: the old way (loopback alias + socat)");
        ns.sh(&format!("ip addr add {IMDS}/32 dev lo"))?;
        {
            let mut cmd = command_in(
                &ns,
                &servers,
                Path::new("socat"),
                &[
                    &format!("TCP4-LISTEN:80,bind={IMDS},fork,reuseaddr,backlog=1024"),
                    &format!("TCP4:127.0.0.1:{PORT}"),
                ],
            )?;
            let _socat = Proc::spawn("socat", &mut cmd)?;
            wait_listening(&ns, SocketAddr::from(([169, 254, 169, 254], 80)))?;
            check_answer(&ns, &clients, &imds_url)?;
            for mode in [Mode::NewConnection, Mode::KeepAlive] {
                let (d, row) = self.compare(
                    &ns,
                    reference,
                    "old way (alias + socat)",
                    (&clients, &imds_url),
                    mode,
                )?;
                direct.extend(d.into_iter().map(|l| (mode, l)));
                rows.push(row);
            }
        }

        eprintln!("== load: iptables DNAT");
        let dnat = ns
            .sh("echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet && echo 1 > /proc/sys/net/ipv4/conf/lo/route_localnet")
            .and_then(|_| {
                ns.sh(&format!(
                    "iptables -t nat -A OUTPUT -d {IMDS}/32 -p tcp --dport 80 -j DNAT --to-destination 127.0.0.1:{PORT}"
                ))
            })
            .and_then(|_| check_answer(&ns, &clients, &imds_url));
        for mode in [Mode::NewConnection, Mode::KeepAlive] {
            match &dnat {
                Ok(()) => {
                    let (d, row) =
                        self.compare(&ns, reference, "iptables DNAT", (&clients, &imds_url), mode)?;
                    direct.extend(d.into_iter().map(|l| (mode, l)));
                    rows.push(row);
                }
                Err(e) => rows.push(Row {
                    setup: "iptables DNAT",
                    mode,
                    runs: Vec::new(),
                    ratios: Vec::new(),
                    note: format!("unavailable: {}", first_line(&format!("{e:#}"))),
                }),
            }
        }
        // Leaves the namespace as spot-sim found it, for the runs below.
        let _ = ns.sh(&format!(
            "iptables -t nat -F OUTPUT; ip addr del {IMDS}/32 dev lo"
        ));
        sim.stop();
        // Direct first in the table: every direct run of each mode, across all pairings.
        for mode in [Mode::KeepAlive, Mode::NewConnection] {
            rows.insert(
                0,
                Row {
                    setup: "direct",
                    mode,
                    runs: direct
                        .iter()
                        .filter(|(m, _)| *m == mode)
                        .map(|(_, l)| *l)
                        .collect(),
                    ratios: Vec::new(),
                    note: String::new(),
                },
            );
        }

        eprintln!(
            "== start to first redirected answer ({} starts)",
            self.args.starts
        );
        let mut firsts = Vec::new();
        let mut servings = Vec::new();
        for _ in 0..self.args.starts {
            let (first, serving) = self.first_answer(&ns, &target, &servers)?;
            firsts.push(first);
            servings.push(serving);
        }

        let max = usize::try_from(self.args.max_cgroups)?;
        let counts: Vec<usize> =
            [1, 100, 1000, max]
                .into_iter()
                .filter(|n| *n <= max)
                .fold(Vec::new(), |mut v, n| {
                    if !v.contains(&n) {
                        v.push(n);
                    }
                    v
                });
        eprintln!("== attach cost: {counts:?} cgroups");
        // Connects to another address (a local listener) from inside a target cgroup: the
        // connect program runs for each and passes it untouched. Timed with nothing attached,
        // with the most cgroups attached, and with nothing attached again.
        let probe_ns = NetNs::new()?;
        let mut attaches = Vec::new();
        let mut connect = None;
        for &n in &counts {
            let dirs: Vec<PathBuf> = (0..n)
                .map(|i| cg.child(&format!("many-{n}/c{i:04}")))
                .collect::<Result<_>>()?;
            let before = (n == max)
                .then(|| self.connect_latency(&probe_ns, &dirs[0]))
                .transpose()?;
            let t0 = Instant::now();
            let (mut p, _ctl) = self.spot_sim_run(&ns, &servers, &dirs, 0)?;
            let at = p.wait_for(&format!("serving {n} target"), Duration::from_secs(120))?;
            let secs = at.duration_since(t0).as_secs_f64();
            std::thread::sleep(Duration::from_millis(500));
            attaches.push(Attach {
                n,
                secs,
                rss_kib: rss_kib(p.pid()),
                threads: status_field(p.pid(), "Threads:"),
            });
            let during = (n == max)
                .then(|| self.connect_latency(&probe_ns, &dirs[0]))
                .transpose()?;
            p.stop();
            if let (Some(before), Some(during)) = (before, during) {
                let after = self.connect_latency(&probe_ns, &dirs[0])?;
                connect = Some((
                    ((before.0 + after.0) / 2.0, (before.1 + after.1) / 2.0),
                    during,
                ));
            }
        }
        let (connect_none, connect_attached) =
            connect.ok_or_else(|| anyhow!("no run with {max} cgroups"))?;

        let idle_dirs: Vec<PathBuf> = (0..self.args.idle_targets)
            .map(|i| cg.child(&format!("idle/c{i:04}")))
            .collect::<Result<_>>()?;
        let (idle_cpu_pct, new_netns_ms, exec) =
            self.idle_and_new_netns(&ns, &servers, &idle_dirs)?;
        let kernel = kernel::Figures {
            redirect: redirect_ns,
            other: other_ns,
            idle_targets: idle_dirs.len(),
            idle_cpu_pct,
            new_netns_ms,
            exec,
        };

        fs::write(
            Path::new(&root_bench_dir()).join("requests.svg"),
            svg(&rows),
        )?;
        Ok(render(&Report {
            rows,
            binary_size,
            rss_idle,
            rss_load,
            firsts,
            servings,
            attaches,
            connect_none,
            connect_attached,
            max_cgroups: max,
            kernel,
            args: self.args,
        }))
    }

    /// `repeat` runs of `setup` against as many of direct, in ABBA pairs, after a warm-up of
    /// each; returns the direct runs and the setup's row.
    fn compare(
        &self,
        ns: &NetNs,
        (direct_cg, direct_url): (&Path, &str),
        setup: &'static str,
        (cg, url): (&Path, &str),
        mode: Mode,
    ) -> Result<(Vec<Load>, Row)> {
        if self.args.warmup > 0 {
            self.wrk(ns, direct_cg, direct_url, mode, self.args.warmup)?;
            self.wrk(ns, cg, url, mode, self.args.warmup)?;
        }
        let (mut direct, mut runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for direct_first in abba(self.args.repeat) {
            let (d, l) = if direct_first {
                let d = self.wrk(ns, direct_cg, direct_url, mode, self.args.duration)?;
                (d, self.wrk(ns, cg, url, mode, self.args.duration)?)
            } else {
                let l = self.wrk(ns, cg, url, mode, self.args.duration)?;
                (
                    self.wrk(ns, direct_cg, direct_url, mode, self.args.duration)?,
                    l,
                )
            };
            ratios.push(l.rps / d.rps);
            direct.push(d);
            runs.push(l);
        }
        Ok((
            direct,
            Row {
                setup,
                mode,
                runs,
                ratios,
                note: String::new(),
            },
        ))
    }

    /// One wrk run inside `netns` and `cgroup`. A failing wrk is recorded (the row is
    /// flagged), not dropped; output that cannot be read at all ends the bench.
    fn wrk(&self, netns: &NetNs, cgroup: &Path, url: &str, mode: Mode, secs: u64) -> Result<Load> {
        check_interrupted()?;
        let d = format!("{secs}s");
        let c = self.args.connections.to_string();
        let mut args = vec!["-t", "2", "-c", &c, "-d", &d, "--latency"];
        if mode == Mode::NewConnection {
            args.extend(["-H", "Connection: close"]);
        }
        args.push(url);
        let out = command_in(netns, cgroup, Path::new("wrk"), &args)?
            .stdin(Stdio::null())
            .output()
            .context("running wrk")?;
        check_interrupted()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut load = parse_wrk(&text).ok_or_else(|| {
            anyhow!(
                "cannot read wrk's output ({}):\n{text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        load.wrk_failed = !out.status.success();
        eprintln!(
            "   {url} ({}, {secs} s): {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {} errors{}",
            mode.label(),
            load.rps,
            load.p50_us,
            load.p99_us,
            load.errors,
            if load.wrk_failed {
                format!("; wrk exited {}", out.status)
            } else {
                String::new()
            }
        );
        Ok(load)
    }

    /// Starts spot-sim with a probe already polling from the target; returns the seconds to
    /// the probe's first answer and to the "serving" log line.
    fn first_answer(&mut self, ns: &NetNs, target: &Path, servers: &Path) -> Result<(f64, f64)> {
        check_interrupted()?;
        let xtask = self.xtask.clone();
        let mut probe = Proc::spawn(
            "probe",
            &mut command_in(ns, target, &xtask, &["bench", "--probe", "first-answer"])?,
        )?;
        probe.wait_for("polling", Duration::from_secs(10))?;
        let t0 = Instant::now();
        let (mut sim, _ctl) = self.spot_sim_run(ns, servers, &[target.to_path_buf()], 0)?;
        let answered = probe.wait_for("answered", Duration::from_secs(30))?;
        let serving = sim.wait_for("serving 1 target", Duration::from_secs(30))?;
        sim.stop();
        Ok((
            answered.duration_since(t0).as_secs_f64(),
            serving.duration_since(t0).as_secs_f64(),
        ))
    }

    /// Median p50 and p99 (µs) of a non-targeted process's connects, over three probe runs.
    fn connect_latency(&self, ns: &NetNs, cgroup: &Path) -> Result<(f64, f64)> {
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for _ in 0..3 {
            check_interrupted()?;
            let out = command_in(
                ns,
                cgroup,
                &self.xtask,
                &["bench", "--probe", "connect-latency"],
            )?
            .stdin(Stdio::null())
            .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut it = text.split_whitespace().map(str::parse::<f64>);
            match (it.next(), it.next()) {
                (Some(Ok(a)), Some(Ok(b))) => {
                    p50.push(a);
                    p99.push(b);
                }
                _ => bail!(
                    "connect probe failed: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
        Ok((median(&mut p50), median(&mut p99)))
    }
}

fn root_bench_dir() -> PathBuf {
    super::workspace_root().join("target/bench")
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(100)
        .collect()
}

/// One curl through `url` from the client's place, to be sure the setup answers before timing it.
fn check_answer(ns: &NetNs, cgroup: &Path, url: &str) -> Result<()> {
    let out = command_in(
        ns,
        cgroup,
        Path::new("curl"),
        &["-sS", "--max-time", "3", url],
    )?
    .stdin(Stdio::null())
    .output()?;
    let body = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !body.starts_with("i-") {
        bail!(
            "{url} did not answer with an instance id: {body}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn wait_listening(ns: &NetNs, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if ns.run(|| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("nothing listens on {addr} in the bench's namespace")
}

/// `Requests/sec`, the 50% and 99% latencies and the error counts of wrk's `--latency` output.
fn parse_wrk(text: &str) -> Option<Load> {
    let mut load = Load::default();
    let mut rps = None;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("50%") => load.p50_us = duration_us(words.next()?)?,
            Some("99%") => load.p99_us = duration_us(words.next()?)?,
            Some("Requests/sec:") => rps = words.next()?.parse().ok(),
            Some("Socket") => {
                // Socket errors: connect 0, read 0, write 0, timeout 0
                load.errors += line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum::<u64>();
            }
            Some("Non-2xx") => load.errors += line.rsplit(' ').next()?.parse::<u64>().ok()?,
            _ => {}
        }
    }
    load.rps = rps?;
    Some(load)
}

fn duration_us(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        _ => return None,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn median_load(runs: &[Load]) -> Load {
    let pick = |f: fn(&Load) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    Load {
        rps: pick(|l| l.rps),
        p50_us: pick(|l| l.p50_us),
        p99_us: pick(|l| l.p99_us),
        errors: runs.iter().map(|l| l.errors).sum(),
        wrk_failed: runs.iter().any(|l| l.wrk_failed),
    }
}

fn status_field(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

/// The largest VmRSS of a process, sampled every 100 ms until finished.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
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

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// Probes: small real processes the bench starts inside its namespaces and cgroups.

fn probe(kind: &str) -> Result<ExitCode> {
    match kind {
        "first-answer" => probe_first_answer(),
        "connect-latency" => probe_connect_latency(),
        other => bail!("unknown probe {other}"),
    }
}

/// Polls the IMDS address every millisecond, as a handler would, and says when it answered.
/// Runs only in the bench's private namespace: before the redirect is attached the connect
/// fails at once with "network unreachable".
fn probe_first_answer() -> Result<ExitCode> {
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
fn probe_connect_latency() -> Result<ExitCode> {
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
        // Closing with RST leaves no TIME_WAIT behind, so ports never run out.
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
    times.sort_by(f64::total_cmp);
    println!("{:.2} {:.2}", times[N / 2], times[N * 99 / 100]);
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// The report.

struct Report<'a> {
    rows: Vec<Row>,
    binary_size: u64,
    rss_idle: u64,
    rss_load: u64,
    firsts: Vec<f64>,
    servings: Vec<f64>,
    attaches: Vec<Attach>,
    /// A target's connects to another address: p50 / p99 µs with nothing attached (mean of
    /// before and after), and with `max_cgroups` attached.
    connect_none: (f64, f64),
    connect_attached: (f64, f64),
    max_cgroups: usize,
    kernel: kernel::Figures,
    args: &'a BenchArgs,
}

fn find<'r>(rows: &'r [Row], setup: &str, mode: Mode) -> Option<&'r Row> {
    rows.iter()
        .find(|r| r.setup == setup && r.mode == mode && !r.runs.is_empty())
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

/// A verdict: a row with errors or a failed wrk cannot meet anything.
fn verdict(ok: bool, rows: &[&Row]) -> &'static str {
    if rows.iter().any(|r| r.flagged()) {
        "**not met** (errors in the runs)"
    } else {
        met(ok)
    }
}

fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Load: wrk -t 2 -c {} -d {}s --latency, GET {PATH} (a 200 answer); every client in a private network namespace. Each setup: {} runs, each paired with a direct run in ABBA order after a {} s warm-up of both; requests/s and \"vs direct\" (each run over its paired direct run) as median (min–max); p50 and p99 are medians. ⚠ marks a row with errors or a failed wrk.\n",
        r.args.connections, r.args.duration, r.args.repeat, r.args.warmup
    );
    let _ = writeln!(
        s,
        "| setup | mode | requests/s | p50 | p99 | vs direct | errors |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for row in &r.rows {
        match row.median() {
            Some(l) => {
                let (lo, _, hi) = spread(&row.runs.iter().map(|l| l.rps).collect::<Vec<_>>());
                let vs = if row.ratios.is_empty() {
                    "reference".to_string()
                } else {
                    let (a, m, b) = spread(&row.ratios);
                    format!("{} ({}–{})", fmt_ratio(m), fmt_ratio(a), fmt_ratio(b))
                };
                let flag = if row.flagged() { "⚠ " } else { "" };
                let failed = if l.wrk_failed { ", wrk failed" } else { "" };
                let _ = writeln!(
                    s,
                    "| {flag}{} | {} | {:.0} ({lo:.0}–{hi:.0}) | {} | {} | {vs} | {}{failed} |",
                    row.setup,
                    row.mode.label(),
                    l.rps,
                    fmt_us(l.p50_us),
                    fmt_us(l.p99_us),
                    l.errors
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "| {} | {} | – | – | – | – | {} |",
                    row.setup,
                    row.mode.label(),
                    row.note
                );
            }
        }
    }

    let mut firsts = r.firsts.clone();
    let mut servings = r.servings.clone();
    let first = median(&mut firsts) * 1e3;
    let serving = median(&mut servings) * 1e3;
    let _ = writeln!(
        s,
        "\n| measure | value |\n|---|---:|\n| start of `spot-sim run` → first redirected answer (median of {}) | {first:.0} ms |\n| start → \"serving\" log line (median) | {serving:.0} ms |\n| resident memory, idle (1 target) | {} |\n| resident memory, under load (max) | {} |\n| binary size (the measured spot-sim) | {} |",
        r.firsts.len(),
        mib(r.rss_idle * 1024),
        mib(r.rss_load * 1024),
        mib(r.binary_size)
    );
    for a in &r.attaches {
        let _ = writeln!(
            s,
            "| attach {} cgroup(s): start → serving; memory; threads | {:.0} ms; {}; {} |",
            a.n,
            a.secs * 1e3,
            mib(a.rss_kib * 1024),
            a.threads
        );
    }
    let n = r.max_cgroups;
    let _ = writeln!(
        s,
        "| a target's connect() to another address, p50 / p99, nothing attached | {:.1} / {:.1} µs |\n| a target's connect() to another address, p50 / p99, {n} cgroups attached | {:.1} / {:.1} µs |",
        r.connect_none.0, r.connect_none.1, r.connect_attached.0, r.connect_attached.1
    );

    let _ = writeln!(s, "\n| target | result | |\n|---|---|---|");
    for mode in [Mode::NewConnection, Mode::KeepAlive] {
        if let (Some(sp), Some(d)) = (
            find(&r.rows, "spot-sim", mode),
            find(&r.rows, "direct", mode),
        ) {
            let (_, ratio, _) = spread(&sp.ratios);
            let _ = writeln!(
                s,
                "| spot-sim / direct ≥ 0.95 requests/s (median of paired runs), {} | {} | {} |",
                mode.label(),
                fmt_ratio(ratio),
                verdict(ratio >= 0.95, &[sp, d])
            );
        }
    }
    if let (Some(sp), Some(old)) = (
        find(&r.rows, "spot-sim", Mode::NewConnection),
        find(&r.rows, "old way (alias + socat)", Mode::NewConnection),
    ) {
        // Both against direct, so the comparison survives the machine's drift between phases.
        let ratio = spread(&sp.ratios).1 / spread(&old.ratios).1;
        let _ = writeln!(
            s,
            "| spot-sim ≥ 8× the old way, new connections | {:.1}× | {} |",
            (ratio * 10.0).floor() / 10.0,
            verdict(ratio >= 8.0, &[sp, old])
        );
    }
    let _ = writeln!(
        s,
        "| first redirected answer within 100 ms of start (median) | {first:.0} ms | {} |",
        met(first <= 100.0)
    );
    let _ = writeln!(
        s,
        "| idle RSS under 20 MiB | {} | {} |",
        mib(r.rss_idle * 1024),
        met(r.rss_idle < 20 * 1024)
    );
    if let Some(a) = r.attaches.iter().find(|a| a.n == 1000) {
        let _ = writeln!(
            s,
            "| attaching 1000 cgroups under 1 s | {:.0} ms | {} |",
            a.secs * 1e3,
            met(a.secs < 1.0)
        );
    }
    // Within noise: 10 % or 2 µs, whichever is larger.
    let slack = (r.connect_none.0 * 0.10).max(2.0);
    let _ = writeln!(
        s,
        "| a target's connect() to another address no slower with {n} attached (p50, within 10 % or 2 µs) | {:.1} vs {:.1} µs | {} |",
        r.connect_attached.0,
        r.connect_none.0,
        met(r.connect_attached.0 <= r.connect_none.0 + slack)
    );
    s.push_str(&kernel::render(&r.kernel));
    s
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A grouped bar chart of requests/s: one group per setup, one bar per mode.
fn svg(rows: &[Row]) -> String {
    let setups: Vec<&str> = rows.iter().fold(Vec::new(), |mut v, r| {
        if !v.contains(&r.setup) {
            v.push(r.setup);
        }
        v
    });
    let max = rows
        .iter()
        .filter_map(|r| r.median().map(|l| l.rps))
        .fold(1.0, f64::max);
    let (w, h, left, top, bottom) = (760.0, 400.0, 70.0, 40.0, 60.0);
    let plot_h = h - top - bottom;
    let group_w = (w - left - 20.0) / setups.len().max(1) as f64;
    let bar_w = group_w * 0.35;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"22\" font-size=\"15\">IMDS requests/s by setup (higher is better)</text>\n"
    );
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = top + plot_h - plot_h * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>",
            w - 20.0,
            left - 6.0,
            y + 4.0
        );
    }
    for (g, setup) in setups.iter().enumerate() {
        let x0 = left + g as f64 * group_w + group_w * 0.12;
        for (k, (mode, color)) in [
            (Mode::NewConnection, "#4e79a7"),
            (Mode::KeepAlive, "#f28e2b"),
        ]
        .into_iter()
        .enumerate()
        {
            let x = x0 + k as f64 * bar_w;
            match find(rows, setup, mode).and_then(Row::median) {
                Some(l) => {
                    let bh = plot_h * l.rps / max;
                    let y = top + plot_h - bh;
                    let _ = writeln!(
                        s,
                        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{:.0}</text>",
                        bar_w - 2.0,
                        x + bar_w / 2.0,
                        y - 3.0,
                        l.rps
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">n/a</text>",
                        x + bar_w / 2.0,
                        top + plot_h - 3.0
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{setup}</text>",
            x0 + bar_w,
            top + plot_h + 18.0
        );
    }
    let ly = h - 18.0;
    let _ = writeln!(
        s,
        "<rect x=\"{left}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"#4e79a7\"/><text x=\"{}\" y=\"{ly}\">new connection per request</text>\n\
         <rect x=\"{}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"#f28e2b\"/><text x=\"{}\" y=\"{ly}\">keep-alive</text>\n</svg>",
        ly - 10.0,
        left + 16.0,
        left + 220.0,
        ly - 10.0,
        left + 236.0
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_latency_output() {
        let text = "Running 8s test @ http://127.0.0.1:1338/\n  2 threads and 32 connections\n  Latency Distribution\n     50%  226.00us\n     75%  400.00us\n     99%    1.20ms\n  123456 requests in 8.00s, 30.00MB read\n  Socket errors: connect 0, read 3, write 0, timeout 1\n  Non-2xx or 3xx responses: 5\nRequests/sec:  15432.10\nTransfer/sec:      3.75MB\n";
        let l = parse_wrk(text).expect("parsed");
        assert!((l.rps - 15432.10).abs() < 1e-6);
        assert!((l.p50_us - 226.0).abs() < 1e-6);
        assert!((l.p99_us - 1200.0).abs() < 1e-6);
        assert_eq!(l.errors, 9);
    }

    #[test]
    fn pairs_alternate_which_side_goes_first() {
        assert_eq!(
            abba(5).collect::<Vec<_>>(),
            [true, false, true, false, true]
        );
    }

    #[test]
    fn a_ratio_just_under_the_target_never_prints_as_meeting_it() {
        assert_eq!(fmt_ratio(0.9456), "0.945");
        assert_eq!(fmt_ratio(0.9499), "0.949");
        assert_eq!(fmt_ratio(0.95), "0.950");
        assert_eq!(fmt_ratio(1.0123), "1.012");
    }

    #[test]
    fn five_runs_give_min_median_max() {
        assert_eq!(spread(&[3.0, 1.0, 5.0, 2.0, 4.0]), (1.0, 3.0, 5.0));
    }

    fn load(rps: f64, errors: u64, wrk_failed: bool) -> Load {
        Load {
            rps,
            p50_us: 100.0,
            p99_us: 900.0,
            errors,
            wrk_failed,
        }
    }

    #[test]
    fn a_row_with_errors_is_flagged_and_meets_no_target() {
        let args = BenchArgs {
            duration: 1,
            warmup: 0,
            connections: 4,
            repeat: 2,
            starts: 1,
            idle_targets: 1,
            max_cgroups: 1,
            bin: None,
            probe: None,
        };
        let rows = vec![
            Row {
                setup: "direct",
                mode: Mode::NewConnection,
                runs: vec![load(100.0, 0, false), load(100.0, 0, false)],
                ratios: vec![],
                note: String::new(),
            },
            Row {
                setup: "spot-sim",
                mode: Mode::NewConnection,
                runs: vec![load(99.0, 0, false), load(99.0, 0, true)],
                ratios: vec![0.99, 0.99],
                note: String::new(),
            },
        ];
        let report = render(&Report {
            rows,
            binary_size: 1,
            rss_idle: 1,
            rss_load: 1,
            firsts: vec![0.01],
            servings: vec![0.01],
            attaches: vec![],
            connect_none: (5.0, 9.0),
            connect_attached: (5.0, 9.0),
            max_cgroups: 1,
            kernel: kernel::Figures {
                redirect: (250.0, 1000),
                other: (40.0, 1000),
                idle_targets: 1,
                idle_cpu_pct: 0.5,
                new_netns_ms: vec![20.0, 30.0, 400.0],
                exec: (900.0, 10),
            },
            args: &args,
        });
        assert!(report.contains("| 250 ns | ≤ 300 ns: met |"), "{report}");
        assert!(
            report.contains("| 0.50 % of a core | ≤ 0.3 %: not met |"),
            "{report}"
        );
        assert!(
            report.contains("| 20 / 30 / 400 ms | ≤ 150 ms: met |"),
            "{report}"
        );
        assert!(
            report.contains("| ⚠ spot-sim | new connection per request | 99 (99–99) |"),
            "{report}"
        );
        assert!(report.contains("0, wrk failed |"), "{report}");
        assert!(
            report.contains("| 0.990 | **not met** (errors in the runs) |"),
            "{report}"
        );
        assert!(report.contains("| reference |"), "{report}");
    }
}
