//! Game days that stop themselves: the conditions that end a rehearsal early (`--stop-if`, a
//! game day's kill switch), the `--max-duration` deadline, and the watch that checks them on an
//! interval. When one fires, the watch hands a [`Halt`] to whoever started it (the CLI passes it
//! to the session, whose owner detaches every target at once); nothing here names the session.
//!
//! The anchors: AWS FIS stop conditions ("If a stop condition is triggered during an
//! experiment, AWS FIS stops the experiment. You cannot resume a stopped experiment.", FIS User
//! Guide, "Stop conditions for AWS FIS") and Gremlin's Health Checks, which look "before,
//! during, and after" a test and "automatically halt ongoing tests" when systems become
//! "unstable, unresponsive, or unhealthy" (gremlin.com/docs). So a stop is final: nothing is
//! attached again until spot-sim is started anew. Each condition is also checked once before
//! anything is attached ([`StopPlan::first_check`]).

mod args;
mod condition;
mod http;

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, task::JoinSet};

pub use args::StopArgs;
pub use condition::{Check, StopCondition};

/// How long one check may take. A health URL or a command slower than this counts as failing
/// (as a Kubernetes probe's timeout does); a Prometheus slower than this, as not answering.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// A condition that cannot be checked is logged again after this long while it stays so.
const UNKNOWN_NOTE_EVERY: Duration = Duration::from_secs(60);

/// What stopped a game day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// A `--stop-if` condition held.
    StopIf,
    /// `--max-duration` passed.
    MaxDuration,
    /// The game day's kill switch was flipped (`abort = true` in the experiment file).
    Abort,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::StopIf => "stop-if",
            StopReason::MaxDuration => "max-duration",
            StopReason::Abort => "abort",
        }
    }
}

/// A stop as the watch saw it fire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Halt {
    pub reason: StopReason,
    /// The condition and what was seen, in words (target-supplied text escaped).
    pub condition: String,
}

/// A stop as reports show it: what fired, and when (fixed once, by the session's clock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    pub reason: StopReason,
    pub condition: String,
    /// RFC 3339 with milliseconds, like every time in the report.
    pub at: String,
}

impl Stopped {
    pub fn new(halt: Halt, at: String) -> Stopped {
        Stopped {
            reason: halt.reason,
            condition: halt.condition,
            at,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("{condition}: {problem}")]
    Invalid { condition: String, problem: String },
    #[error("the game day would stop at once: {0}. Nothing was attached; fix what the condition watches (or drop it), then start again")]
    AlreadyHolds(String),
}

/// Every way a run can stop early, and how often to look.
pub struct StopPlan {
    conditions: Vec<(StopReason, StopCondition)>,
    policy: Policy,
    /// `--max-duration`: the instant, and the duration as given.
    deadline: Option<(SystemTime, Duration)>,
}

/// How checks are made and read.
#[derive(Clone, Copy, Debug)]
struct Policy {
    every: Duration,
    /// A condition that cannot be checked counts as holding (`--stop-if-unreachable`).
    unreachable_stops: bool,
}

impl StopPlan {
    /// The plan `args` give; `--max-duration` counts from `started`.
    pub fn new(args: &StopArgs, started: SystemTime) -> StopPlan {
        StopPlan {
            conditions: args
                .stop_if
                .iter()
                .map(|c| (StopReason::StopIf, c.clone()))
                .collect(),
            policy: Policy {
                every: args.stop_check_every,
                unreachable_stops: args.stop_if_unreachable,
            },
            deadline: args.max_duration.map(|d| (started + d, d)),
        }
    }

    /// Adds a kill switch: `condition` holding aborts the game day.
    pub fn kill_switch(mut self, condition: StopCondition) -> StopPlan {
        self.conditions.push((StopReason::Abort, condition));
        self
    }

    /// The first look, before anything is attached: every condition at once. An error for a
    /// condition that cannot work as written (a command the shell cannot run, a query
    /// Prometheus refuses, a server that does not answer like Prometheus); `Some` when one
    /// already holds or the deadline is past.
    pub async fn first_check(&self) -> Result<Option<Halt>, StopError> {
        let mut checks = JoinSet::new();
        for (i, (_, c)) in self.conditions.iter().enumerate() {
            let c = c.clone();
            checks.spawn(async move { (i, c.check(CHECK_TIMEOUT).await) });
        }
        let mut results: Vec<(usize, Check)> = Vec::new();
        while let Some(done) = checks.join_next().await {
            if let Ok(r) = done {
                results.push(r);
            }
        }
        results.sort_by_key(|(i, _)| *i);
        let mut halt = None;
        for (i, check) in results {
            let (reason, c) = &self.conditions[i];
            if let Check::Invalid(problem) = check {
                return Err(StopError::Invalid {
                    condition: c.flag(),
                    problem,
                });
            }
            if halt.is_none() {
                halt = self.policy.verdict(*reason, c, check);
            }
        }
        if halt.is_none() {
            halt = self.deadline_passed();
        }
        Ok(halt)
    }

