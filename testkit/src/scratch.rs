//! Paths a test owns: a scratch folder, a file, a control-socket path; each removed on drop.

use std::{
    fs, io,
    ops::Deref,
    path::{Path, PathBuf},
};

use crate::unique;

/// A path unique to one test, removed on drop with what it holds. A folder here never holds a
/// mount: nothing in the kit mounts into one.
#[derive(Debug)]
pub struct OwnedPath {
    path: PathBuf,
    dir: bool,
}

/// A scratch folder ([`OwnedPath::scratch_dir`]).
pub type ScratchDir = OwnedPath;
/// A control socket's path ([`OwnedPath::control_socket`]): a spot-sim killed with SIGKILL
/// cannot remove its socket itself.
pub type ControlSocket = OwnedPath;

impl OwnedPath {
    /// A new folder under the temporary directory.
    pub fn scratch_dir(tag: &str) -> io::Result<Self> {
        Self::dir_in(&std::env::temp_dir(), tag)
    }

    /// A new folder with a unique name under `parent` (which must exist).
    pub fn dir_in(parent: &Path, tag: &str) -> io::Result<Self> {
        let path = parent.join(unique(tag));
        fs::create_dir(&path)?;
        Ok(Self { path, dir: true })
    }

    /// A new file `…TAG….EXT` under the temporary directory, holding `contents`.
    pub fn file(tag: &str, ext: &str, contents: &str) -> io::Result<Self> {
        let path = std::env::temp_dir().join(format!("{}.{ext}", unique(tag)));
        fs::write(&path, contents)?;
        Ok(Self { path, dir: false })
    }

    /// `/run/spot-sim/spot-sim-test-TAG-PID-N.sock` (not created).
    pub fn control_socket(tag: &str) -> Self {
        let path = PathBuf::from(format!("/run/spot-sim/{}.sock", unique(tag)));
        Self { path, dir: false }
    }
}

impl Deref for OwnedPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for OwnedPath {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for OwnedPath {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl Drop for OwnedPath {
    fn drop(&mut self) {
        let _ = match self.dir {
            true => fs::remove_dir_all(&self.path),
            false => fs::remove_file(&self.path),
        };
    }
}
