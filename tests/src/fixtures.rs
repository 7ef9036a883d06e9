//! Fixtures several test files share: a target (a cgroup with a process idling in a namespace
//! of its own), spot-sim run on targets, and reading what a command printed.

use std::{
    borrow::BorrowMut,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
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

/// A new test cgroup (`tag`) with a target (see [`target`]) for each of `names`.
pub fn targets<const N: usize>(tag: &str, names: [&str; N]) -> (TestCgroup, [Target; N]) {
    let cg = TestCgroup::new(tag).unwrap();
    let ts = names.map(|n| target(&cg, n));
    (cg, ts)
}

/// A new test cgroup (`tag`), its child `child` (created), and a new private namespace: where a
/// test places spot-sim, a stand-in or a client of its own making.
pub fn cgroup_child_and_ns(tag: &str, child: &str) -> (TestCgroup, PathBuf, NetNs) {
    let cg = TestCgroup::new(tag).unwrap();
    let path = cg.child(child).unwrap();
    (cg, path, NetNs::new_private().unwrap())
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
    checked(&format!("{:?}", cmd.get_program()), out)
}

/// `out`, once it is sure `what` succeeded; else a panic with what it printed.
fn checked(what: &str, out: Output) -> Output {
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs `cmd` (spot-sim, or something under it) with every request logged (RUST_LOG=debug);
/// panics with the log, after `what`, unless it succeeded. Its stdout and its log.
pub fn debug_run(cmd: &mut Command, what: &str) -> (String, String) {
    let out = cmd.env("RUST_LOG", "debug").output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what}:\n{log}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), log)
}

/// A successful command's stdout as JSON; panics with its stderr or what it printed.
pub fn json_of(out: &Output) -> serde_json::Value {
    if !out.status.success() {
        panic!("client failed: {}", String::from_utf8_lossy(&out.stderr));
    }
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
    python_json(&t.path, &t.ns, script, args)
}

/// `python3 -c SCRIPT ARGS` in `cgroup` inside `ns`; what it printed, as JSON.
pub fn python_json(cgroup: &Path, ns: &NetNs, script: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["-c", script];
    all.extend_from_slice(args);
    json_ok(crate::command_in(cgroup, ns, "python3", &all))
}

/// A port free on loopback right now (for a listener spot-sim opens next).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A stand-in "real IMDS" for passthrough: an HTTP server on 169.254.169.254:80, an alias of
/// `lo` inside the private namespace `ns` (so nothing outside the namespace can be reached), in
/// its own child `standin` of `cg`. `setup` runs first (sys.argv holds `args`); `methods` are
/// the handler's `do_PUT` / `do_GET`, which answer with `self.reply(code, body)`.
pub fn standin_imds(
    cg: &TestCgroup,
    ns: &NetNs,
    setup: &str,
    methods: &str,
    args: &[&str],
) -> Proc {
    let script = format!(
        "import http.server, sys\n{setup}\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def reply(self, code, body):\n\
         \x20       b = body.encode()\n\
         \x20       self.send_response(code)\n\
         \x20       self.send_header('Content-Length', str(len(b)))\n\
         \x20       self.end_headers()\n\
         \x20       self.wfile.write(b)\n\
         \x20   def log_message(self, *a):\n\
         \x20       pass\n\
         {methods}\n\
         http.server.HTTPServer(('169.254.169.254', 80), H).serve_forever()\n"
    );
    let place = cg.child("standin").unwrap();
    let alias = ["addr", "add", "169.254.169.254/32", "dev", "lo"];
    output_ok(crate::command_in(&place, ns, "ip", &alias));
    let mut all = vec!["-c", &script];
    all.extend_from_slice(args);
    crate::spawn_logged(&mut crate::command_in(&place, ns, "python3", &all))
}

/// What `url` first answers (curl succeeded with a body), polled while `serve` (the process
/// that will answer) starts; panics when it exits first or nothing answers within 10 s.
pub fn first_answer(serve: &mut Proc, url: &str) -> String {
    for _ in 0..100 {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "2", url])
            .output()
            .unwrap();
        if out.status.success() && !out.stdout.is_empty() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if let Ok(Some(s)) = serve.child.try_wait() {
            panic!("it exited ({s}) before {url} answered:\n{}", serve.log());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{url} did not answer within 10 s:\n{}", serve.log());
}

/// The Prometheus series a spot-sim started with `--metrics 127.0.0.1:0` serves, from the
/// address it logged.
pub fn metrics(p: &mut Proc) -> String {
    p.wait_for_log("metrics on http://", Duration::from_secs(10));
    let log = p.log();
    let url = log
        .lines()
        .find_map(|l| l.split("metrics on ").nth(1))
        .unwrap()
        .trim()
        .to_string();
    let out = output_ok(Command::new("curl").args(["-sS", "--max-time", "5", &url]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A JSON array of strings as `&str`s; panics on anything else.
pub fn strs(v: &serde_json::Value) -> Vec<&str> {
    let items = v.as_array().unwrap_or_else(|| panic!("not a list: {v}"));
    items
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")))
        .collect()
}

/// `bpftool -j ARGS`, parsed: a list (empty when bpftool printed nothing, as some versions do
/// for a cgroup without programs). Panics when bpftool fails or prints no JSON list: a check
/// that cannot look must never read as "nothing there".
pub fn bpftool_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bpftool ({e}): install it (cargo xtask deps)"));
    let out = checked("bpftool", out);
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Vec::new();
    }
    match serde_json::from_str(text.trim()) {
        Ok(serde_json::Value::Array(v)) => v,
        _ => panic!("bpftool {args:?} printed no JSON list: {text}"),
    }
}

/// The DOM headless Chromium builds from the page at `html` (in a private network namespace:
/// the browser reaches nothing off this machine); panics when it fails or the page logs an
/// error. Its profile lives beside the page.
pub fn chromium_dom(html: &Path) -> String {
    let profile = html.with_file_name("chromium-profile");
    let out = Command::new("unshare")
        .args([
            "-n",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args([
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium is installed (cargo xtask test installs it)");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {log}");
    assert!(
        !log.contains("Uncaught") && !log.contains(":CONSOLE"),
        "the page logged errors: {log}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
