//! The responder and its router: one request in, the answer the real IMDS would give out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use rand::Rng;
use tokio::sync::Semaphore;

use super::config::{ImdsConfig, Imdsv2Mode};
use super::passthrough::Upstream;
use super::path::{self, CanonicalPath};
use super::policy::{self, Decision};
use super::stats::{Counters, ResponderStats};
use super::throttle::{Bucket, ThrottleMode};
use super::tokens::{TokenStore, MAX_TOKEN_TTL};
use super::tree::{self, Node, Snapshot};
use crate::scenario::{lock, rfc3339, Clock, Timeline};

const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
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
            throttle,
        })
    }

    pub fn target_name(&self) -> &str {
        &self.target
    }

    pub fn timeline(&self) -> &Arc<Timeline> {
        &self.timeline
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
            self.route(&parts.method, path, &parts.headers).await
        };
        let mut response = routed.response;
        if wants_close(parts.version, &parts.headers) {
            response
                .headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let now = rfc3339(self.clock.now());
        let status = response.status().as_u16();
        if let Some(journal) = self.journal.get() {
            let token = parts
                .headers
                .get(TOKEN_HEADER)
                .and_then(|v| v.to_str().ok());
            // As the router read it: doubled slashes collapsed, any version as `latest`.
            let journaled = path::canonical(path, self.config.limits.max_path_len)
                .map_or_else(|_| path.to_string(), |p| p.as_latest());
            journal.request(
                self.clock.now(),
                parts.method.as_str(),
                &journaled,
                status,
                routed.v2,
                token.map(str::trim),
            );
        }
        let mut counters = lock(&self.counters);
        if status == 401 && !routed.v2 {
            counters.v1_refused += 1;
        }
        counters.record(path, status, routed.v2, now);
        let version = if routed.v2 { "IMDSv2" } else { "IMDSv1" };
        // Every request at debug; at info one line a second per target, so a handler polling
        // in a tight loop cannot flood the log. The path is cut short: it is client input.
        let shown = path::for_log(path);
        log::debug!(
            "{}: {} {shown} → {status} ({version})",
            self.target,
            parts.method
        );
        if let Some(more) = counters.log_slot() {
            let more = if more > 0 {
                format!(" (+{more} more since the last line)")
            } else {
                String::new()
            };
            log::info!(
                "{}: {} {shown} → {status} ({version}){more}",
                self.target,
                parts.method
            );
        }
        response
    }

    async fn route(&self, method: &Method, raw: &str, headers: &HeaderMap) -> Routed {
        let head = method == Method::HEAD;
        let presented = headers.get(TOKEN_HEADER);
        let v2 = presented.is_some();
        let routed = |response| Routed { response, v2 };
        // HttpEndpoint=disabled: EC2 answers everything, the token PUT included, 403.
        if self.endpoint_disabled() {
            return routed(error_page(StatusCode::FORBIDDEN, head));
        }
        let canonical = path::canonical(raw, self.config.limits.max_path_len);
        if canonical.as_ref().is_ok_and(|p| p.is_token_path()) {
            return Routed {
                response: self.token_endpoint(method, headers),
                v2: true,
            };
        }
        // The EC2 User Guide ("Retrieve instance metadata" → Considerations): a PUT to a
        // version-specific path such as /2021-03-23/api/token gets 403 Forbidden, "This
        // behavior is intended" (reported in awsdocs/amazon-ec2-user-guide#183); token or not.
        if method == Method::PUT
            && canonical
                .as_ref()
                .is_ok_and(|p| p.is_versioned_token_path())
        {
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
                Ok(p) => self.answer(&p, head).await,
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
        let decision = policy::decide(p, self.upstream.is_some(), self.config.allow_credentials);
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
        let now = self.clock.now();
        let snapshot = Snapshot {
            metadata: &self.config.metadata,
            phase: self.timeline.phase_at(now),
            schedule: self.timeline.schedule(),
            action: self.timeline.scenario().action,
            pending_time: &self.pending_time,
            options: &self.config.options,
            maintenance: self.timeline.maintenance_at(now),
            asg_terminated: self.timeline.asg_terminated_at(now),
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
        let mut names: std::collections::BTreeSet<String> = theirs
            .lines()
            .map(str::to_string)
            .filter(|l| {
                let name = l.trim_end_matches('/').to_ascii_lowercase();
                !l.is_empty()
                    && !policy::SIMULATED.contains(&name.as_str())
                    && (self.config.allow_credentials
                        || !policy::credential_bearing(&["meta-data", &name]))
            })
            .collect();
        for line in ours.listing().lines() {
            if policy::SIMULATED.contains(&line.trim_end_matches('/')) {
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

/// HTTP/1.0 without keep-alive, or an explicit `Connection: close`.
fn wants_close(version: Version, headers: &HeaderMap) -> bool {
    let connection = headers
        .get(hyper::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if connection.split(',').any(|t| t.trim() == "close") {
        return true;
    }
    version == Version::HTTP_10 && !connection.split(',').any(|t| t.trim() == "keep-alive")
}

fn text(status: StatusCode, body: impl Into<Bytes>, head: bool) -> Response<Full<Bytes>> {
    respond(status, "text/plain", body.into(), head)
}

/// The body IMDS sends with an error status, byte for byte.
pub(crate) fn error_body(status: StatusCode) -> String {
    let title = format!(
        "{} - {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    format!(
        "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n\
         <!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\
         \t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n \
         <head>\n  <title>{title}</title>\n </head>\n <body>\n  <h1>{title}</h1>\n </body>\n\
         </html>\n"
    )
}

fn error_page(status: StatusCode, head: bool) -> Response<Full<Bytes>> {
    respond(status, "text/html", error_body(status).into(), head)
}

/// Every answer: `Server: EC2ws`, the content type, and the length GET would have (HEAD too).
fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    head: bool,
) -> Response<Full<Bytes>> {
    let len = body.len();
    let mut response = Response::new(Full::new(if head { Bytes::new() } else { body }));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(hyper::header::SERVER, HeaderValue::from_static("EC2ws"));
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    h.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}
