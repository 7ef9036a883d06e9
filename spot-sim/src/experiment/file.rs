//! The experiment file: an `[experiment]` section (who, when, which pods) next to the usual
//! scenario sections (what each selected node's pods see). One file for the whole cluster, read
//! by every node from the same ConfigMap.
//!
//! ```toml
//! [experiment]
//! name = "gameday-2026-11-26"
//! nodes = "30%"                        # or ["ip-10-0-1-23.ec2.internal", ...]
//! start-at = "2026-11-26T14:00:00Z"    # RFC 3339, with an offset
//! stagger = "10m"                      # optional: spread the starts over 10 minutes
//! pods = ["kube-system/aws-node-termination-handler-*"]
//! abort = false                        # the kill switch: true stops the game day everywhere
//!
//! [scenario]
//! interruption-in = "2m"
//! ```

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::Deserialize;

use super::ExperimentError;
use crate::{scenario::Start, settings::Settings, stop::StopCondition, targets::PodSelector};

/// Longest experiment name: it becomes a Prometheus label and a log field, and a Kubernetes
/// label value is at most 63 characters, so the name fits one too.
const MAX_NAME: usize = 63;
/// Longest node name Kubernetes allows (an RFC 1123 subdomain).
const MAX_NODE_NAME: usize = 253;
/// Largest experiment file read: what a ConfigMap can hold.
const MAX_FILE: u64 = 1024 * 1024;
/// Longest stagger: far beyond any game day, far from overflowing the clock.
const MAX_STAGGER: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which nodes take part.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeSet {
    /// This percentage (0 to 100) of the cluster's nodes, chosen by hash.
    Share(f64),
    /// Exactly these nodes, without repeats, in the order of their draw (`node_hash`, then
    /// name), so a node finds itself and its rank by binary search.
    List(Vec<String>),
}

/// A parsed experiment file.
#[derive(Clone, Debug)]
pub struct Experiment {
    pub name: String,
    pub nodes: NodeSet,
    /// When every selected node starts its timeline (before stagger), whole seconds.
    pub start_at: SystemTime,
    /// Selected nodes start spread over `[start_at, start_at + stagger)`.
    pub stagger: Duration,
    /// Every running pod matching one of these on a selected node is a target.
    pub pods: Vec<PodSelector>,
    /// The scenario sections, resolved; its start is set per node by [`Experiment::settings_at`].
    pub settings: Settings,
    /// The kill switch is set: no node takes part.
    pub abort: bool,
    /// With a node list: each listed node's draw (`node_hash`), in the list's order.
    pub(super) draws: Vec<u64>,
}

/// `[experiment]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Section {
    name: Option<String>,
    nodes: Option<toml::Value>,
    start_at: Option<toml::Value>,
    stagger: Option<String>,
    #[serde(default)]
    pods: Vec<String>,
    #[serde(default)]
    abort: bool,
}

/// The whole file as far as this module reads it: the other sections are the scenario's
/// (skipped here, so nothing is buffered twice: a node list may hold 150k names).
#[derive(Debug, Deserialize)]
struct Document {
    experiment: Option<Section>,
}

/// Scenario keys that choose a start: the experiment's `start-at` does that on every node.
const START_KEYS: &[&str] = &["start-in", "manual", "start-at"];

