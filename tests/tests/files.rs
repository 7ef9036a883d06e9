//! Root writes and reads files safely (issue #20), replayed: a symlink or a FIFO planted at the
//! report path, FIFOs as the files spot-sim reads, dates near the year 9999, a huge node list,
//! a live report of a flood, bidi and XML-invalid process names, `run --experiment --report`;
//! and a refused `--control` path that stops spot-sim before anything runs (issue #22).
//!
//! Clients that might reach the IMDS address run under `exec --netns new` or in a target's
//! private namespace (only `lo`).

use nix::sys::signal::Signal;
use spot_sim_tests::*;

// ---------------------------------------------------------------------------------------------
// Fixtures of this file.

/// spot-sim with `args`, ended by `timeout` if it hangs (a regression must fail, not hang).
fn spot_sim(args: &[&str]) -> (Output, Duration) {
    let t0 = Instant::now();
    // SIGKILL 5 s after timeout's SIGTERM: a spot-sim stuck on a FIFO ignores SIGTERM.
    let out = Command::new("timeout")
        .args(["-k", "5", "20"])
        .arg(spot_sim_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out, t0.elapsed())
}

/// A bad input's answer: exit 1, one `spot-sim:` line on stderr naming `needle`, no panic,
/// and at once (a FIFO read would hang until `timeout` ended it with 124).
fn assert_refused(o: &Output, took: Duration, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "exit status; stderr: {err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<_> = err.lines().filter(|l| l.starts_with("spot-sim:")).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {err}");
}

/// A scratch folder with a file `victim` that must stay as it is.
fn with_victim(tag: &str) -> (ScratchDir, PathBuf) {
    let dir = ScratchDir::scratch_dir(tag).unwrap();
    let victim = dir.join("victim");
    fs::write(&victim, "precious").unwrap();
    (dir, victim)
}

