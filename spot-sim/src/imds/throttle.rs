//! The throttling fault (`--fault-throttle`): requests above a rate are answered 429, or go
//! unanswered as packets dropped at EC2's link-local cap would.
//!
//! What EC2 does, as far as it is written down:
//! - The EC2 User Guide, "Retrieve instance metadata" → "Query throttling": "We throttle queries
//!   to the instance metadata service on a per-instance basis, and we place limits on the number
//!   of simultaneous connections"; a throttled client should "retry your query with an
//!   exponential backoff strategy". No rate, status, body or header is given.
//! - Users report the status line `429 Too Many Requests` from 169.254.169.254 (facter in
//!   NatLabRockies/OpenStudio-workflow-gem#5, 2014; boto's "HTTP Error 429: Too Many Requests"
//!   in DataBiosphere/toil#688, 2016). No report shows the body or a `Retry-After`, so the 429
//!   carries IMDS's usual error page and headers and no `Retry-After` (inferred).
//! - Link-local traffic (IMDS, the DNS resolver, time sync) is capped in packets per second per
//!   network interface; above it packets are queued, then dropped, which the ENA driver counts
//!   in `linklocal_allowance_exceeded` (EKS Best Practices Guide, "Monitoring EKS workloads for
//!   network performance issues"; 1024 packets/s per ENI there and in
//!   amazonlinux/amazon-ec2-net-utils#120, where IMDS answers went missing). A dropped SYN is
//!   resent by the client's kernel after 1, 2, 4 … s (Linux `tcp_syn_retries` = 6, ETIMEDOUT
//!   after 127 s); drop mode holds a request on that schedule and answers it at the first
//!   resend that finds the rate free. A client with a shorter timeout (botocore's 1 s) times
//!   out; spot-sim cannot drop the SYN itself, so the client always sees its connect succeed
//!   and its read time out (inferred: on EC2 either may time out).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer};

use crate::scenario::lock;

/// Requests per second, as `--fault-throttle` and `[faults] throttle` write it: `5/s`,
/// `30/min`, `100/h`, or a bare number (per second).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate(f64);

impl Rate {
    pub fn per_second(self) -> f64 {
        self.0
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let fix = "write a positive rate like 5/s, 30/min or 100/h";
        let (number, unit) = s.split_once('/').unwrap_or((s, "s"));
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            other => {
                return Err(format!(
                    "unknown unit `/{}` in the rate `{}`; {fix}",
                    crate::escape::untrusted(other),
                    crate::escape::untrusted(s)
                ))
            }
        };
        let shown = crate::escape::untrusted(s);
        match number.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && n > 0.0 => Ok(Rate(n / seconds)),
            Ok(n) if n < 0.0 => Err(format!("the rate `{shown}` is negative; {fix}")),
            // Only zero is left of the finite numbers.
            Ok(n) if n.is_finite() => Err(format!(
                "a rate of `{shown}` would refuse every request; {fix} (to refuse all, use --fault-503-rate 1)"
            )),
            _ => Err(format!("`{shown}` is not a rate; {fix}")),
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    /// A string (`"5/s"`) or a bare number (per second).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(f64),
        }
        let text = match Either::deserialize(d)? {
            Either::Text(s) => s,
            Either::Number(n) => n.to_string(),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a request above the rate gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
pub enum ThrottleMode {
    /// `429 Too Many Requests`, as users report from IMDS.
    #[default]
    #[value(name = "429")]
    #[serde(rename = "429")]
    TooManyRequests,
    /// No answer, as a packet dropped at the link-local cap: the client times out.
    #[value(name = "drop")]
    #[serde(rename = "drop")]
    Drop,
}

impl ThrottleMode {
    /// As the command line and the scenario file spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleMode::TooManyRequests => "429",
            ThrottleMode::Drop => "drop",
        }
    }
}

/// The fault as configured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throttle {
    pub rate: Rate,
    pub mode: ThrottleMode,
}

/// When a dropped SYN is sent again, counted from the previous send (Linux: 1 s initial RTO,
/// doubling, 6 retries), and how long after the last one the client's connect gives up.
const RESENDS: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(32),
];
const GIVE_UP_AFTER_LAST: Duration = Duration::from_secs(64);

