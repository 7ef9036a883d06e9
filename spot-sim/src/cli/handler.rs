//! A running instance's end of the control socket: its answers to `status`, `trigger`,
//! `target add|remove` and `report` ([`SessionHandler`]). The commands that ask are in
//! `control.rs`.

use std::{path::PathBuf, sync::Arc};

use anyhow::{anyhow, bail, Result};

use super::resolve::Resolver;
use crate::{
    control::{ControlListener, ControlServer, Handler, Reply, Request},
    session::Session,
    targets::{HostView, PodSelector},
};

/// What `target add` needs to resolve new targets the way the command line did.
#[derive(Clone)]
pub(super) struct AddContext {
    pub(super) resolver: Resolver,
    /// To look at the node's pods afresh for each `target add --pod`.
    pub(super) host_root: Option<PathBuf>,
    pub(super) cgroup_root: Option<PathBuf>,
}

/// The running instance's answers to control requests.
struct SessionHandler {
    session: Arc<Session>,
    /// `None` for `exec`, which takes no new targets.
    add: Option<AddContext>,
}

impl Handler for SessionHandler {
    fn handle(&self, req: Request) -> Reply {
        match req {
            Request::Status => Reply::Status {
                pid: std::process::id(),
                targets: self.session.status(),
                stopped: self.session.stopped(),
            },
            Request::Trigger { target } => match self.session.trigger(target.as_deref()) {
                Ok(names) => Reply::Done {
                    message: format!("triggered: {}", names.join(", ")),
                },
                Err(message) => Reply::Error { message },
            },
            Request::TargetAdd {
                cgroup,
                pod,
                pod_uid,
                scenario,
            } => match self.add_target(cgroup, pod, pod_uid, scenario) {
                Ok(name) => Reply::Done {
                    message: format!("added {name}"),
                },
                Err(e) => Reply::Error {
                    message: format!("{e:#}"),
                },
            },
            Request::Report => Reply::Report {
                pid: std::process::id(),
                report: Box::new(self.session.live_report(&self.session.expectations())),
            },
            Request::TargetRemove { name } => match self.session.remove_target(&name) {
                Ok(()) => Reply::Done {
                    message: format!("removed {name}"),
                },
                Err(e) => Reply::Error {
                    message: e.to_string(),
                },
            },
        }
    }
}

impl SessionHandler {
    fn add_target(
        &self,
        cgroup: Option<PathBuf>,
        pod: Option<String>,
        pod_uid: Option<String>,
        scenario: Option<PathBuf>,
    ) -> Result<String> {
        let ctx = self
            .add
            .as_ref()
            .ok_or_else(|| anyhow!("this instance (spot-sim exec) takes no new targets"))?;
        let file = scenario.as_deref();
        let spec = match (cgroup, pod, pod_uid) {
            (Some(path), None, None) => ctx.resolver.cgroup(&path, file)?,
            (None, pod, uid) if pod.is_some() != uid.is_some() => {
                let host = HostView::detect(ctx.host_root.as_deref(), ctx.cgroup_root.as_deref())?;
                let sel = match (pod, uid) {
                    (Some(p), _) => p.parse::<PodSelector>()?,
                    (_, Some(u)) => PodSelector::uid(&u)?,
                    _ => unreachable!("one of the two is set"),
                };
                ctx.resolver.pod(&host, &sel, file)?
            }
            _ => bail!("give exactly one of --cgroup PATH, --pod NS/NAME or --pod-uid UID"),
        };
        Ok(self.session.add_target(spec)?)
    }
}

/// Serves the control socket bound before anything started (`ControlListener::bind`).
pub(super) fn start_control(
    listener: ControlListener,
    session: &Arc<Session>,
    add: Option<AddContext>,
) -> ControlServer {
    let handler = Arc::new(SessionHandler {
        session: Arc::clone(session),
        add,
    });
    listener.serve(handler)
}