fn mkfifo(path: &Path) {
    output_ok(Command::new("mkfifo").arg(path));
}

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// Creates the folder `dir/name` with `mode` (set after, so the umask has no say).
fn folder(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// `spot-sim exec --netns new OPTION PATH -- sh -c SCRIPT` (see [`spot_sim`]).
fn exec_sh_with(option: &str, path: &Path, script: &str) -> (Output, Duration) {
    let path = path.to_str().unwrap();
    spot_sim(&[
        "exec", "--netns", "new", option, path, "--", "sh", "-c", script,
    ])
}

/// [`exec_sh_with`] a command that creates the file `marker` if it ever runs.
fn exec_touching(marker: &Path, option: &str, path: &Path) -> (Output, Duration) {
    exec_sh_with(option, path, &format!("touch {}", marker.display()))
}

/// `spot-sim serve --scenario FILE` on any loopback port.
fn serve_scenario(file: &Path) -> (Output, Duration) {
    let file = file.to_str().unwrap();
    spot_sim(&["serve", "--listen", "127.0.0.1:0", "--scenario", file])
}

/// `spot-sim experiment plan FILE --nodes n-1`.
fn plan_on_n1(file: &Path) -> (Output, Duration) {
    let file = file.to_str().unwrap();
    spot_sim(&["experiment", "plan", file, "--nodes", "n-1"])
}

/// `spot-sim run --experiment FILE --node-name n-1`.
fn run_as_n1(file: &Path) -> (Output, Duration) {
    let file = file.to_str().unwrap();
    spot_sim(&["run", "--experiment", file, "--node-name", "n-1"])
}

// ---------------------------------------------------------------------------------------------
// 1. A symlink at the report path, before and after start; the report's mode.

#[test]
fn a_symlink_at_the_report_path_before_start_is_refused_and_nothing_runs() {
    root_or_skip!();
    let (dir, victim) = with_victim("rep-link-before");
    let link = dir.join("r.json");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let marker = dir.join("ran");
    let (out, took) = exec_touching(&marker, "--report", &link);
    assert_refused(&out, took, "symbolic link");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    assert!(!marker.exists(), "the command ran");
}

#[test]
fn a_symlink_planted_after_start_is_not_followed_the_report_is_refused_in_one_line() {
    root_or_skip!();
    let (dir, victim) = with_victim("rep-link-after");
    // A root-only folder a dangling link points into: root must not create a file there.
    let private = folder(&dir, "private", 0o700);
    // A sticky folder anyone can write, as /tmp; the links are planted there by uid 65534.
    let shared = folder(&dir, "shared", 0o1777);
    for (report, target) in [
        (dir.join("r.json"), victim.clone()),
        (shared.join("r.html"), victim.clone()),
        (shared.join("new.json"), private.join("created.json")),
    ] {
        // The workload plants the link while spot-sim runs, as another user would.
        let script = format!(
            "setpriv --reuid=65534 --regid=65534 --clear-groups ln -s {} {} 2>/dev/null || ln -s {} {}",
            target.display(),
            report.display(),
            target.display(),
            report.display()
        );
        let (out, _) = exec_sh_with("--report", &report, &script);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(
            err.lines().filter(|l| l.contains("--report")).count(),
            1,
            "{err}"
        );
        assert!(fs::symlink_metadata(&report).unwrap().is_symlink());
    }
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(
        !private.join("created.json").exists(),
        "root followed a dangling link"
    );
}

#[test]
fn a_report_is_0600_under_umask_000_and_report_mode_sets_another() {
    root_or_skip!();
    let dir = ScratchDir::scratch_dir("rep-mode").unwrap();
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    let mut cmd = exec_new(&["--report", a.to_str().unwrap(), "--", "true"]);
    Placement::new().umask(0).apply(&mut cmd);
    output_ok(&mut cmd);
    println!("FIGURE report mode under umask 000: {:o}", mode_of(&a));
    assert_eq!(mode_of(&a), 0o600);
    output_ok(exec_new(&[
        "--report",
        b.to_str().unwrap(),
        "--report-mode",
        "0640",
        "--",
        "true",
    ]));
    assert_eq!(mode_of(&b), 0o640);
    let names: Vec<_> = fs::read_dir(&*dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 2, "a temporary file was left: {names:?}");
    let (out, took) = spot_sim(&["exec", "--report-mode", "4755", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(took < Duration::from_secs(5));
}

#[test]
fn a_loose_report_folder_is_refused_at_start_naming_a_safe_one() {
    root_or_skip!();
    let dir = ScratchDir::scratch_dir("rep-loose").unwrap();
    let loose = folder(&dir, "loose", 0o777);
    let report = loose.join("r.json");
    let (out, took) = spot_sim(&["exec", "--report", report.to_str().unwrap(), "--", "true"]);
    assert_refused(&out, took, "without the sticky bit");
    assert!(!report.exists());
}

// ---------------------------------------------------------------------------------------------
// 2. A FIFO at the report path.

#[test]
fn a_fifo_at_the_report_path_never_hangs_spot_sim_exits_within_a_second_of_sigterm_detached() {
    root_or_skip!();
    let cg = TestCgroup::new("rep-fifo").unwrap();
    let t = target(&cg, "t");
    let dir = ScratchDir::scratch_dir("rep-fifo").unwrap();
    let report = dir.join("r.json");
    // At start: refused at once.
    mkfifo(&report);
    let (out, took) = spot_sim(&[
        "run",
        "--cgroup",
        t.path.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_refused(&out, took, "FIFO");
    assert!(attached_programs(&t.path).is_empty());
    fs::remove_file(&report).unwrap();
    // Planted while spot-sim runs: at the end, refused in one line, not opened.
    let mut p = run_on(&[&t], &["--report", report.to_str().unwrap()]);
    assert!(!attached_programs(&t.path).is_empty());
    mkfifo(&report);
    p.signal(Signal::SIGTERM);
    let sent = Instant::now();
    let status = p.wait_timeout(Duration::from_secs(10));
    let took = sent.elapsed();
    println!("FIGURE exit after SIGTERM with a FIFO at the report path: {took:?}");
    let status = status.expect("spot-sim hung on the FIFO");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(status.code(), Some(1), "{}", p.log());
    assert!(p.log().contains("FIFO"), "{}", p.log());
    assert!(attached_programs(&t.path).is_empty(), "left attached");
}

// ---------------------------------------------------------------------------------------------
// 3. FIFOs and files outside the scenario's folder as user-data-file; a FIFO as experiment.

#[test]
fn a_fifo_as_user_data_file_or_experiment_file_is_refused_at_once() {
    let dir = ScratchDir::scratch_dir("read-fifo").unwrap();
    mkfifo(&dir.join("boot.sh"));
    let scenario = dir.join("s.toml");
    fs::write(&scenario, "[metadata]\nuser-data-file = \"boot.sh\"\n").unwrap();
    let (out, took) = serve_scenario(&scenario);
    assert_refused(&out, took, "FIFO");
    let experiment = dir.join("e.toml");
    mkfifo(&experiment);
    let (out, took) = plan_on_n1(&experiment);
    assert_refused(&out, took, "FIFO");
    let (out, took) = run_as_n1(&experiment);
    assert_refused(&out, took, "FIFO");
}

#[test]
fn user_data_file_outside_the_scenarios_folder_is_refused_whatever_it_is() {
    let dir = ScratchDir::scratch_dir("read-outside").unwrap();
    let cm = dir.join("configmap");
    fs::create_dir(&cm).unwrap();
    fs::write(dir.join("secret"), "root only").unwrap();
    fs::set_permissions(dir.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("../secret", cm.join("link.sh")).unwrap();
    for file in ["/etc/shadow", "../secret", "link.sh"] {
        let scenario = cm.join("s.toml");
        fs::write(
            &scenario,
            format!("[metadata]\nuser-data-file = \"{file}\"\n"),
        )
        .unwrap();
        let (out, took) = serve_scenario(&scenario);
        assert_refused(&out, took, "outside the scenario file's directory");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Dates near the ends of what `time` holds.

#[test]
fn a_start_at_near_9999_or_before_1970_is_one_line_and_exit_1_in_plan_and_run() {
    let dir = ScratchDir::scratch_dir("dates").unwrap();
    for at in [
        "9999-12-31T23:00:00Z",
        "9999-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z",
        "2999-12-31T23:59:59-01:00",
        "0000-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
    ] {
        let file = dir.join("e.toml");
        fs::write(
            &file,
            format!("[experiment]\nname = \"gd\"\nnodes = [\"n-1\"]\nstart-at = \"{at}\"\npods = [\"shop/x\"]\n"),
        )
        .unwrap();
        let (out, took) = plan_on_n1(&file);
        assert_refused(&out, took, "experiment.start-at");
        assert!(stderr(&out).contains("1970-01-01 to 2999-12-31"), "{at}");
        let (out, took) = run_as_n1(&file);
        assert_refused(&out, took, "experiment.start-at");
    }
    let (out, took) = spot_sim(&["exec", "--start-at", "9999-12-31T23:00:00Z", "--", "true"]);
    assert_refused(&out, took, "start-at");
}

// ---------------------------------------------------------------------------------------------
// 5. A node list of 150k names.

/// 150,000 distinct node names short enough for a 1 MiB file: every 3-character name, then
/// 4-character ones.
fn node_names(n: usize) -> Vec<String> {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let three = A.iter().flat_map(|a| {
        A.iter().flat_map(move |b| {
            A.iter()
                .map(move |c| String::from_utf8(vec![*a, *b, *c]).unwrap())
        })
    });
    let four = A.iter().flat_map(|a| {
        A.iter().flat_map(move |b| {
            A.iter().flat_map(move |c| {
                A.iter()
                    .map(move |d| String::from_utf8(vec![*a, *b, *c, *d]).unwrap())
            })
        })
    });
    three.chain(four).take(n).collect()
}

#[test]
fn experiment_plan_over_150k_listed_nodes_takes_under_a_second() {
    let dir = ScratchDir::scratch_dir("plan-150k").unwrap();
    let names = node_names(150_000);
    let list = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(",");
    let file = dir.join("e.toml");
    fs::write(
        &file,
        format!("[experiment]\nname=\"gd\"\nnodes=[{list}]\nstart-at=\"2030-01-01T00:00:00Z\"\npods=[\"shop/x\"]\n"),
    )
    .unwrap();
    assert!(fs::metadata(&file).unwrap().len() < 1 << 20);
    let input = dir.join("nodes");
    fs::write(&input, names.join("\n")).unwrap();
    let (status, stdout, cpu, wall) = cpu_time_of(
        Command::new(spot_sim_bin())
            .args(["experiment", "plan"])
            .arg(&file)
            .args(["--nodes", "-"])
            .stdin(fs::File::open(&input).unwrap()),
    );
    // CPU time, as the issue measured (55 s of CPU): the machine's load stretches wall time.
    println!(
        "FIGURE experiment plan, 150k listed nodes x 150k given: {cpu:?} of CPU ({wall:?} wall)"
    );
    assert!(status.success());
    let selected = stdout.lines().filter(|l| l.ends_with(" selected")).count();
    assert_eq!(selected, 150_000);
    assert!(cpu < Duration::from_secs(1), "took {cpu:?} of CPU");
}

/// Runs `cmd` to its end: its status, its stdout, and the CPU time (user + system) it used,
/// from its own `wait4` (other tests' children are not counted), and the wall time.
fn cpu_time_of(cmd: &mut Command) -> (std::process::ExitStatus, String, Duration, Duration) {
    use std::os::unix::process::ExitStatusExt;
    let t0 = Instant::now();
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by the wait4 below, which also reads its CPU time"
    )]
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child we spawned, with valid pointers.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(rc, child.id() as i32);
    let wall = t0.elapsed();
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    (
        std::process::ExitStatus::from_raw(status),
        reader.join().unwrap(),
        cpu,
        wall,
    )
}

// ---------------------------------------------------------------------------------------------
// 6. The live report of 16 targets × 5,000 requests.

/// 5,000 requests over keep-alive to 200 distinct 200-character paths (the journal keeps 256
/// distinct ones), reconnecting when the server closes; 50 failures in a row end it.
const FLOOD: &str = r#"
import http.client, json, sys
n = int(sys.argv[1]); done = 0; c = None; failed = 0
while done < n and failed < 50:
    try:
        if c is None:
            c = http.client.HTTPConnection("169.254.169.254", 80, timeout=10)
        c.request("GET", "/latest/" + ("p" * 190) + "%05d" % (done % 200))
        c.getresponse().read()
        done += 1; failed = 0
    except (http.client.HTTPException, OSError):
        c = None; failed += 1
print(json.dumps({"done": done}))
"#;

#[test]
fn a_live_report_of_16_targets_x_5000_requests_is_complete_bounded_and_its_memory_released() {
    let _heavy = heavy_or_skip!();
    let cg = TestCgroup::new("live-flood").unwrap();
    let names: Vec<String> = (0..16).map(|i| format!("t{i}")).collect();
    let ts: Vec<Target> = names.iter().map(|n| target(&cg, n)).collect();
    // The instance keeps answering however long a loaded machine takes to send 80,000 requests.
    let p = run_on(&ts.iter().collect::<Vec<_>>(), &["--interruption-in", "1h"]);
    let control = p.control.as_deref().unwrap().to_path_buf();
    std::thread::scope(|s| {
        for t in &ts {
            s.spawn(move || {
                let r = python_in(t, FLOOD, &["5000"]);
                assert_eq!(r["done"], 5000);
            });
        }
    });
    let report = || {
        Command::new(spot_sim_bin())
            .args(["report", "--json", "--control"])
            .arg(&control)
            .output()
            .unwrap()
    };
    let first = report();
    // One client alone gets the whole answer, within what a client reads (before: 22.7 MB,
    // refused at 16 MiB).
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(first.stdout.len() < 16 << 20, "{}", first.stdout.len());
    let before = rss_kib(p.pid());
    let mut sizes = vec![first.stdout.len()];
    for _round in 0..2 {
        let outs: Vec<Output> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4).map(|_| s.spawn(report)).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for o in &outs {
            assert!(
                o.status.success(),
                "a concurrent report failed: {}",
                stderr(o)
            );
        }
        sizes.extend(outs.iter().map(|o| o.stdout.len()));
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(p.pid());
    println!(
        "FIGURE live report of 16 x 5000: {} bytes (pretty JSON), RSS {before} KiB after one, {after} KiB after 8 more",
        first.stdout.len()
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let r = json_of(&first);
    let targets = r["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 16);
    for t in targets {
        assert_eq!(t["requests_total"], 5000);
        let listed = t["requests"].as_array().unwrap().len();
        assert!((1..=200).contains(&listed), "{listed}");
    }
    assert!(r["not_listed"]["requests"].as_u64().unwrap() >= 16 * 4800);
    assert!(sizes.iter().all(|s| *s < 16 << 20 && *s > 0), "{sizes:?}");
    assert!(
        after < before + 48 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Bidi and XML-invalid process names.

#[test]
fn a_u202e_and_a_ufffe_program_name_are_escaped_in_the_terminal_and_the_svg_parses_as_xml() {
    root_or_skip!();
    let dir = ScratchDir::scratch_dir("names").unwrap();
    let rlo = dir.join("\u{202e}lruc");
    let nonchar = dir.join("x\u{fffe}y");
    for p in [&rlo, &nonchar] {
        std::os::unix::fs::symlink("/bin/true", p).unwrap();
    }
    let (svg, html) = (dir.join("r.svg"), dir.join("r.html"));
    let script = format!(
        "curl -s http://169.254.169.254/latest/meta-data/spot/instance-action >/dev/null; '{}'; '{}'; sleep 0.3",
        rlo.display(),
        nonchar.display()
    );
    let out = exec_new(&[
        "--report",
        svg.to_str().unwrap(),
        "--report",
        html.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &script,
    ])
    .output()
    .unwrap();
    let err = stderr(&out);
    println!("{err}");
    assert!(err.contains("\\u{202e}lruc"), "{err}");
    for raw in ['\u{202e}', '\u{fffe}'] {
        assert!(!err.contains(raw), "{raw:?} reached the terminal: {err}");
    }
    let parse = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1]); print('ok')",
        ])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        parse.status.success(),
        "the SVG is not XML: {}",
        stderr(&parse)
    );
    let svg_text = fs::read_to_string(&svg).unwrap();
    let html_text = fs::read_to_string(&html).unwrap();
    for text in [&svg_text, &html_text] {
        assert!(!text.contains('\u{fffe}') && !text.contains('\u{202e}'));
    }
    assert!(svg_text.contains("\\u{fffe}") || html_text.contains("\\u{fffe}"));
}

// ---------------------------------------------------------------------------------------------
// 8. `run --experiment --report FILE`.

#[test]
fn run_experiment_writes_its_report_when_it_ends() {
    root_or_skip!();
    let root = ScratchDir::scratch_dir("gd-report-root").unwrap();
    fs::create_dir_all(root.join("var/log/pods")).unwrap();
    let cgroups = TestCgroup::new("gd-report").unwrap();
    cgroups
        .child("kubepods.slice/kubepods-burstable.slice")
        .unwrap();
    let start = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let start = start
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let file = root.join("e.toml");
    fs::write(
        &file,
        format!("[experiment]\nname = \"gd\"\nnodes = [\"n-1\"]\nstart-at = \"{start}\"\npods = [\"shop/x-*\"]\n"),
    )
    .unwrap();
    let report = root.join("r.json");
    let control = control_path("gd-report");
    let mut p = spawn_logged(
        Command::new(spot_sim_bin())
            .args(["run", "--experiment"])
            .arg(&file)
            .args(["--node-name", "n-1"])
            .args(["--host-root", root.to_str().unwrap()])
            .args(["--cgroup-root", cgroups.path.to_str().unwrap()])
            .arg("--control")
            .arg(&*control)
            .arg("--report")
            .arg(&report)
            .stdout(Stdio::null()),
    );
    p.wait_for_log("serving 0 target", Duration::from_secs(60));
    p.signal(Signal::SIGTERM);
    p.wait_timeout(Duration::from_secs(20)).expect("exits");
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&report).expect("the report was written"))
            .unwrap();
    assert!(json["targets"].is_array(), "{json}");
    assert_eq!(mode_of(&report), 0o600);
}

// ---------------------------------------------------------------------------------------------
// 9. The control path is checked before anything runs (issue #22).

#[test]
fn a_refused_control_path_stops_spot_sim_before_anything_is_attached_or_run() {
    root_or_skip!();
    let cg = TestCgroup::new("ctl-first").unwrap();
    let t = target(&cg, "t");
    let dir = ScratchDir::scratch_dir("ctl-first").unwrap();
    let loose = folder(&dir, "loose", 0o777);
    let sock = loose.join("c.sock");
    let marker = dir.join("ran");
    let (out, took) = exec_touching(&marker, "--control", &sock);
    assert_refused(&out, took, "private directory");
    assert!(!stderr(&out).contains("chmod"), "{}", stderr(&out));
    assert!(!marker.exists(), "the command ran");
    // `run`: its target never sees an attach, so nothing is left to detach either.
    let watcher = std::thread::spawn({
        let path = t.path.clone();
        move || {
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut seen = false;
            while Instant::now() < deadline {
                seen |= !attached_programs(&path).is_empty();
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        }
    });
    let (out, took) = spot_sim(&[
        "run",
        "--control",
        sock.to_str().unwrap(),
        "--cgroup",
        t.path.to_str().unwrap(),
    ]);
    assert_refused(&out, took, "private directory");
    assert!(
        !watcher.join().unwrap(),
        "the target was attached before the refusal"
    );
    assert!(!sock.exists());
}
