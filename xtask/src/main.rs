//! Developer tasks: build the eBPF object (installing its toolchain pieces on first use), run
//! spot-sim, run the test suite, run the benchmarks.

mod bench;
mod deps;
mod fuzz;
mod image;
mod mutants;
mod toolchain;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Parser)]
#[command(about = "spot-sim developer tasks")]
enum Task {
    /// Build the eBPF programs (installs the nightly's rust-src and bpf-linker on first use).
    BuildEbpf,
    /// Lint the eBPF crate with clippy (warnings are errors), as the workspace is linted.
    ClippyEbpf,
    /// Build everything, then run `spot-sim ARGS` as root (through `sudo -E` when not root).
    Run {
        /// Build spot-sim in release mode.
        #[arg(long)]
        release: bool,
        /// Arguments for spot-sim.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build everything, then run the whole test suite (the privileged tests need root).
    Test {
        /// Extra arguments for `cargo test` (a test name filter, `--nocapture`, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build in release mode, then compare spot-sim with direct loopback, socat and iptables
    /// (as root, in private network namespaces); writes target/bench/.
    Bench(bench::BenchArgs),
    /// Run every cargo-fuzz target in fuzz/ for a bounded time (nightly; installs cargo-fuzz
    /// into target/tools/ on first use).
    Fuzz(fuzz::FuzzArgs),
    /// Apply each deliberate break of xtask/mutants.toml, one at a time, to a scratch copy of
    /// the tree under target/mutants/, and run the tests that guard it: every one must fail
    /// (the break is "killed"). As root; `--ci` runs the fixed fast subset.
    Mutants(mutants::MutantsArgs),
    /// Check licences, bans and sources with cargo-deny (installed into target/tools/ on first
    /// use; advisories need the RustSec database from GitHub, see SECURITY.md).
    Deny,
    /// Build the container image (static musl spot-sim, FROM scratch) with buildah, and check
    /// the binary inside it runs; `--arch arm64` or `--arch all` for Graviton nodes.
    Image(image::ImageArgs),
}

fn main() -> ExitCode {
    match run(Task::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<ExitCode> {
    let root = workspace_root();
    match task {
        Task::BuildEbpf => {
            build_ebpf(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::ClippyEbpf => {
            ebpf_cargo(&root, &["clippy", "--release"], &["--", "-D", "warnings"])?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Run { release, args } => {
            build_ebpf(&root)?;
            let bin = build_spot_sim(&root, release)?;
            let mut cmd = if is_root() {
                Command::new(&bin)
            } else {
                eprintln!("xtask: not root; running spot-sim through sudo -E");
                let mut c = Command::new("sudo");
                c.arg("-E").arg(&bin);
                c
            };
            cmd.args(&args);
            Ok(exit_code(cmd.status().context("starting spot-sim")?))
        }
        Task::Test { args } => {
            deps::ensure(deps::TEST)?;
            build_ebpf(&root)?;
            let bin = build_spot_sim(&root, false)?;
            // tests/tests/node.rs runs spot-sim's own image on the test node: `cargo xtask
            // image`'s, current (quick when CI has just built it).
            let image = image::native(&root)?;
            // The arm64 test runs a cross-built spot-sim under qemu-user (debug: quicker).
            deps::ensure(deps::CROSS)?;
            let arm64 = image::build_static(&root, image::ARM64, false)?;
            // The end-to-end tests attach eBPF programs and create cgroups: they need root.
            let mut cmd = if is_root() {
                Command::new(cargo())
            } else {
                eprintln!("xtask: not root; running the tests through sudo -E");
                let mut c = Command::new("sudo");
                c.arg("-E").arg(cargo());
                c
            };
            let status = cmd
                .current_dir(&root)
                // No doc tests: there are none, and their empty summary would close the log.
                // Every test file runs even after one fails, so one run shows every failure.
                .args([
                    "test",
                    "--workspace",
                    "--no-fail-fast",
                    "--lib",
                    "--bins",
                    "--tests",
                    "--",
                ])
                .args(&args)
                .env("SPOT_SIM_BIN", &bin)
                .env("SPOT_SIM_ARM64_BIN", &arm64)
                .env("SPOT_SIM_IMAGE", &image)
                .status()
                .context("running cargo test")?;
            Ok(exit_code(status))
        }
        Task::Bench(args) => bench::run(&root, args),
        Task::Fuzz(args) => fuzz::run(&root, args),
        Task::Mutants(args) => mutants::run(&root, args),
        Task::Image(args) => image::run(&root, args),
        Task::Deny => deny(&root),
    }
}

fn deny(root: &Path) -> Result<ExitCode> {
    let prefix = root.join("target/tools/cargo-deny");
    let bin = prefix.join("bin/cargo-deny");
    if !bin.exists() {
        eprintln!(
            "xtask: cargo-deny is missing; installing it into {}",
            prefix.display()
        );
        let ok = Command::new(cargo())
            .args(["install", "--locked", "cargo-deny", "--root"])
            .arg(&prefix)
            .status()
            .context("running cargo install")?
            .success();
        if !ok {
            bail!("installing cargo-deny failed (see the output above)");
        }
    }
    let status = Command::new(&bin)
        .current_dir(root)
        .args(["check", "licenses", "bans", "sources"])
        .status()
        .context("running cargo-deny")?;
    Ok(exit_code(status))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds the eBPF object into `target/ebpf/`, where `spot-sim/build.rs` picks it up. Every
/// task that builds starts here (so does CI, before clippy builds the whole workspace): the
/// workspace's own build needs are ensured first.
pub fn build_ebpf(root: &Path) -> Result<()> {
    deps::ensure(deps::WORKSPACE)?;
    ebpf_cargo(root, &["build", "--release"], &[])
}

/// `cargo +nightly ARGS --target-dir target/ebpf TAIL` in the eBPF crate, with bpf-linker on
/// PATH.
fn ebpf_cargo(root: &Path, args: &[&str], tail: &[&str]) -> Result<()> {
    ebpf_cargo_in(root, root, &root.join("target/ebpf"), args, tail)
}

/// [`ebpf_cargo`] for the eBPF crate of the tree at `tree` (the mutation check's scratch copy),
/// into `target_dir`, with the tools installed under `root`.
fn ebpf_cargo_in(
    root: &Path,
    tree: &Path,
    target_dir: &Path,
    args: &[&str],
    tail: &[&str],
) -> Result<()> {
    let tools = toolchain::ensure(root)?;
    let status = Command::new("cargo")
        .current_dir(tree.join("spot-sim-ebpf"))
        .arg("+nightly")
        .args(args)
        .arg("--target-dir")
        .arg(target_dir)
        .args(tail)
        .env("PATH", tools.path_with_linker())
        // The host workspace's cargo/rustc variables would point the nightly build at stable.
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .status()
        .context("running cargo +nightly build for the eBPF crate")?;
    if !status.success() {
        bail!(
            "`cargo {}` of the eBPF programs failed (see the compiler output above)",
            args.join(" ")
        );
    }
    Ok(())
}

fn build_spot_sim(root: &Path, release: bool) -> Result<PathBuf> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root)
        .args(["build", "--package", "spot-sim"]);
    if release {
        cmd.arg("--release");
    }
    if !cmd.status().context("running cargo build")?.success() {
        bail!("building spot-sim failed (see the compiler output above)");
    }
    let profile = if release { "release" } else { "debug" };
    Ok(root.join("target").join(profile).join("spot-sim"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// When not root: runs this same xtask command again through `sudo -E` and gives its exit
/// status, saying why (`what` is the task: "the benchmark"). As root: `None`, go on.
fn rerun_as_root(what: &str) -> Result<Option<ExitCode>> {
    if is_root() {
        return Ok(None);
    }
    eprintln!("xtask: not root; running {what} through sudo -E");
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let status = Command::new("sudo")
        .arg("-E")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .status()
        .context("starting sudo")?;
    Ok(Some(exit_code(status)))
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}
