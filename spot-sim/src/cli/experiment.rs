//! `spot-sim run --experiment FILE` (this node's part of a game day) and
//! `spot-sim experiment plan FILE --nodes ...` (who the game day will hit).
//!
//! A node that is not selected attaches nothing (it does not even load the eBPF programs) and
//! idles, so the DaemonSet does not restart it. A selected node targets every running pod
//! matching the experiment's selectors as they appear, each with the node's timeline starting
//! at start-at (plus its stagger), and reports its result once the interruption has come.
//!
//! A start-at in the past is joined, not refused and not restarted: every instant still derives
//! from start-at, so a node whose spot-sim restarts during the game day (or whose ConfigMap
//! arrived late) shows its pods the same timestamps as every other node, with a warning. Only
//! an experiment whose interruption is already over is refused: nothing is left to rehearse,
//! and a stale ConfigMap should not pass silently.

use std::{
    collections::HashMap,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context, Result};

use super::{
    answers::{bind_before_attaching, start_control},
    args::{PlanArgs, RunArgs},
    gameday,
    resolve::{NodeRoots, Resolver, SettingsFrom},
    shutdown::wait_for_shutdown,
};
use crate::{
    control::metrics::{session_metrics, MetricsServer},
    experiment::{is_node_name, verdict, Decision, Experiment, NodeResult, NodeSet, TargetResult},
    lock::lock,
    scenario::{rfc3339, Schedule, SystemClock},
    session::Session,
    stop::Stopped,
    targets::{pods, HostView, Pod, PodSelector, TargetKind, TargetScope},
};

/// How often a selected node looks for new matching pods.
const SCAN_EVERY: Duration = Duration::from_secs(2);
/// How often a selector that matches nothing is mentioned again.
const WAITING_NOTE_EVERY: Duration = Duration::from_secs(60);

