//! Game days that stop themselves: a stop condition that comes to hold mid-rehearsal (a health
//! URL that fails, a real Prometheus whose query starts returning series), `--max-duration`,
//! and stop conditions that cannot work, refused before anything starts. Whether a target is
//! still redirected is decided by errno: from its private namespace with only `lo`, a connect
//! to the IMDS address that is not redirected fails with ENETUNREACH.

use spot_sim_tests::*;

/// A static HTTP server on loopback serving `dir` (python's http.server), once it answers.
fn serve_dir(dir: &Path, probe: &str) -> (Proc, u16) {
    let port = free_port();
    let mut p = spawn_logged(
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir),
    );
    first_answer(&mut p, &format!("http://127.0.0.1:{port}/{probe}"));
    (p, port)
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

/// Replaces `path`'s content in one step (a reader never sees half of it).
fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// The first connect is redirected (IPv6 is off by default: it is not).
fn assert_redirected(t: &Target, who: &str) {
    let got = imds_connects(Some(&t.path), &t.ns);
    assert_eq!(got[0], "redirected", "{who}: {got:?}");
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_failing_health_url_stops_run_mid_rehearsal_and_every_target_gets_the_real_imds_back() {
    root_or_skip!();
    let dir = ScratchDir::scratch_dir("stop-http").unwrap();
    let www = dir.join("www");
    fs::create_dir(&www).unwrap();
    fs::write(www.join("healthz"), "ok").unwrap();
    let (_server, port) = serve_dir(&www, "healthz");
    let health = format!("http:http://127.0.0.1:{port}/healthz");
    let (json, html) = (dir.join("stop.json"), dir.join("stop.html"));
    let (_cg, [a, b]) = targets("stop-http", ["a", "b"]);
    let mut run = run_on(
        &[&a, &b],
        &[
            "--stop-if",
            &health,
            // A condition that never holds does not get in the way.
            "--stop-if",
            "cmd:test -d /",
            "--stop-check-every",
            "500ms",
            "--interruption-in",
            "1h",
            "--metrics",
            "127.0.0.1:0",
            "--report",
            json.to_str().unwrap(),
            "--report",
            html.to_str().unwrap(),
        ],
    );
    assert_redirected(&a, "a, before");
    assert_redirected(&b, "b, before");

    // The service goes unhealthy mid-rehearsal.
    fs::remove_file(www.join("healthz")).unwrap();
    run.wait_for_log("stopped (stop-if)", Duration::from_secs(10));
    assert_not_redirected(Some(&a.path), &a.ns, "a, after the stop");
    assert_not_redirected(Some(&b.path), &b.ns, "b, after the stop");
    for t in [&a, &b] {
        assert_eq!(attached_programs(&t.path), Vec::<String>::new());
    }
    // It stays up and says so, and attaches nothing again.
    assert!(run.child.try_wait().unwrap().is_none(), "{}", run.log());
    let control = run.control.as_deref().unwrap().to_path_buf();
    let live = json_ok(
        Command::new(spot_sim_bin())
            .args(["report", "--json", "--control"])
            .arg(&control),
    );
    let condition = format!("{health}: answered 404");
    assert_eq!(live["stopped"]["reason"], "stop-if", "{live:#}");
    assert_eq!(live["stopped"]["condition"], condition.as_str());
    let status = output_ok(
        Command::new(spot_sim_bin())
            .args(["status", "--control"])
            .arg(&control),
    );
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains(&format!(
            "  STOPPED at {} (stop-if): {condition}",
            live["stopped"]["at"].as_str().unwrap()
        )),
        "{status}"
    );
    let metrics = metrics(&mut run);
    let series = format!("spot_sim_stopped{{reason=\"stop-if\",condition=\"{condition}\"}} 1");
    assert!(metrics.contains(&series), "{series} not in:\n{metrics}");
    let readd = Command::new(spot_sim_bin())
        .args([
            "target",
            "add",
            "--cgroup",
            a.path.to_str().unwrap(),
            "--control",
        ])
        .arg(&control)
        .output()
        .unwrap();
    assert!(!readd.status.success());
    assert!(
        stderr(&readd).contains("the game day was stopped"),
        "{}",
        stderr(&readd)
    );
    assert_not_redirected(Some(&a.path), &a.ns, "a, after a refused target add");

    run.signal(nix::sys::signal::Signal::SIGTERM);
    let status = run
        .wait_timeout(Duration::from_secs(10))
        .expect("run ended");
    assert_eq!(status.code(), Some(4), "{}", run.log());
    assert!(run.log().contains("stopped at "), "{}", run.log());
    let report = json_file(&json);
    assert_eq!(report["stopped"]["condition"], condition.as_str());
    let stopped_at = parse_time(report["stopped"]["at"].as_str().unwrap());
    assert!(stopped_at <= parse_time(report["generated_at"].as_str().unwrap()));
    // The page, in a real browser: the banner and one stop marker per target's timeline.
    let dom = chromium_dom(&html);
    assert_eq!(
        dom.matches("<g class=\"stop\" data-reason=\"stop-if\">")
            .count(),
        2,
        "{dom}"
    );
    assert!(
        dom.contains("<p class=\"stopped\"><strong>Stopped</strong>"),
        "{dom}"
    );
}

