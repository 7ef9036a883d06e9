//! Which pod the user means: `NAMESPACE/NAME`, `NAMESPACE/PREFIX*` or a uid, parsed and checked
//! before anything on the node is read.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use super::error::PodError;
use super::Pod;

/// Which pod the user means. On the control socket it travels as the user typed it, and is
/// checked again on arrival.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Typed", try_from = "Typed")]
pub enum PodSelector {
    /// `NAMESPACE/NAME`.
    Name { namespace: String, name: String },
    /// `NAMESPACE/PREFIX*`: the one running pod whose name starts with the prefix. A DaemonSet
    /// of spot-sim needs it to pick, on each node, that node's pod of another DaemonSet
    /// (`kube-system/aws-node-termination-handler-*`), whose names end in a random suffix.
    NamePrefix { namespace: String, prefix: String },
    /// The pod's `metadata.uid`, with dashes.
    Uid(String),
}

impl PodSelector {
    /// Selects by uid, written with dashes (as `kubectl get pod -o jsonpath='{.metadata.uid}'`
    /// prints it) or with the underscores of systemd slice names.
    pub fn uid(uid: &str) -> Result<PodSelector, PodError> {
        let normal = normalize_uid(uid);
        let valid = !normal.is_empty() && normal.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if !valid {
            return Err(PodError::BadUid {
                given: uid.to_owned(),
            });
        }
        Ok(PodSelector::Uid(normal))
    }
}

/// A selector as typed: `NAMESPACE/NAME` (or `NAMESPACE/PREFIX*`), or a uid.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Typed {
    Name(String),
    Uid(String),
}

impl From<PodSelector> for Typed {
    fn from(sel: PodSelector) -> Typed {
        match sel {
            PodSelector::Uid(uid) => Typed::Uid(uid),
            by_name => Typed::Name(by_name.to_string()),
        }
    }
}

impl TryFrom<Typed> for PodSelector {
    type Error = PodError;

    fn try_from(typed: Typed) -> Result<Self, PodError> {
        match typed {
            Typed::Name(name) => name.parse(),
            Typed::Uid(uid) => PodSelector::uid(&uid),
        }
    }
}

impl PodSelector {
    /// Whether it names `pod` (a prefix may name several).
    pub fn matches(&self, pod: &Pod) -> bool {
        match self {
            PodSelector::Name { namespace, name } => {
                pod.namespace == *namespace && pod.name == *name
            }
            PodSelector::NamePrefix { namespace, prefix } => {
                pod.namespace == *namespace && pod.name.starts_with(prefix.as_str())
            }
            PodSelector::Uid(uid) => pod.uid == *uid,
        }
    }
}

impl FromStr for PodSelector {
    type Err = PodError;

    /// Parses `NAMESPACE/NAME` or `NAMESPACE/PREFIX*`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PodError::BadSelector {
            given: s.to_owned(),
        };
        let (namespace, name) = s.split_once('/').ok_or_else(bad)?;
        let (stem, is_prefix) = match name.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (name, false),
        };
        if namespace.is_empty()
            || stem.is_empty()
            || [namespace, stem].iter().any(|p| p.contains(['/', '*']))
        {
            return Err(bad());
        }
        let namespace = namespace.to_owned();
        Ok(if is_prefix {
            PodSelector::NamePrefix {
                namespace,
                prefix: stem.to_owned(),
            }
        } else {
            PodSelector::Name {
                namespace,
                name: stem.to_owned(),
            }
        })
    }
}

impl fmt::Display for PodSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodSelector::Name { namespace, name } => write!(f, "{namespace}/{name}"),
            PodSelector::NamePrefix { namespace, prefix } => write!(f, "{namespace}/{prefix}*"),
            PodSelector::Uid(uid) => write!(f, "uid {uid}"),
        }
    }
}

/// A uid as the API server writes it: lower-case, with dashes. Log folders and cgroupfs keep
/// the dashes; systemd slice names turn them into underscores.
pub(super) fn normalize_uid(uid: &str) -> String {
    uid.trim().replace('_', "-").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANDLER_UID: &str = "0f3c9a4e-5b1d-4c7e-9a2b-6d8e1f0a3b4c";

    fn by_name(s: &str) -> PodSelector {
        s.parse().expect("a valid NAMESPACE/NAME")
    }

    #[test]
    fn a_uid_written_with_underscores_or_capitals_selects_the_same_pod() {
        assert_eq!(
            PodSelector::uid(&HANDLER_UID.replace('-', "_").to_uppercase()).expect("a valid uid"),
            PodSelector::Uid(HANDLER_UID.to_owned())
        );
        let err = PodSelector::uid("not a uid").expect_err("spaces are not a uid");
        assert!(err.to_string().contains("metadata.uid"), "{err}");
    }

    #[test]
    fn a_pod_selector_is_namespace_slash_name() {
        assert_eq!(
            by_name("kube-system/handler"),
            PodSelector::Name {
                namespace: "kube-system".into(),
                name: "handler".into()
            }
        );
        assert_eq!(
            by_name("kube-system/handler-*"),
            PodSelector::NamePrefix {
                namespace: "kube-system".into(),
                prefix: "handler-".into()
            }
        );
        assert_eq!(
            by_name("kube-system/handler-*").to_string(),
            "kube-system/handler-*"
        );
        for bad in [
            "handler",
            "/handler",
            "kube-system/",
            "a/b/c",
            "",
            "ns/*",
            "ns/a*b",
            "*/a",
        ] {
            let err = bad.parse::<PodSelector>().expect_err("not NAMESPACE/NAME");
            assert!(
                err.to_string().contains("expected NAMESPACE/NAME"),
                "{bad}: {err}"
            );
        }
    }
}
