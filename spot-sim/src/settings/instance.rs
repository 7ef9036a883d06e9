//! How the instance is configured, beyond its interruption: metadata options, tags, Auto
//! Scaling membership, scheduled maintenance and an absolute start time. Each value from the
//! command line or the scenario file is checked here, and a bad one is refused in one line
//! naming the field, the value and what is allowed.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::check::{invalid, MAX_DURATION};
use super::file::{Dur, ImdsSection, MaintenanceSection, ScenarioFile, TimeText};
use super::options::ScenarioArgs;
use crate::imds::{tag_key_problem, InstanceOptions, DEFAULT_HOP_LIMIT, MAX_HOP_LIMIT};
use crate::scenario::{
    parse_event_date, rfc3339, DateProblem, EventTime, MaintenancePlan, MaintenanceState,
    ScenarioError, Start,
};

/// Longest tag value EC2 accepts.
const MAX_TAG_VALUE: usize = 256;
/// NotBefore of a `--maintenance` event, after its issue: EC2 lets an event be moved no closer
/// than 60 minutes ahead, a plausible shortest notice.
const SHORTHAND_NOT_BEFORE: Duration = Duration::from_secs(3600);

/// The instance options given on the command line, over the file's.
pub(super) fn overlay(args: &ScenarioArgs, file: &mut ScenarioFile) -> Result<(), ScenarioError> {
    for tag in &args.tags {
        let Some((key, value)) = tag.split_once('=') else {
            return Err(invalid(
                "command line",
                "--tag",
                format!("{tag:?}"),
                "no `=`",
                "KEY=VALUE, like --tag team=payments",
            ));
        };
        file.tags.insert(key.to_string(), value.to_string());
    }
    for m in &args.maintenance {
        let (code, issue_in) = match m.split_once(':') {
            Some((code, d)) => (
                code,
                Some(super::file::parse_duration(d).map_err(|e| {
                    invalid(
                        "command line",
                        "--maintenance",
                        format!("{m:?}"),
                        &e,
                        "CODE[:IN]",
                    )
                })?),
            ),
            None => (m.as_str(), None),
        };
        file.maintenance.push(MaintenanceSection {
            code: code.to_string(),
            issue_in: issue_in.map(Dur),
            not_before_in: Some(Dur(SHORTHAND_NOT_BEFORE)),
            ..MaintenanceSection::default()
        });
    }
    Ok(())
}

/// `start-at`: must parse, come after `now`, and not fight another start option.
pub(super) fn start_at(
    at: &TimeText,
    manual: Option<bool>,
    start_in: Option<Dur>,
    origin: &str,
    now: SystemTime,
) -> Result<Start, ScenarioError> {
    let field = "scenario.start-at";
    let value = format!("{:?}", at.0);
    if manual == Some(true) || start_in.is_some() {
        return Err(invalid(
            origin,
            field,
            &value,
            "contradicts scenario.manual / scenario.start-in",
            "one of start-at, start-in or manual = true",
        ));
    }
    // The one date bound (scenario/dates.rs), as for every date from a file or a flag.
    let parsed = crate::scenario::dates::parse_rfc3339(&at.0).map_err(|e| match e {
        crate::scenario::dates::Rfc3339Error::Syntax => invalid(
            origin,
            field,
            &value,
            "not an RFC 3339 time",
            "a time like \"2026-11-26T09:00:00Z\" or \"2026-11-26T10:00:00+01:00\"",
        ),
        crate::scenario::dates::Rfc3339Error::OutOfRange => invalid(
            origin,
            field,
            &value,
            "outside the dates spot-sim accepts",
            crate::scenario::dates::ALLOWED,
        ),
    })?;
    let t: SystemTime = parsed.into();
    if t <= now {
        return Err(invalid(
            origin,
            field,
            &value,
            &format!("in the past (it is now {})", rfc3339(now)),
            "a time still to come",
        ));
    }
    if t.duration_since(now).unwrap_or_default() > MAX_DURATION {
        return Err(invalid(
            origin,
            field,
            &value,
            "too far ahead",
            "within 366 days",
        ));
    }
    Ok(Start::At(t))
}

/// `asg` / `asg-terminate-in`: a termination needs a group.
pub(super) fn asg(
    asg: Option<bool>,
    terminate_in: Option<Dur>,
    origin: &str,
) -> Result<Option<Duration>, ScenarioError> {
    match (asg, terminate_in) {
        (Some(false), Some(d)) => Err(invalid(
            origin,
            "scenario.asg-terminate-in",
            format!("{:?}", humantime::format_duration(d.0).to_string()),
            "the instance is not in an Auto Scaling group (asg = false / --no-asg)",
            "either asg = false or asg-terminate-in, not both",
        )),
        (_, d) => Ok(d.map(|d| d.0)),
    }
}

