//! The metadata tree as the instance shows it at one instant: static values plus whatever the
//! timeline has issued, with directory listings that follow the phase.

use std::collections::BTreeMap;

use super::config::Metadata;
use super::metadata_options::InstanceOptions;
use super::{catalogue, identity};
use crate::scenario::{Moment, Published};

/// A file or a directory of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Leaf(String),
    Dir(Dir),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dir {
    pub entries: BTreeMap<String, Node>,
    /// Names listed differently from how they are asked for: `public-keys/` lists `0=my-key`
    /// for the directory `0/`.
    pub listed_as: BTreeMap<String, String>,
    /// The real IMDS lists `/` and `/latest/` without trailing slashes, deeper levels with them.
    pub slash_subdirs: bool,
}

impl Dir {
    pub(super) fn new() -> Self {
        Dir {
            entries: BTreeMap::new(),
            listed_as: BTreeMap::new(),
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
            .map(|(name, node)| match (self.listed_as.get(name), node) {
                (Some(listed), _) => listed.clone(),
                (None, Node::Dir(_)) if self.slash_subdirs => format!("{name}/"),
                (None, _) => name.clone(),
            })
            .collect();
        names.join("\n")
    }

    /// Puts `node` at `path` (slash-separated) below this directory, making directories on
    /// the way; a leaf in the way is replaced.
    pub fn insert(&mut self, path: &str, node: Node) {
        let (first, rest) = match path.split_once('/') {
            Some((first, rest)) => (first, Some(rest)),
            None => (path, None),
        };
        match rest {
            None => {
                self.entries.insert(first.to_string(), node);
            }
            Some(rest) => {
                let child = self
                    .entries
                    .entry(first.to_string())
                    .or_insert_with(|| Node::Dir(Dir::new()));
                if let Node::Leaf(_) = child {
                    *child = Node::Dir(Dir::new());
                }
                if let Node::Dir(d) = child {
                    d.insert(rest, node);
                }
            }
        }
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
    /// What the timeline shows now, and where the instance publishes it.
    pub moment: Moment,
    pub published: &'a [Published],
    /// `pendingTime` of the identity document: when the responder was created.
    pub pending_time: &'a str,
    /// Tags and their access option.
    pub options: &'a InstanceOptions,
}

/// The tree one API version serves (`/latest/`, `/2021-03-23/`, … all alike): the static
/// catalogue plus what the timeline has issued.
pub(crate) fn build(s: &Snapshot<'_>) -> Dir {
    let m = s.metadata;
    let mut version = Dir::new();
    version.slash_subdirs = false;
    for (path, value) in catalogue::values(m) {
        version.insert(&path, Node::Leaf(value));
    }
    let document = identity::document(m, s.pending_time);
    for (name, value) in [
        (
            "pkcs7",
            identity::unsigned_pkcs7(&document, identity::Digest::Sha1),
        ),
        (
            "rsa2048",
            identity::unsigned_pkcs7(&document, identity::Digest::Sha256),
        ),
        ("signature", identity::unsigned_signature()),
        ("document", document),
    ] {
        version.insert(
            &format!("dynamic/instance-identity/{name}"),
            Node::Leaf(value),
        );
    }
    // A public address is associated with the private one on the primary interface.
    if let Some(public) = catalogue::value(m, "public-ipv4") {
        let path = format!(
            "meta-data/network/interfaces/macs/{}/ipv4-associations/{public}",
            m.mac
        );
        let private = catalogue::value(m, "local-ipv4").unwrap_or_default();
        version.insert(&path, Node::Leaf(private));
    }
    if let Some(Node::Dir(meta)) = version.entries.get_mut("meta-data") {
        if let Some(Node::Dir(keys)) = meta.entries.get_mut("public-keys") {
            let name = catalogue::value(m, "public-key-name").unwrap_or_default();
            keys.listed_as.insert("0".into(), format!("0={name}"));
        }
    }
    // The instance's own answers, whatever the real IMDS would say (`policy::OWN`).
    version.insert("meta-data/instance-action", Node::Leaf("none".into()));
    version.insert("meta-data/instance-life-cycle", Node::Leaf("spot".into()));
    if let Some(tags) = tags(s) {
        version.insert("meta-data/tags", Node::Dir(tags));
    }
    // What the timeline has issued, where the instance publishes it.
    for p in s.published {
        if let Some(value) = (p.value)(&s.moment) {
            version.insert(&format!("meta-data/{}", p.path), Node::Leaf(value));
        }
    }
    version
}

/// `tags/instance/KEY` → value, only with InstanceMetadataTags enabled (404 otherwise, as on
/// EC2). The keys were checked when the scenario was read: none holds a `/`.
fn tags(s: &Snapshot<'_>) -> Option<Dir> {
    if !s.options.instance_metadata_tags.is_enabled() {
        return None;
    }
    let mut instance = Dir::new();
    for (k, v) in &s.options.tags {
        instance = instance.leaf(k, v.clone());
    }
    Some(Dir::new().dir("instance", instance))
}
