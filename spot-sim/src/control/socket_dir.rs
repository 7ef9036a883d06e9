//! Where the control socket lives, made safe: a directory only this user can write (so nobody
//! can swap the socket and answer `status`, `trigger` or `target` as spot-sim), a socket that is
//! 0600 from the moment it exists, and an old file at the path replaced only when it is the
//! socket of a dead instance.

use std::{
    io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt},
    path::Path,
};

use tokio::net::{UnixListener, UnixStream};

use super::ControlError;

/// Creates `dir` (mode 0700 whatever the umask) if missing, and refuses one that another user
/// owns or that is group- or world-writable.
pub(super) fn prepare(dir: &Path) -> Result<(), ControlError> {
    let bind_err = |source| ControlError::Bind {
        path: dir.to_path_buf(),
        source,
    };
    if std::fs::symlink_metadata(dir).is_err() {
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
        {
            Ok(()) => {
                // The umask may have taken bits from 0700 (umask 077 is fine, 0777 is not):
                // set the mode exactly.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(bind_err)?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(bind_err(e)),
        }
    }
    check(dir)
}

/// The checks alone: the one directory rule of safe_file/dir.rs, shared with the report. A
/// sticky directory others can write (`/tmp`) is accepted since the socket is always created
/// fresh there (`bind` never reuses a name; only our own dead socket is cleared first), and
/// nobody else can rename or remove it once it is ours.
pub(super) fn check(dir: &Path) -> Result<(), ControlError> {
    use crate::safe_file::FileError;
    match crate::safe_file::check_dir(dir) {
        Ok(_) => Ok(()),
        Err(FileError::UnsafeDir { dir: bad, problem }) => Err(ControlError::UnsafeDir {
            dir: bad,
            problem,
            // Never a chmod or chown: the directory may be shared (/var/tmp, a home).
            fix: PRIVATE_FIX.to_string(),
        }),
        Err(FileError::Io { path, source }) => Err(ControlError::Bind { path, source }),
        Err(other) => Err(ControlError::Bind {
            path: dir.to_path_buf(),
            source: io::Error::other(other.to_string()),
        }),
    }
}

/// What to do about an unsafe control directory: another path, in a directory of one's own.
const PRIVATE_FIX: &str = "give a --control path in a private directory instead, such as the default under /run/spot-sim, or one made with `mkdir -m 700 DIR`";

/// What is at `path` already: nothing (fine), a live instance's socket (refused), a socket a
/// dead instance of this user left (removed), or anything else (refused, left as it was).
pub(super) async fn clear_stale(path: &Path) -> Result<(), ControlError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ControlError::Bind {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(ControlError::InUse(path.to_path_buf()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(ControlError::ForeignSocket {
            path: path.to_path_buf(),
            owner: meta.uid(),
        });
    }
    // Left by a spot-sim that was killed: nobody answers, so it is ours to replace.
    log::debug!("removing the stale control socket {}", path.display());
    std::fs::remove_file(path).or_else(|e| match e.kind() {
        io::ErrorKind::NotFound => Ok(()),
        _ => Err(ControlError::Bind {
            path: path.to_path_buf(),
            source: e,
        }),
    })
}

/// Binds the socket with mode 0600 from its creation: under a umask of 0177, instead of a
/// `chmod` afterwards (which follows symlinks and leaves a window).
pub(super) fn bind_private(path: &Path) -> Result<UnixListener, ControlError> {
    let bind_err = |source| ControlError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(bind_err)?;
    let meta = std::fs::symlink_metadata(path).map_err(bind_err)?;
    if !meta.file_type().is_socket() || meta.mode() & 0o077 != 0 {
        return Err(bind_err(io::Error::other(format!(
            "the socket came out with mode {:04o}",
            meta.mode() & 0o7777
        ))));
    }
    Ok(listener)
}

/// Removes the sockets (`exec-PID.sock`) that `exec` instances killed with SIGKILL left in
/// `dir`: only when that process is gone, the socket is ours, and nothing answers on it.
pub(super) async fn remove_dead_exec_sockets(dir: &Path) -> usize {
    let me = nix::unistd::geteuid().as_raw();
    let mut removed = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        let Some(pid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("exec-")?.strip_suffix(".sock"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.file_type().is_socket()
            || meta.uid() != me
            || pid == std::process::id()
            || Path::new(&format!("/proc/{pid}")).exists()
            || UnixStream::connect(&path).await.is_ok()
        {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            log::info!(
                "removed {}, left by a spot-sim (pid {pid}) that is gone",
                path.display()
            );
            removed += 1;
        }
    }
    removed
}
