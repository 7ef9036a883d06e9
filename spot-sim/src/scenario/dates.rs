//! Every date spot-sim reads from a file or a flag goes through [`bounded`]: the scenario's
//! and the experiment's `start-at`, a maintenance event's dates. And every instant it writes
//! goes through [`to_datetime`], which cannot panic whatever the instant.
//!
//! Why a bound at all: `time` stops at the year 9999, and `OffsetDateTime::from(SystemTime)`
//! panics past it ("overflow adding duration to date"). An experiment's `start-at` near 9999
//! plus its scenario's durations went past it in the verdict, with pods attached (issue #20).
//! Dates are kept between 1970 and the end of 2999: anything spot-sim adds to one (stagger,
//! the scenario's durations, each at most a year or a week) stays centuries short of 9999.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// The first instant a date may name: the Unix epoch (spot-sim's journal counts from it).
pub const EARLIEST: SystemTime = UNIX_EPOCH;
/// Seconds from the epoch to 3000-01-01T00:00:00Z, the first instant past the bound.
const END_SECS: u64 = 32_503_680_000;

/// The first instant past the bound (3000-01-01T00:00:00Z).
pub fn end() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(END_SECS)
}

/// What the bound allows, in words, for an error's "allowed" part.
pub const ALLOWED: &str = "a date from 1970-01-01 to 2999-12-31";

/// A date outside what spot-sim accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outside the dates spot-sim accepts ({ALLOWED})")]
pub struct OutOfRange;

/// `dt` as a [`SystemTime`] when it lies in `[1970-01-01, 3000-01-01)`.
pub fn bounded(dt: OffsetDateTime) -> Result<SystemTime, OutOfRange> {
    let secs = dt.unix_timestamp();
    if secs < 0 || secs as u64 >= END_SECS {
        return Err(OutOfRange);
    }
    Ok(UNIX_EPOCH + Duration::new(secs as u64, dt.nanosecond()))
}

/// Why an RFC 3339 date was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rfc3339Error {
    /// Not RFC 3339 with an offset.
    Syntax,
    OutOfRange,
}

/// An RFC 3339 date with an offset (`2026-11-26T14:00:00Z`), bounded.
pub fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, Rfc3339Error> {
    let dt = OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|_| Rfc3339Error::Syntax)?;
    bounded(dt).map_err(|_| Rfc3339Error::OutOfRange)?;
    Ok(dt)
}

/// `t` as a date-time in UTC, saturating at the ends of `time`'s range instead of panicking:
/// every formatter of an instant uses this.
pub fn to_datetime(t: SystemTime) -> OffsetDateTime {
    let max = time::PrimitiveDateTime::MAX.assume_utc();
    let min = time::PrimitiveDateTime::MIN.assume_utc();
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs())
            .ok()
            .and_then(|s| OffsetDateTime::UNIX_EPOCH.checked_add(time::Duration::seconds(s)))
            .and_then(|dt| dt.checked_add(time::Duration::nanoseconds(i64::from(d.subsec_nanos()))))
            .unwrap_or(max),
        Err(e) => {
            let d = e.duration();
            i64::try_from(d.as_secs())
                .ok()
                .and_then(|s| OffsetDateTime::UNIX_EPOCH.checked_sub(time::Duration::seconds(s)))
                .and_then(|dt| {
                    dt.checked_sub(time::Duration::nanoseconds(i64::from(d.subsec_nanos())))
                })
                .unwrap_or(min)
        }
    }
}

#[cfg(test)]
mod tests;
