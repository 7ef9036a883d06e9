//! The bench's figures: wrk's output read into loads, rows of paired runs, and the markdown
//! table and SVG chart made of them.

use std::fmt::Write as _;

use super::{BenchArgs, PATH};

// ---------------------------------------------------------------------------------------------
// Measurements.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    NewConnection,
    KeepAlive,
}

impl Mode {
    pub(super) fn label(self) -> &'static str {
        match self {
            Mode::NewConnection => "new connection per request",
            Mode::KeepAlive => "keep-alive",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Load {
    pub(super) rps: f64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    /// Socket errors and non-2xx answers wrk counted.
    pub(super) errors: u64,
    /// wrk itself exited with a failure status.
    pub(super) wrk_failed: bool,
}

/// One setup in one mode: its measured runs, and each run's requests/s over the direct run it
/// was paired with (empty for direct itself, the reference).
pub(super) struct Row {
    pub(super) setup: &'static str,
    pub(super) mode: Mode,
    pub(super) runs: Vec<Load>,
    pub(super) ratios: Vec<f64>,
    pub(super) note: String,
}

impl Row {
    /// The median run (medians of each figure), or none when the setup could not run.
    pub(super) fn median(&self) -> Option<Load> {
        (!self.runs.is_empty()).then(|| median_load(&self.runs))
    }

    /// Any run with errors or a failed wrk: the row is flagged.
    pub(super) fn flagged(&self) -> bool {
        self.runs.iter().any(|l| l.errors > 0 || l.wrk_failed)
    }
}

/// min, median, max.
pub(super) fn spread(v: &[f64]) -> (f64, f64, f64) {
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
pub(super) fn fmt_ratio(r: f64) -> String {
    format!("{:.3}", (r * 1000.0).floor() / 1000.0)
}

#[derive(Default)]
pub(super) struct Attach {
    pub(super) n: usize,
    pub(super) secs: f64,
    pub(super) rss_kib: u64,
    pub(super) threads: u64,
}

/// `Requests/sec`, the 50% and 99% latencies and the error counts of wrk's `--latency` output.
pub(super) fn parse_wrk(text: &str) -> Option<Load> {
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

pub(super) fn duration_us(s: &str) -> Option<f64> {
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

pub(super) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(super) fn median_load(runs: &[Load]) -> Load {
    let pick = |f: fn(&Load) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    Load {
        rps: pick(|l| l.rps),
        p50_us: pick(|l| l.p50_us),
        p99_us: pick(|l| l.p99_us),
        errors: runs.iter().map(|l| l.errors).sum(),
        wrk_failed: runs.iter().any(|l| l.wrk_failed),
    }
}

pub(super) struct Report<'a> {
    pub(super) rows: Vec<Row>,
    pub(super) binary_size: u64,
    pub(super) rss_idle: u64,
    pub(super) rss_load: u64,
    pub(super) firsts: Vec<f64>,
    pub(super) servings: Vec<f64>,
    pub(super) attaches: Vec<Attach>,
    /// A target's connects to another address: p50 / p99 µs with nothing attached (mean of
    /// before and after), and with `max_cgroups` attached.
    pub(super) connect_none: (f64, f64),
    pub(super) connect_attached: (f64, f64),
    pub(super) max_cgroups: usize,
    pub(super) kernel: Figures,
    /// Where spot-sim's starts spent their time, part by part.
    pub(super) startup: Startup,
    /// The machine the figures are from (CPUs, kernel, load when the run began).
    pub(super) machine: String,
    /// How the iptables DNAT setup was made and kept fair.
    pub(super) dnat: String,
    pub(super) args: &'a BenchArgs,
}

pub(super) fn find<'r>(rows: &'r [Row], setup: &str, mode: Mode) -> Option<&'r Row> {
    rows.iter()
        .find(|r| r.setup == setup && r.mode == mode && !r.runs.is_empty())
}

pub(super) fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

/// A verdict: a row with errors or a failed wrk cannot meet anything.
pub(super) fn verdict(ok: bool, rows: &[&Row]) -> &'static str {
    if rows.iter().any(|r| r.flagged()) {
        "**not met** (errors in the runs)"
    } else {
        met(ok)
    }
}

pub(super) fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Machine: {}\n", r.machine);
    let _ = writeln!(
        s,
        "Load: wrk -t 2 -c {} -d {}s --latency, GET {PATH} (a 200 answer); every client in a private network namespace. Each setup: {} runs, each paired with a direct run in ABBA order after a {} s warm-up of both; requests/s and \"vs direct\" (each run over its paired direct run) as median (min–max); p50 and p99 are medians. ⚠ marks a row with errors or a failed wrk.\n",
        r.args.connections, r.args.duration, r.args.repeat, r.args.warmup
    );
    let _ = writeln!(
        s,
        "| setup | mode | requests/s | p50 | p99 | vs direct | errors |\n|---|---|---:|---:|---:|---:|---:|"
    );
    load_rows(&mut s, &r.rows);

    let _ = writeln!(s, "\n{}", r.dnat);
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

    targets(&mut s, r, first);
    s.push_str(&render_startup(&r.startup));
    s.push_str(&render_kernel(&r.kernel));
    s
}

