//! The scenario file (TOML): its sections and fields as written on disk, and how a parse error
//! becomes a one-line message naming the file, the line, the field and the allowed values.
//!
//! Keys are the long option names (`interruption-in`), so one name works in both places: both
//! come from one declaration (`sections.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::sections::{FaultsSection, ImdsSection, MetadataSection, ScenarioSection};
use super::values::{Dur, TimeText};
use crate::scenario::{ScenarioError, MAX_SCENARIO_BYTES};

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
    pub metadata: MetadataTable,
    /// `[[maintenance]]` tables, one per scheduled event.
    #[serde(default)]
    pub maintenance: Vec<MaintenanceSection>,
    /// `[tags]`: the instance's tags, shown under `meta-data/tags/instance/` when
    /// `instance-metadata-tags = "enabled"`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// `[metadata]`: the declared fields, plus any key of the IMDS catalogue (imds/catalogue.rs)
/// in `more`, checked against the catalogue when settings are built (serde cannot deny unknown
/// fields next to a flattened map).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MetadataTable {
    #[serde(flatten)]
    pub known: MetadataSection,
    #[serde(flatten)]
    pub more: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct MaintenanceSection {
    pub code: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    /// From t0 to the moment the event appears [default: 0s].
    #[serde(default)]
    pub issue_in: Option<Dur>,
    /// Absolute dates, in IMDS's format ("21 Jan 2026 09:00:00 GMT") or RFC 3339 (a string
    /// or a TOML date-time).
    #[serde(default)]
    pub not_before: Option<TimeText>,
    #[serde(default)]
    pub not_after: Option<TimeText>,
    #[serde(default)]
    pub not_before_deadline: Option<TimeText>,
    /// The same dates counted from the event's issue.
    #[serde(default)]
    pub not_before_in: Option<Dur>,
    #[serde(default)]
    pub not_after_in: Option<Dur>,
    #[serde(default)]
    pub not_before_deadline_in: Option<Dur>,
    /// From its issue to its cancellation or completion.
    #[serde(default)]
    pub cancel_in: Option<Dur>,
    #[serde(default)]
    pub complete_in: Option<Dur>,
}

impl ScenarioFile {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = read_bounded(path)?;
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

/// Reads a scenario file that is a regular file of at most [`MAX_SCENARIO_BYTES`], through
/// the one safe reader (safe_file/read.rs): non-blocking, so a FIFO cannot hang us (and
/// "ghost-add" a target when written later), and checked on the open descriptor.
pub(crate) fn read_bounded(path: &Path) -> Result<String, ScenarioError> {
    use crate::safe_file::FileError;
    let refuse = |problem: String| ScenarioError::NotAScenarioFile {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = crate::safe_file::read_bounded(path, MAX_SCENARIO_BYTES).map_err(|e| match e {
        FileError::NotRegular { what, .. } => refuse(what.to_string()),
        FileError::TooLarge { len, .. } => refuse(format!("it is {len} bytes")),
        FileError::Grew { .. } => refuse("it grew beyond the limit while being read".into()),
        FileError::Io { source, .. } => ScenarioError::ReadFile {
            path: path.to_path_buf(),
            source,
        },
        other => refuse(other.to_string()),
    })?;
    String::from_utf8(bytes).map_err(|_| ScenarioError::ReadFile {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

#[cfg(test)]
mod bound_tests {
    use super::*;

    #[test]
    fn dev_zero_a_fifo_a_directory_and_a_big_file_are_refused_naming_the_file_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_SCENARIO_BYTES as usize + 1]).unwrap();
        let at_limit = dir.path().join("ok.toml");
        let mut text = vec![b'#'; MAX_SCENARIO_BYTES as usize - 1];
        text.push(b'\n');
        std::fs::write(&at_limit, &text).unwrap();
        for (path, what) in [
            (Path::new("/dev/zero"), "a device"),
            (fifo.as_path(), "a FIFO"),
            (dir.path(), "a directory"),
            (big.as_path(), "1048577 bytes"),
        ] {
            let started = std::time::Instant::now();
            let e = ScenarioFile::load(path).unwrap_err().to_string();
            assert!(started.elapsed() < std::time::Duration::from_secs(1), "{e}");
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(e.contains(what), "{e}");
            assert!(e.contains("1024 KiB"), "{e}");
        }
        assert!(ScenarioFile::load(&at_limit).is_ok());
    }
}

#[cfg(test)]
mod passthrough_timeout_tests {
    use std::path::Path;

    use crate::settings::Settings;

    #[test]
    fn a_zero_passthrough_timeout_is_refused_naming_the_field() {
        let e = Settings::from_toml(
            Path::new("s.toml"),
            "[imds]\npassthrough = true\npassthrough-timeout = \"0s\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("imds.passthrough-timeout"), "{e}");
        assert!(e.contains("positive"), "{e}");
        assert!(Settings::from_toml(
            Path::new("s.toml"),
            "[imds]\npassthrough = true\npassthrough-timeout = \"1s\"\n",
        )
        .is_ok());
    }
}