/// Prometheus from Debian's package, unpacked into target/tools by `cargo xtask test`.
fn prometheus_bin() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools/prometheus/root/usr/bin/prometheus");
    if p.exists() {
        return Some(p);
    }
    skip(&format!(
        "{} is missing: `cargo xtask test` installs it (xtask/src/deps.rs)",
        p.display()
    ));
    None
}

/// A real Prometheus on loopback scraping `target` every second, once it has a sample.
fn prometheus(bin: &Path, dir: &Path, target: u16) -> (Proc, u16) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let p = spawn_logged(
        Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
    );
    let query = format!("http://127.0.0.1:{port}/api/v1/query?query=checkout_errors");
    poll_until(Duration::from_secs(30), "Prometheus's first sample", || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "2", &query])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .contains("\"__name__\":\"checkout_errors\"")
            .then_some(())
    });
    (p, port)
}

#[test]
fn a_prometheus_query_stops_the_game_day_and_a_prometheus_that_does_not_answer_only_logs() {
    root_or_skip!();
    let Some(bin) = prometheus_bin() else { return };
    let dir = ScratchDir::scratch_dir("stop-prom").unwrap();
    let www = dir.join("www");
    fs::create_dir(&www).unwrap();
    write_atomically(&www.join("metrics"), "checkout_errors 0\n");
    let (_app, app_port) = serve_dir(&www, "metrics");
    let (_prom, prom_port) = prometheus(&bin, &dir, app_port);
    let server = format!("http://127.0.0.1:{prom_port}");

    // A query Prometheus refuses is a bad stop condition: refused before anything starts.
    let bad = exec_new(&["--stop-if", &format!("prom:{server} sum("), "--", "true"])
        .output()
        .unwrap();
    let err = stderr(&bad);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Prometheus refused the query") && err.contains("parse error"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let (_cg, [t]) = targets("stop-prom", ["t"]);
    let dead = closed_port();
    let mut run = run_on(
        &[&t],
        &[
            "--stop-if",
            &format!("prom:{server} checkout_errors > 3"),
            "--stop-if",
            &format!("prom:http://127.0.0.1:{dead} up == 0"),
            "--stop-check-every",
            "500ms",
            "--interruption-in",
            "1h",
        ],
    );
    // The Prometheus that does not answer is logged, and the game day goes on.
    run.wait_for_log("cannot be checked", Duration::from_secs(10));
    assert!(
        run.log()
            .contains(&format!("127.0.0.1:{dead} does not answer")),
        "{}",
        run.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(run.child.try_wait().unwrap().is_none());
    assert!(!run.log().contains("stopped ("), "{}", run.log());
    assert_redirected(&t, "while only the dead Prometheus fails");

    // The error count crosses the threshold: the next scrape, then the next check, stop it.
    write_atomically(&www.join("metrics"), "checkout_errors 7\n");
    run.wait_for_log("stopped (stop-if)", Duration::from_secs(20));
    let log = run.log();
    let line = log
        .lines()
        .find(|l| l.contains("stopped (stop-if)"))
        .unwrap();
    assert!(
        line.contains(&format!(
            "prom:{server} checkout_errors > 3: 1 series, like checkout_errors{{"
        )) && line.contains("} = 7"),
        "{line}"
    );
    assert_not_redirected(Some(&t.path), &t.ns, "after the stop");
    run.signal(nix::sys::signal::Signal::SIGTERM);
    let status = run
        .wait_timeout(Duration::from_secs(10))
        .expect("run ended");
    assert_eq!(status.code(), Some(4), "{}", run.log());
}

/// Connects to the IMDS address every 200 ms (for at most 15 s) until one is not redirected:
/// prints `[first, first_not_redirected]` by errno name.
const PROBE: &str = r#"
import errno, json, socket, time
def probe():
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect(("169.254.169.254", 80))
        r = "redirected" if s.getpeername()[0] == "169.254.169.254" else "connected elsewhere"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    s.close()
    return r
seen = [probe()]
end = time.monotonic() + 15
while time.monotonic() < end:
    r = probe()
    if r != "redirected":
        seen.append(r)
        break
    time.sleep(0.2)
print(json.dumps(seen))
"#;

#[test]
fn max_duration_detaches_exec_mid_rehearsal_whatever_the_timeline_says() {
    root_or_skip!();
    let dir = ScratchDir::scratch_dir("stop-max").unwrap();
    let json = dir.join("max.json");
    let started = SystemTime::now();
    let out = exec_new(&[
        "--max-duration",
        "5s",
        "--start-in",
        "1s",
        "--interruption-in",
        "1h",
        "--report",
        json.to_str().unwrap(),
        "--",
        "python3",
        "-c",
        PROBE,
    ])
    .output()
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let seen: Vec<String> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{err}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(seen, ["redirected", "ENETUNREACH"], "{err}");
    let report = json_file(&json);
    assert_eq!(report["stopped"]["reason"], "max-duration", "{report:#}");
    assert_eq!(report["stopped"]["condition"], "--max-duration 5s passed");
    // Not before the five seconds, and not long after.
    let at = parse_time(report["stopped"]["at"].as_str().unwrap());
    let since = (at - time::OffsetDateTime::from(started)).as_seconds_f64();
    assert!(
        (5.0..7.5).contains(&since),
        "stopped {since} s after the start\n{err}"
    );
    // The command's own status stays in the report.
    assert_eq!(report["targets"][0]["command_status"], 0, "{report:#}");
    assert!(err.contains("stopped at "), "summary: {err}");
}

/// The transient cgroups exec `pid` made that are still there.
fn exec_cgroups_of(pid: u32) -> Vec<String> {
    let prefix = format!("spot-sim-exec-{pid}-");
    fs::read_dir(cgroup2_mount())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn bad_stop_conditions_are_refused_before_anything_starts() {
    root_or_skip!();
    let dir = ScratchDir::scratch_dir("stop-bad").unwrap();
    let marker = dir.join("ran");
    let touch = format!("touch {}", marker.display());
    let dead = format!("127.0.0.1:{}", closed_port());
    let prom_dead = format!("prom:http://{dead} up");
    let http_dead = format!("http:http://{dead}/healthz");
    // (arguments, exit status, what the one line says)
    let cases: [(&[&str], i32, &str); 10] = [
        (
            &["--stop-if", "./check.sh"],
            2,
            "write cmd:COMMAND, http:URL or prom:URL QUERY",
        ),
        (&["--stop-if", "cmd:"], 2, "needs a command"),
        (
            &["--stop-if", "http:https://127.0.0.1/healthz"],
            2,
            "https is not supported",
        ),
        (
            &["--stop-if", "prom:http://127.0.0.1:9090"],
            2,
            "has no query",
        ),
        (&["--stop-check-every", "0s"], 2, "give 100ms or more"),
        (&["--max-duration", "0s"], 2, "would stop before it starts"),
        (
            &["--stop-if", "cmd:no-such-check-spot-sim"],
            1,
            "the shell cannot run it (exit 127",
        ),
        (
            &["--stop-if", "cmd:exit 1"],
            1,
            "would stop at once: cmd:exit 1: exited 1",
        ),
        (&["--stop-if", &http_dead], 1, "would stop at once"),
        (
            &["--stop-if-unreachable", "--stop-if", &prom_dead],
            1,
            "does not answer",
        ),
    ];
    for (args, code, needle) in cases {
        let mut all = vec!["exec", "--netns", "new"];
        all.extend_from_slice(args);
        all.extend(["--", "sh", "-c", &touch]);
        let child = Command::new(spot_sim_bin())
            .args(&all)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let log = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{all:?}: {log}");
        assert!(!log.contains("panicked"), "{log}");
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("spot-sim:") || l.starts_with("error:"))
            .collect();
        assert_eq!(lines.len(), 1, "one error line: {log}");
        assert!(
            lines[0].contains(needle),
            "{needle:?} not in {:?}",
            lines[0]
        );
        assert!(!marker.exists(), "{all:?} started the command");
        assert_eq!(exec_cgroups_of(pid), Vec::<String>::new(), "{all:?}");
    }
    // `run` likewise: nothing attached to the target.
    let (_cg, [t]) = targets("stop-bad", ["t"]);
    let out = Command::new(spot_sim_bin())
        .args([
            "run",
            "--cgroup",
            t.path.to_str().unwrap(),
            "--stop-if",
            "cmd:exit 1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("would stop at once"),
        "{}",
        stderr(&out)
    );
    assert_eq!(attached_programs(&t.path), Vec::<String>::new());
}
