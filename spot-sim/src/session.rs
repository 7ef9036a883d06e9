//! A running spot-sim: the redirect, and for each target its cgroup link, its responder
//! (listening inside the target's network namespace) and its timeline.
//!
//! Dropping a [`Session`] detaches every target before the responders stop, so no target is
//! ever redirected to nothing.

use std::{
    collections::{HashMap, HashSet},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use spot_sim_common::Target;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    escape::untrusted_path,
    imds::Responder,
    redirect::{RedirectError, RedirectEvent, Redirector, TargetLink},
    scenario::{Clock, OnInterrupt, Phase, Settings, Timeline},
    target::{CgroupDir, NetNs, NetNsError},
};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Redirect(#[from] RedirectError),
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    #[error(
        "port {port} is already in use in the network namespace of {target}: pick another with --port, or leave --port out to use a free one"
    )]
    PortInUse { port: u16, target: String },
    #[error("cannot open the responder's listener for {target}: {source}")]
    Listen {
        target: String,
        source: std::io::Error,
    },
    #[error("no target named {0}: list them with `spot-sim target list`")]
    UnknownTarget(String),
    #[error("{0} is already targeted: list the targets with `spot-sim target list`")]
    Duplicate(String),
}

/// What to target, resolved: a cgroup and the namespace its processes use.
pub struct TargetSpec {
    /// How the user named it: `cgroup /x`, `pod ns/name`, `exec`.
    pub name: String,
    pub cgroup: CgroupDir,
    pub netns: NetNs,
    /// The node's `/proc`, to find the namespaces of processes that join the target later.
    pub proc: PathBuf,
    pub settings: Settings,
    /// Fixed responder port (both families); 0 picks a free one.
    pub port: u16,
}

