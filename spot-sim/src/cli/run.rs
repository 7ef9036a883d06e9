//! `spot-sim run`: existing cgroups and pods, until SIGINT/SIGTERM (`--follow` re-targets a
//! recreated pod).

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::SystemTime};

use anyhow::{anyhow, bail, Result};

use super::{
    answers::{bind_before_attaching, start_control, AddContext},
    args::RunArgs,
    gameday,
    resolve::{NodeRoots, Resolver, SettingsFrom},
    shutdown::wait_for_shutdown,
};
use crate::{
    control::metrics::MetricsServer,
    scenario::SystemClock,
    session::Session,
    stop::StopPlan,
    targets::{cgroup::cgroup2_mount, pods, TargetKind, TargetScope},
};

pub(super) async fn run(a: RunArgs) -> Result<ExitCode> {
    let node = NodeRoots {
        host_root: a.host_root.clone(),
        cgroup_root: a.cgroup_root.clone(),
    };
    let targets: Vec<_> = a.targets().collect();
    let wants_pods = a.list_pods || targets.iter().any(|t| matches!(t.kind, TargetKind::Pod(_)));
    let host = if wants_pods { Some(node.host()?) } else { None };
    if a.list_pods {
        let host = host.as_ref().ok_or_else(|| anyhow!("no node view"))?;
        print!("{}", pods::render_table(&pods::list_pods(host)?));
        return Ok(ExitCode::SUCCESS);
    }
    if targets.is_empty() {
        bail!("nothing to target: give at least one --cgroup PATH, --pod NS/NAME or --pod-uid UID (see --list-pods)");
    }
    let mount = match &host {
        Some(h) => h.cgroup2.clone(),
        None => cgroup2_mount()?,
    };
    let proc = host
        .as_ref()
        .map_or_else(|| PathBuf::from("/proc"), |h| h.proc.clone());
    let scope = if a.allow_own_cgroup {
        TargetScope::AllowOwn
    } else {
        TargetScope::WorkloadOnly
    };
    let resolver = Resolver {
        mount,
        proc,
        node,
        settings: SettingsFrom::Args(Box::new(a.scenario.clone())),
        port: a.port,
        scope,
    };
    let mut specs = Vec::new();
    let mut followed = Vec::new();
    for t in targets {
        let spec = resolver.resolve(&t.kind, t.scenario.as_deref())?;
        if a.follow && matches!(t.kind, TargetKind::Pod(_)) {
            followed.push(Followed {
                name: spec.name.clone(),
                cgroup: spec.cgroup.path().to_path_buf(),
                kind: t.kind,
                file: t.scenario,
            });
        }
        specs.push(spec);
    }
    let stop = StopPlan::new(&a.stop, SystemTime::now());
    stop.check_before_start().await?;
    // What `exec` instances killed with SIGKILL left behind: sockets of processes now gone.
    crate::control::remove_dead_sockets().await;
    let control = bind_before_attaching(&a.control).await?;
    let session = Session::start(Arc::new(SystemClock))?;
    for spec in &specs {
        gameday::prepare(&session, &a.verdict, &spec.settings.scenario)?;
    }
    for spec in specs {
        session.add_target(spec)?;
    }
    let add = AddContext {
        resolver: resolver.clone(),
    };
    let _control = start_control(control, &session, Some(add));
    let _metrics = match a.metrics {
        Some(addr) => Some(MetricsServer::start(addr, &session).await?),
        None => None,
    };
    let _stop = gameday::watch_stops(stop, &session, "SIGINT/SIGTERM");
    log::info!(
        "serving {} target(s); `spot-sim status` shows the timeline; Ctrl-C detaches",
        session.target_names().len()
    );
    // Housekeeping is the session's own; only `--follow` has work here on a timer.
    let refollow = |followed: &mut Vec<Followed>| {
        // A stopped game day follows nothing.
        if session.stopped().is_some() {
            return;
        }
        for f in followed.iter_mut() {
            f.refollow(&session, &resolver);
        }
    };
    if followed.is_empty() {
        wait_for_shutdown(None).await?;
    } else {
        wait_for_shutdown(Some(&mut || refollow(&mut followed))).await?;
    }
    let code = gameday::finish(&session, &a.verdict, ExitCode::SUCCESS);
    // Detach first, then stop answering, then exit.
    session.shutdown();
    log::info!("detached; exiting");
    Ok(code)
}

/// A pod target that `--follow` re-resolves once its cgroup is gone.
struct Followed {
    name: String,
    cgroup: PathBuf,
    kind: TargetKind,
    file: Option<PathBuf>,
}

impl Followed {
    fn refollow(&mut self, session: &Arc<Session>, resolver: &Resolver) {
        // Alive: nothing to do. Gone, or removed after a failed re-add: look for the new pod.
        if session.cgroup_alive(&self.name) == Some(true) {
            return;
        }
        let Ok(cgroup) = resolver.locate(&self.kind) else {
            return; // Not back yet; look again on the next tick.
        };
        if cgroup == self.cgroup {
            return;
        }
        let spec = resolver.resolve(&self.kind, self.file.as_deref());
        match spec {
            Ok(spec) => {
                let (name, cgroup) = (spec.name.clone(), spec.cgroup.path().to_path_buf());
                let _ = session.remove_target(&self.name);
                match session.add_target(spec) {
                    Ok(_) => {
                        log::info!(
                            "{}: recreated as {name}; following it (--follow)",
                            self.name
                        );
                        self.name = name;
                        self.cgroup = cgroup;
                    }
                    Err(e) => log::warn!("{}: cannot follow the recreated pod: {e}", self.name),
                }
            }
            Err(e) => log::warn!("{}: cannot follow the recreated pod: {e:#}", self.name),
        }
    }
}
