//! Forwarding to the real IMDS what spot-sim does not simulate, over spot-sim's own IMDSv2
//! session, on sockets marked so the redirect never loops them back to us.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::config::Passthrough;
use crate::lock::lock;

/// TTL of spot-sim's own upstream token.
const UPSTREAM_TOKEN_TTL: u64 = 21_600;
/// Re-fetch the token this long before it would expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Upstream answers are small; anything bigger is not IMDS.
const MAX_BODY: usize = 1024 * 1024;

/// Why forwarding failed; the client sees 502, or 504 for a timeout.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("cannot connect to the real IMDS at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the real IMDS at {addr} did not answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("bad exchange with the real IMDS at {addr}: {detail}")]
    Protocol { addr: SocketAddr, detail: String },
}

/// An upstream answer.
#[derive(Debug)]
pub(crate) struct Forwarded {
    pub status: StatusCode,
    pub content_type: Option<hyper::header::HeaderValue>,
    pub body: Bytes,
}

#[derive(Debug)]
pub(crate) struct Upstream {
    addr: SocketAddr,
    timeout: Duration,
    /// Our token upstream and when to stop using it.
    token: Mutex<Option<(String, Instant)>>,
}

impl Upstream {
    pub fn new(p: &Passthrough) -> Self {
        Self {
            addr: p.upstream,
            timeout: p.timeout,
            token: Mutex::new(None),
        }
    }

    /// GETs `path` upstream, within the timeout.
    pub async fn get(&self, path: &str) -> Result<Forwarded, UpstreamError> {
        let exchange = async {
            let token = self.token().await?;
            let first = self.send(Method::GET, path, token.as_deref(), None).await?;
            if first.status != StatusCode::UNAUTHORIZED || token.is_none() {
                return Ok(first);
            }
            // Our token was revoked or the instance restarted its session store: once more.
            *lock(&self.token) = None;
            let token = self.token().await?;
            self.send(Method::GET, path, token.as_deref(), None).await
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(UpstreamError::Timeout {
                addr: self.addr,
                timeout: self.timeout,
            }))
    }

    /// A cached token, or a fresh one; `None` if upstream hands none out (IMDSv1-only).
    async fn token(&self) -> Result<Option<String>, UpstreamError> {
        if let Some((token, until)) = lock(&self.token).as_ref() {
            if Instant::now() < *until {
                return Ok(Some(token.clone()));
            }
        }
        let ttl = UPSTREAM_TOKEN_TTL.to_string();
        let answer = self
            .send(Method::PUT, "/latest/api/token", None, Some(&ttl))
            .await?;
        if answer.status != StatusCode::OK {
            log::debug!(
                "the real IMDS gave no token ({}); forwarding without one",
                answer.status
            );
            return Ok(None);
        }
        let token = String::from_utf8_lossy(&answer.body).trim().to_string();
        let until = Instant::now() + Duration::from_secs(UPSTREAM_TOKEN_TTL) - TOKEN_MARGIN;
        *lock(&self.token) = Some((token.clone(), until));
        Ok(Some(token))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        ttl: Option<&str>,
    ) -> Result<Forwarded, UpstreamError> {
        let protocol = |detail: String| UpstreamError::Protocol {
            addr: self.addr,
            detail,
        };
        let stream = connect_marked(self.addr)
            .await
            .map_err(|source| UpstreamError::Connect {
                addr: self.addr,
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| protocol(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                log::debug!("upstream IMDS connection ended: {e}");
            }
        });
        // Only what IMDS needs: never the client's headers, never X-Forwarded-For (IMDS
        // refuses tokens to forwarded requests).
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::USER_AGENT, "spot-sim");
        if let Some(token) = token {
            req = req.header("x-aws-ec2-metadata-token", token);
        }
        if let Some(ttl) = ttl {
            req = req.header("x-aws-ec2-metadata-token-ttl-seconds", ttl);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| protocol(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let status = resp.status();
        let content_type = resp.headers().get(hyper::header::CONTENT_TYPE).cloned();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| protocol(e.to_string()))?
            .to_bytes();
        Ok(Forwarded {
            status,
            content_type,
            body,
        })
    }
}

/// Connects with `SO_MARK` set, so the eBPF redirect lets this socket through.
async fn connect_marked(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    let mark = spot_sim_common::OWN_SOCKET_MARK;
    match nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Mark, &mark) {
        Ok(()) => {}
        // Without CAP_NET_ADMIN (`spot-sim serve` as a user) there is no redirect to dodge.
        Err(nix::errno::Errno::EPERM) => {
            log::debug!("cannot set SO_MARK on the upstream socket (not root); going on unmarked")
        }
        Err(e) => log::warn!("cannot set SO_MARK on the upstream socket: {e}; going on unmarked"),
    }
    socket.connect(addr).await
}
