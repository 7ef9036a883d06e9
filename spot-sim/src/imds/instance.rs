//! What the instance's configuration changes in the fake IMDS: the endpoint switched off, the
//! token PUT that a hop limit of 1 keeps from containers, tags, the Auto Scaling lifecycle
//! state and maintenance events, and the option list `status` and the metrics show.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::Duration;

use hyper::{Method, Request};

use super::options::Toggle;
use super::router::Responder;
use super::throttle::ThrottleMode;
use crate::scenario::lock;

/// How long a token PUT that cannot come back is held before the connection closes. EC2
/// never answers it (the reply dies one hop out); clients give up on their own timeout
/// (botocore: 1 s, curl: its --max-time), so this only bounds what a client that never gives
/// up costs.
pub(crate) const UNANSWERED_HOLD: Duration = Duration::from_secs(60);

/// Where a connection comes from, as far as the hop limit is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// spot-sim's own network namespace: the node (or a host-network pod).
    Node,
    /// Another network namespace: a container, one hop further than the node.
    OtherNetns,
}

/// A request EC2 would never answer: hyper closes the connection without a response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unanswered {
    #[error("token PUT left unanswered (http-put-response-hop-limit 1, client in another network namespace)")]
    HopLimit,
    #[error("request dropped: above the --fault-throttle rate (drop mode) through every resend")]
    Throttled,
}

/// Where an accepted connection comes from. A redirected client reaches the listener spot-sim
/// opened inside its own namespace, so the socket's namespace (the kernel's network-namespace
/// cookie, SO_NETNS_COOKIE, Linux 5.14, unprivileged) tells a container from the node. A
/// client of `serve` reaching it over a bridge (a Docker container) lands in spot-sim's own
/// namespace, but from an address that is not one of the node's: one hop further too.
/// Unknowns (an older kernel) count as the node, so nothing is withheld by mistake.
pub(crate) fn origin_of(stream: &impl AsRawFd, peer: std::net::SocketAddr) -> Origin {
    if socket_netns(stream) == Origin::OtherNetns || !is_local_address(peer.ip()) {
        Origin::OtherNetns
    } else {
        Origin::Node
    }
}

/// Whether `ip` is an address of this network namespace (loopback included).
fn is_local_address(ip: std::net::IpAddr) -> bool {
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        return true;
    }
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return true;
    };
    addrs.filter_map(|a| a.address).any(|a| {
        a.as_sockaddr_in().map(|s| std::net::IpAddr::V4(s.ip())) == Some(ip)
            || a.as_sockaddr_in6().map(|s| std::net::IpAddr::V6(s.ip())) == Some(ip)
    })
}

fn socket_netns(stream: &impl AsRawFd) -> Origin {
    static NODE: OnceLock<Option<u64>> = OnceLock::new();
    // Computed on a runtime thread: those never leave spot-sim's namespace (only short-lived
    // threads setns, see target::netns).
    let node = *NODE.get_or_init(|| {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .ok()
            .and_then(|s| netns_cookie(&s))
    });
    match (node, netns_cookie(stream)) {
        (Some(node), Some(peer)) if node != peer => Origin::OtherNetns,
        _ => Origin::Node,
    }
}

fn netns_cookie(fd: &impl AsRawFd) -> Option<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the u64 we own.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cookie)
}

impl Responder {
    /// Answers one request from a connection of `origin`; `Err` when EC2 would never answer
    /// it, after holding it as long as a client would wait.
    pub(crate) async fn handle_from<B>(
        &self,
        req: Request<B>,
        origin: Origin,
    ) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, Unanswered> {
        if let Some(bucket) = self
            .throttle
            .as_ref()
            .filter(|t| t.mode() == ThrottleMode::Drop)
        {
            if !bucket.admit() {
                self.record_dropped();
                if !bucket.wait_resends().await {
                    return Err(Unanswered::Throttled);
                }
            }
        }
        if self.withholds_token(&req, origin) {
            self.record_unanswered();
            tokio::time::sleep(UNANSWERED_HOLD).await;
            return Err(Unanswered::HopLimit);
        }
        Ok(self.handle(req).await)
    }

    /// EC2 sends the token PUT's answer with IP TTL = the hop limit: at 1 it dies on the way
    /// into a container's namespace, so a pod waits and falls back to IMDSv1 (the EC2 User
    /// Guide, "Configure the instance metadata options": "In a container environment, we
    /// recommend setting the hop limit to 2"). GETs have no such limit.
    fn withholds_token<B>(&self, req: &Request<B>, origin: Origin) -> bool {
        origin == Origin::OtherNetns
            && self.config.options.hop_limit <= 1
            && self.config.options.http_endpoint.is_enabled()
            && req.method() == Method::PUT
            && super::path::canonical(req.uri().path(), self.config.limits.max_path_len)
                .is_ok_and(|p| p.is_token_path())
    }

    fn record_unanswered(&self) {
        let mut counters = lock(&self.counters);
        counters.stats.token_puts_unanswered += 1;
        let logged = counters.log_slot();
        drop(counters);
        if logged.is_some() {
            log::info!(
                "{}: PUT /latest/api/token left unanswered: the client is in another network namespace (one hop further than the node) and http-put-response-hop-limit is 1; it will time out and may fall back to IMDSv1",
                self.target
            );
        }
    }

    fn record_dropped(&self) {
        let mut counters = lock(&self.counters);
        counters.stats.requests_throttled += 1;
        let logged = counters.log_slot();
        drop(counters);
        if logged.is_some() {
            log::info!(
                "{}: a request above the --fault-throttle rate is dropped (drop mode); it is answered at the first of the client's resends (1 s, 2 s, 4 s ...) that finds room, if the client still waits",
                self.target
            );
        }
    }

    /// The 403 every request gets while the endpoint is disabled.
    pub(crate) fn endpoint_disabled(&self) -> bool {
        !self.config.options.http_endpoint.is_enabled()
    }

    /// Every instance option and its value, as `status` and the metrics show them.
    pub(crate) fn option_list(&self) -> BTreeMap<String, String> {
        let o = &self.config.options;
        let scenario = self.timeline.scenario();
        let tokens = match self.config.imdsv2 {
            super::Imdsv2Mode::Optional => "optional",
            super::Imdsv2Mode::Required => "required",
        };
        let mut list = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            list.insert(k.to_string(), v);
        };
        put("http-tokens", tokens.into());
        put("http-put-response-hop-limit", o.hop_limit.to_string());
        put("http-endpoint", o.http_endpoint.as_str().into());
        put("http-protocol-ipv6", o.http_protocol_ipv6.as_str().into());
        put(
            "instance-metadata-tags",
            o.instance_metadata_tags.as_str().into(),
        );
        put("tags", o.tags.len().to_string());
        let asg = if self.config.metadata.autoscaling {
            Toggle::Enabled
        } else {
            Toggle::Disabled
        };
        put("asg", asg.as_str().into());
        put(
            "asg-terminate-in",
            scenario.asg_terminate_in.map_or("never".into(), |d| {
                humantime::format_duration(d).to_string()
            }),
        );
        put("maintenance-events", scenario.maintenance.len().to_string());
        list
    }
}
