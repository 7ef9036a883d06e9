//! `spot-sim serve`: the fake IMDS alone on an address (no eBPF, no root), steerable through
//! a control socket like `run`: `status` shows it, `trigger` starts a `--manual` timeline.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Result;

use super::args::ServeArgs;
use crate::{
    control::{self as ctl, Handler, Reply, Request},
    imds::Responder,
    scenario::{Clock, SystemClock, Timeline},
    session::TargetStatus,
    targets::NetNs,
};

pub(super) async fn serve(a: ServeArgs) -> Result<ExitCode> {
    // Every check first: a bad option starts nothing.
    let settings = a.scenario.resolve()?;
    let path = a.control.unwrap_or_else(ctl::default_serve_socket);
    let control = ctl::ControlListener::bind(&path).await?;
    let listener = crate::imds::bind_standalone(a.listen).await?;
    let addr = listener.local_addr().unwrap_or(a.listen);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let timeline = Timeline::new(settings.scenario, Arc::clone(&clock));
    let responder = Responder::new(format!("serve {addr}"), timeline, settings.imds, clock);
    let handler = Arc::new(ServeHandler {
        responder: Arc::clone(&responder),
        addr,
        netns: NetNs::current().map(|n| n.inode()).unwrap_or(0),
    });
    let _control = control.serve(handler);
    log::info!(
        "control socket {}: `spot-sim status` and `spot-sim trigger` reach this serve",
        path.display()
    );
    crate::imds::serve_standalone(listener, responder).await?;
    Ok(ExitCode::SUCCESS)
}

/// A serve's answers: one responder, no cgroup, no redirect.
struct ServeHandler {
    responder: Arc<Responder>,
    addr: SocketAddr,
    netns: u64,
}

impl Handler for ServeHandler {
    fn handle(&self, req: Request) -> Reply {
        match req {
            Request::Status => {
                let timeline = self.responder.timeline().status();
                Reply::Status {
                    pid: std::process::id(),
                    targets: vec![TargetStatus {
                        name: self.responder.target_name().to_string(),
                        // No cgroup: whoever connects to the address is served.
                        cgroup: PathBuf::new(),
                        cgroup_id: 0,
                        netns: self.netns,
                        listen: vec![self.addr.to_string()],
                        redirects: 0,
                        cgroup_exists: true,
                        timeline_text: timeline.render(),
                        timeline: serde_json::to_value(&timeline).unwrap_or_default(),
                        responder: serde_json::to_value(self.responder.stats())
                            .unwrap_or_default(),
                    }],
                    stopped: None,
                }
            }
            Request::Trigger { target } => {
                let name = self.responder.target_name();
                if target.as_deref().is_some_and(|t| t != name) {
                    return Reply::Error {
                        message: format!("no target named {target:?}: this serve's is {name:?}"),
                    };
                }
                match self.responder.timeline().trigger() {
                    Ok(()) => Reply::Done {
                        message: format!("triggered: {name}"),
                    },
                    Err(e) => Reply::Error {
                        message: format!("{name}: {e}"),
                    },
                }
            }
            // The verdict needs the kernel's view of a cgroup (programs started, connects,
            // exits); serve has no cgroup, so it has nothing to judge.
            Request::Report => Reply::Error {
                message: "spot-sim serve keeps no game-day journal (it watches no cgroup); use spot-sim exec or run for a report".into(),
            },
            Request::TargetAdd { .. } | Request::TargetRemove { .. } => Reply::Error {
                message: "spot-sim serve has no targets to add or remove (it redirects nothing); use spot-sim run".into(),
            },
        }
    }
}
