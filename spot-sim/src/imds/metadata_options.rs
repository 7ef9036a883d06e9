//! The instance metadata options, named as EC2 names them (`aws ec2
//! modify-instance-metadata-options`: HttpEndpoint, HttpPutResponseHopLimit, HttpProtocolIpv6,
//! InstanceMetadataTags), and the instance tags IMDS can show.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `enabled` or `disabled`, as the EC2 API spells these options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    Enabled,
    Disabled,
}

impl Toggle {
    pub fn is_enabled(self) -> bool {
        self == Toggle::Enabled
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Toggle::Enabled => "enabled",
            Toggle::Disabled => "disabled",
        }
    }
}

/// The EC2 API's default is 1, but instances from AMIs marked `ImdsSupport: v2.0` (the current
/// EKS and Amazon Linux 2023 AMIs) launch with 2, so containers get their tokens; a rehearsal
/// of the EKS trap asks for 1.
pub const DEFAULT_HOP_LIMIT: u8 = 2;
/// The EC2 API accepts 1 to 64 (InstanceMetadataOptionsRequest.HttpPutResponseHopLimit).
pub const MAX_HOP_LIMIT: u8 = 64;

/// How the metadata service of this instance is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceOptions {
    /// HttpPutResponseHopLimit: at 1, a token PUT from another network namespace (a container
    /// one hop further than the node) never gets its answer.
    pub hop_limit: u8,
    /// HttpEndpoint: disabled answers everything 403.
    pub http_endpoint: Toggle,
    /// HttpProtocolIpv6: disabled leaves connects to fd00:ec2::254 alone (EC2's default).
    pub http_protocol_ipv6: Toggle,
    /// InstanceMetadataTags: whether `meta-data/tags/instance/` exists.
    pub instance_metadata_tags: Toggle,
    /// The instance's tags, key → value.
    pub tags: BTreeMap<String, String>,
}

impl Default for InstanceOptions {
    fn default() -> Self {
        Self {
            hop_limit: DEFAULT_HOP_LIMIT,
            http_endpoint: Toggle::Enabled,
            http_protocol_ipv6: Toggle::Disabled,
            instance_metadata_tags: Toggle::Disabled,
            tags: BTreeMap::new(),
        }
    }
}

/// Why a tag key cannot be shown in instance metadata, if it cannot. The EC2 User Guide ("View
/// tags for your EC2 instances from instance metadata"): with access to tags in metadata
/// allowed, tag keys may use only letters, digits and `+ - = . , _ : @`, no spaces or `/`, and
/// cannot be only `.`, `..` or `_index`; like every EC2 tag key, at most 128 characters.
pub fn tag_key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        return Some("empty");
    }
    if key.len() > 128 {
        return Some("longer than 128 bytes");
    }
    if key.contains('/') {
        return Some("contains `/`, which instance metadata cannot show");
    }
    if matches!(key, "." | ".." | "_index") {
        return Some("reserved in instance metadata");
    }
    if !key
        .chars()
        .all(|c| c.is_alphanumeric() || "+-=.,_:@".contains(c))
    {
        return Some("has a character instance metadata does not allow");
    }
    None
}
