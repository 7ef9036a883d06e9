//! What a handler did after it read the notice, end to end: real handlers under
//! `spot-sim exec --netns new`, the kernel's record of their programs (with argv) and
//! connects, `--expect-react` on what the reaction must be, and no verdict without an
//! expectation.

use spot_sim_tests::*;

/// A model of kube-spot-termination-notice-handler's `entrypoint.sh`
/// (github.com/kube-aws/kube-spot-termination-notice-handler, as forked by egeland and
/// pusher), step for step in our own words: check NAMESPACE and POD_NAME; ask the API server
/// for this pod's node with `kubectl get pod`; read the zone, instance id and type from IMDS;
/// poll `spot/termination-time` with curl every POLL_INTERVAL seconds until it answers 200;
/// log the moment with `date`; notify Slack when SLACK_URL is set; `kubectl drain` the node
/// with its flags; sleep 200 s so the script does not loop. It is run unchanged: everything
/// it is given comes from its environment and PATH.
const KSTNH: &str = r#"#!/bin/sh
POD_NAME=${POD_NAME:-""}
VERBOSE=${VERBOSE:-0}
verbose () {
  [ "${VERBOSE}" -eq 1 ]
}

echo 'Polls the EC2 Spot termination notice; drains this Kubernetes node once it is there.'
if [ "${NAMESPACE}" = "" ]; then
  echo '[ERROR] NAMESPACE is not set (set it in the PodSpec from the downward API)' 1>&2
  exit 1
fi
if [ "${POD_NAME}" = "" ]; then
  echo '[ERROR] POD_NAME is not set (set it in the PodSpec from the downward API)' 1>&2
  exit 1
fi

NODE_NAME=$(kubectl --namespace "${NAMESPACE}" get pod "${POD_NAME}" --output jsonpath="{.spec.nodeName}")
if [ "${NODE_NAME}" = "" ]; then
  echo "[ERROR] cannot find the node of pod ${POD_NAME} in namespace ${NAMESPACE}" 1>&2
  exit 1
fi

DETACH_ASG=${DETACH_ASG:-false}
AZ=$(curl -s "${AZ_URL:-http://169.254.169.254/latest/meta-data/placement/availability-zone}")
REGION=$(echo "${AZ}" | sed 's/[a-z]$//')
INSTANCE_ID=$(curl -s "${INSTANCE_ID_URL:-http://169.254.169.254/latest/meta-data/instance-id}")
INSTANCE_TYPE=$(curl -s "${INSTANCE_TYPE_URL:-http://169.254.169.254/latest/meta-data/instance-type}")
if [ "${DETACH_ASG}" != "false" ]; then
  ASG_NAME=$(aws --output text --region "${REGION}" autoscaling describe-auto-scaling-instances --instance-ids "${INSTANCE_ID}" | awk '{print $2}')
fi
if [ -z "${CLUSTER}" ]; then
  echo "[WARNING] CLUSTER is not set: the notification will not name the cluster" 1>&2
else
  CLUSTER_INFO=" (${CLUSTER})"
fi

