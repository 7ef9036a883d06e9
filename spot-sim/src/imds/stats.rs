//! What a responder saw: request counts by path and status, IMDS versions, tokens, and
//! warnings about handler behaviour worth knowing before a real interruption.

use std::collections::BTreeMap;

use serde::Serialize;

/// Distinct paths counted by name; past it they are counted under [`OTHER_PATHS`], so a client
/// spraying random paths cannot grow the map.
const MAX_PATHS: usize = 256;
const MAX_PATH_KEY_LEN: usize = 200;
pub(crate) const OTHER_PATHS: &str = "(other)";

/// A snapshot of what one responder served.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResponderStats {
    pub target: String,
    pub requests_total: u64,
    /// Path → HTTP status → count.
    pub by_path: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Requests without a token.
    pub imds_v1_requests: u64,
    /// Requests with a token, and token requests.
    pub imds_v2_requests: u64,
    pub tokens_issued: u64,
    /// Connections closed at once because the responder was at its connection limit.
    pub connections_over_limit: u64,
    /// Token PUTs never answered: hop limit 1 and the client in another network namespace.
    pub token_puts_unanswered: u64,
    /// Requests above the `--fault-throttle` rate: answered 429, or dropped (drop mode).
    pub requests_throttled: u64,
    /// The instance's metadata options (http-tokens, hop limit, endpoint, IPv6, tags, ASG).
    pub options: BTreeMap<String, String>,
    /// RFC 3339, whole seconds.
    pub last_request_at: Option<String>,
    pub warnings: Vec<String>,
}

/// The counters behind [`ResponderStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub stats: ResponderStats,
    /// 401s answered to token-less requests in required mode.
    pub v1_refused: u64,
    /// When a request was last logged at info level, and how many went unlogged since.
    pub last_logged: Option<std::time::Instant>,
    pub unlogged: u64,
}

impl Counters {
    pub fn record(&mut self, path: &str, status: u16, v2: bool, at: String) {
        let s = &mut self.stats;
        s.requests_total += 1;
        if v2 {
            s.imds_v2_requests += 1;
        } else {
            s.imds_v1_requests += 1;
        }
        s.last_request_at = Some(at);
        let key = if s.by_path.contains_key(path)
            || (s.by_path.len() < MAX_PATHS && path.len() <= MAX_PATH_KEY_LEN)
        {
            path
        } else {
            OTHER_PATHS
        };
        *s.by_path
            .entry(key.to_string())
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    /// `Some(unlogged since the last line)` when this request may be logged at info level:
    /// at most one line a second.
    pub fn log_slot(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.last_logged {
            Some(t) if now.duration_since(t) < std::time::Duration::from_secs(1) => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last_logged = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }

    pub fn snapshot(&self) -> ResponderStats {
        let mut s = self.stats.clone();
        if s.imds_v1_requests > 0 && s.imds_v2_requests == 0 {
            s.warnings.push(format!(
                "the handler polls only with IMDSv1 ({} token-less requests): it fails on \
                 instances with HttpTokens=required; rehearse with --imdsv2 required",
                s.imds_v1_requests
            ));
        }
        if self.v1_refused > 0 {
            s.warnings.push(format!(
                "{} token-less requests were answered 401 (--imdsv2 required)",
                self.v1_refused
            ));
        }
        if s.token_puts_unanswered > 0 {
            s.warnings.push(format!(
                "{} token PUTs were left unanswered: the client is in another network namespace, \
                 one hop further than the node, and http-put-response-hop-limit is 1; on such a \
                 node a containerized handler must fall back to IMDSv1, or the node needs a hop \
                 limit of 2",
                s.token_puts_unanswered
            ));
        }
        if s.requests_throttled > 0 {
            s.warnings.push(format!(
                "{} requests came above the --fault-throttle rate (answered 429, or dropped in \
                 drop mode): on EC2 the handler would be throttled the same way",
                s.requests_throttled
            ));
        }
        if s.tokens_issued >= 50 && s.tokens_issued * 2 > s.imds_v2_requests {
            s.warnings.push(format!(
                "the handler fetched {} tokens for {} requests: it does not reuse its token",
                s.tokens_issued, s.imds_v2_requests
            ));
        }
        s
    }
}
