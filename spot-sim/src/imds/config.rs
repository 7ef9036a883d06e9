//! What a responder serves: IMDSv2 mode, faults, passthrough, limits and the metadata values.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// Whether token-less (IMDSv1) requests are answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Imdsv2Mode {
    /// IMDSv1 and IMDSv2 both work, as on a default instance.
    #[default]
    Optional,
    /// Every request without a valid token gets 401, as with `HttpTokens=required`.
    Required,
}

/// Faults to inject; all off by default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Fraction (0.0–1.0) of requests answered with 503.
    pub error_503_rate: f64,
    /// Added before every answer.
    pub latency: Duration,
    /// Every token expires after this many seconds, whatever TTL the client asked for.
    pub token_ttl: Option<u64>,
    /// Requests above a rate answered 429 or dropped (see throttle.rs).
    pub throttle: Option<super::throttle::Throttle>,
}

/// Forwarding what spot-sim does not simulate to the real IMDS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passthrough {
    pub upstream: SocketAddr,
    /// Bound on connect + answer; past it the client gets 504.
    pub timeout: Duration,
}

/// Protections against hostile or broken clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head hyper buffers; beyond it the connection is answered 431 and closed.
    pub max_header_bytes: usize,
    /// Slowloris guard: the whole request head must arrive within this.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub keep_alive_idle: Duration,
    /// Open connections per responder; new ones beyond it are closed at once.
    pub max_connections: usize,
    /// Longest path considered; longer ones are 404 without further look.
    pub max_path_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_idle: Duration::from_secs(30),
            max_connections: 512,
            max_path_len: 1024,
        }
    }
}

/// The static metadata values. Defaults are plausible for a us-east-1 instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub instance_id: String,
    pub instance_type: String,
    pub ami_id: String,
    pub hostname: String,
    pub local_hostname: String,
    pub local_ipv4: String,
    pub mac: String,
    pub availability_zone: String,
    pub region: String,
    pub account_id: String,
    pub architecture: String,
    /// Whether `autoscaling/target-lifecycle-state` exists (the instance is in an ASG).
    pub autoscaling: bool,
    /// Catalogue values the scenario set, by `[metadata]` key (see catalogue.rs); "" hides one.
    pub values: BTreeMap<String, String>,
    /// `user-data` at the version root; `None` answers 404, as an instance launched without.
    pub user_data: Option<String>,
}

impl Default for Metadata {
    fn default() -> Self {
        let local_ipv4 = "172.31.38.17".to_string();
        let region = "us-east-1".to_string();
        let hostname = default_hostname(&local_ipv4, &region);
        Self {
            instance_id: "i-0e5a6b3c9d2f41a78".into(),
            instance_type: "m5.large".into(),
            ami_id: "ami-0c7217cdde317cfec".into(),
            local_hostname: hostname.clone(),
            hostname,
            local_ipv4,
            mac: "0e:3f:5a:91:c2:7d".into(),
            availability_zone: "us-east-1a".into(),
            region,
            account_id: "123456789012".into(),
            architecture: "x86_64".into(),
            autoscaling: true,
            values: BTreeMap::new(),
            user_data: None,
        }
    }
}

/// `ip-172-31-38-17.ec2.internal`, the private DNS name EC2 derives from the address.
pub fn default_hostname(local_ipv4: &str, region: &str) -> String {
    let host = format!("ip-{}", local_ipv4.replace('.', "-"));
    if region == "us-east-1" {
        format!("{host}.ec2.internal")
    } else {
        format!("{host}.{region}.compute.internal")
    }
}

/// Everything one responder needs besides its timeline and clock.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImdsConfig {
    pub imdsv2: Imdsv2Mode,
    pub faults: Faults,
    /// `None`: paths spot-sim does not simulate are 404.
    pub passthrough: Option<Passthrough>,
    /// Forward credential-bearing paths (`iam/`, `identity-credentials/`, `user-data`, the
    /// signed identity forms; see policy.rs); refused by default.
    pub allow_credentials: bool,
    pub metadata: Metadata,
    pub limits: Limits,
    /// HttpEndpoint, hop limit, IPv6 endpoint, tags.
    pub options: super::options::InstanceOptions,
}