echo "\`kubectl drain ${NODE_NAME}\` runs once a termination notice is there."
POLL_INTERVAL=${POLL_INTERVAL:-5}
NOTICE_URL=${NOTICE_URL:-http://169.254.169.254/latest/meta-data/spot/termination-time}
echo "Polling ${NOTICE_URL} every ${POLL_INTERVAL} second(s)"
while http_status=$(curl -o /dev/null -w '%{http_code}' -sL "${NOTICE_URL}"); [ "${http_status}" -ne 200 ]; do
  verbose && echo "$(date): ${http_status}"
  sleep "${POLL_INTERVAL}"
done

echo "$(date): ${http_status}"
MESSAGE="Spot Termination${CLUSTER_INFO}: ${NODE_NAME}, Instance: ${INSTANCE_ID}, Instance Type: ${INSTANCE_TYPE}, AZ: ${AZ}"
if [ "${SLACK_URL}" != "" ]; then
  curl -X POST --data "payload={\"text\":\"${MESSAGE}\"}" "${SLACK_URL}"
fi
if [ "${DETACH_ASG}" != "false" ] && [ "${ASG_NAME}" != "" ]; then
  aws --region "${REGION}" autoscaling detach-instances --instance-ids "${INSTANCE_ID}" --auto-scaling-group-name "${ASG_NAME}" --no-should-decrement-desired-capacity &
fi

GRACE_PERIOD=${GRACE_PERIOD:-120}
kubectl drain "${NODE_NAME}" --force --ignore-daemonsets --delete-local-data --grace-period="${GRACE_PERIOD}"

sleep 200
"#;

/// A stand-in `kubectl`: records its arguments in `$KUBECTL_RECORD` and, as the real one
/// does, connects to the API server (the stand-in on 127.0.0.1:6443) with the request the
/// command needs; prints what `get pod -o jsonpath={.spec.nodeName}` and `drain` print. Bash
/// builtins only, so the process that connects is `kubectl` itself.
const KUBECTL: &str = r#"#!/bin/bash
echo "$*" >> "$KUBECTL_RECORD"
if [ "$1 $3 $4" = "--namespace get pod" ]; then
  request="GET /api/v1/namespaces/$2/pods/$5"
elif [ "$1" = drain ]; then
  request="PATCH /api/v1/nodes/$2"
else
  echo "stand-in kubectl: $* is not modelled" >&2
  exit 1
fi
if ! exec 3<>/dev/tcp/127.0.0.1/6443; then
  echo "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?" >&2
  exit 1
fi
printf '%s HTTP/1.0\r\nHost: 127.0.0.1:6443\r\n\r\n' "$request" >&3
IFS= read -r status <&3
while IFS= read -r line <&3 && [ "${line%$'\r'}" != "" ]; do :; done
body=
IFS= read -r body <&3
exec 3>&-
case "$status" in
  *" 200 "*) ;;
  *) echo "Error from server: ${status%$'\r'}" >&2; exit 1 ;;
esac
if [ "$1" = drain ]; then
  echo "node/$2 cordoned"
  echo "node/$2 drained"
else
  printf '%s' "$body"
fi
"#;

/// A stand-in `kubectl` whose service account may not read pods (the RBAC a KSTNH install
/// most often lacks): it reaches the API server, which refuses, and prints kubectl's error.
/// KSTNH then cannot learn its node, exits, and so never drains.
const KUBECTL_FORBIDDEN: &str = r#"#!/bin/bash
echo "$*" >> "$KUBECTL_RECORD"
exec 3<>/dev/tcp/127.0.0.1/6443 && exec 3>&-
echo "Error from server (Forbidden): pods \"$5\" is forbidden: User \"system:serviceaccount:kube-system:default\" cannot get resource \"pods\" in API group \"\" in the namespace \"$2\"" >&2
exit 1
"#;

/// A stand-in API server on 127.0.0.1:6443 in the handler's namespace: answers a pod's node
/// name and anything else with `{}`, logs each request line to argv[1], and creates argv[2]
/// once it listens. Threads only: it starts no program after its own start.
const API_SERVER: &str = r#"
import http.server, sys
log = open(sys.argv[1], "a")
class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        log.write(f"{self.command} {self.path}\n")
        log.flush()
        body = b"node-1" if "/pods/" in self.path else b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_PATCH = answer
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 6443), Handler)
open(sys.argv[2], "w").close()
server.serve_forever()
"#;

/// The Python interpreter itself (not a version manager's shim, which starts programs of its
/// own): what the handler under test should be the only program of.
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn reactions<'a>(t: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    t["reactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

/// The summary's line that starts with `start` (after its indent).
fn line<'a>(summary: &'a str, start: &str) -> &'a str {
    summary
        .lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no `{start}` line in:\n{summary}"))
}

