//! The responder and its router: one request in, the answer the real IMDS would give out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use rand::Rng;
use tokio::sync::Semaphore;

use super::answers::{error_page, respond, text, wants_close};
use super::config::{ImdsConfig, Imdsv2Mode};
use super::passthrough::Upstream;
use super::path::{self, CanonicalPath, PathRejection};
use super::policy::{self, Decision};
use super::stats::{Counters, ResponderStats};
use super::throttle::{Bucket, ThrottleMode};
use super::tokens::{TokenStore, MAX_TOKEN_TTL};
use super::tree::{self, Node, Snapshot};
use crate::lock::lock;
use crate::scenario::{rfc3339, Clock, Moment, Published, Timeline, PUBLISHED};

const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Longest the answer that shows the handler its first event waits for the session to sweep
/// the kernel's outbound map (it takes well under a millisecond unless the session is busy).
const SWEEP_WAIT: Duration = Duration::from_millis(100);
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";

/// The fake IMDS of one target.
#[derive(Debug)]
pub struct Responder {
    pub(crate) target: String,
    pub(crate) timeline: Arc<Timeline>,
    pub(crate) config: ImdsConfig,
    pub(crate) clock: Arc<dyn Clock>,
    tokens: TokenStore,
    pub(crate) counters: Mutex<Counters>,
    upstream: Option<Upstream>,
    /// Shared by every listener this responder serves.
    pub(crate) connections: Arc<Semaphore>,
    /// `pendingTime` of the identity document.
    pending_time: String,
    /// Where every answered request is journaled for the game-day report, once attached.
    journal: std::sync::OnceLock<Arc<crate::journal::Journal>>,
    /// What the instance publishes of its timeline, and never forwards.
    published: &'static [Published],
    /// `--fault-throttle`: this target's allowance.
    pub(crate) throttle: Option<Bucket>,
}

/// How the router answered, besides the response itself.
struct Routed {
    response: Response<Full<Bytes>>,
    /// The request used IMDSv2 (a token, or asked for one).
    v2: bool,
}

impl Responder {
    pub fn new(
        target_name: String,
        timeline: Arc<Timeline>,
        config: ImdsConfig,
        clock: Arc<dyn Clock>,
    ) -> Arc<Responder> {
        Self::publishing(target_name, timeline, config, clock, PUBLISHED)
    }

    /// A responder whose instance publishes its timeline as `published` says.
    pub fn publishing(
        target_name: String,
        timeline: Arc<Timeline>,
        config: ImdsConfig,
        clock: Arc<dyn Clock>,
        published: &'static [Published],
    ) -> Arc<Responder> {
        let upstream = config.passthrough.as_ref().map(Upstream::new);
        let connections = Arc::new(Semaphore::new(config.limits.max_connections));
        let pending_time = rfc3339(clock.now());
        let throttle = config.faults.throttle.map(Bucket::new);
        Arc::new(Responder {
            counters: Mutex::new(Counters {
                stats: ResponderStats {
                    target: target_name.clone(),
                    ..Default::default()
                },
                ..Default::default()
            }),
            target: target_name,
            timeline,
            config,
            clock,
            tokens: TokenStore::default(),
            upstream,
            connections,
            pending_time,
            journal: std::sync::OnceLock::new(),
            published,
            throttle,
        })
    }

    pub fn target_name(&self) -> &str {
        &self.target
    }

    pub fn timeline(&self) -> &Arc<Timeline> {
        &self.timeline
    }

