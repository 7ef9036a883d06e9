//! Every scenario and instance setting, each declared once (see `declare.rs`): its flag and
//! its key in the scenario file, its type, its default, its help and its check.
//!
//! Adding a setting is one declaration here, in the section its key belongs to, plus the
//! line of the resolution (`resolve.rs`) that hands its value to whoever uses it.

use std::path::PathBuf;
use std::time::Duration;

use super::check::{at_most_a_year, fraction, hop_limit, positive_timeout, positive_ttl};
use super::declare::declare_settings;
use super::values::{parse_rate, socket_addr, Dur, TimeText};
use crate::imds::{Imdsv2Mode, Metadata, Rate, ThrottleMode, Toggle, DEFAULT_HOP_LIMIT};
use crate::scenario::{Action, OnInterrupt, NOTICE_LEAD};

/// Where passthrough forwards to unless told otherwise: the real IMDS.
pub const DEFAULT_UPSTREAM: &str = "169.254.169.254:80";
/// Bound on one upstream exchange (connect + answer).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

declare_settings! {
    /// `[scenario]`: when the interruption comes, and what comes with it.
    #[serde(deny_unknown_fields)]
    pub struct ScenarioSection in "scenario" {
        /// When t0 comes (the rebalance recommendation), counted from the start [default: 0s]
        #[arg(long, value_name = "DURATION", value_parser = Dur::parse, conflicts_with = "manual")]
        start_in: Dur, check at_most_a_year, replaces [manual, start_at];

        /// Do not start on a timer: wait for `spot-sim trigger` to start the timeline
        #[arg(long, num_args = 0, default_missing_value = "true")]
        manual: bool, replaces [start_in, start_at];

        /// D, as in FIS: from the start of the interruption sequence to the interruption. The
        /// notice comes 2 min before it, or at the start when D is shorter (e.g. 5s for tests)
        /// [default: 2m]
        #[arg(long, value_name = "DURATION", value_parser = Dur::parse)]
        interruption_in: Dur = Dur(NOTICE_LEAD), check at_most_a_year;

        /// Issue the rebalance recommendation this long before the interruption sequence: the
        /// notice and the interruption move later by as much [default: 0s]
        #[arg(long, value_name = "DURATION", value_parser = Dur::parse)]
        rebalance_lead: Dur = Dur(Duration::ZERO), check at_most_a_year;

        /// The notice's action. With hibernate the notice comes at once with `time` = now, as on
        /// AWS, and the instance is gone D later (at most 2 min: the guest suspending)
        /// [default: terminate]
        #[arg(long, value_enum)]
        action: Action = Action::default();

        /// Issue no rebalance recommendation
        #[arg(long = "no-rebalance", num_args = 0, default_missing_value = "false")]
        rebalance: bool = true;

        /// What happens to the target's processes at the interruption [default: none]
        #[arg(long, value_enum, value_name = "WHAT")]
        on_interrupt: OnInterrupt = OnInterrupt::default();

        /// t0 at this wall-clock instant (RFC 3339, e.g. 2026-11-26T09:00:00Z), so several nodes
        /// or processes are interrupted at the same moment; must be in the future
        #[arg(long, value_name = "TIME", value_parser = TimeText::parse, conflicts_with_all = ["manual", "start_in"])]
        start_at: TimeText, replaces [manual, start_in];

        /// The instance is not in an Auto Scaling group: no autoscaling/ tree (404)
        #[arg(long = "no-asg", num_args = 0, default_missing_value = "false", conflicts_with = "asg_terminate_in")]
        asg: bool, replaces [asg_terminate_in];

        /// Turn autoscaling/target-lifecycle-state to Terminated this long after t0, while the
        /// instance keeps answering until its interruption (ASG lifecycle-hook rehearsals)
        #[arg(long, value_name = "DURATION", value_parser = Dur::parse)]
        asg_terminate_in: Dur, check at_most_a_year, replaces [asg];
    }
}

