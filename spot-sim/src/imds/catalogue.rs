//! The static part of the metadata catalogue, as AWS's "Instance metadata categories" and
//! "Dynamic data categories" pages list it: one row per value, naming its `[metadata]` key in
//! the scenario file, where it is served (below the API version) and its default. Defaults
//! follow from each other (the MAC directory is `mac`, `local-ipv4s` holds `local-ipv4`,
//! `owner-id` is the account, the zone id and partition follow the region), so an instance
//! looks like one instance. A new category is one more row.
//!
//! Not here: the phase-dependent entries (`spot/`, `events/`, `autoscaling/`, `instance-action`,
//! see tree.rs), the identity document and its signed forms (identity.rs), and credentials
//! (`iam/`, `identity-credentials/`), which spot-sim never makes up.

use super::config::Metadata;

/// One catalogue value.
pub(crate) struct Entry {
    /// Its key in the scenario's `[metadata]` table.
    pub key: &'static str,
    /// Where it is served, below `/<version>/`; `{mac}` stands for the primary MAC.
    pub paths: &'static [&'static str],
    /// Its value when the scenario does not set it; `None`: not served (as on an instance
    /// without that feature, e.g. no public address).
    pub default: fn(&Metadata) -> Option<String>,
}

macro_rules! entry {
    ($key:literal, [$($path:expr),*], $default:expr) => {
        Entry { key: $key, paths: &[$($path),*], default: $default }
    };
}

fn fixed(v: &'static str) -> Option<String> {
    Some(v.to_string())
}

