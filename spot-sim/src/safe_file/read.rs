//! Reading a file someone named: a regular file only, opened non-blocking (a FIFO would hang
//! `serve`, `exec`, `experiment plan` or a `target add`; `/dev/zero` would never end), checked
//! on the open descriptor (nothing can be swapped in between) and read up to a cap, even when
//! the file grows while being read.

use std::{
    ffi::CString,
    io::Read as _,
    os::{
        fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Component, Path},
};

use super::{kind_of, stat_fd, FileError};

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const FLAGS: libc::c_int = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;

/// The bytes of the regular file `path`, at most `max` of them.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let c = cstring(path)?;
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), FLAGS) };
    read_fd(fd, path, max)
}

/// The bytes of `rel`, which must lie beneath the directory `base` (after every `..` and
/// symlink, as the kernel resolves it: `openat2(RESOLVE_BENEATH)`), at most `max` of them. An
/// absolute `rel`, or one that climbs out, is refused.
pub fn read_beneath(base: &Path, rel: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let outside = || FileError::Outside {
        path: rel.to_path_buf(),
        base: base.to_path_buf(),
    };
    if rel.is_absolute() {
        return Err(outside());
    }
    let dir = std::fs::File::open(base).map_err(|e| FileError::io(base, e))?;
    let c = cstring(rel)?;
    let how = OpenHow {
        flags: FLAGS as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: a valid directory descriptor, a NUL-terminated path and an open_how of the size
    // passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_fd().as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    } as libc::c_int;
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EXDEV) => return Err(outside()),
            // Before Linux 5.6: the same rule by hand (no `..`, no symlink that leads out).
            Some(libc::ENOSYS) => return read_beneath_by_hand(base, rel, max),
            _ => return Err(FileError::io(base.join(rel), e)),
        }
    }
    read_fd(fd, &base.join(rel), max)
}

fn read_beneath_by_hand(base: &Path, rel: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let outside = || FileError::Outside {
        path: rel.to_path_buf(),
        base: base.to_path_buf(),
    };
    if rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(outside());
    }
    let root = base.canonicalize().map_err(|e| FileError::io(base, e))?;
    let full = base.join(rel);
    let real = full.canonicalize().map_err(|e| FileError::io(&full, e))?;
    if !real.starts_with(&root) {
        return Err(outside());
    }
    read_bounded(&real, max)
}

fn cstring(path: &Path) -> Result<CString, FileError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        FileError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte in the path"),
        )
    })
}

fn read_fd(fd: libc::c_int, path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    if fd < 0 {
        return Err(FileError::io(path, std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = stat_fd(fd.as_fd()).map_err(|e| FileError::io(path, e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            what: kind_of(st.st_mode),
        });
    }
    let len = st.st_size as u64;
    if len > max {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            len,
            max,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FileError::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(FileError::Grew {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_dev_zero_and_a_directory_are_refused_at_once_and_the_cap_holds() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for (p, what) in [
            (fifo.as_path(), "FIFO"),
            (Path::new("/dev/zero"), "device"),
            (d.path(), "directory"),
        ] {
            let started = std::time::Instant::now();
            let e = read_bounded(p, 100).unwrap_err().to_string();
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
            assert!(e.contains(what), "{e}");
        }
        let big = d.path().join("big");
        std::fs::write(&big, [b'x'; 101]).unwrap();
        let e = read_bounded(&big, 100).unwrap_err().to_string();
        assert!(e.contains("101 bytes") && e.contains("100"), "{e}");
        assert_eq!(read_bounded(&big, 101).unwrap().len(), 101);
    }

    #[test]
    fn beneath_a_directory_nothing_outside_is_reached_by_path_dotdot_or_symlink() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("cm");
        std::fs::create_dir(&base).unwrap();
        std::fs::write(base.join("boot.sh"), "ok").unwrap();
        std::fs::write(d.path().join("secret"), "root only").unwrap();
        std::os::unix::fs::symlink("../secret", base.join("link")).unwrap();
        std::os::unix::fs::symlink("boot.sh", base.join("inside")).unwrap();
        assert_eq!(
            read_beneath(&base, Path::new("boot.sh"), 10).unwrap(),
            b"ok"
        );
        // A ConfigMap's own links (`key -> ..data/key`) stay inside: followed.
        assert_eq!(read_beneath(&base, Path::new("inside"), 10).unwrap(), b"ok");
        for rel in ["../secret", "link"] {
            let e = read_beneath(&base, Path::new(rel), 100).unwrap_err();
            assert!(matches!(e, FileError::Outside { .. }), "{rel}: {e}");
        }
        let abs = d.path().join("secret");
        let e = read_beneath(&base, &abs, 100).unwrap_err();
        assert!(matches!(e, FileError::Outside { .. }), "{e}");
        assert!(matches!(
            read_beneath_by_hand(&base, Path::new("link"), 100).unwrap_err(),
            FileError::Outside { .. }
        ));
    }
}
