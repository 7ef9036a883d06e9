//! Talking to a running spot-sim: a Unix socket (mode 0600, root or the same user only) that
//! carries one JSON request and one JSON reply per connection; and the optional metrics endpoint.

pub mod metrics;

use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use crate::session::TargetStatus;

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
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Status,
    Trigger {
        target: Option<String>,
    },
    TargetAdd {
        cgroup: Option<PathBuf>,
        pod: Option<String>,
        pod_uid: Option<String>,
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

/// The listening control socket; dropping it removes the socket file.
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    /// Binds `path` (refusing if a live spot-sim already answers there) and serves requests.
    pub async fn start(path: &Path, handler: Arc<dyn Handler>) -> Result<Self, ControlError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ControlError::Bind {
                path: path.to_path_buf(),
                source,
            })?;
        }
        if path.exists() {
            match UnixStream::connect(path).await {
                Ok(_) => return Err(ControlError::InUse(path.to_path_buf())),
                // Left by a spot-sim that was killed: nobody answers, so it is ours to replace.
                Err(_) => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let listener = UnixListener::bind(path).map_err(|source| ControlError::Bind {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| ControlError::Bind {
                path: path.to_path_buf(),
                source,
            },
        )?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = Arc::clone(&handler);
                tokio::spawn(async move {
                    if let Err(e) = serve_one(stream, handler).await {
                        log::debug!("control connection: {e}");
                    }
                });
            }
        });
        Ok(Self {
            path: path.to_path_buf(),
            task,
        })
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
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => {
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
    out.push(b'\n');
    write.write_all(&out).await
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

/// Sends `req` to the spot-sim at `path`.
pub async fn call(path: &Path, req: &Request) -> Result<Reply, ControlError> {
    let conn_err = |source| ControlError::Connect {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path).await.map_err(conn_err)?;
    let (read, mut write) = stream.into_split();
    let mut out = serde_json::to_vec(req).map_err(|e| ControlError::Protocol {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    out.push(b'\n');
    write.write_all(&out).await.map_err(conn_err)?;
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .map_err(conn_err)?;
    serde_json::from_str(&line).map_err(|e| ControlError::Protocol {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
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
            if p.extension().is_some_and(|x| x == "sock") && UnixStream::connect(&p).await.is_ok() {
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
