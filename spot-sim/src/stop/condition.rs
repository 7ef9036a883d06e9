//! One stop condition: how it is written (`cmd:`, `http:`, `prom:`), and one check of it.
//!
//! Each says whether the game day should stop, read the way the tool it comes from reads it:
//! - `cmd:COMMAND` as a Kubernetes exec probe: exit 0 is healthy, anything else (or no end
//!   within the timeout) is not.
//! - `http:URL` as a Kubernetes httpGet probe: "If the HTTP response code is successful (i.e.
//!   400 > code >= 200), it returns Success. If the HTTP response code is unsuccessful or HTTP
//!   communication fails, it returns Failure" (k8s.io/kubernetes/pkg/probe/http, DoHTTPProbe).
//!   A health URL that does not answer is the outage it watches for. Only a host name that does
//!   not resolve is "cannot be checked".
//! - `prom:URL QUERY` as a Prometheus alerting rule: "Whenever the alert expression results in
//!   one or more vector elements at a given point in time, the alert counts as active"
//!   (Prometheus docs, "Alerting rules"). Prometheus not answering is "cannot be checked", not
//!   a stop: the measuring instrument is down, not the system it measures.
//! - a kill switch file: a TOML boolean, re-read by path on every check (see [`StopCondition::FileFlag`]).

use std::{fmt, path::PathBuf, process::Stdio, time::Duration};

use super::http::{get, GetError, HttpUrl};
use crate::escape::untrusted;

/// Longest condition accepted on the command line.
const MAX_SPEC: usize = 4096;
/// Largest kill-switch file read (what a ConfigMap holds).
const MAX_FILE: u64 = 1024 * 1024;
/// Longest piece of a checker's output or answer shown in a stop reason.
const MAX_DETAIL: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopCondition {
    /// `cmd:COMMAND`, run with `/bin/sh -c`.
    Command(String),
    /// `http:URL`, a health URL.
    Http(HttpUrl),
    /// `prom:URL QUERY`, an instant query against Prometheus's HTTP API.
    Prometheus { server: HttpUrl, query: String },
    /// `[table] key = true` in the TOML file at `path`: a game day's kill switch. Read afresh
    /// by path on every check, never through a held descriptor or an inotify watch: kubelet
    /// updates a mounted ConfigMap by swapping the `..data` symlink to a new directory
    /// (pkg/volume/util/atomic_writer.go), so an open file keeps the old content and a watch on
    /// the file only sees it deleted (kubernetes/kubernetes#111947, #112677).
    FileFlag {
        path: PathBuf,
        table: &'static str,
        key: &'static str,
    },
}

/// What one check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The condition does not hold.
    Clear,
    /// It holds: what was seen.
    Holds(String),
    /// It cannot be checked now (Prometheus down, the file unreadable): why.
    Unknown(String),
    /// It can never be checked as written (a command the shell cannot run, a query Prometheus
    /// refuses): why, and the fix. Refused at the start; later, read as [`Check::Unknown`].
    Invalid(String),
}

impl StopCondition {
    /// Parses `cmd:COMMAND`, `http:URL` or `prom:URL QUERY`; the error says how to write one.
    pub fn parse(s: &str) -> Result<StopCondition, String> {
        const HOW: &str = "write cmd:COMMAND, http:URL or prom:URL QUERY";
        let s = s.trim();
        if s.len() > MAX_SPEC {
            return Err(format!("longer than {MAX_SPEC} bytes"));
        }
        if s.chars().any(char::is_control) {
            return Err(format!("{:?} holds a control character; {HOW}", s));
        }
        let Some((kind, rest)) = s.split_once(':') else {
            return Err(format!("{s:?} is not a stop condition; {HOW}"));
        };
        let rest = rest.trim();
        match kind {
            "cmd" if rest.is_empty() => Err(
                "cmd: needs a command after it, like cmd:./check-error-rate.sh (it holds when the command exits non-zero)".into(),
            ),
            "cmd" => Ok(StopCondition::Command(rest.to_string())),
            "http" => Ok(StopCondition::Http(HttpUrl::parse(rest)?)),
            "prom" => {
                let (url, query) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                let query = query.trim();
                if query.is_empty() {
                    return Err(format!(
                        "prom:{rest} has no query: give the server's URL, a space, then the query, like prom:http://prometheus:9090 sum(rate(http_requests_total{{code=~\"5..\"}}[1m])) > 1"
                    ));
                }
                let server = HttpUrl::parse(url)?;
                server.join("")?;
                Ok(StopCondition::Prometheus {
                    server,
                    query: query.to_string(),
                })
            }
            _ => Err(format!("{s:?} is not a stop condition; {HOW}")),
        }
    }

