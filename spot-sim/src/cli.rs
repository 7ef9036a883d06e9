//! The command line: parses arguments and wires scenario + targets into a session.
//! `anyhow` lives here only; every module below speaks its own error type.

use std::{
    ffi::OsString,
    io::IsTerminal,
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    control::{self, metrics::MetricsServer, ControlServer, Handler, Reply, Request},
    scenario::{ScenarioArgs, Settings, SystemClock},
    session::{Session, TargetSpec},
    target::{
        cgroup::cgroup2_mount, pods, CgroupDir, HostView, NetNs, PodError, PodSelector,
        TransientCgroup,
    },
};

/// Rehearse EC2 Spot interruptions for real: processes in the chosen cgroups (a pod, a systemd
/// unit, a command) see a simulated interruption on the instance metadata service, while
/// everything else on the machine keeps the real one.
#[derive(Debug, Parser)]
#[command(name = "spot-sim", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command whose IMDS requests reach spot-sim's simulated interruption.
    ///
    /// The command runs in a transient cgroup that spot-sim removes afterwards; spot-sim exits
    /// with the command's exit status.
    Exec(ExecArgs),
    /// Redirect existing cgroups (or pods) until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Serve the fake IMDS alone on an address (no eBPF, no root needed).
    Serve(ServeArgs),
    /// Show the timeline and counters of running spot-sim instances.
    Status(StatusArgs),
    /// Start the timeline of a `--manual` scenario now.
    Trigger(TriggerArgs),
    /// Add, remove or list the targets of a running `spot-sim run`.
    Target {
        #[command(subcommand)]
        action: TargetAction,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum NetnsMode {
    /// The command keeps spot-sim's network namespace (a real handler's normal network).
    Current,
    /// A fresh namespace with only loopback: nothing the command does can leave the machine.
    New,
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// Network namespace for the command.
    #[arg(long, value_enum, default_value = "current")]
    netns: NetnsMode,
    /// Responder port on loopback (in the command's namespace); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Control socket for `spot-sim status`/`trigger` [default: /run/spot-sim/exec-PID.sock].
    #[arg(long)]
    control: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (in spot-sim's own network namespace).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A cgroup to target: absolute, or relative to the cgroup v2 mount. Repeatable.
    /// `PATH=SCENARIO.toml` gives this target its own scenario file.
    #[arg(long = "cgroup", value_name = "PATH[=FILE]")]
    cgroups: Vec<String>,
    /// A pod on this node to target, as NAMESPACE/NAME. Repeatable; `NS/NAME=SCENARIO.toml`
    /// gives it its own scenario file. Every container of the pod is covered, including
    /// containers restarted later.
    #[arg(long = "pod", value_name = "NS/NAME[=FILE]")]
    pods: Vec<String>,
    /// A pod to target by its uid. Repeatable; `UID=SCENARIO.toml` as for --pod.
    #[arg(long = "pod-uid", value_name = "UID[=FILE]")]
    pod_uids: Vec<String>,
    /// Keep following --pod/--pod-uid targets: when a pod is deleted and one is recreated under
    /// the same name, target the new one (with the same scenario, started afresh).
    #[arg(long)]
    follow: bool,
    /// List the pods on this node (namespace, name, uid, QoS class, cgroup) and exit.
    #[arg(long)]
    list_pods: bool,
    /// Where the node's root filesystem is [default: detected: / on the node, /host in a
    /// `kubectl debug node` pod].
    #[arg(long, value_name = "DIR")]
    host_root: Option<PathBuf>,
    /// Search for the kubepods cgroup hierarchy only below this cgroup directory [default: the
    /// node's cgroup v2 mount].
    #[arg(long, value_name = "DIR")]
    cgroup_root: Option<PathBuf>,
    /// Responder port on loopback in each target's namespace; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Control socket for `status`, `trigger` and `target`.
    #[arg(long, default_value_os_t = control::default_run_socket())]
    control: PathBuf,
    /// Serve Prometheus metrics on this address (in spot-sim's own network namespace).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    #[command(flatten)]
    scenario: ScenarioArgs,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1338")]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    scenario: ScenarioArgs,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
    /// Control socket of the instance to ask [default: every running one].
    #[arg(long)]
    control: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct TriggerArgs {
    /// Only this target [default: every target].
    target: Option<String>,
    /// Control socket of the instance [default: every running one].
    #[arg(long)]
    control: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TargetAction {
    /// Start redirecting one more cgroup.
    Add {
        /// A cgroup, absolute or relative to the cgroup v2 mount.
        #[arg(long, required_unless_present_any = ["pod", "pod_uid"])]
        cgroup: Option<PathBuf>,
        /// A pod on this node, as NAMESPACE/NAME.
        #[arg(long, conflicts_with_all = ["cgroup", "pod_uid"])]
        pod: Option<String>,
        /// A pod on this node, by uid.
        #[arg(long, conflicts_with_all = ["cgroup", "pod"])]
        pod_uid: Option<String>,
        /// Its own scenario file [default: the instance's scenario].
        #[arg(long)]
        scenario: Option<PathBuf>,
        #[arg(long, default_value_os_t = control::default_run_socket())]
        control: PathBuf,
    },
    /// Stop redirecting a target (by the name `target list` shows).
    Remove {
        name: String,
        #[arg(long, default_value_os_t = control::default_run_socket())]
        control: PathBuf,
    },
    /// List the targets.
    List {
        #[arg(long, default_value_os_t = control::default_run_socket())]
        control: PathBuf,
    },
}

/// Logs go to stderr; `RUST_LOG` overrides the default `info`.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
}

impl Cli {
    pub fn execute(self) -> ExitCode {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("spot-sim: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result = runtime.block_on(self.command.run());
        // Responder connections may still be open; do not wait for them.
        runtime.shutdown_timeout(Duration::from_millis(200));
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("spot-sim: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

impl Command {
    async fn run(self) -> Result<ExitCode> {
        match self {
            Command::Exec(a) => exec(a).await,
            Command::Run(a) => run(a).await,
            Command::Serve(a) => {
                let settings = a.scenario.resolve()?;
                crate::imds::serve_standalone(a.listen, settings).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Status(a) => status(a).await,
            Command::Trigger(a) => {
                for path in control::discover(a.control.as_deref()).await? {
                    let reply = control::call(
                        &path,
                        &Request::Trigger {
                            target: a.target.clone(),
                        },
                    )
                    .await?;
                    print_done(reply)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Target { action } => target_action(action).await,
        }
    }
}

async fn exec(a: ExecArgs) -> Result<ExitCode> {
    let settings = a.scenario.resolve()?;
    let program = a.command[0].clone();
    check_program(&program)?;
    let mount = cgroup2_mount()?;
    let session = Session::start(Arc::new(SystemClock))?;
    let cgroup = TransientCgroup::create(&mount, "spot-sim-exec")?;
    let netns = match a.netns {
        NetnsMode::New => NetNs::new_private()?,
        NetnsMode::Current => NetNs::current()?,
    };
    let enter_netns = (a.netns == NetnsMode::New).then(|| netns.as_raw_fd());
    let procs_fd = cgroup.procs_fd().as_raw_fd();
    let name = "exec".to_string();
    session.add_target(TargetSpec {
        name: name.clone(),
        cgroup: CgroupDir::open(&mount, cgroup.dir().path())?,
        netns: netns.try_clone()?,
        proc: PathBuf::from("/proc"),
        settings,
        port: a.port,
    })?;
    let control_path = a.control.unwrap_or_else(control::default_exec_socket);
    let _control = start_control(&control_path, &session, None).await?;
    let _metrics = match a.metrics {
        Some(addr) => Some(MetricsServer::start(addr, &session).await?),
        None => None,
    };

    let mut cmd = std::process::Command::new(&program);
    cmd.args(&a.command[1..]);
    // SAFETY: only async-signal-safe syscalls run between fork and exec: setns and write.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = enter_netns {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // "0" moves the writing process: the child joins the cgroup before it execs.
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
    let pid = child.id().unwrap_or(0);
    log::debug!("started {} as pid {pid}", program.to_string_lossy());
    let status = wait_forwarding_signals(&mut child, pid, &session).await?;
    session.shutdown();
    drop(session);
    drop(cgroup);
    Ok(exit_code_of(status))
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

async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
    pid: u32,
    session: &Arc<Session>,
) -> Result<std::process::ExitStatus> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    // With a terminal, Ctrl-C already reaches the command (same foreground process group):
    // relaying SIGINT too would deliver it twice.
    let relay_int = !std::io::stdin().is_terminal();
    loop {
        tokio::select! {
            status = child.wait() => return Ok(status?),
            _ = int.recv() => if relay_int { forward(pid, nix::sys::signal::Signal::SIGINT) },
            _ = term.recv() => forward(pid, nix::sys::signal::Signal::SIGTERM),
            _ = tick.tick() => session.tick(),
        }
    }
}

fn forward(pid: u32, sig: nix::sys::signal::Signal) {
    if pid != 0 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
    }
}

fn exit_code_of(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitCode::from(c as u8),
        // Like a shell: 128 + the signal that ended the command.
        (None, Some(sig)) => ExitCode::from(128u8.wrapping_add(sig as u8)),
        _ => ExitCode::FAILURE,
    }
}

async fn run(a: RunArgs) -> Result<ExitCode> {
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
    let mut specs = Vec::new();
    for arg in &a.cgroups {
        let (path, file) = split_target_arg(arg);
        let settings = settings_for(&a.scenario, file.as_deref())?;
        let cgroup = CgroupDir::open(&mount, Path::new(path))?;
        let netns = netns_of(&cgroup, &proc)?;
        specs.push(TargetSpec {
            name: format!("cgroup {}", relative_name(&mount, cgroup.path())),
            cgroup,
            netns,
            proc: proc.clone(),
            settings,
            port: a.port,
        });
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
        let settings = settings_for(&a.scenario, file.as_deref())?;
        let spec = pod_target(host, &sel, settings, a.port)?;
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
    let session = Session::start(Arc::new(SystemClock))?;
    for spec in specs {
        session.add_target(spec)?;
    }
    let add = AddContext {
        mount,
        proc,
        host_root: a.host_root.clone(),
        cgroup_root: a.cgroup_root.clone(),
        args: a.scenario.clone(),
        port: a.port,
    };
    let _control = start_control(&a.control, &session, Some(add)).await?;
    let _metrics = match a.metrics {
        Some(addr) => Some(MetricsServer::start(addr, &session).await?),
        None => None,
    };
    log::info!(
        "serving {} target(s); `spot-sim status` shows the timeline; Ctrl-C detaches",
        session.target_names().len()
    );
    wait_for_shutdown(&session, || {
        if let Some(host) = &host {
            for f in &mut followed {
                f.refollow(&session, host, &a.scenario, a.port);
            }
        }
    })
    .await?;
    // Detach first, then stop answering, then exit.
    session.shutdown();
    log::info!("detached; exiting");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_shutdown(session: &Arc<Session>, mut on_tick: impl FnMut()) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {
                session.tick();
                on_tick();
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

/// `PATH=FILE` → (PATH, Some(FILE)).
fn split_target_arg(arg: &str) -> (&str, Option<PathBuf>) {
    match arg.rsplit_once('=') {
        Some((p, f)) if !f.is_empty() => (p, Some(PathBuf::from(f))),
        _ => (arg, None),
    }
}

fn settings_for(args: &ScenarioArgs, file: Option<&Path>) -> Result<Settings> {
    let mut args = args.clone();
    if let Some(f) = file {
        args.scenario = Some(f.to_path_buf());
    }
    Ok(args.resolve()?)
}

fn relative_name(mount: &Path, path: &Path) -> String {
    path.strip_prefix(mount)
        .map(|p| format!("/{}", p.display()))
        .unwrap_or_else(|_| path.display().to_string())
}

/// A pod target that `--follow` re-resolves once its cgroup is gone.
struct Followed {
    name: String,
    cgroup: PathBuf,
    sel: PodSelector,
    file: Option<PathBuf>,
}

impl Followed {
    fn refollow(
        &mut self,
        session: &Arc<Session>,
        host: &HostView,
        args: &ScenarioArgs,
        port: u16,
    ) {
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
        let spec = settings_for(args, self.file.as_deref())
            .and_then(|settings| pod_target(host, &self.sel, settings, port));
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

/// A pod's target: its pod-level cgroup (so restarted containers stay covered) and the
/// network namespace its containers share.
fn pod_target(
    host: &HostView,
    sel: &PodSelector,
    settings: Settings,
    port: u16,
) -> Result<TargetSpec> {
    let pod = pods::resolve(host, sel)?;
    let path = pod.cgroup.clone().ok_or_else(|| {
        anyhow!(
            "pod {} has no cgroup on this node (is it still running?)",
            pod.full_name()
        )
    })?;
    let cgroup = CgroupDir::open(&host.cgroup2, &path)?;
    let netns = netns_of(&cgroup, &host.proc)?;
    Ok(TargetSpec {
        name: format!("pod {}", pod.full_name()),
        cgroup,
        netns,
        proc: host.proc.clone(),
        settings,
        port,
    })
}

/// The namespace a target's processes use: that of any process in it, else ours (an empty
/// cgroup gets the node's namespace; processes that join later are expected to share it).
fn netns_of(cgroup: &CgroupDir, proc: &Path) -> Result<NetNs> {
    let ours = NetNs::current()?;
    for pid in cgroup.pids() {
        if let Ok(ns) = NetNs::of_pid(proc, pid) {
            if !ns.same_as(&ours) {
                log::info!(
                    "{}: serving inside the network namespace of pid {pid} (net:[{}])",
                    cgroup.path().display(),
                    ns.inode()
                );
            }
            return Ok(ns);
        }
    }
    Ok(ours)
}

/// What `target add` needs to resolve new targets the way the command line did.
#[derive(Clone)]
struct AddContext {
    mount: PathBuf,
    proc: PathBuf,
    host_root: Option<PathBuf>,
    cgroup_root: Option<PathBuf>,
    args: ScenarioArgs,
    port: u16,
}

/// The running instance's answers to control requests.
struct SessionHandler {
    session: Arc<Session>,
    /// `None` for `exec`, which takes no new targets.
    add: Option<AddContext>,
    runtime: tokio::runtime::Handle,
}

impl Handler for SessionHandler {
    fn handle(&self, req: Request) -> Reply {
        match req {
            Request::Status => Reply::Status {
                pid: std::process::id(),
                targets: self.session.status(),
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
        let settings = settings_for(&ctx.args, scenario.as_deref())?;
        let spec = match (cgroup, pod, pod_uid) {
            (Some(path), None, None) => {
                let cgroup = CgroupDir::open(&ctx.mount, &path)?;
                let netns = netns_of(&cgroup, &ctx.proc)?;
                TargetSpec {
                    name: format!("cgroup {}", relative_name(&ctx.mount, cgroup.path())),
                    cgroup,
                    netns,
                    proc: ctx.proc.clone(),
                    settings,
                    port: ctx.port,
                }
            }
            (None, pod, uid) if pod.is_some() != uid.is_some() => {
                let host = HostView::detect(ctx.host_root.as_deref(), ctx.cgroup_root.as_deref())?;
                let sel = match (pod, uid) {
                    (Some(p), _) => p.parse::<PodSelector>()?,
                    (_, Some(u)) => PodSelector::uid(&u)?,
                    _ => unreachable!("one of the two is set"),
                };
                pod_target(&host, &sel, settings, ctx.port)?
            }
            _ => bail!("give exactly one of --cgroup PATH, --pod NS/NAME or --pod-uid UID"),
        };
        // The responder's listeners are registered with the runtime.
        let _guard = self.runtime.enter();
        Ok(self.session.add_target(spec)?)
    }
}

async fn start_control(
    path: &Path,
    session: &Arc<Session>,
    add: Option<AddContext>,
) -> Result<ControlServer> {
    let handler = Arc::new(SessionHandler {
        session: Arc::clone(session),
        add,
        runtime: tokio::runtime::Handle::current(),
    });
    Ok(ControlServer::start(path, handler).await?)
}

async fn status(a: StatusArgs) -> Result<ExitCode> {
    let mut all = Vec::new();
    for path in control::discover(a.control.as_deref()).await? {
        match control::call(&path, &Request::Status).await? {
            Reply::Status { pid, targets } => all.push((path, pid, targets)),
            Reply::Error { message } => bail!("{}: {message}", path.display()),
            Reply::Done { message } => println!("{message}"),
        }
    }
    if a.json {
        let v: Vec<_> = all
            .iter()
            .map(|(path, pid, targets)| {
                serde_json::json!({ "control": path, "pid": pid, "targets": targets })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (path, pid, targets) in all {
        println!("spot-sim pid {pid} (control {})", path.display());
        for t in targets {
            let gone = if t.cgroup_exists {
                ""
            } else {
                "  [cgroup GONE]"
            };
            println!("  {}{gone}", t.name);
            println!("    cgroup:    {} (id {})", t.cgroup.display(), t.cgroup_id);
            println!(
                "    responder: {} in net:[{}]",
                t.listen.join(", "),
                t.netns
            );
            for line in t.timeline_text.lines() {
                println!("    {line}");
            }
            let r = &t.responder;
            let n = |k: &str| r.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            let last = r
                .get("last_request_at")
                .and_then(|v| v.as_str())
                .unwrap_or("never");
            println!(
                "    traffic:   {} redirects, {} requests (IMDSv1 {}, IMDSv2 {}), {} tokens, last poll {last}",
                t.redirects,
                n("requests_total"),
                n("imds_v1_requests"),
                n("imds_v2_requests"),
                n("tokens_issued"),
            );
            for w in r
                .get("warnings")
                .and_then(|w| w.as_array())
                .into_iter()
                .flatten()
            {
                println!("    WARNING:   {}", w.as_str().unwrap_or_default());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn target_action(action: TargetAction) -> Result<ExitCode> {
    let (path, req) = match action {
        TargetAction::Add {
            cgroup,
            pod,
            pod_uid,
            scenario,
            control,
        } => (
            control,
            Request::TargetAdd {
                cgroup,
                pod,
                pod_uid,
                // The instance resolves the file from its own working directory.
                scenario: scenario.map(|f| std::fs::canonicalize(&f).unwrap_or(f)),
            },
        ),
        TargetAction::Remove { name, control } => (control, Request::TargetRemove { name }),
        TargetAction::List { control } => match control::call(&control, &Request::Status).await? {
            Reply::Status { targets, .. } => {
                for t in targets {
                    println!("{}\t{}\t{}", t.name, t.cgroup.display(), t.listen.join(","));
                }
                return Ok(ExitCode::SUCCESS);
            }
            other => {
                print_done(other)?;
                return Ok(ExitCode::SUCCESS);
            }
        },
    };
    print_done(control::call(&path, &req).await?)?;
    Ok(ExitCode::SUCCESS)
}

fn print_done(reply: Reply) -> Result<()> {
    match reply {
        Reply::Done { message } => {
            println!("{message}");
            Ok(())
        }
        Reply::Error { message } => Err(control::ControlError::Remote(message).into()),
        Reply::Status { .. } => Ok(()),
    }
}
