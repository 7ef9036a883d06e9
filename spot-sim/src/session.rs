//! A running spot-sim: the redirect, and for each target its cgroup link, its responder
//! (listening inside the target's network namespace) and its timeline.
//!
//! Dropping a [`Session`] detaches every target before the responders stop, so no target is
//! ever redirected to nothing.

use std::{
    collections::{HashMap, HashSet},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use spot_sim_common::Target;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    escape::untrusted_path,
    imds::Responder,
    journal::{self, Journal, OutboundRecord, ProcRecord, RedirectRecord},
    redirect::{
        ActivityReader, EventReader, KernelActivity, RedirectError, RedirectEvent, Redirector,
        TargetLink,
    },
    report::{Expectations, Report},
    scenario::{Clock, OnInterrupt, Phase, Timeline},
    settings::Settings,
    targets::{CgroupDir, NetNs, NetNsError},
};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Redirect(#[from] RedirectError),
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    #[error(
        "port {port} is already in use in the network namespace of {target}: pick another with --port, or leave --port out to use a free one"
    )]
    PortInUse { port: u16, target: String },
    #[error("cannot open the responder's listener for {target}: {source}")]
    Listen {
        target: String,
        source: std::io::Error,
    },
    #[error("no target named {0}: list them with `spot-sim target list`")]
    UnknownTarget(String),
    #[error("{0} is already targeted: list the targets with `spot-sim target list`")]
    Duplicate(String),
}

/// What to target, resolved: a cgroup and the namespace its processes use.
pub struct TargetSpec {
    /// How the user named it: `cgroup /x`, `pod ns/name`, `exec`.
    pub name: String,
    pub cgroup: CgroupDir,
    pub netns: NetNs,
    /// The node's `/proc`, to find the namespaces of processes that join the target later.
    pub proc: PathBuf,
    pub settings: Settings,
    /// Fixed responder port (both families); 0 picks a free one.
    pub port: u16,
}