    /// How the user gave it, for error lines: `--stop-if cmd:…`, or the kill switch's key.
    pub fn flag(&self) -> String {
        match self {
            StopCondition::FileFlag { .. } => format!("the kill switch {self}"),
            _ => format!("--stop-if {self}"),
        }
    }

    /// One check, taking at most `within`.
    pub async fn check(&self, within: Duration) -> Check {
        match self {
            StopCondition::Command(cmd) => command(cmd, within).await,
            StopCondition::Http(url) => health(url, within).await,
            StopCondition::Prometheus { server, query } => prometheus(server, query, within).await,
            StopCondition::FileFlag { path, table, key } => file_flag(path, table, key).await,
        }
    }
}

impl fmt::Display for StopCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopCondition::Command(c) => write!(f, "cmd:{c}"),
            StopCondition::Http(u) => write!(f, "http:{u}"),
            StopCondition::Prometheus { server, query } => write!(f, "prom:{server} {query}"),
            StopCondition::FileFlag { path, table, key } => {
                write!(
                    f,
                    "{table}.{key} in {}",
                    crate::escape::untrusted_path(path)
                )
            }
        }
    }
}

/// `sh -c CMD` in its own process group (killed whole when it overstays), output captured.
async fn command(cmd: &str, within: Duration) -> Check {
    let mut c = tokio::process::Command::new("/bin/sh");
    c.arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = match c.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Check::Invalid(format!(
                "cannot start /bin/sh ({e}): cmd: conditions need a shell (in the spot-sim image, which has none, use http: or prom:)"
            ))
        }
    };
    // Until its end is seen, the check's whole process group goes with it: on a timeout, and
    // when the watch stops (or spot-sim exits) in the middle of a check.
    let mut group = KillGroup(child.id());
    let out = match tokio::time::timeout(within, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            // Reaped: its pid (the group's id) may be reused from here on.
            group.0 = None;
            out
        }
        Ok(Err(e)) => return Check::Unknown(format!("cannot read its result: {e}")),
        Err(_) => {
            return Check::Holds(format!(
                "did not finish within {}",
                humantime::format_duration(within)
            ))
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let said = last_line(&out.stderr)
        .or_else(|| last_line(&out.stdout))
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    match (out.status.code(), out.status.signal()) {
        (Some(0), _) => Check::Clear,
        // The shell's own "cannot execute" and "not found".
        (Some(code @ (126 | 127)), _) => Check::Invalid(format!(
            "the shell cannot run it (exit {code}{said}): give a command that exists, as a path or on PATH"
        )),
        (Some(code), _) => Check::Holds(format!("exited {code}{said}")),
        (None, Some(sig)) => Check::Holds(format!("was killed by signal {sig}{said}")),
        (None, None) => Check::Holds(format!("ended abnormally{said}")),
    }
}

/// Kills a check's process group (the id of its `sh`, which leads it) when dropped armed.
struct KillGroup(Option<u32>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: a plain syscall on the group of a child not yet reaped, so its id still
            // names that group.
            unsafe { libc::kill(-(pgid as i32), libc::SIGKILL) };
        }
    }
}

/// The last non-empty line of a checker's output, escaped and cut short.
fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(bounded(line))
}

fn bounded(s: &str) -> String {
    let cut: String = s.chars().take(MAX_DETAIL).collect();
    let more = if cut.len() < s.len() { "…" } else { "" };
    format!("{}{more}", untrusted(cut))
}

async fn health(url: &HttpUrl, within: Duration) -> Check {
    match get(url, url.target(), within).await {
        Ok((status, _)) if (200..400).contains(&status) => Check::Clear,
        Ok((status, _)) => Check::Holds(format!("answered {status}")),
        // Nothing was asked: the name, not the service, is at fault.
        Err(e @ GetError::Resolve(_)) => Check::Unknown(e.to_string()),
        Err(e) => Check::Holds(e.to_string()),
    }
}