/// One target's allowance: a token bucket holding one second's worth of requests (at least
/// one), refilled continuously, so a client at or under the rate is never throttled and one
/// above it is, after its first second's burst.
#[derive(Debug)]
pub(crate) struct Bucket {
    throttle: Throttle,
    capacity: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub fn new(throttle: Throttle) -> Bucket {
        let capacity = throttle.rate.per_second().max(1.0);
        Bucket {
            throttle,
            capacity,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    pub fn mode(&self) -> ThrottleMode {
        self.throttle.mode
    }

    /// Whether a request arriving at `now` is within the rate (and counts it if so).
    pub fn admit_at(&self, now: Instant) -> bool {
        let mut state = lock(&self.state);
        let (tokens, last) = &mut *state;
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.throttle.rate.0;
        *tokens = (*tokens + refill).min(self.capacity);
        *last = (*last).max(now);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn admit(&self) -> bool {
        self.admit_at(Instant::now())
    }

    /// Drop mode, once a request was refused: waits as a client whose SYN was dropped would
    /// resend it, and returns whether a resend got through before the client's kernel gave up.
    /// Dropping the future (the client closed its connection) ends the wait without a turn.
    pub async fn wait_resends(&self) -> bool {
        for wait in RESENDS {
            tokio::time::sleep(wait).await;
            if self.admit() {
                return true;
            }
        }
        tokio::time::sleep(GIVE_UP_AFTER_LAST).await;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(rate: &str) -> Bucket {
        Bucket::new(Throttle {
            rate: rate.parse().expect("a rate"),
            mode: ThrottleMode::TooManyRequests,
        })
    }

    #[test]
    fn rates_are_written_per_second_minute_or_hour() {
        for (text, per_second) in [
            ("5/s", 5.0),
            ("5", 5.0),
            (" 2.5 / sec ", 2.5),
            ("30/min", 0.5),
            ("7200/h", 2.0),
        ] {
            assert_eq!(text.parse::<Rate>(), Ok(Rate(per_second)), "{text}");
        }
    }

    #[test]
    fn zero_negative_and_unknown_units_are_refused_naming_the_fix() {
        for (text, problem) in [
            ("0", "would refuse every request"),
            ("0/s", "would refuse every request"),
            ("-5/s", "negative"),
            ("5/fortnight", "unknown unit `/fortnight`"),
            ("five", "not a rate"),
            ("inf", "not a rate"),
            ("NaN/s", "not a rate"),
            ("", "not a rate"),
        ] {
            let e = text.parse::<Rate>().expect_err(text);
            assert!(e.contains(problem), "{text}: {e}");
            assert!(e.contains("like 5/s"), "{text}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_client_under_the_rate_is_never_throttled_and_one_above_it_is_after_its_burst() {
        let b = bucket("5/s");
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // One a second for a minute: always admitted.
        assert!((0..60).all(|s| b.admit_at(at(s * 1000))));
        // Twenty a second for a second: the burst of five, and five more as the rate refills
        // (the last due just after the second ends).
        let start = 61_000;
        let admitted: Vec<bool> = (0..20).map(|i| b.admit_at(at(start + i * 50))).collect();
        assert_eq!(
            admitted.iter().filter(|a| **a).count(),
            5 + 4,
            "{admitted:?}"
        );
        assert!(admitted[..5].iter().all(|a| *a), "{admitted:?}");
        // Past the burst, one in four: every 200 ms.
        assert_eq!(
            &admitted[8..],
            [true, false, false, false].repeat(3),
            "{admitted:?}"
        );
    }

    #[test]
    fn a_rate_under_one_a_second_still_lets_one_request_through_then_waits() {
        let b = bucket("30/min");
        let t0 = Instant::now();
        assert!(b.admit_at(t0));
        assert!(!b.admit_at(t0 + Duration::from_millis(1900)));
        assert!(b.admit_at(t0 + Duration::from_millis(2000)));
    }

    #[tokio::test]
    async fn a_dropped_request_gets_through_at_the_first_resend_that_finds_room() {
        let b = bucket("2/s");
        assert!(b.admit() && b.admit() && !b.admit());
        let started = Instant::now();
        // The rate has room again after 0.5 s, but the client resends only at 1 s.
        assert!(b.wait_resends().await);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_millis(1500),
            "{waited:?}"
        );
    }
}