/// KSTNH, its stand-in kubectl (`kubectl` text) and the stand-in API server started first in
/// its namespace; `spot-sim exec OPTIONS --report json --report html -- wrapper`.
fn run_kstnh(s: &Scratch, kubectl: &str) -> Output {
    s.file("bin/kubectl", kubectl, 0o755);
    let entrypoint = s.file("entrypoint.sh", KSTNH, 0o755);
    let api = s.file("apiserver.py", API_SERVER, 0o644);
    // The API server is a stand-in for one elsewhere in the cluster; it lives in the
    // handler's throw-away namespace (nothing can leave it), so it starts there first.
    let wrapper = s.file(
        "start",
        &format!(
            "#!/bin/sh\n{} {} {} {} &\nwhile [ ! -e {} ]; do sleep 0.05; done\nexec {}\n",
            python(),
            api.display(),
            s.path("apiserver.log").display(),
            s.path("listening").display(),
            s.path("listening").display(),
            entrypoint.display()
        ),
        0o755,
    );
    let (report, html) = (s.path("report.json"), s.path("report.html"));
    // OPTIONS: the notice 3 s in, the instance ended 8 s after it, a drain expected in 5 s.
    let mut args = vec![
        "--netns",
        "new",
        "--start-in",
        "3s",
        "--interruption-in",
        "8s",
        "--on-interrupt",
        "kill",
        "--expect-react",
        "exec kubectl drain within 5s",
    ];
    args.extend([
        "--report",
        report.to_str().unwrap(),
        "--report",
        html.to_str().unwrap(),
        "--",
        wrapper.to_str().unwrap(),
    ]);
    let record = s.path("kubectl.args");
    s.exec(
        &args,
        &[
            ("NAMESPACE", "kube-system"),
            ("POD_NAME", "kstnh-7d4f9"),
            ("POLL_INTERVAL", "1"),
            ("KUBECTL_RECORD", record.to_str().unwrap()),
        ],
    )
}

