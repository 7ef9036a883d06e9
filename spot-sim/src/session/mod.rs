//! A running spot-sim: the redirect, and for each target its cgroup link, its responder
//! (listening inside the target's network namespace) and its timeline.
//!
//! One thread owns all of it ([`owner`]), in the manner of ztunnel's state manager: the
//! [`Session`] handle sends it jobs over a channel (add, remove, trigger, status, report) and
//! waits for the answer, so there is no lock to hold across I/O and no check-then-insert. The
//! owner also does its own housekeeping: it drains the kernel's records when the kernel
//! signals or on a short timer, learns from inotify that a target's cgroup emptied or went
//! away, serves a new network namespace as soon as the kernel reports a program start in it,
//! and carries out `--on-interrupt kill`.
//!
//! Dropping a [`Session`] detaches every target before the responders stop, so no target is
//! ever redirected to nothing.

mod listen;
mod owner;
mod poller;
mod target;

use std::{
    path::PathBuf,
    sync::{mpsc, Arc},
    thread::JoinHandle,
    time::Instant,
};

use serde::Serialize;

use crate::{
    journal::{Journal, JournalSnapshot},
    redirect::{ms, RedirectError, STARTUP},
    report::{Expectations, Report},
    scenario::Clock,
    settings::Settings,
    stop::{Halt, Stopped},
    targets::{CgroupDir, NetNs, NetNsError},
};
use owner::Owner;
use poller::Doorbell;

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
    #[error("cannot start the session's owner thread: {0}")]
    Start(std::io::Error),
    #[error("spot-sim is shutting down: nothing more can be added or changed")]
    Stopped,
    #[error("the game day was stopped ({0}): nothing is attached again; start spot-sim anew for another one")]
    Halted(String),
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

/// Work for the owner: it runs on the owner's thread with the whole state in hand.
type Job = Box<dyn FnOnce(&mut Owner) + Send>;

/// The handle to a running session. Cheap to share (`Arc<Session>`); every call is one job
/// for the owner thread and waits for its answer (microseconds, or the milliseconds a new
/// target's listeners take to bind).
pub struct Session {
    jobs: mpsc::Sender<Job>,
    doorbell: Arc<Doorbell>,
    sees_processes: bool,
    owner: Option<JoinHandle<()>>,
}

impl Session {
    /// Loads the redirect and starts the owner thread. Needs a tokio runtime: the responders
    /// and the eBPF log forwarding run on it.
    pub fn start(clock: Arc<dyn Clock>) -> Result<Arc<Self>, SessionError> {
        let started = Instant::now();
        let doorbell = Arc::new(Doorbell::new().map_err(SessionError::Start)?);
        let owner = Owner::new(clock, Arc::clone(&doorbell))?;
        let sees_processes = owner.sees_processes();
        let (jobs, rx) = mpsc::channel::<Job>();
        let runtime = tokio::runtime::Handle::current();
        let thread = std::thread::Builder::new()
            .name("spot-sim-session".into())
            .spawn(move || {
                // Responders are spawned and their listeners registered from this thread.
                let _rt = runtime.enter();
                owner.run(rx);
            })
            .map_err(SessionError::Start)?;
        log::debug!(target: STARTUP, "session started in {}", ms(started));
        Ok(Arc::new(Self {
            jobs,
            doorbell,
            sees_processes,
            owner: Some(thread),
        }))
    }

