//! Kernel-side figures: what the eBPF connect program itself costs per call (the kernel's own
//! BPF statistics, `run_time_ns / run_cnt`), spot-sim's idle CPU with many targets, and how
//! soon a process in a new network namespace inside a target is served.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};

use super::{
    command_in,
    report::{rate_words, spread, KernelRun, KernelRuns},
    spawn, Bench, NetNs, IMDS, PORT,
};

/// `kernel.bpf_stats_enabled` on for as long as this lives, then as it was. The statistics
/// cost every BPF program on the machine a little, so they are on only while measuring.
struct BpfStats {
    before: String,
}

const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> Result<Self> {
        let before = fs::read_to_string(STATS)
            .with_context(|| format!("reading {STATS}"))?
            .trim()
            .to_string();
        fs::write(STATS, "1").with_context(|| format!("writing {STATS}"))?;
        Ok(Self { before })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(STATS, &self.before);
    }
}

/// The run count and total run time the kernel has for `pid`'s program named `name`.
fn prog_stats(pid: u32, name: &str) -> Result<(u64, u64)> {
    let mut found = None;
    for id in prog_ids(pid)? {
        let out = Command::new("bpftool")
            .args(["prog", "show", "id", &id.to_string(), "--json"])
            .output()
            .context("running bpftool")?;
        if !out.status.success() {
            bail!(
                "bpftool prog show id {id} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        // The kernel keeps 15 bytes of a program's name (`sched_process_exec` shows as
        // `sched_process_e` where bpftool has no BTF name to show instead).
        let shown = json_str(&text, "name").unwrap_or_default();
        if shown != name && !(shown.len() == 15 && name.starts_with(&shown)) {
            continue;
        }
        // Without bpf_stats_enabled the kernel leaves the fields out: that is an error here.
        let cnt = json_u64(&text, "run_cnt").unwrap_or(0);
        let ns = json_u64(&text, "run_time_ns").unwrap_or(0);
        found = Some((cnt, ns));
    }
    found.ok_or_else(|| anyhow!("spot-sim (pid {pid}) holds no program named {name}"))
}

/// Program ids behind `pid`'s descriptors (a BPF program's fdinfo names its id).
fn prog_ids(pid: u32) -> Result<Vec<u32>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = Vec::new();
    for e in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(text) = fs::read_to_string(e?.path()) else {
            continue; // closed meanwhile
        };
        if let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("prog_id:"))
            .and_then(|v| v.trim().parse().ok())
        {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

fn json_str(text: &str, key: &str) -> Option<String> {
    let rest = &text[text.find(&format!("\"{key}\":"))? + key.len() + 3..];
    let rest = rest.trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

fn json_u64(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(&format!("\"{key}\":"))? + key.len() + 3..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Kernel nanoseconds per call of connect4 (mean over the calls) while `load` runs.
pub(super) fn connect_ns(pid: u32, load: impl FnOnce() -> Result<()>) -> Result<(f64, u64)> {
    let _stats = BpfStats::enable()?;
    let (c0, t0) = prog_stats(pid, "connect4")?;
    load()?;
    let (c1, t1) = prog_stats(pid, "connect4")?;
    let calls = c1.saturating_sub(c0);
    if calls == 0 {
        bail!("connect4 ran no time during the load (are the statistics on?)");
    }
    Ok((t1.saturating_sub(t0) as f64 / calls as f64, calls))
}

impl Bench<'_> {
    /// The connect4 rows, with the main `spot-sim run` (pid `sim`) serving `target`: redirected
    /// connects at 100 a second (a handful of handlers polling) and as fast as one process
    /// connects, and connects elsewhere as fast. The cost per call depends on the rate (at a
    /// low rate the program's code and maps are cold in the caches), so each figure names it.
    pub(super) fn kernel_connect_rows(
        &self,
        ns: &NetNs,
        target: &Path,
        sim: u32,
    ) -> Result<[KernelRuns; 3]> {
        eprintln!(
            "== kernel: connect4's own cost per call (bpf_stats_enabled), {} runs of {} s per load",
            self.args.repeat, self.args.duration
        );
        let imds = format!("{IMDS}:80");
        let other = format!("127.0.0.1:{PORT}");
        Ok([
            self.kernel_runs(ns, target, sim, &imds, 100)?,
            self.kernel_runs(ns, target, sim, &imds, 0)?,
            self.kernel_runs(ns, target, sim, &other, 0)?,
        ])
    }

    /// `repeat` runs of the connect-rate probe from `target` to `to` at `rate` a second (0: as
    /// fast as it can), each timed by the kernel's statistics.
    fn kernel_runs(
        &self,
        ns: &NetNs,
        target: &Path,
        sim: u32,
        to: &str,
        rate: u32,
    ) -> Result<KernelRuns> {
        let (rate_arg, secs) = (rate.to_string(), self.args.duration.to_string());
        let mut runs = Vec::new();
        for _ in 0..self.args.repeat {
            super::check_interrupted()?;
            let mut said = String::new();
            let (ns_per_call, calls) = connect_ns(sim, || {
                let out = command_in(
                    ns,
                    target,
                    &self.xtask,
                    &[
                        "bench",
                        "--probe",
                        "connect-rate",
                        "--probe-rate",
                        &rate_arg,
                        "--probe-to",
                        to,
                        "--duration",
                        &secs,
                    ],
                )?
                .stdin(std::process::Stdio::null())
                .output()?;
                said = String::from_utf8_lossy(&out.stdout).into_owned();
                if !out.status.success() {
                    bail!(
                        "connect-rate probe failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                Ok(())
            })?;
            let f: Vec<f64> = said
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            let [n, failed, took] = f[..] else {
                bail!("cannot read the connect-rate probe's output: {said}");
            };
            // A connect that failed (a SYN dropped by a full backlog on a loaded machine) still
            // ran the program: it counts, and the row says how many there were.
            let achieved = n / took.max(1e-3);
            eprintln!(
                "   to {to} at {}: {ns_per_call:.0} ns per call over {calls} calls ({achieved:.0} connects/s, {failed} failed)",
                rate_words(rate)
            );
            runs.push(KernelRun {
                ns_per_call,
                calls,
                rate: achieved,
                failed: failed as u64,
            });
        }
        Ok(KernelRuns {
            asked: rate,
            redirected: to.starts_with(IMDS),
            runs,
        })
    }

    /// spot-sim's CPU while idle with `n` targets, each a process in a namespace of its own,
    /// then the new-namespace latency with those targets attached.
    pub(super) fn idle_and_new_netns(
        &mut self,
        ns: &NetNs,
        servers: &Path,
        dirs: &[PathBuf],
    ) -> Result<(f64, Vec<f64>, (f64, u64))> {
        let n = dirs.len();
        eprintln!("== kernel: idle CPU with {n} targets, each in its own namespace");
        let mut anchors = Vec::with_capacity(n);
        let mut namespaces = Vec::with_capacity(n);
        for d in dirs {
            let own = NetNs::new_private()?;
            anchors.push(spawn(
                "sleep",
                &mut command_in(&own, d, Path::new("sleep"), &["3600"])?,
            )?);
            namespaces.push(own);
        }
        let (mut sim, _ctl) = self.spot_sim_run(ns, servers, dirs, 0, "info")?;
        sim.wait_for(&format!("serving {n} target"), Duration::from_secs(120))?;
        // Start-up work (binding n listeners) is over before the window opens.
        std::thread::sleep(Duration::from_secs(2));
        // A minute: one whole cycle of spot-sim's slowest housekeeping (the safety scan), and
        // a clock tick (10 ms) is then under 0.02 % of it.
        let window = Duration::from_secs(60);
        let (cpu0, t0) = (cpu_ticks(sim.pid())?, Instant::now());
        std::thread::sleep(window);
        let (cpu1, t1) = (cpu_ticks(sim.pid())?, Instant::now());
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let pct = (cpu1 - cpu0) as f64 / hz / t1.duration_since(t0).as_secs_f64() * 100.0;
        eprintln!("   {pct:.2} % of a core over {} s", window.as_secs());

        eprintln!("== kernel: a new network namespace inside a target, first answer");
        let mut ms = Vec::new();
        let stats = BpfStats::enable()?;
        let exec0 = prog_stats(sim.pid(), "sched_process_exec")?;
        for _ in 0..10 {
            let fresh = NetNs::new_private()?;
            let t = Instant::now();
            let mut probe = spawn(
                "probe",
                &mut command_in(
                    &fresh,
                    &dirs[0],
                    &self.xtask,
                    &["bench", "--probe", "first-answer"],
                )?,
            )?;
            let answered = probe.wait_for("answered", Duration::from_secs(30))?;
            ms.push(answered.duration_since(t).as_secs_f64() * 1000.0);
        }
        let exec1 = prog_stats(sim.pid(), "sched_process_exec")?;
        drop(stats);
        let execs = exec1.0.saturating_sub(exec0.0);
        let exec_ns = if execs == 0 {
            0.0
        } else {
            exec1.1.saturating_sub(exec0.1) as f64 / execs as f64
        };
        eprintln!("   exec tracepoint: {exec_ns:.0} ns over {execs} execs on the node");
        let (lo, mid, hi) = spread(&ms);
        eprintln!("   {lo:.0} / {mid:.0} / {hi:.0} ms (min / median / max)");
        sim.stop();
        drop(anchors);
        Ok((pct, ms, (exec_ns, execs)))
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may hold spaces, closed by the last ')'.
    let rest = &stat[stat
        .rfind(')')
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?
        + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after "pid (comm) ".
    Ok(f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bpftool_s_json() {
        let text = r#"{"id":42,"type":"cgroup_sock_addr","name":"connect4","tag":"ab","run_time_ns":123456,"run_cnt":789}"#;
        assert_eq!(json_str(text, "name").as_deref(), Some("connect4"));
        assert_eq!(json_u64(text, "run_time_ns"), Some(123_456));
        assert_eq!(json_u64(text, "run_cnt"), Some(789));
        assert_eq!(json_u64(text, "missing"), None);
    }
}
