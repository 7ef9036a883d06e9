//! The scenario file and the command line, merged (`scenario_args.rs`) and checked, resolved
//! into [`Settings`]: the timeline's [`Scenario`], the responder's [`ImdsConfig`] and what
//! happens at the interruption. Each value comes from its declaration (`sections.rs`): given,
//! or its default; what is checked here is how settings go together.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::check::{invalid, MAX_DURATION};
use super::maintenance::maintenance_plan;
use super::scenario_file::{MetadataTable, ScenarioFile};
use super::sections::{FaultsSection, ImdsSection, ScenarioSection};
use super::values::{Dur, TimeText};
use crate::imds::{
    default_hostname, tag_key_problem, Faults, ImdsConfig, InstanceOptions, Metadata, Passthrough,
    Throttle,
};
use crate::scenario::{Action, OnInterrupt, Scenario, ScenarioError, Start};

/// Longest tag value EC2 accepts.
const MAX_TAG_VALUE: usize = 256;

/// A resolved run: the timeline, the responder configuration and the interrupt action.
#[derive(Clone, Debug)]
pub struct Settings {
    pub scenario: Scenario,
    pub imds: ImdsConfig,
    pub on_interrupt: OnInterrupt,
}

impl Settings {
    /// The settings a scenario file gives on its own (file over defaults).
    pub fn from_file(path: &Path) -> Result<Settings, ScenarioError> {
        let file = ScenarioFile::load(path)?;
        settings_from(file, &path.display().to_string(), SystemTime::now())
    }

    /// Parses scenario TOML text; `path` only names it in errors.
    pub fn from_toml(path: &Path, text: &str) -> Result<Settings, ScenarioError> {
        let file = ScenarioFile::parse(path, text)?;
        settings_from(file, &path.display().to_string(), SystemTime::now())
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            scenario: Scenario::default(),
            imds: ImdsConfig::default(),
            on_interrupt: OnInterrupt::None,
        }
    }
}

/// `now` is when the run is set up: `start-at` must come after it.
pub(super) fn settings_from(
    file: ScenarioFile,
    origin: &str,
    now: SystemTime,
) -> Result<Settings, ScenarioError> {
    file.scenario.check(origin)?;
    file.imds.check(origin)?;
    file.faults.check(origin)?;
    file.metadata.known.check(origin)?;
    let maintenance = file
        .maintenance
        .into_iter()
        .enumerate()
        .map(|(n, e)| maintenance_plan(n, e, origin))
        .collect::<Result<_, _>>()?;
    // `metadata.autoscaling` is the older name of `scenario.asg`.
    let in_asg = file.scenario.asg.or(file.metadata.known.autoscaling);
    let scenario = scenario_from(&file.scenario, in_asg, maintenance, origin, now)?;
    let mut metadata = metadata_from(file.metadata, origin)?;
    if let Some(asg) = file.scenario.asg {
        metadata.autoscaling = asg;
    }
    Ok(Settings {
        scenario,
        imds: ImdsConfig {
            imdsv2: file.imds.http_tokens(),
            options: options(&file.imds, file.tags, origin)?,
            faults: faults(&file.faults, origin)?,
            passthrough: passthrough(&file.imds, origin)?,
            allow_credentials: file.imds.allow_credentials(),
            metadata,
            limits: Default::default(),
        },
        on_interrupt: file.scenario.on_interrupt(),
    })
}