/// Per-target state of the redirect log (the redirect count itself is the kernel's).
#[derive(Debug, Default)]
struct Counters {
    /// Last log line time, for the rate limit.
    last_logged: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

struct ActiveTarget {
    name: String,
    index: u32,
    cgroup: CgroupDir,
    // Field order is drop order: detach first, then stop the responder.
    link: Option<TargetLink>,
    netns_inode: u64,
    /// Every namespace the responder listens in (by inode), with the same ports in each.
    served: HashSet<u64>,
    proc: PathBuf,
    port4: u16,
    port6: u16,
    timeline: Arc<Timeline>,
    responder: Arc<Responder>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    on_interrupt: OnInterrupt,
    gone_reported: bool,
    journal: Arc<Journal>,
}

impl Drop for ActiveTarget {
    fn drop(&mut self) {
        drop(self.link.take());
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A target as `status` and `target list` show it.
#[derive(Debug, Serialize, serde::Deserialize, Clone)]
pub struct TargetStatus {
    pub name: String,
    pub cgroup: PathBuf,
    pub cgroup_id: u64,
    pub netns: u64,
    pub listen: Vec<String>,
    pub redirects: u64,
    pub cgroup_exists: bool,
    pub timeline: serde_json::Value,
    pub timeline_text: String,
    pub responder: serde_json::Value,
}

pub struct Session {
    redirector: Mutex<Redirector>,
    clock: Arc<dyn Clock>,
    targets: Mutex<Vec<ActiveTarget>>,
    /// Names being added right now (taken under the `targets` lock, see [`NameClaim`]).
    adding: Mutex<HashSet<String>>,
    counters: Mutex<HashMap<u32, (String, Arc<Counters>)>>,
    next_index: AtomicU64,
    /// Every target's journal by index, removed targets' included (the newest
    /// [`RETIRED_JOURNALS`] of them), so the final report covers them.
    journals: Mutex<Vec<(u32, Arc<Journal>)>>,
    /// The kernel's records, drained on a timer and before every report and exit.
    kernel: Mutex<KernelReaders>,
    /// What the user expects of every target (`--expect-*`), for live reports.
    expect: Mutex<Expectations>,
    /// Housekeeping ticks so far, for the slow safety scan.
    ticks: AtomicU64,
    /// The kernel reports program starts and exits in target cgroups: namespaces are then
    /// discovered from those records, and the full scan of every pid only backs them up.
    event_driven: bool,
}

/// With kernel process records, every pid of every target is re-read only every this many
/// ticks (30 s at run's and exec's 0.5 s tick): a safety net for a process that changed its
/// namespace without starting a program. Without them, every tick. (Re-reading 200 targets'
/// pids every tick was most of what an idle spot-sim spent.)
const SAFETY_SCAN_EVERY: u64 = 60;

/// How often (in ticks: 2 s) a target's cgroup is checked for having been removed (a pod
/// deleted), for the log line; `status` looks at the moment it is asked.
const GONE_CHECK_EVERY: u64 = 4;

/// Journals of removed targets kept for the report.
const RETIRED_JOURNALS: usize = 32;

struct KernelReaders {
    events: Option<EventReader>,
    activity: Option<ActivityReader>,
}

impl Session {
    /// Loads the redirect and starts forwarding its events to the log. Needs a tokio runtime.
    pub fn start(clock: Arc<dyn Clock>) -> Result<Arc<Self>, SessionError> {
        let mut redirector = Redirector::load()?;
        let events = redirector.take_events();
        let activity = redirector.take_activity();
        let wake = [
            events.as_ref().map(|e| e.wake_fd().try_clone_to_owned()),
            activity
                .as_ref()
                .and_then(|a| a.wake_fd())
                .map(|fd| fd.try_clone_to_owned()),
        ];
        let event_driven = activity
            .as_ref()
            .is_some_and(ActivityReader::sees_processes);
        let session = Arc::new(Self {
            redirector: Mutex::new(redirector),
            clock,
            targets: Mutex::new(Vec::new()),
            adding: Mutex::new(HashSet::new()),
            counters: Mutex::new(HashMap::new()),
            next_index: AtomicU64::new(1),
            journals: Mutex::new(Vec::new()),
            kernel: Mutex::new(KernelReaders { events, activity }),
            expect: Mutex::new(Expectations::default()),
            ticks: AtomicU64::new(0),
            event_driven,
        });
        let wake: Vec<_> = wake.into_iter().flatten().filter_map(Result::ok).collect();
        tokio::spawn(drain_kernel(Arc::downgrade(&session), wake));
        Ok(session)
    }

    /// Reads everything the kernel recorded so far into the logs, counters and journals.
    /// Runs on a timer, and before anything is reported or spot-sim exits, so no event of a
    /// short command is missed.
    pub fn drain(&self) {
        // Held until every record is in its journal: a report draining at the same time as
        // the timer waits, instead of finding the buffers empty and the journals not yet fed.
        let mut kernel = lock(&self.kernel);
        let now = self.clock.now();
        let mut redirects = Vec::new();
        if let Some(events) = &mut kernel.events {
            events.drain(|ev| redirects.push(ev));
        }
        let mut activity = Vec::new();
        if let Some(a) = &mut kernel.activity {
            a.drain(|x| activity.push(x));
        }
        for ev in &redirects {
            self.on_redirect(ev);
            if let Some(j) = self.journal_of(ev.target_index) {
                j.redirect(RedirectRecord {
                    at_ms: journal::ms(now),
                    pid: ev.tgid,
                    comm: ev.comm.clone(),
                    destination: ev.original.to_string(),
                });
            }
        }
        let to_ms = kernel_to_wall_ms(now);
        // Where each target's processes show in /proc (the node's, from a pod).
        let procs: Vec<(u32, PathBuf)> = if activity
            .iter()
            .any(|x| matches!(x, KernelActivity::Exec { .. }))
        {
            lock(&self.targets)
                .iter()
                .map(|t| (t.index, t.proc.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let proc_of = |index: u32| {
            procs
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, p)| p.as_path())
        };
        // Programs started and processes gone, per target: where to look for a new network
        // namespace, and which cgroups may have emptied.
        let mut started: Vec<(u32, u32)> = Vec::new();
        let mut exited: Vec<u32> = Vec::new();
        for x in activity {
            match x {
                KernelActivity::Exec {
                    target_index,
                    tgid,
                    ktime_ns,
                    comm,
                } => {
                    started.push((target_index, tgid));
                    if let Some(j) = self.journal_of(target_index) {
                        j.exec(ProcRecord {
                            at_ms: to_ms(ktime_ns),
                            pid: tgid,
                            detail: proc_of(target_index)
                                .map(|p| command_line(p, tgid, &comm))
                                .unwrap_or_default(),
                            comm,
                        });
                    }
                }
                KernelActivity::Exit {
                    target_index,
                    tgid,
                    ktime_ns,
                    comm,
                } => {
                    if !exited.contains(&target_index) {
                        exited.push(target_index);
                    }
                    if let Some(j) = self.journal_of(target_index) {
                        j.exit(ProcRecord {
                            at_ms: to_ms(ktime_ns),
                            pid: tgid,
                            comm,
                            detail: String::new(),
                        });
                    }
                }
                KernelActivity::Outbound {
                    target_index,
                    destination,
                    comm,
                    tgid,
                    first_ns,
                    last_ns,
                    count,
                } => {
                    if let Some(j) = self.journal_of(target_index) {
                        j.outbound(OutboundRecord {
                            destination,
                            comm,
                            pid: tgid,
                            first_ms: to_ms(first_ns),
                            last_ms: to_ms(last_ns),
                            count,
                        });
                    }
                }
            }
        }
        drop(kernel);
        if !started.is_empty() || !exited.is_empty() {
            let mut targets = lock(&self.targets);
            for t in targets.iter_mut() {
                let index = t.index;
                for (_, pid) in started.iter().filter(|(i, _)| *i == index) {
                    serve_namespace_of(t, *pid);
                }
                if exited.contains(&t.index) {
                    t.journal.cgroup_seen(t.cgroup.pids().is_empty(), now);
                }
            }
        }
    }

    fn journal_of(&self, index: u32) -> Option<Arc<Journal>> {
        lock(&self.journals)
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, j)| Arc::clone(j))
    }

    /// Whether the kernel shows the targets' program starts and exits (for `--expect-react`).
    pub fn sees_processes(&self) -> bool {
        lock(&self.kernel)
            .activity
            .as_ref()
            .is_some_and(ActivityReader::sees_processes)
    }

    /// The game-day report of every target, after a last drain of the kernel's records.
    pub fn report(&self, expect: &Expectations) -> Report {
        self.report_with(expect, Journal::snapshot)
    }

    /// The findings and verdicts alone (no request list): for metrics scrapes.
    pub fn verdicts(&self) -> Report {
        self.report_with(&self.expectations(), Journal::summary_snapshot)
    }

    fn report_with(
        &self,
        expect: &Expectations,
        snapshot: impl Fn(&Journal) -> journal::JournalSnapshot,
    ) -> Report {
        self.drain();
        let now = self.clock.now();
        for t in lock(&self.targets).iter() {
            t.journal.cgroup_seen(t.cgroup.pids().is_empty(), now);
        }
        let snapshots: Vec<_> = lock(&self.journals)
            .iter()
            .map(|(_, j)| snapshot(j))
            .collect();
        Report::build(&snapshots, expect, journal::ms(now))
    }

    pub fn set_expectations(&self, expect: Expectations) {
        *lock(&self.expect) = expect;
    }

    pub fn expectations(&self) -> Expectations {
        *lock(&self.expect)
    }

    /// `exec`'s command ended: its status goes into the named target's report.
    pub fn command_ended(&self, name: &str, status: i32) {
        if let Some(t) = lock(&self.targets).iter().find(|t| t.name == name) {
            t.journal.command_ended(status);
        }
    }

    fn on_redirect(&self, ev: &RedirectEvent) {
        let entry = lock(&self.counters).get(&ev.target_index).cloned();
        let Some((name, counters)) = entry else {
            return;
        };
        // At most one line a second per target: a handler polling in a tight loop must not
        // flood the log.
        let mut last = lock(&counters.last_logged);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            counters.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        let more = counters.suppressed.swap(0, Ordering::Relaxed);
        let more = if more > 0 {
            format!(" (+{more} more processes' redirects since the last line)")
        } else {
            String::new()
        };
        let family = if ev.ipv6_socket {
            "IPv6 socket"
        } else {
            "IPv4"
        };
        log::info!(
            "{name}: pid {} ({}) → IMDS {} redirected ({family}){more}",
            ev.tgid,
            ev.comm,
            ev.original
        );
    }

    /// Starts a target: opens its listeners inside its namespace, starts its responder, and
    /// only then attaches the redirect.
    pub fn add_target(self: &Arc<Self>, spec: TargetSpec) -> Result<String, SessionError> {
        // Check and claim the name in one step under the targets lock, so two `target add`s
        // (or one and `--follow`) cannot both pass the check; the I/O below runs unlocked,
        // and the claim is released whichever way this returns.
        let _claim = NameClaim::take(self, &spec.name)?;
        let (l4, mut l6) = bind_loopback(&spec.netns, spec.port, &spec.name)?;
        // With the IPv6 endpoint off (EC2's default) nothing is redirected to ::1: no listener
        // there, in this namespace or any other the target's processes live in.
        if !spec.settings.imds.options.http_protocol_ipv6.is_enabled() {
            l6 = None;
        }
        let port4 = l4.local_addr().map(|a| a.port()).unwrap_or(0);
        let port6 = l6
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
            .unwrap_or(0);
        let index = self.next_index.fetch_add(1, Ordering::Relaxed) as u32;
        let timeline = Timeline::new(spec.settings.scenario.clone(), Arc::clone(&self.clock));
        let responder = Responder::new(
            spec.name.clone(),
            Arc::clone(&timeline),
            spec.settings.imds.clone(),
            Arc::clone(&self.clock),
        );
        let journal = Journal::new(spec.name.clone(), Arc::clone(&timeline));
        responder.attach_journal(Arc::clone(&journal));
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for listener in std::iter::once(l4).chain(l6) {
            tasks.push(spawn_serve(&responder, listener, &stop_rx, &spec.name)?);
        }
        let link = lock(&self.redirector).attach(
            &spec.cgroup,
            Target {
                port4,
                // 0 leaves native IPv6 connects to fd00:ec2::254 alone: HttpProtocolIpv6 is
                // off by default on EC2. The IPv4-mapped form still goes to port4.
                port6: if spec.settings.imds.options.http_protocol_ipv6.is_enabled() {
                    port6
                } else {
                    0
                },
                index,
                redirects: 0,
            },
        )?;
        let counters = Arc::new(Counters::default());
        lock(&self.counters).insert(index, (spec.name.clone(), counters));
        lock(&self.journals).push((index, Arc::clone(&journal)));
        log::info!(
            "{}: IMDS connects from {} now reach spot-sim (127.0.0.1:{port4}{})",
            spec.name,
            untrusted_path(spec.cgroup.path()),
            if port6 != 0 {
                format!(", [::1]:{port6}")
            } else {
                String::new()
            }
        );
        let name = spec.name.clone();
        lock(&self.targets).push(ActiveTarget {
            name: spec.name,
            index,
            cgroup: spec.cgroup,
            link: Some(link),
            netns_inode: spec.netns.inode(),
            served: HashSet::from([spec.netns.inode()]),
            proc: spec.proc,
            port4,
            port6,
            timeline,
            responder,
            stop,
            tasks,
            on_interrupt: spec.settings.on_interrupt,
            gone_reported: false,
            journal,
        });
        if let Some(t) = lock(&self.targets).last_mut() {
            let pids = t.cgroup.pids();
            serve_new_namespaces(t, &pids);
        }
        Ok(name)
    }

    /// Detaches a target and stops its responder.
    pub fn remove_target(&self, name: &str) -> Result<(), SessionError> {
        let removed = {
            let mut targets = lock(&self.targets);
            let pos = targets
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| SessionError::UnknownTarget(name.to_string()))?;
            targets.remove(pos)
        };
        lock(&self.counters).remove(&removed.index);
        retire_journals(&mut lock(&self.journals), &lock(&self.targets));
        drop(removed);
        log::info!("{name}: detached");
        Ok(())
    }