impl Experiment {
    pub fn load(path: &Path) -> Result<Experiment, ExperimentError> {
        use crate::safe_file::FileError;
        // The one safe reader (safe_file/read.rs): a FIFO or a device is refused at once.
        let bytes = crate::safe_file::read_bounded(path, MAX_FILE).map_err(|e| match e {
            FileError::Io { source, .. } => ExperimentError::ReadFile {
                path: path.to_path_buf(),
                source,
            },
            FileError::TooLarge { .. } | FileError::Grew { .. } => invalid(
                path,
                "(file)",
                "(larger than 1 MiB)",
                "too large for an experiment file",
                "a file under 1 MiB, as a ConfigMap holds",
            ),
            FileError::NotRegular { what, .. } => invalid(
                path,
                "(file)",
                format!("({what})"),
                "not a regular file",
                "the experiment's TOML file, e.g. the ConfigMap's key as mounted",
            ),
            other => ExperimentError::ReadFile {
                path: path.to_path_buf(),
                source: std::io::Error::other(other.to_string()),
            },
        })?;
        let text = String::from_utf8(bytes).map_err(|_| ExperimentError::ReadFile {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses experiment TOML text; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Experiment, ExperimentError> {
        let doc: Document = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
        let Some(section) = doc.experiment else {
            return Err(invalid(
                path,
                "experiment",
                "(missing)",
                "no [experiment] section",
                "an [experiment] section with name, nodes, start-at and pods",
            ));
        };
        // The scenario's sections as a table (`FromStr`: the TOML crate's own code, fast even
        // in a debug build).
        let mut table: toml::Table = text.parse().map_err(|e| parse_error(path, text, &e))?;
        table.remove("experiment");
        if let Some(scenario) = table.get("scenario").and_then(|s| s.as_table()) {
            if let Some(key) = START_KEYS.iter().find(|k| scenario.contains_key(**k)) {
                return Err(invalid(
                    path,
                    &format!("scenario.{key}"),
                    scenario[*key].to_string(),
                    "an experiment starts every selected node at experiment.start-at",
                    "remove it; set experiment.start-at (and experiment.stagger)",
                ));
            }
        }
        let settings = Settings::from_toml(path, &scenario_text(text, &table))?;
        from_section(path, section, settings)
    }

    /// The game day's kill switch in the experiment file at `path`: `[experiment] abort =
    /// true`, re-read while the node runs (`--stop-check-every`), stops it.
    pub fn kill_switch(path: &Path) -> StopCondition {
        StopCondition::FileFlag {
            path: path.to_path_buf(),
            table: "experiment",
            key: "abort",
        }
    }

    /// The settings of a node whose timeline starts at `t0`.
    pub fn settings_at(&self, t0: SystemTime) -> Settings {
        let mut s = self.settings.clone();
        s.scenario.start = Start::At(t0);
        s
    }
}

fn from_section(
    path: &Path,
    s: Section,
    settings: Settings,
) -> Result<Experiment, ExperimentError> {
    let name = s.name.unwrap_or_default();
    check_name(path, &name)?;
    let mut nodes = node_set(path, &NODES.take(path, s.nodes)?)?;
    let mut draws = Vec::new();
    if let NodeSet::List(names) = &mut nodes {
        let mut keyed: Vec<(u64, String)> = names
            .drain(..)
            .map(|n| (super::node_hash(&name, &n), n))
            .collect();
        keyed.sort_unstable();
        (draws, *names) = keyed.into_iter().unzip();
    }
    let start_at = start_at(path, &START_AT.take(path, s.start_at)?)?;
    let stagger = match &s.stagger {
        None => Duration::ZERO,
        Some(text) => {
            let d = humantime::parse_duration(text.trim()).map_err(|e| {
                invalid(
                    path,
                    "experiment.stagger",
                    format!("{text:?}"),
                    &format!("not a duration ({e})"),
                    "a duration like \"90s\", \"10m\" or \"1h\"",
                )
            })?;
            if d > MAX_STAGGER {
                return Err(invalid(
                    path,
                    "experiment.stagger",
                    format!("{text:?}"),
                    "too long",
                    "at most 7 days",
                ));
            }
            d
        }
    };
    if s.pods.is_empty() {
        return Err(invalid(
            path,
            "experiment.pods",
            "[]",
            "no pods to target on the selected nodes",
            "selectors as --pod takes them, e.g. [\"kube-system/aws-node-termination-handler-*\"]",
        ));
    }
    let pods = s
        .pods
        .iter()
        .map(|p| {
            p.parse::<PodSelector>().map_err(|_| {
                invalid(
                    path,
                    "experiment.pods",
                    format!("{p:?}"),
                    "not a pod selector",
                    "NAMESPACE/NAME or NAMESPACE/PREFIX*",
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Experiment {
        name,
        nodes,
        start_at,
        stagger,
        pods,
        settings,
        abort: s.abort,
        draws,
    })
}

fn check_name(path: &Path, name: &str) -> Result<(), ExperimentError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        return Ok(());
    }
    Err(invalid(
        path,
        "experiment.name",
        format!("{}", name.escape_debug())
            .chars()
            .take(80)
            .collect::<String>(),
        if name.is_empty() {
            "the experiment has no name (it decides which nodes are selected, and labels the results)"
        } else {
            "not a usable name"
        },
        "1 to 63 letters, digits, '-', '_' or '.', e.g. \"gameday-2026-11-26\"",
    ))
}

/// Whether `name` can be a Kubernetes node name (an RFC 1123 subdomain): it is printed,
/// logged and used as a label, so nothing else gets that far.
pub fn is_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
}

fn node_set(path: &Path, v: &toml::Value) -> Result<NodeSet, ExperimentError> {
    const ALLOWED: &str = "a share like \"30%\" (0% to 100%) or a list of node names";
    match v {
        toml::Value::String(s) => {
            let share = s
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<f64>().ok())
                .filter(|n| n.is_finite());
            match share {
                Some(n) if (0.0..=100.0).contains(&n) => Ok(NodeSet::Share(n)),
                Some(_) => Err(invalid(
                    path,
                    "experiment.nodes",
                    format!("{s:?}"),
                    "share outside 0-100 %",
                    ALLOWED,
                )),
                None => Err(invalid(
                    path,
                    "experiment.nodes",
                    format!("{s:?}"),
                    "not a share",
                    ALLOWED,
                )),
            }
        }
        toml::Value::Array(items) => {
            let mut names = Vec::new();
            // A set, so 150k names are checked in linear time (a scan per name was quadratic:
            // 55 s of CPU on every node at start).
            let mut seen = std::collections::HashSet::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(n) if is_node_name(n) => {
                        if seen.insert(n) {
                            names.push(n.to_string());
                        }
                    }
                    _ => {
                        return Err(invalid(
                            path,
                            "experiment.nodes",
                            item.to_string(),
                            "not a node name",
                            "node names as `kubectl get nodes` prints them (lowercase letters, digits, '-', '.')",
                        ))
                    }
                }
            }
            Ok(NodeSet::List(names))
        }
        other => Err(invalid(
            path,
            "experiment.nodes",
            other.to_string(),
            "neither a share nor a list",
            ALLOWED,
        )),
    }
}

/// `start-at` as a quoted RFC 3339 string or a bare TOML offset date-time.
fn start_at(path: &Path, v: &toml::Value) -> Result<SystemTime, ExperimentError> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => other.to_string(),
    };
    // The one date bound (scenario/dates.rs): a start-at near 9999 once panicked in the
    // verdict with pods attached.
    let parsed = crate::scenario::dates::parse_rfc3339(&text).map_err(|e| match e {
        crate::scenario::dates::Rfc3339Error::Syntax => invalid(
            path,
            "experiment.start-at",
            format!("{text:?}"),
            "not an RFC 3339 instant with an offset (nodes may not share a time zone)",
            "e.g. \"2026-11-26T14:00:00Z\" or \"2026-11-26T15:00:00+01:00\"",
        ),
        crate::scenario::dates::Rfc3339Error::OutOfRange => invalid(
            path,
            "experiment.start-at",
            format!("{text:?}"),
            "outside the dates spot-sim accepts",
            crate::scenario::dates::ALLOWED,
        ),
    })?;
    if parsed.nanosecond() != 0 {
        return Err(invalid(
            path,
            "experiment.start-at",
            format!("{text:?}"),
            "has a fraction of a second (IMDS timestamps are whole seconds)",
            "whole seconds, e.g. \"2026-11-26T14:00:00Z\"",
        ));
    }
    Ok(SystemTime::from(parsed))
}

