//! A hostile review, replayed: what an attacker on the node or a careless operator can do to
//! spot-sim, and what spot-sim does instead now (issue #11). Each test replays one repro.
//!
//! Clients that might reach the IMDS address run in private network namespaces (only `lo`);
//! anything that could touch a root cgroup runs inside a cgroup namespace whose root is a test
//! cgroup. Figures for SECURITY.md are printed on `FIGURE name: value` lines.

use nix::sys::signal::Signal;
use spot_sim_tests::*;

// ---------------------------------------------------------------------------------------------
// Fixtures of this file.

/// A directory of the test's own under /run (root-owned, 0700), removed on drop. It only ever
/// holds sockets and plain files (never a mount), so removing it whole is safe.
fn private_dir(tag: &str) -> OwnedPath {
    let dir = OwnedPath::dir_in(Path::new("/run"), tag).unwrap();
    fs::set_permissions(&*dir, fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A FIFO `fifo.toml` in `dir`: a scenario "file" that blocks whoever reads it.
fn fifo_in(dir: &Path) -> PathBuf {
    let fifo = dir.join("fifo.toml");
    output_ok(Command::new("mkfifo").arg(&fifo));
    fifo
}

/// The first entry of `dir` whose name starts with `prefix`.
fn child_named(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let entries = fs::read_dir(dir).unwrap().flatten().map(|e| e.path());
    entries
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
}

/// A private folder (see [`private_dir`]) and the path of a control socket in it.
fn private_control(tag: &str) -> (OwnedPath, PathBuf) {
    let dir = private_dir(tag);
    let control = dir.join("c.sock");
    (dir, control)
}

/// A test's own cgroup with one target, and a private folder for the control socket: the
/// target, the socket's path, and the cgroup and the folder (kept alive by the caller).
fn lone(tag: &str) -> (Target, PathBuf, (TestCgroup, OwnedPath)) {
    let cg = TestCgroup::new(tag).unwrap();
    let t = target(&cg, "t");
    let (dir, control) = private_control(tag);
    (t, control, (cg, dir))
}

/// spot-sim with `args`, ended by `timeout` if it hangs (a regression must fail, not hang).
fn spot_sim(args: &[&str]) -> (Output, Duration) {
    let t0 = Instant::now();
    let out = Command::new("timeout")
        .arg("20")
        .arg(spot_sim_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out, t0.elapsed())
}

/// `spot-sim run --control CONTROL --cgroup T`, to be refused.
fn run_with_control(control: &str, t: &Target) -> (Output, Duration) {
    spot_sim(&[
        "run",
        "--control",
        control,
        "--cgroup",
        t.path.to_str().unwrap(),
    ])
}

/// `spot-sim serve --scenario FILE` on any loopback port, to be refused.
fn serve_scenario(file: &str) -> (Output, Duration) {
    spot_sim(&["serve", "--listen", "127.0.0.1:0", "--scenario", file])
}

/// A bad input's answer: non-zero exit, one line on stderr, no panic.
fn assert_refused(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "accepted; stderr: {err}");
    assert_ne!(o.status.code(), Some(124), "hung until `timeout` ended it");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        err.trim_end()
            .lines()
            .filter(|l| l.starts_with("spot-sim:"))
            .count(),
        1,
        "not one line: {err}"
    );
}

/// `spot-sim run` with its own control socket at `control`, waiting until it serves `n`
/// targets; started in `place` (limits, umask) when given.
fn run_at(control: &Path, args: &[&str], n: usize, place: Option<Placement>) -> Proc {
    let mut cmd = Command::new(spot_sim_bin());
    cmd.arg("run").arg("--control").arg(control).args(args);
    if let Some(place) = place {
        place.apply(&mut cmd);
    }
    let mut p = spawn_logged(&mut cmd);
    p.wait_for_log(&format!("serving {n} target"), Duration::from_secs(120));
    p
}

/// `status --json` of one instance; `--timeout` is only passed when it is not the default.
fn status_at(control: &Path, timeout: &str) -> (Output, Duration) {
    let mut args = vec!["status", "--json", "--control", control.to_str().unwrap()];
    if timeout != "2s" {
        args.extend(["--timeout", timeout]);
    }
    spot_sim(&args)
}

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A Unix socket file nobody listens on, as a spot-sim killed with SIGKILL leaves it.
fn stale_socket(path: &Path) {
    drop(std::os::unix::net::UnixListener::bind(path).unwrap());
    assert!(path.exists());
}

/// `ulimit -Sn 1024`, the hard limit left as it is (the common default).
fn soft_nofile_1024() -> Placement {
    Placement::new().nofile(1024, None)
}

/// `ulimit -n 1024`: soft and hard.
fn nofile_1024() -> Placement {
    Placement::new().nofile(1024, Some(1024))
}

// ---------------------------------------------------------------------------------------------
// 1. The root of the cgroup mount.