    /// Starts every `--manual` timeline (or the named target's).
    pub fn trigger(&self, name: Option<&str>) -> Result<Vec<String>, String> {
        let targets = lock(&self.targets);
        let mut done = Vec::new();
        for t in targets.iter().filter(|t| name.is_none_or(|n| n == t.name)) {
            t.timeline
                .trigger()
                .map_err(|e| format!("{}: {e}", t.name))?;
            done.push(t.name.clone());
        }
        if done.is_empty() {
            return Err(match name {
                Some(n) => SessionError::UnknownTarget(n.to_string()).to_string(),
                None => "no targets".to_string(),
            });
        }
        Ok(done)
    }

    pub fn status(&self) -> Vec<TargetStatus> {
        lock(&self.targets)
            .iter()
            .map(|t| {
                let status = t.timeline.status();
                let mut listen = vec![format!("127.0.0.1:{}", t.port4)];
                // Native IPv6 reaches ::1 only with HttpProtocolIpv6 enabled.
                if t.port6 != 0 && t.responder.config.options.http_protocol_ipv6.is_enabled() {
                    listen.push(format!("[::1]:{}", t.port6));
                }
                TargetStatus {
                    name: t.name.clone(),
                    cgroup: t.cgroup.path().to_path_buf(),
                    cgroup_id: t.cgroup.id(),
                    netns: t.netns_inode,
                    listen,
                    redirects: t.link.as_ref().map_or(0, TargetLink::redirects),
                    cgroup_exists: t.cgroup.exists(),
                    timeline_text: status.render(),
                    timeline: serde_json::to_value(&status).unwrap_or_default(),
                    responder: serde_json::to_value(t.responder.stats()).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Periodic housekeeping: reports targets whose cgroup vanished, and carries out
    /// `--on-interrupt kill` once a timeline reaches its interruption.
    pub fn tick(&self) {
        let tick = self.ticks.fetch_add(1, Ordering::Relaxed);
        // Reading every pid of every target is what idle spot-sim spent its CPU on: with the
        // kernel's process records it is only a safety net.
        let full_scan = !self.event_driven || tick.is_multiple_of(SAFETY_SCAN_EVERY);
        let gone_check = tick.is_multiple_of(GONE_CHECK_EVERY);
        let mut targets = lock(&self.targets);
        let now = self.clock.now();
        for t in targets.iter_mut() {
            if full_scan {
                let pids = t.cgroup.pids();
                serve_new_namespaces(t, &pids);
                t.journal.cgroup_seen(pids.is_empty(), now);
            }
            if gone_check && !t.gone_reported && !t.cgroup.exists() {
                t.gone_reported = true;
                log::warn!(
                    "{}: cgroup {} is gone (pod deleted?); its redirect no longer applies to anything",
                    t.name,
                    untrusted_path(t.cgroup.path())
                );
            }
            if t.on_interrupt == OnInterrupt::Kill && t.timeline.phase() == Phase::Interrupted {
                let pids = t.cgroup.pids();
                if !pids.is_empty() {
                    log::info!(
                        "{}: interrupted; killing {} process(es) in {} (--on-interrupt kill)",
                        t.name,
                        pids.len(),
                        untrusted_path(t.cgroup.path())
                    );
                    if let Err(e) = t.cgroup.kill_all() {
                        log::warn!("{}: cannot kill the target's processes: {e}", t.name);
                    }
                }
            }
        }
    }

    /// Whether the named target's cgroup still exists (`None`: no such target).
    pub fn cgroup_alive(&self, name: &str) -> Option<bool> {
        lock(&self.targets)
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.cgroup.exists())
    }

    pub fn target_names(&self) -> Vec<String> {
        lock(&self.targets).iter().map(|t| t.name.clone()).collect()
    }

    /// Detaches every target, then stops every responder.
    pub fn shutdown(&self) {
        let mut targets = std::mem::take(&mut *lock(&self.targets));
        for t in targets.iter_mut() {
            drop(t.link.take());
        }
        drop(targets);
    }
}

/// A target name claimed while its target is being set up; dropping it releases the claim.
struct NameClaim<'a> {
    session: &'a Session,
    name: String,
}

impl<'a> NameClaim<'a> {
    fn take(session: &'a Session, name: &str) -> Result<Self, SessionError> {
        // Lock order: targets, then adding (the only place both are held).
        let targets = lock(&session.targets);
        let mut adding = lock(&session.adding);
        if targets.iter().any(|t| t.name == name) || !adding.insert(name.to_string()) {
            return Err(SessionError::Duplicate(name.to_string()));
        }
        Ok(Self {
            session,
            name: name.to_string(),
        })
    }
}

impl Drop for NameClaim<'_> {
    fn drop(&mut self) {
        lock(&self.session.adding).remove(&self.name);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Drops the oldest journals of removed targets past [`RETIRED_JOURNALS`].
fn retire_journals(journals: &mut Vec<(u32, Arc<Journal>)>, active: &[ActiveTarget]) {
    let retired = |i: &u32| !active.iter().any(|t| t.index == *i);
    let mut extra = journals
        .iter()
        .filter(|(i, _)| retired(i))
        .count()
        .saturating_sub(RETIRED_JOURNALS);
    journals.retain(|(i, _)| {
        if extra > 0 && retired(i) {
            extra -= 1;
            return false;
        }
        true
    });
}

/// Drains the kernel's records every [`crate::redirect::DRAIN_EVERY`], or at once when the
/// kernel signals a buffer is filling up, for as long as the session lives.
async fn drain_kernel(session: std::sync::Weak<Session>, wake: Vec<std::os::fd::OwnedFd>) {
    use tokio::io::unix::AsyncFd;
    let fds: Vec<_> = wake
        .into_iter()
        // SAFETY: each fd is our own duplicate, owned by the AsyncFd until it drops.
        .filter_map(|fd| unsafe {
            AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE).ok()
        })
        .collect();
    let mut tick = tokio::time::interval(crate::redirect::DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let woken = async {
            match fds.as_slice() {
                [] => std::future::pending().await,
                [a] => a.readable().await.map(|mut g| g.clear_ready()),
                [a, b, ..] => tokio::select! {
                    g = a.readable() => g.map(|mut g| g.clear_ready()),
                    g = b.readable() => g.map(|mut g| g.clear_ready()),
                },
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            r = woken => if r.is_err() {
                // Cannot poll: the timer alone drains from now on.
                tick.tick().await;
            },
        }
        let Some(s) = session.upgrade() else { return };
        s.drain();
    }
}

/// Converts the kernel's CLOCK_MONOTONIC nanoseconds into wall-clock milliseconds.
fn kernel_to_wall_ms(now: std::time::SystemTime) -> impl Fn(u64) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; bpf_ktime_get_ns reads the same clock.
    let mono = if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } == 0 {
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    } else {
        0
    };
    let wall = journal::ms(now);
    move |ns| wall.saturating_sub(mono.saturating_sub(ns) / 1_000_000)
}

/// A process's command line while it is still there (NULs as spaces, cut short): only when
/// the pid still names the program the kernel saw start, not a later process with its pid.
fn command_line(proc: &std::path::Path, pid: u32, comm: &str) -> String {
    let dir = proc.join(pid.to_string());
    let same = std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == comm);
    if !same {
        return String::new();
    }
    std::fs::read(dir.join("cmdline"))
        .map(|b| {
            let s: String = String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .chars()
                .take(200)
                .collect();
            s
        })
        .unwrap_or_default()
}

/// Starts serving one listener of a target's responder.
fn spawn_serve(
    responder: &Arc<Responder>,
    listener: TcpListener,
    stop: &watch::Receiver<bool>,
    name: &str,
) -> Result<JoinHandle<()>, SessionError> {
    let listener = to_tokio(listener, name)?;
    let responder = Arc::clone(responder);
    let rx = stop.clone();
    let name = name.to_string();
    Ok(tokio::spawn(async move {
        match responder.serve(listener, rx).await {
            Ok(end) => log::debug!("{name}: responder stopped: {end:?}"),
            Err(e) => log::warn!("{name}: responder failed: {e}"),
        }
    }))
}

/// The redirect sends a target's connects to its ports on loopback in whatever namespace the
/// connecting process is in. A cgroup can hold processes of several namespaces (a slice of
/// pods), and processes can join later in a namespace of their own (a pod that starts after
/// spot-sim): each such namespace gets a listener on the same ports, so no target process is
/// redirected to nothing for longer than a tick.
fn serve_new_namespaces(t: &mut ActiveTarget, pids: &[u32]) {
    // Every pid is looked at on every scan, not only newcomers: a container runtime can move
    // a process into the cgroup before it has entered the pod's network namespace.
    for &pid in pids {
        serve_namespace_of(t, pid);
    }
}

/// Opens the target's listeners in `pid`'s network namespace if it has none there yet. Called
/// for every program a target's process starts (the kernel's exec record: a container's
/// entrypoint runs once its namespaces are set up) and by the safety scan.
fn serve_namespace_of(t: &mut ActiveTarget, pid: u32) {
    let Ok(ns) = NetNs::of_pid(&t.proc, pid) else {
        return; // Gone already, or not ours to see.
    };
    if t.served.contains(&ns.inode()) {
        return;
    }
    t.served.insert(ns.inode());
    let bound = ns.run(|| {
        let l4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, t.port4)));
        let l6 = (t.port6 != 0)
            .then(|| TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, t.port6))).ok())
            .flatten();
        (l4, l6)
    });
    let (l4, l6) = match bound {
        Ok((Ok(l4), l6)) => (l4, l6),
        Ok((Err(e), _)) => {
            log::warn!(
                "{}: cannot listen on 127.0.0.1:{} in net:[{}] (pid {pid}): {e}; IMDS connects from there are refused",
                t.name,
                t.port4,
                ns.inode()
            );
            return;
        }
        Err(e) => {
            log::warn!("{}: {e}", t.name);
            return;
        }
    };
    let stop = t.stop.subscribe();
    for l in std::iter::once(l4).chain(l6) {
        match spawn_serve(&t.responder, l, &stop, &t.name) {
            Ok(task) => t.tasks.push(task),
            Err(e) => log::warn!("{}: {e}", t.name),
        }
    }
    log::info!(
        "{}: also serving inside net:[{}] (pid {pid} joined the target)",
        t.name,
        ns.inode()
    );
}

