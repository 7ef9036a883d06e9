//! A game day across a cluster: one experiment file read by every node's spot-sim (a
//! DaemonSet with the file in a ConfigMap). Each node decides alone, from its own name, whether
//! it takes part and when its timeline starts ([`select`]); the file's scenario sections say
//! what its pods see ([`file`]); each node reports its own result in the cluster's logs and
//! metrics ([`result`]).

mod file;
mod result;
mod select;

use std::path::PathBuf;

pub use file::{is_node_name, Experiment, NodeSet};
pub use result::{verdict, NodeResult, TargetResult, Verdict};
pub use select::{node_hash, Decision};

use crate::scenario::ScenarioError;

/// Why an experiment file could not be used. Each message names the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("cannot read experiment file {}: {source} (check the path given to --experiment, or the ConfigMap mount)", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {problem}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{}: {field} = {value}: {problem} (allowed: {allowed})", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        value: String,
        problem: String,
        allowed: String,
    },
    /// A scenario section of the file is wrong.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
}