#[test]
fn an_empty_dot_or_slash_cgroup_is_refused_and_nothing_attaches_to_the_root() {
    root_or_skip!();
    // The "root" here is a test cgroup: spot-sim runs in a cgroup namespace rooted at it, with
    // cgroup2 mounted afresh, so a regression attaches there and never to the machine's root.
    let cg = TestCgroup::new("rootns").unwrap();
    let mount = cgroup2_mount();
    let bin = spot_sim_bin();
    let control = private_dir("rootns-ctl");
    let ctl = control.join("c.sock");
    let script = format!(
        r#"set -u
umount -l {m} && mount -t cgroup2 none {m} || exit 90
mkdir {m}/runner && echo $$ > {m}/runner/cgroup.procs || exit 91
for a in "" . / /runner/.. "{m}" "{m}/." /runner; do
  printf 'CASE[%s]\n' "$a"
  timeout 10 {bin} run --control {ctl} --cgroup "$a" 2>&1
  echo "RC=$?"
done
printf 'CASE[pod]\n'
pod={m}/kubepods/besteffort/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0
mkdir -p $pod
sh -c "echo \$\$ > $pod/cgroup.procs && exec timeout 10 {bin} run --control {ctl} --cgroup-root {m} --pod-uid 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0" 2>&1
echo "RC=$?"
mkdir {m}/ns-target
{bin} run --control {ctl} --cgroup /ns-target 2>/dev/null &
run=$!
for i in $(seq 100); do [ -S {ctl} ] && break; sleep 0.1; done
for a in "" /; do
  printf 'CASE[target add %s]\n' "$a"
  timeout 10 {bin} target add --cgroup "$a" --control {ctl} 2>&1
  echo "RC=$?"
done
kill $run; wait $run
"#,
        m = mount.display(),
        bin = bin.display(),
        ctl = ctl.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-C", "-m", "--propagation", "private", "sh", "-c", &script]);
    // The shell joins the test cgroup first, so the namespace's root is the test cgroup.
    Placement::new().cgroup(&cg.path).unwrap().apply(&mut cmd);
    let out = cmd.output().unwrap();
    let text = stdout(&out);
    println!("{text}");
    assert!(!text.contains("RC=124"), "a case hung (attached?): {text}");
    for case in text.split("CASE[").skip(1) {
        let (name, rest) = case.split_once(']').unwrap();
        // An empty value for `target add --cgroup` is refused by the argument parser itself.
        if name == "target add " && rest.contains("a value is required") {
            assert!(rest.contains("RC=2"), "{rest}");
            println!("FIGURE root refusal: target add --cgroup \"\" refused by the parser");
            continue;
        }
        assert!(rest.contains("RC=1"), "{name:?} was not refused: {rest}");
        assert!(!rest.contains("panicked"), "{rest}");
        // The pod case: a pod whose cgroup holds spot-sim (resolved by uid under the
        // namespace's own kubepods) goes through the same check as --cgroup.
        let want = if name == "/runner" || name == "pod" {
            "it holds spot-sim itself"
        } else {
            "the root of the cgroup v2 mount"
        };
        assert!(rest.contains(want), "{name:?}: {want:?} not in {rest}");
        assert!(
            rest.contains("Target the") || rest.contains("Target a"),
            "{rest}"
        );
        println!("FIGURE root refusal: --cgroup {name:?} refused");
    }
    assert_eq!(text.matches("CASE[").count(), 10, "{text}");
    // Nothing was ever attached to the namespace's root (the test cgroup) or its child.
    assert_eq!(attached_programs(&cg.path), Vec::<String>::new());
    assert_eq!(
        attached_programs(&cg.path.join("runner")),
        Vec::<String>::new()
    );
    let pod = cg
        .path
        .join("kubepods/besteffort/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
    assert_eq!(attached_programs(&pod), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// 2, 3. The control socket and its directory.

#[test]
fn a_control_path_that_is_a_regular_file_or_a_symlink_is_refused_and_left_as_it_was() {
    root_or_skip!();
    let (t, _, (_cg, dir)) = lone("ctlfile");
    let file = dir.join("precious.sock");
    fs::write(&file, "do not delete").unwrap();
    let link = dir.join("link.sock");
    let victim = dir.join("victim");
    fs::write(&victim, "victim").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    for path in [&file, &link] {
        let (out, took) = run_with_control(path.to_str().unwrap(), &t);
        assert_refused(&out, "is not a socket");
        println!(
            "FIGURE control path: {} refused in {took:?}",
            path.display()
        );
    }
    let (out, _) = spot_sim(&["exec", "--control", file.to_str().unwrap(), "--", "true"]);
    assert_refused(&out, "is not a socket");
    assert_eq!(fs::read_to_string(&file).unwrap(), "do not delete");
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o777, 0o644);
    // A socket a dead instance left is still replaced.
    let stale = dir.join("stale.sock");
    stale_socket(&stale);
    let p = run_at(&stale, &["--cgroup", t.path.to_str().unwrap()], 1, None);
    let (out, _) = status_at(&stale, "2s");
    assert!(out.status.success(), "{}", stderr(&out));
    drop(p);
}

#[test]
fn the_control_directory_is_created_0700_under_umask_000_and_unsafe_ones_are_refused() {
    root_or_skip!();
    let (t, _, (_cg, base)) = lone("ctldir");
    // Created by spot-sim under umask 000: still 0700, the socket 0600, both ours.
    let fresh = base.join("made-by-spot-sim");
    let sock = fresh.join("run.sock");
    let p = run_at(
        &sock,
        &["--cgroup", t.path.to_str().unwrap()],
        1,
        Some(Placement::new().umask(0)),
    );
    let dmeta = fs::metadata(&fresh).unwrap();
    let smeta = fs::symlink_metadata(&sock).unwrap();
    println!(
        "FIGURE control dir under umask 000: dir {:o} uid {}, socket {:o}",
        dmeta.mode() & 0o7777,
        dmeta.uid(),
        smeta.mode() & 0o7777
    );
    assert_eq!(dmeta.mode() & 0o7777, 0o700);
    assert_eq!(dmeta.uid(), 0);
    assert_eq!(smeta.mode() & 0o777, 0o600);
    assert_eq!(smeta.uid(), 0);
    drop(p);
    // Left behind: nothing but the directory, still 0700 and root's.
    assert!(!sock.exists(), "the socket was left behind");
    assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o7777, 0o700);

    // A world-writable directory (what `umask 000` made before): refused, naming the fix.
    let loose = base.join("loose");
    fs::create_dir(&loose).unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o777)).unwrap();
    let (out, _) = run_with_control(loose.join("run.sock").to_str().unwrap(), &t);
    // The fix is another path in a private directory, never a chmod of a shared one (#22).
    assert_refused(&out, "private directory");
    assert!(!stderr(&out).contains("chmod"), "{}", stderr(&out));
    assert!(!loose.join("run.sock").exists());
    // A directory another user owns: refused.
    let foreign = base.join("foreign");
    fs::create_dir(&foreign).unwrap();
    fs::set_permissions(&foreign, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    let (out, _) = run_with_control(foreign.join("run.sock").to_str().unwrap(), &t);
    assert_refused(&out, "owned by uid 65534");
    // A stale socket that another user owns is not ours to replace.
    let theirs = base.join("theirs.sock");
    stale_socket(&theirs);
    std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
    let (out, _) = run_with_control(theirs.to_str().unwrap(), &t);
    assert_refused(&out, "owned by uid 65534");
    assert!(theirs.exists());
}

/// The shared control directory, after every instance this file started: not writable by
/// group or others, and root's (the hardening suite's "nothing left behind" check too).
fn assert_control_dir_safe() {
    let meta = fs::metadata("/run/spot-sim").unwrap();
    println!(
        "FIGURE control dir: /run/spot-sim mode {:o} uid {}",
        meta.mode() & 0o7777,
        meta.uid()
    );
    assert_eq!(
        meta.mode() & 0o022,
        0,
        "/run/spot-sim is writable by others"
    );
    assert_eq!(meta.uid(), 0);
}

// ---------------------------------------------------------------------------------------------
// 4. Scenario files.

#[test]
fn dev_zero_and_a_fifo_as_scenario_are_refused_at_once_naming_the_file_and_the_limit() {
    let dir = OwnedPath::scratch_dir("scenario").unwrap();
    let fifo = fifo_in(&dir);
    for path in [Path::new("/dev/zero"), fifo.as_path()] {
        let (out, took) = serve_scenario(path.to_str().unwrap());
        assert_refused(&out, &path.display().to_string());
        assert!(stderr(&out).contains("1024 KiB"), "{}", stderr(&out));
        assert!(took < Duration::from_secs(3), "took {took:?}");
        println!("FIGURE scenario: {} refused in {took:?}", path.display());
    }
}

#[test]
fn a_scenario_of_dev_zero_or_a_fifo_through_target_add_is_refused_and_the_instance_carries_on() {
    root_or_skip!();
    let (cg, [t]) = targets("addzero", ["t"]);
    let extra = cg.child("extra").unwrap();
    let (dir, control) = private_control("addzero");
    let p = run_at(&control, &["--cgroup", t.path.to_str().unwrap()], 1, None);
    let rss_before = rss_kib(p.pid());
    let fifo = fifo_in(&dir);
    for path in ["/dev/zero", fifo.to_str().unwrap()] {
        let (out, took) = spot_sim(&[
            "target",
            "add",
            "--cgroup",
            extra.to_str().unwrap(),
            "--scenario",
            path,
            "--control",
            control.to_str().unwrap(),
        ]);
        assert_refused(&out, "1024 KiB");
        println!("FIGURE target add scenario: {path} refused in {took:?}");
    }
    // Written later, the FIFO adds nothing ("ghost add").
    {
        let mut w = fs::OpenOptions::new()
            .write(true)
            .custom_flags_nonblock()
            .open(&fifo);
        if let Ok(w) = w.as_mut() {
            let _ = w.write_all(b"[scenario]\n");
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let (out, _) = spot_sim(&["target", "list", "--control", control.to_str().unwrap()]);
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    let rss_after = rss_kib(p.pid());
    println!("FIGURE target add scenario: RSS {rss_before} → {rss_after} KiB");
    assert!(rss_after < rss_before + 20 * 1024);
    assert_eq!(http_code(&t, "/latest/meta-data/instance-id"), "200");
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

// ---------------------------------------------------------------------------------------------
// 5, 6. Descriptors: the metrics endpoint, floods, many targets.

/// Opens `n` connections to ADDR (host:port); `mode` "half" sends half a request head, "big"
/// sends 380 KB of head without its end, "idle" sends nothing, "churn" sends nothing and
/// reconnects each connection the server closes. Prints a line when all are
/// open, then after `hold` seconds how many the server closed, then exits.
const HOLD: &str = r#"
import json, resource, socket, sys, time
host, port, n, mode, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
socks, refused = [], 0
t0 = time.time()
for _ in range(n):
    try:
        s = socket.create_connection((host, port), timeout=5)
        if mode == "half":
            s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        elif mode == "big":
            s.setblocking(False)
            try:
                s.send(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 380000)
            except OSError:
                pass
        s.setblocking(False)
        socks.append(s)
    except OSError:
        refused += 1
def count():
    open_n = closed = 0
    for i, s in enumerate(socks):
        try:
            gone = s.recv(65536) == b""
        except BlockingIOError:
            gone = False
        except OSError:
            gone = True
        if not gone:
            open_n += 1
            continue
        closed += 1
        if mode == "churn":
            # A flood that reconnects whatever the server closed.
            s.close()
            try:
                socks[i] = socket.create_connection((host, port), timeout=1)
                socks[i].setblocking(False)
            except OSError:
                pass
    return open_n, closed
time.sleep(0.5)
o, c = count()
print(json.dumps({"phase": "opened", "open": o, "closed": c, "refused": refused, "s": round(time.time() - t0, 1)}), flush=True)
end = time.time() + hold
last = None
while time.time() < end:
    o, c = count()
    if o == 0 and last is None:
        last = round(time.time() - t0, 1)
    time.sleep(0.5)
o, c = count()
print(json.dumps({"phase": "held", "open": o, "closed": c, "all_closed_at_s": last}), flush=True)
"#;

fn python_hold(cmd: &mut Command) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// HOLD on the metrics endpoint (loopback `port`); `what` is its "COUNT KIND SECONDS".
fn hold_local(
    port: &str,
    what: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut args = vec!["-c", HOLD, "127.0.0.1", port];
    args.extend(what.split(' '));
    python_hold(Command::new("python3").args(args))
}

fn next_json(r: &mut BufReader<std::process::ChildStdout>) -> serde_json::Value {
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"))
}

fn metrics_port(p: &Proc) -> u16 {
    let log = p.log();
    let at =
        log.find("metrics on http://127.0.0.1:").unwrap() + "metrics on http://127.0.0.1:".len();
    log[at..].split('/').next().unwrap().parse().unwrap()
}

#[test]
fn the_metrics_endpoint_drops_half_sent_and_oversized_heads_and_a_flood_of_it_starves_nothing() {
    root_or_skip!();
    let (t, control, (_cg, _dir)) = lone("metrics");
    // Under `ulimit -n 1024`, as the review ran it.
    let p = run_at(
        &control,
        &[
            "--cgroup",
            t.path.to_str().unwrap(),
            "--metrics",
            "127.0.0.1:0",
        ],
        1,
        Some(nofile_1024()),
    );
    let port = metrics_port(&p).to_string();
    let rss0 = rss_kib(p.pid());
    // 600 half-sent heads: closed by the header timeout, not held for 40 s.
    let (mut c, mut r) = hold_local(&port, "600 half 12");
    let opened = next_json(&mut r);
    let held = next_json(&mut r);
    let _ = c.wait();
    println!("FIGURE metrics half-sent: 600 connections: {opened} then {held}");
    assert_eq!(held["open"], 0, "{held}");
    let closed_at = held["all_closed_at_s"].as_f64().unwrap();
    assert!(closed_at <= 9.0, "{held}");
    // 400 partial heads of 380 KB: memory stays flat.
    let (mut c, mut r) = hold_local(&port, "400 big 3");
    let _ = next_json(&mut r);
    let rss_held = rss_kib(p.pid());
    let held = next_json(&mut r);
    let _ = c.wait();
    println!("FIGURE metrics 380 KB heads: 400 connections: RSS {rss0} → {rss_held} KiB; {held}");
    assert!(rss_held < rss0 + 40 * 1024, "RSS {rss0} → {rss_held} KiB");
    // 1,100 idle connections: the target and `status` are served all along, and spot-sim's
    // descriptors stay within its limit.
    let fds0 = fd_count(p.pid());
    let (mut c, mut r) = hold_local(&port, "1100 idle 4");
    let opened = next_json(&mut r);
    let fds_held = fd_count(p.pid());
    let t0 = Instant::now();
    let code = http_code(&t, "/latest/meta-data/instance-id");
    let target_took = t0.elapsed();
    let (st, status_took) = status_at(&control, "2s");
    let _ = next_json(&mut r);
    let _ = c.wait();
    let accept_failed = p.log().matches("accept failed").count();
    println!(
        "FIGURE metrics flood: 1100 connections under ulimit -n 1024: {opened}; spot-sim fds {fds0} → {fds_held}; target answered {code} in {target_took:?}; status in {status_took:?}; {accept_failed} accept-failed lines"
    );
    assert_eq!(code, "200");
    assert!(st.status.success(), "{}", stderr(&st));
    assert!(fds_held < 1024 - 32, "fds {fds_held}");
    assert!(accept_failed <= 5, "{accept_failed} accept-failed lines");
    assert!(!p.log().contains("panicked"));
}

#[test]
fn a_flood_on_two_targets_under_ulimit_1024_never_starves_a_third_target_or_status() {
    root_or_skip!();
    let (_cg, [a, b, calm]) = targets("fdflood", ["a", "b", "calm"]);
    let (_dir, control) = private_control("fdflood");
    let p = run_at(
        &control,
        &[
            "--cgroup",
            a.path.to_str().unwrap(),
            "--cgroup",
            b.path.to_str().unwrap(),
            "--cgroup",
            calm.path.to_str().unwrap(),
        ],
        3,
        Some(nofile_1024()),
    );
    let fds0 = fd_count(p.pid());
    let mut floods = Vec::new();
    for t in [&a, &b] {
        floods.push(python_hold(&mut command_in(
            &t.path,
            &t.ns,
            "python3",
            &["-c", HOLD, "169.254.169.254", "80", "1100", "churn", "8"],
        )));
    }
    let opened: Vec<_> = floods.iter_mut().map(|(_, r)| next_json(r)).collect();
    let fds_held = fd_count(p.pid());
    let mut worst_target = Duration::ZERO;
    let mut worst_status = Duration::ZERO;
    for _ in 0..5 {
        let t0 = Instant::now();
        assert_eq!(http_code(&calm, "/latest/meta-data/instance-id"), "200");
        worst_target = worst_target.max(t0.elapsed());
        let (st, took) = status_at(&control, "2s");
        assert!(st.status.success(), "status failed: {}", stderr(&st));
        worst_status = worst_status.max(took);
    }
    for (mut c, mut r) in floods {
        let _ = next_json(&mut r);
        let _ = c.wait();
    }
    // Once the flood is gone, the flooded targets are served again.
    let t0 = Instant::now();
    assert_eq!(http_code(&a, "/latest/meta-data/instance-id"), "200");
    assert_eq!(http_code(&b, "/latest/meta-data/instance-id"), "200");
    println!(
        "FIGURE fd flood: flooded targets served again {:?} after the flood",
        t0.elapsed()
    );
    let accept_failed = p.log().matches("accept failed").count();
    println!(
        "FIGURE fd flood: 2 × 1100 connections under ulimit -n 1024: {opened:?}; fds {fds0} → {fds_held}; calm target worst {worst_target:?}; status worst {worst_status:?}; {accept_failed} accept-failed lines"
    );
    // Neither flooded target starves the other (before: 512 and 0).
    for o in &opened {
        assert!(
            o["open"].as_u64().unwrap() >= 64,
            "a flooded target starved: {opened:?}"
        );
    }
    assert!(worst_target < Duration::from_secs(1), "{worst_target:?}");
    assert!(worst_status < Duration::from_secs(1), "{worst_status:?}");
    assert!(accept_failed <= 5, "{accept_failed} accept-failed lines");
    assert!(fds_held < 1024 - 32, "fds {fds_held}");
}

#[test]
fn three_hundred_targets_run_under_a_soft_limit_of_1024() {
    root_or_skip!();
    let cg = TestCgroup::new("many").unwrap();
    let mut args = Vec::new();
    for i in 0..299 {
        args.push("--cgroup".to_string());
        args.push(cg.child(&format!("t{i}")).unwrap().display().to_string());
    }
    let last = target(&cg, "t299");
    args.push("--cgroup".to_string());
    args.push(last.path.display().to_string());
    let (_dir, control) = private_control("many");
    // spot-sim in a namespace of its own, so the empty targets' listeners stay off the host.
    let ns = NetNs::new_private().unwrap();
    let bin = spot_sim_bin();
    let mut all = vec!["run", "--control", control.to_str().unwrap()];
    all.extend(args.iter().map(String::as_str));
    let mut cmd = command_in_netns(&ns, bin.to_str().unwrap(), &all);
    cmd.env("RUST_LOG", "info,spot_sim::fdbudget=debug");
    soft_nofile_1024().apply(&mut cmd);
    let t0 = Instant::now();
    let mut p = spawn_logged(&mut cmd);
    p.wait_for_log("serving 300 target", Duration::from_secs(300));
    let took = t0.elapsed();
    let fds = fd_count(p.pid());
    let raised = p
        .log()
        .lines()
        .find(|l| l.contains("descriptor limit"))
        .unwrap_or_default()
        .to_string();
    println!("FIGURE 300 targets: serving after {took:?} with {fds} descriptors; {raised}");
    assert!(raised.contains("raised from 1024"), "{raised}");
    assert!(
        fds > 1024,
        "only {fds} descriptors: the test proves nothing"
    );
    let (st, _) = status_at(&control, "5s");
    assert!(st.status.success(), "{}", stderr(&st));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v[0]["targets"].as_array().unwrap().len(), 300);
    assert_eq!(http_code(&last, "/latest/meta-data/instance-id"), "200");
    drop(p);
    // With a hard limit of 1,024 too, 300 targets cannot fit: spot-sim says so and what to do.
    let mut cmd = command_in_netns(&ns, bin.to_str().unwrap(), &all);
    nofile_1024().apply(&mut cmd);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let err = stderr(&out);
    let last_line = err.lines().last().unwrap_or_default();
    println!("FIGURE 300 targets under a hard limit of 1024: {last_line}");
    assert!(!out.status.success());
    assert!(last_line.contains("out of file descriptors"), "{err}");
    assert!(last_line.contains("ulimit -Hn"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 7. Escapes from a target.

#[test]
fn a_process_name_and_a_cgroup_name_with_escape_sequences_reach_logs_and_status_escaped() {
    root_or_skip!();
    let cg = TestCgroup::new("escape").unwrap();
    let name = "t\x1b[31mred\x07";
    let t = target(&cg, name);
    let (_dir, control) = private_control("escape");
    let mut p = run_at(&control, &["--cgroup", t.path.to_str().unwrap()], 1, None);
    let script = r#"
import ctypes, socket
ctypes.CDLL(None).prctl(15, b"\x1b]0;PWN\x07\n\x1b[2J", 0, 0, 0)
s = socket.create_connection(("169.254.169.254", 80), timeout=5)
s.sendall(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
print(s.recv(4096)[:12])
"#;
    let out = command_in(&t.path, &t.ns, "python3", &["-c", script])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("200"), "{}", stderr(&out));
    p.wait_for_log("redirected", Duration::from_secs(5));
    let log = p.log();
    let (st, _) = spot_sim(&["status", "--control", control.to_str().unwrap()]);
    let status = stdout(&st);
    for (what, text) in [("log", &log), ("status", &status)] {
        assert!(!text.contains('\x1b'), "raw ESC in the {what}: {text:?}");
        assert!(!text.contains('\x07'), "raw BEL in the {what}: {text:?}");
    }
    assert!(log.contains("\\x1b]0;PWN\\x07\\x0a\\x1b[2J"), "{log}");
    assert!(log.contains("t\\x1b[31mred\\x07"), "{log}");
    assert!(status.contains("t\\x1b[31mred\\x07"), "{status}");
    // No forged line: every log line is spot-sim's own (a level or a known prefix).
    assert!(
        !log.lines().any(|l| l.starts_with("\x1b[2J")),
        "a forged continuation line: {log}"
    );
    println!("FIGURE escape: comm shown as \\x1b]0;PWN\\x07\\x0a\\x1b[2J");
}

// ---------------------------------------------------------------------------------------------
// 8. Control clients against a stuck instance.

#[test]
fn status_reports_a_stopped_instance_as_not_answering_and_shows_the_others() {
    root_or_skip!();
    let (_cg, [t1, t2]) = targets("stuck", ["one", "two"]);
    // Default discovery looks in /run/spot-sim, so these two live there.
    let c1 = control_path("stuck");
    let c2 = control_path("live");
    let stuck = run_at(&c1, &["--cgroup", t1.path.to_str().unwrap()], 1, None);
    let live = run_at(&c2, &["--cgroup", t2.path.to_str().unwrap()], 1, None);
    stuck.signal(Signal::SIGSTOP);
    let (out, took) = spot_sim(&["status", "--json"]);
    let (one, took_one) = status_at(&c1, "500ms");
    let (trig, _) = spot_sim(&["trigger", "--control", c1.to_str().unwrap()]);
    stuck.signal(Signal::SIGCONT);
    println!(
        "FIGURE stuck instance: status of all answered in {took:?}; of the stuck one with --timeout 500ms in {took_one:?}"
    );
    assert_ne!(out.status.code(), Some(124), "status hung");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = v.as_array().unwrap();
    let of = |c: &Path| {
        entries
            .iter()
            .find(|e| e["control"].as_str() == c.to_str())
            .cloned()
            .unwrap_or_else(|| panic!("{} not listed: {v}", c.display()))
    };
    let s = of(&c1);
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 2s"),
        "{s}"
    );
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {}", stuck.pid())),
        "{s}"
    );
    assert_eq!(of(&c2)["pid"], live.pid());
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(took_one < Duration::from_millis(1500), "{took_one:?}");
    assert!(
        stdout(&one).contains("did not answer within 500ms"),
        "{}",
        stdout(&one)
    );
    assert!(
        stderr(&one).contains("did not answer within 500ms"),
        "{}",
        stderr(&one)
    );
    assert_refused(&trig, "did not answer within 2s");
    // Once continued, it answers again.
    let (out, _) = status_at(&c1, "2s");
    assert!(out.status.success(), "{}", stderr(&out));
    drop(live);
    drop(stuck);
    assert_control_dir_safe();
}

// ---------------------------------------------------------------------------------------------
// 9. SIGKILL of exec.

#[test]
fn sigkill_of_exec_takes_the_command_along_and_the_next_start_clears_what_was_left() {
    root_or_skip!();
    let (_cg, runner, ns) = cgroup_child_and_ns("execkill", "runner");
    let bin = spot_sim_bin();
    let mut p = spawn_logged(&mut command_in(
        &runner,
        &ns,
        bin.to_str().unwrap(),
        &["exec", "--", "sleep", "600"],
    ));
    wait_for_child_in(&runner);
    // Its transient cgroup: runner/spot-sim-exec-PID-…; the command is inside.
    let transient = child_named(&runner, "spot-sim-exec-").expect("exec's cgroup");
    let command_pid: i32 = fs::read_to_string(transient.join("cgroup.procs"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let socket = PathBuf::from(format!("/run/spot-sim/exec-{}.sock", p.pid()));
    assert!(socket.exists());
    // A live instance beside it, whose cgroup and socket must stay.
    let mut live = spawn_logged(&mut command_in(
        &runner,
        &ns,
        bin.to_str().unwrap(),
        &["exec", "--", "sleep", "600"],
    ));
    let live_socket = PathBuf::from(format!("/run/spot-sim/exec-{}.sock", live.pid()));
    let t0 = Instant::now();
    while !live_socket.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The socket is bound before anything starts, so the cgroup comes a moment later.
    let live_prefix = format!("spot-sim-exec-{}-", live.pid());
    let t0 = Instant::now();
    let live_cgroup = loop {
        match child_named(&runner, &live_prefix) {
            Some(c) => break c,
            None if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            None => panic!("the live instance's cgroup never appeared"),
        }
    };
    p.signal(Signal::SIGKILL);
    let _ = p.wait_timeout(Duration::from_secs(5));
    let t0 = Instant::now();
    while alive(command_pid) && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let gone_after = t0.elapsed();
    println!("FIGURE exec SIGKILL: the command was gone {gone_after:?} after spot-sim");
    assert!(!alive(command_pid), "the command outlived spot-sim");
    assert!(
        transient.exists() && socket.exists(),
        "nothing was left to clear?"
    );
    // The next start clears what the dead one left, and only that.
    let out = command_in(&runner, &ns, bin.to_str().unwrap(), &["exec", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!transient.exists(), "the dead instance's cgroup is left");
    assert!(!socket.exists(), "the dead instance's socket is left");
    assert!(stderr(&out).contains("that is gone"), "{}", stderr(&out));
    assert!(live_cgroup.exists(), "a live instance's cgroup was removed");
    assert!(live_socket.exists(), "a live instance's socket was removed");
    assert!(
        live.child.try_wait().unwrap().is_none(),
        "the live instance ended"
    );
    live.signal(Signal::SIGTERM);
    assert!(live.wait_timeout(Duration::from_secs(5)).is_some());
    assert!(!live_cgroup.exists() && !live_socket.exists());
}

/// Whether `pid` runs (a zombie waiting for its new parent to reap it does not).
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

/// Waits until a transient cgroup under `parent` holds a process (exec started its command).
fn wait_for_child_in(parent: &Path) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let busy = fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("spot-sim-exec-")
                    && !fs::read_to_string(e.path().join("cgroup.procs"))
                        .unwrap_or_default()
                        .trim()
                        .is_empty()
            });
        if busy {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("exec started no command under {}", parent.display());
}

// ---------------------------------------------------------------------------------------------
// 10. Slow readers.

/// `n` connections that pipeline requests and never read; reports when the server closed
/// each (the client socket leaves ESTABLISHED).
const PIPELINER: &str = r#"
import json, socket, sys, time
n, limit = int(sys.argv[1]), float(sys.argv[2])
req = b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
socks = []
for _ in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("169.254.169.254", 80))
    s.setblocking(False)
    socks.append(s)
def states():
    st = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            f = line.split()
            st[int(f[1].rsplit(":", 1)[1], 16)] = f[3]
    return st
ports = [s.getsockname()[1] for s in socks]
t0 = time.time()
closed = {}
while time.time() - t0 < limit and len(closed) < n:
    for s in socks:
        try:
            s.send(req)
        except OSError:
            pass
    st = states()
    for i, p in enumerate(ports):
        if i not in closed and st.get(p) != "01":
            closed[i] = time.time() - t0
    time.sleep(0.5)
t = sorted(closed.values())
print(json.dumps({"closed": len(t), "first_s": round(t[0], 1) if t else None, "last_s": round(t[-1], 1) if t else None}))
"#;

#[test]
fn connections_that_pipeline_and_never_read_are_closed_by_the_idle_limit() {
    root_or_skip!();
    let (t, control, (_cg, _dir)) = lone("slowread");
    let p = run_at(&control, &["--cgroup", t.path.to_str().unwrap()], 1, None);
    let out = command_in(&t.path, &t.ns, "python3", &["-c", PIPELINER, "50", "55"])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&out), stderr(&out)));
    println!("FIGURE slow readers: 50 pipelining connections that never read: {r}");
    assert_eq!(r["closed"], 50, "{r}");
    // Idle limit 30 s, a 2 s grace, the 7.5 s check tick: 39.5 s at the latest, plus slack
    // for a loaded CI machine (the client's own 0.5 s loop slows down there too); without
    // the limit none would close before the client gives up at 55 s.
    assert!(r["last_s"].as_f64().unwrap() <= 48.0, "{r}");
    assert_eq!(http_code(&t, "/latest/meta-data/instance-id"), "200");
    drop(p);
}

// ---------------------------------------------------------------------------------------------
// 11. Small ones.

#[test]
fn a_request_hyper_cannot_parse_is_answered_400_with_server_ec2ws() {
    root_or_skip!();
    let (t, control, (_cg, _dir)) = lone("bad400");
    let _p = run_at(&control, &["--cgroup", t.path.to_str().unwrap()], 1, None);
    let script = r#"
import socket, sys
s = socket.create_connection(("169.254.169.254", 80), timeout=5)
s.sendall(bytes.fromhex(sys.argv[1]))
data = b"".join(iter(lambda: s.recv(65536), b""))
print(data.split(b"\r\n\r\n")[0].decode("latin-1"))
"#;
    for (case, req) in [
        (
            "garbage request line",
            "\x16\x03\x01garbage\r\n\r\n".to_string(),
        ),
        (
            "raw NUL in path",
            "GET /latest/\0 HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        ),
        (
            "20 kB header",
            format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20 * 1024)),
        ),
    ] {
        let hex: String = req.bytes().map(|b| format!("{b:02x}")).collect();
        let out = command_in(&t.path, &t.ns, "python3", &["-c", script, &hex])
            .output()
            .unwrap();
        let head = stdout(&out);
        println!(
            "FIGURE hyper's own answer: {case}: {:?}",
            head.lines().next()
        );
        assert!(head.starts_with("HTTP/1.1 4"), "{case}: {head}");
        assert!(head.contains("Server: EC2ws"), "{case}: {head}");
    }
}

