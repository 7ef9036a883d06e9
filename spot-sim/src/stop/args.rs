//! `--stop-if`, `--stop-check-every`, `--stop-if-unreachable` and `--max-duration`, shared by
//! `exec`, `run` and `run --experiment`.

use std::time::Duration;

use super::StopCondition;

/// Shortest interval between two checks of one condition.
const MIN_EVERY: Duration = Duration::from_millis(100);

/// When the game day stops by itself.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct StopArgs {
    /// Stop the game day when CONDITION holds: every target is detached at once (the real IMDS
    /// is back for it) and the report says why. cmd:COMMAND holds when `sh -c COMMAND` exits
    /// non-zero or runs over 10 s; http:URL when a GET does not answer 2xx/3xx within 10 s;
    /// prom:URL QUERY when the Prometheus query returns any series (as an alerting rule
    /// fires). Checked once before anything is attached, then every --stop-check-every.
    /// Repeatable
    #[arg(long = "stop-if", value_name = "CONDITION", value_parser = StopCondition::parse)]
    pub stop_if: Vec<StopCondition>,
    /// How often each stop condition (and a game day's kill switch) is checked
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_every)]
    pub stop_check_every: Duration,
    /// Count a stop condition that cannot be checked (Prometheus does not answer, the kill
    /// switch file cannot be read) as holding. Without it, such a condition is logged and the
    /// game day goes on
    #[arg(long)]
    pub stop_if_unreachable: bool,
    /// Detach every target after DURATION, whatever the timeline says (counted from spot-sim's
    /// start; in `run --experiment`, from the node's start-at)
    #[arg(long, value_name = "DURATION", value_parser = parse_max)]
    pub max_duration: Option<Duration>,
}

fn parse_every(s: &str) -> Result<Duration, String> {
    let d = crate::settings::parse_duration(s)?;
    if d < MIN_EVERY {
        return Err(format!(
            "checking more often than every {} would keep spot-sim busy; give 100ms or more, like \"5s\"",
            humantime::format_duration(MIN_EVERY)
        ));
    }
    Ok(d)
}

fn parse_max(s: &str) -> Result<Duration, String> {
    let d = crate::settings::parse_duration(s)?;
    if d.is_zero() {
        return Err(
            "a game day of 0s would stop before it starts; give a duration like \"30m\"".into(),
        );
    }
    Ok(d)
}
