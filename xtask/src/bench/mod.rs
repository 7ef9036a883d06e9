//! `cargo xtask bench`: spot-sim against what people use today, measured in one run on one
//! machine. Every client and server runs inside private network namespaces the bench creates
//! (only `lo`), in cgroups it creates under its own `spot-sim-bench-PID` folder; guards remove
//! both on every exit path, so nothing is left on the host and no packet leaves the machine.

use std::{
    fs,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use spot_sim_testkit::{
    cgroup2_mount, place, placed, Capture, ControlSocket, NetNs, Proc, TestCgroup,
};

use probes::{rss_kib, RssSampler};
use report::{parse_wrk, render, Load, Mode, Report, Row, Startup};

mod attach;
mod chart;
mod dnat;
mod kernel;
mod probes;
mod report;
mod startup;

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
    /// Internal: run one probe (`first-answer`, `connect-latency`, `connect-rate`) in the
    /// bench's namespaces.
    #[arg(long, hide = true)]
    probe: Option<String>,
    /// Internal: the `connect-rate` probe's connects a second (0: as fast as it can).
    #[arg(long, hide = true, default_value_t = 0)]
    probe_rate: u32,
    /// Internal: where the `connect-rate` probe connects.
    #[arg(long, hide = true)]
    probe_to: Option<String>,
}

pub fn run(root: &Path, args: BenchArgs) -> Result<ExitCode> {
    if let Some(p) = &args.probe {
        return probes::probe(p, &args);
    }
    if let Some(code) = super::rerun_as_root("the benchmark")? {
        return Ok(code);
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
    spot_sim_testkit::stop_on_signals();
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

/// Ends the run through the normal error path (so the guards clean up) after Ctrl-C.
fn check_interrupted() -> Result<()> {
    if spot_sim_testkit::interrupted() {
        bail!("interrupted; cleaned up");
    }
    Ok(())
}

/// Starts `cmd`, collecting stdout and stderr lines with their arrival times.
fn spawn(name: &str, cmd: &mut Command) -> Result<Proc> {
    Ok(Proc::spawn(name, cmd, Capture::Both)?)
}

/// A command set to start inside `netns` and `cgroup`, and to die with the bench.
fn command_in(netns: &NetNs, cgroup: &Path, program: &Path, args: &[&str]) -> Result<Command> {
    let place = place(Some(cgroup), Some(netns))?.die_with_parent();
    Ok(placed(place, program, args))
}

/// Which side goes first in each pair: ABBA (direct first, then the setup first, and so on),
/// so a machine that speeds up or slows down during the run favours neither.
fn abba(n: u64) -> impl Iterator<Item = bool> {
    (0..n).map(|i| i % 2 == 0)
}

struct Bench<'a> {
    bin: PathBuf,
    args: &'a BenchArgs,
    xtask: PathBuf,
    sockets: usize,
    /// Empty the conntrack table before each load run (the DNAT phase), and the most entries
    /// seen after one.
    conntrack_flush: std::cell::Cell<bool>,
    conntrack_peak: std::cell::Cell<u64>,
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
            conntrack_flush: std::cell::Cell::new(false),
            conntrack_peak: std::cell::Cell::new(0),
        })
    }

    fn control(&mut self) -> ControlSocket {
        self.sockets += 1;
        ControlSocket::control_socket(&format!("bench-{}", self.sockets))
    }

    /// `spot-sim run` inside `netns` (so targets with no process get their responder there),
    /// logging at `log` (RUST_LOG).
    fn spot_sim_run(
        &mut self,
        netns: &NetNs,
        servers: &Path,
        cgroups: &[PathBuf],
        port: u16,
        log: &str,
    ) -> Result<(Proc, ControlSocket)> {
        let control = self.control();
        let port = port.to_string();
        let mut args = vec!["run", "--control"];
        let ctl = control.to_string_lossy().into_owned();
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
        cmd.env("RUST_LOG", log);
        Ok((spawn("spot-sim run", &mut cmd)?, control))
    }

    fn run(mut self) -> Result<String> {
        let mount = cgroup2_mount()?;
        let cg = TestCgroup::create(mount.join(format!("spot-sim-bench-{}", std::process::id())))?;
        let target = cg.child("target")?;
        let clients = cg.child("clients")?;
        let servers = cg.child("servers")?;
        let ns = NetNs::new_private()?;
        // Idles in the target cgroup inside the namespace: spot-sim serves where it lives.
        let _anchor = spawn(
            "sleep",
            &mut command_in(&ns, &target, Path::new("sleep"), &["3600"])?,
        )?;

        let binary_size = fs::metadata(&self.bin)?.len();
        eprintln!("== load: direct and spot-sim");
        let (mut sim, _ctl) =
            self.spot_sim_run(&ns, &servers, std::slice::from_ref(&target), PORT, "info")?;
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
        let connects = self.kernel_connect_rows(&ns, &target, sim.pid())?;

        self.old_way_rows(&ns, &servers, (&clients, &imds_url), &mut rows, &mut direct)?;
        let dnat = self.dnat_rows(&ns, reference, &clients, &imds_url, &mut rows, &mut direct)?;

        sim.stop();
        direct_first(&mut rows, &direct);

        eprintln!(
            "== start to first redirected answer ({} starts)",
            self.args.starts
        );
        let mut firsts = Vec::new();
        let mut servings = Vec::new();
        let mut startup = Startup::default();
        for _ in 0..self.args.starts {
            let (first, serving) = self.first_answer(&ns, &target, &servers, &mut startup)?;
            firsts.push(first);
            servings.push(serving);
        }

        let max = usize::try_from(self.args.max_cgroups)?;
        let (attaches, connect_none, connect_attached) =
            self.attach_rows(&ns, &servers, &cg, max)?;

        let idle_dirs: Vec<PathBuf> = (0..self.args.idle_targets)
            .map(|i| cg.child(&format!("idle/c{i:04}")))
            .collect::<std::io::Result<_>>()?;
        let (idle_cpu_pct, new_netns_ms, exec) =
            self.idle_and_new_netns(&ns, &servers, &idle_dirs)?;
        let kernel = report::Figures {
            connects,
            idle_targets: idle_dirs.len(),
            idle_cpu_pct,
            new_netns_ms,
            exec,
        };

        fs::write(
            Path::new(&root_bench_dir()).join("requests.svg"),
            chart::svg(&rows),
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
            startup,
            machine: probes::machine(),
            dnat,
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
        if self.conntrack_flush.get() {
            dnat::flush(netns)?;
        }
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
        if self.conntrack_flush.get() {
            let n = dnat::count(netns);
            self.conntrack_peak.set(self.conntrack_peak.get().max(n));
        }
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

/// Direct first in the table: every direct run of each mode, across all pairings.
fn direct_first(rows: &mut Vec<Row>, direct: &[(Mode, Load)]) {
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
}

#[cfg(test)]
mod tests;
