//! The metadata tree as the instance shows it at one instant: static values plus whatever the
//! timeline has issued, with directory listings that follow the phase.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::config::Metadata;
use super::instance;
use super::options::InstanceOptions;
use crate::scenario::{rfc3339, Action, MaintenanceView, Phase, Schedule};

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
    pub(super) fn new() -> Self {
        Dir {
            entries: BTreeMap::new(),
            slash_subdirs: true,
        }
    }

    pub(super) fn leaf(mut self, name: &str, value: impl Into<String>) -> Self {
        self.entries
            .insert(name.to_string(), Node::Leaf(value.into()));
        self
    }

    pub(super) fn dir(mut self, name: &str, dir: Dir) -> Self {
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
    /// Tags and their access option.
    pub options: &'a InstanceOptions,
    /// Maintenance events issued so far: (`scheduled`, `history`).
    pub maintenance: (Vec<MaintenanceView>, Vec<MaintenanceView>),
    /// The Auto Scaling group has marked the instance `Terminated`.
    pub asg_terminated: bool,
}

/// The `meta-data/` entries whose content spot-sim owns even with passthrough on.
pub(crate) const SIMULATED: &[&str] = &[
    "autoscaling",
    "events",
    "instance-action",
    "instance-life-cycle",
    "spot",
    "tags",
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
    if let Some(asg) = instance::autoscaling(s) {
        dir = dir.dir("autoscaling", asg);
    }
    if let Some(tags) = instance::tags(s) {
        dir = dir.dir("tags", tags);
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
        // The EC2 User Guide (instance metadata categories, spot/termination-time): "present
        // and contains a time value ... only if the Spot Instance has been marked for
        // termination by Amazon EC2"; a stop or hibernate notice is in instance-action only.
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
            .leaf("history", instance::maintenance_json(&s.maintenance.1))
            .leaf("scheduled", instance::maintenance_json(&s.maintenance.0)),
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

pub(super) fn json(s: &str) -> String {
    serde_json::Value::from(s).to_string()
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
