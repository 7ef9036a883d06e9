//! The command line: parses arguments and wires scenario + targets into a session.
//! `anyhow` lives here only; every module below speaks its own error type.
//!
//! [`exec`] runs one command as a target, [`run`] targets existing cgroups and pods, and
//! [`control`] holds both ends of the control socket (answering in a running instance, asking
//! from `status`, `trigger` and `target`).

mod control;
mod exec;
mod experiment;
mod gameday;
mod handler;
mod resolve;
mod run;
mod serve;

use std::{ffi::OsString, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    control::{self as ctl, Request},
    report::VerdictArgs,
    settings::ScenarioArgs,
    stop::StopArgs,
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
    /// Serve the fake IMDS alone on an address (no eBPF, no root needed); `status` and
    /// `trigger` reach it through its control socket.
    Serve(ServeArgs),
    /// Show the timeline and counters of running spot-sim instances.
    Status(StatusArgs),
    /// Print the game-day report of a running instance: per target, when the handler read
    /// each event, what it did next, and the verdict.
    Report(ReportArgs),
    /// Start the timeline of a `--manual` scenario now.
    Trigger(TriggerArgs),
    /// Add, remove or list the targets of a running `spot-sim run`.
    Target {
        #[command(subcommand)]
        action: TargetAction,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Look at a game-day experiment file before running it (`run --experiment`).
    Experiment {
        #[command(subcommand)]
        action: ExperimentAction,
    },
}

#[derive(Debug, Subcommand)]
enum ExperimentAction {
    /// Print, for each node, whether the experiment selects it (and, with stagger, when it
    /// starts), as each node's `spot-sim run --experiment` will decide.
    Plan(experiment::PlanArgs),
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
    #[command(flatten)]
    verdict: VerdictArgs,
    #[command(flatten)]
    stop: StopArgs,
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
    /// Allow a target that holds spot-sim itself or PID 1 (a parent slice of everything, or
    /// spot-sim's own pod). The root of the cgroup mount is refused even so.
    #[arg(long)]
    allow_own_cgroup: bool,
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
    #[arg(long, default_value_os_t = ctl::default_run_socket())]
    control: PathBuf,
    /// Serve Prometheus metrics on this address (in spot-sim's own network namespace).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Run this node's part of a game day: the experiment file (a ConfigMap on every node)
    /// says which nodes take part, when they start, which pods they target and what those see.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["cgroups", "pods", "pod_uids", "follow", "list_pods", "ScenarioArgs"])]
    experiment: Option<PathBuf>,
    /// This node's name, which decides whether the experiment selects it (a DaemonSet sets
    /// NODE_NAME from spec.nodeName through the downward API).
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    node_name: Option<String>,
    #[command(flatten)]
    scenario: ScenarioArgs,
    #[command(flatten)]
    verdict: VerdictArgs,
    #[command(flatten)]
    stop: StopArgs,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1338")]
    listen: std::net::SocketAddr,
    /// Control socket for `status` and `trigger` [default: /run/spot-sim/serve-PID.sock when
    /// writable, else $XDG_RUNTIME_DIR/spot-sim/serve-PID.sock].
    #[arg(long)]
    control: Option<PathBuf>,
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
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Print the report as JSON (the `--report FILE.json` schema).
    #[arg(long)]
    json: bool,
    /// Control socket of the instance to ask [default: every running one].
    #[arg(long)]
    control: Option<PathBuf>,
    /// How long to wait for each instance's report (bounded, but built from every target's
    /// journal), like "10s".
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct TriggerArgs {
    /// Only this target [default: every target].
    target: Option<String>,
    /// Control socket of the instance [default: every running one].
    #[arg(long)]
    control: Option<PathBuf>,
    #[command(flatten)]
    wait: WaitArgs,
}

/// How long a control client waits for an instance.
#[derive(Debug, Args, Clone, Copy)]
struct WaitArgs {
    /// How long to wait for each instance's answer (a stopped or hung one is reported as such
    /// after this), like "2s" or "500ms".
    #[arg(long, default_value = "2s", value_parser = parse_timeout, global = true)]
    timeout: Duration,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration `{s}` ({e}); write it like \"2s\" or \"500ms\""))?;
    match d {
        d if d.is_zero() => Err("a timeout of 0 would never wait: give one like \"2s\"".into()),
        d => Ok(d),
    }
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
        #[arg(long, default_value_os_t = ctl::default_run_socket())]
        control: PathBuf,
    },
    /// Stop redirecting a target (by the name `target list` shows).
    Remove {
        name: String,
        #[arg(long, default_value_os_t = ctl::default_run_socket())]
        control: PathBuf,
    },
    /// List the targets.
    List {
        #[arg(long, default_value_os_t = ctl::default_run_socket())]
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
                eprintln!("spot-sim: {}", one_line(&e));
                ExitCode::FAILURE
            }
        }
    }
}

/// The error and its causes on one line, each said once: our error types already write their
/// OS error into the message, and `{:#}` would repeat it ("…: Permission denied (os error
/// 13): Permission denied (os error 13)").
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    let out_of_fds = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|n| n == libc::EMFILE || n == libc::ENFILE)
    }) || out.contains("(os error 24)");
    if out_of_fds {
        let limit = crate::fdbudget::limit().map_or_else(String::new, |l| format!(" of {l}"));
        out.push_str(&format!(
            " (out of file descriptors: the limit{limit} is too low for this many targets, each needs about 8; raise the hard limit with `ulimit -Hn`, or LimitNOFILE= in a unit)"
        ));
    }
    out
}

impl Command {
    async fn run(self) -> Result<ExitCode> {
        if matches!(self, Command::Exec(_) | Command::Run(_)) {
            crate::fdbudget::init();
        }
        match self {
            Command::Exec(a) => exec::exec(a).await,
            Command::Run(a) if a.experiment.is_some() => experiment::run(a).await,
            Command::Run(a) => run::run(a).await,
            Command::Serve(a) => serve::serve(a).await,
            Command::Status(a) => control::status(a).await,
            Command::Report(a) => control::report(a).await,
            Command::Trigger(a) => {
                let mut failed = None;
                for path in ctl::discover(a.control.as_deref()).await? {
                    let req = Request::Trigger {
                        target: a.target.clone(),
                    };
                    // One stuck instance must not keep the others from being triggered.
                    let done = ctl::call_within(&path, &req, a.wait.timeout)
                        .await
                        .map_err(anyhow::Error::from)
                        .and_then(control::print_done);
                    if let Err(e) = done {
                        eprintln!("spot-sim: {}", one_line(&e));
                        failed = Some(ExitCode::FAILURE);
                    }
                }
                Ok(failed.unwrap_or(ExitCode::SUCCESS))
            }
            Command::Target { action, wait } => control::target_action(action, wait.timeout).await,
            Command::Experiment {
                action: ExperimentAction::Plan(a),
            } => experiment::plan(a),
        }
    }
}
