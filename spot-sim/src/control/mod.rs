//! Talking to a running spot-sim: a Unix socket (mode 0600, root or the same user only) that
//! carries one JSON request and one JSON reply per connection; and the optional metrics endpoint.

pub mod metrics;
mod socket_dir;

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixStream,
};

use crate::{session::TargetStatus, targets::TargetKind};

/// Where control sockets live.
pub const CONTROL_DIR: &str = "/run/spot-sim";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "another spot-sim is already running with control socket {0}: stop it, or give this one another --control path"
    )]
    InUse(PathBuf),
    #[error("cannot create control socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("{path} exists and is not a socket; spot-sim replaces only a control socket a dead instance left: remove it yourself, or give another --control path")]
    NotASocket { path: PathBuf },
    #[error("{path} is a socket owned by uid {owner}, not by this user: remove it yourself, or give another --control path")]
    ForeignSocket { path: PathBuf, owner: u32 },
    #[error("control directory {dir} is unsafe: {problem}; others could replace the socket and answer as spot-sim: {fix}")]
    UnsafeDir {
        dir: PathBuf,
        problem: String,
        fix: String,
    },
    #[error("spot-sim at {path} did not answer within {}{}: is it stopped (SIGSTOP, a debugger) or hung? Raise --timeout to wait longer", humantime::format_duration(*.timeout), pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Timeout {
        path: PathBuf,
        timeout: Duration,
        pid: Option<u32>,
    },
    #[error(
        "no running spot-sim found (no live socket in {0}): start one with `spot-sim run` or `spot-sim exec`, or pass --control"
    )]
    NoneRunning(PathBuf),
    #[error("cannot reach spot-sim at {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("spot-sim at {path} sent a reply this client cannot read: {detail}")]
    Protocol { path: PathBuf, detail: String },
    #[error("{0}")]
    Remote(String),
    #[error("refusing to talk to {path}: it is served by uid {uid}, neither root nor this user, so it is not a spot-sim of yours (remove it if it should not be there)")]
    Impostor { path: PathBuf, uid: u32 },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Status,
    Trigger {
        target: Option<String>,
    },
    TargetAdd {
        target: TargetKind,
        /// Its own scenario file [default: the instance's scenario].
        scenario: Option<PathBuf>,
    },
    TargetRemove {
        name: String,
    },
    /// The game-day report, judged against the instance's own expectations.
    Report,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Reply {
    Status {
        pid: u32,
        targets: Vec<TargetStatus>,
        /// The game day was stopped early: every target was detached then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stopped: Option<crate::stop::Stopped>,
    },
    Done {
        message: String,
    },
    Report {
        pid: u32,
        report: Box<crate::report::Report>,
    },
    Error {
        message: String,
    },
}

/// What the running instance does with a request.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Reply;
}

/// A control socket bound but not served yet. `exec`, `run` and `serve` bind it before
/// anything else starts, so a path that is refused stops spot-sim before a target is attached
/// or a command run (issue #22); dropping it removes the socket file.
pub struct ControlListener {
    path: PathBuf,
    listener: Option<tokio::net::UnixListener>,
}

impl ControlListener {
    /// Checks the directory (the one rule of safe_file/dir.rs), refuses a live spot-sim or
    /// anything but a dead instance's socket at `path`, and binds it 0600.
    pub async fn bind(path: &Path) -> Result<Self, ControlError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        socket_dir::prepare(&dir)?;
        socket_dir::clear_stale(path).await?;
        let listener = socket_dir::bind_private(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            listener: Some(listener),
        })
    }

    /// Serves requests with `handler` from now on.
    pub fn serve(mut self, handler: Arc<dyn Handler>) -> ControlServer {
        let path = std::mem::take(&mut self.path);
        let listener = self.listener.take().expect("a listener is served once");
        let task = tokio::spawn(serve_all(listener, handler));
        ControlServer { path, task }
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        if self.listener.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The listening control socket; dropping it removes the socket file.
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

async fn serve_all(listener: tokio::net::UnixListener, handler: Arc<dyn Handler>) {
    let mut backoff = crate::fdbudget::AcceptBackoff::new("control socket");
    // `status` must get through whatever floods the targets.
    let lane = crate::fdbudget::Lane::new("control socket", 4);
    loop {
        let Some((stream, _)) = backoff.settle(listener.accept().await).await else {
            continue;
        };
        let Some(ticket) = lane.try_admit() else {
            continue;
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let _ticket = ticket;
            // The whole exchange is bounded: a client that never reads its reply cannot hold
            // the connection (and its descriptor).
            let served = tokio::time::timeout(Duration::from_secs(30), serve_one(stream, handler));
            if let Ok(Err(e)) = served.await {
                log::debug!("control connection: {e}");
            }
        });
    }
}