/// Binds the responder on 127.0.0.1 and ::1 inside `netns`. The IPv6 listener is best effort
/// (a namespace without IPv6 just gets no native-IPv6 redirect).
fn bind_loopback(
    netns: &NetNs,
    port: u16,
    target: &str,
) -> Result<(TcpListener, Option<TcpListener>), SessionError> {
    let (l4, l6) = netns.run(|| {
        let mut l4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        // The workload got there first: the redirect carries each target's own port, so this
        // target simply gets another one, instead of failing the whole run.
        if port != 0 && l4.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse) {
            l4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
            if let Some(other) = l4.as_ref().ok().and_then(|l| l.local_addr().ok()) {
                log::warn!(
                    "{target}: port {port} is already in use in its network namespace (by the workload?); serving it on port {} instead",
                    other.port()
                );
            }
        }
        let l6 = l4.as_ref().ok().and_then(|l| {
            // Same port on ::1 when it is free, so both families show one number.
            let p = l.local_addr().map(|a| a.port()).unwrap_or(port);
            TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, p)))
                .or_else(|_| TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))))
                .ok()
        });
        (l4, l6)
    })?;
    let l4 = l4.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            SessionError::PortInUse {
                port,
                target: target.to_string(),
            }
        } else {
            SessionError::Listen {
                target: target.to_string(),
                source,
            }
        }
    })?;
    Ok((l4, l6))
}

/// Pending connections a responder's listener queues before the kernel drops SYNs. std binds
/// with 128; a burst above that (a DaemonSet's pods starting together, a flood the connection
/// cap is about to close) would make the clients that are dropped wait a whole second for
/// their SYN to be sent again.
const LISTEN_BACKLOG: libc::c_int = 1024;

fn to_tokio(l: TcpListener, target: &str) -> Result<tokio::net::TcpListener, SessionError> {
    let err = |source| SessionError::Listen {
        target: target.to_string(),
        source,
    };
    // SAFETY: listen on our own bound, listening socket only changes its backlog.
    if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), LISTEN_BACKLOG) } != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    l.set_nonblocking(true).map_err(err)?;
    tokio::net::TcpListener::from_std(l).map_err(err)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
