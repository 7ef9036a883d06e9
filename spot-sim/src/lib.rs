//! spot-sim: rehearse EC2 Spot interruptions for real.
//!
//! Data flows one way: [`cli`] → [`settings`] + [`targets`] → [`session`] → [`redirect`] +
//! [`imds`] (which read the [`scenario`] timeline), with
//! [`session`] holding a running instance together and [`control`] talking to it; an
//! [`experiment`] spreads one scenario over a cluster's nodes.

pub mod cli;
pub mod control;
pub mod escape;
pub mod experiment;
pub mod fdbudget;
pub mod imds;
pub mod journal;
mod lock;
mod memory;
pub mod redirect;
pub mod report;
pub mod safe_file;
pub mod scenario;
pub mod session;
pub mod settings;
pub mod stop;
pub mod targets;