/// `[scenario]`: how the start options go together, and a notice before the end.
fn scenario_from(
    s: &ScenarioSection,
    in_asg: Option<bool>,
    maintenance: Vec<crate::scenario::MaintenancePlan>,
    origin: &str,
    now: SystemTime,
) -> Result<Scenario, ScenarioError> {
    let start = match (s.manual, s.start_in) {
        (Some(true), Some(d)) => {
            return Err(invalid(
                origin,
                "scenario.manual",
                "true",
                &format!(
                    "contradicts scenario.start-in = {:?}",
                    humantime::format_duration(d.0).to_string()
                ),
                "either manual = true or start-in, not both",
            ))
        }
        (Some(true), None) => Start::Manual,
        (_, Some(d)) => Start::In(d.0),
        (_, None) => Scenario::default().start,
    };
    let start = match &s.start_at {
        Some(at) => start_at(at, s.manual, s.start_in, origin, now)?,
        None => start,
    };
    let scenario = Scenario {
        start,
        interruption_in: s.interruption_in().0,
        rebalance_lead: s.rebalance_lead().0,
        action: s.action(),
        rebalance: s.rebalance(),
        asg_terminate_in: asg(in_asg, s.asg_terminate_in, origin)?,
        maintenance,
    };
    if scenario.interruption_in.is_zero() && scenario.action != Action::Hibernate {
        return Err(invalid(
            origin,
            "scenario.interruption-in",
            "0s",
            "the instance would vanish before its notice",
            "a positive duration like \"5s\" or \"2m\"",
        ));
    }
    Ok(scenario)
}

/// `start-at`: must parse, come after `now`, and not fight another start option.
fn start_at(
    at: &TimeText,
    manual: Option<bool>,
    start_in: Option<Dur>,
    origin: &str,
    now: SystemTime,
) -> Result<Start, ScenarioError> {
    let field = "scenario.start-at";
    let value = format!("{:?}", at.0);
    if manual == Some(true) || start_in.is_some() {
        return Err(invalid(
            origin,
            field,
            &value,
            "contradicts scenario.manual / scenario.start-in",
            "one of start-at, start-in or manual = true",
        ));
    }
    // The one date bound (scenario/dates.rs), as for every date from a file or a flag.
    let parsed = crate::scenario::dates::parse_rfc3339(&at.0).map_err(|e| match e {
        crate::scenario::dates::Rfc3339Error::Syntax => invalid(
            origin,
            field,
            &value,
            "not an RFC 3339 time",
            "a time like \"2026-11-26T09:00:00Z\" or \"2026-11-26T10:00:00+01:00\"",
        ),
        crate::scenario::dates::Rfc3339Error::OutOfRange => invalid(
            origin,
            field,
            &value,
            "outside the dates spot-sim accepts",
            crate::scenario::dates::ALLOWED,
        ),
    })?;
    let t: SystemTime = parsed.into();
    if t <= now {
        return Err(invalid(
            origin,
            field,
            &value,
            &format!("in the past (it is now {})", crate::scenario::rfc3339(now)),
            "a time still to come",
        ));
    }
    if t.duration_since(now).unwrap_or_default() > MAX_DURATION {
        return Err(invalid(
            origin,
            field,
            &value,
            "too far ahead",
            "within 366 days",
        ));
    }
    Ok(Start::At(t))
}

/// `asg` / `asg-terminate-in`: a termination needs a group.
fn asg(
    asg: Option<bool>,
    terminate_in: Option<Dur>,
    origin: &str,
) -> Result<Option<Duration>, ScenarioError> {
    match (asg, terminate_in) {
        (Some(false), Some(d)) => Err(invalid(
            origin,
            "scenario.asg-terminate-in",
            format!("{:?}", humantime::format_duration(d.0).to_string()),
            "the instance is not in an Auto Scaling group (asg = false / --no-asg)",
            "either asg = false or asg-terminate-in, not both",
        )),
        (_, d) => Ok(d.map(|d| d.0)),
    }
}

/// `[imds]` options and `[tags]`.
fn options(
    i: &ImdsSection,
    tags: BTreeMap<String, String>,
    origin: &str,
) -> Result<InstanceOptions, ScenarioError> {
    for (key, value) in &tags {
        if let Some(problem) = tag_key_problem(key) {
            return Err(invalid(
                origin,
                "tags",
                format!("{key:?}"),
                &format!("tag key {problem}"),
                "1 to 128 bytes of letters, digits and + - = . , _ : @ (no `/` or spaces)",
            ));
        }
        if value.chars().count() > MAX_TAG_VALUE {
            return Err(invalid(
                origin,
                &format!("tags.{key}"),
                format!("{} characters", value.chars().count()),
                "tag value too long",
                "at most 256 characters",
            ));
        }
    }
    Ok(InstanceOptions {
        // Checked: 1 to 64.
        hop_limit: u8::try_from(i.http_put_response_hop_limit()).unwrap_or(u8::MAX),
        http_endpoint: i.http_endpoint(),
        http_protocol_ipv6: i.http_protocol_ipv6(),
        instance_metadata_tags: i.instance_metadata_tags(),
        tags,
    })
}

