//! The one owner of a running session's state: the redirect, the kernel's record readers,
//! the targets with their links, responders and journals, and the cgroup watch. It runs on
//! its own thread; everything else reaches it through [`super::Session`].

use std::{
    collections::HashSet,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::PathBuf,
    sync::{mpsc, Arc},
    time::{Duration, Instant, SystemTime},
};

use spot_sim_common::Target;
use tokio::{sync::watch, task::JoinHandle};

use super::{
    listen::{bind_loopback, bind_same_ports, spawn_serve},
    Doorbell, Job, SessionError, TargetSpec, TargetStatus,
};
use crate::{
    escape::untrusted_path,
    imds::Responder,
    journal::{self, Journal, OutboundRecord, ProcRecord, RedirectRecord},
    redirect::{
        ActivityReader, EventReader, KernelActivity, RedirectEvent, Redirector, TargetLink,
    },
    report::Expectations,
    scenario::{Clock, OnInterrupt, Phase, Timeline},
    stop::Stopped,
    targets::{CgroupChange, CgroupDir, CgroupWatch, NetNs},
};

mod halt;

/// How often the owner wakes without being asked. Everything urgent wakes it by itself: a
/// job, a program start or a redirect in a target (the kernel wakes it), a cgroup that
/// empties or goes (inotify), a `--on-interrupt kill` due (its own deadline). The tick
/// only sweeps the outbound-connect map and process exits (both carry the kernel's times),
/// advances the safety scan, and stands in for inotify where that is missing. An idle
/// spot-sim wakes this often and no more.
const TICK: Duration = Duration::from_secs(2);

/// How often (in ticks: 10 s) the outbound-connect map is swept. Its entries carry the
/// kernel's times and it holds 4,096 distinct destinations between sweeps; each sweep costs
/// syscalls even when the map is empty (the ring buffers, read every tick, cost none).
/// Everything is swept before a report.
const OUTBOUND_SWEEP_TICKS: u64 = 5;

/// With kernel process records, every pid of every target is re-read once in this many ticks
/// (60 s): a safety net for a process that changed its namespace without starting a
/// program. Without them, every tick.
const SAFETY_SCAN_TICKS: u64 = 30;

/// Journals of removed targets kept for the report.
const RETIRED_JOURNALS: usize = 32;