#[test]
fn kstnh_unchanged_drains_within_5s_and_the_report_shows_the_drain_and_the_api_server_connect() {
    let s = scratch_or_skip!("react-kstnh");
    let out = run_kstnh(&s, KUBECTL);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // What the handler did, as its stand-ins saw it: the API server before and after.
    let calls = s.text("kubectl.args");
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "--namespace kube-system get pod kstnh-7d4f9 --output jsonpath={.spec.nodeName}",
            "drain node-1 --force --ignore-daemonsets --delete-local-data --grace-period=120"
        ],
        "{err}"
    );
    assert_eq!(
        s.text("apiserver.log"),
        "GET /api/v1/namespaces/kube-system/pods/kstnh-7d4f9\nPATCH /api/v1/nodes/node-1\n"
    );

    let v = report_json(&s.path("report.json"));
    assert_eq!(v["pass"], true, "{v:#}");
    let t = &v["targets"][0];
    let detected = t["detected_at"].as_str().unwrap().to_string();
    // The drain, with its argv as the kernel copied it at the exec (bash runs the script).
    let drain = reactions(t, "exec")
        .into_iter()
        .find(|r| r["comm"] == "kubectl")
        .unwrap_or_else(|| panic!("no kubectl in the reactions: {t:#}"));
    let argv = strs(&drain["argv"]);
    assert!(
        argv.ends_with(&[
            "drain",
            "node-1",
            "--force",
            "--ignore-daemonsets",
            "--delete-local-data",
            "--grace-period=120"
        ]),
        "{argv:?}"
    );
    assert_eq!(
        drain["detail"],
        "kubectl drain node-1 --force --ignore-daemonsets --delete-local-data --grace-period=120"
    );
    let drain_s = drain["latency_s"].as_f64().unwrap();
    assert!((0.0..5.0).contains(&drain_s), "{drain}");
    // The API server connect after detection, though the same address was connected to
    // before it (`kubectl get pod` at start).
    let before: Vec<_> = t["outbound"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["destination"] == "127.0.0.1:6443/tcp")
        .collect();
    assert!(
        before
            .iter()
            .any(|o| o["first_at"].as_str().unwrap() < detected.as_str()),
        "the get pod connect before the notice: {before:?}"
    );
    let api = reactions(t, "connect");
    assert_eq!(api.len(), 1, "{t:#}");
    assert_eq!(api[0]["destination"], "127.0.0.1:6443/tcp");
    assert_eq!(api[0]["comm"], "kubectl");
    let api_s = api[0]["latency_s"].as_f64().unwrap();
    assert!(api_s >= drain_s && api_s < 5.0, "{api:?} after {drain}");
    // `date` came first; the summary names the drain and the connect, not it.
    assert_eq!(t["reactions"][0]["comm"], "date", "{t:#}");
    let telling = line(&err, "reaction:");
    assert!(
        telling.starts_with("  reaction: kubectl drain node-1 --force"),
        "{telling}"
    );
    assert!(
        telling.contains(", connect 127.0.0.1:6443/tcp (kubectl) +"),
        "{telling}"
    );
    assert!(line(&err, "reactions in order:").starts_with("  reactions in order: date +"));
    assert!(err.contains("exec: verdict PASS"), "{err}");

    // The page, opened in a browser, lists them with their command lines.
    let page = chromium_dom(&s.path("report.html"));
    let row = page
        .split("<tr class=\"reaction telling\" data-kind=\"exec\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no telling exec row: {page}"));
    assert!(
        row.contains(
            "drain node-1 --force --ignore-daemonsets --delete-local-data --grace-period=120</td>"
        ),
        "{row}"
    );
    let connect = page
        .split("<tr class=\"reaction telling\" data-kind=\"connect\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no telling connect row: {page}"));
    assert!(
        connect.contains("<td class=\"argv\">127.0.0.1:6443/tcp</td>"),
        "{connect}"
    );
    assert!(page.contains("Most telling: <strong>kubectl drain node-1"));
}

#[test]
fn kstnh_with_a_kubectl_that_may_not_read_pods_never_drains_and_exec_exits_3() {
    let s = scratch_or_skip!("react-kstnh-rbac");
    let out = run_kstnh(&s, KUBECTL_FORBIDDEN);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("pods \"kstnh-7d4f9\" is forbidden"), "{err}");
    assert!(!s.text("kubectl.args").contains("drain"), "never drained");
    let failed = line(&err, "FAILED:");
    assert!(
        failed.starts_with("  FAILED: expected `exec kubectl drain` within 5 s, but the handler never read the notice"),
        "{failed}"
    );
    // What was seen instead: no IMDS request, the workload gone with KSTNH's status.
    assert!(
        failed.contains("seen: it made no IMDS request; the "),
        "{failed}"
    );
    assert!(failed.ends_with(" exited with status 1"), "{failed}");
    let t = &report_json(&s.path("report.json"))["targets"][0];
    assert_eq!(t["verdict"]["pass"], false);
    assert_eq!(t["command_status"], 1);
}