/// A field the experiment cannot do without, and what to say when it is missing.
struct Required {
    field: &'static str,
    problem: &'static str,
    allowed: &'static str,
}

const NODES: Required = Required {
    field: "experiment.nodes",
    problem: "which nodes take part is not said",
    allowed: "a share like \"30%\" or a list of node names",
};

const START_AT: Required = Required {
    field: "experiment.start-at",
    problem: "when the game day starts is not said",
    allowed: "an RFC 3339 instant like \"2026-11-26T14:00:00Z\"",
};

impl Required {
    fn take<T>(&self, path: &Path, value: Option<T>) -> Result<T, ExperimentError> {
        value.ok_or_else(|| invalid(path, self.field, "(missing)", self.problem, self.allowed))
    }
}

fn invalid(
    path: &Path,
    field: &str,
    value: impl ToString,
    problem: &str,
    allowed: &str,
) -> ExperimentError {
    ExperimentError::Invalid {
        path: path.to_path_buf(),
        field: field.to_string(),
        value: value.to_string(),
        problem: problem.to_string(),
        allowed: allowed.to_string(),
    }
}

/// The scenario sections alone, for the scenario parser. The `[experiment]` lines are blanked
/// rather than removed, so the scenario parser's errors keep the file's line numbers; when the
/// section is written in a way blanking cannot isolate (dotted keys, an inline table), the rest
/// of the document is written out again instead.
fn scenario_text(text: &str, rest: &toml::Table) -> String {
    let mut inside = false;
    let blanked: String = text
        .lines()
        .map(|line| {
            if let Some(header) = table_header(line) {
                inside = header == "experiment";
            }
            if inside {
                "\n".to_string()
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    match toml::from_str::<toml::Table>(&blanked) {
        Ok(t) if t == *rest => blanked,
        _ => toml::to_string(rest).unwrap_or_default(),
    }
}

/// `[name]` or `[[name]]` → `name`.
fn table_header(line: &str) -> Option<&str> {
    let line = line.split('#').next().unwrap_or("").trim();
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(inner);
    let inner = inner.trim();
    let bare = !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    bare.then_some(inner)
}

/// toml's own message spans several lines; keep one, with the line number.
fn parse_error(path: &Path, text: &str, err: &toml::de::Error) -> ExperimentError {
    let line = err
        .span()
        .and_then(|s| text.get(..s.start))
        .map_or(1, |before| before.matches('\n').count() + 1);
    let mut problem = err.message().replace('\n', " ");
    // Name the field when the message does not (a wrong type says only what it expected).
    if let Some((key, _)) = text.lines().nth(line - 1).and_then(|l| l.split_once('=')) {
        let key = key.trim();
        if !problem.contains(&format!("`{key}`")) {
            problem = format!("field `{key}`: {problem}");
        }
    }
    ExperimentError::Parse {
        path: PathBuf::from(path),
        line,
        problem,
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
