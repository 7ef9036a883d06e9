//! The interruption timeline: when t0 happens, which events are issued when, and the phase the
//! fake instance is in at any instant.
//!
//! Modelled on FIS `aws:ec2:send-spot-instance-interruptions` with duration D: at t0 the
//! rebalance recommendation, at t0 + D − 2 min the interruption notice carrying `time` = t0 + D,
//! at t0 + D the instance is gone. A rebalance lead L pushes the notice and the interruption L
//! later, so the recommendation comes L ahead of the FIS sequence. Every instant derives from
//! t0, which is fixed once (at creation or at trigger), so a timestamp never changes after it is
//! issued.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::maintenance::{MaintenancePlan, MaintenanceState, MaintenanceView};
use super::{Clock, ScenarioError};

/// How far ahead AWS sends the interruption notice.
pub const NOTICE_LEAD: Duration = Duration::from_secs(120);

/// What happens to the target's processes at the interruption.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnInterrupt {
    /// Leave them running; only the IMDS goes away.
    #[default]
    None,
    /// Kill every process of the target cgroup (cgroup.kill), as the instance vanishing would.
    Kill,
}

/// What AWS does to the instance, as the notice's `action` field says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Terminate,
    Stop,
    Hibernate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Terminate => "terminate",
            Action::Stop => "stop",
            Action::Hibernate => "hibernate",
        }
    }
}

/// When t0 happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// This long after the timeline is created (zero: at once).
    In(Duration),
    /// When [`Timeline::trigger`] is called (`spot-sim trigger`).
    Manual,
    /// At this wall-clock instant (`--start-at`), so several nodes can go at once.
    At(SystemTime),
}

/// A resolved scenario: what the timeline does, before it knows its t0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub start: Start,
    /// D: from t0 (plus the rebalance lead) to the interruption.
    pub interruption_in: Duration,
    /// How much earlier than the FIS sequence the rebalance recommendation comes.
    pub rebalance_lead: Duration,
    pub action: Action,
    /// Whether a rebalance recommendation is issued at all.
    pub rebalance: bool,
    /// From t0 to the moment the Auto Scaling group marks the instance `Terminated`.
    pub asg_terminate_in: Option<Duration>,
    /// Scheduled maintenance events, each issued at its own moment after t0.
    pub maintenance: Vec<MaintenancePlan>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            start: Start::In(Duration::ZERO),
            interruption_in: NOTICE_LEAD,
            rebalance_lead: Duration::ZERO,
            action: Action::Terminate,
            rebalance: true,
            asg_terminate_in: None,
            maintenance: Vec::new(),
        }
    }
}

/// The instants of one run, all derived from t0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub t0: SystemTime,
    /// When the rebalance recommendation appears (its `noticeTime`), if there is one.
    pub rebalance_at: Option<SystemTime>,
    /// When the interruption notice appears.
    pub notice_at: SystemTime,
    /// The `time` field of the notice.
    pub action_time: SystemTime,
    /// When the instance is gone.
    pub interrupted_at: SystemTime,
    /// When `autoscaling/target-lifecycle-state` turns `Terminated`, if it does.
    pub asg_terminated_at: Option<SystemTime>,
}

impl Scenario {
    /// The instants for a run starting at `t0`.
    pub fn schedule(&self, t0: SystemTime) -> Schedule {
        let sequence_start = t0 + self.rebalance_lead;
        let (notice_at, action_time, interrupted_at) = match self.action {
            // On AWS hibernation starts at once: the notice's time is "now", with no two-minute
            // warning. The instance still answers while the guest suspends to disk; D (at most
            // two minutes) is how long that takes here, so a handler can see the notice.
            Action::Hibernate => (
                sequence_start,
                sequence_start,
                sequence_start + self.interruption_in.min(NOTICE_LEAD),
            ),
            Action::Terminate | Action::Stop => {
                let action_time = sequence_start + self.interruption_in;
                // A D shorter than two minutes (handy in tests) clamps the notice to the start.
                let notice_at = action_time
                    .checked_sub(NOTICE_LEAD)
                    .map_or(sequence_start, |t| t.max(sequence_start));
                (notice_at, action_time, action_time)
            }
        };
        Schedule {
            t0,
            rebalance_at: self.rebalance.then_some(t0),
            notice_at,
            action_time,
            interrupted_at,
            asg_terminated_at: self.asg_terminate_in.map(|d| t0 + d),
        }
    }
}

/// What the fake instance shows, in the order it goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Nothing issued yet.
    Waiting,
    /// The rebalance recommendation is out; no interruption notice yet.
    Rebalance,
    /// The interruption notice is out.
    Notice,
    /// The instance is gone: the responder stops answering.
    Interrupted,
}

