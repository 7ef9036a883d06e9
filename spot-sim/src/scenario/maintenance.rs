//! Scheduled maintenance events on the timeline: each is issued at a moment counted from t0,
//! may be canceled or completed later, and carries its dates in IMDS's own format.
//!
//! What EC2 shows, per the Amazon EC2 User Guide ("View scheduled events", instance metadata
//! categories `events/maintenance/scheduled` and `events/maintenance/history`):
//! ```text
//! [ {
//!   "NotBefore" : "21 Jan 2019 09:00:43 GMT",
//!   "Code" : "system-reboot",
//!   "Description" : "scheduled reboot",
//!   "EventId" : "instance-event-0d59937288b749b32",
//!   "NotAfter" : "21 Jan 2019 09:17:23 GMT",
//!   "State" : "active"
//! } ]
//! ```
//! and, once canceled, the same event in `history` with `"State" : "canceled"` and a
//! description prefixed `[Canceled] `. Rescheduling (`NotBeforeDeadline`) is described in
//! "Reschedule scheduled events": only events with a deadline can be moved, up to it.

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Where a maintenance event is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaintenanceState {
    Active,
    Completed,
    Canceled,
}

impl MaintenanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceState::Active => "active",
            MaintenanceState::Completed => "completed",
            MaintenanceState::Canceled => "canceled",
        }
    }

    /// EC2 marks a finished event's description: "[Canceled] scheduled reboot".
    fn prefix(self) -> &'static str {
        match self {
            MaintenanceState::Active => "",
            MaintenanceState::Completed => "[Completed] ",
            MaintenanceState::Canceled => "[Canceled] ",
        }
    }
}

/// A date of an event: fixed, or counted from the event's issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventTime {
    At(SystemTime),
    /// This long after the event is issued.
    AfterIssue(Duration),
}

impl EventTime {
    fn resolve(self, issued: SystemTime) -> SystemTime {
        match self {
            EventTime::At(t) => t,
            EventTime::AfterIssue(d) => issued + d,
        }
    }
}

/// One `[[maintenance]]` entry, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenancePlan {
    /// `system-reboot`, `instance-reboot`, `system-maintenance`, `instance-retirement`,
    /// `instance-stop`.
    pub code: String,
    pub description: String,
    pub event_id: String,
    /// From t0 to the moment the event appears in `scheduled`.
    pub issue_in: Duration,
    /// The state it is issued in (usually active).
    pub state: MaintenanceState,
    pub not_before: EventTime,
    pub not_after: Option<EventTime>,
    pub not_before_deadline: Option<EventTime>,
    /// From its issue to its cancellation or completion, and which of the two.
    pub ends: Option<(Duration, MaintenanceState)>,
}

/// An event as IMDS shows it at one instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MaintenanceView {
    pub code: String,
    pub description: String,
    pub event_id: String,
    pub state: MaintenanceState,
    pub not_before: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before_deadline: Option<String>,
}

impl MaintenancePlan {
    pub fn issued_at(&self, t0: SystemTime) -> SystemTime {
        t0 + self.issue_in
    }

    /// When it is canceled or completed, if it ever is.
    pub fn ends_at(&self, t0: SystemTime) -> Option<(SystemTime, MaintenanceState)> {
        self.ends.map(|(d, s)| (self.issued_at(t0) + d, s))
    }

    /// The event at `now`, or `None` before it is issued. Every date derives from t0, so it
    /// never changes between requests.
    pub fn view_at(&self, t0: SystemTime, now: SystemTime) -> Option<MaintenanceView> {
        let issued = self.issued_at(t0);
        if now < issued {
            return None;
        }
        let state = match self.ends_at(t0) {
            Some((at, s)) if now >= at => s,
            _ => self.state,
        };
        Some(MaintenanceView {
            code: self.code.clone(),
            description: format!("{}{}", state.prefix(), self.description),
            event_id: self.event_id.clone(),
            state,
            not_before: imds_date(self.not_before.resolve(issued)),
            not_after: self.not_after.map(|t| imds_date(t.resolve(issued))),
            not_before_deadline: self
                .not_before_deadline
                .map(|t| imds_date(t.resolve(issued))),
        })
    }
}

/// `21 Jan 2019 09:00:43 GMT`: the date format of IMDS maintenance events (as in the EC2 User
/// Guide's examples), UTC, whole seconds. The day is zero-padded: aws-node-termination-handler
/// parsed it with Go's `"02 Jan 2006 15:04:05 GMT"` (two digits required) before moving to
/// `"2 Jan 2006 ..."` (either), so "01 Dec" suits both and "1 Dec" only the newer.
pub fn imds_date(t: SystemTime) -> String {
    let dt = super::dates::to_datetime(t);
    let format = time::macros::format_description!(
        "[day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    dt.format(format).unwrap_or_default()
}

/// Parses an IMDS maintenance date (day zero-padded or not), within the dates spot-sim
/// accepts ([`super::dates::bounded`]).
pub fn parse_imds_date(s: &str) -> Option<SystemTime> {
    let padded = time::macros::format_description!(
        "[day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let unpadded = time::macros::format_description!(
        "[day padding:none] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s, padded)
        .or_else(|_| time::PrimitiveDateTime::parse(s, unpadded))
        .ok()
        .and_then(|dt| super::dates::bounded(dt.assume_utc()).ok())
}
