//! `spot-sim run`: existing cgroups and pods, until SIGINT/SIGTERM (`--follow` re-targets a
//! recreated pod).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{anyhow, bail, Result};

use super::{
    gameday,
    handler::{start_control, AddContext},
    resolve::{split_target_arg, Resolver},
    RunArgs,
};
use crate::{
    control::metrics::MetricsServer,
    scenario::SystemClock,
    session::Session,
    stop::StopPlan,
    targets::{cgroup::cgroup2_mount, pods, HostView, PodError, PodSelector, TargetScope},
};

pub(super) async fn run(a: RunArgs) -> Result<ExitCode> {
    let wants_pods = a.list_pods || !a.pods.is_empty() || !a.pod_uids.is_empty();
    let host = if wants_pods {
        Some(HostView::detect(
            a.host_root.as_deref(),
            a.cgroup_root.as_deref(),
        )?)
    } else {
        None
    };
    if a.list_pods {
        let host = host.as_ref().ok_or_else(|| anyhow!("no node view"))?;
        print!("{}", pods::render_table(&pods::list_pods(host)?));
        return Ok(ExitCode::SUCCESS);
    }
    if a.cgroups.is_empty() && !wants_pods {
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
    let resolver = Resolver::new(mount, proc, a.scenario.clone(), a.port, scope);
    let mut specs = Vec::new();
    for arg in &a.cgroups {
        let (path, file) = split_target_arg(arg);
        specs.push(resolver.cgroup(Path::new(path), file.as_deref())?);
    }
    let selectors = a
        .pods
        .iter()
        .map(|arg| {
            let (sel, file) = split_target_arg(arg);
            Ok((sel.parse::<PodSelector>()?, file))
        })
        .chain(a.pod_uids.iter().map(|arg| {
            let (uid, file) = split_target_arg(arg);
            Ok((PodSelector::uid(uid)?, file))
        }))
        .collect::<Result<Vec<_>, PodError>>()?;
    let mut followed = Vec::new();
    for (sel, file) in selectors {
        let host = host.as_ref().ok_or_else(|| anyhow!("no node view"))?;
        let spec = resolver.pod(host, &sel, file.as_deref())?;
        if a.follow {
            followed.push(Followed {
                name: spec.name.clone(),
                cgroup: spec.cgroup.path().to_path_buf(),
                sel,
                file,
            });
        }
        specs.push(spec);
    }
    let stop = StopPlan::new(&a.stop, SystemTime::now());
    stop.check_before_start().await?;
    // What `exec` instances killed with SIGKILL left behind: sockets of processes now gone.
    crate::control::remove_dead_sockets().await;
    // Before anything is attached: a refused --control stops us here (issue #22).
    let control = crate::control::ControlListener::bind(&a.control).await?;
    let session = Session::start(Arc::new(SystemClock))?;
    for spec in &specs {
        gameday::prepare(&session, &a.verdict, &spec.settings.scenario)?;
    }
    for spec in specs {
        session.add_target(spec)?;
    }
    let add = AddContext {
        resolver: resolver.clone(),
        host_root: a.host_root.clone(),
        cgroup_root: a.cgroup_root.clone(),
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
        if let Some(host) = &host {
            for f in followed.iter_mut() {
                f.refollow(&session, host, &resolver);
            }
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

/// Waits for SIGINT or SIGTERM, calling `on_tick` (if any) every 0.5 s meanwhile.
pub(super) async fn wait_for_shutdown(mut on_tick: Option<&mut dyn FnMut()>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = tick.tick(), if on_tick.is_some() => {
                if let Some(f) = on_tick.as_mut() {
                    f();
                }
            }
        }
    }
    // A second signal while we clean up exits at once.
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        eprintln!("spot-sim: second signal, exiting now");
        std::process::exit(130);
    });
    Ok(())
}

/// A pod target that `--follow` re-resolves once its cgroup is gone.
struct Followed {
    name: String,
    cgroup: PathBuf,
    sel: PodSelector,
    file: Option<PathBuf>,
}

impl Followed {
    fn refollow(&mut self, session: &Arc<Session>, host: &HostView, resolver: &Resolver) {
        // Alive: nothing to do. Gone, or removed after a failed re-add: look for the new pod.
        if session.cgroup_alive(&self.name) == Some(true) {
            return;
        }
        let Ok(pod) = pods::resolve(host, &self.sel) else {
            return; // Not back yet; look again on the next tick.
        };
        if pod.cgroup.as_ref().is_none_or(|c| *c == self.cgroup) {
            return;
        }
        let spec = resolver.pod(host, &self.sel, self.file.as_deref());
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
