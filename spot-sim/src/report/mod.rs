//! The game-day verdict: from each target's journal, the findings (how it polled, when it
//! first read each event, what it did next) and a verdict against the user's expectations;
//! written as JSON, as an HTML page with an SVG timeline per target, or as the SVG alone.

pub mod bound;
mod html;
mod judge;
mod react_expect;
mod reactions;
mod svg;
mod verdict_args;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use judge::judge;
pub use react_expect::ReactExpectation;
pub use verdict_args::{ReportFormat, VerdictArgs};

use crate::journal::{JournalSnapshot, ReactKind, ReactMatcher, TokenUse};
use crate::scenario::{rfc3339, Event};
use crate::stop::Stopped;

/// What the user expects of every target. Nothing given, nothing is judged: the report states
/// the facts and gives no verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectations {
    /// Each notice read within this long of its issue.
    #[serde(with = "opt_secs")]
    pub detect: Option<Duration>,
    /// Reactions after detection (`--expect-react`), each of which must be seen.
    #[serde(default)]
    pub react: Vec<ReactExpectation>,
    /// Every process of the target exited before the interruption.
    pub drained: bool,
    /// Each notice read before the interruption: a game day's node verdict when its
    /// experiment gives no `--expect-*` (it exists to say whether the node's handlers made it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_in_time: bool,
}

impl Expectations {
    /// Whether anything is expected, so that there is a verdict at all.
    pub fn any(&self) -> bool {
        self.detect.is_some() || !self.react.is_empty() || self.drained || self.read_in_time
    }

    /// What each journal watches its reactions for.
    pub fn react_matchers(&self) -> Vec<ReactMatcher> {
        self.react.iter().map(|e| e.what.clone()).collect()
    }
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v = Option::<f64>::deserialize(d)?;
        Ok(v.filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64))
    }
}

/// The whole report: every target of one spot-sim.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub generated_at: String,
    pub expectations: Expectations,
    /// Every target's verdict passed; `None` when no expectation was given (no verdict).
    pub pass: Option<bool>,
    /// The game day was stopped early (a stop condition, `--max-duration`, an abort): every
    /// target was detached then, and its findings end there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
    pub targets: Vec<TargetReport>,
    /// A live report past its bound (bound.rs): what was counted but not listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_listed: Option<bound::NotListed>,
}

/// One scenario event, and when the handler first read it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventReport {
    pub kind: Event,
    pub issued_at: String,
    /// Not yet issued (a live report before the event is due).
    pub pending: bool,
    pub first_read_at: Option<String>,
    pub detection_latency_s: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PollReport {
    /// Polls: rounds of requests to different paths, less than 250 ms apart.
    pub count: u64,
    pub median_interval_s: Option<f64>,
    pub max_gap_s: Option<f64>,
    pub max_gap_from: Option<String>,
    pub max_gap_to: Option<String>,
    /// `v1`, `v2`, `tokens_issued`, `tokens_used`, beside the other keys in the JSON.
    #[serde(flatten)]
    pub tokens: TokenUse,
    /// Requests made with each token, on average (1 means a new token for every request).
    pub requests_per_token: Option<f64>,
    pub unauthorized: u64,
    /// How the handler got past its 401s, in words.
    pub unauthorized_recovery: Option<String>,
}

