//! Files spot-sim writes or reads by a path someone else may have chosen, as root next to other
//! users' workloads (issue #20). One rule for directories ([`dir`]), one way to write
//! ([`write`]) and one way to read ([`read`]); the report, the control socket's directory, the
//! scenario and experiment files and `user-data-file` all go through them.
//!
//! - **A directory is trusted** when it and every directory on the way to it are owned by root
//!   or by this user and not writable by anyone else, except a sticky one (`/tmp`): there an
//!   entry is trusted only when root or this user owns it, since nobody else can rename or
//!   remove it. A symlink on the way is followed only from a trusted place.
//! - **A file is written** under a temporary name created `O_CREAT | O_EXCL | O_NOFOLLOW`
//!   relative to the directory's descriptor, with its mode set on the descriptor (0600 unless
//!   asked otherwise), then renamed into place. What was at the name is replaced only when it
//!   is a regular file (and, in a sticky directory, this user's own): a symlink, a FIFO, a
//!   device or a directory is refused and left as it was, never opened.
//! - **A file is read** only when it is a regular file, opened non-blocking (a FIFO cannot hang
//!   us) and read up to a cap checked on the open descriptor.

pub mod dir;
pub mod read;
pub mod write;

use std::path::PathBuf;

pub use dir::{check_dir, TrustedDir};
pub use read::{read_beneath, read_bounded};
pub use write::{check_writable, write_file, DEFAULT_MODE};

/// Why a file could not be written or read safely. Each message names the path and the
/// problem; the caller adds the fix that suits its option.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A directory on the way is not one only root or this user controls.
    #[error("{}: {problem}", dir.display())]
    UnsafeDir { dir: PathBuf, problem: String },
    /// Something other than a regular file is at the path.
    #[error("{} is {what}, not a regular file", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    /// A file of another user sits in a sticky directory: not ours to replace.
    #[error("{} is owned by uid {owner} in a directory others can write to; it is not spot-sim's to replace", path.display())]
    Foreign { path: PathBuf, owner: u32 },
    #[error("{} is {len} bytes, more than the {max} allowed", path.display())]
    TooLarge { path: PathBuf, len: u64, max: u64 },
    #[error("{} grew beyond {max} bytes while being read", path.display())]
    Grew { path: PathBuf, max: u64 },
    /// A path that leads out of the directory it must stay in.
    #[error("{} leads outside {}", path.display(), base.display())]
    Outside { path: PathBuf, base: PathBuf },
    /// Something appeared at the name between the check and the rename.
    #[error("{} appeared while spot-sim was writing it; left as it is", path.display())]
    Raced { path: PathBuf },
}

impl FileError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FileError::Io {
            path: path.into(),
            source,
        }
    }
}

/// What a file type is, in words, for a refusal.
pub(crate) fn kind_of(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a FIFO (named pipe)",
        libc::S_IFCHR | libc::S_IFBLK => "a device",
        libc::S_IFSOCK => "a socket",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFREG => "a regular file",
        _ => "not a regular file",
    }
}

/// `fstat` of a descriptor.
pub(crate) fn stat_fd(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<libc::stat> {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a valid descriptor and a buffer of the right size; filled on success.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so the buffer is initialized.
    Ok(unsafe { st.assume_init() })
}
