//! Resolving the scenario options (`options.rs`) and file (`file.rs`) into [`Settings`]:
//! command line over scenario file over defaults, every value checked.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::check::{invalid, MAX_DURATION};
use super::file::ScenarioFile;
use super::options::ScenarioArgs;
use crate::imds::{default_hostname, Faults, ImdsConfig, Metadata, Passthrough};
use crate::scenario::{Action, OnInterrupt, Scenario, ScenarioError, Start};

/// Where passthrough forwards to unless told otherwise: the real IMDS.
pub const DEFAULT_UPSTREAM: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), 80);
/// Bound on one upstream exchange (connect + answer).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// A resolved run: the timeline, the responder configuration and the interrupt action.
#[derive(Clone, Debug)]
pub struct Settings {
    pub scenario: Scenario,
    pub imds: ImdsConfig,
    pub on_interrupt: OnInterrupt,
}

impl ScenarioArgs {
    /// The settings for this run: command line over `--scenario` file over defaults.
    pub fn resolve(&self) -> Result<Settings, ScenarioError> {
        let (mut file, origin) = match &self.scenario {
            Some(path) => (ScenarioFile::load(path)?, path.display().to_string()),
            None => (ScenarioFile::default(), "command line".to_string()),
        };
        self.overlay(&mut file)?;
        // `start-at` must lie ahead of when this spot-sim started, not of now: a target added
        // later (`target add`, `--follow`) shares the absolute t0 even once it has passed.
        static STARTED: std::sync::OnceLock<SystemTime> = std::sync::OnceLock::new();
        settings_from(file, &origin, *STARTED.get_or_init(SystemTime::now))
    }

    fn overlay(&self, file: &mut ScenarioFile) -> Result<(), ScenarioError> {
        use super::file::Dur;
        let s = &mut file.scenario;
        // Any start option on the command line replaces the file's choice of start.
        if let Some(d) = self.start_in {
            s.start_in = Some(Dur(d));
            s.manual = None;
            s.start_at = None;
        }
        if let Some(at) = &self.start_at {
            s.start_at = Some(super::file::TimeText(at.clone()));
            s.manual = None;
            s.start_in = None;
        }
        if self.manual {
            s.manual = Some(true);
            s.start_in = None;
            s.start_at = None;
        }
        set(&mut s.interruption_in, self.interruption_in.map(Dur));
        set(&mut s.rebalance_lead, self.rebalance_lead.map(Dur));
        set(&mut s.action, self.action);
        set(&mut s.rebalance, self.no_rebalance.then_some(false));
        set(&mut s.on_interrupt, self.on_interrupt);
        if self.no_asg {
            s.asg = Some(false);
            s.asg_terminate_in = None;
        }
        if let Some(d) = self.asg_terminate_in {
            s.asg_terminate_in = Some(Dur(d));
            s.asg = None;
        }

        let i = &mut file.imds;
        set(&mut i.http_tokens, self.imdsv2);
        set(
            &mut i.http_put_response_hop_limit,
            self.http_put_response_hop_limit.map(i64::from),
        );
        set(&mut i.http_endpoint, self.http_endpoint);
        set(&mut i.http_protocol_ipv6, self.http_protocol_ipv6);
        set(&mut i.instance_metadata_tags, self.instance_metadata_tags);
        set(&mut i.passthrough, self.passthrough.then_some(true));
        set(
            &mut i.passthrough_upstream,
            self.passthrough_upstream.map(|a| a.to_string()),
        );
        set(
            &mut i.allow_credentials,
            self.allow_credentials.then_some(true),
        );

        let f = &mut file.faults;
        set(&mut f.error_503_rate, self.fault_503_rate);
        set(&mut f.latency, self.fault_latency.map(Dur));
        set(&mut f.token_ttl, self.fault_token_ttl);
        set(&mut f.throttle, self.fault_throttle);
        set(&mut f.throttle_mode, self.fault_throttle_mode);

        let m = &mut file.metadata;
        set(&mut m.instance_id, self.instance_id.clone());
        set(&mut m.instance_type, self.instance_type.clone());
        if let Some(az) = &self.availability_zone {
            m.availability_zone = Some(az.clone());
            // The file's region belonged to the file's zone.
            m.region = None;
        }
        super::instance::overlay(self, file)
    }
}