/// Every static value, in the order of AWS's categories page.
pub(crate) const CATALOGUE: &[Entry] = &[
    entry!("ami-id", ["meta-data/ami-id"], |m| Some(m.ami_id.clone())),
    entry!("ami-launch-index", ["meta-data/ami-launch-index"], |_| {
        fixed("0")
    }),
    entry!("ami-manifest-path", ["meta-data/ami-manifest-path"], |_| {
        fixed("(unknown)")
    }),
    entry!(
        "block-device-mapping-ami",
        ["meta-data/block-device-mapping/ami"],
        |_| fixed("/dev/xvda")
    ),
    entry!(
        "block-device-mapping-root",
        ["meta-data/block-device-mapping/root"],
        |_| fixed("/dev/xvda")
    ),
    entry!("hostname", ["meta-data/hostname"], |m| Some(
        m.hostname.clone()
    )),
    entry!("instance-id", ["meta-data/instance-id"], |m| Some(
        m.instance_id.clone()
    )),
    entry!("instance-type", ["meta-data/instance-type"], |m| Some(
        m.instance_type.clone()
    )),
    entry!("kernel-id", ["meta-data/kernel-id"], |_| None),
    entry!(
        "local-hostname",
        [
            "meta-data/local-hostname",
            "meta-data/network/interfaces/macs/{mac}/local-hostname"
        ],
        |m| Some(m.local_hostname.clone())
    ),
    entry!(
        "local-ipv4",
        [
            "meta-data/local-ipv4",
            "meta-data/network/interfaces/macs/{mac}/local-ipv4s"
        ],
        |m| Some(m.local_ipv4.clone())
    ),
    entry!(
        "mac",
        [
            "meta-data/mac",
            "meta-data/network/interfaces/macs/{mac}/mac"
        ],
        |m| Some(m.mac.clone())
    ),
    entry!(
        "device-number",
        ["meta-data/network/interfaces/macs/{mac}/device-number"],
        |_| fixed("0")
    ),
    entry!(
        "interface-id",
        ["meta-data/network/interfaces/macs/{mac}/interface-id"],
        |_| fixed("eni-0a1b2c3d4e5f60718")
    ),
    entry!(
        "network-card-index",
        ["meta-data/network/interfaces/macs/{mac}/network-card-index"],
        |_| fixed("0")
    ),
    entry!(
        "owner-id",
        ["meta-data/network/interfaces/macs/{mac}/owner-id"],
        |m| Some(m.account_id.clone())
    ),
    entry!(
        "security-group-ids",
        ["meta-data/network/interfaces/macs/{mac}/security-group-ids"],
        |_| fixed("sg-0f1e2d3c4b5a69788")
    ),
    entry!(
        "security-groups",
        [
            "meta-data/security-groups",
            "meta-data/network/interfaces/macs/{mac}/security-groups"
        ],
        |_| fixed("default")
    ),
    entry!(
        "subnet-id",
        ["meta-data/network/interfaces/macs/{mac}/subnet-id"],
        |_| fixed("subnet-0d4c3b2a19f8e7d6c")
    ),
    entry!(
        "subnet-ipv4-cidr-block",
        ["meta-data/network/interfaces/macs/{mac}/subnet-ipv4-cidr-block"],
        |_| fixed("172.31.32.0/20")
    ),
    entry!(
        "vpc-id",
        ["meta-data/network/interfaces/macs/{mac}/vpc-id"],
        |_| fixed("vpc-0a9b8c7d6e5f40312")
    ),
    entry!(
        "vpc-ipv4-cidr-block",
        [
            "meta-data/network/interfaces/macs/{mac}/vpc-ipv4-cidr-block",
            "meta-data/network/interfaces/macs/{mac}/vpc-ipv4-cidr-blocks"
        ],
        |_| fixed("172.31.0.0/16")
    ),
    entry!(
        "public-ipv4",
        [
            "meta-data/public-ipv4",
            "meta-data/network/interfaces/macs/{mac}/public-ipv4s"
        ],
        |_| None
    ),
    entry!(
        "public-hostname",
        [
            "meta-data/public-hostname",
            "meta-data/network/interfaces/macs/{mac}/public-hostname"
        ],
        public_hostname
    ),
    entry!(
        "availability-zone",
        ["meta-data/placement/availability-zone"],
        |m| Some(m.availability_zone.clone())
    ),
    entry!(
        "availability-zone-id",
        ["meta-data/placement/availability-zone-id"],
        |m| zone_id(&m.availability_zone, &m.region)
    ),
    entry!(
        "placement-group-name",
        ["meta-data/placement/group-name"],
        |_| None
    ),
    entry!("host-id", ["meta-data/placement/host-id"], |_| None),
    entry!(
        "partition-number",
        ["meta-data/placement/partition-number"],
        |_| None
    ),
    entry!("region", ["meta-data/placement/region"], |m| Some(
        m.region.clone()
    )),
    entry!("product-codes", ["meta-data/product-codes"], |_| None),
    entry!("profile", ["meta-data/profile"], |_| fixed("default-hvm")),
    entry!(
        "public-key",
        ["meta-data/public-keys/0/openssh-key"],
        |_| None
    ),
    // Only named in the `public-keys/` listing (`0=<name>`), see tree.rs.
    entry!("public-key-name", [], |_| fixed("spot-sim-key")),
    entry!("ramdisk-id", ["meta-data/ramdisk-id"], |_| None),
    entry!("reservation-id", ["meta-data/reservation-id"], |_| fixed(
        "r-0b3a7c5d9e1f24680"
    )),
    entry!("services-domain", ["meta-data/services/domain"], |m| Some(
        domain(&m.region).to_string()
    )),
    entry!(
        "services-partition",
        ["meta-data/services/partition"],
        |m| Some(partition(&m.region).to_string())
    ),
    entry!("system", ["meta-data/system"], |_| fixed("nitro")),
    entry!(
        "instance-monitoring",
        ["dynamic/fws/instance-monitoring"],
        |_| fixed("disabled")
    ),
    entry!("user-data", ["user-data"], |m| m.user_data.clone()),
];

/// Keys set through their own typed field of [`Metadata`] (checked there), not the free map.
pub(crate) const TYPED_KEYS: &[&str] = &[
    "ami-id",
    "availability-zone",
    "hostname",
    "instance-id",
    "instance-type",
    "local-hostname",
    "local-ipv4",
    "mac",
    "region",
    "user-data",
];

/// Keys the scenario may set in `[metadata]` besides the typed ones.
pub(crate) fn free_keys() -> impl Iterator<Item = &'static str> {
    CATALOGUE
        .iter()
        .map(|e| e.key)
        .filter(|k| !TYPED_KEYS.contains(k))
}

