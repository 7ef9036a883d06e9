//! `cargo xtask image`: the container image from a static (musl) spot-sim built here, with
//! buildah and no base image to pull, then a look inside it to check it holds a working binary.
//!
//! `--arch arm64` cross-builds `aarch64-unknown-linux-musl` (for Graviton nodes) with `rust-lld`
//! as the linker: the workspace has no C code, and musl targets bring their own C runtime
//! objects, so no cross C toolchain is needed. The eBPF object is the same for both: BPF
//! bytecode does not depend on the host architecture, and both are little-endian (bpfel).
//! `--arch all` builds both and joins them in one multi-arch manifest list.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context, Result};

const TAG: &str = "localhost/spot-sim:dev";

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// Which architecture to build: amd64, arm64, or all (both, in one multi-arch manifest
    /// list tagged localhost/spot-sim:dev) [default: this machine's]
    #[arg(long, value_enum)]
    arch: Option<Arch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Arch {
    Amd64,
    Arm64,
    All,
}

/// One architecture an image is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    /// The OCI name (`linux/<oci>`).
    pub oci: &'static str,
    pub rust_target: &'static str,
    /// ELF `e_machine`, to check what was built.
    e_machine: u16,
}

pub const AMD64: Platform = Platform {
    oci: "amd64",
    rust_target: "x86_64-unknown-linux-musl",
    e_machine: 62,
};
pub const ARM64: Platform = Platform {
    oci: "arm64",
    rust_target: "aarch64-unknown-linux-musl",
    e_machine: 183,
};

impl Platform {
    fn native() -> Result<Platform> {
        match std::env::consts::ARCH {
            "x86_64" => Ok(AMD64),
            "aarch64" => Ok(ARM64),
            other => bail!("no image for {other}: build with --arch amd64 or --arch arm64"),
        }
    }

    fn is_native(self) -> bool {
        Platform::native().is_ok_and(|p| p == self)
    }

    /// What runs a binary of this platform here: itself, or qemu-user.
    fn runner(self) -> Vec<String> {
        if self.is_native() {
            Vec::new()
        } else {
            vec![format!("qemu-{}-static", self.qemu_arch())]
        }
    }

    fn qemu_arch(self) -> &'static str {
        if self == ARM64 {
            "aarch64"
        } else {
            "x86_64"
        }
    }
}