fn set<T>(field: &mut Option<T>, cli: Option<T>) {
    if cli.is_some() {
        *field = cli;
    }
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
fn settings_from(
    file: ScenarioFile,
    origin: &str,
    now: SystemTime,
) -> Result<Settings, ScenarioError> {
    let defaults = Scenario::default();
    let s = file.scenario;
    for (field, value) in [
        ("scenario.start-in", &s.start_in),
        ("scenario.asg-terminate-in", &s.asg_terminate_in),
        ("scenario.interruption-in", &s.interruption_in),
        ("scenario.rebalance-lead", &s.rebalance_lead),
        ("faults.latency", &file.faults.latency),
        ("imds.passthrough-timeout", &file.imds.passthrough_timeout),
    ] {
        if let Some(d) = value.as_ref().filter(|d| d.0 > MAX_DURATION) {
            return Err(invalid(
                origin,
                field,
                format!("{:?}", humantime::format_duration(d.0).to_string()),
                "too long",
                "at most 366 days",
            ));
        }
    }
    if file.imds.passthrough_timeout.is_some_and(|d| d.0.is_zero()) {
        // Zero would time out every passthrough request before it is sent.
        return Err(invalid(
            origin,
            "imds.passthrough-timeout",
            "\"0s\"",
            "every request to the real IMDS would time out at once",
            "a positive duration like \"2s\"",
        ));
    }
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
        (_, None) => defaults.start,
    };
    let start = match &s.start_at {
        Some(at) => super::instance::start_at(at, s.manual, s.start_in, origin, now)?,
        None => start,
    };
    // `metadata.autoscaling` is the older name of `scenario.asg`.
    let in_asg = s.asg.or(file.metadata.autoscaling);
    let asg_terminate_in = super::instance::asg(in_asg, s.asg_terminate_in, origin)?;
    let maintenance = file
        .maintenance
        .into_iter()
        .enumerate()
        .map(|(n, e)| super::instance::maintenance_plan(n, e, origin))
        .collect::<Result<_, _>>()?;
    let scenario = Scenario {
        start,
        interruption_in: s.interruption_in.map_or(defaults.interruption_in, |d| d.0),
        rebalance_lead: s.rebalance_lead.map_or(defaults.rebalance_lead, |d| d.0),
        action: s.action.unwrap_or(defaults.action),
        rebalance: s.rebalance.unwrap_or(defaults.rebalance),
        asg_terminate_in,
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

    let i = file.imds;
    let passthrough = if i.passthrough.unwrap_or(false) {
        let upstream = match &i.passthrough_upstream {
            Some(a) => a.parse().map_err(|_| {
                invalid(
                    origin,
                    "imds.passthrough-upstream",
                    format!("{a:?}"),
                    "not an address",
                    "IP:port, like 169.254.169.254:80",
                )
            })?,
            None => DEFAULT_UPSTREAM,
        };
        Some(Passthrough {
            upstream,
            timeout: i
                .passthrough_timeout
                .map_or(DEFAULT_UPSTREAM_TIMEOUT, |d| d.0),
        })
    } else {
        None
    };

    let f = file.faults;
    let rate = f.error_503_rate.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&rate) {
        return Err(invalid(
            origin,
            "faults.error-503-rate",
            rate,
            "not a fraction",
            "0.0 to 1.0",
        ));
    }
    if f.token_ttl == Some(0) {
        return Err(invalid(
            origin,
            "faults.token-ttl",
            0,
            "tokens would be expired when issued",
            "1 or more seconds",
        ));
    }
    if let (None, Some(mode)) = (f.throttle, f.throttle_mode) {
        return Err(invalid(
            origin,
            "faults.throttle-mode",
            format!("{:?}", mode.as_str()),
            "does nothing without a rate",
            "set faults.throttle (--fault-throttle) too, like \"5/s\"",
        ));
    }
    let faults = Faults {
        error_503_rate: rate,
        latency: f.latency.map_or(Duration::ZERO, |d| d.0),
        token_ttl: f.token_ttl,
        throttle: f.throttle.map(|rate| crate::imds::Throttle {
            rate,
            mode: f.throttle_mode.unwrap_or_default(),
        }),
    };

    let options = super::instance::options(&i, file.tags, origin)?;
    let mut metadata = metadata_from(file.metadata, origin)?;
    if let Some(asg) = s.asg {
        metadata.autoscaling = asg;
    }
    Ok(Settings {
        scenario,
        imds: ImdsConfig {
            imdsv2: i.http_tokens.unwrap_or_default(),
            options,
            faults,
            passthrough,
            allow_credentials: i.allow_credentials.unwrap_or(false),
            metadata,
            limits: Default::default(),
        },
        on_interrupt: s.on_interrupt.unwrap_or_default(),
    })
}

fn metadata_from(m: super::file::MetadataSection, origin: &str) -> Result<Metadata, ScenarioError> {
    let d = Metadata::default();
    let availability_zone = m.availability_zone.unwrap_or(d.availability_zone);
    let region = match m.region {
        Some(r) => r,
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
    let local_ipv4 = m.local_ipv4.unwrap_or(d.local_ipv4);
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
        .unwrap_or_else(|| default_hostname(&local_ipv4, &region));
    let local_hostname = m.local_hostname.unwrap_or_else(|| hostname.clone());
    let values = catalogue_values(m.more, origin)?;
    let user_data = user_data(m.user_data, m.user_data_file, origin)?;
    Ok(Metadata {
        instance_id: m.instance_id.unwrap_or(d.instance_id),
        instance_type: m.instance_type.unwrap_or(d.instance_type),
        ami_id: m.ami_id.unwrap_or(d.ami_id),
        hostname,
        local_hostname,
        local_ipv4,
        mac: m.mac.unwrap_or(d.mac),
        availability_zone,
        region,
        account_id: m.account_id.unwrap_or(d.account_id),
        architecture: m.architecture.unwrap_or(d.architecture),
        autoscaling: m.autoscaling.unwrap_or(d.autoscaling),
        values,
        user_data,
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
