//! The command line's words: every subcommand and its arguments, as clap reads them. The
//! commands (`exec.rs`, `run.rs`, ...) take these; none of them takes another command.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{ArgGroup, Args, Subcommand};

use super::resolve::TargetArg;
use crate::{
    control as ctl,
    report::VerdictArgs,
    settings::ScenarioArgs,
    stop::StopArgs,
    targets::{ExecNetns, TargetKind},
};

#[derive(Debug, Subcommand)]
pub(super) enum Command {
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
pub(super) enum ExperimentAction {
    /// Print, for each node, whether the experiment selects it (and, with stagger, when it
    /// starts), as each node's `spot-sim run --experiment` will decide.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub(super) struct ExecArgs {
    /// Network namespace for the command.
    #[arg(long, value_enum, default_value = "current")]
    pub(super) netns: ExecNetns,
    /// Responder port on loopback (in the command's namespace); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub(super) port: u16,
    /// Control socket for `spot-sim status`/`trigger` [default: /run/spot-sim/exec-PID.sock].
    #[arg(long)]
    pub(super) control: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (in spot-sim's own network namespace).
    #[arg(long, value_name = "ADDR")]
    pub(super) metrics: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub(super) scenario: ScenarioArgs,
    #[command(flatten)]
    pub(super) verdict: VerdictArgs,
    #[command(flatten)]
    pub(super) stop: StopArgs,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub(super) command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// A cgroup to target: absolute, or relative to the cgroup v2 mount. Repeatable.
    /// `PATH=SCENARIO.toml` gives this target its own scenario file.
    #[arg(long = "cgroup", value_name = "PATH[=FILE]", value_parser = TargetArg::cgroup)]
    pub(super) cgroups: Vec<TargetArg>,
    /// A pod on this node to target, as NAMESPACE/NAME. Repeatable; `NS/NAME=SCENARIO.toml`
    /// gives it its own scenario file. Every container of the pod is covered, including
    /// containers restarted later.
    #[arg(long = "pod", value_name = "NS/NAME[=FILE]", value_parser = TargetArg::pod)]
    pub(super) pods: Vec<TargetArg>,
    /// A pod to target by its uid. Repeatable; `UID=SCENARIO.toml` as for --pod.
    #[arg(long = "pod-uid", value_name = "UID[=FILE]", value_parser = TargetArg::pod_uid)]
    pub(super) pod_uids: Vec<TargetArg>,
    /// Keep following --pod/--pod-uid targets: when a pod is deleted and one is recreated under
    /// the same name, target the new one (with the same scenario, started afresh).
    #[arg(long)]
    pub(super) follow: bool,
    /// Allow a target that holds spot-sim itself or PID 1 (a parent slice of everything, or
    /// spot-sim's own pod). The root of the cgroup mount is refused even so.
    #[arg(long)]
    pub(super) allow_own_cgroup: bool,
    /// List the pods on this node (namespace, name, uid, QoS class, cgroup) and exit.
    #[arg(long)]
    pub(super) list_pods: bool,
    /// Where the node's root filesystem is [default: detected: / on the node, /host in a
    /// `kubectl debug node` pod].
    #[arg(long, value_name = "DIR")]
    pub(super) host_root: Option<PathBuf>,
    /// Search for the kubepods cgroup hierarchy only below this cgroup directory [default: the
    /// node's cgroup v2 mount].
    #[arg(long, value_name = "DIR")]
    pub(super) cgroup_root: Option<PathBuf>,
    /// Responder port on loopback in each target's namespace; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub(super) port: u16,
    /// Control socket for `status`, `trigger` and `target`.
    #[arg(long, default_value_os_t = ctl::default_run_socket())]
    pub(super) control: PathBuf,
    /// Serve Prometheus metrics on this address (in spot-sim's own network namespace).
    #[arg(long, value_name = "ADDR")]
    pub(super) metrics: Option<std::net::SocketAddr>,
    /// Run this node's part of a game day: the experiment file (a ConfigMap on every node)
    /// says which nodes take part, when they start, which pods they target and what those see.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["cgroups", "pods", "pod_uids", "follow", "list_pods"], conflicts_with_all = ScenarioArgs::GROUPS)]
    pub(super) experiment: Option<PathBuf>,
    /// This node's name, which decides whether the experiment selects it (a DaemonSet sets
    /// NODE_NAME from spec.nodeName through the downward API).
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub(super) node_name: Option<String>,
    #[command(flatten)]
    pub(super) scenario: ScenarioArgs,
    #[command(flatten)]
    pub(super) verdict: VerdictArgs,
    #[command(flatten)]
    pub(super) stop: StopArgs,
}

impl RunArgs {
    /// Every target given, cgroups first, each with its own scenario file if any.
    pub(super) fn targets(&self) -> impl Iterator<Item = TargetArg> + '_ {
        self.cgroups
            .iter()
            .chain(&self.pods)
            .chain(&self.pod_uids)
            .cloned()
    }
}

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1338")]
    pub(super) listen: std::net::SocketAddr,
    /// Control socket for `status` and `trigger` [default: /run/spot-sim/serve-PID.sock when
    /// writable, else $XDG_RUNTIME_DIR/spot-sim/serve-PID.sock].
    #[arg(long)]
    pub(super) control: Option<PathBuf>,
    #[command(flatten)]
    pub(super) scenario: ScenarioArgs,
}

