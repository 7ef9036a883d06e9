//! The game-day end of `exec` and `run`: the expectations checked before anything starts, and
//! at the end the report (after a last drain of the kernel's records), its summary on stderr,
//! the `--report` files and the exit status.

use std::{path::Path, process::ExitCode, sync::Arc, time::SystemTime};

use anyhow::Result;

use crate::{
    experiment::Experiment,
    report::{Expectations, VerdictArgs},
    scenario::Scenario,
    session::Session,
    stop::{StopArgs, StopPlan, StopWatch},
};

/// Exit status of `exec` and `run` when an `--expect-*` failed.
pub const VERDICT_FAILED: u8 = 3;
/// Exit status of `exec` and `run` when the game day was stopped early (a `--stop-if`
/// condition, `--max-duration`): what it shows ends at the stop, so it passes nothing.
pub const STOPPED: u8 = 4;

/// Refuses an expectation that cannot be checked or a report that cannot be written, then
/// tells the session what to judge reports against (nothing given: no verdict).
pub(super) fn prepare(session: &Session, args: &VerdictArgs, scenario: &Scenario) -> Result<()> {
    let expect = args.check(scenario, session.sees_processes())?;
    session.set_expectations(expect);
    Ok(())
}

/// As [`prepare`], for a game day's node: with no `--expect-*` its verdict is whether each
/// notice was read before the interruption (a node's result exists to say that).
pub(super) fn prepare_node(
    session: &Session,
    args: &VerdictArgs,
    scenario: &Scenario,
) -> Result<()> {
    let mut expect = args.check(scenario, session.sees_processes())?;
    if !expect.any() {
        expect = Expectations {
            read_in_time: true,
            ..expect
        };
    }
    session.set_expectations(expect);
    Ok(())
}

/// Reports and decides the exit status: with any `--expect-*`, 0 on pass and 3 on fail;
/// otherwise `otherwise` (the command's own status for `exec`), and no verdict is given.
pub(super) fn finish(session: &Session, args: &VerdictArgs, otherwise: ExitCode) -> ExitCode {
    let expect = session.expectations();
    let report = session.report(&expect);
    let summary = report.summary();
    if !summary.is_empty() {
        eprint!("spot-sim: game-day summary\n{summary}");
    }
    let failed_write = !write_reports(&report, args);
    // A stopped game day passes nothing, expected or not: what it shows ends at the stop.
    if report.stopped.is_some() {
        return ExitCode::from(STOPPED);
    }
    match report.pass {
        Some(true) => ExitCode::SUCCESS,
        Some(false) => ExitCode::from(VERDICT_FAILED),
        None if failed_write => ExitCode::FAILURE,
        None => otherwise,
    }
}

/// Starts checking the stop conditions (if any): the first to fire stops the session's game
/// day. The process goes on `until` it would have ended anyway (see README, "Game days that
/// stop themselves"): an exit could bring the redirect back under a restarting supervisor.
pub(super) fn watch_stops(
    plan: StopPlan,
    session: &Arc<Session>,
    until: &'static str,
) -> Option<StopWatch> {
    if plan.is_empty() {
        return None;
    }
    let weak = Arc::downgrade(session);
    Some(plan.watch(move |halt| {
        if let Some(s) = weak.upgrade() {
            s.halt(halt);
            log::info!(
                "the game day stays stopped; spot-sim goes on answering status, report and metrics until {until}"
            );
        }
    }))
}

/// A game-day node's stops: the experiment file's kill switch beside `--stop-if`, with
/// `--max-duration` counted from the node's start-at `t0`. Looked at once before anything is
/// attached: one that cannot work is refused; one that holds already (the kill switch set, the
/// deadline past) stops the node at once, and it idles stopped rather than exit and be
/// restarted by its DaemonSet.
pub(super) async fn experiment_stops(
    args: &StopArgs,
    t0: SystemTime,
    file: &Path,
    session: &Arc<Session>,
) -> Result<Option<StopWatch>> {
    let plan = StopPlan::new(args, t0).kill_switch(Experiment::kill_switch(file));
    Ok(match plan.first_check().await? {
        Some(halt) => {
            session.halt(halt);
            None
        }
        None => watch_stops(plan, session, "SIGINT/SIGTERM"),
    })
}

/// Writes every `--report` file of `args`; whether all were written (each failure is said in
/// one line). `run --experiment` writes its reports through here too.
pub(super) fn write_reports(report: &crate::report::Report, args: &VerdictArgs) -> bool {
    let mut ok = true;
    for path in &args.report {
        match report.write(path, args.report_mode()) {
            Ok(()) => log::info!("report written to {}", path.display()),
            Err(e) => {
                eprintln!("spot-sim: {e}");
                ok = false;
            }
        }
    }
    ok
}
