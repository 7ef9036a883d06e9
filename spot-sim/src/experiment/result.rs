//! A node's result of a game day, in the two shapes a cluster already collects: one JSON line
//! on stdout (for the log stack) and Prometheus series labelled `experiment` and `node` (for
//! the cluster's Prometheus). Nothing to deploy beyond the DaemonSet.
//!
//! The share of selected nodes whose handlers passed, in PromQL:
//!
//! ```promql
//! sum by (experiment) (spot_sim_experiment_passed)
//!   / sum by (experiment) (spot_sim_experiment_selected)
//! ```
//!
//! `spot_sim_experiment_passed` appears on a selected node once its interruption has come (a
//! node still running counts as not passed yet).

use std::fmt::Write as _;

use serde::Serialize;

use crate::report::TargetReport;
use crate::scenario::Event;
use crate::stop::Stopped;

/// What one target (pod) did during the game day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TargetResult {
    /// `pod NAMESPACE/NAME`.
    pub name: String,
    pub uid: String,
    pub requests: u64,
    /// Read the rebalance recommendation (answered 200).
    pub read_rebalance: bool,
    /// Read the interruption notice. The responder stops answering at the interruption, so a
    /// notice answered 200 was read before it.
    pub read_notice: bool,
    /// The game-day report's verdict for this pod (`None` before it was asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// Why it failed, one sentence each (empty when it passed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl TargetResult {
    /// From the game-day report's own findings for the pod: the same reads the report shows
    /// (its canonical paths: any API version, any slashes), and its verdict.
    pub fn from_report(uid: &str, t: &TargetReport) -> TargetResult {
        let read = |event| {
            t.events
                .iter()
                .any(|e| e.kind == event && e.first_read_at.is_some())
        };
        TargetResult {
            name: t.name.clone(),
            uid: uid.to_string(),
            requests: t.requests_total,
            read_rebalance: read(Event::Rebalance),
            read_notice: read(Event::Notice),
            passed: t.verdict.as_ref().map(|v| v.pass),
            reasons: t
                .verdict
                .as_ref()
                .map(|v| v.reasons.clone())
                .unwrap_or_default(),
        }
    }
}

/// A node's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Not selected: nothing was attached.
    Skipped,
    /// Selected; the interruption has not come yet.
    Pending,
    /// Selected, but no matching pod ran here by the interruption.
    NoTargets,
    /// Selected, and the game day was stopped here before its interruption (a stop
    /// condition, `--max-duration`, the kill switch): nothing is decided.
    Stopped,
    Passed,
    Failed,
}

/// The one place a node's verdict is decided: every target passed the game-day report's
/// verdict (the `--expect-*` given, or by default the notice read before the interruption);
/// a target the report has not judged yet falls back to "read the notice". A game day stopped
/// before the node's interruption decides nothing.
pub fn verdict(
    selected: bool,
    finished: bool,
    stopped_early: bool,
    targets: &[TargetResult],
) -> Verdict {
    match (selected, finished) {
        (false, _) => Verdict::Skipped,
        _ if stopped_early => Verdict::Stopped,
        (true, false) => Verdict::Pending,
        (true, true) if targets.is_empty() => Verdict::NoTargets,
        (true, true) if targets.iter().all(|t| t.passed.unwrap_or(t.read_notice)) => {
            Verdict::Passed
        }
        (true, true) => Verdict::Failed,
    }
}

/// What a node reports about the game day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeResult {
    pub experiment: String,
    pub node: String,
    pub selected: bool,
    /// The node's t0 (start-at plus its stagger), RFC 3339; selected nodes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// Unix seconds of the same instant, for the metrics.
    #[serde(skip)]
    pub start_unix: Option<u64>,
    /// The interruption has come.
    pub finished: bool,
    pub targets: Vec<TargetResult>,
    pub verdict: Verdict,
    /// The game day was stopped on this node (at any time: after the interruption, the
    /// verdict stands).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
}

impl NodeResult {
    /// The experiment selects this node, its timeline starting at `t0`.
    pub fn select(&mut self, t0: std::time::SystemTime) {
        self.selected = true;
        self.start_at = Some(crate::scenario::rfc3339(t0));
        self.start_unix = t0
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
        self.verdict = verdict(true, false, false, &[]);
    }