/// `passthrough`, where to and within how long.
fn passthrough(i: &ImdsSection, origin: &str) -> Result<Option<Passthrough>, ScenarioError> {
    if !i.passthrough() {
        return Ok(None);
    }
    let upstream = i.passthrough_upstream();
    Ok(Some(Passthrough {
        upstream: upstream.parse().map_err(|_| {
            invalid(
                origin,
                "imds.passthrough-upstream",
                format!("{upstream:?}"),
                "not an address",
                "IP:port, like 169.254.169.254:80",
            )
        })?,
        timeout: i.passthrough_timeout().0,
    }))
}

/// `[faults]`: a throttle mode needs a rate.
fn faults(f: &FaultsSection, origin: &str) -> Result<Faults, ScenarioError> {
    if let (None, Some(mode)) = (f.throttle, f.throttle_mode) {
        return Err(invalid(
            origin,
            "faults.throttle-mode",
            format!("{:?}", mode.as_str()),
            "does nothing without a rate",
            "set faults.throttle (--fault-throttle) too, like \"5/s\"",
        ));
    }
    Ok(Faults {
        error_503_rate: f.error_503_rate(),
        latency: f.latency().0,
        token_ttl: f.token_ttl,
        throttle: f.throttle.map(|rate| Throttle {
            rate,
            mode: f.throttle_mode(),
        }),
    })
}

fn metadata_from(table: MetadataTable, origin: &str) -> Result<Metadata, ScenarioError> {
    let m = table.known;
    let availability_zone = m.availability_zone();
    let region = match &m.region {
        Some(r) => r.clone(),
        None => region_of(&availability_zone).ok_or_else(|| {
            invalid(
                origin,
                "metadata.availability-zone",
                format!("{availability_zone:?}"),
                "no region follows from it",
                "a zone like \"eu-west-1b\", or set metadata.region too",
            )
        })?,
    };
    let local_ipv4 = m.local_ipv4();
    if local_ipv4.parse::<Ipv4Addr>().is_err() {
        return Err(invalid(
            origin,
            "metadata.local-ipv4",
            format!("{local_ipv4:?}"),
            "not an IPv4 address",
            "a private address like \"10.0.12.34\"",
        ));
    }
    let hostname = m
        .hostname
        .clone()
        .unwrap_or_else(|| default_hostname(&local_ipv4, &region));
    let local_hostname = m.local_hostname.clone().unwrap_or_else(|| hostname.clone());
    Ok(Metadata {
        instance_id: m.instance_id(),
        instance_type: m.instance_type(),
        ami_id: m.ami_id(),
        hostname,
        local_hostname,
        local_ipv4,
        mac: m.mac(),
        availability_zone,
        region,
        account_id: m.account_id(),
        architecture: m.architecture(),
        autoscaling: m.autoscaling(),
        values: catalogue_values(table.more, origin)?,
        user_data: user_data(m.user_data, m.user_data_file, origin)?,
    })
}

/// The catalogue keys of `[metadata]` (imds/catalogue.rs): strings, or numbers written bare.
fn catalogue_values(
    more: std::collections::BTreeMap<String, toml::Value>,
    origin: &str,
) -> Result<std::collections::BTreeMap<String, String>, ScenarioError> {
    let mut out = std::collections::BTreeMap::new();
    for (key, value) in more {
        let field = format!("metadata.{key}");
        if !crate::imds::metadata_keys().any(|k| k == key) {
            let known: Vec<&str> = crate::imds::metadata_keys().collect();
            return Err(invalid(
                origin,
                &field,
                format!("{value}"),
                "unknown field",
                &format!(
                    "instance-id, instance-type, ami-id, hostname, local-hostname, local-ipv4, \
                     mac, availability-zone, region, account-id, architecture, autoscaling, \
                     user-data, user-data-file, {}",
                    known.join(", ")
                ),
            ));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            other => {
                return Err(invalid(
                    origin,
                    &field,
                    format!("{other}"),
                    "not a string",
                    "a string like \"sg-0123456789abcdef0\" (\"\" hides the path)",
                ))
            }
        };
        if text.chars().any(char::is_control) {
            return Err(invalid(
                origin,
                &field,
                format!("{text:?}"),
                "control characters",
                "one line of text",
            ));
        }
        out.insert(key, text);
    }
    Ok(out)
}

