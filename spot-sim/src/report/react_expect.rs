//! One `--expect-react`: what the reaction must be and how soon after detection.
//!
//! Written as `[WHAT] [within DURATION]`: `exec kubectl drain within 5s`,
//! `connect 10.0.0.1:443 within 10s`, `connect :443`, `exit within 1m`, or a bare duration
//! (`5s`: any reaction within it, as before there were matchers). Without `within`, the
//! reaction only has to come before the interruption.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::journal::ReactMatcher;
use crate::settings::parse_duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactExpectation {
    pub what: ReactMatcher,
    /// How long after detection at most; `None`: any time before the interruption.
    pub within: Option<Duration>,
}

impl ReactExpectation {
    /// For sentences: "`exec kubectl drain`", "a reaction".
    pub fn said_what(&self) -> String {
        match &self.what {
            ReactMatcher::Any => "a reaction".to_string(),
            m => format!("`{m}`"),
        }
    }

    /// For sentences: "`exec kubectl drain` within 5 s", "a reaction before the interruption".
    pub fn said(&self) -> String {
        let what = self.said_what();
        match self.within {
            Some(d) => format!("{what} within {}", super::said(d.as_secs_f64())),
            None => format!("{what} before the interruption"),
        }
    }
}

impl FromStr for ReactExpectation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(d) = parse_duration(s) {
            return Ok(ReactExpectation {
                what: ReactMatcher::Any,
                within: Some(d),
            });
        }
        // The last `within` ends the matcher: a duration may have spaces ("1m 30s").
        let (what, within) = match s
            .rfind(" within ")
            .map(|i| (i, i + 8))
            .or_else(|| s.starts_with("within ").then_some((0, 7)))
        {
            Some((end, from)) => {
                let d = parse_duration(&s[from..])
                    .map_err(|e| format!("--expect-react {s:?}: after `within`: {e}"))?;
                (&s[..end], Some(d))
            }
            None => (s, None),
        };
        let what = if what.trim().is_empty() && within.is_some() {
            ReactMatcher::Any
        } else {
            what.parse().map_err(|e| {
                format!("--expect-react {s:?}: {e} (the form is `exec kubectl drain within 5s`)")
            })?
        };
        Ok(ReactExpectation { what, within })
    }
}

impl fmt::Display for ReactExpectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.what, self.within) {
            (ReactMatcher::Any, Some(d)) => write!(f, "{}", humantime::format_duration(d)),
            (m, Some(d)) => write!(f, "{m} within {}", humantime::format_duration(d)),
            (m, None) => write!(f, "{m}"),
        }
    }
}

impl Serialize for ReactExpectation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ReactExpectation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> ReactExpectation {
        s.parse().unwrap()
    }

    #[test]
    fn the_forms_users_write_and_their_meaning() {
        assert_eq!(
            e("5s"),
            ReactExpectation {
                what: ReactMatcher::Any,
                within: Some(Duration::from_secs(5))
            }
        );
        assert_eq!(e("within 5s"), e("5s"));
        let drain = e("exec kubectl drain within 5s");
        assert_eq!(
            drain.what,
            ReactMatcher::Exec(vec!["kubectl".into(), "drain".into()])
        );
        assert_eq!(drain.within, Some(Duration::from_secs(5)));
        assert_eq!(e("connect :443").within, None);
        assert_eq!(
            e("exit within 1m 30s").within,
            Some(Duration::from_secs(90))
        );
        // An argument named `within` is still an argument when no duration follows it.
        assert_eq!(
            e("exec tool within"),
            ReactExpectation {
                what: ReactMatcher::Exec(vec!["tool".into(), "within".into()]),
                within: None
            }
        );
        for s in [
            "5s",
            "exec kubectl drain within 5s",
            "connect :443",
            "exit within 1m 30s",
            "connect 10.0.0.1:443/tcp within 10s",
        ] {
            assert_eq!(e(s).to_string(), s);
            let json = serde_json::to_string(&e(s)).unwrap();
            assert_eq!(
                serde_json::from_str::<ReactExpectation>(&json).unwrap(),
                e(s)
            );
        }
        assert_eq!(drain.said(), "`exec kubectl drain` within 5 s");
        assert_eq!(
            e("connect :443").said(),
            "`connect :443` before the interruption"
        );
        assert_eq!(e("2s").said(), "a reaction within 2 s");
    }

    #[test]
    fn a_bad_one_says_what_is_wrong_and_the_form() {
        for (bad, says) in [
            ("kubectl drain within 5s", "unknown reaction `kubectl`"),
            ("exec kubectl drain within soon", "after `within`"),
            ("connect api-server:443", "host name cannot be matched"),
            ("", "unknown reaction ``"),
        ] {
            let err = bad.parse::<ReactExpectation>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.starts_with("--expect-react"), "{err}");
            assert!(!err.contains('\n'));
        }
    }
}
