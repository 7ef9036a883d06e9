//! What every settings check shares (the one-line error naming origin, field, value, problem
//! and what is allowed; the bound on durations), and the checks the declarations name.

use std::time::Duration;

use super::values::Dur;
use crate::imds::MAX_HOP_LIMIT;
use crate::scenario::ScenarioError;

pub(super) fn invalid(
    origin: &str,
    field: &str,
    value: impl ToString,
    problem: &str,
    allowed: &str,
) -> ScenarioError {
    ScenarioError::Invalid {
        origin: origin.to_string(),
        field: field.to_string(),
        value: value.to_string(),
        problem: problem.to_string(),
        allowed: allowed.to_string(),
    }
}

/// Longest duration any option takes. Far beyond any rehearsal, and far from where adding it
/// to the clock could overflow (found by fuzzing: `start-in = "400000000000y"` panicked).
pub(super) const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration setting: at most [`MAX_DURATION`].
pub(super) fn at_most_a_year(origin: &str, field: &str, d: &Dur) -> Result<(), ScenarioError> {
    if d.0 <= MAX_DURATION {
        return Ok(());
    }
    Err(invalid(
        origin,
        field,
        format!("{:?}", humantime::format_duration(d.0).to_string()),
        "too long",
        "at most 366 days",
    ))
}

/// The passthrough timeout: zero would time out every request before it is sent.
pub(super) fn positive_timeout(origin: &str, field: &str, d: &Dur) -> Result<(), ScenarioError> {
    at_most_a_year(origin, field, d)?;
    if d.0.is_zero() {
        return Err(invalid(
            origin,
            field,
            "\"0s\"",
            "every request to the real IMDS would time out at once",
            "a positive duration like \"2s\"",
        ));
    }
    Ok(())
}

/// A rate: a fraction from 0.0 to 1.0.
pub(super) fn fraction(origin: &str, field: &str, rate: &f64) -> Result<(), ScenarioError> {
    if (0.0..=1.0).contains(rate) {
        return Ok(());
    }
    Err(invalid(origin, field, rate, "not a fraction", "0.0 to 1.0"))
}

/// A token lifetime: at least a second.
pub(super) fn positive_ttl(origin: &str, field: &str, ttl: &u64) -> Result<(), ScenarioError> {
    if *ttl > 0 {
        return Ok(());
    }
    Err(invalid(
        origin,
        field,
        0,
        "tokens would be expired when issued",
        "1 or more seconds",
    ))
}

/// HttpPutResponseHopLimit: 1 to [`MAX_HOP_LIMIT`], as EC2 takes it.
pub(super) fn hop_limit(origin: &str, field: &str, n: &i64) -> Result<(), ScenarioError> {
    if (1..=i64::from(MAX_HOP_LIMIT)).contains(n) {
        return Ok(());
    }
    Err(invalid(origin, field, n, "out of range", "1 to 64"))
}
