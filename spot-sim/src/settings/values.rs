//! The value types settings are written in, and how the command line parses them: one parser
//! for the flag and the file's key alike.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written the humantime way: "90s", "2m", "1h 30m".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    /// For clap: the same words as the scenario file takes.
    pub(crate) fn parse(s: &str) -> Result<Dur, String> {
        parse_duration(s).map(Dur)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Dur::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses "90s", "2m", "1h 30m"; the error says how to write one.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration `{s}` ({e}); write it like \"90s\", \"2m\" or \"1h 30m\"")
    })
}

/// A date-time written as a string or as a bare TOML date-time; kept as text to parse later,
/// so the error can name the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeText(pub String);

impl TimeText {
    /// For clap: kept as typed, checked with the rest of the settings.
    pub(crate) fn parse(s: &str) -> Result<TimeText, String> {
        Ok(TimeText(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for TimeText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Toml(toml::value::Datetime),
        }
        Ok(TimeText(match Either::deserialize(d)? {
            Either::Text(s) => s,
            Either::Toml(t) => t.to_string(),
        }))
    }
}

/// A fraction from 0.0 to 1.0.
pub(crate) fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "`{s}` is not a fraction; write one between 0.0 and 1.0, e.g. 0.2"
        )),
    }
}

/// `IP:port`, kept as text (the scenario file's key is text too, checked when resolved).
pub(crate) fn socket_addr(s: &str) -> Result<String, String> {
    s.parse::<std::net::SocketAddr>()
        .map(|a| a.to_string())
        .map_err(|e| format!("{e}: write IP:port, like 169.254.169.254:80"))
}
