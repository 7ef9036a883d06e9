//! Prometheus text exposition of a running session: redirects, requests by path and status,
//! tokens issued, and each target's scenario phase. Off unless `--metrics ADDR`; it listens in
//! spot-sim's own network namespace, never in a target's.

use std::{convert::Infallible, fmt::Write as _, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use crate::{
    fdbudget::{AcceptBackoff, Lane},
    session::{Session, TargetStatus},
};

/// Open scrape connections at most (Prometheus makes one at a time).
const MAX_CONNECTIONS: usize = 64;
/// Connections kept for the metrics endpoint out of the descriptor budget.
const RESERVED: usize = 4;
/// The request head must arrive within this (slowloris guard).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head buffered (hyper's minimum is 8 KiB).
const MAX_HEAD: usize = 16 * 1024;
/// A whole connection, from accept to the last byte of the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {addr}: {source} (pick another --metrics address)")]
pub struct MetricsError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// The metrics listener; dropping it stops serving.
pub struct MetricsServer {
    task: tokio::task::JoinHandle<()>,
    addr: SocketAddr,
}

/// Every series of a running session: targets, requests, and the game-day findings.
pub fn session_metrics(s: &Session) -> String {
    render(&s.status()) + &crate::report::prometheus(&s.verdicts())
}

impl MetricsServer {
    pub async fn start(addr: SocketAddr, session: &Arc<Session>) -> Result<Self, MetricsError> {
        let weak = Arc::downgrade(session);
        Self::start_with(addr, move || {
            weak.upgrade()
                .map(|s| session_metrics(&s))
                .unwrap_or_default()
        })
        .await
    }

    /// Serves whatever `body` renders on each scrape (a game day adds its node's result to
    /// the session's series, or serves it alone on a node that attaches nothing).
    pub async fn start_with(
        addr: SocketAddr,
        body: impl Fn() -> String + Send + Sync + 'static,
    ) -> Result<Self, MetricsError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        let body = Arc::new(body);
        let task = tokio::spawn(async move {
            let lane = Lane::new("metrics", RESERVED);
            let cap = Arc::new(Semaphore::new(MAX_CONNECTIONS));
            let mut backoff = AcceptBackoff::new("metrics");
            loop {
                let Some((stream, _)) = backoff.settle(listener.accept().await).await else {
                    continue;
                };
                // Over the cap or the budget: closed at once (a scraper retries).
                let Some(places) = Arc::clone(&cap)
                    .try_acquire_owned()
                    .ok()
                    .zip(lane.try_admit())
                else {
                    continue;
                };
                let body = Arc::clone(&body);
                tokio::spawn(async move {
                    let _places = places;
                    let service = service_fn(move |_req: Request<Incoming>| {
                        let body = body();
                        async move {
                            let mut resp = Response::new(Full::new(Bytes::from(body)));
                            resp.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static(
                                    "text/plain; version=0.0.4; charset=utf-8",
                                ),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    // One request per connection, its head within HEADER_TIMEOUT and
                    // MAX_HEAD bytes, the whole exchange (a client that never reads the
                    // answer too) within CONNECTION_TIMEOUT.
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .max_buf_size(MAX_HEAD)
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
                });
            }
        });
        log::info!("metrics on http://{addr}/metrics");
        Ok(Self { task, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Label values escaped as the exposition format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text for these targets.
pub fn render(targets: &[TargetStatus]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for l in lines {
            let _ = writeln!(out, "{name}{l}");
        }
    };
    family(
        "spot_sim_redirects_total",
        "counter",
        "Connections to the IMDS the kernel redirected to spot-sim.",
        targets
            .iter()
            .map(|t| format!("{{target=\"{}\"}} {}", label(&t.name), t.redirects))
            .collect(),
    );
    let (requests, versions, tokens) = request_lines(targets);
    family(
        "spot_sim_requests_total",
        "counter",
        "Requests the fake IMDS answered, by path and HTTP status.",
        requests,
    );
    family(
        "spot_sim_requests_by_version_total",
        "counter",
        "Requests by IMDS version (v2: with a session token).",
        versions,
    );
    family(
        "spot_sim_tokens_issued_total",
        "counter",
        "IMDSv2 session tokens issued.",
        tokens,
    );
    family(
        "spot_sim_scenario_phase",
        "gauge",
        "1 for the phase each target's scenario is in.",
        phase_lines(targets),
    );
    family(
        "spot_sim_imds_option",
        "gauge",
        "The instance's metadata options (http-tokens, hop limit, endpoint, IPv6, tags, ASG): 1 for each name and its value.",
        option_lines(targets),
    );
    let unanswered = targets
        .iter()
        .map(|t| {
            let n = t
                .responder
                .get("token_puts_unanswered")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            format!("{{target=\"{}\"}} {n}", label(&t.name))
        })
        .collect();
    family(
        "spot_sim_token_puts_unanswered_total",
        "counter",
        "Token PUTs left unanswered: hop limit 1 and the client in another network namespace.",
        unanswered,
    );
    out
}

/// Requests by path and status, by IMDS version, and tokens issued, per target.
fn request_lines(targets: &[TargetStatus]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut requests = Vec::new();
    let mut versions = Vec::new();
    let mut tokens = Vec::new();
    for t in targets {
        let name = label(&t.name);
        if let Some(by_path) = t.responder.get("by_path").and_then(|v| v.as_object()) {
            for (path, statuses) in by_path {
                for (status, n) in statuses.as_object().into_iter().flatten() {
                    requests.push(format!(
                        "{{target=\"{name}\",path=\"{}\",status=\"{status}\"}} {}",
                        label(path),
                        n.as_u64().unwrap_or(0)
                    ));
                }
            }
        }
        let get = |k: &str| t.responder.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        tokens.push(format!("{{target=\"{name}\"}} {}", get("tokens_issued")));
        versions.push(format!(
            "{{target=\"{name}\",version=\"v1\"}} {}",
            get("imds_v1_requests")
        ));
        versions.push(format!(
            "{{target=\"{name}\",version=\"v2\"}} {}",
            get("imds_v2_requests")
        ));
    }
    (requests, versions, tokens)
}

/// 1 for the phase each target is in, 0 for the others.
fn phase_lines(targets: &[TargetStatus]) -> Vec<String> {
    let mut phases = Vec::new();
    for t in targets {
        let current = t
            .timeline
            .get("phase")
            .and_then(|p| p.as_str())
            .unwrap_or("");
        for phase in ["waiting", "rebalance", "notice", "interrupted"] {
            phases.push(format!(
                "{{target=\"{}\",phase=\"{phase}\"}} {}",
                label(&t.name),
                u8::from(current == phase)
            ));
        }
    }
    phases
}

fn option_lines(targets: &[TargetStatus]) -> Vec<String> {
    let mut lines = Vec::new();
    for t in targets {
        let options = t.responder.get("options").and_then(|o| o.as_object());
        for (name, value) in options.into_iter().flatten() {
            lines.push(format!(
                "{{target=\"{}\",name=\"{}\",value=\"{}\"}} 1",
                label(&t.name),
                label(name),
                label(value.as_str().unwrap_or_default())
            ));
        }
    }
    lines
}
