//! The commands that ask a running instance over its control socket: `status`, `trigger`,
//! `target` and `report` (the instance's answers are in `answers.rs`).

use std::{process::ExitCode, time::Duration};

use anyhow::{anyhow, bail, Result};

use super::args::{ReportArgs, StatusArgs, TargetAction};
use crate::{
    control::{self as ctl, Reply, Request},
    escape::{untrusted, untrusted_path},
    session::TargetStatus,
};

pub(super) async fn status(a: StatusArgs) -> Result<ExitCode> {
    let mut all = Vec::new();
    // Instances that did not answer (stopped, hung) or answered an error: reported, and the
    // others shown all the same.
    let mut failed = Vec::new();
    let paths = ctl::discover(a.control.as_deref()).await?;
    let timeout = a.wait.timeout;
    let asks = paths.into_iter().map(|path| async move {
        let reply = ctl::call_within(&path, &Request::Status, timeout).await;
        (path, reply)
    });
    // Asked at once: n stuck instances cost one timeout, not n.
    for (path, reply) in futures_join_all(asks).await {
        match reply {
            Ok(Reply::Status {
                pid,
                targets,
                stopped,
            }) => all.push((path, pid, targets, stopped)),
            Ok(Reply::Error { message }) => failed.push((path, message)),
            Ok(Reply::Done { message }) => println!("{message}"),
            Ok(Reply::Report { .. }) => {}
            Err(e) => failed.push((path, e.to_string())),
        }
    }
    let code = if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    // Each on stderr in one line (a script reading stdout still gets the others).
    for (path, error) in &failed {
        if error.contains(&path.display().to_string()) {
            eprintln!("spot-sim: {error}");
        } else {
            eprintln!("spot-sim: {}: {error}", path.display());
        }
    }
    if a.json {
        let v: Vec<_> = all
            .iter()
            .map(|(path, pid, targets, stopped)| {
                serde_json::json!({ "control": path, "pid": pid, "targets": targets, "stopped": stopped })
            })
            .chain(failed.iter().map(|(path, error)| {
                serde_json::json!({ "control": path, "error": error })
            }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    for (path, _) in &failed {
        println!("spot-sim at {}: NOT ANSWERING (see above)", path.display());
    }
    for (path, pid, targets, stopped) in all {
        println!("spot-sim pid {pid} (control {})", path.display());
        if let Some(s) = stopped {
            let (at, why) = (untrusted(&s.at), untrusted(&s.condition));
            println!(
                "  STOPPED at {at} ({}): {why}; every target was detached",
                s.reason.as_str()
            );
        }
        for t in &targets {
            print_target(t);
        }
    }
    Ok(code)
}

/// One target as `status` shows it.
fn print_target(t: &TargetStatus) {
    let gone = if t.cgroup_exists {
        ""
    } else {
        "  [cgroup GONE]"
    };
    // What an instance reports about its targets is escaped again here: this client
    // may talk to an older spot-sim that did not.
    println!("  {}{gone}", untrusted(&t.name));
    // A `serve` has no cgroup: whoever reaches its address is served.
    if !t.cgroup.as_os_str().is_empty() {
        println!(
            "    cgroup:    {} (id {})",
            untrusted_path(&t.cgroup),
            t.cgroup_id
        );
    }
    println!(
        "    responder: {} in net:[{}]",
        t.listen.join(", "),
        t.netns
    );
    for line in t.timeline_text.lines() {
        println!("    {}", untrusted(line));
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
    if let Some(options) = r.get("options").and_then(|o| o.as_object()) {
        let list: Vec<String> = options
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        println!("    options:   {}", list.join(" "));
    }
    if n("token_puts_unanswered") > 0 {
        println!(
            "    unanswered: {} token PUTs (hop limit 1, client in another network namespace)",
            n("token_puts_unanswered")
        );
    }
    for w in r
        .get("warnings")
        .and_then(|w| w.as_array())
        .into_iter()
        .flatten()
    {
        println!(
            "    WARNING:   {}",
            untrusted(w.as_str().unwrap_or_default())
        );
    }
}

/// Runs every future to its end, concurrently.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for (i, f) in futures.enumerate() {
        set.spawn(async move { (i, f.await) });
    }
    let mut out = Vec::new();
    while let Some(Ok(r)) = set.join_next().await {
        out.push(r);
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

pub(super) async fn target_action(action: TargetAction, timeout: Duration) -> Result<ExitCode> {
    let (path, req) = match action {
        TargetAction::Add(add) => (
            add.control,
            Request::TargetAdd {
                // One of the three: clap's group requires exactly one.
                target: add
                    .cgroup
                    .or(add.pod)
                    .or(add.pod_uid)
                    .ok_or_else(|| anyhow!("give one of --cgroup, --pod or --pod-uid"))?,
                // The instance resolves the file from its own working directory.
                scenario: add.scenario.map(|f| std::fs::canonicalize(&f).unwrap_or(f)),
            },
        ),
        TargetAction::Remove { name, control } => (control, Request::TargetRemove { name }),
        TargetAction::List { control } => {
            match ctl::call_within(&control, &Request::Status, timeout).await? {
                Reply::Status { targets, .. } => {
                    for t in targets {
                        println!(
                            "{}\t{}\t{}",
                            untrusted(&t.name),
                            untrusted_path(&t.cgroup),
                            t.listen.join(",")
                        );
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                other => {
                    print_done(other)?;
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    };
    print_done(ctl::call_within(&path, &req, timeout).await?)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn print_done(reply: Reply) -> Result<()> {
    match reply {
        Reply::Done { message } => {
            println!("{message}");
            Ok(())
        }
        Reply::Error { message } => Err(ctl::ControlError::Remote(message).into()),
        Reply::Status { .. } | Reply::Report { .. } => Ok(()),
    }
}

/// `spot-sim report`: the live game-day report of running instances.
pub(super) async fn report(a: ReportArgs) -> Result<ExitCode> {
    let mut all = Vec::new();
    for path in ctl::discover(a.control.as_deref()).await? {
        match ctl::call_within(&path, &Request::Report, a.timeout).await? {
            Reply::Report { pid, report } => all.push((path, pid, report)),
            Reply::Error { message } => bail!("{}: {message}", path.display()),
            _ => bail!(
                "{}: this spot-sim does not give reports (an older version?)",
                path.display()
            ),
        }
    }
    if a.json {
        // One instance: its report as is, the `--report FILE.json` schema.
        if let [(_, _, report)] = all.as_slice() {
            println!("{}", report.to_json());
        } else {
            let v: Vec<_> = all
                .iter()
                .map(|(path, pid, report)| {
                    serde_json::json!({ "control": path, "pid": pid, "report": report })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    for (path, pid, report) in all {
        println!("spot-sim pid {pid} (control {})", path.display());
        for line in report.summary().lines() {
            println!("  {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
