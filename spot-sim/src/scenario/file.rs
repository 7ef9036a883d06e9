//! The scenario file (TOML): its sections and fields as written on disk, and how a parse error
//! becomes a one-line message naming the file, the line, the field and the allowed values.
//!
//! Field names are the long option names (`interruption-in`), so one name works in both places.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::args::OnInterrupt;
use super::{Action, ScenarioError};
use crate::imds::Imdsv2Mode;

/// A whole scenario file; every field optional so the command line and defaults can fill gaps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ScenarioFile {
    #[serde(default)]
    pub scenario: ScenarioSection,
    #[serde(default)]
    pub imds: ImdsSection,
    #[serde(default)]
    pub faults: FaultsSection,
    #[serde(default)]
    pub metadata: MetadataSection,
    /// `[[maintenance]]` tables, one per scheduled event.
    #[serde(default)]
    pub maintenance: Vec<MaintenanceSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ScenarioSection {
    pub start_in: Option<Dur>,
    pub manual: Option<bool>,
    pub interruption_in: Option<Dur>,
    pub rebalance_lead: Option<Dur>,
    pub action: Option<Action>,
    pub rebalance: Option<bool>,
    pub on_interrupt: Option<OnInterrupt>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ImdsSection {
    pub imdsv2: Option<Imdsv2Mode>,
    pub passthrough: Option<bool>,
    pub passthrough_upstream: Option<String>,
    pub passthrough_timeout: Option<Dur>,
    pub allow_credentials: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FaultsSection {
    pub error_503_rate: Option<f64>,
    pub latency: Option<Dur>,
    pub token_ttl: Option<u64>,
}

/// `[metadata]`: the typed fields below, plus any key of the IMDS catalogue (imds/catalogue.rs)
/// in `more`, checked against the catalogue when settings are built (serde cannot deny unknown
/// fields next to a flattened map).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct MetadataSection {
    pub instance_id: Option<String>,
    pub instance_type: Option<String>,
    pub ami_id: Option<String>,
    pub hostname: Option<String>,
    pub local_hostname: Option<String>,
    pub local_ipv4: Option<String>,
    pub mac: Option<String>,
    pub availability_zone: Option<String>,
    pub region: Option<String>,
    pub account_id: Option<String>,
    pub architecture: Option<String>,
    pub autoscaling: Option<bool>,
    /// `user-data`, inline.
    pub user_data: Option<String>,
    /// `user-data` read from this file (relative to the scenario file).
    pub user_data_file: Option<std::path::PathBuf>,
    #[serde(flatten)]
    pub more: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct MaintenanceSection {
    pub code: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    pub not_before: String,
    #[serde(default)]
    pub not_after: Option<String>,
}

/// A duration written the humantime way: "90s", "2m", "1h 30m".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses "90s", "2m", "1h 30m"; the error says how to write one.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration `{s}` ({e}); write it like \"90s\", \"2m\" or \"1h 30m\"")
    })
}

impl ScenarioFile {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ScenarioError> {
        toml::from_str(text).map_err(|e| parse_error(path, text, &e))
    }
}

/// toml's own Display spans several lines with a source excerpt; we want one line that still
/// names the field, so take the key from the offending line.
fn parse_error(path: &Path, text: &str, err: &toml::de::Error) -> ScenarioError {
    let problem = err.message().replace('\n', " ");
    let Some(span) = err.span() else {
        return ScenarioError::Parse {
            path: path.to_path_buf(),
            line: 1,
            problem,
        };
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or("").trim();
    let problem = match line_text.split_once('=') {
        Some((key, _)) if !problem.contains(&format!("`{}`", key.trim())) => {
            format!("field `{}`: {problem}", key.trim())
        }
        _ => problem,
    };
    ScenarioError::Parse {
        path: path.to_path_buf(),
        line,
        problem,
    }
}
