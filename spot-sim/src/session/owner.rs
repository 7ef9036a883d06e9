//! The one owner of a running session's state: the redirect, the kernel's record readers,
//! the targets with their links, responders and journals, and the cgroup watch. It runs on
//! its own thread; everything else reaches it through [`super::Session`].

use std::{
    collections::HashSet,
    os::fd::AsRawFd,
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use super::{
    poller::{Doorbell, Poller, SweepAsks, Wake},
    target::ActiveTarget,
    Job, SessionError, TargetSpec, TargetStatus,
};
use crate::{
    journal::{self, Journal, KernelClock},
    redirect::{ActivityReader, EventReader, KernelActivity, Redirector},
    report::Expectations,
    scenario::{Clock, OnInterrupt, Phase},
    stop::Stopped,
    targets::{process, CgroupChange, CgroupWatch},
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
    expect: Expectations,
    /// Journals waiting for an outbound sweep at their detection.
    sweeps: Arc<SweepAsks>,
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
        let sweeps = SweepAsks::new(Arc::clone(&doorbell));
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
            sweeps,
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
            self.sweep_for_detections();
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

    pub(super) fn expectations(&self) -> Expectations {
        self.expect.clone()
    }

    /// What live reports judge against; every journal watches for the reactions expected.
    pub(super) fn set_expectations(&mut self, expect: Expectations) {
        self.expect = expect;
        for (_, j) in &self.journals {
            j.watch_for(self.expect.react_matchers());
        }
    }

    /// A handler just read its first event: its journal's responder holds that answer until
    /// the kernel's outbound map is swept, so the handler's reaction connects all fall in
    /// windows that start after detection (journal/classify.rs).
    fn sweep_for_detections(&mut self) {
        let waiting = self.sweeps.take();
        if waiting.is_empty() {
            return;
        }
        self.drain(true);
        for w in waiting {
            let _ = w.send(());
        }
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
        let index = self.next_index;
        self.next_index += 1;
        let mut t = ActiveTarget::start(spec, index, &self.clock, &mut self.redirector)?;
        if let Some(w) = &mut self.watch {
            if let Err(e) = w.add(index, &t.cgroup) {
                log::warn!(
                    "{}: cannot watch its cgroup ({e}); it is checked on a timer instead",
                    t.name
                );
            }
        }
        t.journal.set_sweeper(self.sweeps.sweeper());
        t.journal.watch_for(self.expect.react_matchers());
        self.journals.push((index, Arc::clone(&t.journal)));
        // Processes already there may live in namespaces of their own (a slice of pods).
        t.scan_pids();
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
        self.targets.iter().map(ActiveTarget::status).collect()
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
        let clock = KernelClock::at(now);
        for ev in &redirects {
            if let Some(t) = self.targets.iter_mut().find(|t| t.index == ev.target_index) {
                t.log_redirect(ev);
            }
            if let Some(j) = self.journal_of(ev.target_index) {
                j.kernel_redirect(ev, &clock);
            }
        }
        for x in activity {
            let index = x.target_index();
            let target = self.targets.iter_mut().find(|t| t.index == index);
            let mut from_proc = Vec::new();
            if let (
                KernelActivity::Exec {
                    tgid, comm, args, ..
                },
                Some(t),
            ) = (&x, target)
            {
                // Only when the kernel could not copy the command line at the exec.
                if args.is_empty() {
                    from_proc = process::command_line(&t.proc, *tgid, comm);
                }
                // A program start is where a new network namespace shows (a container's
                // entrypoint runs once its namespaces are set up): serve it at once.
                t.serve_namespace_of(*tgid);
            }
            let exited = matches!(x, KernelActivity::Exit { .. });
            if let Some(j) = self.journal_of(index) {
                j.kernel_activity(x, &clock, from_proc);
            }
            // Whether the cgroup emptied is read when cgroup.events says it changed (or
            // here, without inotify).
            if exited && self.watch.is_none() {
                if let Some(t) = self.targets.iter().find(|t| t.index == index) {
                    t.journal
                        .cgroup_seen(t.cgroup.populated() != Some(true), now);
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
                t.scan_pids();
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