/// An event of the timeline, as `status` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    RebalanceRecommendation,
    InterruptionNotice,
    Interruption,
    /// The Auto Scaling group's target lifecycle state turned `Terminated`.
    AsgTerminated,
    /// A scheduled maintenance event appeared.
    MaintenanceScheduled,
    MaintenanceCanceled,
    MaintenanceCompleted,
}

impl EventKind {
    fn describe(self) -> &'static str {
        match self {
            EventKind::RebalanceRecommendation => "rebalance recommendation",
            EventKind::InterruptionNotice => "interruption notice",
            EventKind::Interruption => "interruption",
            EventKind::AsgTerminated => "ASG target lifecycle state Terminated",
            EventKind::MaintenanceScheduled => "maintenance event scheduled",
            EventKind::MaintenanceCanceled => "maintenance event canceled",
            EventKind::MaintenanceCompleted => "maintenance event completed",
        }
    }
}

/// An event that was issued, with its fixed timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssuedEvent {
    pub event: EventKind,
    pub at: String,
    /// For the notice: its `action` and `time` fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// The next event and how long until it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NextEvent {
    pub event: EventKind,
    pub at: String,
    pub in_seconds: u64,
}

/// What `spot-sim status` shows about a timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineStatus {
    pub phase: Phase,
    pub action: Action,
    pub now: String,
    /// t0, once known.
    pub started_at: Option<String>,
    /// True while a `--manual` timeline waits for `spot-sim trigger`.
    pub waiting_for_trigger: bool,
    pub issued: Vec<IssuedEvent>,
    pub next: Option<NextEvent>,
}

impl TimelineStatus {
    /// Human-readable text for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "phase:   {}", phase_name(self.phase));
        let _ = writeln!(out, "action:  {}", self.action.as_str());
        if let Some(t0) = &self.started_at {
            let _ = writeln!(out, "started: {t0}");
        }
        if self.issued.is_empty() {
            let _ = writeln!(out, "issued:  nothing yet");
        }
        for (i, e) in self.issued.iter().enumerate() {
            let label = if i == 0 { "issued: " } else { "        " };
            let _ = write!(out, "{label} {}  {}", e.at, e.event.describe());
            if let (Some(action), Some(time)) = (e.action, &e.time) {
                let _ = write!(out, " ({} at {time})", action.as_str());
            }
            out.push('\n');
        }
        match (&self.next, self.waiting_for_trigger) {
            (_, true) => out.push_str("next:    waiting for `spot-sim trigger`\n"),
            (Some(n), false) => {
                let left = humantime::format_duration(Duration::from_secs(n.in_seconds));
                let _ = writeln!(
                    out,
                    "next:    {} at {}, in {left}",
                    n.event.describe(),
                    n.at
                );
            }
            (None, false) => out.push_str("next:    nothing, the instance is gone\n"),
        }
        out
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Waiting => "waiting (nothing issued yet)",
        Phase::Rebalance => "rebalance (recommendation issued)",
        Phase::Notice => "notice (interruption notice issued)",
        Phase::Interrupted => "interrupted (the instance is gone)",
    }
}

/// One run of a scenario, shared by the responders and the control socket.
#[derive(Debug)]
pub struct Timeline {
    scenario: Scenario,
    clock: Arc<dyn Clock>,
    /// t0, once known. A watch so servers wake up when a manual timeline is triggered.
    t0: watch::Sender<Option<SystemTime>>,
}

impl Timeline {
    /// t0 is now + `start_in` (whole seconds), or unknown until [`Timeline::trigger`] for a
    /// manual scenario.
    pub fn new(scenario: Scenario, clock: Arc<dyn Clock>) -> Arc<Timeline> {
        let t0 = match scenario.start {
            Start::In(delay) => Some(whole_seconds(clock.now() + delay)),
            Start::At(at) => Some(whole_seconds(at)),
            Start::Manual => None,
        };
        Arc::new(Timeline {
            scenario,
            clock,
            t0: watch::Sender::new(t0),
        })
    }