async fn prometheus(server: &HttpUrl, query: &str, within: Duration) -> Check {
    let target = match server.join(&format!("/api/v1/query?query={}", encode(query))) {
        Ok(t) => t,
        Err(e) => return Check::Invalid(e),
    };
    match get(server, &target, within).await {
        Ok((status, body)) => read_query_answer(server, status, &body),
        Err(e) => Check::Unknown(format!("Prometheus at {server} does not answer ({e})")),
    }
}

/// Reads Prometheus's `/api/v1/query` answer: `{"status":"success","data":{"resultType":
/// "vector","result":[...]}}`, or `{"status":"error","errorType":"bad_data","error":"..."}`.
pub(super) fn read_query_answer(server: &HttpUrl, status: u16, body: &[u8]) -> Check {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        let what = format!("{server} answered HTTP {status}, not Prometheus's query API");
        // A Prometheus starting up or overloaded, or a proxy in front of it.
        return if status >= 500 {
            Check::Unknown(what)
        } else {
            Check::Invalid(format!(
                "{what}: give the server's base URL, like http://prometheus:9090"
            ))
        };
    };
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default();
    match text("status") {
        "success" => {}
        "error" if text("errorType") == "bad_data" => {
            return Check::Invalid(format!(
                "Prometheus refused the query: {} (fix the PromQL)",
                bounded(text("error"))
            ))
        }
        "error" => {
            return Check::Unknown(format!(
                "Prometheus answered {}: {}",
                bounded(text("errorType")),
                bounded(text("error"))
            ))
        }
        _ => {
            return Check::Invalid(format!(
                "{server} answered HTTP {status}, not Prometheus's query API: give the server's base URL, like http://prometheus:9090"
            ))
        }
    }
    let data = v.get("data");
    let kind = data
        .and_then(|d| d.get("resultType"))
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    let series = data
        .and_then(|d| d.get("result"))
        .and_then(|r| r.as_array());
    match (kind, series) {
        ("vector" | "matrix", Some(s)) if s.is_empty() => Check::Clear,
        ("vector" | "matrix", Some(s)) => Check::Holds(format!(
            "{} series, like {}",
            s.len(),
            bounded(&one_series(&s[0]))
        )),
        (kind, _) => Check::Invalid(format!(
            "the query gives a {kind}, not series: write it as a comparison that selects series, like `sum(rate(errors_total[1m])) > 5`"
        )),
    }
}

/// `name{label="value",…} = value` of one result series.
fn one_series(s: &serde_json::Value) -> String {
    let metric = s.get("metric").and_then(|m| m.as_object());
    let name = metric
        .and_then(|m| m.get("__name__"))
        .and_then(|n| n.as_str())
        .unwrap_or_default();
    let labels: Vec<String> = metric
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let value = s
        .get("value")
        .and_then(|v| v.get(1))
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    format!("{name}{{{}}} = {value}", labels.join(","))
}

/// Percent-encodes a query parameter (RFC 3986: everything but the unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn file_flag(path: &std::path::Path, table: &str, key: &str) -> Check {
    let shown = crate::escape::untrusted_path(path);
    let text = match read_bounded(path).await {
        Ok(t) => t,
        Err(e) => return Check::Unknown(format!("cannot read {shown}: {e}")),
    };
    let doc: toml::Table = match toml::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            return Check::Unknown(format!(
                "{shown} is not valid TOML now ({})",
                bounded(e.message())
            ))
        }
    };
    match doc.get(table).and_then(|t| t.get(key)) {
        None | Some(toml::Value::Boolean(false)) => Check::Clear,
        Some(toml::Value::Boolean(true)) => Check::Holds("set to true".into()),
        Some(other) => Check::Unknown(format!(
            "{table}.{key} = {} is neither true nor false",
            bounded(&other.to_string())
        )),
    }
}

/// The file at `path` now (opened afresh: through the `..data` symlink as it is now), through
/// the one reader of named files: a regular file only, never blocking (a FIFO put there would
/// otherwise hold a blocking thread for good), at most 1 MiB.
async fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    let owned = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || {
        crate::safe_file::read_bounded(&owned, MAX_FILE).map_err(std::io::Error::other)
    })
    .await
    .map_err(std::io::Error::other)??;
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("not UTF-8 text"))
}

#[cfg(test)]
#[path = "condition_tests.rs"]
pub(super) mod tests;