/// The most user data EC2 accepts (16 KB, before base64).
const MAX_USER_DATA: u64 = 16 * 1024;

/// `user-data` inline or from `user-data-file` (relative to the scenario file's directory).
fn user_data(
    inline: Option<String>,
    file: Option<std::path::PathBuf>,
    origin: &str,
) -> Result<Option<String>, ScenarioError> {
    let (text, field) = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                origin,
                "metadata.user-data-file",
                "(both set)",
                "user-data and user-data-file are both set",
                "one of them",
            ))
        }
        (Some(text), None) => (text, "metadata.user-data"),
        (None, Some(path)) => {
            let bytes = read_user_data(&path, origin)?;
            let text = String::from_utf8(bytes).map_err(|_| {
                invalid(
                    origin,
                    "metadata.user-data-file",
                    format!("{:?}", path.display().to_string()),
                    "not UTF-8 text (gzip'd or binary user data is not supported)",
                    "a text file: a script, cloud-config, or MIME multipart",
                )
            })?;
            (text, "metadata.user-data-file")
        }
        (None, None) => return Ok(None),
    };
    if text.len() as u64 > MAX_USER_DATA {
        return Err(invalid(
            origin,
            field,
            format!("({} bytes)", text.len()),
            "more than EC2 accepts",
            "at most 16384 bytes",
        ));
    }
    Ok(Some(text))
}

/// The bytes of `user-data-file`, read once at start by the user who ran spot-sim, through
/// the one safe reader (safe_file/read.rs): a regular file of at most 16 KB, beneath the
/// scenario file's own directory. Whoever can write the scenario (in a DaemonSet, whoever
/// edits the ConfigMap) chooses this path, and the file is served to the target: so an absolute
/// path, a `..` or a symlink leading out of that directory is refused, and a DaemonSet's
/// ConfigMap mount bounds what can be served. Put the file beside the scenario (or inline it as
/// `user-data`) to use it.
fn read_user_data(path: &Path, origin: &str) -> Result<Vec<u8>, ScenarioError> {
    use crate::safe_file::FileError;
    let base = match Path::new(origin).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let shown = format!("{:?}", path.display().to_string());
    let refuse = |problem: String, allowed: &str| {
        invalid(origin, "metadata.user-data-file", &shown, &problem, allowed)
    };
    crate::safe_file::read_beneath(base, path, MAX_USER_DATA).map_err(|e| match e {
        FileError::Outside { .. } => refuse(
            format!(
                "outside the scenario file's directory {:?}",
                base.display().to_string()
            ),
            "a file in the scenario's directory (no absolute path, no `..`, no symlink leading out); copy it there or inline it as user-data",
        ),
        FileError::NotRegular { what, .. } => {
            refuse(format!("{what}, not a regular file"), "a text file")
        }
        FileError::TooLarge { len, .. } => refuse(
            format!("{len} bytes, more than EC2 accepts"),
            "at most 16384 bytes",
        ),
        FileError::Grew { .. } => refuse("grew while being read".into(), "at most 16384 bytes"),
        other => refuse(format!("cannot read it ({other})"), "a readable file"),
    })
}

/// "us-east-1a" → "us-east-1".
fn region_of(zone: &str) -> Option<String> {
    let region = zone.trim_end_matches(|c: char| c.is_ascii_lowercase());
    (region.len() < zone.len() && region.ends_with(|c: char| c.is_ascii_digit()))
        .then(|| region.to_string())
}
