//! Real IMDS clients nobody on this project wrote, through the real redirect: the AWS SDK for
//! JavaScript v3 (`@aws-sdk/ec2-metadata-service`, which asks for every path as `//latest/…`)
//! cloud-init's EC2 datasource (which probes dated API versions and crawls the whole tree) and
//! Canonical's `ec2metadata` (cloud-guest-utils, which asks everything under `/2009-04-04/`).
//! Each runs under `spot-sim exec --netns new`, in a namespace with only loopback, in both
//! IMDSv2 modes. `cargo xtask test` installs them into target/tools (xtask/src/deps.rs).

use spot_sim_tests::*;

/// What the scenario sets, so the answers cannot come from anyone's defaults.
const SCENARIO: &str = r##"
[scenario]
interruption-in = "2m"
action = "stop"

[metadata]
instance-id = "i-0c1a2b3c4d5e6f7a8"
availability-zone = "eu-west-1b"
user-data = "#cloud-config\nruncmd: [true]\n"
"##;

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools")
}

/// The tool at `path` (under target/tools), or a skip (a failure under CI) naming the fix.
fn tool(path: &str) -> Option<PathBuf> {
    let p = tools().join(path);
    if !p.exists() {
        let fix = "`cargo xtask test` installs it (xtask/src/deps.rs)";
        skip(&format!("{} is missing: {fix}", p.display()));
        return None;
    }
    Some(p)
}

/// The first line of a root-only test of an installed client: the tool at `path`, or a skip.
macro_rules! tool_or_skip {
    ($path:expr) => {{
        root_or_skip!();
        let Some(p) = tool($path) else { return };
        p
    }};
}

/// One of the client scripts in tests/clients.
fn client_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

/// The scenario in a file of its own, removed on drop.
fn scenario_file() -> OwnedPath {
    OwnedPath::file("spot", "toml", SCENARIO).unwrap()
}

/// Runs `client` under `spot-sim exec --netns new` with the scenario; returns its JSON line
/// and spot-sim's log, which records every request (debug: info keeps one a second).
fn exec(
    tag: &str,
    mode: &str,
    client: &[&str],
    env: &[(&str, &Path)],
) -> (serde_json::Value, String) {
    let scenario = scenario_file();
    let mut cmd = exec_new(&["--imdsv2", mode, "--scenario"]);
    cmd.arg(&*scenario)
        .arg("--")
        .args(client)
        .env("RUST_LOG", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{tag} ({mode}) failed:\n{log}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{tag}: no JSON line ({e}) in {stdout:?}\n{log}"));
    (v, log)
}

/// The client asked 169.254.169.254 from a namespace with only loopback: an answer at all means
/// the redirect took it to spot-sim (the "redirected" event line may come after exec's end).
fn assert_through_the_redirect(log: &str, mode: &str) {
    assert!(
        log.contains("PUT /latest/api/token → 200"),
        "no token ({mode}):\n{log}"
    );
}

#[test]
fn real_client_javascript_sdk_reads_the_instance_and_the_notice_in_both_modes() {
    let modules = tool_or_skip!("node/node_modules");
    let _ = tool("node/node_modules/@aws-sdk/ec2-metadata-service/package.json").unwrap();
    let script = client_script("sdk_js.js");
    for mode in ["optional", "required"] {
        let (v, log) = exec(
            "sdk-js",
            mode,
            &["node", script.to_str().unwrap()],
            &[("NODE_PATH", &modules)],
        );
        assert_eq!(v["instance_id"], "i-0c1a2b3c4d5e6f7a8", "{v}");
        assert_eq!(v["region"], "eu-west-1", "{v}");
        assert_eq!(v["spot"]["action"], "stop", "{v}");
        parse_time(v["spot"]["time"].as_str().unwrap());
        assert_eq!(v["token"], true, "{v}");
        assert_through_the_redirect(&log, mode);
        // The SDK writes every path as `//latest/...`; they answered as single slashes. The
        // log holds every request (the token, the id, the region, the notice at least), so
        // no 404 can hide between two logged ones.
        let answered = log.matches(" → 200 (IMDSv").count();
        assert!(answered >= 4, "{mode}: {answered} requests logged:\n{log}");
        assert!(!log.contains("→ 404"), "{mode}: a 404 on the way:\n{log}");
    }
}

#[test]
fn real_client_cloud_init_crawls_a_dated_version_with_the_notice_in_both_modes() {
    let python = tool_or_skip!("cloud-init/venv/bin/python");
    let script = client_script("cloud_init_ec2.py");
    let packages = tool("cloud-init/root/usr/lib/python3/dist-packages").unwrap();
    for mode in ["optional", "required"] {
        let (v, log) = exec(
            "cloud-init",
            mode,
            &[
                python.to_str().unwrap(),
                script.to_str().unwrap(),
                packages.to_str().unwrap(),
            ],
            &[],
        );
        // cloud-init 22.4 probes 2021-03-23 first; it found it.
        assert_eq!(v["api_version"], "2021-03-23", "{v}");
        assert_eq!(v["token"], true, "{v}");
        assert_eq!(v["instance_id"], "i-0c1a2b3c4d5e6f7a8", "{v}");
        assert_eq!(v["region"], "eu-west-1", "{v}");
        assert_eq!(v["identity_region"], "eu-west-1", "{v}");
        assert_eq!(v["zone_id"], "euw1-az2", "{v}");
        assert_eq!(v["spot"]["action"], "stop", "{v}");
        assert_eq!(v["user_data"], "#cloud-config\nruncmd: [true]\n", "{v}");
        assert_eq!(
            v["signed_forms"],
            serde_json::json!(["pkcs7", "rsa2048", "signature"])
        );
        assert_eq!(v["macs"].as_array().map(Vec::len), Some(1), "{v}");
        assert_through_the_redirect(&log, mode);
    }
}

#[test]
fn real_client_canonical_ec2metadata_reads_the_2009_04_04_tree_in_both_modes() {
    let script = tool_or_skip!("cloud-guest-utils/root/usr/bin/ec2metadata");
    for mode in ["optional", "required"] {
        let scenario = scenario_file();
        let mut cmd = exec_new(&["--imdsv2", mode, "--scenario"]);
        cmd.arg(&*scenario).args(["--", "python3"]).arg(&script);
        cmd.args([
            "--instance-id",
            "--availability-zone",
            "--mac",
            "--user-data",
        ]);
        // Every request at debug (info shows one a second).
        let (stdout, log) = debug_run(&mut cmd, mode);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines[..2],
            ["i-0c1a2b3c4d5e6f7a8", "eu-west-1b"],
            "{mode}: {stdout}"
        );
        assert_eq!(lines[2].len(), 17, "a MAC: {stdout}");
        assert!(stdout.contains("runcmd: [true]"), "{mode}: {stdout}");
        assert!(
            log.contains("GET /2009-04-04/meta-data/instance-id → 200"),
            "{mode}:\n{log}"
        );
        assert_through_the_redirect(&log, mode);
    }
}