    /// What the instance publishes of its timeline: what its journal must recognise.
    pub fn published(&self) -> &'static [Published] {
        self.published
    }

    /// Journals every request from now on (once; later calls are ignored).
    pub fn attach_journal(&self, journal: Arc<crate::journal::Journal>) {
        let _ = self.journal.set(journal);
    }

    pub fn stats(&self) -> ResponderStats {
        let mut stats = lock(&self.counters).snapshot();
        stats.options = self.option_list();
        stats
    }

    /// Routes one request (usable in unit tests without a socket).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        let (parts, _body) = req.into_parts();
        let head = parts.method == Method::HEAD;
        let faults = &self.config.faults;
        // Throttling counts requests as they arrive, before any added latency. Drop mode was
        // decided before this request was read (`handle_from`).
        let throttled = self
            .throttle
            .as_ref()
            .is_some_and(|t| t.mode() == ThrottleMode::TooManyRequests && !t.admit());
        if !faults.latency.is_zero() {
            tokio::time::sleep(faults.latency).await;
        }
        let path = parts.uri.path();
        // The path rules, once: the route and the journal both read this.
        let canonical = path::canonical(path, self.config.limits.max_path_len);
        let asked_v2 =
            parts.headers.contains_key(TOKEN_HEADER) || parts.headers.contains_key(TTL_HEADER);
        let fault = if throttled {
            lock(&self.counters).stats.requests_throttled += 1;
            // The status line users report from IMDS; its usual error page (throttle.rs).
            Some(StatusCode::TOO_MANY_REQUESTS)
        } else if faults.error_503_rate > 0.0
            && rand::thread_rng().gen_bool(faults.error_503_rate.min(1.0))
        {
            Some(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            None
        };
        let routed = if let Some(status) = fault {
            Routed {
                response: error_page(status, head),
                v2: asked_v2,
            }
        } else {
            self.route(&parts.method, canonical.as_ref(), &parts.headers)
                .await
        };
        let mut response = routed.response;
        if wants_close(parts.version, &parts.headers) {
            response
                .headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let now = rfc3339(self.clock.now());
        let status = response.status().as_u16();
        let mut sweep = None;
        if let Some(journal) = self.journal.get() {
            let token = parts
                .headers
                .get(TOKEN_HEADER)
                .and_then(|v| v.to_str().ok());
            // As the router read it: doubled slashes collapsed, any version as `latest`.
            let journaled = canonical
                .as_ref()
                .map_or_else(|_| path.to_string(), CanonicalPath::as_latest);
            sweep = journal.request(
                self.clock.now(),
                parts.method.as_str(),
                &journaled,
                status,
                routed.v2,
                token.map(str::trim),
            );
        }
        self.count(&parts.method, path, status, routed.v2, now);
        // The handler's first event: connects it makes once it has this answer must land in
        // the kernel's windows that start after detection (journal/classify.rs), so the
        // window open now is closed first. Bounded: a busy session only costs exactness.
        if let Some(done) = sweep {
            let _ = tokio::time::timeout(SWEEP_WAIT, done).await;
        }
        response
    }

    /// Counts an answered request and logs it (at info, one line a second at most).
    fn count(&self, method: &Method, path: &str, status: u16, v2: bool, now: String) {
        let mut counters = lock(&self.counters);
        if status == 401 && !v2 {
            counters.v1_refused += 1;
        }
        counters.record(path, status, v2, now);
        let version = if v2 { "IMDSv2" } else { "IMDSv1" };
        // Every request at debug; at info one line a second per target, so a handler polling
        // in a tight loop cannot flood the log. The path is cut short: it is client input.
        let shown = path::for_log(path);
        log::debug!("{}: {} {shown} → {status} ({version})", self.target, method);
        if let Some(more) = counters.log_slot() {
            let more = if more > 0 {
                format!(" (+{more} more since the last line)")
            } else {
                String::new()
            };
            log::info!(
                "{}: {} {shown} → {status} ({version}){more}",
                self.target,
                method
            );
        }
    }

    async fn route(
        &self,
        method: &Method,
        canonical: Result<&CanonicalPath<'_>, &PathRejection>,
        headers: &HeaderMap,
    ) -> Routed {
        let head = method == Method::HEAD;
        let presented = headers.get(TOKEN_HEADER);
        let v2 = presented.is_some();
        let routed = |response| Routed { response, v2 };
        // HttpEndpoint=disabled: EC2 answers everything, the token PUT included, 403.
        if self.endpoint_disabled() {
            return routed(error_page(StatusCode::FORBIDDEN, head));
        }
        if canonical.is_ok_and(|p| p.is_token_path()) {
            return Routed {
                response: self.token_endpoint(method, headers),
                v2: true,
            };
        }
        // The EC2 User Guide ("Retrieve instance metadata" → Considerations): a PUT to a
        // version-specific path such as /2021-03-23/api/token gets 403 Forbidden, "This
        // behavior is intended" (reported in awsdocs/amazon-ec2-user-guide#183); token or not.
        if method == Method::PUT && canonical.is_ok_and(|p| p.is_versioned_token_path()) {
            return Routed {
                response: error_page(StatusCode::FORBIDDEN, false),
                v2: true,
            };
        }

        // The token before the path, for every path: required mode answers 401 to a
        // token-less request whatever it asked, as EC2 does.
        let now = self.clock.now();
        let remaining = match presented {
            Some(value) => match value.to_str().map(|t| self.tokens.check(t.trim(), now)) {
                Ok(Ok(left)) => Some(left),
                // Real IMDS refuses a bad token even when tokens are optional.
                _ => return routed(error_page(StatusCode::UNAUTHORIZED, head)),
            },
            None if self.config.imdsv2 == Imdsv2Mode::Required => {
                return routed(error_page(StatusCode::UNAUTHORIZED, head))
            }
            None => None,
        };

        let mut response = if !matches!(*method, Method::GET | Method::HEAD) {
            let mut r = error_page(StatusCode::METHOD_NOT_ALLOWED, head);
            r.headers_mut().insert(
                hyper::header::ALLOW,
                HeaderValue::from_static("OPTIONS, GET, HEAD"),
            );
            r
        } else {
            match canonical {
                Ok(p) => self.answer(p, head).await,
                Err(_) => error_page(StatusCode::NOT_FOUND, head),
            }
        };
        if let Some(left) = remaining {
            response
                .headers_mut()
                .insert(HeaderName::from_static(TTL_HEADER), HeaderValue::from(left));
        }
        routed(response)
    }

    /// A GET of a path that passed the path rules: simulated, merged or forwarded, as
    /// [`policy::decide`] says.
    async fn answer(&self, p: &CanonicalPath<'_>, head: bool) -> Response<Full<Bytes>> {
        let decision = policy::decide(
            p,
            self.upstream.is_some(),
            self.config.allow_credentials,
            self.published,
        );
        match (decision, &self.upstream) {
            (Decision::Forward, Some(upstream)) => forward(upstream, &p.to_path(), head).await,
            (Decision::MergedListing, Some(upstream)) => {
                let root = self.tree();
                match root.get(p.rest()) {
                    Some(Node::Dir(ours)) => {
                        let version = p.version().unwrap_or("latest");
                        self.merged_listing(upstream, version, ours, head).await
                    }
                    _ => error_page(StatusCode::NOT_FOUND, head),
                }
            }
            _ => self.lookup(p, head),
        }
    }

    /// `PUT /latest/api/token`.
    fn token_endpoint(&self, method: &Method, headers: &HeaderMap) -> Response<Full<Bytes>> {
        let head = method == Method::HEAD;
        if method == Method::OPTIONS {
            let mut r = text(StatusCode::OK, "", false);
            r.headers_mut().insert(
                hyper::header::ALLOW,
                HeaderValue::from_static("OPTIONS, PUT"),
            );
            return r;
        }
        if method != Method::PUT {
            let mut r = error_page(StatusCode::METHOD_NOT_ALLOWED, head);
            r.headers_mut().insert(
                hyper::header::ALLOW,
                HeaderValue::from_static("OPTIONS, PUT"),
            );
            return r;
        }
        // IMDS refuses tokens to requests that went through a proxy.
        if headers.contains_key("x-forwarded-for") {
            return error_page(StatusCode::FORBIDDEN, false);
        }
        let ttl = headers
            .get(TTL_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|n| (1..=MAX_TOKEN_TTL).contains(n));
        let Some(ttl) = ttl else {
            return error_page(StatusCode::BAD_REQUEST, false);
        };
        let lifetime = self.config.faults.token_ttl.map_or(ttl, |cap| cap.min(ttl));
        let token = self
            .tokens
            .issue(self.clock.now(), Duration::from_secs(lifetime));
        lock(&self.counters).stats.tokens_issued += 1;
        if let Some(journal) = self.journal.get() {
            journal.token_issued(&token, self.clock.now());
        }
        let mut r = text(StatusCode::OK, token, false);
        r.headers_mut()
            .insert(HeaderName::from_static(TTL_HEADER), HeaderValue::from(ttl));
        r
    }

    /// The tree one API version serves, at this instant.
    fn tree(&self) -> tree::Dir {
        let snapshot = Snapshot {
            metadata: &self.config.metadata,
            moment: Moment::at(
                &self.timeline,
                self.clock.now(),
                self.config.metadata.autoscaling,
            ),
            published: self.published,
            pending_time: &self.pending_time,
            options: &self.config.options,
        };
        tree::build(&snapshot)
    }

    /// Serves `p` from spot-sim's own tree: `/` lists the versions, each version the same tree.
    fn lookup(&self, p: &CanonicalPath<'_>, head: bool) -> Response<Full<Bytes>> {
        if p.segments.is_empty() {
            return text(StatusCode::OK, path::VERSIONS.join("\n"), head);
        }
        if p.version().is_none() {
            return error_page(StatusCode::NOT_FOUND, head);
        }
        let root = self.tree();
        if p.rest().is_empty() {
            return text(StatusCode::OK, root.listing(), head);
        }
        match root.get(p.rest()) {
            Some(Node::Leaf(value)) => text(StatusCode::OK, value.clone(), head),
            Some(Node::Dir(dir)) => text(StatusCode::OK, dir.listing(), head),
            None => error_page(StatusCode::NOT_FOUND, head),
        }
    }

    /// The real `meta-data/` listing, with the simulated entries as our phase has them.
    async fn merged_listing(
        &self,
        upstream: &Upstream,
        version: &str,
        ours: &tree::Dir,
        head: bool,
    ) -> Response<Full<Bytes>> {
        let theirs = match upstream.get(&format!("/{version}/meta-data/")).await {
            Ok(f) if f.status == StatusCode::OK => String::from_utf8_lossy(&f.body).into_owned(),
            Ok(f) => {
                log::debug!("real IMDS listing answered {}; serving ours", f.status);
                return text(StatusCode::OK, ours.listing(), head);
            }
            Err(e) => {
                log::debug!("{e}; serving our own listing");
                return text(StatusCode::OK, ours.listing(), head);
            }
        };
        let ours_only = |name: &str| policy::simulated(self.published).any(|s| s == name);
        let mut names: std::collections::BTreeSet<String> = theirs
            .lines()
            .map(str::to_string)
            .filter(|l| {
                let name = l.trim_end_matches('/').to_ascii_lowercase();
                !l.is_empty()
                    && !ours_only(&name)
                    && (self.config.allow_credentials
                        || !policy::credential_bearing(&["meta-data", &name]))
            })
            .collect();
        for line in ours.listing().lines() {
            if ours_only(line.trim_end_matches('/')) {
                names.insert(line.to_string());
            }
        }
        let listing: Vec<String> = names.into_iter().collect();
        text(StatusCode::OK, listing.join("\n"), head)
    }
}

async fn forward(upstream: &Upstream, path: &str, head: bool) -> Response<Full<Bytes>> {
    match upstream.get(path).await {
        Ok(f) => {
            let mut r = respond(f.status, "text/plain", f.body, head);
            if let Some(ct) = f.content_type {
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, ct);
            }
            r
        }
        Err(e) => {
            log::warn!("passthrough of {}: {e}", crate::escape::untrusted(path));
            let status = match e {
                super::passthrough::UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            error_page(status, head)
        }
    }
}
