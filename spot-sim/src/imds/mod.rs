//! The fake IMDS: a hyper 1.x responder per target with its router, IMDSv2 token store,
//! phase-dependent metadata tree, fault injection and passthrough to the real IMDS.

mod catalogue;
mod config;
mod guarded_io;
mod identity;
mod instance;
mod options;
mod passthrough;
mod path;
mod policy;
mod router;
mod server;
mod stats;
mod throttle;
mod tokens;
mod tree;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod instance_tests;
#[cfg(test)]
mod surface_tests;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub(crate) use catalogue::free_keys as metadata_keys;
pub use config::{default_hostname, Faults, ImdsConfig, Imdsv2Mode, Limits, Metadata, Passthrough};
pub use options::{tag_key_problem, InstanceOptions, Toggle, DEFAULT_HOP_LIMIT, MAX_HOP_LIMIT};
pub use router::Responder;
pub use server::{bind_standalone, serve_standalone, ServeEnd};
pub use stats::ResponderStats;
pub use throttle::{Rate, Throttle, ThrottleMode};
pub use tokens::{TokenRejection, TokenStore, MAX_TOKEN_TTL};

/// Why a responder could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error("cannot listen on {addr}: {source} (is another spot-sim or amazon-ec2-metadata-mock on that port? choose another with --listen)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving the fake IMDS on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