    /// Runs `f` on the owner and returns its answer; `None` once the owner has stopped.
    fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Owner) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |o| {
            let _ = tx.send(f(o));
        });
        self.jobs.send(job).ok()?;
        self.doorbell.ring();
        rx.recv().ok()
    }

    /// Starts a target: opens its listeners inside its namespace, starts its responder, and
    /// only then attaches the redirect.
    pub fn add_target(&self, spec: TargetSpec) -> Result<String, SessionError> {
        let started = Instant::now();
        let added = self
            .ask(move |o| o.add(spec))
            .unwrap_or(Err(SessionError::Stopped));
        if let Ok(name) = &added {
            log::debug!(
                target: STARTUP,
                "{name}: added in {} (its listeners, responder and attach)",
                ms(started)
            );
        }
        added
    }

    /// Detaches a target and stops its responder.
    pub fn remove_target(&self, name: &str) -> Result<(), SessionError> {
        let name = name.to_string();
        self.ask(move |o| o.remove(&name))
            .unwrap_or(Err(SessionError::Stopped))
    }

    /// Starts every `--manual` timeline (or the named target's).
    pub fn trigger(&self, name: Option<&str>) -> Result<Vec<String>, String> {
        let name = name.map(str::to_string);
        self.ask(move |o| o.trigger(name.as_deref()))
            .unwrap_or_else(|| Err(SessionError::Stopped.to_string()))
    }

    pub fn status(&self) -> Vec<TargetStatus> {
        self.ask(|o| o.status()).unwrap_or_default()
    }

    /// Whether the named target's cgroup still exists (`None`: no such target).
    pub fn cgroup_alive(&self, name: &str) -> Option<bool> {
        let name = name.to_string();
        self.ask(move |o| o.cgroup_alive(&name)).flatten()
    }

    pub fn target_names(&self) -> Vec<String> {
        self.ask(|o| o.target_names()).unwrap_or_default()
    }

    /// `exec`'s command ended: its status goes into the named target's report.
    pub fn command_ended(&self, name: &str, status: i32) {
        let name = name.to_string();
        self.ask(move |o| o.command_ended(&name, status));
    }

    /// Whether the kernel shows the targets' program starts and exits (for `--expect-react`).
    pub fn sees_processes(&self) -> bool {
        self.sees_processes
    }

    pub fn set_expectations(&self, expect: Expectations) {
        self.ask(move |o| o.set_expectations(expect));
    }

    pub fn expectations(&self) -> Expectations {
        self.ask(|o| o.expectations()).unwrap_or_default()
    }

    /// The game-day report of every target, after a last drain of the kernel's records.
    pub fn report(&self, expect: &Expectations) -> Report {
        self.report_with(expect, Journal::snapshot)
    }

    /// The report a control client asks for while the rehearsal runs: bounded (report/bound.rs)
    /// whatever the targets did, and never built whole.
    pub fn live_report(&self, expect: &Expectations) -> Report {
        let mut r = self.report_with(expect, |j| {
            let mut s = j.snapshot();
            crate::report::bound::trim_snapshot(&mut s);
            s
        });
        crate::report::bound::fit(&mut r, crate::report::bound::MAX_LIVE_BYTES);
        r
    }

    /// The findings and verdicts alone (no request list): for metrics scrapes.
    pub fn verdicts(&self) -> Report {
        self.report_with(&self.expectations(), Journal::summary_snapshot)
    }

    fn report_with(
        &self,
        expect: &Expectations,
        snapshot: impl Fn(&Journal) -> JournalSnapshot,
    ) -> Report {
        // The owner drains and hands over the journals; the snapshots (which may hold a
        // hundred thousand requests) are taken here, off its thread.
        let (journals, now_ms) = self.ask(|o| o.journals_for_report()).unwrap_or_default();
        let snapshots: Vec<_> = journals.iter().map(|j| snapshot(j)).collect();
        let mut report = Report::build(&snapshots, expect, now_ms);
        report.stopped = self.stopped();
        report
    }

    /// Stops the game day (a stop condition held, `--max-duration` passed, an abort): every
    /// target is detached at once and none is attached again. The first stop is kept.
    pub fn halt(&self, halt: Halt) -> Option<Stopped> {
        self.ask(move |o| o.halt(halt))
    }

    /// The stop, once the game day was stopped.
    pub fn stopped(&self) -> Option<Stopped> {
        self.ask(|o| o.halted.clone()).flatten()
    }

    /// Detaches every target, then stops every responder.
    pub fn shutdown(&self) {
        self.ask(|o| o.shutdown());
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The owner detaches everything when its channel closes.
        self.ask(|o| o.stop());
        if let Some(t) = self.owner.take() {
            let _ = t.join();
        }
    }
}
