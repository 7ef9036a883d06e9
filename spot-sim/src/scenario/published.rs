//! What the fake instance publishes of its timeline, in one table: each row is an IMDS path, the
//! event a read of it shows the handler, and what it holds at any instant.
//!
//! Everyone who needs to know reads this table: the metadata tree serves its rows
//! (`imds/tree.rs`), the passthrough policy never forwards them (`imds/policy.rs`), the journal
//! recognises a read of them (`journal/classify.rs`), and the report and the experiment's
//! result name the events as [`Event`] does. A responder holds the table it serves
//! ([`PUBLISHED`] but in tests) and its journal reads the same one. A new timeline path is one row here, plus the
//! timeline rule that issues its event.
//!
//! The rules are the same for every row, so they are said once:
//! - **never forwarded**: with `--passthrough` too, spot-sim answers everything below a row's
//!   top folder itself (the real instance has no interruption to show);
//! - **read**: a GET answered 200, of the row's path under any API version and however the
//!   client spelled it (`//latest/…`, `/2021-03-23/…`, a trailing slash: the router's
//!   canonical path), once the row's event has been issued.
//!
//! Where IMDS publishes each event: the EC2 User Guide's "Spot Instance interruption notices"
//! (`spot/instance-action`, `spot/termination-time`), "EC2 instance rebalance recommendations"
//! (`events/recommendations/rebalance`), "Scheduled events for your instances"
//! (`events/maintenance/scheduled`, `events/maintenance/history`) and the instance metadata
//! categories (`autoscaling/target-lifecycle-state`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::maintenance::{imds_json, MaintenanceView};
use super::timeline::{rfc3339, Action, EventKind, Phase, Schedule, Timeline};