#[derive(Debug, Args)]
pub(super) struct StatusArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    pub(super) json: bool,
    /// Control socket of the instance to ask [default: every running one].
    #[arg(long)]
    pub(super) control: Option<PathBuf>,
    #[command(flatten)]
    pub(super) wait: WaitArgs,
}

#[derive(Debug, Args)]
pub(super) struct ReportArgs {
    /// Print the report as JSON (the `--report FILE.json` schema).
    #[arg(long)]
    pub(super) json: bool,
    /// Control socket of the instance to ask [default: every running one].
    #[arg(long)]
    pub(super) control: Option<PathBuf>,
    /// How long to wait for each instance's report (bounded, but built from every target's
    /// journal), like "10s".
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub(super) timeout: Duration,
}

#[derive(Debug, Args)]
pub(super) struct TriggerArgs {
    /// Only this target [default: every target].
    pub(super) target: Option<String>,
    /// Control socket of the instance [default: every running one].
    #[arg(long)]
    pub(super) control: Option<PathBuf>,
    #[command(flatten)]
    pub(super) wait: WaitArgs,
}

/// How long a control client waits for an instance.
#[derive(Debug, Args, Clone, Copy)]
pub(super) struct WaitArgs {
    /// How long to wait for each instance's answer (a stopped or hung one is reported as such
    /// after this), like "2s" or "500ms".
    #[arg(long, default_value = "2s", value_parser = parse_timeout, global = true)]
    pub(super) timeout: Duration,
}

pub(super) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration `{s}` ({e}); write it like \"2s\" or \"500ms\""))?;
    match d {
        d if d.is_zero() => Err("a timeout of 0 would never wait: give one like \"2s\"".into()),
        d => Ok(d),
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum TargetAction {
    /// Start redirecting one more cgroup.
    Add(AddArgs),
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

/// `target add`: exactly one target.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["cgroup", "pod", "pod_uid"])))]
pub(super) struct AddArgs {
    /// A cgroup, absolute or relative to the cgroup v2 mount.
    #[arg(long, value_parser = target_kind(TargetArg::cgroup))]
    pub(super) cgroup: Option<TargetKind>,
    /// A pod on this node, as NAMESPACE/NAME.
    #[arg(long, value_parser = target_kind(TargetArg::pod))]
    pub(super) pod: Option<TargetKind>,
    /// A pod on this node, by uid.
    #[arg(long, value_parser = target_kind(TargetArg::pod_uid))]
    pub(super) pod_uid: Option<TargetKind>,
    /// Its own scenario file [default: the instance's scenario].
    #[arg(long)]
    pub(super) scenario: Option<PathBuf>,
    #[arg(long, default_value_os_t = ctl::default_run_socket())]
    pub(super) control: PathBuf,
}

/// A target named alone (its scenario file given apart, as `--scenario`).
pub(super) fn target_kind(
    parse: fn(&str) -> Result<TargetArg, String>,
) -> impl Fn(&str) -> Result<TargetKind, String> + Clone {
    move |s| parse(s).map(|t| t.kind)
}

#[derive(Debug, Args)]
pub(super) struct PlanArgs {
    /// The experiment file.
    pub(super) file: PathBuf,
    /// The cluster's node names, comma-separated or repeated; `-` reads them from stdin, one a
    /// line (`kubectl get nodes -o name | spot-sim experiment plan FILE --nodes -`; the `node/`
    /// prefix is dropped).
    #[arg(long, value_delimiter = ',', required = true, value_name = "NAME,...")]
    pub(super) nodes: Vec<String>,
}