/// Something the handler did after detection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReactionReport {
    /// `exec`, `connect` or `exit`.
    pub kind: ReactKind,
    pub at: String,
    pub pid: u32,
    pub comm: String,
    /// A started program's command line, word by word (escaped, cut short).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// A connect's destination: `10.0.0.1:443/tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// In words: `kubectl drain node-1 --force`, `connect 10.0.0.1:443/tcp (kubectl)`.
    pub detail: String,
    /// A command line that did not run before detection (not the polling loop's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_command: bool,
    /// Seconds after the handler read the notice (its first read of any event if it never
    /// did); negative for a reaction to an earlier event, such as the rebalance
    /// recommendation.
    pub latency_s: f64,
    pub before_interruption: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestReport {
    pub at: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// `v1` or `v2`.
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_age_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutboundReport {
    pub destination: String,
    pub comm: String,
    pub pid: u32,
    pub first_at: String,
    pub last_at: String,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcReport {
    pub at: String,
    pub pid: u32,
    pub comm: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Verdict {
    pub pass: bool,
    /// One plain sentence per failed expectation.
    pub reasons: Vec<String>,
    /// What was checked, in words.
    pub checked: Vec<String>,
}

/// Findings and verdict for one target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetReport {
    pub name: String,
    pub first_request_at: Option<String>,
    pub interruption_at: Option<String>,
    pub events: Vec<EventReport>,
    pub polls: PollReport,
    /// The first read of any event.
    pub detected_at: Option<String>,
    /// What the target did after detection, in time order: every program started, the
    /// first connect to each destination, the workload's exit.
    pub reactions: Vec<ReactionReport>,
    /// Programs started after detection (listed or not).
    pub programs_after_detection: u64,
    /// Destinations first connected to after detection, listed.
    pub destinations_after_detection: u64,
    /// Program starts and connects after detection past the journal's bounds (counted, not
    /// listed).
    pub reactions_not_listed: u64,
    /// The most telling reactions: the program that says most of what the handler did (a
    /// command line new since detection, then the most arguments, then the earliest), and the
    /// first TCP
    /// connect (else the first connect). At most one of each, in time order.
    pub most_telling: Vec<ReactionReport>,
    /// Latency of the first reaction of each kind after detection.
    pub first_exec_s: Option<f64>,
    pub first_connect_s: Option<f64>,
    pub workload_exit_s: Option<f64>,
    /// Detection and every reaction listed came before the interruption instant.
    pub all_before_interruption: Option<bool>,
    pub workload_exited_at: Option<String>,
    pub requests_total: u64,
    /// The requests kept (the first 1000 and the latest 4000).
    pub requests: Vec<RequestReport>,
    pub redirects_total: u64,
    pub outbound_total: u64,
    pub outbound: Vec<OutboundReport>,
    pub outbound_other: u64,
    pub execs_total: u64,
    pub execs: Vec<ProcReport>,
    pub exits_total: u64,
    /// `exec`'s command status (exit code, or 128 + signal).
    pub command_status: Option<i32>,
    /// `None` when no expectation was given: the report states facts, it does not judge.
    pub verdict: Option<Verdict>,
}

impl Report {
    pub fn build(snapshots: &[JournalSnapshot], expect: &Expectations, now_ms: u64) -> Report {
        let targets: Vec<_> = snapshots.iter().map(|s| judge(s, expect)).collect();
        Report {
            generated_at: at(now_ms),
            expectations: expect.clone(),
            pass: expect.any().then(|| {
                targets
                    .iter()
                    .all(|t| t.verdict.as_ref().is_some_and(|v| v.pass))
            }),
            stopped: None,
            targets,
            not_listed: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A few lines per target for a terminal: the verdict (or that no expectation was
    /// given), each event's first read, the polls, the most telling reactions and the
    /// reactions in order, and why it failed.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if let Some(s) = &self.stopped {
            let _ = writeln!(
                out,
                "stopped at {} ({}): {}; every target was detached then",
                clock(&s.at),
                s.reason.as_str(),
                html::plain(&s.condition)
            );
        }
        for t in &self.targets {
            let name = crate::report::html::plain(&t.name);
            let _ = match &t.verdict {
                Some(v) => writeln!(
                    out,
                    "{name}: verdict {}",
                    if v.pass { "PASS" } else { "FAIL" }
                ),
                None => writeln!(
                    out,
                    "{name}: no expectation given, facts only (--expect-detect, --expect-react or --expect-drained give a verdict)"
                ),
            };
            for e in t
                .events
                .iter()
                .filter(|e| !e.pending && e.kind != Event::Interruption)
            {
                let read = match (&e.first_read_at, e.detection_latency_s) {
                    (Some(r), Some(l)) => format!("read {} ({l:.1} s later)", clock(r)),
                    _ => "never read".to_string(),
                };
                let _ = writeln!(out, "  {} issued {}: {read}", e.kind, clock(&e.issued_at));
            }
            if let Some(m) = t.polls.median_interval_s {
                let _ = writeln!(
                    out,
                    "  polls: {} every {m:.1} s (longest gap {:.1} s), IMDSv1 {} / IMDSv2 {}",
                    t.polls.count,
                    t.polls.max_gap_s.unwrap_or(0.0),
                    t.polls.tokens.v1,
                    t.polls.tokens.v2
                );
            }
            // Without a verdict to say it, spot-sim's own failure to serve is still said.
            if t.verdict.is_none() && t.requests_total == 0 && t.redirects_total > 0 {
                let _ = writeln!(out, "  {}", judge::not_served(t.redirects_total));
            }
            if t.detected_at.is_some() {
                out.push_str(&reactions::summary_lines(t));
            }
            for r in t.verdict.iter().flat_map(|v| &v.reasons) {
                // Reasons can name a target's command: shown escaped.
                let _ = writeln!(out, "  FAILED: {}", html::plain(r));
            }
        }
        if let Some(n) = &self.not_listed {
            let _ = writeln!(out, "{}", n.sentence());
        }
        out
    }

    /// Writes the report to `path` in the format its extension names, with `mode`, through
    /// the one safe writer (safe_file/write.rs): a temporary file renamed into place, never
    /// through a symlink or into a FIFO someone planted at the path.
    pub fn write(&self, path: &Path, mode: u32) -> Result<(), ReportError> {
        let format = ReportFormat::of(path)?;
        let text = match format {
            ReportFormat::Json => self.to_json(),
            ReportFormat::Html => html::page(self),
            ReportFormat::Svg => svg::document(self),
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        crate::safe_file::write_file(path, text.as_bytes(), mode)
            .map_err(|e| ReportError::from_file(path, &dir, e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("--report {}: unknown extension (use .json, .html or .svg)", path.display())]
    Extension { path: PathBuf },
    #[error("--report {}: folder {} does not exist (create it first, or pick another path)", path.display(), dir.display())]
    NoFolder { path: PathBuf, dir: PathBuf },
    #[error("--report {}: cannot write in {}: {source} (pick a writable folder)", path.display(), dir.display())]
    NotWritable {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the report {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Expectation(String),
    /// The path breaks the safe-write rule (safe_file/): said with the fix.
    #[error("--report {}: {source} ({fix})", path.display())]
    Unsafe {
        path: PathBuf,
        #[source]
        source: crate::safe_file::FileError,
        fix: &'static str,
    },
}

impl ReportError {
    /// A refusal of the safe writer, with what to do about it.
    fn from_file(path: &Path, dir: &Path, e: crate::safe_file::FileError) -> Self {
        use crate::safe_file::FileError;
        let e = match e {
            FileError::Io { source, .. } => {
                return ReportError::NotWritable {
                    path: path.to_path_buf(),
                    dir: dir.to_path_buf(),
                    source,
                }
            }
            other => other,
        };
        let fix = match &e {
            FileError::Io { .. } => "pick a writable folder",
            FileError::UnsafeDir { .. } => "others could swap the file spot-sim writes as root: pick a folder only root or you can write, such as /root or /var/lib/spot-sim, or a new name in a sticky one such as /tmp",
            FileError::NotRegular { .. } => "spot-sim replaces only a regular file: remove it yourself, or pick another path",
            FileError::Foreign { .. } | FileError::Raced { .. } => "pick another name, or a folder only root or you can write",
            _ => "pick another path",
        };
        ReportError::Unsafe {
            path: path.to_path_buf(),
            source: e,
            fix,
        }
    }
}

/// `2026-11-26T08:30:01.123Z`.
pub fn at(ms: u64) -> String {
    // IMDS's whole-second form, with the milliseconds put back in.
    let whole = rfc3339(std::time::UNIX_EPOCH + Duration::from_millis(ms));
    format!("{}.{:03}Z", whole.trim_end_matches('Z'), ms % 1000)
}

/// `08:30:01` (or `08:30:01.123` when the milliseconds matter) from an [`at`] timestamp.
pub fn clock(at: &str) -> String {
    let t = at.split('T').nth(1).unwrap_or(at).trim_end_matches('Z');
    t.strip_suffix(".000").unwrap_or(t).to_string()
}

/// `8 s`, `1.5 s`: the way a person says a duration.
pub(super) fn said(s: f64) -> String {
    if (s - s.round()).abs() < 0.05 {
        format!("{} s", s.round() as i64)
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod reaction_tests;
#[cfg(test)]
mod tests;

/// The verdict metrics in the Prometheus text format: `spot_sim_detection_latency_seconds`
/// per target and event read, and `spot_sim_verdict` (1 pass, 0 fail) per target judged
/// against an expectation.
pub fn prometheus(r: &Report) -> String {
    use std::fmt::Write as _;
    let label = |v: &str| {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut out = String::from(
        "# HELP spot_sim_detection_latency_seconds From an event's issue to the handler's first read of it.\n# TYPE spot_sim_detection_latency_seconds gauge\n",
    );
    for t in &r.targets {
        for e in &t.events {
            if let Some(l) = e.detection_latency_s {
                let _ = writeln!(
                    out,
                    "spot_sim_detection_latency_seconds{{target=\"{}\",event=\"{}\"}} {l}",
                    label(&t.name),
                    e.kind
                );
            }
        }
    }
    out.push_str("# HELP spot_sim_verdict 1 when the target's game-day verdict passes so far, 0 when it fails.\n# TYPE spot_sim_verdict gauge\n");
    // Only targets judged against an expectation have a verdict.
    for t in &r.targets {
        if let Some(v) = &t.verdict {
            let _ = writeln!(
                out,
                "spot_sim_verdict{{target=\"{}\"}} {}",
                label(&t.name),
                u8::from(v.pass)
            );
        }
    }
    out.push_str("# HELP spot_sim_stopped 1 once the game day was stopped early (reason: stop-if, max-duration or abort); every target was detached then.\n# TYPE spot_sim_stopped gauge\n");
    if let Some(s) = &r.stopped {
        let _ = writeln!(
            out,
            "spot_sim_stopped{{reason=\"{}\",condition=\"{}\"}} 1",
            s.reason.as_str(),
            label(&s.condition)
        );
    }
    out
}