/// An event as the game-day report, the journal, the metrics and the experiment's result name
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    Rebalance,
    Notice,
    AsgTerminated,
    Maintenance,
    /// The instance is gone: nothing to read, the responder stops answering.
    Interruption,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::Rebalance => "rebalance",
            Event::Notice => "notice",
            Event::AsgTerminated => "asg-terminated",
            Event::Maintenance => "maintenance",
            Event::Interruption => "interruption",
        }
    }

    /// The event a timeline event is reported as: a maintenance event's issue, cancellation
    /// and completion are all news on the same two paths.
    pub fn of(kind: EventKind) -> Event {
        match kind {
            EventKind::RebalanceRecommendation => Event::Rebalance,
            EventKind::InterruptionNotice => Event::Notice,
            EventKind::Interruption => Event::Interruption,
            EventKind::AsgTerminated => Event::AsgTerminated,
            EventKind::MaintenanceScheduled
            | EventKind::MaintenanceCanceled
            | EventKind::MaintenanceCompleted => Event::Maintenance,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the timeline shows at one instant, as the table's values read it.
#[derive(Clone, Debug)]
pub struct Moment {
    pub phase: Phase,
    pub schedule: Option<Schedule>,
    pub action: Action,
    /// Maintenance events issued so far, as `scheduled` and `history` list them.
    pub scheduled: Vec<MaintenanceView>,
    pub history: Vec<MaintenanceView>,
    /// The instance is in an Auto Scaling group (an instance option, not the timeline's).
    pub in_asg: bool,
    /// The group has marked the instance `Terminated`.
    pub asg_terminated: bool,
}

impl Moment {
    /// What `timeline` shows at `now`. `in_asg`: the instance is in an Auto Scaling group.
    pub fn at(timeline: &Timeline, now: std::time::SystemTime, in_asg: bool) -> Moment {
        let (scheduled, history) = timeline.maintenance_at(now);
        Moment {
            phase: timeline.phase_at(now),
            schedule: timeline.schedule(),
            action: timeline.scenario().action,
            scheduled,
            history,
            in_asg,
            asg_terminated: timeline.asg_terminated_at(now),
        }
    }
}

/// One path the instance publishes.
#[derive(Clone, Copy, Debug)]
pub struct Published {
    /// Below `meta-data/`, the same under every API version.
    pub path: &'static str,
    /// The event a read of it shows the handler.
    pub event: Event,
    /// What it holds at a moment; `None` while it is not there (a GET answers 404).
    pub value: fn(&Moment) -> Option<String>,
}

impl Published {
    /// The `meta-data/` folder it lives in (`spot` for `spot/instance-action`).
    pub fn top(&self) -> &'static str {
        self.path.split('/').next().unwrap_or(self.path)
    }
}

/// Everything the instance publishes of its timeline.
pub const PUBLISHED: &[Published] = &[
    Published {
        path: "spot/instance-action",
        event: Event::Notice,
        value: |m| {
            let time = rfc3339(notice(m)?.action_time);
            Some(format!(
                "{{\"action\": \"{}\", \"time\": \"{time}\"}}",
                m.action.as_str()
            ))
        },
    },
    // "present and contains a time value ... only if the Spot Instance has been marked for
    // termination by Amazon EC2" (EC2 User Guide, instance metadata categories): a stop or
    // hibernate notice is in instance-action only.
    Published {
        path: "spot/termination-time",
        event: Event::Notice,
        value: |m| {
            let s = notice(m).filter(|_| m.action == Action::Terminate)?;
            Some(rfc3339(s.action_time))
        },
    },
    Published {
        path: "events/recommendations/rebalance",
        event: Event::Rebalance,
        value: |m| {
            let at = m
                .schedule?
                .rebalance_at
                .filter(|_| m.phase >= Phase::Rebalance)?;
            Some(format!("{{\"noticeTime\": \"{}\"}}", rfc3339(at)))
        },
    },
    Published {
        path: "events/maintenance/scheduled",
        event: Event::Maintenance,
        value: |m| Some(imds_json(&m.scheduled)),
    },
    Published {
        path: "events/maintenance/history",
        event: Event::Maintenance,
        value: |m| Some(imds_json(&m.history)),
    },
    // `InService`, then `Terminated` once the group terminates the instance (a rehearsal's
    // `--asg-terminate-in`), while the instance still answers; aws-node-termination-handler
    // drains on exactly `Terminated`. Once interrupted the group sees it gone too.
    Published {
        path: "autoscaling/target-lifecycle-state",
        event: Event::AsgTerminated,
        value: |m| {
            let terminated = m.asg_terminated || m.phase == Phase::Interrupted;
            m.in_asg.then(|| {
                if terminated {
                    "Terminated"
                } else {
                    "InService"
                }
                .to_string()
            })
        },
    },
];

/// The schedule, once the notice is out.
fn notice(m: &Moment) -> Option<Schedule> {
    m.schedule.filter(|_| m.phase >= Phase::Notice)
}

/// The event a successful GET of `path` shows, if it is one the table publishes. `path` is
/// the router's canonical path with its version shown as `latest` (`/latest/meta-data/…`).
pub fn read_of(table: &[Published], path: &str) -> Option<Event> {
    let rest = path.strip_prefix("/latest/meta-data/")?;
    table.iter().find(|p| p.path == rest).map(|p| p.event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timeline_event_has_a_name_and_every_readable_one_a_path() {
        for kind in [
            EventKind::RebalanceRecommendation,
            EventKind::InterruptionNotice,
            EventKind::Interruption,
            EventKind::AsgTerminated,
            EventKind::MaintenanceScheduled,
            EventKind::MaintenanceCanceled,
            EventKind::MaintenanceCompleted,
        ] {
            let event = Event::of(kind);
            let json = serde_json::to_value(event).unwrap();
            assert_eq!(json, event.name(), "{kind:?}");
            let published = PUBLISHED.iter().any(|p| p.event == event);
            assert_eq!(published, event != Event::Interruption, "{kind:?}");
        }
    }

    #[test]
    fn a_read_is_recognised_by_the_whole_canonical_path_only() {
        let read = |p| read_of(PUBLISHED, p);
        assert_eq!(
            read("/latest/meta-data/spot/termination-time"),
            Some(Event::Notice)
        );
        assert_eq!(
            read("/latest/meta-data/autoscaling/target-lifecycle-state"),
            Some(Event::AsgTerminated)
        );
        assert_eq!(
            read("/latest/meta-data/events/maintenance/history"),
            Some(Event::Maintenance)
        );
        for not_a_read in [
            "/latest/meta-data/spot",
            "/latest/meta-data/spot/instance-action/x",
            "/latest/meta-data/events/maintenance",
            "/latest/dynamic/spot/instance-action",
            "/2021-03-23/meta-data/spot/instance-action",
        ] {
            assert_eq!(read(not_a_read), None, "{not_a_read}");
        }
    }
}
