//! Prometheus text exposition of a running session: redirects, requests by path and status,
//! tokens issued, and each target's scenario phase. Off unless `--metrics ADDR`; it listens in
//! spot-sim's own network namespace, never in a target's.

use std::{convert::Infallible, fmt::Write as _, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;

use crate::session::{Session, TargetStatus};

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

impl MetricsServer {
    pub async fn start(addr: SocketAddr, session: &Arc<Session>) -> Result<Self, MetricsError> {
        let weak = Arc::downgrade(session);
        Self::start_with(addr, move || {
            weak.upgrade()
                .map(|s| render(&s.status()))
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
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let body = Arc::clone(&body);
                tokio::spawn(async move {
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
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
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
    let mut requests = Vec::new();
    let mut tokens = Vec::new();
    let mut versions = Vec::new();
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
    family(
        "spot_sim_scenario_phase",
        "gauge",
        "1 for the phase each target's scenario is in.",
        phases,
    );
    out
}
