//! Paths a test owns: a scratch folder and a control-socket path, both removed on drop.

use std::{
    fs, io,
    ops::Deref,
    path::{Path, PathBuf},
};

use crate::unique;

/// A scratch folder unique to one test, removed with its contents on drop. It never holds a
/// mount: nothing here mounts into it.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> io::Result<Self> {
        let p = std::env::temp_dir().join(unique(tag));
        fs::create_dir_all(&p)?;
        Ok(Self(p))
    }
}

impl Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A control socket path unique to this test, removed on drop (a spot-sim killed with SIGKILL
/// cannot remove it itself).
#[derive(Debug)]
pub struct ControlSocket(PathBuf);

impl ControlSocket {
    /// `/run/spot-sim/spot-sim-test-TAG-PID-N.sock`.
    pub fn new(tag: &str) -> Self {
        Self(PathBuf::from(format!("/run/spot-sim/{}.sock", unique(tag))))
    }
}

impl Deref for ControlSocket {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