    /// The JSON log line (no newline); `spot_sim` tags it for log queries.
    pub fn json_line(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("spot_sim".into(), "experiment-result".into());
        }
        v.to_string()
    }

    /// The Prometheus series of this node's result.
    pub fn metrics(&self) -> String {
        let labels = format!(
            "experiment=\"{}\",node=\"{}\"",
            label(&self.experiment),
            label(&self.node)
        );
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: Option<u64>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            if let Some(v) = value {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        };
        let selected = self.selected.then_some(());
        gauge(
            "spot_sim_experiment_selected",
            "1 when this node takes part in the experiment, 0 when it is skipped.",
            Some(u64::from(self.selected)),
        );
        gauge(
            "spot_sim_experiment_start_time_seconds",
            "When this node's timeline starts (start-at plus its stagger), Unix seconds.",
            self.start_unix,
        );
        gauge(
            "spot_sim_experiment_targets",
            "Pods targeted on this node.",
            selected.map(|_| self.targets.len() as u64),
        );
        gauge(
            "spot_sim_experiment_targets_read_notice",
            "Pods that read the interruption notice before the interruption.",
            selected.map(|_| self.targets.iter().filter(|t| t.read_notice).count() as u64),
        );
        gauge(
            "spot_sim_experiment_finished",
            "1 once this node's interruption has come.",
            selected.map(|_| u64::from(self.finished)),
        );
        let decided = matches!(
            self.verdict,
            Verdict::Passed | Verdict::Failed | Verdict::NoTargets
        );
        gauge(
            "spot_sim_experiment_passed",
            "1 when the handlers on this node passed, 0 when not; present once decided.",
            decided.then_some(u64::from(self.verdict == Verdict::Passed)),
        );
        out
    }
}

/// Label values escaped as the exposition format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(read_notice: bool) -> TargetResult {
        TargetResult {
            name: "pod a/b".into(),
            read_notice,
            ..Default::default()
        }
    }

    #[test]
    fn a_node_passes_when_every_target_read_the_notice() {
        assert_eq!(verdict(false, true, false, &[]), Verdict::Skipped);
        assert_eq!(
            verdict(true, false, false, &[target(true)]),
            Verdict::Pending
        );
        assert_eq!(verdict(true, true, false, &[]), Verdict::NoTargets);
        assert_eq!(verdict(true, true, false, &[target(true)]), Verdict::Passed);
        assert_eq!(
            verdict(true, true, false, &[target(true), target(false)]),
            Verdict::Failed
        );
        // Stopped before the interruption: neither passed nor failed, whatever the pods did.
        for finished in [false, true] {
            let v = verdict(true, finished, true, &[target(false)]);
            assert_eq!(v, Verdict::Stopped);
        }
        assert_eq!(verdict(false, false, true, &[]), Verdict::Skipped);
    }

    #[test]
    fn metrics_carry_experiment_and_node_labels_and_passed_only_once_decided() {
        let mut r = NodeResult {
            experiment: "gd".into(),
            node: "n-1".into(),
            selected: true,
            start_at: Some("2026-11-26T14:00:00Z".into()),
            start_unix: Some(1_795_000_000),
            finished: false,
            targets: vec![target(true)],
            verdict: Verdict::Pending,
            stopped: None,
        };
        let m = r.metrics();
        assert!(m.contains("spot_sim_experiment_selected{experiment=\"gd\",node=\"n-1\"} 1"));
        assert!(!m.contains("spot_sim_experiment_passed{"), "{m}");
        r.finished = true;
        r.verdict = verdict(true, true, false, &r.targets);
        assert!(r
            .metrics()
            .contains("spot_sim_experiment_passed{experiment=\"gd\",node=\"n-1\"} 1"));
        let line: serde_json::Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(line["verdict"], "passed");
        assert_eq!(line["spot_sim"], "experiment-result");
        assert!(!r.json_line().contains('\n'));
        assert!(line.get("stopped").is_none(), "{line}");

        // Aborted before the interruption: the line says why and when, and nothing is decided.
        r.stopped = Some(Stopped::new(
            crate::stop::Halt {
                reason: crate::stop::StopReason::Abort,
                condition: "experiment.abort in /e.toml: set to true".into(),
            },
            "2026-11-26T14:00:05.000Z".into(),
        ));
        r.verdict = verdict(true, true, true, &r.targets);
        let line: serde_json::Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(line["verdict"], "stopped");
        assert_eq!(line["stopped"]["reason"], "abort");
        assert_eq!(line["stopped"]["at"], "2026-11-26T14:00:05.000Z");
        assert!(!r.metrics().contains("spot_sim_experiment_passed{"));
    }
}