    /// For `exec` and `run`: refuses to start a game day that would stop at once.
    pub async fn check_before_start(&self) -> Result<(), StopError> {
        match self.first_check().await? {
            Some(h) => Err(StopError::AlreadyHolds(h.condition)),
            None => Ok(()),
        }
    }

    fn deadline_passed(&self) -> Option<Halt> {
        let (at, d) = self.deadline?;
        (SystemTime::now() >= at).then(|| max_duration_halt(d))
    }

    /// Checks every condition every interval, each on its own (a slow Prometheus does not
    /// delay the kill switch), and waits out the deadline. The first to fire is handed to
    /// `on_halt`, once, and the watch ends. Dropping the [`StopWatch`] ends it too.
    pub fn watch(self, on_halt: impl FnOnce(Halt) + Send + 'static) -> StopWatch {
        let StopPlan {
            conditions,
            policy,
            deadline,
        } = self;
        let task = tokio::spawn(async move {
            let (tx, mut rx) = mpsc::channel::<Halt>(1);
            let mut checks = JoinSet::new();
            for (reason, c) in conditions {
                checks.spawn(keep_checking(policy, reason, c, tx.clone()));
            }
            drop(tx);
            let until_deadline = async {
                match deadline {
                    Some((at, d)) => {
                        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                        tokio::time::sleep(left).await;
                        max_duration_halt(d)
                    }
                    None => std::future::pending().await,
                }
            };
            let halt = tokio::select! {
                Some(h) = rx.recv() => h,
                h = until_deadline => h,
            };
            // No more checks: the first stop is the one.
            checks.abort_all();
            // The session's answer is a blocking wait (microseconds).
            let _ = tokio::task::spawn_blocking(move || on_halt(halt)).await;
        });
        StopWatch { task }
    }

    /// Nothing to check and no deadline: no watch is needed.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty() && self.deadline.is_none()
    }
}

impl Policy {
    /// What one check means for the game day: `Some` stops it. A condition that cannot be
    /// checked is logged, and stops it only with `--stop-if-unreachable`.
    fn verdict(&self, reason: StopReason, c: &StopCondition, check: Check) -> Option<Halt> {
        let condition = match check {
            Check::Clear => return None,
            Check::Holds(seen) => format!("{c}: {seen}"),
            Check::Unknown(why) | Check::Invalid(why) if self.unreachable_stops => format!(
                "{c} cannot be checked ({why}), which --stop-if-unreachable counts as holding"
            ),
            Check::Unknown(why) | Check::Invalid(why) => {
                log::warn!(
                    "stop condition {c} cannot be checked: {why}; not counted as holding (--stop-if-unreachable would stop the game day)"
                );
                return None;
            }
        };
        Some(Halt { reason, condition })
    }
}

fn max_duration_halt(d: Duration) -> Halt {
    Halt {
        reason: StopReason::MaxDuration,
        condition: format!(
            "--max-duration {} passed",
            humantime::format_duration(Duration::from_millis(d.as_millis() as u64))
        ),
    }
}

/// One condition, every `policy.every`, until it fires.
async fn keep_checking(
    policy: Policy,
    reason: StopReason,
    c: StopCondition,
    tx: mpsc::Sender<Halt>,
) {
    let mut tick = tokio::time::interval(policy.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once, and the first check has already looked.
    tick.tick().await;
    let mut noted: Option<(String, Instant)> = None;
    loop {
        tick.tick().await;
        let check = c.check(CHECK_TIMEOUT).await;
        let halt = match check {
            Check::Clear => {
                if noted.take().is_some() {
                    log::info!("stop condition {c} can be checked again");
                }
                None
            }
            Check::Unknown(why) | Check::Invalid(why) if !policy.unreachable_stops => {
                // Said again when it changes, or once a minute while it lasts.
                let due = noted
                    .as_ref()
                    .is_none_or(|(w, at)| *w != why || at.elapsed() >= UNKNOWN_NOTE_EVERY);
                if due {
                    policy.verdict(reason, &c, Check::Unknown(why.clone()));
                    noted = Some((why, Instant::now()));
                }
                None
            }
            other => policy.verdict(reason, &c, other),
        };
        if let Some(h) = halt {
            let _ = tx.send(h).await;
            return;
        }
    }
}

/// The running watch; dropping it stops checking.
pub struct StopWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StopWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
