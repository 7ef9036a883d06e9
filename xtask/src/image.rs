//! `cargo xtask image`: the container image from a static (musl) spot-sim built here, with
//! buildah and no base image to pull, then a look inside it to check it holds a working binary.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context, Result};

const TAG: &str = "localhost/spot-sim:dev";

pub fn run(root: &Path) -> Result<ExitCode> {
    let arch = std::env::consts::ARCH;
    let target = format!("{arch}-unknown-linux-musl");
    crate::deps::ensure(crate::deps::IMAGE)?;
    crate::build_ebpf(root)?;
    eprintln!("xtask: adding the {target} target (rustup) if it is missing");
    check(
        Command::new("rustup").args(["target", "add", &target]),
        "rustup target add",
    )?;
    check(
        Command::new(crate::cargo()).current_dir(root).args([
            "build",
            "--release",
            "--package",
            "spot-sim",
            "--target",
            &target,
        ]),
        "building the static spot-sim",
    )?;
    let bin = root.join("target").join(&target).join("release/spot-sim");
    if elf_has_interpreter(&bin)? {
        bail!(
            "{} is not static (it asks for a dynamic loader)",
            bin.display()
        );
    }
    // A context holding only the binary: nothing else of the tree goes into the image.
    let context = root.join("target/image-context");
    let _ = std::fs::remove_dir_all(&context);
    std::fs::create_dir_all(&context)?;
    std::fs::copy(&bin, context.join("spot-sim")).context("copying the binary")?;
    check(
        Command::new("buildah")
            .args(["bud", "--quiet", "--tag", TAG, "--file"])
            .arg(root.join("deploy/Containerfile.prebuilt"))
            .arg(&context),
        "buildah bud",
    )?;
    let version = run_inside()?;
    eprintln!("xtask: built {TAG}; its /usr/local/bin/spot-sim says: {version}");
    Ok(ExitCode::SUCCESS)
}

/// Runs the image's binary from its mounted root file system (no container runtime needed, so
/// this works where a sandbox forbids what `podman run` sets up).
fn run_inside() -> Result<String> {
    let out = Command::new("buildah")
        .args(["from", "--quiet", TAG])
        .output()?;
    if !out.status.success() {
        bail!(
            "buildah from {TAG} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let container = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let result = (|| {
        let out = Command::new("buildah")
            .args(["mount", &container])
            .output()?;
        let rootfs = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let out = Command::new(rootfs.join("usr/local/bin/spot-sim"))
            .arg("--version")
            .output()
            .context("running the image's spot-sim")?;
        if !out.status.success() {
            bail!("the image's spot-sim --version failed");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    })();
    let _ = Command::new("buildah")
        .args(["umount", &container])
        .output();
    let _ = Command::new("buildah").args(["rm", &container]).output();
    result
}

/// Whether an ELF file has a PT_INTERP program header (a dynamic loader).
fn elf_has_interpreter(path: &Path) -> Result<bool> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        bail!("{} is not a 64-bit ELF file", path.display());
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[32..40].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    const PT_INTERP: u32 = 3;
    Ok((0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        data.get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .is_some_and(|b| u32::from_le_bytes(b) == PT_INTERP)
    }))
}

fn check(cmd: &mut Command, what: &str) -> Result<()> {
    if !cmd
        .status()
        .with_context(|| format!("starting {what}"))?
        .success()
    {
        bail!("{what} failed (see above)");
    }
    Ok(())
}
