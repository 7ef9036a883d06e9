//! The scenario options shared by `exec`, `run` and `serve`, as clap reads them: the command
//! line's half of a scenario (resolved in `args.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::file::parse_duration;
use crate::imds::{Imdsv2Mode, Rate, ThrottleMode, Toggle};
use crate::scenario::{Action, OnInterrupt};

/// Options shared by `exec`, `run` and `serve`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ScenarioArgs {
    /// Scenario file (TOML) setting the timeline, IMDS options and metadata values; options
    /// given on the command line override it
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// When t0 comes (the rebalance recommendation), counted from the start [default: 0s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "manual")]
    pub start_in: Option<Duration>,

    /// t0 at this wall-clock instant (RFC 3339, e.g. 2026-11-26T09:00:00Z), so several nodes
    /// or processes are interrupted at the same moment; must be in the future
    #[arg(long, value_name = "TIME", conflicts_with_all = ["manual", "start_in"])]
    pub start_at: Option<String>,

    /// Do not start on a timer: wait for `spot-sim trigger` to start the timeline
    #[arg(long)]
    pub manual: bool,

    /// D, as in FIS: from the start of the interruption sequence to the interruption. The
    /// notice comes 2 min before it, or at the start when D is shorter (e.g. 5s for tests)
    /// [default: 2m]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub interruption_in: Option<Duration>,

    /// Issue the rebalance recommendation this long before the interruption sequence: the
    /// notice and the interruption move later by as much [default: 0s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub rebalance_lead: Option<Duration>,

    /// The notice's action. With hibernate the notice comes at once with `time` = now, as on
    /// AWS, and the instance is gone D later (at most 2 min: the guest suspending)
    /// [default: terminate]
    #[arg(long, value_enum)]
    pub action: Option<Action>,

    /// Issue no rebalance recommendation
    #[arg(long)]
    pub no_rebalance: bool,

    /// What happens to the target's processes at the interruption [default: none]
    #[arg(long, value_enum, value_name = "WHAT")]
    pub on_interrupt: Option<OnInterrupt>,

    /// HttpTokens: whether token-less (IMDSv1) requests are answered; `required` answers them
    /// 401 [default: optional] [alias: --imdsv2]
    #[arg(
        long = "http-tokens",
        alias = "imdsv2",
        value_enum,
        value_name = "MODE"
    )]
    pub imdsv2: Option<Imdsv2Mode>,

    /// HttpPutResponseHopLimit (1 to 64): at 1, a token PUT from a network namespace other
    /// than spot-sim's own (a container, one hop further than the node) is never answered, as
    /// on EKS, and the client falls back to IMDSv1 [default: 2]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=64))]
    pub http_put_response_hop_limit: Option<u8>,

    /// HttpEndpoint: `disabled` answers every request 403 Forbidden [default: enabled]
    #[arg(long, value_enum, value_name = "STATE")]
    pub http_endpoint: Option<Toggle>,

    /// HttpProtocolIpv6: whether connects to the IPv6 endpoint [fd00:ec2::254] are served;
    /// off as on EC2 (the IPv4-mapped ::ffff:169.254.169.254 always is) [default: disabled]
    #[arg(long, value_enum, value_name = "STATE")]
    pub http_protocol_ipv6: Option<Toggle>,

    /// InstanceMetadataTags: whether meta-data/tags/instance/ shows the instance's tags
    /// (--tag, or the scenario's [tags]) [default: disabled]
    #[arg(long, value_enum, value_name = "STATE")]
    pub instance_metadata_tags: Option<Toggle>,

    /// An instance tag, KEY=VALUE. Repeatable; added to the scenario's [tags]
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,

    /// The instance is not in an Auto Scaling group: no autoscaling/ tree (404)
    #[arg(long, conflicts_with = "asg_terminate_in")]
    pub no_asg: bool,

    /// Turn autoscaling/target-lifecycle-state to Terminated this long after t0, while the
    /// instance keeps answering until its interruption (ASG lifecycle-hook rehearsals)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub asg_terminate_in: Option<Duration>,

    /// One scheduled maintenance event, CODE[:IN]: issued IN after t0 [default: 0s], NotBefore
    /// an hour after its issue. CODE: system-reboot, instance-reboot, system-maintenance,
    /// instance-retirement, instance-stop. Repeatable; added to the scenario's [[maintenance]]
    #[arg(long, value_name = "CODE[:IN]")]
    pub maintenance: Vec<String>,

    /// Forward paths spot-sim does not simulate (instance id, region, identity document...) to
    /// the real IMDS, for runs on a real EC2 node
    #[arg(long)]
    pub passthrough: bool,

    /// Where --passthrough forwards to [default: 169.254.169.254:80]
    #[arg(long, value_name = "ADDR")]
    pub passthrough_upstream: Option<SocketAddr>,

    /// With --passthrough, also forward iam/ and identity-credentials/ paths (refused, 404,
    /// otherwise: the handler under test does not get the node's credentials)
    #[arg(long)]
    pub allow_credentials: bool,

    /// Answer this fraction (0.0 to 1.0) of requests with 503 [default: 0]
    #[arg(long, value_name = "F", value_parser = parse_rate)]
    pub fault_503_rate: Option<f64>,

    /// Add this delay before every answer [default: 0s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub fault_latency: Option<Duration>,

    /// Expire every token after this many seconds, whatever TTL the client asked for
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub fault_token_ttl: Option<u64>,

    /// Throttle each target's IMDS above this rate (5/s, 30/min, 100/h), as EC2 throttles
    /// queries per instance: the excess is answered 429 Too Many Requests, or dropped
    /// (--fault-throttle-mode)
    #[arg(long, value_name = "RATE", value_parser = |s: &str| s.parse::<Rate>())]
    pub fault_throttle: Option<Rate>,

    /// What a request above --fault-throttle gets: `429`, or `drop`: no answer, as packets
    /// dropped at EC2's link-local packet cap, so the client times out [default: 429]
    #[arg(long, value_enum, value_name = "MODE")]
    pub fault_throttle_mode: Option<ThrottleMode>,

    /// The instance id to serve [default: i-0e5a6b3c9d2f41a78]
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,

    /// The instance type to serve [default: m5.large]
    #[arg(long, value_name = "TYPE")]
    pub instance_type: Option<String>,

    /// The availability zone to serve; the region follows from it [default: us-east-1a]
    #[arg(long, value_name = "AZ")]
    pub availability_zone: Option<String>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "`{s}` is not a fraction; write one between 0.0 and 1.0, e.g. 0.2"
        )),
    }
}
