//! The directory rule, for every file spot-sim writes as root and for the control socket's
//! directory: walked from `/` (or the working directory) one component at a time, on
//! descriptors, so what is judged is what is used.
//!
//! Each directory on the way must be owned by root or this user. One that others can write is
//! accepted only when sticky (`/tmp`, mode 1777), and then only an entry that root or this user
//! owns is taken from it: a sticky bit stops others renaming or removing our entries, not
//! planting their own. A symlink is followed only under the same condition, at most 40 deep.

use std::{
    ffi::{CString, OsStr, OsString},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::{OsStrExt, OsStringExt},
    },
    path::{Component, Path, PathBuf},
};

use super::{stat_fd, FileError};

/// As many symlinks as the kernel follows in one lookup (`MAXSYMLINKS`).
const MAX_LINKS: u32 = 40;

/// A directory that passed the rule, held open so the file is created in that very directory.
#[derive(Debug)]
pub struct TrustedDir {
    fd: OwnedFd,
    path: PathBuf,
    /// Others can write to it (it is sticky): only a file created fresh, or this user's own,
    /// may be put at a name in it.
    pub shared: bool,
}

impl TrustedDir {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens `path` as a directory under the rule above, or says which directory breaks it.
pub fn check_dir(path: &Path) -> Result<TrustedDir, FileError> {
    let me = nix::unistd::geteuid().as_raw();
    let start = if path.is_absolute() { "/" } else { "." };
    let mut cur = open_at(None, OsStr::new(start), Path::new(start))?;
    let mut cur_path = PathBuf::from(start);
    let mut shared = judge_dir(&cur, &cur_path, me)?;
    // Components still to walk, front first; a symlink's target is pushed in front.
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, path);
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == "/" {
            cur = open_at(None, OsStr::new("/"), Path::new("/"))?;
            cur_path = PathBuf::from("/");
            shared = judge_dir(&cur, &cur_path, me)?;
            continue;
        }
        let shown = if name == ".." {
            cur_path
                .parent()
                .map_or_else(|| cur_path.clone(), Path::to_path_buf)
        } else {
            cur_path.join(&name)
        };
        let fd = open_at(Some(cur.as_fd()), &name, &shown)?;
        let st = stat_fd(fd.as_fd()).map_err(|e| FileError::io(&shown, e))?;
        if shared && name != ".." && st.st_uid != 0 && st.st_uid != me {
            return Err(FileError::UnsafeDir {
                dir: shown,
                problem: format!(
                    "owned by uid {}, in {} that others can write to, so it may have been planted there",
                    st.st_uid,
                    cur_path.display()
                ),
            });
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            links += 1;
            if links > MAX_LINKS {
                return Err(FileError::UnsafeDir {
                    dir: shown,
                    problem: "too many symbolic links".into(),
                });
            }
            let target = read_link(&fd).map_err(|e| FileError::io(&shown, e))?;
            push_components(&mut todo, Path::new(&target));
            continue;
        }
        shared = judge_dir(&fd, &shown, me)?;
        cur = fd;
        cur_path = shown;
    }
    Ok(TrustedDir {
        fd: cur,
        path: path.to_path_buf(),
        shared,
    })
}

/// Whether `fd` is a directory of root's or ours that only we can write (`false`), or a sticky
/// one that others can write too (`true`); an error says which rule it breaks.
fn judge_dir(fd: &OwnedFd, path: &Path, me: u32) -> Result<bool, FileError> {
    let st = stat_fd(fd.as_fd()).map_err(|e| FileError::io(path, e))?;
    let unsafe_dir = |problem: String| FileError::UnsafeDir {
        dir: path.to_path_buf(),
        problem,
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(unsafe_dir("not a directory".into()));
    }
    if st.st_uid != 0 && st.st_uid != me {
        return Err(unsafe_dir(format!(
            "owned by uid {}, neither root nor this user (uid {me}), who could swap what spot-sim puts there",
            st.st_uid
        )));
    }
    let others_write = st.st_mode & 0o022 != 0;
    if others_write && st.st_mode & libc::S_ISVTX == 0 {
        return Err(unsafe_dir(format!(
            "mode {:04o} lets others write to it without the sticky bit, so they could swap what spot-sim puts there",
            st.st_mode & 0o7777
        )));
    }
    Ok(others_write)
}

/// `path`'s components onto `todo`, so that popping yields them in order.
fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::RootDir => Some(OsString::from("/")),
            Component::ParentDir => Some(OsString::from("..")),
            Component::Normal(n) => Some(n.to_os_string()),
            Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

/// `openat(dir, name, O_PATH | O_NOFOLLOW)`: a handle on the entry itself, never what a
/// symlink there points to.
pub(super) fn open_at(
    dir: Option<BorrowedFd<'_>>,
    name: &OsStr,
    shown: &Path,
) -> Result<OwnedFd, FileError> {
    let c = CString::new(name.as_bytes()).map_err(|_| {
        FileError::io(
            shown,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte in the path"),
        )
    })?;
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a valid directory descriptor (or AT_FDCWD) and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dirfd,
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(FileError::io(shown, std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The target of the symlink `fd` (an `O_PATH | O_NOFOLLOW` handle on it).
fn read_link(fd: &OwnedFd) -> std::io::Result<OsString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an empty path reads the link `fd` itself refers to; the buffer is as long as said.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir_with_mode(base: &Path, name: &str, mode: u32) -> PathBuf {
        let d = base.join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        d
    }

    #[test]
    fn a_private_directory_passes_and_a_sticky_one_is_shared() {
        let base = tempfile::tempdir().unwrap();
        let own = dir_with_mode(base.path(), "own", 0o700);
        assert!(!check_dir(&own).unwrap().shared);
        let sticky = dir_with_mode(base.path(), "sticky", 0o1777);
        assert!(check_dir(&sticky).unwrap().shared);
    }

    #[test]
    fn a_world_writable_directory_without_the_sticky_bit_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let loose = dir_with_mode(base.path(), "loose", 0o777);
        let e = check_dir(&loose).unwrap_err().to_string();
        assert!(e.contains("mode 0777") && e.contains("sticky"), "{e}");
        // A directory below a loose one is refused too: its entry could be swapped.
        let below = dir_with_mode(&loose, "below", 0o700);
        let e = check_dir(&below).unwrap_err().to_string();
        assert!(e.contains("loose"), "{e}");
    }

    #[test]
    fn a_symlink_to_a_private_directory_is_followed_from_a_trusted_place() {
        let base = tempfile::tempdir().unwrap();
        let own = dir_with_mode(base.path(), "own", 0o700);
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&own, &link).unwrap();
        assert!(!check_dir(&link).unwrap().shared);
        let e = check_dir(&base.path().join("missing/x")).unwrap_err();
        assert!(matches!(e, FileError::Io { .. }), "{e}");
    }
}
