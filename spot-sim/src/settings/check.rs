//! What every settings check shares: the one-line error naming origin, field, value, problem
//! and what is allowed, and the bound on durations.

use std::time::Duration;

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