declare_settings! {
    /// `[imds]`: the instance metadata options, and passthrough to the real IMDS.
    #[serde(deny_unknown_fields)]
    pub struct ImdsSection in "imds" {
        /// HttpTokens: whether token-less (IMDSv1) requests are answered; `required` answers them
        /// 401 [default: optional] [alias: --imdsv2]
        #[arg(long = "http-tokens", alias = "imdsv2", value_enum, value_name = "MODE")]
        #[serde(alias = "imdsv2")]
        http_tokens: Imdsv2Mode = Imdsv2Mode::default();

        /// HttpPutResponseHopLimit (1 to 64): at 1, a token PUT from a network namespace other
        /// than spot-sim's own (a container, one hop further than the node) is never answered, as
        /// on EKS, and the client falls back to IMDSv1 [default: 2]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=64))]
        http_put_response_hop_limit: i64 = i64::from(DEFAULT_HOP_LIMIT), check hop_limit;

        /// HttpEndpoint: `disabled` answers every request 403 Forbidden [default: enabled]
        #[arg(long, value_enum, value_name = "STATE")]
        http_endpoint: Toggle = Toggle::Enabled;

        /// HttpProtocolIpv6: whether connects to the IPv6 endpoint [fd00:ec2::254] are served;
        /// off as on EC2 (the IPv4-mapped ::ffff:169.254.169.254 always is) [default: disabled]
        #[arg(long, value_enum, value_name = "STATE")]
        http_protocol_ipv6: Toggle = Toggle::Disabled;

        /// InstanceMetadataTags: whether meta-data/tags/instance/ shows the instance's tags
        /// (--tag, or the scenario's [tags]) [default: disabled]
        #[arg(long, value_enum, value_name = "STATE")]
        instance_metadata_tags: Toggle = Toggle::Disabled;

        /// Forward paths spot-sim does not simulate (instance id, region, identity document...) to
        /// the real IMDS, for runs on a real EC2 node
        #[arg(long, num_args = 0, default_missing_value = "true")]
        passthrough: bool = false;

        /// Where --passthrough forwards to [default: 169.254.169.254:80]
        #[arg(long, value_name = "ADDR", value_parser = socket_addr)]
        passthrough_upstream: String = DEFAULT_UPSTREAM.to_string();

        /// How long one exchange with the real IMDS may take [default: 2s]
        #[arg(skip)]
        passthrough_timeout: Dur = Dur(DEFAULT_UPSTREAM_TIMEOUT), check positive_timeout;

        /// With --passthrough, also forward iam/ and identity-credentials/ paths (refused, 404,
        /// otherwise: the handler under test does not get the node's credentials)
        #[arg(long, num_args = 0, default_missing_value = "true")]
        allow_credentials: bool = false;
    }
}

declare_settings! {
    /// `[faults]`: what goes wrong on purpose.
    #[serde(deny_unknown_fields)]
    pub struct FaultsSection in "faults" {
        /// Answer this fraction (0.0 to 1.0) of requests with 503 [default: 0]
        #[arg(long = "fault-503-rate", value_name = "F", value_parser = parse_rate)]
        error_503_rate: f64 = 0.0, check fraction;

        /// Add this delay before every answer [default: 0s]
        #[arg(long = "fault-latency", value_name = "DURATION", value_parser = Dur::parse)]
        latency: Dur = Dur(Duration::ZERO), check at_most_a_year;

        /// Expire every token after this many seconds, whatever TTL the client asked for
        #[arg(long = "fault-token-ttl", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
        token_ttl: u64, check positive_ttl;

        /// Throttle each target's IMDS above this rate (5/s, 30/min, 100/h), as EC2 throttles
        /// queries per instance: the excess is answered 429 Too Many Requests, or dropped
        /// (--fault-throttle-mode)
        #[arg(long = "fault-throttle", value_name = "RATE", value_parser = |s: &str| s.parse::<Rate>())]
        throttle: Rate;

        /// What a request above --fault-throttle gets: `429`, or `drop`: no answer, as packets
        /// dropped at EC2's link-local packet cap, so the client times out [default: 429]
        #[arg(long = "fault-throttle-mode", value_enum, value_name = "MODE")]
        throttle_mode: ThrottleMode = ThrottleMode::default();
    }
}

declare_settings! {
    /// `[metadata]`: the instance's static values. Any key of the IMDS catalogue
    /// (`imds/catalogue.rs`) is taken as well (the scenario file's `[metadata]` table adds
    /// them, checked against the catalogue when settings are resolved).
    pub struct MetadataSection in "metadata" {
        /// The instance id to serve [default: i-0e5a6b3c9d2f41a78]
        #[arg(long, value_name = "ID")]
        instance_id: String = Metadata::default().instance_id;

        /// The instance type to serve [default: m5.large]
        #[arg(long, value_name = "TYPE")]
        instance_type: String = Metadata::default().instance_type;

        #[arg(skip)]
        ami_id: String = Metadata::default().ami_id;

        /// [default: from local-ipv4 and the region, as EC2 names it]
        #[arg(skip)]
        hostname: String;

        /// [default: the hostname]
        #[arg(skip)]
        local_hostname: String;

        #[arg(skip)]
        local_ipv4: String = Metadata::default().local_ipv4;

        #[arg(skip)]
        mac: String = Metadata::default().mac;

        /// The availability zone to serve; the region follows from it [default: us-east-1a]
        #[arg(long, value_name = "AZ")]
        availability_zone: String = Metadata::default().availability_zone, replaces [region];

        /// [default: the availability zone's]
        #[arg(skip)]
        region: String;

        #[arg(skip)]
        account_id: String = Metadata::default().account_id;

        #[arg(skip)]
        architecture: String = Metadata::default().architecture;

        /// The older name of `scenario.asg`.
        #[arg(skip)]
        autoscaling: bool = Metadata::default().autoscaling;

        /// `user-data`, inline.
        #[arg(skip)]
        user_data: String;

        /// `user-data` read from this file (relative to the scenario file).
        #[arg(skip)]
        user_data_file: PathBuf;
    }
}