/// Every served (path, value), `{mac}` filled in. A value set to "" in the scenario removes it.
pub(crate) fn values(m: &Metadata) -> Vec<(String, String)> {
    values_with_keys(m)
        .into_iter()
        .map(|(_, path, value)| (path, value))
        .collect()
}

/// The value of `key`, as served (set, else its default; `None` when hidden or absent).
pub(crate) fn value(m: &Metadata, key: &str) -> Option<String> {
    let e = CATALOGUE.iter().find(|e| e.key == key)?;
    m.values
        .get(e.key)
        .cloned()
        .or_else(|| (e.default)(m))
        .filter(|v| !v.is_empty())
}

fn values_with_keys(m: &Metadata) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    for e in CATALOGUE {
        let value = match m.values.get(e.key) {
            Some(v) => Some(v.clone()),
            None => (e.default)(m),
        };
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            continue;
        };
        for p in e.paths {
            out.push((e.key, p.replace("{mac}", &m.mac), value.clone()));
        }
    }
    out
}

/// `use1-az1` for `us-east-1a`: the AZ-id form (region code, `-az`, a number). Real zone ids are
/// shuffled per account, so any number is plausible; the letter's rank keeps them distinct.
pub(crate) fn zone_id(zone: &str, region: &str) -> Option<String> {
    let letter = zone.strip_prefix(region)?.chars().next()?;
    if !letter.is_ascii_lowercase() {
        return None;
    }
    let mut code = String::new();
    for part in region.split('-') {
        match part {
            "gov" => code.push('g'),
            "north" => code.push('n'),
            "south" => code.push('s'),
            "east" => code.push('e'),
            "west" => code.push('w'),
            "central" => code.push('c'),
            "northeast" => code.push_str("ne"),
            "northwest" => code.push_str("nw"),
            "southeast" => code.push_str("se"),
            "southwest" => code.push_str("sw"),
            other => code.push_str(other),
        }
    }
    Some(format!("{code}-az{}", letter as u32 - 'a' as u32 + 1))
}

fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

fn domain(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// `ec2-203-0-113-25.compute-1.amazonaws.com` in us-east-1, `ec2-….<region>.compute.amazonaws.com`
/// elsewhere; only with a public address.
fn public_hostname(m: &Metadata) -> Option<String> {
    let ip = m.values.get("public-ipv4").filter(|v| !v.is_empty())?;
    let host = format!("ec2-{}", ip.replace('.', "-"));
    Some(if m.region == "us-east-1" {
        format!("{host}.compute-1.amazonaws.com")
    } else {
        format!("{host}.{}.compute.{}", m.region, domain(&m.region))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids_take_the_region_code() {
        for (zone, region, id) in [
            ("us-east-1a", "us-east-1", Some("use1-az1")),
            ("eu-central-1c", "eu-central-1", Some("euc1-az3")),
            ("ap-southeast-2b", "ap-southeast-2", Some("apse2-az2")),
            ("us-gov-west-1a", "us-gov-west-1", Some("usgw1-az1")),
            ("nowhere", "us-east-1", None),
        ] {
            assert_eq!(zone_id(zone, region).as_deref(), id, "{zone}");
        }
    }

    #[test]
    fn defaults_agree_with_each_other() {
        let m = Metadata::default();
        let v: std::collections::HashMap<String, String> = values(&m).into_iter().collect();
        let mac_dir = format!("meta-data/network/interfaces/macs/{}", m.mac);
        assert_eq!(v[&format!("{mac_dir}/mac")], m.mac);
        assert_eq!(v[&format!("{mac_dir}/local-ipv4s")], m.local_ipv4);
        assert_eq!(v[&format!("{mac_dir}/owner-id")], m.account_id);
        assert_eq!(v["meta-data/placement/availability-zone-id"], "use1-az1");
        assert!(!v.contains_key("meta-data/public-ipv4"));
        assert!(
            !v.contains_key("user-data"),
            "no user data unless the scenario sets it"
        );
        let keys: Vec<&str> = CATALOGUE.iter().map(|e| e.key).collect();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(keys.len(), unique.len(), "a key names one value");
    }
}
