use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::*;

const SOON: Duration = Duration::from_secs(5);

#[test]
fn conditions_are_written_as_kind_colon_what() {
    assert_eq!(
        StopCondition::parse("cmd: ./check.sh --max 5").unwrap(),
        StopCondition::Command("./check.sh --max 5".into())
    );
    let http = StopCondition::parse("http:http://127.0.0.1:8080/healthz").unwrap();
    assert_eq!(http.to_string(), "http:http://127.0.0.1:8080/healthz");
    let prom = StopCondition::parse("prom:http://prometheus:9090 sum(rate(errors_total[1m])) > 5")
        .unwrap();
    match &prom {
        StopCondition::Prometheus { server, query } => {
            assert_eq!(server.to_string(), "http://prometheus:9090");
            assert_eq!(query, "sum(rate(errors_total[1m])) > 5");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        prom.flag(),
        "--stop-if prom:http://prometheus:9090 sum(rate(errors_total[1m])) > 5"
    );
    for (bad, needle) in [
        (
            "./check.sh",
            "write cmd:COMMAND, http:URL or prom:URL QUERY",
        ),
        ("exec:./check.sh", "is not a stop condition"),
        ("cmd:", "needs a command"),
        ("cmd:  ", "needs a command"),
        ("http:127.0.0.1/healthz", "not an http:// URL"),
        ("http:https://x/healthz", "https is not supported"),
        ("prom:http://prometheus:9090", "has no query"),
        (
            "prom:http://prometheus:9090/?x=1 up",
            "without a query string",
        ),
        ("cmd:true\nfalse", "control character"),
    ] {
        let e = StopCondition::parse(bad).unwrap_err();
        assert!(e.contains(needle), "{bad:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[tokio::test]
async fn a_command_holds_when_it_fails_and_a_missing_one_is_refused() {
    let check = |c: &str| StopCondition::parse(&format!("cmd:{c}")).unwrap();
    assert_eq!(check("exit 0").check(SOON).await, Check::Clear);
    assert_eq!(
        check("echo 'error rate 7%' >&2; exit 3").check(SOON).await,
        Check::Holds("exited 3 (error rate 7%)".into())
    );
    // What the checker printed is shown escaped: it may repeat a target's words.
    assert_eq!(
        check("printf 'x\\033]0;owned\\007\\n'; exit 1")
            .check(SOON)
            .await,
        Check::Holds("exited 1 (x\\x1b]0;owned\\x07)".into())
    );
    match check("no-such-check-spot-sim").check(SOON).await {
        Check::Invalid(e) => assert!(e.contains("exit 127") && e.contains("not found"), "{e}"),
        other => panic!("{other:?}"),
    }
    // One that hangs is killed with its children, and counts as failing.
    let started = Instant::now();
    let slow = check("sleep 30 & sleep 30")
        .check(Duration::from_millis(300))
        .await;
    assert_eq!(slow, Check::Holds("did not finish within 300ms".into()));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// A loopback HTTP server that answers every connection with `response` (raw bytes).
async fn answering(response: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(response.as_bytes()).await;
        }
    });
    format!("http://{addr}/healthz")
}

#[tokio::test]
async fn a_health_url_holds_unless_it_answers_2xx_or_3xx() {
    let url = |u: String| StopCondition::parse(&format!("http:{u}")).unwrap();
    let ok = answering("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    assert_eq!(url(ok).check(SOON).await, Check::Clear);
    let moved = answering("HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(url(moved).check(SOON).await, Check::Clear);
    let down = answering("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(
        url(down).check(SOON).await,
        Check::Holds("answered 503".into())
    );
    let garbage = answering("SSH-2.0-OpenSSH\r\n").await;
    match url(garbage).check(SOON).await {
        Check::Holds(e) => assert!(e.contains("broken answer"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Nothing listens there: the service is down.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    match url(format!("http://{closed}/healthz")).check(SOON).await {
        Check::Holds(e) => assert!(e.contains("no answer") && e.contains("refused"), "{e}"),
        other => panic!("{other:?}"),
    }
}

fn server() -> HttpUrl {
    HttpUrl::parse("http://127.0.0.1:9090").unwrap()
}

#[test]
fn prometheus_answers_are_read_as_an_alerting_rule_reads_them() {
    // As Prometheus 2.42 answers (captured from one).
    let read = |status, body: &str| read_query_answer(&server(), status, body.as_bytes());
    assert_eq!(
        read(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
        ),
        Check::Clear
    );
    assert_eq!(
        read(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"checkout_errors","job":"app"},"value":[1796300601.409,"7"]}]}}"#
        ),
        Check::Holds("1 series, like checkout_errors{job=\"app\"} = 7".into())
    );
    match read(
        400,
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"}"#,
    ) {
        Check::Invalid(e) => assert!(
            e.contains("refused the query") && e.contains("unclosed"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    match read(
        503,
        r#"{"status":"error","errorType":"timeout","error":"query timed out"}"#,
    ) {
        Check::Unknown(e) => assert!(e.contains("timeout"), "{e}"),
        other => panic!("{other:?}"),
    }
    match read(
        200,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#,
    ) {
        Check::Invalid(e) => assert!(e.contains("gives a scalar"), "{e}"),
        other => panic!("{other:?}"),
    }
    match read(200, "<html>Grafana</html>") {
        Check::Invalid(e) => assert!(e.contains("not Prometheus's query API"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(read(502, "Bad Gateway"), Check::Unknown(_)));
}

#[test]
fn a_query_is_percent_encoded() {
    assert_eq!(
        encode("sum(x{code=~\"5..\"}) > 1"),
        "sum%28x%7Bcode%3D~%225..%22%7D%29%20%3E%201"
    );
}

#[tokio::test]
async fn prometheus_that_does_not_answer_cannot_be_checked() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let c = StopCondition::parse(&format!("prom:http://{closed} up == 0")).unwrap();
    match c.check(SOON).await {
        Check::Unknown(e) => assert!(e.contains("does not answer"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// A folder laid out as kubelet lays out a ConfigMap volume: `..data` points to a timestamped
/// folder, each key is a symlink through `..data`.
pub(crate) struct ConfigMapDir {
    pub dir: tempfile::TempDir,
    n: u32,
}

impl ConfigMapDir {
    pub fn new(content: &str) -> Self {
        let mut d = ConfigMapDir {
            dir: tempfile::tempdir().unwrap(),
            n: 0,
        };
        d.update(content);
        std::os::unix::fs::symlink("..data/experiment.toml", d.file()).unwrap();
        d
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join("experiment.toml")
    }

    /// The atomic writer's swap: a new folder, a new `..data` link renamed over the old one.
    pub fn update(&mut self, content: &str) {
        self.n += 1;
        let ts = format!("..2026_11_26_14_00_00.{:09}", self.n);
        let root = self.dir.path();
        std::fs::create_dir(root.join(&ts)).unwrap();
        std::fs::write(root.join(&ts).join("experiment.toml"), content).unwrap();
        std::os::unix::fs::symlink(&ts, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    }
}

fn flag(path: &Path) -> StopCondition {
    StopCondition::FileFlag {
        path: path.to_path_buf(),
        table: "experiment",
        key: "abort",
    }
}

#[tokio::test]
async fn a_kill_switch_file_is_read_afresh_through_the_configmap_swap() {
    let mut cm = ConfigMapDir::new("[experiment]\nname = \"gd\"\n");
    let c = flag(&cm.file());
    assert_eq!(c.check(SOON).await, Check::Clear);
    // A reader holding the old file open would still see this; a re-read by path sees the new.
    let held = std::fs::File::open(cm.file()).unwrap();
    cm.update("[experiment]\nname = \"gd\"\nabort = false\n");
    assert_eq!(c.check(SOON).await, Check::Clear);
    cm.update("[experiment]\nname = \"gd\"\nabort = true\n");
    assert_eq!(c.check(SOON).await, Check::Holds("set to true".into()));
    drop(held);
    cm.update("[experiment]\nabort = \"yes\"\n");
    match c.check(SOON).await {
        Check::Unknown(e) => assert!(e.contains("neither true nor false"), "{e}"),
        other => panic!("{other:?}"),
    }
    cm.update("[experiment\n");
    assert!(matches!(c.check(SOON).await, Check::Unknown(_)));
    let gone = flag(&cm.dir.path().join("nothing.toml"));
    match gone.check(SOON).await {
        Check::Unknown(e) => assert!(e.contains("cannot read"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(c.to_string().starts_with("experiment.abort in /"), "{c}");
}