/// `[imds]` options and `[tags]`.
pub(super) fn options(
    i: &ImdsSection,
    tags: BTreeMap<String, String>,
    origin: &str,
) -> Result<InstanceOptions, ScenarioError> {
    let d = InstanceOptions::default();
    let hop_limit = match i.http_put_response_hop_limit {
        None => DEFAULT_HOP_LIMIT,
        Some(n) => u8::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_HOP_LIMIT).contains(n))
            .ok_or_else(|| {
                invalid(
                    origin,
                    "imds.http-put-response-hop-limit",
                    n,
                    "out of range",
                    "1 to 64",
                )
            })?,
    };
    for (key, value) in &tags {
        if let Some(problem) = tag_key_problem(key) {
            return Err(invalid(
                origin,
                "tags",
                format!("{key:?}"),
                &format!("tag key {problem}"),
                "1 to 128 bytes of letters, digits and + - = . , _ : @ (no `/` or spaces)",
            ));
        }
        if value.chars().count() > MAX_TAG_VALUE {
            return Err(invalid(
                origin,
                &format!("tags.{key}"),
                format!("{} characters", value.chars().count()),
                "tag value too long",
                "at most 256 characters",
            ));
        }
    }
    Ok(InstanceOptions {
        hop_limit,
        http_endpoint: i.http_endpoint.unwrap_or(d.http_endpoint),
        http_protocol_ipv6: i.http_protocol_ipv6.unwrap_or(d.http_protocol_ipv6),
        instance_metadata_tags: i.instance_metadata_tags.unwrap_or(d.instance_metadata_tags),
        tags,
    })
}

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
    let field = |name: &str| format!("maintenance[{n}].{name}");
    if !MAINTENANCE_CODES.contains(&e.code.as_str()) {
        return Err(invalid(
            origin,
            &field("code"),
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
            return Err(invalid(
                origin,
                &field("state"),
                format!("{other:?}"),
                "unknown state",
                "active, completed, canceled",
            ))
        }
    };
    for (name, d) in [
        ("issue-in", &e.issue_in),
        ("not-before-in", &e.not_before_in),
        ("not-after-in", &e.not_after_in),
        ("not-before-deadline-in", &e.not_before_deadline_in),
        ("cancel-in", &e.cancel_in),
        ("complete-in", &e.complete_in),
    ] {
        if let Some(d) = d.filter(|d| d.0 > MAX_DURATION) {
            return Err(invalid(
                origin,
                &field(name),
                format!("{:?}", humantime::format_duration(d.0).to_string()),
                "too long",
                "at most 366 days",
            ));
        }
    }
    let date = |name: &str, abs: &Option<TimeText>, rel: Option<Dur>| match (abs, rel) {
        (Some(TimeText(text)), Some(_)) => Err(invalid(
            origin,
            &field(name),
            format!("{text:?}"),
            &format!("given together with {name}-in"),
            &format!("either {name} (a date) or {name}-in (a duration from the issue)"),
        )),
        (Some(TimeText(text)), None) => match parse_event_date(text) {
            Ok(t) => Ok(Some(EventTime::At(t))),
            Err(DateProblem::NoZone) => Err(invalid(
                origin,
                &field(name),
                format!("{text:?}"),
                "an RFC 3339 time without a zone",
                &format!(
                    "the same with its zone, like {:?} (UTC)",
                    format!("{}Z", text.trim())
                ),
            )),
            Err(DateProblem::OutOfRange) => Err(invalid(
                origin,
                &field(name),
                format!("{text:?}"),
                "outside the dates spot-sim accepts",
                crate::scenario::dates::ALLOWED,
            )),
            Err(DateProblem::NotADate) => Err(invalid(
                origin,
                &field(name),
                format!("{text:?}"),
                "not a date",
                "a date like \"21 Jan 2026 09:00:00 GMT\" or \"2026-01-21T09:00:00Z\"",
            )),
        },
        (None, Some(d)) => Ok(Some(EventTime::AfterIssue(d.0))),
        (None, None) => Ok(None),
    };
    let not_before = date("not-before", &e.not_before, e.not_before_in)?.ok_or_else(|| {
        invalid(
            origin,
            &field("not-before"),
            "(none)",
            "every event has a start",
            "not-before = \"21 Jan 2026 09:00:00 GMT\" or not-before-in = \"1h\"",
        )
    })?;
    let not_after = date("not-after", &e.not_after, e.not_after_in)?;
    let deadline = date(
        "not-before-deadline",
        &e.not_before_deadline,
        e.not_before_deadline_in,
    )?;
    for (name, later) in [("not-after", not_after), ("not-before-deadline", deadline)] {
        if let Some(later) = later {
            if before(later, not_before) {
                return Err(invalid(
                    origin,
                    &field(name),
                    describe(later),
                    &format!("comes before not-before ({})", describe(not_before)),
                    "a time at or after not-before",
                ));
            }
        }
    }
    let ends = match (e.cancel_in, e.complete_in) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                origin,
                &field("cancel-in"),
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
