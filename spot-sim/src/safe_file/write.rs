//! Writing a file as root where others may be watching: a temporary name created exclusively
//! in a [`TrustedDir`](super::TrustedDir), the mode set on the descriptor, then a rename into
//! place. Nothing is ever opened at the final name, so a symlink, a FIFO or a device planted
//! there (before spot-sim started or while it ran) is neither followed nor blocks us.

use std::{
    ffi::{CString, OsStr},
    io::Write as _,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use super::{check_dir, kind_of, FileError, TrustedDir};

/// Reports hold the workload's command lines: only their owner reads them unless asked.
pub const DEFAULT_MODE: u32 = 0o600;

/// What is at the final name now.
enum Existing {
    Nothing,
    /// A regular file we may replace.
    Replaceable,
}

/// Checks now what [`write_file`] needs at the end: a trusted directory, nothing but a
/// replaceable regular file at the name, and a directory we can create files in (a temporary
/// file is created and removed: `access(2)` says yes to root even on a read-only mount).
pub fn check_writable(path: &Path) -> Result<(), FileError> {
    let (dir, name) = split(path)?;
    existing(&dir, name, path)?;
    let (tmp, file) = create_temp(&dir, name, DEFAULT_MODE, path)?;
    drop(file);
    unlink(&dir, &tmp);
    Ok(())
}

/// Writes `bytes` to `path` with exactly `mode`, replacing a regular file there (see the module
/// header); on any failure nothing is left behind and what was at `path` is as it was.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let (dir, name) = split(path)?;
    let before = existing(&dir, name, path)?;
    let (tmp, file) = create_temp(&dir, name, mode, path)?;
    let written = fill(file, bytes).map_err(|e| FileError::io(path, e));
    let renamed = written.and_then(|()| {
        // Where others can write, never replace what was not there when we looked: in a
        // sticky directory what appears is theirs. Elsewhere only root or we could have.
        let no_replace = dir.shared && matches!(before, Existing::Nothing);
        rename(&dir, &tmp, name, no_replace).map_err(|e| {
            if e.raw_os_error() == Some(libc::EEXIST) {
                FileError::Raced {
                    path: path.to_path_buf(),
                }
            } else {
                FileError::io(path, e)
            }
        })
    });
    if renamed.is_err() {
        unlink(&dir, &tmp);
    }
    renamed
}

/// The trusted directory of `path` and the file's name in it.
fn split(path: &Path) -> Result<(TrustedDir, &OsStr), FileError> {
    let name = path.file_name().ok_or_else(|| FileError::NotRegular {
        path: path.to_path_buf(),
        what: "a directory",
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((check_dir(&dir)?, name))
}

fn existing(dir: &TrustedDir, name: &OsStr, path: &Path) -> Result<Existing, FileError> {
    let me = nix::unistd::geteuid().as_raw();
    let st = match stat_at(dir.fd(), name) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Existing::Nothing),
        Err(e) => return Err(FileError::io(path, e)),
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            what: kind_of(st.st_mode),
        });
    }
    if dir.shared && st.st_uid != me {
        return Err(FileError::Foreign {
            path: path.to_path_buf(),
            owner: st.st_uid,
        });
    }
    Ok(Existing::Replaceable)
}

