//! `--expect-*` and `--report`, shared by `exec` and `run`, checked before anything starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Expectations, ReactExpectation, ReportError};
use crate::journal::ReactMatcher;
use crate::scenario::{Action, Scenario, NOTICE_LEAD};
use crate::settings::parse_duration;

/// What the rehearsal is expected to show, and where its report goes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct VerdictArgs {
    /// Expect each interruption notice to be read within DURATION of its issue. With any
    /// --expect-*, the exit status is 0 when every expectation holds and 3 when one fails
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expect_detect: Option<Duration>,
    /// Expect the handler to react after it reads the notice: `exec kubectl drain within 5s`
    /// (a program whose command line has these words in this order, the first naming it),
    /// `connect 10.0.0.1:443 within 5s` or `connect :443` (an outbound connect), `exit within
    /// 1m` (the workload exiting), or a duration alone (any of these within it). Without
    /// `within`: before the interruption. Repeatable: each must hold
    #[arg(long, value_name = "REACTION")]
    pub expect_react: Vec<String>,
    /// Expect every process of the target to have exited before the interruption
    #[arg(long)]
    pub expect_drained: bool,
    /// Write the game-day report here when spot-sim ends: .json, .html (a page with a timeline
    /// per target) or .svg (the timeline alone). Repeatable
    #[arg(long, value_name = "FILE")]
    pub report: Vec<PathBuf>,
    /// Mode of the --report files, in octal (e.g. 0640). Reports hold the workload's command
    /// lines, so only their owner reads them by default [default: 0600]
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub report_mode: Option<u32>,
}

/// `0640` or `640`: permission bits only (no setuid, setgid or sticky bit on a report).
fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("invalid mode `{s}`: give octal permission bits like 0600 or 0640"))
}

/// The formats `--report` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Html,
    Svg,
}

impl ReportFormat {
    pub fn of(path: &Path) -> Result<Self, ReportError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => Ok(Self::Json),
            Some("html" | "htm") => Ok(Self::Html),
            Some("svg") => Ok(Self::Svg),
            _ => Err(ReportError::Extension {
                path: path.to_path_buf(),
            }),
        }
    }
}

impl VerdictArgs {
    /// The mode the report files are written with.
    pub fn report_mode(&self) -> u32 {
        self.report_mode.unwrap_or(crate::safe_file::DEFAULT_MODE)
    }

    /// The expectations given, `--expect-react`'s parsed.
    pub fn expectations(&self) -> Result<Expectations, ReportError> {
        let react = self
            .expect_react
            .iter()
            .map(|s| {
                s.parse::<ReactExpectation>()
                    .map_err(ReportError::Expectation)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expectations {
            detect: self.expect_detect,
            react,
            drained: self.expect_drained,
            read_in_time: false,
        })
    }

    /// Refuses, before anything starts, what could only fail at the end: a report that cannot
    /// be written, an expectation that cannot be read or can never be checked against
    /// `scenario`; returns the expectations. `reactions_visible`: whether the kernel shows
    /// programs starting and processes exiting.
    pub fn check(
        &self,
        scenario: &Scenario,
        reactions_visible: bool,
    ) -> Result<Expectations, ReportError> {
        for path in &self.report {
            check_report_path(path)?;
        }
        let expect = self.expectations()?;
        if self.expect_detect.is_some_and(|d| d.is_zero()) {
            return Err(ReportError::Expectation(
                "--expect-detect 0s can never hold: nothing happens in no time (give a duration such as 5s)".into(),
            ));
        }
        if let Some(e) = expect
            .react
            .iter()
            .find(|e| e.within.is_some_and(|d| d.is_zero()))
        {
            return Err(ReportError::Expectation(format!(
                "--expect-react {:?} can never hold: nothing happens in no time (give a duration such as 5s)",
                e.to_string()
            )));
        }
        // The window between the notice and the interruption: a longer --expect-detect would
        // pass a handler that reads the notice only once the instance is gone.
        let window = notice_window(scenario);
        if let Some(d) = self.expect_detect.filter(|d| *d > window) {
            return Err(ReportError::Expectation(format!(
                "--expect-detect {} is longer than the {} between the notice and the interruption in this scenario: it cannot tell a handler that made it from one that did not (use at most {})",
                humantime::format_duration(d),
                humantime::format_duration(window),
                humantime::format_duration(window)
            )));
        }
        // Connects are seen by the connect programs themselves; programs and exits need the
        // tracepoints.
        let needs_processes = expect
            .react
            .iter()
            .any(|e| !matches!(e.what, ReactMatcher::Connect(_)));
        if (needs_processes || self.expect_drained) && !reactions_visible {
            return Err(ReportError::Expectation(
                "--expect-react/--expect-drained need the kernel's view of the target's processes (BTF tracepoints sched_process_exec/exit), which this kernel did not allow: drop the option, expect only a `connect`, or run on a kernel with BTF".into(),
            ));
        }
        Ok(expect)
    }
}

/// How long the instance answers after the notice.
fn notice_window(scenario: &Scenario) -> Duration {
    let s = scenario.schedule(std::time::UNIX_EPOCH + Duration::from_secs(1 << 30));
    let w = s
        .interrupted_at
        .duration_since(s.notice_at)
        .unwrap_or(Duration::ZERO);
    if scenario.action == Action::Hibernate {
        w.min(NOTICE_LEAD)
    } else {
        w
    }
}

/// The folder must exist and be writable now, not at the end of the rehearsal.
fn check_report_path(path: &Path) -> Result<(), ReportError> {
    ReportFormat::of(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(ReportError::NoFolder {
            path: path.to_path_buf(),
            dir,
        });
    }
    // The same checks and the same temporary-file dance as the write at the end
    // (safe_file/write.rs): a report that would be refused then is refused now.
    crate::safe_file::check_writable(path).map_err(|e| ReportError::from_file(path, &dir, e))?;
    Ok(())
}