/// The load table's rows: each setup and mode, its spread and its ratio to direct.
fn load_rows(s: &mut String, rows: &[Row]) {
    for row in rows {
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
}

/// The targets, each with its figure and whether it was met.
fn targets(s: &mut String, r: &Report, first: f64) {
    let n = r.max_cgroups;
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
        "| first redirected answer within 50 ms of start (median; its parts below) | {first:.0} ms | {} |",
        met(first <= 50.0)
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
}

/// The parts of a start of `spot-sim run`, each timed in every start: from spot-sim's own
/// start-up log lines (`spot_sim::startup` at debug) and the arrival of each line.
#[derive(Default)]
pub(super) struct Startup {
    pub(super) parts: Vec<(&'static str, Vec<f64>)>,
}

impl Startup {
    /// Adds one start's figure (ms) for `part`, keeping the parts in first-seen order.
    pub(super) fn add(&mut self, part: &'static str, ms: f64) {
        match self.parts.iter_mut().find(|(p, _)| *p == part) {
            Some((_, v)) => v.push(ms),
            None => self.parts.push((part, vec![ms])),
        }
    }
}

pub(super) fn render_startup(st: &Startup) -> String {
    let n = st.parts.first().map_or(0, |(_, v)| v.len());
    let mut s = format!(
        "\n### Start-up, part by part\n\nEach start of `spot-sim run` (one target, a probe already polling from it), as spot-sim's `spot_sim::startup` debug lines time it; median (min–max) of {n} starts, in ms.\n\n| part | ms |\n|---|---:|\n"
    );
    for (part, v) in &st.parts {
        let (lo, mid, hi) = spread(v);
        let _ = writeln!(s, "| {part} | {mid:.1} ({lo:.1}–{hi:.1}) |");
    }
    s
}

/// One run of the connect-rate probe, as the kernel's statistics saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct KernelRun {
    /// connect4's mean run time per call, in ns.
    pub(super) ns_per_call: f64,
    pub(super) calls: u64,
    /// Connects a second the probe achieved.
    pub(super) rate: f64,
    /// Connects that failed (timed out): the program ran for them too.
    pub(super) failed: u64,
}

/// Repeated runs of one load: connects to the IMDS address (redirected) or elsewhere, at a
/// rate asked for (0: as fast as one process connects).
#[derive(Clone, Debug, Default)]
pub(super) struct KernelRuns {
    pub(super) asked: u32,
    pub(super) redirected: bool,
    pub(super) runs: Vec<KernelRun>,
}

impl KernelRuns {
    /// min / median / max of the ns per call.
    pub(super) fn ns(&self) -> (f64, f64, f64) {
        spread(&self.runs.iter().map(|r| r.ns_per_call).collect::<Vec<_>>())
    }

    /// "redirected connect (connect4) at 100 connects/s: min / median / max of 5 runs of about
    /// 500 calls".
    pub(super) fn label(&self) -> String {
        let (_, rate, _) = spread(&self.runs.iter().map(|r| r.rate).collect::<Vec<_>>());
        let (_, calls, _) = spread(&self.runs.iter().map(|r| r.calls as f64).collect::<Vec<_>>());
        let what = if self.redirected {
            "kernel ns per redirected connect (connect4)"
        } else {
            "kernel ns per connect from a target to another address (connect4)"
        };
        let at = if self.asked == 0 {
            format!("as fast as one process connects ({rate:.0} connects/s)")
        } else {
            format!("at {} connects/s", self.asked)
        };
        let failed: u64 = self.runs.iter().map(|r| r.failed).sum();
        let failed = if failed > 0 {
            format!(" ({failed} connects failed)")
        } else {
            String::new()
        };
        format!(
            "{what}, {at}: min / median / max of {} runs of about {calls:.0} calls{failed}",
            self.runs.len()
        )
    }
}

/// "100 connects/s", or "full speed".
pub(super) fn rate_words(rate: u32) -> String {
    if rate == 0 {
        "full speed".into()
    } else {
        format!("{rate} connects/s")
    }
}

pub(super) fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// What the kernel-side rows show.
pub(super) struct Figures {
    /// connect4 per call: redirected at 100/s, redirected at full speed, elsewhere at full
    /// speed (passed untouched).
    pub connects: [KernelRuns; 3],
    pub idle_targets: usize,
    /// Percent of one core spot-sim used while idle with `idle_targets` targets.
    pub idle_cpu_pct: f64,
    /// Milliseconds from a process's start in a new namespace inside a target to its first
    /// answer, per start.
    pub new_netns_ms: Vec<f64>,
    /// Mean ns of the exec tracepoint per exec anywhere on the node, and the execs counted.
    pub exec: (f64, u64),
}

/// The rows of the report's kernel section, in Markdown.
pub(super) fn render_kernel(f: &Figures) -> String {
    let (lo, mid, hi) = spread(&f.new_netns_ms);
    let mut ms = f.new_netns_ms.clone();
    let goal = |ok: bool| if ok { "met" } else { "not met" };
    let mut s = String::from(
        "\n### Kernel path and discovery\n\n| figure | value | goal |\n|---|---|---|\n",
    );
    for k in &f.connects {
        let (a, m, b) = k.ns();
        // The goal is for a busy target: at full speed, the cost that adds up.
        let g = if k.redirected && k.asked == 0 {
            format!("≤ 300 ns (median): {}", goal(m <= 300.0))
        } else {
            String::new()
        };
        let _ = writeln!(s, "| {} | {a:.0} / {m:.0} / {b:.0} ns | {g} |", k.label());
    }
    let _ = write!(
        s,
        "| idle CPU with {} targets, each in its own network namespace | {:.2} % of a core | ≤ 0.3 %: {} |\n\
         | new network namespace in a target: first answer (min / median / max of {}) | {lo:.0} / {mid:.0} / {hi:.0} ms | ≤ 150 ms: {} |\n\
         | exec tracepoint per exec anywhere on the node (mean over {} execs) | {:.0} ns | |\n",
        f.idle_targets,
        f.idle_cpu_pct,
        goal(f.idle_cpu_pct <= 0.3),
        f.new_netns_ms.len(),
        goal(median(&mut ms) <= 150.0),
        f.exec.1,
        f.exec.0,
    );
    s
}