/// Per-target state of the redirect log (the redirect count itself is the kernel's).
#[derive(Debug, Default)]
struct LogThrottle {
    last_logged: Option<Instant>,
    suppressed: u64,
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
    /// Processes outside spot-sim's PID namespace joined: said once.
    hidden_reported: bool,
    /// The cgroup emptied: watch it for removal until it fills again.
    empty: bool,
    throttle: LogThrottle,
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

pub(super) struct Owner {
    redirector: Redirector,
    clock: Arc<dyn Clock>,
    targets: Vec<ActiveTarget>,
    next_index: u32,
    /// Every target's journal by index, removed targets' included (the newest
    /// [`RETIRED_JOURNALS`] of them), so the final report covers them.
    journals: Vec<(u32, Arc<Journal>)>,
    events: Option<EventReader>,
    activity: Option<ActivityReader>,
    /// What the user expects of every target (`--expect-*`), for live reports.
    pub(super) expect: Expectations,
    ticks: u64,
    /// The kernel reports program starts and exits in target cgroups: namespaces are then
    /// discovered from those records, and the full scan of every pid only backs them up.
    event_driven: bool,
    watch: Option<CgroupWatch>,
    poller: Poller,
    stopped: bool,
    /// The game day was stopped (a stop condition, `--max-duration`, an abort): nothing is
    /// attached again, as a stopped FIS experiment cannot be resumed.
    pub(super) halted: Option<Stopped>,
}

impl Owner {
    pub(super) fn new(
        clock: Arc<dyn Clock>,
        doorbell: Arc<Doorbell>,
    ) -> Result<Self, SessionError> {
        let mut redirector = Redirector::load()?;
        let events = redirector.take_events();
        let activity = redirector.take_activity();
        let event_driven = activity
            .as_ref()
            .is_some_and(ActivityReader::sees_processes);
        let watch = CgroupWatch::new()
            .inspect_err(|e| {
                log::warn!("cannot watch target cgroups ({e}); checking them every 2 s instead")
            })
            .ok();
        let mut poller = Poller::new(doorbell).map_err(SessionError::Start)?;
        // The ring buffers wake us edge-triggered, as their submitters ask (see
        // `EventReader::drain`): polling them level-triggered would wake us on every record.
        for fd in [
            events.as_ref().map(|e| e.wake_fd().as_raw_fd()),
            activity
                .as_ref()
                .and_then(ActivityReader::wake_fd)
                .map(|fd| fd.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            poller.add(fd, Wake::Kernel, true);
        }
        if let Some(w) = &watch {
            poller.add(w.fd().as_raw_fd(), Wake::Cgroups, false);
        }
        Ok(Self {
            redirector,
            clock,
            targets: Vec::new(),
            next_index: 1,
            journals: Vec::new(),
            events,
            activity,
            expect: Expectations::default(),
            ticks: 0,
            event_driven,
            watch,
            poller,
            stopped: false,
            halted: None,
        })
    }

    pub(super) fn sees_processes(&self) -> bool {
        self.event_driven
    }

    /// Takes jobs and wakes for the kernel, the cgroup watch and the tick until the session
    /// is dropped.
    pub(super) fn run(mut self, jobs: mpsc::Receiver<Job>) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            loop {
                match jobs.try_recv() {
                    Ok(job) => job(&mut self),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => self.stopped = true,
                }
                if self.stopped {
                    // Detach first, then stop answering.
                    self.shutdown();
                    return;
                }
            }
            // `--on-interrupt kill` is carried out at the interruption, not at the next tick.
            let next_kill = self.next_kill();
            let wake_at = next_kill.map_or(next_tick, |k| k.min(next_tick));
            let woke = self
                .poller
                .wait(wake_at.saturating_duration_since(Instant::now()));
            if woke.cgroups {
                self.on_cgroup_changes();
            }
            if woke.kernel {
                self.drain(false);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.drain(self.ticks.is_multiple_of(OUTBOUND_SWEEP_TICKS));
                self.housekeeping();
                // Skip missed ticks rather than running them back to back.
                next_tick = now + TICK;
            } else if next_kill.is_some_and(|k| now >= k) {
                self.kill_interrupted();
            }
        }
    }

    pub(super) fn stop(&mut self) {
        self.stopped = true;
    }

    /// Starts a target: opens its listeners inside its namespace, starts its responder, and
    /// only then attaches the redirect. The name is checked and taken in the same job, so two
    /// `target add`s (or one and `--follow`) cannot both get it.
    pub(super) fn add(&mut self, spec: TargetSpec) -> Result<String, SessionError> {
        if let Some(h) = &self.halted {
            return Err(SessionError::Halted(h.condition.clone()));
        }
        if self.targets.iter().any(|t| t.name == spec.name) {
            return Err(SessionError::Duplicate(spec.name));
        }
        let ipv6 = spec.settings.imds.options.http_protocol_ipv6.is_enabled();
        let (l4, mut l6) = bind_loopback(&spec.netns, spec.port, &spec.name)?;
        // With the IPv6 endpoint off (EC2's default) nothing is redirected to ::1: no listener
        // there, in this namespace or any other the target's processes live in.
        if !ipv6 {
            l6 = None;
        }
        let port4 = l4.local_addr().map(|a| a.port()).unwrap_or(0);
        let port6 = l6
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
            .unwrap_or(0);
        let index = self.next_index;
        self.next_index += 1;
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
        let link = self.redirector.attach(
            &spec.cgroup,
            Target {
                port4,
                // 0 leaves native IPv6 connects to fd00:ec2::254 alone: HttpProtocolIpv6 is
                // off by default on EC2. The IPv4-mapped form still goes to port4.
                port6,
                index,
                redirects: 0,
            },
        )?;
        if let Some(w) = &mut self.watch {
            if let Err(e) = w.add(index, &spec.cgroup) {
                log::warn!(
                    "{}: cannot watch its cgroup ({e}); it is checked on a timer instead",
                    spec.name
                );
            }
        }
        self.journals.push((index, Arc::clone(&journal)));
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
        let mut t = ActiveTarget {
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
            hidden_reported: false,
            empty: false,
            throttle: LogThrottle::default(),
            journal,
        };
        // Processes already there may live in namespaces of their own (a slice of pods).
        let pids = t.cgroup.pids();
        for &pid in &pids {
            t.serve_namespace_of(pid);
        }
        t.empty = pids.is_empty();
        let name = t.name.clone();
        self.targets.push(t);
        Ok(name)
    }

