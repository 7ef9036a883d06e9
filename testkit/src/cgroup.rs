//! Cgroups a test or the benchmark created, removed (with what runs inside) on drop.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{context, unique};

/// The cgroup v2 mount point, from `/proc/self/mountinfo` (it is not always /sys/fs/cgroup:
/// hybrid hosts mount it at /sys/fs/cgroup/unified).
pub fn cgroup2_mount() -> io::Result<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    text.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup v2 mount"))
}

/// A cgroup subtree this process created; dropping it kills what is inside (only this
/// subtree's processes) and removes it, deepest first.
#[derive(Debug)]
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    /// A new cgroup with a unique name (see [`unique`]) directly under the cgroup v2 mount.
    pub fn new(tag: &str) -> io::Result<Self> {
        Self::create(cgroup2_mount()?.join(unique(tag)))
    }

    /// A new cgroup at `path`, which must not exist yet (so it is ours to remove).
    pub fn create(path: PathBuf) -> io::Result<Self> {
        fs::create_dir(&path).map_err(|e| context(format!("creating {}", path.display()), e))?;
        Ok(Self { path })
    }

    /// A child cgroup (`rel` may hold several levels), removed with this one.
    pub fn child(&self, rel: &str) -> io::Result<PathBuf> {
        let p = self.path.join(rel);
        fs::create_dir_all(&p).map_err(|e| context(format!("creating {}", p.display()), e))?;
        Ok(p)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.path);
    }
}

/// Kills everything in the tree at `path` and removes it, deepest first.
pub fn remove_cgroup_tree(path: &Path) {
    if !path.exists() {
        return;
    }
    let _ = fs::write(path.join("cgroup.kill"), "1");
    let mut dirs = Vec::new();
    collect_dirs(path, &mut dirs);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        // A killed process leaves its cgroup a moment later.
        for _ in 0..200 {
            if fs::remove_dir(&d).is_ok() || !d.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn collect_dirs(p: &Path, out: &mut Vec<PathBuf>) {
    out.push(p.to_path_buf());
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}