/// `.NAME.spot-sim-PID-RANDOM.tmp`, created `O_EXCL | O_NOFOLLOW` (a name someone guessed and
/// planted makes us pick another), with `mode` set on the descriptor whatever the umask.
fn create_temp(
    dir: &TrustedDir,
    name: &OsStr,
    mode: u32,
    path: &Path,
) -> Result<(CString, std::fs::File), FileError> {
    for _ in 0..16 {
        let mut tmp = b".".to_vec();
        tmp.extend_from_slice(name.as_bytes());
        tmp.extend_from_slice(
            format!(
                ".spot-sim-{}-{:08x}.tmp",
                std::process::id(),
                rand::random::<u32>()
            )
            .as_bytes(),
        );
        let tmp = CString::new(tmp).map_err(|_| {
            FileError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte in the name"),
            )
        })?;
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                dir.fd().as_raw_fd(),
                tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                DEFAULT_MODE,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EEXIST) {
                continue;
            }
            return Err(FileError::io(path, e));
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // On the descriptor: exact whatever the umask, and no path to follow.
        if let Err(e) = nix::sys::stat::fchmod(
            file.as_raw_fd(),
            nix::sys::stat::Mode::from_bits_truncate(mode & 0o777),
        ) {
            unlink(dir, &tmp);
            return Err(FileError::io(path, e.into()));
        }
        return Ok((tmp, file));
    }
    Err(FileError::io(
        path,
        std::io::Error::other("could not pick a temporary name"),
    ))
}

fn fill(mut file: std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

fn rename(dir: &TrustedDir, tmp: &CString, name: &OsStr, no_replace: bool) -> std::io::Result<()> {
    let to = CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte"))?;
    let flags: libc::c_uint = if no_replace {
        libc::RENAME_NOREPLACE
    } else {
        0
    };
    let d = dir.fd().as_raw_fd();
    // SAFETY: valid descriptors and NUL-terminated names. renameat2 through syscall(2): the
    // libc wrapper is missing from older glibc and from musl.
    let rc = unsafe { libc::syscall(libc::SYS_renameat2, d, tmp.as_ptr(), d, to.as_ptr(), flags) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn unlink(dir: &TrustedDir, tmp: &CString) {
    // SAFETY: a valid directory descriptor and a NUL-terminated name.
    unsafe { libc::unlinkat(dir.fd().as_raw_fd(), tmp.as_ptr(), 0) };
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<libc::stat> {
    let c = CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a valid descriptor, a NUL-terminated name and a buffer of the right size.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so the buffer is initialized.
    Ok(unsafe { st.assume_init() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn only_entry_is(dir: &Path, name: &str) {
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [name], "a temporary file was left behind");
    }

    #[test]
    fn a_report_is_written_0600_and_replaces_an_old_one_with_the_mode_asked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json");
        // (The umask is a process's: tests/tests/files.rs writes one under umask 000.)
        write_file(&p, b"one", DEFAULT_MODE).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o600);
        write_file(&p, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o644);
        only_entry_is(d.path(), "r.json");
    }

    #[test]
    fn a_symlink_a_fifo_and_a_directory_at_the_name_are_refused_and_left_as_they_were() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let link = d.path().join("link.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let fifo = d.path().join("fifo.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let sub = d.path().join("sub.json");
        std::fs::create_dir(&sub).unwrap();
        for (p, what) in [
            (&link, "symbolic link"),
            (&fifo, "FIFO"),
            (&sub, "directory"),
        ] {
            let started = std::time::Instant::now();
            let e = write_file(p, b"x", DEFAULT_MODE).unwrap_err().to_string();
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
            assert!(e.contains(what), "{e}");
            let e = check_writable(p).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    }

    #[test]
    fn in_a_sticky_directory_a_fresh_file_is_written_but_another_users_is_not_replaced() {
        let base = tempfile::tempdir().unwrap();
        let sticky = base.path().join("tmp");
        std::fs::create_dir(&sticky).unwrap();
        std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
        write_file(&sticky.join("fresh.json"), b"x", DEFAULT_MODE).unwrap();
        // Our own from an earlier run is ours to replace.
        write_file(&sticky.join("fresh.json"), b"y", DEFAULT_MODE).unwrap();
        if nix::unistd::geteuid().is_root() {
            let theirs = sticky.join("theirs.json");
            std::fs::write(&theirs, "theirs").unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            let e = write_file(&theirs, b"x", DEFAULT_MODE)
                .unwrap_err()
                .to_string();
            assert!(e.contains("uid 65534"), "{e}");
            assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "theirs");
        }
    }
}
