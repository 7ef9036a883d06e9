//! The metadata tree as the instance shows it at one instant: static values plus whatever the
//! timeline has issued, with directory listings that follow the phase.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::config::Metadata;
use crate::scenario::{rfc3339, Action, Phase, Schedule};

/// A file or a directory of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Leaf(String),
    Dir(Dir),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dir {
    pub entries: BTreeMap<String, Node>,
    /// The real IMDS lists `/` and `/latest/` without trailing slashes, deeper levels with them.
    pub slash_subdirs: bool,
}

impl Dir {
    fn new() -> Self {
        Dir {
            entries: BTreeMap::new(),
            slash_subdirs: true,
        }
    }

    fn leaf(mut self, name: &str, value: impl Into<String>) -> Self {
        self.entries
            .insert(name.to_string(), Node::Leaf(value.into()));
        self
    }

    fn dir(mut self, name: &str, dir: Dir) -> Self {
        self.entries.insert(name.to_string(), Node::Dir(dir));
        self
    }

    /// Newline-separated names, sub-directories marked with `/` where IMDS marks them.
    pub fn listing(&self) -> String {
        let names: Vec<String> = self
            .entries
            .iter()
            .map(|(name, node)| match node {
                Node::Dir(_) if self.slash_subdirs => format!("{name}/"),
                _ => name.clone(),
            })
            .collect();
        names.join("\n")
    }

    /// The node at `segments` below this directory.
    pub fn get(&self, segments: &[&str]) -> Option<&Node> {
        let (first, rest) = segments.split_first()?;
        let node = self.entries.get(*first)?;
        match (node, rest.is_empty()) {
            (_, true) => Some(node),
            (Node::Dir(d), false) => d.get(rest),
            (Node::Leaf(_), false) => None,
        }
    }
}

/// What the tree depends on at one instant.
pub(crate) struct Snapshot<'a> {
    pub metadata: &'a Metadata,
    pub phase: Phase,
    pub schedule: Option<Schedule>,
    pub action: Action,
    /// `pendingTime` of the identity document: when the responder was created.
    pub pending_time: &'a str,
}

/// The `meta-data/` entries whose content spot-sim owns even with passthrough on.
pub(crate) const SIMULATED: &[&str] = &[
    "autoscaling",
    "events",
    "instance-action",
    "instance-life-cycle",
    "spot",
];

/// The whole tree, from `/`.
pub(crate) fn build(s: &Snapshot<'_>) -> Dir {
    let mut latest = Dir::new().dir("meta-data", meta_data(s)).dir(
        "dynamic",
        Dir::new().dir(
            "instance-identity",
            Dir::new().leaf("document", identity_document(s)),
        ),
    );
    latest.slash_subdirs = false;
    let mut root = Dir::new().dir("latest", latest);
    root.slash_subdirs = false;
    root
}

fn meta_data(s: &Snapshot<'_>) -> Dir {
    let m = s.metadata;
    let mut dir = Dir::new()
        .leaf("ami-id", &m.ami_id)
        .leaf("ami-launch-index", "0")
        .leaf("hostname", &m.hostname)
        .leaf("instance-action", "none")
        .leaf("instance-id", &m.instance_id)
        .leaf("instance-life-cycle", "spot")
        .leaf("instance-type", &m.instance_type)
        .leaf("local-hostname", &m.local_hostname)
        .leaf("local-ipv4", &m.local_ipv4)
        .leaf("mac", &m.mac)
        .dir(
            "placement",
            Dir::new()
                .leaf("availability-zone", &m.availability_zone)
                .leaf("region", &m.region),
        )
        .dir(
            "services",
            Dir::new()
                .leaf("domain", "amazonaws.com")
                .leaf("partition", "aws"),
        )
        .dir("events", events(s));
    if m.autoscaling {
        let state = if s.phase == Phase::Interrupted {
            "Terminated"
        } else {
            "InService"
        };
        dir = dir.dir(
            "autoscaling",
            Dir::new().leaf("target-lifecycle-state", state),
        );
    }
    if let (Some(schedule), true) = (s.schedule, s.phase >= Phase::Notice) {
        let time = rfc3339(schedule.action_time);
        let mut spot = Dir::new().leaf(
            "instance-action",
            format!(
                "{{\"action\": \"{}\", \"time\": \"{time}\"}}",
                s.action.as_str()
            ),
        );
        // termination-time only ever announced a termination.
        if s.action == Action::Terminate {
            spot = spot.leaf("termination-time", time);
        }
        dir = dir.dir("spot", spot);
    }
    dir
}

fn events(s: &Snapshot<'_>) -> Dir {
    let mut events = Dir::new().dir(
        "maintenance",
        Dir::new()
            .leaf("history", "[]")
            .leaf("scheduled", maintenance_json(s.metadata)),
    );
    let rebalance = s.schedule.and_then(|sch| sch.rebalance_at);
    if let (Some(at), true) = (rebalance, s.phase >= Phase::Rebalance) {
        events = events.dir(
            "recommendations",
            Dir::new().leaf(
                "rebalance",
                format!("{{\"noticeTime\": \"{}\"}}", rfc3339(at)),
            ),
        );
    }
    events
}

fn json(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The layout IMDS uses: `[ {` ... `} ]`, ` : ` between key and value.
fn maintenance_json(m: &Metadata) -> String {
    if m.maintenance.is_empty() {
        return "[]".to_string();
    }
    let events: Vec<String> = m
        .maintenance
        .iter()
        .map(|e| {
            let mut fields = vec![
                ("NotBefore", &e.not_before),
                ("Code", &e.code),
                ("Description", &e.description),
                ("EventId", &e.event_id),
            ];
            if let Some(after) = &e.not_after {
                fields.push(("NotAfter", after));
            }
            fields.push(("State", &e.state));
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("  \"{k}\" : {}", json(v)))
                .collect();
            format!("{{\n{}\n}}", body.join(",\n"))
        })
        .collect();
    format!("[ {} ]", events.join(", "))
}

fn identity_document(s: &Snapshot<'_>) -> String {
    let m = s.metadata;
    let mut out = String::from("{\n");
    let fields: [(&str, Option<&str>); 15] = [
        ("accountId", Some(&m.account_id)),
        ("architecture", Some(&m.architecture)),
        ("availabilityZone", Some(&m.availability_zone)),
        ("billingProducts", None),
        ("devpayProductCodes", None),
        ("marketplaceProductCodes", None),
        ("imageId", Some(&m.ami_id)),
        ("instanceId", Some(&m.instance_id)),
        ("instanceType", Some(&m.instance_type)),
        ("kernelId", None),
        ("pendingTime", Some(s.pending_time)),
        ("privateIp", Some(&m.local_ipv4)),
        ("ramdiskId", None),
        ("region", Some(&m.region)),
        ("version", Some("2017-09-30")),
    ];
    let last = fields.len() - 1;
    for (i, (k, v)) in fields.iter().enumerate() {
        let value = v.map_or_else(|| "null".to_string(), json);
        let sep = if i == last { "" } else { "," };
        let _ = writeln!(out, "  \"{k}\" : {value}{sep}");
    }
    out.push('}');
    out
}
