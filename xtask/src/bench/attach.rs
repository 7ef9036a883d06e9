//! What attaching costs: start-up time, memory and threads with 1, 100 and `--max-cgroups`
//! cgroups attached, and whether a target's connects elsewhere slow down with many attached.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Result};
use spot_sim_testkit::TestCgroup;

use super::{
    check_interrupted, command_in,
    probes::{rss_kib, status_field},
    report::{median, Attach},
    Bench, NetNs,
};

/// A target's connects elsewhere: p50 and p99 in µs.
type Latency = (f64, f64);

impl Bench<'_> {
    /// The attach rows, and a target's connect latency with nothing attached (mean of before
    /// and after) and with `max` cgroups attached.
    pub(super) fn attach_rows(
        &mut self,
        ns: &NetNs,
        servers: &Path,
        cg: &TestCgroup,
        max: usize,
    ) -> Result<(Vec<Attach>, Latency, Latency)> {
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
        let probe_ns = NetNs::new_private()?;
        let mut attaches = Vec::new();
        let mut connect = None;
        for &n in &counts {
            let dirs: Vec<PathBuf> = (0..n)
                .map(|i| cg.child(&format!("many-{n}/c{i:04}")))
                .collect::<std::io::Result<_>>()?;
            let before = (n == max)
                .then(|| self.connect_latency(&probe_ns, &dirs[0]))
                .transpose()?;
            let t0 = Instant::now();
            let (mut p, _ctl) = self.spot_sim_run(ns, servers, &dirs, 0, "info")?;
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
        let (none, attached) = connect.ok_or_else(|| anyhow!("no run with {max} cgroups"))?;
        Ok((attaches, none, attached))
    }

    /// Median p50 and p99 (µs) of a non-targeted process's connects, over three probe runs.
    fn connect_latency(&self, ns: &NetNs, cgroup: &Path) -> Result<Latency> {
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
