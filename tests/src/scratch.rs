//! A test's scratch folder with a `bin` for stand-ins (a `kubectl`, an API server's client)
//! that `spot-sim exec` finds first on PATH, and reading the JSON report written there.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use crate::{spot_sim_bin, OwnedPath};

/// A scratch folder for one test (with a `bin` for stand-ins on PATH), removed on drop.
pub struct Scratch(OwnedPath);

impl Scratch {
    /// A new scratch folder named after `tag`, with an empty `bin`.
    pub fn new(tag: &str) -> Self {
        let dir = OwnedPath::scratch_dir(tag).unwrap();
        fs::create_dir_all(dir.join("bin")).unwrap();
        Scratch(dir)
    }

    /// The path of `name` in the folder (`bin/kubectl` for a stand-in).
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` with the permissions `mode`; its path.
    pub fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// An executable `#!/bin/sh` script `name` that runs `body`; its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        self.file(name, &format!("#!/bin/sh\n{body}"), 0o755)
    }

    /// What `name` holds, empty when it is not there (a stand-in that was never run).
    pub fn text(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// `spot-sim exec ARGS` with the folder's `bin` first on PATH and `env` set, stdin empty;
    /// run to its end.
    pub fn exec(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(spot_sim_bin())
            .arg("exec")
            .args(args)
            .env("PATH", path)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// The first line of a root-only test with a [`Scratch`] folder: skips when not root.
#[macro_export]
macro_rules! scratch_or_skip {
    ($tag:expr) => {{
        $crate::root_or_skip!();
        $crate::Scratch::new($tag)
    }};
}

/// The JSON report at `path`; panics naming it when it cannot be read.
pub fn report_json(path: &Path) -> serde_json::Value {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the report {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}
