//! The smallest HTTP client the stop conditions need: one GET over plain HTTP, with a bounded
//! answer. `http:` health URLs and Prometheus's query API are plain HTTP inside a cluster; TLS
//! is refused with a way round it rather than half-supported.

use std::{fmt, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

/// Largest answer read (a Prometheus result with many series is cut, and then not JSON).
const MAX_BODY: usize = 1024 * 1024;

/// An `http://HOST[:PORT][/PATH][?QUERY]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// As given, for messages.
    text: String,
    /// `HOST:PORT` to connect to (IPv6 literals in brackets).
    authority: String,
    /// The Host header.
    host: String,
    /// `/path?query`.
    target: String,
}

impl HttpUrl {
    pub fn parse(s: &str) -> Result<HttpUrl, String> {
        if s.starts_with("https://") {
            return Err(format!(
                "{s}: https is not supported; give a plain http:// URL (a cluster-internal service, or a `kubectl port-forward` to it)"
            ));
        }
        let Some(rest) = s.strip_prefix("http://") else {
            return Err(format!(
                "{s:?} is not an http:// URL; write it like http://127.0.0.1:8080/healthz"
            ));
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return Err(format!(
                "{s}: no host (or credentials in the URL, which are not sent); write it like http://127.0.0.1:8080/healthz"
            ));
        }
        let (host, port) = split_port(authority)
            .ok_or_else(|| format!("{s}: the port is not a number from 1 to 65535"))?;
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        Ok(HttpUrl {
            text: s.to_string(),
            authority: if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            },
            host: authority.to_string(),
            target,
        })
    }

    /// The path and query of a request to this server, after its own path: `/api/v1/query?…`
    /// under `http://host/prometheus` is `/prometheus/api/v1/query?…`.
    pub fn join(&self, path_and_query: &str) -> Result<String, String> {
        if self.target.contains('?') {
            return Err(format!(
                "{}: give the server's URL without a query string",
                self.text
            ));
        }
        Ok(format!(
            "{}{path_and_query}",
            self.target.trim_end_matches('/')
        ))
    }

    pub fn target(&self) -> &str {
        &self.target
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `host` and `port` from `host`, `host:port`, `[v6]` or `[v6]:port`; `None` for a bad port.
fn split_port(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
    };
    (!host.is_empty()).then_some((host, port))
}

/// Why a GET got no HTTP answer.
#[derive(Debug)]
pub enum GetError {
    /// The host name did not resolve: nothing was asked.
    Resolve(String),
    /// Connection refused, reset, unreachable: the server is not there.
    Connect(String),
    /// It connected but the answer was not HTTP, or broke off.
    Broken(String),
    Timeout(Duration),
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Resolve(e) => write!(f, "cannot resolve the host: {e}"),
            GetError::Connect(e) => write!(f, "no answer: {e}"),
            GetError::Broken(e) => write!(f, "a broken answer: {e}"),
            GetError::Timeout(d) => {
                write!(f, "no answer within {}", humantime::format_duration(*d))
            }
        }
    }
}

/// GETs `target` (a path and query) from `url`'s server: its status and body.
pub async fn get(url: &HttpUrl, target: &str, within: Duration) -> Result<(u16, Bytes), GetError> {
    match tokio::time::timeout(within, get_now(url, target)).await {
        Ok(r) => r,
        Err(_) => Err(GetError::Timeout(within)),
    }
}

async fn get_now(url: &HttpUrl, target: &str) -> Result<(u16, Bytes), GetError> {
    let addrs: Vec<_> = tokio::net::lookup_host(url.authority.as_str())
        .await
        .map_err(|e| GetError::Resolve(e.to_string()))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream = stream.ok_or_else(|| {
        GetError::Connect(last.map_or_else(|| "no address".into(), |e| e.to_string()))
    })?;
    let broken = |e: hyper::Error| GetError::Broken(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(broken)?;
    // The connection is driven beside the request, and dropped with it.
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(target)
        .header(hyper::header::HOST, url.host.as_str())
        .header(hyper::header::USER_AGENT, "spot-sim stop condition")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| GetError::Broken(e.to_string()))?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(broken)?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| GetError::Broken(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_into_where_to_connect_and_what_to_ask() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/healthz?x=1").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.host.as_str(), u.target()),
            ("127.0.0.1:8080", "127.0.0.1:8080", "/healthz?x=1")
        );
        let u = HttpUrl::parse("http://prometheus.monitoring").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.target()),
            ("prometheus.monitoring:80", "/")
        );
        assert_eq!(
            u.join("/api/v1/query?query=up").unwrap(),
            "/api/v1/query?query=up"
        );
        let u = HttpUrl::parse("http://[::1]:9090/prom/").unwrap();
        assert_eq!(u.authority, "[::1]:9090");
        assert_eq!(u.join("/api/v1/query").unwrap(), "/prom/api/v1/query");
        for (bad, needle) in [
            ("https://x/", "https is not supported"),
            ("ftp://x/", "not an http:// URL"),
            ("http:///x", "no host"),
            ("http://u:p@x/", "credentials"),
            ("http://x:0/", "port"),
            ("http://x:99999/", "port"),
            ("http://x:ab/", "port"),
        ] {
            let e = HttpUrl::parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        assert!(HttpUrl::parse("http://x/?q=1")
            .unwrap()
            .join("/api")
            .is_err());
    }
}