    /// Detaches a target and stops its responder.
    pub(super) fn remove(&mut self, name: &str) -> Result<(), SessionError> {
        let pos = self
            .targets
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| SessionError::UnknownTarget(name.to_string()))?;
        let removed = self.targets.remove(pos);
        if let Some(w) = &mut self.watch {
            w.remove(removed.index);
        }
        self.retire_journals();
        drop(removed);
        log::info!("{name}: detached");
        Ok(())
    }

    /// Starts every `--manual` timeline (or the named target's).
    pub(super) fn trigger(&mut self, name: Option<&str>) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        for t in self
            .targets
            .iter()
            .filter(|t| name.is_none_or(|n| n == t.name))
        {
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

    pub(super) fn status(&self) -> Vec<TargetStatus> {
        self.targets
            .iter()
            .map(|t| {
                let status = t.timeline.status();
                let mut listen = vec![format!("127.0.0.1:{}", t.port4)];
                // Native IPv6 reaches ::1 only with HttpProtocolIpv6 enabled.
                if t.port6 != 0 {
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

    pub(super) fn cgroup_alive(&self, name: &str) -> Option<bool> {
        self.find(name).map(|t| t.cgroup.exists())
    }

    pub(super) fn target_names(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.name.clone()).collect()
    }

    pub(super) fn command_ended(&self, name: &str, status: i32) {
        // By journal: a stopped game day has detached the target, not forgotten it.
        if let Some((_, j)) = self.journals.iter().rev().find(|(_, j)| j.name() == name) {
            j.command_ended(status);
        }
    }

    /// Every journal, current after a last drain, and the time the report is as of.
    pub(super) fn journals_for_report(&mut self) -> (Vec<Arc<Journal>>, u64) {
        self.drain(true);
        let now = self.clock.now();
        for t in &self.targets {
            t.journal
                .cgroup_seen(t.cgroup.populated() != Some(true), now);
        }
        let journals = self.journals.iter().map(|(_, j)| Arc::clone(j)).collect();
        (journals, journal::ms(now))
    }

    /// Detaches every target, then stops every responder.
    pub(super) fn shutdown(&mut self) {
        let mut targets = std::mem::take(&mut self.targets);
        for t in &mut targets {
            drop(t.link.take());
        }
        drop(targets);
    }

    fn find(&self, name: &str) -> Option<&ActiveTarget> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// Reads everything the kernel recorded so far into the logs and journals. Runs when the
    /// kernel signals, on the tick, and before anything is reported, so no event of a short
    /// command is missed.
    fn drain(&mut self, outbound: bool) {
        let now = self.clock.now();
        let mut redirects = Vec::new();
        if let Some(events) = &mut self.events {
            events.drain(|ev| redirects.push(ev));
        }
        let mut activity = Vec::new();
        if let Some(a) = &mut self.activity {
            a.drain(outbound, |x| activity.push(x));
        }
        let to_ms = kernel_to_wall_ms(now);
        for ev in &redirects {
            if let Some(t) = self.targets.iter_mut().find(|t| t.index == ev.target_index) {
                t.log_redirect(ev);
            }
            if let Some(j) = self.journal_of(ev.target_index) {
                j.redirect(RedirectRecord {
                    at_ms: to_ms(ev.ktime_ns),
                    pid: ev.tgid,
                    comm: ev.comm.clone(),
                    destination: ev.original.to_string(),
                });
            }
        }
        for x in activity {
            match x {
                KernelActivity::Exec {
                    target_index,
                    tgid,
                    ktime_ns,
                    comm,
                } => {
                    let t = self.targets.iter_mut().find(|t| t.index == target_index);
                    let detail = t
                        .as_ref()
                        .map(|t| command_line(&t.proc, tgid, &comm))
                        .unwrap_or_default();
                    // A program start is where a new network namespace shows (a container's
                    // entrypoint runs once its namespaces are set up): serve it at once.
                    if let Some(t) = t {
                        t.serve_namespace_of(tgid);
                    }
                    if let Some(j) = self.journal_of(target_index) {
                        j.exec(ProcRecord {
                            at_ms: to_ms(ktime_ns),
                            pid: tgid,
                            detail,
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
                    if let Some(j) = self.journal_of(target_index) {
                        j.exit(ProcRecord {
                            at_ms: to_ms(ktime_ns),
                            pid: tgid,
                            comm,
                            detail: String::new(),
                        });
                    }
                    // Whether the cgroup emptied is read when cgroup.events says it changed
                    // (or on the tick without inotify).
                    if self.watch.is_none() {
                        if let Some(t) = self.targets.iter_mut().find(|t| t.index == target_index) {
                            t.journal
                                .cgroup_seen(t.cgroup.populated() != Some(true), now);
                        }
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
    }

    fn journal_of(&self, index: u32) -> Option<&Arc<Journal>> {
        self.journals
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, j)| j)
    }

    /// What inotify reported: a cgroup filled or emptied, or one was removed.
    fn on_cgroup_changes(&mut self) {
        // The journal counts a cgroup as emptied by its last process's exit record: have
        // the kernel's records in first.
        self.drain(false);
        let mut changed = Vec::new();
        if let Some(w) = &mut self.watch {
            w.read(|c| changed.push(c));
        }
        let now = self.clock.now();
        for c in changed {
            let key = match c {
                CgroupChange::Events(k) | CgroupChange::MaybeRemoved(k) => Some(k),
                CgroupChange::Overflow => None,
            };
            for t in &mut self.targets {
                if key.is_some_and(|k| k != t.index) {
                    continue;
                }
                // Emptied or filled again.
                let populated = t.cgroup.populated();
                t.empty = populated != Some(true);
                t.journal.cgroup_seen(t.empty, now);
                t.check_gone();
            }
        }
    }

    /// The tick: the once-a-minute safety scan, the fallback checks, `--on-interrupt kill`
    /// for processes that joined after the interruption.
    fn housekeeping(&mut self) {
        let tick = self.ticks;
        self.ticks += 1;
        let now = self.clock.now();
        // Reading every pid of every target was what an idle spot-sim spent its CPU on: with
        // the kernel's process records it is only a safety net. All targets at once: spread
        // over the ticks it cost several times more (each wake-up pays for cold caches; the
        // scan of 200 targets in one go takes a few milliseconds).
        let full_scan = !self.event_driven || tick.is_multiple_of(SAFETY_SCAN_TICKS);
        let watched = self.watch.is_some();
        for t in &mut self.targets {
            if full_scan {
                let pids = t.cgroup.pids();
                for &pid in &pids {
                    t.serve_namespace_of(pid);
                }
                t.empty = pids.is_empty();
                t.journal.cgroup_seen(t.empty, now);
                t.check_gone();
            }
            // Without inotify every cgroup is looked at; with it, only the empty ones (a
            // removal is only possible once a cgroup is empty).
            if !watched || t.empty {
                t.check_gone();
            }
        }
        self.kill_interrupted();
    }

    /// `--on-interrupt kill`: every interrupted target's processes, again on each tick for
    /// any that join later.
    fn kill_interrupted(&self) {
        for t in &self.targets {
            if t.on_interrupt == OnInterrupt::Kill && t.timeline.phase() == Phase::Interrupted {
                t.kill_at_interruption();
            }
        }
    }

    /// The soonest interruption still to come of a target with `--on-interrupt kill`.
    fn next_kill(&self) -> Option<Instant> {
        let now = self.clock.now();
        self.targets
            .iter()
            .filter(|t| t.on_interrupt == OnInterrupt::Kill)
            .filter_map(|t| t.timeline.schedule())
            .map(|s| s.interrupted_at)
            .filter(|at| *at > now)
            .min()
            .map(|at| Instant::now() + at.duration_since(now).unwrap_or_default())
    }

    /// Drops the oldest journals of removed targets past [`RETIRED_JOURNALS`].
    fn retire_journals(&mut self) {
        let active: HashSet<u32> = self.targets.iter().map(|t| t.index).collect();
        let retired = |i: &u32| !active.contains(i);
        let mut extra = self
            .journals
            .iter()
            .filter(|(i, _)| retired(i))
            .count()
            .saturating_sub(RETIRED_JOURNALS);
        self.journals.retain(|(i, _)| {
            if extra > 0 && retired(i) {
                extra -= 1;
                return false;
            }
            true
        });
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl ActiveTarget {
    /// At most one log line a second per target: a handler polling in a tight loop must not
    /// flood the log.
    fn log_redirect(&mut self, ev: &RedirectEvent) {
        let now = Instant::now();
        let th = &mut self.throttle;
        if th
            .last_logged
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            th.suppressed += 1;
            return;
        }
        th.last_logged = Some(now);
        let more = std::mem::take(&mut th.suppressed);
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
            "{}: pid {} ({}) → IMDS {} redirected ({family}){more}",
            self.name,
            ev.tgid,
            ev.comm,
            ev.original
        );
    }

    /// A pid the kernel reported that our /proc does not show as the target's: said once when
    /// the target holds processes spot-sim cannot see.
    fn check_hidden(&mut self) {
        if !self.hidden_reported && self.cgroup.pids().contains(&0) {
            self.hidden_pids();
        }
    }

    /// Processes spot-sim cannot see joined (pid 0 in cgroup.procs): said once, and their
    /// namespace is never guessed.
    fn hidden_pids(&mut self) {
        if !std::mem::replace(&mut self.hidden_reported, true) {
            let why = crate::targets::HiddenPids {
                cgroup: self.cgroup.path().to_path_buf(),
            };
            log::warn!("{}: not served: {why}", self.name);
        }
    }

    /// Says once that the cgroup is gone (a pod deleted): `status` shows it too.
    fn check_gone(&mut self) {
        if self.gone_reported || self.cgroup.exists() {
            return;
        }
        self.gone_reported = true;
        log::warn!(
            "{}: cgroup {} is gone (pod deleted?); its redirect no longer applies to anything",
            self.name,
            untrusted_path(self.cgroup.path())
        );
    }

    fn kill_at_interruption(&self) {
        let pids = self.cgroup.pids();
        if pids.is_empty() {
            return;
        }
        log::info!(
            "{}: interrupted; killing {} process(es) in {} (--on-interrupt kill)",
            self.name,
            pids.len(),
            untrusted_path(self.cgroup.path())
        );
        if let Err(e) = self.cgroup.kill_all() {
            log::warn!("{}: cannot kill the target's processes: {e}", self.name);
        }
    }

    /// The redirect sends a target's connects to its ports on loopback in whatever namespace
    /// the connecting process is in. A cgroup can hold processes of several namespaces (a
    /// slice of pods), and processes can join later in a namespace of their own (a pod that
    /// starts after spot-sim): each such namespace gets a listener on the same ports, as soon
    /// as the kernel reports a program start there (or the safety scan finds it).
    fn serve_namespace_of(&mut self, pid: u32) {
        if pid == 0 {
            return self.hidden_pids();
        }
        // Most pids live in a namespace already served: a stat tells, without an open.
        match NetNs::inode_of_pid(&self.proc, pid) {
            Some(i) if self.served.contains(&i) => return,
            Some(_) => {}
            // Gone already, or outside our PID namespace: only the cgroup can tell which.
            None => return self.check_hidden(),
        }
        // The kernel reports program starts with the node's pids: one names this target's
        // process in our /proc only when spot-sim shares the node's PID namespace.
        if !self.cgroup.pids().contains(&pid) {
            return self.check_hidden();
        }
        let Ok(ns) = NetNs::of_pid(&self.proc, pid) else {
            return; // Gone already, or not ours to see.
        };
        if !self.served.insert(ns.inode()) {
            return;
        }
        let (l4, l6) = match bind_same_ports(&ns, self.port4, self.port6) {
            Ok((Ok(l4), l6)) => (l4, l6),
            Ok((Err(e), _)) => {
                log::warn!(
                    "{}: cannot listen on 127.0.0.1:{} in net:[{}] (pid {pid}): {e}; IMDS connects from there are refused",
                    self.name,
                    self.port4,
                    ns.inode()
                );
                return;
            }
            Err(e) => {
                log::warn!("{}: {e}", self.name);
                return;
            }
        };
        let stop = self.stop.subscribe();
        for l in std::iter::once(l4).chain(l6) {
            match spawn_serve(&self.responder, l, &stop, &self.name) {
                Ok(task) => self.tasks.push(task),
                Err(e) => log::warn!("{}: {e}", self.name),
            }
        }
        log::info!(
            "{}: also serving inside net:[{}] (pid {pid} joined the target)",
            self.name,
            ns.inode()
        );
    }
}

/// Converts the kernel's CLOCK_MONOTONIC nanoseconds into wall-clock milliseconds.
fn kernel_to_wall_ms(now: SystemTime) -> impl Fn(u64) -> u64 {
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
    // `comm` was escaped where it entered (redirect/activity.rs): compare it escaped.
    let same = std::fs::read(dir.join("comm"))
        .is_ok_and(|c| crate::escape::untrusted_bytes(c.strip_suffix(b"\n").unwrap_or(&c)) == comm);
    if !same {
        return String::new();
    }
    std::fs::read(dir.join("cmdline"))
        .map(|b| {
            let b: Vec<u8> = b.iter().map(|&c| if c == 0 { b' ' } else { c }).collect();
            let cut = &b[..b.len().min(200)];
            crate::escape::untrusted_bytes(cut.trim_ascii())
        })
        .unwrap_or_default()
}

/// What woke the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    Jobs,
    Kernel,
    Cgroups,
}

#[derive(Default)]
struct Woke {
    kernel: bool,
    cgroups: bool,
}

/// The owner's one place to sleep: an epoll set of the job doorbell, the kernel's ring
/// buffers and the cgroup watch.
struct Poller {
    epoll: OwnedFd,
    doorbell: Arc<Doorbell>,
    kinds: Vec<(RawFd, Wake)>,
}

impl Poller {
    fn new(doorbell: Arc<Doorbell>) -> std::io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut p = Self {
            // SAFETY: a fresh descriptor nothing else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            doorbell,
            kinds: Vec::new(),
        };
        p.add(p.doorbell.raw(), Wake::Jobs, false);
        Ok(p)
    }

    /// Adds `fd` (which must outlive the poller's use of it: the owner keeps every reader for
    /// its whole life).
    fn add(&mut self, fd: RawFd, kind: Wake, edge: bool) {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | if edge { libc::EPOLLET } else { 0 }) as u32,
            u64: self.kinds.len() as u64,
        };
        // SAFETY: our own epoll fd, a live fd and one event description.
        let r =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r != 0 {
            log::warn!(
                "cannot poll {kind:?} ({}); the tick covers it",
                std::io::Error::last_os_error()
            );
            return;
        }
        self.kinds.push((fd, kind));
    }

    /// Sleeps until something is ready or `timeout` passes.
    fn wait(&self, timeout: Duration) -> Woke {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // Round up: a 0 ms wait for a tick 0.4 ms away would spin.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: our own epoll fd and a buffer of 8 events.
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), evs.as_mut_ptr(), 8, ms) };
        let mut woke = Woke::default();
        for ev in evs.iter().take(n.max(0) as usize) {
            match self.kinds.get(ev.u64 as usize).map(|(_, k)| *k) {
                Some(Wake::Jobs) => self.doorbell.clear(),
                Some(Wake::Kernel) => woke.kernel = true,
                Some(Wake::Cgroups) => woke.cgroups = true,
                None => {}
            }
        }
        woke
    }
}
