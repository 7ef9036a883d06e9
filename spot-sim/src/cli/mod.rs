//! The command line: parses arguments and wires scenario + targets into a session.
//! `anyhow` lives here only; every module below speaks its own error type.
//!
//! [`exec`] runs one command as a target, [`run`] targets existing cgroups and pods, and
//! [`control`] holds both ends of the control socket (answering in a running instance, asking
//! from `status`, `trigger` and `target`).

mod control;
mod exec;
mod experiment;
mod run;

use std::{ffi::OsString, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    control::{self as ctl, Request},
    scenario::ScenarioArgs,
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
                eprintln!("spot-sim: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

impl Command {
    async fn run(self) -> Result<ExitCode> {
        match self {
            Command::Exec(a) => exec::exec(a).await,
            Command::Run(a) if a.experiment.is_some() => experiment::run(a).await,
            Command::Run(a) => run::run(a).await,
            Command::Serve(a) => {
                let settings = a.scenario.resolve()?;
                crate::imds::serve_standalone(a.listen, settings).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Status(a) => control::status(a).await,
            Command::Trigger(a) => {
                for path in ctl::discover(a.control.as_deref()).await? {
                    let reply = ctl::call(
                        &path,
                        &Request::Trigger {
                            target: a.target.clone(),
                        },
                    )
                    .await?;
                    control::print_done(reply)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Target { action } => control::target_action(action).await,
            Command::Experiment {
                action: ExperimentAction::Plan(a),
            } => experiment::plan(a),
        }
    }
}
