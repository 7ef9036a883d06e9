//! The scratch copy of the tree the breaks are applied to (`target/mutants/tree/`): never the
//! working checkout, so an interrupted run leaves no break in the source. Its own `target/`
//! persists between runs, so each build is incremental; files are copied only when their
//! content changed, so cargo sees unchanged files as unchanged.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

pub struct Tree {
    /// The scratch workspace root.
    pub root: PathBuf,
}

impl Tree {
    /// Brings `target/mutants/tree/` up to date with the working checkout at `src` (tracked
    /// files and new ones git does not ignore, as they are on disk now).
    pub fn sync(src: &Path) -> Result<Self> {
        let root = src.join("target/mutants/tree");
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let files = listed_files(src)?;
        let mut copied = 0;
        for rel in &files {
            let (from, to) = (src.join(rel), root.join(rel));
            let Ok(bytes) = fs::read(&from) else {
                continue; // deleted but not yet staged: not part of the tree
            };
            if fs::read(&to).is_ok_and(|old| old == bytes) {
                continue;
            }
            if let Some(dir) = to.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::write(&to, &bytes).with_context(|| format!("writing {}", to.display()))?;
            fs::set_permissions(&to, fs::metadata(&from)?.permissions())?;
            copied += 1;
        }
        let removed = remove_stale(&root, &files)?;
        // The tools (bpf-linker, the clients the tests run) are the checkout's.
        fs::create_dir_all(root.join("target"))?;
        let tools = root.join("target/tools");
        if fs::symlink_metadata(&tools).is_err() {
            std::os::unix::fs::symlink(src.join("target/tools"), &tools)
                .with_context(|| format!("linking {}", tools.display()))?;
        }
        eprintln!(
            "xtask mutants: scratch tree {} ({} files; {copied} copied, {removed} removed)",
            root.display(),
            files.len()
        );
        Ok(Self { root })
    }

    /// Writes `text` as `rel`; [`Tree::restore`] puts the checkout's version back.
    pub fn write(&self, rel: &str, text: &str) -> Result<()> {
        let path = self.root.join(rel);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    pub fn restore(&self, src: &Path, rel: &str) -> Result<()> {
        let text = fs::read(src.join(rel))?;
        fs::write(self.root.join(rel), text)
            .with_context(|| format!("restoring {rel} in the scratch tree"))
    }
}

/// `git ls-files --cached --others --exclude-standard`: what the tree is made of.
fn listed_files(src: &Path) -> Result<BTreeSet<String>> {
    let out = Command::new("git")
        .current_dir(src)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .context("running git ls-files (the mutation check copies what git lists)")?;
    if !out.status.success() {
        bail!(
            "git ls-files failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

/// Removes files of the previous sync that the checkout no longer has; returns how many.
fn remove_stale(root: &Path, files: &BTreeSet<String>) -> Result<usize> {
    let manifest = root.join(".mutants-files");
    let before = fs::read_to_string(&manifest).unwrap_or_default();
    let mut removed = 0;
    for rel in before.lines().filter(|l| !files.contains(*l)) {
        if fs::remove_file(root.join(rel)).is_ok() {
            removed += 1;
        }
    }
    let now: Vec<&str> = files.iter().map(String::as_str).collect();
    fs::write(&manifest, now.join("\n"))?;
    Ok(removed)
}
