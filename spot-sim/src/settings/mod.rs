//! How a run is configured: the scenario file (TOML) and the command-line options, checked and
//! resolved into [`Settings`] — the timeline's [`crate::scenario::Scenario`], the responder's
//! [`crate::imds::ImdsConfig`] and what happens at the interruption. This layer sits above
//! `scenario` and `imds`; neither names it.
//!
//! Every setting is declared once (`sections.rs`, by the macro in `declare.rs`): its flag,
//! its key in the file, its type, default, help and check. `scenario_args.rs` is the command
//! line's half, `scenario_file.rs` the file's, `resolve.rs` merges them and builds the
//! [`Settings`]; `maintenance.rs` resolves `[[maintenance]]` entries.

mod check;
mod declare;
mod maintenance;
mod resolve;
mod scenario_args;
mod scenario_file;
mod sections;
mod values;

pub use resolve::Settings;
pub use scenario_args::ScenarioArgs;
pub use sections::{FaultsSection, ImdsSection, MetadataSection, ScenarioSection};
pub(crate) use values::parse_duration;
pub use values::{Dur, TimeText};
