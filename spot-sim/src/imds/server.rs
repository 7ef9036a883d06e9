//! Serving a responder on listeners: connection limits, slow and idle clients, and vanishing
//! at the interruption the way a terminated instance does.

use std::net::SocketAddr;
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex,
};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::guarded_io::GuardedIo;
use super::router::Responder;
use super::ImdsError;
use crate::fdbudget::{AcceptBackoff, Lane, Ticket};
use crate::lock::lock;
use crate::scenario::Phase;

/// The longest a listener sleeps between looks at the timeline when its clock cannot say it
/// was stepped ([`crate::scenario::Clock::jumps`] is `None`). Otherwise it wakes only at the
/// interruption, on a trigger, or on a clock step: an idle listener costs nothing.
const TIMELINE_POLL: Duration = Duration::from_secs(30);

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Waits for the clock to be moved or stepped; never returns for a clock that cannot tell.
async fn clock_jump(jumps: &mut Option<watch::Receiver<()>>) {
    match jumps {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *jumps = None;
            }
        }
        None => std::future::pending().await,
    }
}

/// Connections each listener keeps for itself out of the descriptor budget.
const RESERVED_PER_LISTENER: usize = 4;

/// Per-connection send buffer (the kernel doubles it).
const SEND_BUFFER: usize = 64 * 1024;

/// How long an idle connection told to close may take to go before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Why [`Responder::serve`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeEnd {
    /// `shutdown` flipped to true (or its sender went away).
    Shutdown,
    /// The timeline reached its interruption: the listener and every connection are gone.
    Interrupted,
}

