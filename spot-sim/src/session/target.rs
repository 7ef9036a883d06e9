//! One target's state while it is served, and what is done to it alone: start it, say how
//! it is, serve a namespace its processes turn up in, note its cgroup gone, kill its
//! processes at the interruption.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use spot_sim_common::Target;
use tokio::{sync::watch, task::JoinHandle};

use super::{
    listen::{bind_loopback, bind_same_ports, spawn_serve},
    SessionError, TargetSpec, TargetStatus,
};
use crate::{
    escape::untrusted_path,
    imds::Responder,
    journal::Journal,
    redirect::{RedirectEvent, Redirector, TargetLink},
    scenario::{Clock, OnInterrupt, Timeline},
    targets::{CgroupDir, NetNs},
};

/// Per-target state of the redirect log (the redirect count itself is the kernel's).
#[derive(Debug, Default)]
struct LogThrottle {
    last_logged: Option<Instant>,
    suppressed: u64,
}

/// One target while it is served: its cgroup, its redirect link, its responder and the
/// listeners it serves on (one pair per network namespace its processes use), its journal.
pub(super) struct ActiveTarget {
    pub(super) name: String,
    pub(super) index: u32,
    pub(super) cgroup: CgroupDir,
    // Field order is drop order: detach first, then stop the responder.
    pub(super) link: Option<TargetLink>,
    netns_inode: u64,
    /// Every namespace the responder listens in (by inode), with the same ports in each.
    served: HashSet<u64>,
    pub(super) proc: PathBuf,
    port4: u16,
    port6: u16,
    pub(super) timeline: Arc<Timeline>,
    responder: Arc<Responder>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pub(super) on_interrupt: OnInterrupt,
    gone_reported: bool,
    /// Processes outside spot-sim's PID namespace joined: said once.
    hidden_reported: bool,
    /// The cgroup emptied: watch it for removal until it fills again.
    pub(super) empty: bool,
    throttle: LogThrottle,
    pub(super) journal: Arc<Journal>,
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

impl ActiveTarget {
    /// Opens a target's listeners inside its namespace, starts its responder (journaling
    /// every request), and only then attaches the redirect, as target number `index`.
    pub(super) fn start(
        spec: TargetSpec,
        index: u32,
        clock: &Arc<dyn Clock>,
        redirector: &mut Redirector,
    ) -> Result<Self, SessionError> {
        let ipv6 = spec.settings.imds.options.http_protocol_ipv6.is_enabled();
        let (l4, mut l6) = bind_loopback(&spec.netns, spec.port, &spec.name)?;
        // With the IPv6 endpoint off (EC2's default) nothing is redirected to ::1: no listener
        // there, in this namespace or any other the target's processes live in.
        if !ipv6 {
            l6 = None;
        }
        let port4 = l4.local_addr().map(|a| a.port()).unwrap_or(0);
        let port6 = l6
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
            .unwrap_or(0);
        let timeline = Timeline::new(spec.settings.scenario.clone(), Arc::clone(clock));
        let responder = Responder::new(
            spec.name.clone(),
            Arc::clone(&timeline),
            spec.settings.imds.clone(),
            Arc::clone(clock),
        );
        let journal = Journal::new(
            spec.name.clone(),
            Arc::clone(&timeline),
            responder.published(),
        );
        responder.attach_journal(Arc::clone(&journal));
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for listener in std::iter::once(l4).chain(l6) {
            tasks.push(spawn_serve(&responder, listener, &stop_rx, &spec.name)?);
        }
        let link = redirector.attach(
            &spec.cgroup,
            Target {
                port4,
                // 0 leaves native IPv6 connects to fd00:ec2::254 alone: HttpProtocolIpv6 is
                // off by default on EC2. The IPv4-mapped form still goes to port4.
                port6,
                index,
                redirects: 0,
            },
        )?;
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
        Ok(ActiveTarget {
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
            on_interrupt: spec.settings.on_interrupt,
            gone_reported: false,
            hidden_reported: false,
            empty: false,
            throttle: LogThrottle::default(),
            journal,
        })
    }

    /// What `status` and `target list` show of it.
    pub(super) fn status(&self) -> TargetStatus {
        let status = self.timeline.status();
        let mut listen = vec![format!("127.0.0.1:{}", self.port4)];
        // Native IPv6 reaches ::1 only with HttpProtocolIpv6 enabled.
        if self.port6 != 0 {
            listen.push(format!("[::1]:{}", self.port6));
        }
        TargetStatus {
            name: self.name.clone(),
            cgroup: self.cgroup.path().to_path_buf(),
            cgroup_id: self.cgroup.id(),
            netns: self.netns_inode,
            listen,
            redirects: self.link.as_ref().map_or(0, TargetLink::redirects),
            cgroup_exists: self.cgroup.exists(),
            timeline_text: status.render(),
            timeline: serde_json::to_value(&status).unwrap_or_default(),
            responder: serde_json::to_value(self.responder.stats()).unwrap_or_default(),
        }
    }

