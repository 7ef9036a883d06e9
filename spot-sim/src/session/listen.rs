//! The responders' listeners: bound on loopback inside a target's network namespace (and
//! every other namespace its processes turn up in), then handed to tokio.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use tokio::{sync::watch, task::JoinHandle};

use super::SessionError;
use crate::{imds::Responder, targets::NetNs};

/// Starts serving one listener of a target's responder.
pub(super) fn spawn_serve(
    responder: &std::sync::Arc<Responder>,
    listener: TcpListener,
    stop: &watch::Receiver<bool>,
    name: &str,
) -> Result<JoinHandle<()>, SessionError> {
    let listener = to_tokio(listener, name)?;
    let responder = std::sync::Arc::clone(responder);
    let rx = stop.clone();
    let name = name.to_string();
    Ok(tokio::spawn(async move {
        match responder.serve(listener, rx).await {
            Ok(end) => log::debug!("{name}: responder stopped: {end:?}"),
            Err(e) => log::warn!("{name}: responder failed: {e}"),
        }
    }))
}

/// Binds the responder on 127.0.0.1 and ::1 inside `netns`. The IPv6 listener is best effort
/// (a namespace without IPv6 just gets no native-IPv6 redirect).
pub(super) fn bind_loopback(
    netns: &NetNs,
    port: u16,
    target: &str,
) -> Result<(TcpListener, Option<TcpListener>), SessionError> {
    let (l4, l6) = netns.run(|| {
        let mut l4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        // The workload got there first: the redirect carries each target's own port, so this
        // target simply gets another one, instead of failing the whole run.
        if port != 0 && l4.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse) {
            l4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
            if let Some(other) = l4.as_ref().ok().and_then(|l| l.local_addr().ok()) {
                log::warn!(
                    "{target}: port {port} is already in use in its network namespace (by the workload?); serving it on port {} instead",
                    other.port()
                );
            }
        }
        let l6 = l4.as_ref().ok().and_then(|l| {
            // Same port on ::1 when it is free, so both families show one number.
            let p = l.local_addr().map(|a| a.port()).unwrap_or(port);
            TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, p)))
                .or_else(|_| TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))))
                .ok()
        });
        (l4, l6)
    })?;
    let l4 = l4.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            SessionError::PortInUse {
                port,
                target: target.to_string(),
            }
        } else {
            SessionError::Listen {
                target: target.to_string(),
                source,
            }
        }
    })?;
    Ok((l4, l6))
}

/// Pending connections a responder's listener queues before the kernel drops SYNs. std binds
/// with 128; a burst above that (a DaemonSet's pods starting together, a flood the connection
/// cap is about to close) would make the clients that are dropped wait a whole second for
/// their SYN to be sent again.
const LISTEN_BACKLOG: libc::c_int = 1024;

fn to_tokio(l: TcpListener, target: &str) -> Result<tokio::net::TcpListener, SessionError> {
    let err = |source| SessionError::Listen {
        target: target.to_string(),
        source,
    };
    // SAFETY: listen on our own bound, listening socket only changes its backlog.
    if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), LISTEN_BACKLOG) } != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    l.set_nonblocking(true).map_err(err)?;
    tokio::net::TcpListener::from_std(l).map_err(err)
}

/// Binds a target's ports (already chosen in its first namespace) in another namespace its
/// processes use. `port6` 0: no IPv6 listener.
pub(super) fn bind_same_ports(
    ns: &NetNs,
    port4: u16,
    port6: u16,
) -> Result<(std::io::Result<TcpListener>, Option<TcpListener>), crate::targets::NetNsError> {
    ns.run(|| {
        let l4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port4)));
        let l6 = (port6 != 0)
            .then(|| TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port6))).ok())
            .flatten();
        (l4, l6)
    })
}