#[test]
fn an_in_process_handler_is_told_no_program_ran_and_passes_on_its_api_server_connect() {
    let s = scratch_or_skip!("react-in-process");
    // Polls instance-action as the SDKs do, then calls the API server itself (refused here:
    // a connect all the same), as aws-node-termination-handler does with client-go.
    let handler = s.file(
        "handler.py",
        "import socket, time, urllib.request\n\
         url = 'http://169.254.169.254/latest/meta-data/spot/instance-action'\n\
         while True:\n\
         \x20   try:\n\
         \x20       urllib.request.urlopen(url, timeout=2).read()\n\
         \x20       break\n\
         \x20   except Exception:\n\
         \x20       time.sleep(0.3)\n\
         sock = socket.socket()\n\
         try:\n\
         \x20   sock.connect(('127.0.0.1', 6443))\n\
         except OSError:\n\
         \x20   pass\n",
        0o644,
    );
    let py = python();
    let run = |expect: &str| {
        s.exec(
            &[
                "--netns",
                "new",
                "--start-in",
                "2s",
                "--interruption-in",
                "60s",
                "--expect-react",
                expect,
                "--",
                &py,
                handler.to_str().unwrap(),
            ],
            &[],
        )
    };
    let out = run("exec kubectl drain within 5s");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let failed = line(&err, "FAILED:");
    assert!(
        failed.starts_with(
            "  FAILED: expected `exec kubectl drain` within 5 s of reading the notice at "
        ),
        "{failed}"
    );
    assert!(
        failed.contains("; seen instead: connect 127.0.0.1:6443/tcp ("),
        "{failed}"
    );
    assert!(
        failed.ends_with("; no program was started after detection and only one (the handler itself) in the whole run: the handler does its work in-process, so expect what it does instead, such as `connect HOST:PORT` to the API server"),
        "{failed}"
    );
    let out = run("connect 127.0.0.1:6443 within 5s");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("exec: verdict PASS"));
}

#[test]
fn a_bare_exec_prints_no_verdict_and_keeps_the_commands_exit_status() {
    let s = scratch_or_skip!("react-bare");
    let report = s.path("r.json");
    let poll = "curl -s -o /dev/null http://169.254.169.254/latest/meta-data/spot/instance-action";
    // The notice not even due (the old default verdict failed this: "never issued").
    let out = s.exec(
        &[
            "--netns",
            "new",
            "--start-in",
            "1h",
            "--report",
            report.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &format!("{poll}; {poll}; exit 7"),
        ],
        &[],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "the command's status: {err}");
    assert!(
        err.contains("exec: no expectation given, facts only"),
        "{err}"
    );
    for word in ["PASS", "FAIL"] {
        assert!(!err.contains(word), "{word} in: {err}");
    }
    assert!(err.contains("notice issued") || err.contains("polls:") || err.contains("exec:"));
    let v = report_json(&report);
    assert_eq!(v["pass"], serde_json::Value::Null, "{v:#}");
    assert_eq!(v["targets"][0]["verdict"], serde_json::Value::Null);
    assert_eq!(v["targets"][0]["requests_total"], 2);
    assert_eq!(v["targets"][0]["command_status"], 7);
}

