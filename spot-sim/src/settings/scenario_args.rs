//! The command line's half of a scenario, shared by `exec`, `run` and `serve`: `--scenario
//! FILE`, the flag of every declared setting (`sections.rs`), and the repeatable shorthands
//! `--tag` and `--maintenance` that add to the file's tables.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::check::invalid;
use super::resolve::{settings_from, Settings};
use super::scenario_file::{MaintenanceSection, ScenarioFile};
use super::sections::{FaultsSection, ImdsSection, MetadataSection, ScenarioSection};
use super::values::{parse_duration, Dur};
use crate::scenario::ScenarioError;

/// NotBefore of a `--maintenance` event, after its issue: EC2 lets an event be moved no closer
/// than 60 minutes ahead, a plausible shortest notice.
const SHORTHAND_NOT_BEFORE: Duration = Duration::from_secs(3600);

/// Options shared by `exec`, `run` and `serve`. Each part is a clap group of its own (a
/// group holding flattened ones would be empty): whoever conflicts with all of them names
/// [`ScenarioArgs::GROUPS`].
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ScenarioArgs {
    #[command(flatten)]
    pub file: ScenarioFileArgs,

    #[command(flatten)]
    pub timeline: ScenarioSection,

    #[command(flatten)]
    pub imds: ImdsSection,

    #[command(flatten)]
    pub faults: FaultsSection,

    #[command(flatten)]
    pub metadata: MetadataSection,
}

/// `--scenario FILE`, and what the command line adds to its tables.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ScenarioFileArgs {
    /// Scenario file (TOML) setting the timeline, IMDS options and metadata values; options
    /// given on the command line override it
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// An instance tag, KEY=VALUE. Repeatable; added to the scenario's [tags]
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,

    /// One scheduled maintenance event, CODE[:IN]: issued IN after t0 [default: 0s], NotBefore
    /// an hour after its issue. CODE: system-reboot, instance-reboot, system-maintenance,
    /// instance-retirement, instance-stop. Repeatable; added to the scenario's [[maintenance]]
    #[arg(long, value_name = "CODE[:IN]")]
    pub maintenance: Vec<String>,
}

impl ScenarioArgs {
    /// The clap groups of every scenario option.
    pub const GROUPS: [&'static str; 5] = [
        "ScenarioFileArgs",
        "ScenarioSection",
        "ImdsSection",
        "FaultsSection",
        "MetadataSection",
    ];

    /// The settings for this run: command line over `--scenario` file over defaults.
    pub fn resolve(&self) -> Result<Settings, ScenarioError> {
        let (mut file, origin) = match &self.file.scenario {
            Some(path) => (ScenarioFile::load(path)?, path.display().to_string()),
            None => (ScenarioFile::default(), "command line".to_string()),
        };
        self.overlay(&mut file)?;
        // `start-at` must lie ahead of when this spot-sim started, not of now: a target added
        // later (`target add`, `--follow`) shares the absolute t0 even once it has passed.
        static STARTED: std::sync::OnceLock<SystemTime> = std::sync::OnceLock::new();
        settings_from(file, &origin, *STARTED.get_or_init(SystemTime::now))
    }

    /// Every setting given on the command line over the file's; the shorthands added to it.
    fn overlay(&self, file: &mut ScenarioFile) -> Result<(), ScenarioError> {
        file.scenario.overlay(&self.timeline);
        file.imds.overlay(&self.imds);
        file.faults.overlay(&self.faults);
        file.metadata.known.overlay(&self.metadata);
        for tag in &self.file.tags {
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
        for m in &self.file.maintenance {
            file.maintenance.push(maintenance_shorthand(m)?);
        }
        Ok(())
    }
}

/// `--maintenance CODE[:IN]`.
fn maintenance_shorthand(m: &str) -> Result<MaintenanceSection, ScenarioError> {
    let (code, issue_in) = match m.split_once(':') {
        Some((code, d)) => (
            code,
            Some(parse_duration(d).map_err(|e| {
                invalid(
                    "command line",
                    "--maintenance",
                    format!("{m:?}"),
                    &e,
                    "CODE[:IN]",
                )
            })?),
        ),
        None => (m, None),
    };
    Ok(MaintenanceSection {
        code: code.to_string(),
        issue_in: issue_in.map(Dur),
        not_before_in: Some(Dur(SHORTHAND_NOT_BEFORE)),
        ..MaintenanceSection::default()
    })
}
