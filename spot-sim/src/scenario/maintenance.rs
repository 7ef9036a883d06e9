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

/// The list `scheduled` and `history` hold, in the layout IMDS uses: `[ {` ... `} ]`, ` : `
/// between key and value, fields in the order of the EC2 User Guide's example.
pub fn imds_json(events: &[MaintenanceView]) -> String {
    use std::fmt::Write as _;
    if events.is_empty() {
        return "[]".to_string();
    }
    let events: Vec<String> = events
        .iter()
        .map(|e| {
            let mut fields = vec![
                ("NotBefore", e.not_before.as_str()),
                ("Code", &e.code),
                ("Description", &e.description),
                ("EventId", &e.event_id),
            ];
            if let Some(after) = &e.not_after {
                fields.push(("NotAfter", after));
            }
            if let Some(deadline) = &e.not_before_deadline {
                fields.push(("NotBeforeDeadline", deadline));
            }
            fields.push(("State", e.state.as_str()));
            let mut body = String::new();
            for (i, (k, v)) in fields.iter().enumerate() {
                let sep = if i + 1 == fields.len() { "" } else { "," };
                let _ = writeln!(body, "  \"{k}\" : {}{sep}", serde_json::Value::from(*v));
            }
            format!("{{\n{body}}}")
        })
        .collect();
    format!("[ {} ]", events.join(", "))
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
    super::dates::bounded(imds_datetime(s)?).ok()
}

/// The IMDS form alone, unbounded.
fn imds_datetime(s: &str) -> Option<time::OffsetDateTime> {
    let padded = time::macros::format_description!(
        "[day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let unpadded = time::macros::format_description!(
        "[day padding:none] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s, padded)
        .or_else(|_| time::PrimitiveDateTime::parse(s, unpadded))
        .ok()
        .map(|dt| dt.assume_utc())
}

/// Why a maintenance date was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateProblem {
    /// RFC 3339 but for its zone: which instant it means depends on a zone it does not say.
    NoZone,
    NotADate,
    /// A date, but outside what spot-sim accepts ([`super::dates::bounded`]).
    OutOfRange,
}

/// A maintenance date as a scenario writes it: IMDS's form (`21 Jan 2026 09:00:00 GMT`) or
/// RFC 3339 with its zone (`2026-01-21T09:00:00Z`, `2026-01-21T10:00:00+01:00`). Either way it
/// is shown in IMDS's form ([`imds_date`]).
pub fn parse_event_date(s: &str) -> Result<SystemTime, DateProblem> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let s = s.trim();
    // Both forms through the one date bound (scenario/dates.rs).
    let bounded = |t| super::dates::bounded(t).map_err(|_| DateProblem::OutOfRange);
    if let Some(t) = imds_datetime(s) {
        return bounded(t);
    }
    match time::OffsetDateTime::parse(s, rfc3339) {
        Ok(t) => bounded(t),
        // Valid once a zone is added: a local time (also what a bare TOML local date-time is).
        Err(_) if time::OffsetDateTime::parse(&format!("{s}Z"), rfc3339).is_ok() => {
            Err(DateProblem::NoZone)
        }
        Err(_) => Err(DateProblem::NotADate),
    }
}

#[cfg(test)]
mod date_tests {
    use super::*;

    #[test]
    fn rfc3339_dates_are_read_and_shown_in_the_imds_form() {
        let imds = parse_event_date("21 Jan 2026 09:00:00 GMT").expect("IMDS form");
        for text in [
            "2026-01-21T09:00:00Z",
            "2026-01-21T10:00:00+01:00",
            "2026-01-21t09:00:00z",
            " 2026-01-21T09:00:00.000Z ",
        ] {
            let t = parse_event_date(text).expect(text);
            assert_eq!(t, imds, "{text}");
            assert_eq!(imds_date(t), "21 Jan 2026 09:00:00 GMT");
        }
    }

    #[test]
    fn a_date_without_a_zone_is_told_apart_from_one_that_is_no_date() {
        for text in ["2026-01-21T09:00:00", "2026-01-21T09:00:00.5"] {
            assert_eq!(parse_event_date(text), Err(DateProblem::NoZone), "{text}");
        }
        for text in ["2026-01-21", "tomorrow", "21 Jan 2026 09:00:00", ""] {
            assert_eq!(parse_event_date(text), Err(DateProblem::NotADate), "{text}");
        }
        // Dates in either form go through the one bound (issue #20).
        for text in [
            "31 Dec 9999 23:00:00 GMT",
            "9999-12-31T23:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(
                parse_event_date(text),
                Err(DateProblem::OutOfRange),
                "{text}"
            );
        }
    }
}