    /// Starts the timeline now: a manual one, or one whose `--start-in` has not come yet.
    pub fn trigger(&self) -> Result<(), ScenarioError> {
        let now = self.clock.now();
        let mut already = None;
        self.t0.send_if_modified(|t0| match *t0 {
            Some(at) if at <= now => {
                already = Some(at);
                false
            }
            _ => {
                *t0 = Some(whole_seconds(now));
                true
            }
        });
        match already {
            Some(at) => Err(ScenarioError::AlreadyStarted { at: rfc3339(at) }),
            None => Ok(()),
        }
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The instants of this run, once t0 is known.
    pub fn schedule(&self) -> Option<Schedule> {
        let t0 = (*self.t0.borrow())?;
        Some(self.scenario.schedule(t0))
    }

    /// Changes whenever t0 is set, so a server can wake up on a trigger.
    pub fn subscribe(&self) -> watch::Receiver<Option<SystemTime>> {
        self.t0.subscribe()
    }

    pub fn phase(&self) -> Phase {
        self.phase_at(self.clock.now())
    }

    /// The phase at `now`.
    pub fn phase_at(&self, now: SystemTime) -> Phase {
        let Some(s) = self.schedule() else {
            return Phase::Waiting;
        };
        if now >= s.interrupted_at {
            Phase::Interrupted
        } else if now >= s.notice_at {
            Phase::Notice
        } else if s.rebalance_at.is_some_and(|r| now >= r) {
            Phase::Rebalance
        } else {
            Phase::Waiting
        }
    }

    /// When the phase changes next; `None` while waiting for a trigger or once interrupted.
    pub fn next_change(&self) -> Option<SystemTime> {
        let now = self.clock.now();
        self.events()
            .into_iter()
            .map(|(_, at)| at)
            .find(|at| *at > now)
    }

    /// The events of this run in order, with the instant each is issued.
    pub fn events(&self) -> Vec<(EventKind, SystemTime)> {
        let Some(s) = self.schedule() else {
            return Vec::new();
        };
        let mut events = Vec::with_capacity(3);
        if let Some(r) = s.rebalance_at {
            events.push((EventKind::RebalanceRecommendation, r));
        }
        events.push((EventKind::InterruptionNotice, s.notice_at));
        events.push((EventKind::Interruption, s.interrupted_at));
        // Nothing happens to a vanished instance: later ASG or maintenance changes are moot.
        let before_end = |at: &SystemTime| *at < s.interrupted_at;
        if let Some(at) = s.asg_terminated_at.filter(before_end) {
            events.push((EventKind::AsgTerminated, at));
        }
        for m in &self.scenario.maintenance {
            let issued = m.issued_at(s.t0);
            if before_end(&issued) {
                events.push((EventKind::MaintenanceScheduled, issued));
            }
            if let Some((at, state)) = m.ends_at(s.t0).filter(|(at, _)| before_end(at)) {
                let kind = match state {
                    MaintenanceState::Completed => EventKind::MaintenanceCompleted,
                    _ => EventKind::MaintenanceCanceled,
                };
                events.push((kind, at));
            }
        }
        // Stable: events at the same instant keep the order above.
        events.sort_by_key(|(_, at)| *at);
        events
    }

    /// The maintenance events IMDS lists at `now`: (`scheduled`, `history`).
    ///
    /// An event stays in `scheduled` with its new `State` once canceled or completed, and is
    /// also in `history`: the EC2 User Guide documents `history` as holding "completed or
    /// canceled" events, and handlers such as aws-node-termination-handler uncordon when
    /// they see `"State": "canceled"` in `scheduled`.
    pub fn maintenance_at(&self, now: SystemTime) -> (Vec<MaintenanceView>, Vec<MaintenanceView>) {
        let Some(s) = self.schedule() else {
            return (Vec::new(), Vec::new());
        };
        let mut scheduled = Vec::new();
        let mut history = Vec::new();
        for m in &self.scenario.maintenance {
            if let Some(v) = m.view_at(s.t0, now) {
                if v.state != MaintenanceState::Active {
                    history.push(v.clone());
                }
                scheduled.push(v);
            }
        }
        (scheduled, history)
    }

    /// Whether the Auto Scaling group shows the instance `Terminated` at `now`.
    pub fn asg_terminated_at(&self, now: SystemTime) -> bool {
        self.schedule()
            .and_then(|s| s.asg_terminated_at)
            .is_some_and(|at| now >= at)
    }

    pub fn status(&self) -> TimelineStatus {
        let now = self.clock.now();
        let schedule = self.schedule();
        let mut issued = Vec::new();
        let mut next = None;
        for (event, at) in self.events() {
            if at <= now {
                let notice = event == EventKind::InterruptionNotice;
                issued.push(IssuedEvent {
                    event,
                    at: rfc3339(at),
                    action: notice.then_some(self.scenario.action),
                    time: schedule.filter(|_| notice).map(|s| rfc3339(s.action_time)),
                });
            } else if next.is_none() {
                next = Some(NextEvent {
                    event,
                    at: rfc3339(at),
                    in_seconds: at
                        .duration_since(now)
                        .map_or(0, |d| d.as_secs_f64().ceil() as u64),
                });
            }
        }
        TimelineStatus {
            phase: self.phase_at(now),
            action: self.scenario.action,
            now: rfc3339(now),
            started_at: schedule.map(|s| rfc3339(s.t0)),
            waiting_for_trigger: schedule.is_none(),
            issued,
            next,
        }
    }
}

/// Drops sub-second precision: IMDS timestamps are whole seconds.
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

/// `2026-11-25T22:20:00Z`: RFC 3339, UTC, whole seconds, as IMDS writes it.
pub fn rfc3339(t: SystemTime) -> String {
    // Total: an instant past `time`'s range shows at its end instead of panicking.
    let dt = super::dates::to_datetime(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}