#[test]
fn a_flood_of_40000_distinct_connects_before_the_notice_hides_no_later_reaction() {
    let s = scratch_or_skip!("react-flood");
    let control = control_path("react-flood");
    let report = s.path("r.json");
    let notice = "http://169.254.169.254/latest/meta-data/spot/instance-action";
    // 40,000 distinct destinations on loopback (refused at once), then polls; once it reads
    // the notice, 300 programs, a connect to one of the flooded destinations, and exit.
    let handler = s.file(
        "handler",
        &format!(
            "#!/bin/sh\n\
             curl -s -o /dev/null 'http://127.0.[0-159].[1-250]:9/'\n\
             touch {flooded}\n\
             until [ \"$(curl -s -o /dev/null -w '%{{http_code}}' {notice})\" = 200 ]; do sleep 0.2; done\n\
             i=0\n\
             while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done\n\
             curl -s -o /dev/null http://127.0.0.1:9/\n\
             exit 0\n",
            flooded = s.path("flooded").display()
        ),
        0o755,
    );
    let mut run = spawn_logged(&mut exec_new(&[
        "--manual",
        "--interruption-in",
        "2m",
        "--control",
        control.to_str().unwrap(),
        "--expect-react",
        "connect 127.0.0.1:9 within 30s",
        "--expect-react",
        "exit within 60s",
        "--report",
        report.to_str().unwrap(),
        "--",
        handler.to_str().unwrap(),
    ]));
    // The notice only once the flood is over.
    poll_until(Duration::from_secs(180), "the flood to end", || {
        s.path("flooded").exists().then_some(())
    });
    let trigger = Command::new(spot_sim_bin())
        .args(["trigger", "--control", control.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(trigger.status.success(), "{}", stderr(&trigger));
    let status = run
        .wait_timeout(Duration::from_secs(120))
        .expect("the handler ended");
    assert_eq!(status.code(), Some(0), "{}", run.log());
    let t = &report_json(&report)["targets"][0];
    // The flood was there: the journal's own list of destinations is full.
    assert_eq!(
        t["outbound"].as_array().unwrap().len(),
        512,
        "{}",
        t["outbound_other"]
    );
    // Every later program counted, the first 256 listed, the rest counted.
    let programs = t["programs_after_detection"].as_u64().unwrap();
    assert!(programs >= 301, "300 `true` and a curl: {programs}");
    assert_eq!(reactions(t, "exec").len(), 256);
    assert!(t["reactions_not_listed"].as_u64().unwrap() >= programs - 256);
    let api = reactions(t, "connect");
    assert!(
        api.iter()
            .any(|c| c["destination"] == "127.0.0.1:9/tcp"
                && c["latency_s"].as_f64().unwrap() >= 0.0),
        "{api:?}"
    );
    assert_eq!(reactions(t, "exit").len(), 1, "the exit is kept");
    assert_eq!(t["verdict"]["pass"], true, "{:#}", t["verdict"]);
}

#[test]
fn the_first_connect_after_detection_is_timed_exactly_though_its_window_began_before() {
    let s = scratch_or_skip!("react-window");
    let report = s.path("r.json");
    let notice = "http://169.254.169.254/latest/meta-data/spot/termination-time";
    // The session sweeps the kernel's connect windows 2 s after it starts, then every 10 s:
    // the connect at 3 s, the notice read at about 5 s and the two connects after it (1.5 s
    // apart) all fall in one window unless detection closes it.
    let handler = s.file(
        "handler",
        &format!(
            "#!/bin/bash\n\
             sleep 3\n\
             (exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null\n\
             until [ \"$(curl -s -o /dev/null -w '%{{http_code}}' {notice})\" = 200 ]; do sleep 0.2; done\n\
             (exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null\n\
             sleep 1.5\n\
             (exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null\n"
        ),
        0o755,
    );
    let out = s.exec(
        &[
            "--netns",
            "new",
            "--start-in",
            "5s",
            "--interruption-in",
            "60s",
            "--expect-react",
            "connect 127.0.0.1:9 within 1s",
            "--report",
            report.to_str().unwrap(),
            "--",
            handler.to_str().unwrap(),
        ],
        &[],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let t = &report_json(&report)["targets"][0];
    let connect = reactions(t, "connect");
    assert_eq!(connect.len(), 1, "{t:#}");
    let after = connect[0]["latency_s"].as_f64().unwrap();
    // The first connect after detection, not the latest of its window (about 1.5 s).
    assert!((0.0..0.5).contains(&after), "{after} s: {t:#}");
}

#[test]
fn an_expect_react_that_does_not_read_is_refused_before_anything_starts() {
    let s = scratch_or_skip!("react-bad");
    let marker = s.path("ran");
    let touch = format!("touch {}", marker.display());
    for (what, says) in [
        ("kubectl drain within 5s", "unknown reaction `kubectl`"),
        ("exec kubectl drain within soon", "after `within`"),
        ("connect api-server:443", "a host name cannot be matched"),
        ("exec", "needs the program's command line"),
        ("exec kubectl drain within 0s", "can never hold"),
    ] {
        let out = s.exec(
            &[
                "--netns",
                "new",
                "--expect-react",
                what,
                "--",
                "sh",
                "-c",
                &touch,
            ],
            &[],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains(says), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!marker.exists(), "{what} started the command");
    }
}
