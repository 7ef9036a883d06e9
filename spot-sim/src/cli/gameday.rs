//! The game-day end of `exec` and `run`: the expectations checked before anything starts, and
//! at the end the report (after a last drain of the kernel's records), its summary on stderr,
//! the `--report` files and the exit status.

use std::process::ExitCode;

use anyhow::Result;

use crate::{report::VerdictArgs, scenario::Scenario, session::Session};

/// Exit status of `exec` and `run` when an `--expect-*` failed.
pub const VERDICT_FAILED: u8 = 3;

/// Refuses an expectation that cannot be checked or a report that cannot be written, then
/// tells the session what to judge live reports against.
pub(super) fn prepare(session: &Session, args: &VerdictArgs, scenario: &Scenario) -> Result<()> {
    args.check(scenario, session.sees_processes())?;
    session.set_expectations(args.expectations());
    Ok(())
}

/// Reports and decides the exit status: with any `--expect-*`, 0 on pass and 3 on fail;
/// otherwise `otherwise` (the command's own status for `exec`).
pub(super) fn finish(session: &Session, args: &VerdictArgs, otherwise: ExitCode) -> ExitCode {
    let expect = args.expectations();
    let report = session.report(&expect);
    let summary = report.summary();
    if !summary.is_empty() {
        eprint!("spot-sim: game-day summary\n{summary}");
    }
    let failed_write = !write_reports(&report, args);
    if expect.any() {
        if report.pass {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(VERDICT_FAILED)
        }
    } else if failed_write {
        ExitCode::FAILURE
    } else {
        otherwise
    }
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
