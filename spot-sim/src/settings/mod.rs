//! How a run is configured: the scenario file (TOML) and the command-line options, checked and
//! resolved into [`Settings`] — the timeline's [`crate::scenario::Scenario`], the responder's
//! [`crate::imds::ImdsConfig`] and what happens at the interruption. This layer sits above
//! `scenario` and `imds`; neither names it.

mod args;
mod check;
mod file;
mod instance;
mod options;

pub use args::Settings;
pub(crate) use file::parse_duration;
pub use options::ScenarioArgs;
