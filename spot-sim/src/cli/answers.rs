//! A running instance's answers on its control socket: to `status`, `trigger`,
//! `target add|remove` and `report` ([`SessionAnswers`]). The commands that ask are in
//! `control.rs`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{anyhow, bail, Result};

use super::resolve::Resolver;
use crate::{
    control::{ControlListener, ControlServer, Handler, Reply, Request},
    session::Session,
    targets::TargetKind,
};

/// What `target add` needs to resolve new targets the way the command line did.
#[derive(Clone)]
pub(super) struct AddContext {
    pub(super) resolver: Resolver,
}

/// The running instance's answers to control requests.
struct SessionAnswers {
    session: Arc<Session>,
    /// `None` for `exec`, which takes no new targets.
    add: Option<AddContext>,
}

impl Handler for SessionAnswers {
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
            Request::TargetAdd { target, scenario } => match self.add_target(&target, scenario) {
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

impl SessionAnswers {
    fn add_target(&self, target: &TargetKind, scenario: Option<PathBuf>) -> Result<String> {
        let ctx = self
            .add
            .as_ref()
            .ok_or_else(|| anyhow!("this instance (spot-sim exec) takes no new targets"))?;
        match target {
            TargetKind::Cgroup(_) | TargetKind::Pod(_) => {}
            // Made by `spot-sim exec` for its own command, never named from outside.
            TargetKind::Exec { .. } => {
                bail!("an exec target is made by spot-sim exec; add a --cgroup or a --pod")
            }
        }
        let spec = ctx.resolver.resolve(target, scenario.as_deref())?;
        Ok(self.session.add_target(spec)?)
    }
}

/// Serves the control socket bound before anything started (`ControlListener::bind`).
pub(super) fn start_control(
    listener: ControlListener,
    session: &Arc<Session>,
    add: Option<AddContext>,
) -> ControlServer {
    let handler = Arc::new(SessionAnswers {
        session: Arc::clone(session),
        add,
    });
    listener.serve(handler)
}

/// Binds the control socket of a command that attaches (`exec`, `run`, a game day's node)
/// before anything is attached or run, so a refused `--control` stops it there (issue #22).
/// The rights to attach are checked first: without them that is the one line to read, not
/// the socket's EACCES under /run/spot-sim.
pub(super) async fn bind_before_attaching(path: &Path) -> Result<ControlListener> {
    crate::redirect::preflight().map_err(anyhow::Error::msg)?;
    Ok(ControlListener::bind(path).await?)
}