    /// Serves the namespaces of the processes already in its cgroup (a slice of pods may
    /// span several), and notes whether it is empty.
    pub(super) fn scan_pids(&mut self) {
        let pids = self.cgroup.pids();
        for &pid in &pids {
            self.serve_namespace_of(pid);
        }
        self.empty = pids.is_empty();
    }

    /// At most one log line a second per target: a handler polling in a tight loop must not
    /// flood the log.
    pub(super) fn log_redirect(&mut self, ev: &RedirectEvent) {
        let now = Instant::now();
        let th = &mut self.throttle;
        if th
            .last_logged
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            th.suppressed += 1;
            return;
        }
        th.last_logged = Some(now);
        let more = std::mem::take(&mut th.suppressed);
        let more = if more > 0 {
            format!(" (+{more} more processes' redirects since the last line)")
        } else {
            String::new()
        };
        let family = if ev.ipv6_socket {
            "IPv6 socket"
        } else {
            "IPv4"
        };
        log::info!(
            "{}: pid {} ({}) → IMDS {} redirected ({family}){more}",
            self.name,
            ev.tgid,
            ev.comm,
            ev.original
        );
    }

    /// A pid the kernel reported that our /proc does not show as the target's: said once when
    /// the target holds processes spot-sim cannot see.
    fn check_hidden(&mut self) {
        if !self.hidden_reported && self.cgroup.pids().contains(&0) {
            self.hidden_pids();
        }
    }

    /// Processes spot-sim cannot see joined (pid 0 in cgroup.procs): said once, and their
    /// namespace is never guessed.
    fn hidden_pids(&mut self) {
        if !std::mem::replace(&mut self.hidden_reported, true) {
            let why = crate::targets::HiddenPids {
                cgroup: self.cgroup.path().to_path_buf(),
            };
            log::warn!("{}: not served: {why}", self.name);
        }
    }

    /// Says once that the cgroup is gone (a pod deleted): `status` shows it too.
    pub(super) fn check_gone(&mut self) {
        if self.gone_reported || self.cgroup.exists() {
            return;
        }
        self.gone_reported = true;
        log::warn!(
            "{}: cgroup {} is gone (pod deleted?); its redirect no longer applies to anything",
            self.name,
            untrusted_path(self.cgroup.path())
        );
    }

    pub(super) fn kill_at_interruption(&self) {
        let pids = self.cgroup.pids();
        if pids.is_empty() {
            return;
        }
        log::info!(
            "{}: interrupted; killing {} process(es) in {} (--on-interrupt kill)",
            self.name,
            pids.len(),
            untrusted_path(self.cgroup.path())
        );
        if let Err(e) = self.cgroup.kill_all() {
            log::warn!("{}: cannot kill the target's processes: {e}", self.name);
        }
    }

    /// The redirect sends a target's connects to its ports on loopback in whatever namespace
    /// the connecting process is in. A cgroup can hold processes of several namespaces (a
    /// slice of pods), and processes can join later in a namespace of their own (a pod that
    /// starts after spot-sim): each such namespace gets a listener on the same ports, as soon
    /// as the kernel reports a program start there (or the safety scan finds it).
    pub(super) fn serve_namespace_of(&mut self, pid: u32) {
        if pid == 0 {
            return self.hidden_pids();
        }
        // Most pids live in a namespace already served: a stat tells, without an open.
        match NetNs::inode_of_pid(&self.proc, pid) {
            Some(i) if self.served.contains(&i) => return,
            Some(_) => {}
            // Gone already, or outside our PID namespace: only the cgroup can tell which.
            None => return self.check_hidden(),
        }
        // The kernel reports program starts with the node's pids: one names this target's
        // process in our /proc only when spot-sim shares the node's PID namespace.
        if !self.cgroup.pids().contains(&pid) {
            return self.check_hidden();
        }
        let Ok(ns) = NetNs::of_pid(&self.proc, pid) else {
            return; // Gone already, or not ours to see.
        };
        if !self.served.insert(ns.inode()) {
            return;
        }
        let (l4, l6) = match bind_same_ports(&ns, self.port4, self.port6) {
            Ok((Ok(l4), l6)) => (l4, l6),
            Ok((Err(e), _)) => {
                log::warn!(
                    "{}: cannot listen on 127.0.0.1:{} in net:[{}] (pid {pid}): {e}; IMDS connects from there are refused",
                    self.name,
                    self.port4,
                    ns.inode()
                );
                return;
            }
            Err(e) => {
                log::warn!("{}: {e}", self.name);
                return;
            }
        };
        let stop = self.stop.subscribe();
        for l in std::iter::once(l4).chain(l6) {
            match spawn_serve(&self.responder, l, &stop, &self.name) {
                Ok(task) => self.tasks.push(task),
                Err(e) => log::warn!("{}: {e}", self.name),
            }
        }
        log::info!(
            "{}: also serving inside net:[{}] (pid {pid} joined the target)",
            self.name,
            ns.inode()
        );
    }
}