impl Responder {
    /// Serves connections from `listener` until `shutdown` flips to true, or until the timeline
    /// reaches its interrupted phase: then it drops the listener and every open connection, so
    /// the target gets "connection refused" like from an instance that is gone. May run on
    /// several listeners at once (IPv4 and IPv6).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<ServeEnd> {
        let mut connections = JoinSet::new();
        let mut started = self.timeline.subscribe();
        // This listener's share of the descriptor budget: a flood on another target (or on
        // this one's other listener) cannot take its last few connections.
        let lane = Lane::new(self.target.clone(), RESERVED_PER_LISTENER);
        let mut backoff = AcceptBackoff::new(self.target.clone());
        let mut jumps = self.clock.jumps();
        loop {
            if self.timeline.phase() == Phase::Interrupted {
                log::info!("{}: instance interrupted; no longer answering", self.target);
                // Dropping the JoinSet aborts every connection task, closing its socket.
                return Ok(ServeEnd::Interrupted);
            }
            if *shutdown.borrow_and_update() {
                return Ok(ServeEnd::Shutdown);
            }
            // Only the interruption ends the accept loop; the other events are served as
            // requests ask for them.
            let until_interrupted = self.timeline.schedule().map(|s| {
                s.interrupted_at
                    .duration_since(self.clock.now())
                    .unwrap_or(Duration::ZERO)
            });
            let wait = match (until_interrupted, jumps.is_none()) {
                (Some(d), true) => Some(d.min(TIMELINE_POLL)),
                (None, true) => Some(TIMELINE_POLL),
                (d, false) => d,
            };
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        backoff.reset();
                        let admitted = self
                            .connections
                            .clone()
                            .try_acquire_owned()
                            .ok()
                            .zip(lane.try_admit());
                        match admitted {
                            Some((permit, ticket)) => {
                                connections.spawn(
                                    Arc::clone(&self).connection(stream, peer, (permit, ticket)),
                                );
                            }
                            None => {
                                lock(&self.counters).stats.connections_over_limit += 1;
                                log::debug!(
                                    "{}: at the connection limit; closing {peer}",
                                    self.target
                                );
                            }
                        }
                    }
                    // Out of file descriptors and the like: back off instead of spinning.
                    Err(e) => backoff.wait(&e).await,
                },
                changed = shutdown.changed() => if changed.is_err() {
                    return Ok(ServeEnd::Shutdown);
                },
                _ = started.changed() => {}
                _ = sleep_or_forever(wait) => {}
                _ = clock_jump(&mut jumps) => {}
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }

    /// One client connection, closed when idle for the keep-alive limit.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        _places: (OwnedSemaphorePermit, Ticket),
    ) {
        let limits = self.config.limits.clone();
        // Only a hop limit of 1 needs to know; no syscalls on the common path.
        let origin = if self.config.options.hop_limit <= 1 {
            super::option_effects::origin_of(&stream, peer)
        } else {
            super::option_effects::Origin::Node
        };
        // Bytes moving either way, or a request being answered, keep a connection alive;
        // nothing else does (a client that pipelines and never reads makes no progress).
        let last_active = Arc::new(Mutex::new(Instant::now()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let responder = Arc::clone(&self);
        let active = Arc::clone(&last_active);
        let busy = Arc::clone(&in_flight);
        let service = service_fn(move |req| {
            let responder = Arc::clone(&responder);
            let active = Arc::clone(&active);
            let busy = Arc::clone(&busy);
            async move {
                busy.fetch_add(1, Ordering::AcqRel);
                *lock(&active) = Instant::now();
                let response = responder.handle_from(req, origin).await;
                *lock(&active) = Instant::now();
                busy.fetch_sub(1, Ordering::AcqRel);
                response
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .keep_alive(true)
            // The real service writes `Server: EC2ws`, `Content-Length: ...`.
            .title_case_headers(true);
        // A bounded send buffer: the kernel's autotuning would otherwise take megabytes of
        // answers from a client that never reads them (making "progress" for a minute while it
        // fills). IMDS answers are small; 64 KiB holds hundreds.
        let _ =
            nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &SEND_BUFFER);
        let io = GuardedIo::new(stream, Arc::clone(&last_active));
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let tick =
            (limits.keep_alive_idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut closing: Option<Instant> = None;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        log::debug!("{}: connection from {peer}: {e}", self.target);
                    }
                    return;
                }
                _ = tokio::time::sleep(tick) => {
                    let idle = in_flight.load(Ordering::Acquire) == 0
                        && lock(&last_active).elapsed() >= limits.keep_alive_idle;
                    match closing {
                        None if idle => {
                            // Lets an answer in flight finish, then closes.
                            conn.as_mut().graceful_shutdown();
                            closing = Some(Instant::now());
                        }
                        // Still there a while after: stuck writing to a client that does not
                        // read. Dropping the connection closes the socket.
                        Some(since) if idle && since.elapsed() >= CLOSE_GRACE => {
                            log::debug!(
                                "{}: {peer} reads none of its answers; closing",
                                self.target
                            );
                            return;
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Binds `spot-sim serve`'s listener (before anything else starts, so a taken port fails
/// first).
pub async fn bind_standalone(listen: SocketAddr) -> Result<TcpListener, ImdsError> {
    TcpListener::bind(listen)
        .await
        .map_err(|source| ImdsError::Bind {
            addr: listen,
            source,
        })
}

/// `spot-sim serve`: the responder alone on its listener (no eBPF, no root), until ctrl-c or
/// the interruption.
pub async fn serve_standalone(
    listener: TcpListener,
    responder: Arc<Responder>,
) -> Result<(), ImdsError> {
    let addr = listener.local_addr().map_err(|source| ImdsError::Serve {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    println!("spot-sim: fake IMDS on http://{addr}/latest/meta-data/ (ctrl-c to stop)");
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        // SIGTERM too (systemd, kill, a test's cleanup): a clean return removes the control
        // socket.
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => s.recv().await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_ok() {
                let _ = stop.send(true);
            },
            _ = term => {
                let _ = stop.send(true);
            }
        }
        // Keep `stop` alive when no signal can be watched, so serving goes on.
        std::future::pending::<()>().await;
    });
    match responder.serve(listener, shutdown).await {
        Ok(ServeEnd::Interrupted) => {
            println!("spot-sim: the instance was interrupted; stopped answering");
            Ok(())
        }
        Ok(ServeEnd::Shutdown) => Ok(()),
        Err(source) => Err(ImdsError::Serve { addr, source }),
    }
}