impl ControlServer {
    /// Binds `path` (refusing if a live spot-sim already answers there) and serves requests.
    pub async fn start(path: &Path, handler: Arc<dyn Handler>) -> Result<Self, ControlError> {
        Ok(ControlListener::bind(path).await?.serve(handler))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_one(stream: UnixStream, handler: Arc<dyn Handler>) -> io::Result<()> {
    // Peer credentials: the socket mode already keeps others out; this also covers a
    // directory with looser permissions than ours.
    let cred = stream.peer_cred()?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() != 0 && cred.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "peer is not root",
        ));
    }
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // One request line, bounded so a client cannot make us buffer without end.
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, 64 * 1024));
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request"))??;
    let mut big = false;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => {
            big = matches!(req, Request::Report);
            let h = Arc::clone(&handler);
            tokio::task::spawn_blocking(move || h.handle(req))
                .await
                .unwrap_or_else(|e| Reply::Error {
                    message: format!("request failed: {e}"),
                })
        }
        Err(e) => Reply::Error {
            message: format!("bad request: {e}"),
        },
    };
    let mut out = serde_json::to_vec(&reply).map_err(io::Error::other)?;
    drop(reply);
    out.push(b'\n');
    let sent = write.write_all(&out).await;
    if big {
        drop(out);
        // Eight reports at once left 316 MB behind in glibc's arenas without it.
        crate::memory::release();
    }
    sent
}

/// Removes what `exec` instances that were killed (SIGKILL, OOM) left in [`CONTROL_DIR`]:
/// their sockets, when their process is gone.
pub async fn remove_dead_sockets() -> usize {
    socket_dir::remove_dead_exec_sockets(Path::new(CONTROL_DIR)).await
}

/// The default socket of a `run`.
pub fn default_run_socket() -> PathBuf {
    Path::new(CONTROL_DIR).join("run.sock")
}

/// The default socket of an `exec`: one per process, so several can run at once.
pub fn default_exec_socket() -> PathBuf {
    Path::new(CONTROL_DIR).join(format!("exec-{}.sock", std::process::id()))
}

/// The default socket of a `serve`: under [`CONTROL_DIR`] when we may write there (root),
/// else under `$XDG_RUNTIME_DIR/spot-sim`, so `serve` works without root.
pub fn default_serve_socket() -> PathBuf {
    let name = format!("serve-{}.sock", std::process::id());
    let run = Path::new(CONTROL_DIR);
    let writable = |p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok();
    let usable = if run.exists() {
        writable(run)
    } else {
        run.parent().is_some_and(writable)
    };
    match (usable, user_control_dir()) {
        (false, Some(dir)) => dir.join(name),
        _ => run.join(name),
    }
}

/// `$XDG_RUNTIME_DIR/spot-sim`, where an unprivileged `serve` puts its socket.
fn user_control_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("spot-sim"))
}

/// How long a control client waits for an instance by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends `req` to the spot-sim at `path`, waiting at most [`DEFAULT_TIMEOUT`].
pub async fn call(path: &Path, req: &Request) -> Result<Reply, ControlError> {
    call_within(path, req, DEFAULT_TIMEOUT).await
}

/// Sends `req` to the spot-sim at `path`; a stopped or hung instance is an error after
/// `timeout` (the kernel accepts the connection for it, so without a bound we would wait
/// forever).
pub async fn call_within(
    path: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Reply, ControlError> {
    let conn_err = |source| ControlError::Connect {
        path: path.to_path_buf(),
        source,
    };
    let timed_out = |pid| ControlError::Timeout {
        path: path.to_path_buf(),
        timeout,
        pid,
    };
    let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
        .await
        .map_err(|_| timed_out(None))?
        .map_err(conn_err)?;
    // Credentials are recorded when the instance listened: known even if it is stopped now.
    let cred = stream.peer_cred().map_err(conn_err)?;
    let pid = cred.pid().and_then(|p| u32::try_from(p).ok());
    // Only root or this user may answer as spot-sim: a socket someone else planted would
    // otherwise receive our `trigger` and `target` requests and feed us made-up status.
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() != 0 && cred.uid() != me {
        return Err(ControlError::Impostor {
            path: path.to_path_buf(),
            uid: cred.uid(),
        });
    }
    let exchange = async {
        let (read, mut write) = stream.into_split();
        let mut out = serde_json::to_vec(req).map_err(|e| ControlError::Protocol {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        out.push(b'\n');
        write.write_all(&out).await.map_err(conn_err)?;
        let mut line = String::new();
        BufReader::new(tokio::io::AsyncReadExt::take(read, 16 << 20))
            .read_line(&mut line)
            .await
            .map_err(conn_err)?;
        serde_json::from_str(&line).map_err(|e| ControlError::Protocol {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| timed_out(pid))?
}

/// The sockets to talk to: the one given, or every live one in [`CONTROL_DIR`].
pub async fn discover(given: Option<&Path>) -> Result<Vec<PathBuf>, ControlError> {
    if let Some(p) = given {
        return Ok(vec![p.to_path_buf()]);
    }
    let mut live = Vec::new();
    let dirs = std::iter::once(PathBuf::from(CONTROL_DIR)).chain(user_control_dir());
    for entries in dirs.filter_map(|d| std::fs::read_dir(d).ok()) {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "sock") {
                continue;
            }
            // A stopped instance is still "live" here (the kernel accepts for it); the call
            // that follows reports it as not answering.
            if tokio::time::timeout(DEFAULT_TIMEOUT, UnixStream::connect(&p))
                .await
                .is_ok_and(|r| r.is_ok())
            {
                live.push(p);
            }
        }
    }
    live.sort();
    if live.is_empty() {
        return Err(ControlError::NoneRunning(CONTROL_DIR.into()));
    }
    Ok(live)
}
