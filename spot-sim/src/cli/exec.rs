//! `spot-sim exec`: one command in a transient cgroup, with the redirect on it for its
//! lifetime.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::SystemTime,
};

use anyhow::{bail, Context, Result};
use spot_sim_place::Placement;

use super::{
    answers::{bind_before_attaching, start_control},
    args::ExecArgs,
    gameday,
    resolve::{NodeRoots, Resolver, SettingsFrom},
};
use crate::{
    control::{self as ctl, metrics::MetricsServer},
    scenario::SystemClock,
    session::Session,
    stop::StopPlan,
    targets::{
        cgroup::{cgroup2_mount, remove_dead_transients},
        ExecNetns, TargetKind, TargetScope, TransientCgroup,
    },
};

/// Names of exec's transient cgroups: `spot-sim-exec-PID-…`.
const TRANSIENT_PREFIX: &str = "spot-sim-exec";

pub(super) async fn exec(a: ExecArgs) -> Result<ExitCode> {
    let settings = a.scenario.resolve()?;
    let program = a.command[0].clone();
    check_program(&program)?;
    // Before anything is created: a condition that cannot work, or one that already holds.
    let stop = StopPlan::new(&a.stop, SystemTime::now());
    stop.check_before_start().await?;
    let mount = cgroup2_mount()?;
    // What instances killed with SIGKILL left: their empty transient cgroups, their sockets.
    remove_dead_transients(&mount, TRANSIENT_PREFIX);
    ctl::remove_dead_sockets().await;
    let control_path = a.control.unwrap_or_else(ctl::default_exec_socket);
    let control = bind_before_attaching(&control_path).await?;
    let session = Session::start(Arc::new(SystemClock))?;
    gameday::prepare(&session, &a.verdict, &settings.scenario)?;
    let cgroup = TransientCgroup::create(&mount, TRANSIENT_PREFIX)?;
    let target = TargetKind::Exec {
        cgroup: cgroup.dir().path().to_path_buf(),
        netns: a.netns,
    };
    let resolver = Resolver {
        mount,
        proc: PathBuf::from("/proc"),
        node: NodeRoots::default(),
        settings: SettingsFrom::Resolved(Box::new(settings)),
        port: a.port,
        scope: TargetScope::WorkloadOnly,
    };
    let spec = resolver.resolve(&target, None)?;
    let netns = spec.netns.try_clone()?;
    let name = session.add_target(spec)?;
    let _control = start_control(control, &session, None);
    let _metrics = match a.metrics {
        Some(addr) => Some(MetricsServer::start(addr, &session).await?),
        None => None,
    };
    let _stop = gameday::watch_stops(stop, &session, "the command ends");

    // Before the spawn: a SIGTERM that comes once the command runs (or while it starts) must
    // be relayed to it, never take spot-sim down with the default action in between.
    let mut signals = Relay::install()?;
    let mut cmd = std::process::Command::new(&program);
    cmd.args(&a.command[1..]);
    // The command must not outlive spot-sim: once spot-sim is gone (even by SIGKILL) so is
    // the redirect, and the command would talk to the real IMDS unawares. The signal follows
    // the forking thread, which is the main thread (`block_on`).
    let mut place = Placement::new()
        .die_with_parent()
        .cgroup_procs(cgroup.procs_fd())?;
    if a.netns == ExecNetns::New {
        place = place.netns(&netns)?;
    }
    place.apply(&mut cmd);
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
    let pid = child.id().unwrap_or(0);
    log::debug!("started {} as pid {pid}", program.to_string_lossy());
    let status = signals.wait(&mut child, pid).await?;
    session.command_ended(&name, status_number(status));
    // After a last drain, so the report and the log hold every redirect of a short command.
    let code = gameday::finish(&session, &a.verdict, exit_code_of(status));
    session.shutdown();
    drop(session);
    drop(cgroup);
    Ok(code)
}

/// A clear error for a command that cannot run, before anything is created.
fn check_program(program: &std::ffi::OsStr) -> Result<()> {
    let p = Path::new(program);
    let found = if p.components().count() > 1 {
        p.exists().then(|| p.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(p))
                .find(|c| c.is_file())
        })
    };
    match found {
        None => bail!(
            "command not found: {} (check the name, or give its full path)",
            p.display()
        ),
        Some(f) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&f)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            if mode & 0o111 == 0 || f.is_dir() {
                bail!(
                    "{} is not an executable file (chmod +x it, or run it through its interpreter)",
                    f.display()
                );
            }
            Ok(())
        }
    }
}

/// SIGINT and SIGTERM, caught from the moment it is installed and relayed to the command.
struct Relay {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Relay {
    fn install() -> Result<Relay> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Relay {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the command, relaying the signals that come meanwhile.
    async fn wait(
        &mut self,
        child: &mut tokio::process::Child,
        pid: u32,
    ) -> Result<std::process::ExitStatus> {
        // With a terminal, Ctrl-C already reaches the command (same foreground process group):
        // relaying SIGINT too would deliver it twice.
        let relay_int = !std::io::stdin().is_terminal();
        loop {
            tokio::select! {
                status = child.wait() => return Ok(status?),
                _ = self.int.recv() => if relay_int { forward(pid, nix::sys::signal::Signal::SIGINT) },
                _ = self.term.recv() => forward(pid, nix::sys::signal::Signal::SIGTERM),
            }
        }
    }
}

fn forward(pid: u32, sig: nix::sys::signal::Signal) {
    if pid != 0 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
    }
}

fn exit_code_of(status: std::process::ExitStatus) -> ExitCode {
    ExitCode::from(status_number(status) as u8)
}

/// The status as a shell shows it: the exit code, or 128 + the signal that ended the command.
fn status_number(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c & 0xff,
        (None, Some(sig)) => (128 + sig) & 0xff,
        _ => 1,
    }
}