#[test]
fn a_zero_passthrough_timeout_and_a_missing_file_are_refused_with_each_error_said_once() {
    let dir = OwnedPath::scratch_dir("small").unwrap();
    let zero = dir.join("zero.toml");
    fs::write(
        &zero,
        "[imds]\npassthrough = true\npassthrough-timeout = \"0s\"\n",
    )
    .unwrap();
    let (out, _) = serve_scenario(zero.to_str().unwrap());
    assert_refused(&out, "imds.passthrough-timeout");
    let missing = dir.join("missing.toml");
    let (out, _) = serve_scenario(missing.to_str().unwrap());
    assert_refused(&out, "(os error 2)");
    assert_eq!(
        stderr(&out).matches("(os error 2)").count(),
        1,
        "{}",
        stderr(&out)
    );
    println!("FIGURE error text: {}", stderr(&out).trim());
}

// ---------------------------------------------------------------------------------------------
// #12: two control clients add the same target at once.

#[test]
fn two_clients_adding_the_same_target_at_once_one_wins_the_other_hears_already_targeted() {
    root_or_skip!();
    let (_cg, [first, raced]) = targets("race", ["first", "raced"]);
    let (_dir, control) = private_control("race");
    let _p = run_at(
        &control,
        &["--cgroup", first.path.to_str().unwrap()],
        1,
        None,
    );
    let bin = spot_sim_bin();
    let add = || {
        Command::new(&bin)
            .args(["target", "add", "--cgroup"])
            .arg(&raced.path)
            .arg("--control")
            .arg(&control)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let rounds = 10;
    for round in 0..rounds {
        let (a, b) = (add(), add());
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let won = outs.iter().filter(|o| o.status.success()).count();
        let texts: Vec<_> = outs
            .iter()
            .map(|o| format!("{}{}", stdout(o), stderr(o)))
            .collect();
        assert_eq!(won, 1, "round {round}: {texts:?}");
        let lost = outs.iter().find(|o| !o.status.success()).unwrap();
        assert!(
            stderr(lost).contains("already targeted"),
            "round {round}: {texts:?}"
        );
        let name = format!(
            "cgroup /{}",
            raced.path.strip_prefix(cgroup2_mount()).unwrap().display()
        );
        let (out, _) = spot_sim(&[
            "target",
            "remove",
            &name,
            "--control",
            control.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    println!("FIGURE add race: {rounds} rounds of two concurrent adds: one added, one \"already targeted\" each time");
}

/// A socket served by another user where a control socket is expected: the client refuses to
/// send it anything (it could otherwise take `trigger`/`target` requests and fake `status`).
#[test]
fn a_control_socket_served_by_another_user_is_not_talked_to() {
    root_or_skip!();
    let dir = private_dir("impostor");
    let path = dir.join("impostor.sock");
    let script = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
os.setuid(65534)
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.recv(65536)
        c.sendall(b'{"result":"status","pid":1,"targets":[]}\n')
    except OSError:
        pass
    c.close()
"#;
    let mut fake = Command::new("python3")
        .args(["-c", script, path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(fake.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let (status, _) = status_at(&path, "2s");
    let (trigger, _) = spot_sim(&["trigger", "--control", path.to_str().unwrap()]);
    let _ = fake.kill();
    let _ = fake.wait();
    assert!(!status.status.success());
    assert!(
        stderr(&status).contains("served by uid 65534"),
        "{}",
        stderr(&status)
    );
    assert_refused(&trigger, "served by uid 65534");
    println!(
        "FIGURE impostor socket: refused: {}",
        stderr(&trigger).trim()
    );
}
