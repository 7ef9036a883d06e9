//! `[[maintenance]]` entries (and `--maintenance` shorthands), checked and resolved into the
//! timeline's maintenance plans: each code, state and date checked, dates resolved against
//! the event's issue; a bad one refused in one line naming the entry's field.

use std::time::Duration;

use super::check::{invalid, MAX_DURATION};
use super::scenario_file::MaintenanceSection;
use super::values::{Dur, TimeText};
use crate::scenario::{
    parse_event_date, DateProblem, EventTime, MaintenancePlan, MaintenanceState, ScenarioError,
};

const MAINTENANCE_CODES: &[&str] = &[
    "instance-reboot",
    "system-reboot",
    "system-maintenance",
    "instance-retirement",
    "instance-stop",
];

/// One `[[maintenance]]` entry: its code, state and dates checked, dates resolved against its
/// issue.
pub(super) fn maintenance_plan(
    n: usize,
    e: MaintenanceSection,
    origin: &str,
) -> Result<MaintenancePlan, ScenarioError> {
    let entry = Entry { n, origin };
    if !MAINTENANCE_CODES.contains(&e.code.as_str()) {
        return Err(entry.invalid(
            "code",
            format!("{:?}", e.code),
            "unknown event code",
            &MAINTENANCE_CODES.join(", "),
        ));
    }
    let state = match e.state.as_deref().unwrap_or("active") {
        "active" => MaintenanceState::Active,
        "completed" => MaintenanceState::Completed,
        "canceled" => MaintenanceState::Canceled,
        other => {
            return Err(entry.invalid(
                "state",
                format!("{other:?}"),
                "unknown state",
                "active, completed, canceled",
            ))
        }
    };
    entry.check_durations(&e)?;
    let (not_before, not_after, deadline) = entry.dates(&e)?;
    let ends = match (e.cancel_in, e.complete_in) {
        (Some(_), Some(_)) => {
            return Err(entry.invalid(
                "cancel-in",
                "(with complete-in)",
                "an event is canceled or completed, not both",
                "one of cancel-in or complete-in",
            ))
        }
        (Some(d), None) => Some((d.0, MaintenanceState::Canceled)),
        (None, Some(d)) => Some((d.0, MaintenanceState::Completed)),
        (None, None) => None,
    };
    Ok(MaintenancePlan {
        description: e
            .description
            .unwrap_or_else(|| format!("scheduled {}", e.code.replace('-', " "))),
        event_id: e
            .event_id
            .unwrap_or_else(|| format!("instance-event-0{:016x}", 0x5ba7_0000_u64 + n as u64)),
        code: e.code,
        issue_in: e.issue_in.map_or(Duration::ZERO, |d| d.0),
        state,
        not_before,
        not_after,
        not_before_deadline: deadline,
        ends,
    })
}

/// The `n`th entry of a scenario from `origin`, for its errors.
struct Entry<'a> {
    n: usize,
    origin: &'a str,
}

impl Entry<'_> {
    fn invalid(
        &self,
        name: &str,
        value: impl ToString,
        problem: &str,
        allowed: &str,
    ) -> ScenarioError {
        let field = format!("maintenance[{}].{name}", self.n);
        invalid(self.origin, &field, value, problem, allowed)
    }

    fn check_durations(&self, e: &MaintenanceSection) -> Result<(), ScenarioError> {
        for (name, d) in [
            ("issue-in", &e.issue_in),
            ("not-before-in", &e.not_before_in),
            ("not-after-in", &e.not_after_in),
            ("not-before-deadline-in", &e.not_before_deadline_in),
            ("cancel-in", &e.cancel_in),
            ("complete-in", &e.complete_in),
        ] {
            if let Some(d) = d.filter(|d| d.0 > MAX_DURATION) {
                return Err(self.invalid(
                    name,
                    format!("{:?}", humantime::format_duration(d.0).to_string()),
                    "too long",
                    "at most 366 days",
                ));
            }
        }
        Ok(())
    }

    /// NotBefore (required), NotAfter and NotBeforeDeadline, neither of the two before the
    /// first.
    fn dates(
        &self,
        e: &MaintenanceSection,
    ) -> Result<(EventTime, Option<EventTime>, Option<EventTime>), ScenarioError> {
        let not_before = self
            .date("not-before", &e.not_before, e.not_before_in)?
            .ok_or_else(|| {
                self.invalid(
                    "not-before",
                    "(none)",
                    "every event has a start",
                    "not-before = \"21 Jan 2026 09:00:00 GMT\" or not-before-in = \"1h\"",
                )
            })?;
        let not_after = self.date("not-after", &e.not_after, e.not_after_in)?;
        let deadline = self.date(
            "not-before-deadline",
            &e.not_before_deadline,
            e.not_before_deadline_in,
        )?;
        for (name, later) in [("not-after", not_after), ("not-before-deadline", deadline)] {
            if let Some(later) = later.filter(|l| before(*l, not_before)) {
                return Err(self.invalid(
                    name,
                    describe(later),
                    &format!("comes before not-before ({})", describe(not_before)),
                    "a time at or after not-before",
                ));
            }
        }
        Ok((not_before, not_after, deadline))
    }

    /// A date given as one (`abs`: the IMDS form or RFC 3339) or as a duration from the issue
    /// (`rel`), not both.
    fn date(
        &self,
        name: &str,
        abs: &Option<TimeText>,
        rel: Option<Dur>,
    ) -> Result<Option<EventTime>, ScenarioError> {
        match (abs, rel) {
            (Some(TimeText(text)), Some(_)) => Err(self.invalid(
                name,
                format!("{text:?}"),
                &format!("given together with {name}-in"),
                &format!("either {name} (a date) or {name}-in (a duration from the issue)"),
            )),
            (Some(TimeText(text)), None) => match parse_event_date(text) {
                Ok(t) => Ok(Some(EventTime::At(t))),
                Err(DateProblem::NoZone) => Err(self.invalid(
                    name,
                    format!("{text:?}"),
                    "an RFC 3339 time without a zone",
                    &format!(
                        "the same with its zone, like {:?} (UTC)",
                        format!("{}Z", text.trim())
                    ),
                )),
                Err(DateProblem::OutOfRange) => Err(self.invalid(
                    name,
                    format!("{text:?}"),
                    "outside the dates spot-sim accepts",
                    crate::scenario::dates::ALLOWED,
                )),
                Err(DateProblem::NotADate) => Err(self.invalid(
                    name,
                    format!("{text:?}"),
                    "not a date",
                    "a date like \"21 Jan 2026 09:00:00 GMT\" or \"2026-01-21T09:00:00Z\"",
                )),
            },
            (None, Some(d)) => Ok(Some(EventTime::AfterIssue(d.0))),
            (None, None) => Ok(None),
        }
    }
}

/// Whether `a` surely comes before `b`. Two offsets from the issue, or two dates, compare;
/// a date against an offset depends on t0, so it is not judged here.
fn before(a: EventTime, b: EventTime) -> bool {
    match (a, b) {
        (EventTime::At(a), EventTime::At(b)) => a < b,
        (EventTime::AfterIssue(a), EventTime::AfterIssue(b)) => a < b,
        _ => false,
    }
}

fn describe(t: EventTime) -> String {
    match t {
        EventTime::At(t) => format!("{:?}", crate::scenario::imds_date(t)),
        EventTime::AfterIssue(d) => format!(
            "{:?} after its issue",
            humantime::format_duration(d).to_string()
        ),
    }
}
