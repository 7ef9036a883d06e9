//! The command line: parses arguments (`args.rs`) and hands each command to its file, which
//! wires scenario + targets into a session. `anyhow` lives here only; every module below
//! speaks its own error type.
//!
//! [`exec`] runs one command as a target, [`run`] targets existing cgroups and pods,
//! [`serve`] serves the fake IMDS alone, [`control`] asks a running instance (`status`,
//! `trigger`, `target`, `report`; the instance's answers are [`answers`]), [`experiment`] runs
//! a game day's node. What they share: [`resolve`], [`gameday`], [`shutdown`].

mod answers;
mod args;
mod control;
mod exec;
mod experiment;
mod gameday;
mod resolve;
mod run;
mod serve;
mod shutdown;

use std::{process::ExitCode, time::Duration};

use anyhow::Result;
use clap::Parser;

use crate::control::{self as ctl, Request};
use args::{Command, ExperimentAction};

/// Rehearse EC2 Spot interruptions for real: processes in the chosen cgroups (a pod, a systemd
/// unit, a command) see a simulated interruption on the instance metadata service, while
/// everything else on the machine keeps the real one.
#[derive(Debug, Parser)]
#[command(name = "spot-sim", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
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
