//! Installs what the eBPF build needs, once, inside `target/tools/`: the nightly's rust-src and
//! a bpf-linker built against the nightly's own libLLVM (so no system LLVM is needed).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// bpf-linker release known to work with aya-ebpf 0.2 and LLVM 21–23.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub struct Tools {
    linker_dir: PathBuf,
}

impl Tools {
    /// `PATH` with bpf-linker's folder first, for the nightly build.
    pub fn path_with_linker(&self) -> OsString {
        let mut paths = vec![self.linker_dir.clone()];
        if let Some(p) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&p));
        }
        std::env::join_paths(paths).expect("PATH entries contain no separator")
    }
}

/// A piece the eBPF build needs that is not there yet.
#[derive(Debug, PartialEq, Eq)]
enum Missing {
    RustSrc,
    BpfLinker,
}

/// What is missing, given the nightly's sysroot and our bpf-linker folder.
fn missing(sysroot: &Path, linker_root: &Path) -> Vec<Missing> {
    let mut out = Vec::new();
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        out.push(Missing::RustSrc);
    }
    if !linker_root.join("bin/bpf-linker").exists() {
        out.push(Missing::BpfLinker);
    }
    out
}

pub fn ensure(root: &Path) -> Result<Tools> {
    let sysroot = nightly_sysroot()?;
    let linker_root = root.join("target/tools/bpf-linker");
    for piece in missing(&sysroot, &linker_root) {
        match piece {
            Missing::RustSrc => install_rust_src()?,
            Missing::BpfLinker => install_bpf_linker(root, &sysroot, &linker_root)?,
        }
    }
    Ok(Tools {
        linker_dir: linker_root.join("bin"),
    })
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .context("running rustc +nightly (is rustup installed?)")?;
    if !out.status.success() {
        bail!(
            "no nightly toolchain: the eBPF programs need one; install it with `rustup toolchain install nightly`"
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn install_rust_src() -> Result<()> {
    eprintln!("xtask: the nightly's rust-src is missing (build-std needs it); installing it");
    let ok = Command::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", "nightly"])
        .status()
        .context("running rustup")?
        .success();
    if !ok {
        bail!(
            "could not install rust-src; run `rustup component add rust-src --toolchain nightly`"
        );
    }
    Ok(())
}

/// The nightly's LLVM major version, from `rustc +nightly -vV` ("LLVM version: 22.1.4").
fn llvm_major() -> Result<String> {
    let out = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .context("running rustc +nightly -vV")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .map(str::to_owned)
        .context("rustc +nightly -vV printed no LLVM version")
}

fn install_bpf_linker(root: &Path, sysroot: &Path, linker_root: &Path) -> Result<()> {
    let major = llvm_major()?;
    if !(21..=23).contains(&major.parse::<u32>().unwrap_or(0)) {
        bail!(
            "the nightly uses LLVM {major}, but bpf-linker {BPF_LINKER_VERSION} supports 21 to 23; use a nightly with LLVM 21-23"
        );
    }
    // bpf-linker links against libLLVM.so; point it at the nightly's own copy through a prefix
    // folder holding just that symlink.
    let lib = std::fs::read_dir(sysroot.join("lib"))
        .context("reading the nightly's lib folder")?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("libLLVM.so.{major}")))
        })
        .with_context(|| {
            format!(
                "no libLLVM.so.{major}* in {}",
                sysroot.join("lib").display()
            )
        })?;
    let prefix = root.join("target/tools/llvm");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link).context("linking libLLVM.so")?;

    eprintln!(
        "xtask: bpf-linker is missing; building bpf-linker {BPF_LINKER_VERSION} (llvm-{major}) into {} (about a minute, once)",
        linker_root.display()
    );
    let ok = Command::new("cargo")
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .arg("--root")
        .arg(linker_root)
        .env("LLVM_PREFIX", &prefix)
        .status()
        .context("running cargo install bpf-linker")?
        .success();
    if !ok {
        bail!(
            "installing bpf-linker failed (see above); retry with `cargo xtask build-ebpf`, or install it yourself into {}",
            linker_root.join("bin").display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_machine_lacks_both_pieces_and_a_set_up_one_neither() {
        let dir = std::env::temp_dir().join(format!("xtask-toolchain-{}", std::process::id()));
        let (sysroot, linker) = (dir.join("sysroot"), dir.join("linker"));
        std::fs::create_dir_all(&sysroot).unwrap();
        assert_eq!(
            missing(&sysroot, &linker),
            vec![Missing::RustSrc, Missing::BpfLinker]
        );
        std::fs::create_dir_all(sysroot.join("lib/rustlib/src/rust/library/core")).unwrap();
        std::fs::create_dir_all(linker.join("bin")).unwrap();
        std::fs::write(linker.join("bin/bpf-linker"), "").unwrap();
        assert_eq!(missing(&sysroot, &linker), vec![]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