pub fn run(root: &Path, args: ImageArgs) -> Result<ExitCode> {
    let platforms = match args.arch {
        None => vec![Platform::native()?],
        Some(Arch::Amd64) => vec![AMD64],
        Some(Arch::Arm64) => vec![ARM64],
        Some(Arch::All) => vec![AMD64, ARM64],
    };
    crate::deps::ensure(crate::deps::IMAGE)?;
    if platforms.iter().any(|p| !p.is_native()) {
        crate::deps::ensure(crate::deps::CROSS)?;
    }
    crate::build_ebpf(root)?;
    let single = platforms.len() == 1;
    let mut tags = Vec::new();
    for p in &platforms {
        let bin = build_static(root, *p, true)?;
        // The native single-arch image keeps the plain tag the README and CI use.
        let tag = if single && p.is_native() {
            TAG.to_string()
        } else {
            format!("{TAG}-{}", p.oci)
        };
        build_image(root, &bin, *p, &tag)?;
        let version = run_inside(&tag, *p)?;
        eprintln!(
            "xtask: built {tag} (linux/{}); its /usr/local/bin/spot-sim says: {version}",
            p.oci
        );
        tags.push(tag);
    }
    if !single {
        manifest_list(&tags)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask image` for this machine's architecture: builds and checks [`TAG`]; its name.
pub fn native(root: &Path) -> Result<String> {
    run(root, ImageArgs { arch: None })?;
    Ok(TAG.to_string())
}

/// Builds a static spot-sim for `p` and checks it is one: the right machine, no dynamic loader.
pub fn build_static(root: &Path, p: Platform, release: bool) -> Result<PathBuf> {
    eprintln!(
        "xtask: adding the {} target (rustup) if it is missing",
        p.rust_target
    );
    check(
        Command::new("rustup").args(["target", "add", p.rust_target]),
        "rustup target add",
    )?;
    let mut cmd = Command::new(crate::cargo());
    cmd.current_dir(root)
        .args(["build", "--package", "spot-sim", "--target", p.rust_target]);
    if release {
        cmd.arg("--release");
    }
    if !p.is_native() {
        // rustc finds rust-lld in its own sysroot; the musl target ships its C runtime.
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            p.rust_target.to_uppercase().replace('-', "_")
        );
        cmd.env(var, "rust-lld");
    }
    check(
        &mut cmd,
        &format!("building the static spot-sim for {}", p.rust_target),
    )?;
    let profile = if release { "release" } else { "debug" };
    let bin = root
        .join("target")
        .join(p.rust_target)
        .join(profile)
        .join("spot-sim");
    let elf = Elf::read(&bin)?;
    if elf.machine != p.e_machine {
        bail!(
            "{} is for ELF machine {}, not {} ({})",
            bin.display(),
            elf.machine,
            p.e_machine,
            p.oci
        );
    }
    if elf.has_interpreter {
        bail!(
            "{} is not static (it asks for a dynamic loader)",
            bin.display()
        );
    }
    Ok(bin)
}

fn build_image(root: &Path, bin: &Path, p: Platform, tag: &str) -> Result<()> {
    // A context holding only the binary: nothing else of the tree goes into the image.
    let context = root.join("target/image-context").join(p.oci);
    let _ = std::fs::remove_dir_all(&context);
    std::fs::create_dir_all(&context)?;
    std::fs::copy(bin, context.join("spot-sim")).context("copying the binary")?;
    // FROM scratch and COPY only: nothing runs during the build, so a foreign platform needs no
    // emulation to build.
    check(
        Command::new("buildah")
            .args(["bud", "--quiet", "--platform"])
            .arg(format!("linux/{}", p.oci))
            .args(["--tag", tag, "--file"])
            .arg(root.join("deploy/Containerfile.prebuilt"))
            .arg(&context),
        "buildah bud",
    )
}

/// Joins the per-architecture images under [`TAG`] as one manifest list.
fn manifest_list(tags: &[String]) -> Result<()> {
    // The name may hold a single-arch image or an older list from a previous run.
    let _ = Command::new("buildah")
        .args(["manifest", "rm", TAG])
        .output();
    let _ = Command::new("buildah").args(["rmi", TAG]).output();
    check(
        Command::new("buildah").args(["manifest", "create", TAG]),
        "buildah manifest create",
    )?;
    for tag in tags {
        check(
            Command::new("buildah")
                .args(["manifest", "add", TAG])
                .arg(format!("containers-storage:{tag}")),
            "buildah manifest add",
        )?;
    }
    let out = Command::new("buildah")
        .args(["manifest", "inspect", TAG])
        .output()?;
    // No JSON parser in xtask: the platforms are plain `"architecture": "..."` fields.
    let text = String::from_utf8_lossy(&out.stdout).replace([' ', '\n'], "");
    let archs: Vec<&str> = ["amd64", "arm64"]
        .into_iter()
        .filter(|a| text.contains(&format!("\"architecture\":\"{a}\"")))
        .collect();
    if !out.status.success() || archs != ["amd64", "arm64"] {
        bail!("the manifest list {TAG} holds {archs:?}, not amd64 and arm64");
    }
    eprintln!("xtask: {TAG} is a manifest list for linux/amd64 and linux/arm64");
    Ok(())
}

/// Runs the image's binary from its mounted root file system (no container runtime needed, so
/// this works where a sandbox forbids what `podman run` sets up); a foreign one under qemu.
fn run_inside(tag: &str, p: Platform) -> Result<String> {
    let out = Command::new("buildah")
        .args(["from", "--quiet", tag])
        .output()?;
    if !out.status.success() {
        bail!(
            "buildah from {tag} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let container = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let result = (|| {
        let out = Command::new("buildah")
            .args(["mount", &container])
            .output()?;
        let rootfs = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let bin = rootfs.join("usr/local/bin/spot-sim");
        let mut runner = p.runner();
        runner.push(bin.to_string_lossy().into_owned());
        let out = Command::new(&runner[0])
            .args(&runner[1..])
            .arg("--version")
            .output()
            .with_context(|| format!("running the image's spot-sim ({})", runner[0]))?;
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

/// What the image check needs from an ELF header.
struct Elf {
    machine: u16,
    /// A PT_INTERP program header: the binary asks for a dynamic loader.
    has_interpreter: bool,
}

impl Elf {
    fn read(path: &Path) -> Result<Elf> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
            bail!("{} is not a 64-bit ELF file", path.display());
        }
        let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]);
        let phoff = u64::from_le_bytes(data[32..40].try_into()?) as usize;
        let (phentsize, phnum) = (usize::from(u16_at(54)), usize::from(u16_at(56)));
        const PT_INTERP: u32 = 3;
        let has_interpreter = (0..phnum).any(|i| {
            let o = phoff + i * phentsize;
            data.get(o..o + 4)
                .and_then(|b| b.try_into().ok())
                .is_some_and(|b| u32::from_le_bytes(b) == PT_INTERP)
        });
        Ok(Elf {
            machine: u16_at(18),
            has_interpreter,
        })
    }
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
