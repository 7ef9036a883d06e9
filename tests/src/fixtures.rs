//! Fixtures several test files share: a target (a cgroup with a process idling in a namespace
//! of its own), spot-sim run on targets, and reading what a command printed.

use std::{
    borrow::BorrowMut,
    path::PathBuf,
    process::{Command, Output},
};

use crate::{curl_in, sleeper_in, spot_sim_bin, start_run_with, NetNs, Proc, TestCgroup};

/// The IMDS address as clients name it.
pub const IMDS: &str = "http://169.254.169.254";

/// A cgroup with a process idling in a private network namespace of its own.
pub struct Target {
    pub path: PathBuf,
    pub ns: NetNs,
    pub _sleeper: Option<Proc>,
}

/// A child `name` of `parent` with a sleeper in a new private namespace.
pub fn target(parent: &TestCgroup, name: &str) -> Target {
    let path = parent.child(name).unwrap();
    let ns = NetNs::new_private().unwrap();
    let sleeper = sleeper_in(&path, &ns);
    Target {
        path,
        ns,
        _sleeper: Some(sleeper),
    }
}

/// `spot-sim run` on `targets`, plus `extra` arguments, once it serves them all.
pub fn run_on(targets: &[&Target], extra: &[&str]) -> Proc {
    let mut args: Vec<String> = targets
        .iter()
        .flat_map(|t| ["--cgroup".to_string(), t.path.display().to_string()])
        .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    start_run_with(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        targets.len(),
        None,
    )
}

/// curl's HTTP status for `path` from inside a target ("000" when it got none).
pub fn http_code(t: &Target, path: &str) -> String {
    let url = format!("{IMDS}{path}");
    let out = curl_in(
        &t.path,
        &t.ns,
        &["-o", "/dev/null", "-w", "%{http_code}", &url],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` to its end and panics with its stderr unless it succeeded.
pub fn output_ok(mut cmd: impl BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{:?} failed ({}): {}",
        cmd.get_program(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A successful command's stdout as JSON; panics with its stderr or what it printed.
pub fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// [`output_ok`] read as JSON.
pub fn json_ok(cmd: impl BorrowMut<Command>) -> serde_json::Value {
    json_of(&output_ok(cmd))
}

/// `spot-sim status --json` of the instance `p` started with its own control socket: its one
/// entry.
pub fn status_json(p: &Proc) -> serde_json::Value {
    json_ok(
        Command::new(spot_sim_bin())
            .args(["status", "--json", "--control"])
            .arg(p.control.as_deref().unwrap()),
    )[0]
    .clone()
}

/// `python3 -c SCRIPT ARGS` inside a target; what it printed, as JSON.
pub fn python_in(t: &Target, script: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["-c", script];
    all.extend_from_slice(args);
    json_of(
        &crate::command_in(&t.path, &t.ns, "python3", &all)
            .output()
            .unwrap(),
    )
}
