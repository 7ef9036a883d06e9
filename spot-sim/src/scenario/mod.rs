//! Time and events: the clock, the interruption timeline and the maintenance events on it, and
//! where the instance publishes each event (`published.rs`).
//! How a run is configured (TOML file and command-line options) is `crate::settings`, the
//! layer above this one and `crate::imds`.

mod clock;
pub mod dates;
mod maintenance;
mod published;
mod timeline;

use std::path::PathBuf;

pub use clock::{Clock, ManualClock, SystemClock};
pub use maintenance::{
    imds_date, parse_event_date, parse_imds_date, DateProblem, EventTime, MaintenancePlan,
    MaintenanceState, MaintenanceView,
};
pub use published::{read_of, Event, Moment, Published, PUBLISHED};
pub use timeline::{
    rfc3339, whole_seconds, Action, EventKind, IssuedEvent, NextEvent, OnInterrupt, Phase,
    Scenario, Schedule, Start, Timeline, TimelineStatus, NOTICE_LEAD,
};

/// The largest scenario file read: a scenario is a few lines; `/dev/zero` is not one.
pub const MAX_SCENARIO_BYTES: u64 = 1024 * 1024;

/// Why a scenario could not be loaded or a timeline action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {}: {source} (check the path given to --scenario)", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `/dev/zero`, a FIFO, a directory, a file beyond the size bound.
    #[error("cannot use {} as a scenario file: {problem} (give a regular TOML file of at most {} KiB)", path.display(), MAX_SCENARIO_BYTES / 1024)]
    NotAScenarioFile { path: PathBuf, problem: String },
    /// The file is not valid TOML or a field has the wrong name, type or value.
    #[error("{}:{line}: {problem}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        /// Names the field, the problem and the allowed values.
        problem: String,
    },
    /// A value parsed but makes no sense (out of range, contradicts another field).
    #[error("{origin}: {field} = {value}: {problem} (allowed: {allowed})")]
    Invalid {
        /// The file path, or "command line".
        origin: String,
        field: String,
        value: String,
        problem: String,
        allowed: String,
    },
    #[error("the timeline already started at {at}; a run is triggered once (start a new session to rehearse again)")]
    AlreadyStarted { at: String },
}

#[cfg(test)]
mod published_tests;
#[cfg(test)]
mod tests;