pub(super) fn plan(a: PlanArgs) -> Result<ExitCode> {
    use std::io::Write as _;
    let exp = Experiment::load(&a.file)?;
    let given = if a.nodes == ["-"] {
        std::io::read_to_string(std::io::stdin().lock())
            .context("reading node names from stdin")?
            .lines()
            .map(str::to_owned)
            .collect()
    } else {
        a.nodes
    };
    let names: Vec<&str> = given
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(|n| n.strip_prefix("node/").unwrap_or(n))
        .collect();
    if let Some(bad) = names.iter().find(|n| !is_node_name(n)) {
        bail!(
            "--nodes: {:?} is not a node name; give names as `kubectl get nodes` prints them (lowercase letters, digits, '-', '.')",
            bad.escape_debug().to_string()
        );
    }
    let mut selected = 0;
    // One buffered writer: a line per node, and a cluster may have 150k of them.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for name in &names {
        let _ = match exp.decide(name) {
            Decision::Selected { t0 } => {
                selected += 1;
                if exp.stagger.is_zero() {
                    writeln!(out, "{name} selected")
                } else {
                    writeln!(out, "{name} selected {}", rfc3339(t0))
                }
            }
            Decision::Skipped => writeln!(out, "{name} skipped"),
        };
    }
    out.flush().context("writing the plan")?;
    drop(out);
    eprintln!(
        "experiment {}: {selected} of {} node(s) selected; start-at {}{}",
        exp.name,
        names.len(),
        rfc3339(exp.start_at),
        if exp.abort {
            " (but experiment.abort = true: no node attaches anything)"
        } else {
            ""
        }
    );
    if exp.start_at < SystemTime::now() {
        eprintln!(
            "note: start-at is in the past: selected nodes join the timeline where it stands, and refuse once their interruption is over"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// This node's name: `--node-name`, else `NODE_NAME` (clap reads both).
fn node_name(given: Option<&str>) -> Result<String> {
    let Some(name) = given.map(str::trim).filter(|n| !n.is_empty()) else {
        bail!(
            "--experiment needs this node's name: pass --node-name NAME, or set NODE_NAME (in a DaemonSet: env NODE_NAME from fieldRef spec.nodeName)"
        );
    };
    if !is_node_name(name) {
        bail!(
            "node name {:?} is not a Kubernetes node name (lowercase letters, digits, '-', '.'); pass the name `kubectl get nodes` prints with --node-name or NODE_NAME",
            name.escape_debug().to_string()
        );
    }
    Ok(name.to_string())
}

pub(super) async fn run(a: RunArgs) -> Result<ExitCode> {
    let file = a.experiment.clone().context("no --experiment")?;
    let exp = Experiment::load(&file)?;
    let node = node_name(a.node_name.as_deref())?;
    let result = Arc::new(Mutex::new(NodeResult {
        experiment: exp.name.clone(),
        node: node.clone(),
        selected: false,
        start_at: None,
        start_unix: None,
        finished: false,
        targets: Vec::new(),
        verdict: verdict(false, false, false, &[]),
        stopped: None,
    }));
    let t0 = match exp.decide(&node) {
        Decision::Skipped => return skipped(&a, &exp, &node, result).await,
        Decision::Selected { t0 } => t0,
    };
    let settings = exp.settings_at(t0);
    let schedule = settings.scenario.schedule(t0);
    let now = SystemTime::now();
    if now >= schedule.interrupted_at {
        bail!(
            "experiment {}: this node's interruption was at {} (start-at {}), so the game day is over here; attaching nothing. Set a start-at in the future to run it again",
            exp.name,
            rfc3339(schedule.interrupted_at),
            rfc3339(t0)
        );
    }
    let control = bind_before_attaching(&a.control).await?;
    let host = HostView::detect(a.host_root.as_deref(), a.cgroup_root.as_deref())?;
    // The node's pods must be readable now: a wrong --host-root should fail here, not be
    // reported as "no matching pod yet" forever.
    pods::list_pods(&host)?;
    lock(&result).select(t0);
    announce(&exp, &node, t0, now);
    let session = Session::start(Arc::new(SystemClock))?;
    // Before anything is attached: the kill switch set stops this node at once.
    let _stop = gameday::experiment_stops(&a.stop, t0, &file, &session).await?;
    // The node's verdict is the game-day report's: --expect-* as `run` takes them, else "the
    // notice was read before the interruption".
    gameday::prepare_node(&session, &a.verdict, &settings.scenario)?;
    let _control = start_control(control, &session, None);
    let _metrics = match a.metrics {
        Some(addr) => Some(node_metrics(addr, &session, &result).await?),
        None => None,
    };
    // Checked as `run --pod` checks: never the mount root, nor the pod spot-sim itself runs
    // in (a selector that matches the game day's own DaemonSet).
    let resolver = Resolver {
        mount: host.cgroup2.clone(),
        proc: host.proc.clone(),
        node: NodeRoots {
            host_root: a.host_root.clone(),
            cgroup_root: a.cgroup_root.clone(),
        },
        settings: SettingsFrom::Resolved(Box::new(settings)),
        port: a.port,
        scope: TargetScope::WorkloadOnly,
    };
    let mut node_run = NodeRun {
        exp: &exp,
        host: &host,
        resolver,
        t0,
        schedule,
        result: Arc::clone(&result),
        attached: HashMap::new(),
        last_scan: None,
        waiting_noted: HashMap::new(),
        reported: false,
        stopped: None,
        stopped_early: false,
    };
    node_run.tick(&session);
    log::info!(
        "serving {} target(s); `spot-sim status` shows the timeline; Ctrl-C detaches",
        session.target_names().len()
    );
    wait_for_shutdown(Some(&mut || node_run.tick(&session))).await?;
    if !node_run.reported {
        node_run.update(&session);
        print_result(&lock(&result));
    }
    // The --report files, which were checked at start and then never written (issue #20).
    if !a.verdict.report.is_empty() {
        let report = session.report(&session.expectations());
        gameday::write_reports(&report, &a.verdict);
    }
    session.shutdown();
    log::info!("detached; exiting");
    Ok(ExitCode::SUCCESS)
}

/// Says that this node takes part, and whether it joins a timeline already started.
fn announce(exp: &Experiment, node: &str, t0: SystemTime, now: SystemTime) {
    match now.duration_since(t0) {
        Ok(late) => log::warn!(
            "experiment {}: node {node} is selected, but its start-at {} was {} ago; joining the timeline where it stands (the same instants as every other node), not starting it over",
            exp.name,
            rfc3339(t0),
            humantime::format_duration(Duration::from_secs(late.as_secs()))
        ),
        Err(e) => log::info!(
            "experiment {}: node {node} is selected; its timeline starts at {} (in {}); targeting pods matching {}",
            exp.name,
            rfc3339(t0),
            humantime::format_duration(Duration::from_secs(e.duration().as_secs())),
            exp.pods
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The session's series and the node's result, on each scrape.
async fn node_metrics(
    addr: std::net::SocketAddr,
    session: &Arc<Session>,
    result: &Arc<Mutex<NodeResult>>,
) -> Result<MetricsServer> {
    let weak = Arc::downgrade(session);
    let r = Arc::clone(result);
    Ok(MetricsServer::start_with(addr, move || {
        let mut body = weak
            .upgrade()
            .map(|s| session_metrics(&s))
            .unwrap_or_default();
        body.push_str(&lock(&r).metrics());
        body
    })
    .await?)
}

/// A node the experiment does not select: say so, report it, attach nothing, and stay up (a
/// DaemonSet pod that exits is restarted).
async fn skipped(
    a: &RunArgs,
    exp: &Experiment,
    node: &str,
    result: Arc<Mutex<NodeResult>>,
) -> Result<ExitCode> {
    log::info!(
        "experiment {}: node {node} is not selected ({}); attaching nothing",
        exp.name,
        match &exp.nodes {
            NodeSet::Share(p) =>
                format!("{p}% of nodes, drawn by a hash of the experiment and node names"),
            NodeSet::List(_) => "not in experiment.nodes".to_string(),
        }
    );
    print_result(&lock(&result));
    let _metrics = match a.metrics {
        Some(addr) => {
            let r = Arc::clone(&result);
            Some(MetricsServer::start_with(addr, move || lock(&r).metrics()).await?)
        }
        None => None,
    };
    wait_for_shutdown(None).await?;
    log::info!("exiting");
    Ok(ExitCode::SUCCESS)
}

/// The result line on stdout, which `kubectl logs` and log shippers pick up as JSON.
fn print_result(r: &NodeResult) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", r.json_line());
    let _ = out.flush();
}

/// A pod this node targeted.
struct Attached {
    /// The session's target name.
    name: String,
    live: bool,
    last: TargetResult,
}

/// A selected node's game day: which pods are targeted, and its result.
struct NodeRun<'a> {
    exp: &'a Experiment,
    host: &'a HostView,
    /// Resolves each matching pod, by its uid, with the node's settings.
    resolver: Resolver,
    t0: SystemTime,
    schedule: Schedule,
    result: Arc<Mutex<NodeResult>>,
    /// By pod uid.
    attached: HashMap<String, Attached>,
    last_scan: Option<Instant>,
    /// Selector → when it was last said that nothing matches it.
    waiting_noted: HashMap<String, Instant>,
    reported: bool,
    /// The game day was stopped here (everything detached then), and whether before the
    /// node's interruption.
    stopped: Option<Stopped>,
    stopped_early: bool,
}

impl NodeRun<'_> {
    fn tick(&mut self, session: &Arc<Session>) {
        if let Some(s) = self.stopped.is_none().then(|| session.stopped()).flatten() {
            self.on_stop(session, s);
        }
        if self.stopped.is_some() {
            return;
        }
        if self.last_scan.is_none_or(|t| t.elapsed() >= SCAN_EVERY) {
            self.scan(session);
        }
        self.update(session);
        if !self.reported && SystemTime::now() >= self.schedule.interrupted_at {
            self.reported = true;
            let r = lock(&self.result);
            print_result(&r);
            log::info!(
                "experiment {}: the interruption has come on this node; verdict {} ({} of {} pod(s) read the notice before it)",
                r.experiment,
                serde_json::to_value(r.verdict)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                r.targets.iter().filter(|t| t.read_notice).count(),
                r.targets.len()
            );
        }
    }

    /// The game day stopped here: the result line says so at once; nothing is attached again.
    fn on_stop(&mut self, session: &Arc<Session>, s: Stopped) {
        self.stopped_early = SystemTime::now() < self.schedule.interrupted_at;
        self.stopped = Some(s);
        self.update(session);
        self.reported = true;
        print_result(&lock(&self.result));
    }

    /// Drops targets whose pod is gone and targets matching pods that appeared.
    fn scan(&mut self, session: &Arc<Session>) {
        self.last_scan = Some(Instant::now());
        for a in self.attached.values_mut().filter(|a| a.live) {
            if session.cgroup_alive(&a.name) == Some(false) {
                a.live = false;
                let _ = session.remove_target(&a.name);
                log::info!("experiment {}: {} is gone", self.exp.name, a.name);
            }
        }
        // After the interruption this node is "gone": a pod starting now would only find an
        // IMDS that does not answer.
        if SystemTime::now() >= self.schedule.interrupted_at {
            return;
        }
        let all = match pods::list_pods(self.host) {
            Ok(p) => p,
            Err(e) => {
                self.note_waiting("(pod listing)", &format!("cannot list pods: {e}"));
                return;
            }
        };
        let exp = self.exp;
        for sel in &exp.pods {
            let running: Vec<&Pod> = all
                .iter()
                .filter(|p| p.cgroup.is_some() && sel.matches(p))
                .collect();
            if running.is_empty() {
                self.note_waiting(
                    &sel.to_string(),
                    &format!(
                        "no running pod on this node matches {sel} yet; still looking every {}s",
                        SCAN_EVERY.as_secs()
                    ),
                );
                continue;
            }
            for pod in running {
                if self.attached.contains_key(&pod.uid) {
                    continue;
                }
                let uid = TargetKind::Pod(PodSelector::Uid(pod.uid.clone()));
                match self
                    .resolver
                    .resolve(&uid, None)
                    .and_then(|spec| Ok(session.add_target(spec)?))
                {
                    Ok(name) => {
                        log::info!(
                            "experiment {}: targeting {name} (uid {}), timeline from {}",
                            self.exp.name,
                            pod.uid,
                            rfc3339(self.t0)
                        );
                        self.attached.insert(
                            pod.uid.clone(),
                            Attached {
                                last: TargetResult {
                                    name: name.clone(),
                                    uid: pod.uid.clone(),
                                    ..Default::default()
                                },
                                name,
                                live: true,
                            },
                        );
                    }
                    Err(e) => self.note_waiting(
                        &pod.uid,
                        &format!("cannot target pod {}: {e:#}", pod.full_name()),
                    ),
                }
            }
        }
    }

    /// Logs `message` about `key` now and then at most once a minute.
    fn note_waiting(&mut self, key: &str, message: &str) {
        let due = self
            .waiting_noted
            .get(key)
            .is_none_or(|t| t.elapsed() >= WAITING_NOTE_EVERY);
        if due {
            self.waiting_noted.insert(key.to_string(), Instant::now());
            log::warn!("experiment {}: {message}", self.exp.name);
        }
    }

    /// Refreshes the node's result from the game-day report's findings and verdicts: one
    /// source for what each pod read.
    fn update(&mut self, session: &Arc<Session>) {
        let report = session.verdicts();
        for a in self.attached.values_mut().filter(|a| a.live) {
            if let Some(t) = report.targets.iter().find(|t| t.name == a.name) {
                a.last = TargetResult::from_report(&a.last.uid, t);
            }
        }
        let mut targets: Vec<TargetResult> =
            self.attached.values().map(|a| a.last.clone()).collect();
        targets.sort_by(|x, y| (&x.name, &x.uid).cmp(&(&y.name, &y.uid)));
        let finished = SystemTime::now() >= self.schedule.interrupted_at;
        let mut r = lock(&self.result);
        r.finished = finished;
        r.verdict = verdict(true, finished, self.stopped_early, &targets);
        r.stopped.clone_from(&self.stopped);
        r.targets = targets;
    }
}