/// Per-target counters the kernel events feed.
#[derive(Debug, Default)]
struct Counters {
    redirects: AtomicU64,
    /// Last log line time, for the rate limit.
    last_logged: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

struct ActiveTarget {
    name: String,
    index: u32,
    cgroup: CgroupDir,
    // Field order is drop order: detach first, then stop the responder.
    link: Option<TargetLink>,
    netns_inode: u64,
    /// Every namespace the responder listens in (by inode), with the same ports in each.
    served: HashSet<u64>,
    proc: PathBuf,
    port4: u16,
    port6: u16,
    timeline: Arc<Timeline>,
    responder: Arc<Responder>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
    on_interrupt: OnInterrupt,
    gone_reported: bool,
}

impl Drop for ActiveTarget {
    fn drop(&mut self) {
        drop(self.link.take());
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A target as `status` and `target list` show it.
#[derive(Debug, Serialize, serde::Deserialize, Clone)]
pub struct TargetStatus {
    pub name: String,
    pub cgroup: PathBuf,
    pub cgroup_id: u64,
    pub netns: u64,
    pub listen: Vec<String>,
    pub redirects: u64,
    pub cgroup_exists: bool,
    pub timeline: serde_json::Value,
    pub timeline_text: String,
    pub responder: serde_json::Value,
}

pub struct Session {
    redirector: Mutex<Redirector>,
    clock: Arc<dyn Clock>,
    targets: Mutex<Vec<ActiveTarget>>,
    /// Names being added right now (taken under the `targets` lock, see [`NameClaim`]).
    adding: Mutex<HashSet<String>>,
    counters: Mutex<HashMap<u32, (String, Arc<Counters>)>>,
    next_index: AtomicU64,
}

impl Session {
    /// Loads the redirect and starts forwarding its events to the log. Needs a tokio runtime.
    pub fn start(clock: Arc<dyn Clock>) -> Result<Arc<Self>, SessionError> {
        let mut redirector = Redirector::load()?;
        let events = redirector.take_events();
        let session = Arc::new(Self {
            redirector: Mutex::new(redirector),
            clock,
            targets: Mutex::new(Vec::new()),
            adding: Mutex::new(HashSet::new()),
            counters: Mutex::new(HashMap::new()),
            next_index: AtomicU64::new(1),
        });
        if let Some(events) = events {
            let weak = Arc::downgrade(&session);
            tokio::spawn(events.run(move |ev| {
                if let Some(s) = weak.upgrade() {
                    s.on_redirect(&ev);
                }
            }));
        }
        Ok(session)
    }

    fn on_redirect(&self, ev: &RedirectEvent) {
        let entry = lock(&self.counters).get(&ev.target_index).cloned();
        let Some((name, counters)) = entry else {
            return;
        };
        counters.redirects.fetch_add(1, Ordering::Relaxed);
        // At most one line a second per target: a handler polling in a tight loop must not
        // flood the log.
        let mut last = lock(&counters.last_logged);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            counters.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        let more = counters.suppressed.swap(0, Ordering::Relaxed);
        let more = if more > 0 {
            format!(" (+{more} more since the last line)")
        } else {
            String::new()
        };
        let family = if ev.ipv6_socket {
            "IPv6 socket"
        } else {
            "IPv4"
        };
        log::info!(
            "{name}: pid {} ({}) → IMDS {} redirected ({family}){more}",
            ev.tgid,
            ev.comm,
            ev.original
        );
    }

    /// Starts a target: opens its listeners inside its namespace, starts its responder, and
    /// only then attaches the redirect.
    pub fn add_target(self: &Arc<Self>, spec: TargetSpec) -> Result<String, SessionError> {
        // Check and claim the name in one step under the targets lock, so two `target add`s
        // (or one and `--follow`) cannot both pass the check; the I/O below runs unlocked,
        // and the claim is released whichever way this returns.
        let _claim = NameClaim::take(self, &spec.name)?;
        let (l4, l6) = bind_loopback(&spec.netns, spec.port, &spec.name)?;
        let port4 = l4.local_addr().map(|a| a.port()).unwrap_or(0);
        let port6 = l6
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
            .unwrap_or(0);
        let index = self.next_index.fetch_add(1, Ordering::Relaxed) as u32;
        let timeline = Timeline::new(spec.settings.scenario.clone(), Arc::clone(&self.clock));
        let responder = Responder::new(
            spec.name.clone(),
            Arc::clone(&timeline),
            spec.settings.imds.clone(),
            Arc::clone(&self.clock),
        );
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for listener in std::iter::once(l4).chain(l6) {
            tasks.push(spawn_serve(&responder, listener, &stop_rx, &spec.name)?);
        }
        let link = lock(&self.redirector).attach(
            &spec.cgroup,
            Target {
                port4,
                port6,
                index,
            },
        )?;
        let counters = Arc::new(Counters::default());
        lock(&self.counters).insert(index, (spec.name.clone(), Arc::clone(&counters)));
        log::info!(
            "{}: IMDS connects from {} now reach spot-sim (127.0.0.1:{port4}{})",
            spec.name,
            untrusted_path(spec.cgroup.path()),
            if port6 != 0 {
                format!(", [::1]:{port6}")
            } else {
                String::new()
            }
        );
        let name = spec.name.clone();
        lock(&self.targets).push(ActiveTarget {
            name: spec.name,
            index,
            cgroup: spec.cgroup,
            link: Some(link),
            netns_inode: spec.netns.inode(),
            served: HashSet::from([spec.netns.inode()]),
            proc: spec.proc,
            port4,
            port6,
            timeline,
            responder,
            stop,
            tasks,
            counters,
            on_interrupt: spec.settings.on_interrupt,
            gone_reported: false,
        });
        if let Some(t) = lock(&self.targets).last_mut() {
            serve_new_namespaces(t);
        }
        Ok(name)
    }

    /// Detaches a target and stops its responder.
    pub fn remove_target(&self, name: &str) -> Result<(), SessionError> {
        let removed = {
            let mut targets = lock(&self.targets);
            let pos = targets
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| SessionError::UnknownTarget(name.to_string()))?;
            targets.remove(pos)
        };
        lock(&self.counters).remove(&removed.index);
        drop(removed);
        log::info!("{name}: detached");
        Ok(())
    }

    /// Starts every `--manual` timeline (or the named target's).
    pub fn trigger(&self, name: Option<&str>) -> Result<Vec<String>, String> {
        let targets = lock(&self.targets);
        let mut done = Vec::new();
        for t in targets.iter().filter(|t| name.is_none_or(|n| n == t.name)) {
            t.timeline
                .trigger()
                .map_err(|e| format!("{}: {e}", t.name))?;
            done.push(t.name.clone());
        }
        if done.is_empty() {
            return Err(match name {
                Some(n) => SessionError::UnknownTarget(n.to_string()).to_string(),
                None => "no targets".to_string(),
            });
        }
        Ok(done)
    }

    pub fn status(&self) -> Vec<TargetStatus> {
        lock(&self.targets)
            .iter()
            .map(|t| {
                let status = t.timeline.status();
                let mut listen = vec![format!("127.0.0.1:{}", t.port4)];
                if t.port6 != 0 {
                    listen.push(format!("[::1]:{}", t.port6));
                }
                TargetStatus {
                    name: t.name.clone(),
                    cgroup: t.cgroup.path().to_path_buf(),
                    cgroup_id: t.cgroup.id(),
                    netns: t.netns_inode,
                    listen,
                    redirects: t.counters.redirects.load(Ordering::Relaxed),
                    cgroup_exists: t.cgroup.exists(),
                    timeline_text: status.render(),
                    timeline: serde_json::to_value(&status).unwrap_or_default(),
                    responder: serde_json::to_value(t.responder.stats()).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Periodic housekeeping: reports targets whose cgroup vanished, and carries out
    /// `--on-interrupt kill` once a timeline reaches its interruption.
    pub fn tick(&self) {
        let mut targets = lock(&self.targets);
        for t in targets.iter_mut() {
            serve_new_namespaces(t);
            if !t.gone_reported && !t.cgroup.exists() {
                t.gone_reported = true;
                log::warn!(
                    "{}: cgroup {} is gone (pod deleted?); its redirect no longer applies to anything",
                    t.name,
                    untrusted_path(t.cgroup.path())
                );
            }
            if t.on_interrupt == OnInterrupt::Kill && t.timeline.phase() == Phase::Interrupted {
                let pids = t.cgroup.pids();
                if !pids.is_empty() {
                    log::info!(
                        "{}: interrupted; killing {} process(es) in {} (--on-interrupt kill)",
                        t.name,
                        pids.len(),
                        untrusted_path(t.cgroup.path())
                    );
                    if let Err(e) = t.cgroup.kill_all() {
                        log::warn!("{}: cannot kill the target's processes: {e}", t.name);
                    }
                }
            }
        }
    }

    /// Whether the named target's cgroup still exists (`None`: no such target).
    pub fn cgroup_alive(&self, name: &str) -> Option<bool> {
        lock(&self.targets)
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.cgroup.exists())
    }

    pub fn target_names(&self) -> Vec<String> {
        lock(&self.targets).iter().map(|t| t.name.clone()).collect()
    }

    /// Detaches every target, then stops every responder.
    pub fn shutdown(&self) {
        let mut targets = std::mem::take(&mut *lock(&self.targets));
        for t in targets.iter_mut() {
            drop(t.link.take());
        }
        drop(targets);
    }
}

/// A target name claimed while its target is being set up; dropping it releases the claim.
struct NameClaim<'a> {
    session: &'a Session,
    name: String,
}

impl<'a> NameClaim<'a> {
    fn take(session: &'a Session, name: &str) -> Result<Self, SessionError> {
        // Lock order: targets, then adding (the only place both are held).
        let targets = lock(&session.targets);
        let mut adding = lock(&session.adding);
        if targets.iter().any(|t| t.name == name) || !adding.insert(name.to_string()) {
            return Err(SessionError::Duplicate(name.to_string()));
        }
        Ok(Self {
            session,
            name: name.to_string(),
        })
    }
}

impl Drop for NameClaim<'_> {
    fn drop(&mut self) {
        lock(&self.session.adding).remove(&self.name);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts serving one listener of a target's responder.
fn spawn_serve(
    responder: &Arc<Responder>,
    listener: TcpListener,
    stop: &watch::Receiver<bool>,
    name: &str,
) -> Result<JoinHandle<()>, SessionError> {
    let listener = to_tokio(listener, name)?;
    let responder = Arc::clone(responder);
    let rx = stop.clone();
    let name = name.to_string();
    Ok(tokio::spawn(async move {
        match responder.serve(listener, rx).await {
            Ok(end) => log::debug!("{name}: responder stopped: {end:?}"),
            Err(e) => log::warn!("{name}: responder failed: {e}"),
        }
    }))
}

/// The redirect sends a target's connects to its ports on loopback in whatever namespace the
/// connecting process is in. A cgroup can hold processes of several namespaces (a slice of
/// pods), and processes can join later in a namespace of their own (a pod that starts after
/// spot-sim): each such namespace gets a listener on the same ports, so no target process is
/// redirected to nothing for longer than a tick.
fn serve_new_namespaces(t: &mut ActiveTarget) {
    // Every pid is looked at on every tick, not only newcomers: a container runtime can move
    // a process into the cgroup before it has entered the pod's network namespace.
    let pids = t.cgroup.pids();
    for pid in pids {
        let Ok(ns) = NetNs::of_pid(&t.proc, pid) else {
            continue; // Gone already, or not ours to see.
        };
        if t.served.contains(&ns.inode()) {
            continue;
        }
        t.served.insert(ns.inode());
        let bound = ns.run(|| {
            let l4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, t.port4)));
            let l6 = (t.port6 != 0)
                .then(|| TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, t.port6))).ok())
                .flatten();
            (l4, l6)
        });
        let (l4, l6) = match bound {
            Ok((Ok(l4), l6)) => (l4, l6),
            Ok((Err(e), _)) => {
                log::warn!(
                    "{}: cannot listen on 127.0.0.1:{} in net:[{}] (pid {pid}): {e}; IMDS connects from there are refused",
                    t.name,
                    t.port4,
                    ns.inode()
                );
                continue;
            }
            Err(e) => {
                log::warn!("{}: {e}", t.name);
                continue;
            }
        };
        let stop = t.stop.subscribe();
        for l in std::iter::once(l4).chain(l6) {
            match spawn_serve(&t.responder, l, &stop, &t.name) {
                Ok(task) => t.tasks.push(task),
                Err(e) => log::warn!("{}: {e}", t.name),
            }
        }
        log::info!(
            "{}: also serving inside net:[{}] (pid {pid} joined the target)",
            t.name,
            ns.inode()
        );
    }
}

/// Binds the responder on 127.0.0.1 and ::1 inside `netns`. The IPv6 listener is best effort
/// (a namespace without IPv6 just gets no native-IPv6 redirect).
fn bind_loopback(
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

fn to_tokio(l: TcpListener, target: &str) -> Result<tokio::net::TcpListener, SessionError> {
    let err = |source| SessionError::Listen {
        target: target.to_string(),
        source,
    };
    l.set_nonblocking(true).map_err(err)?;
    tokio::net::TcpListener::from_std(l).map_err(err)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
