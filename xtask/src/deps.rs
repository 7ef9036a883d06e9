//! What the tasks need from outside the Rust workspace (system programs, Python modules),
//! checked on every run and installed when missing, saying what is installed. The README's
//! commands are the whole set-up on a fresh machine: `.ci/run` installs nothing of its own.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Result};

/// How to tell that a piece is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A program on `PATH` (or in `/usr/sbin`, `/sbin`, which a non-login root shell may lack).
    Program(&'static str),
    /// A module the `python3` first on `PATH` can import.
    PythonModule(&'static str),
    /// A file under the workspace's `target/tools/`, written last by its installation.
    Tool(&'static str),
    /// A file at this absolute path (a package's file that is not a program on `PATH`).
    File(&'static str),
}

/// Where a missing piece comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A Debian package.
    Apt(&'static str),
    /// A PyPI package, for the `python3` first on `PATH`.
    Pip(&'static str),
    /// An npm package, installed into `target/tools/node` (never globally).
    Npm(&'static str),
    /// A Debian package unpacked (never installed, so nothing of it runs at boot) into
    /// `target/tools/<package>/root`, with the PyPI packages its code imports in a venv at
    /// `target/tools/<package>/venv`.
    DebUnpack {
        package: &'static str,
        python: &'static [&'static str],
    },
}

/// One thing a task needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub probe: Probe,
    pub source: Source,
    /// Why the task needs it, for the message printed when it is installed.
    pub why: &'static str,
}

const fn apt(program: &'static str, package: &'static str, why: &'static str) -> Need {
    Need {
        probe: Probe::Program(program),
        source: Source::Apt(package),
        why,
    }
}

/// A program shipped in the Debian package of the same name.
const fn deb(program: &'static str, why: &'static str) -> Need {
    apt(program, program, why)
}

const fn pip(module: &'static str, package: &'static str, why: &'static str) -> Need {
    Need {
        probe: Probe::PythonModule(module),
        source: Source::Pip(package),
        why,
    }
}

/// A file shipped in a Debian package.
const fn deb_file(path: &'static str, package: &'static str, why: &'static str) -> Need {
    Need {
        probe: Probe::File(path),
        source: Source::Apt(package),
        why,
    }
}

/// What building the whole workspace needs besides Rust (clippy and the tests build every
/// member): `protoc`, for the build script of `k8s-cri` (the test node's CRI client).
pub const WORKSPACE: &[Need] = &[apt(
    "protoc",
    "protobuf-compiler",
    "building k8s-cri, the test node's CRI client (its build script runs protoc)",
)];

/// Everything the test suite uses besides Rust crates.
pub const TEST: &[Need] = &[
    apt(
        "protoc",
        "protobuf-compiler",
        "building k8s-cri, the test node's CRI client (its build script runs protoc)",
    ),
    deb(
        "containerd",
        "the test node's container runtime (tests/tests/node.rs)",
    ),
    apt("ctr", "containerd", "importing the test node's images"),
    deb("runc", "the test node's OCI runtime"),
    deb_file(
        "/usr/lib/cni/loopback",
        "containernetworking-plugins",
        "the test node's pod network (loopback and ptp)",
    ),
    deb_file(
        "/usr/lib/cni/ptp",
        "containernetworking-plugins",
        "the test node's pod network (loopback and ptp)",
    ),
    deb_file(
        "/bin/busybox",
        "busybox-static",
        "the test node's workload and pause images (a static busybox)",
    ),
    deb("buildah", "building the test node's images"),
    deb("curl", "the HTTP client most end-to-end tests use"),
    apt(
        "ip",
        "iproute2",
        "network namespaces for the tests' clients",
    ),
    apt(
        "unshare",
        "util-linux",
        "private mount and cgroup namespaces",
    ),
    deb("bpftool", "checking that no program stays attached"),
    deb("socat", "stand-in upstreams and raw clients"),
    deb("wrk", "load in the hardening tests"),
    deb(
        "strace",
        "the order of run's shutdown (detach, then stop answering)",
    ),
    deb(
        "chromium",
        "opening the HTML game-day report in a real browser",
    ),
    pip("botocore", "botocore", "the AWS SDK's IMDS client"),
    pip("yaml", "pyyaml", "reading the deploy manifests"),
    pip(
        "kubernetes_validate",
        "kubernetes-validate",
        "validating the deploy manifests offline against the Kubernetes schemas",
    ),
    deb("npm", "installing the AWS SDK for JavaScript"),
    Need {
        probe: Probe::Tool("node/node_modules/@aws-sdk/ec2-metadata-service/package.json"),
        source: Source::Npm("@aws-sdk/ec2-metadata-service"),
        why: "the JavaScript SDK's IMDS client in tests/tests/clients.rs",
    },
    Need {
        probe: Probe::Tool("cloud-init/.unpacked"),
        source: Source::DebUnpack {
            package: "cloud-init",
            python: &[
                "requests",
                "pyyaml",
                "jinja2",
                "jsonpatch",
                "jsonschema",
                "configobj",
                "oauthlib",
                "netifaces",
            ],
        },
        why: "cloud-init's EC2 datasource in tests/tests/clients.rs",
    },
    Need {
        probe: Probe::Tool("cloud-guest-utils/.unpacked"),
        source: Source::DebUnpack {
            package: "cloud-guest-utils",
            python: &[],
        },
        why: "Canonical's ec2metadata (IMDS API 2009-04-04) in tests/tests/clients.rs",
    },
    Need {
        probe: Probe::Tool("prometheus/.unpacked"),
        source: Source::DebUnpack {
            package: "prometheus",
            python: &[],
        },
        why: "a real Prometheus answering --stop-if prom: queries in tests/tests/stop.rs",
    },
];

/// What `cargo xtask bench` uses.
pub const BENCH: &[Need] = &[
    deb("wrk", "the load generator"),
    deb("socat", "the alias + socat comparison"),
    deb("iptables", "the iptables DNAT comparison"),
    deb("bpftool", "the kernel's own cost of the connect program"),
];

/// What `cargo xtask image` uses.
pub const IMAGE: &[Need] = &[deb("buildah", "building the container image")];

/// What building and running spot-sim for another architecture uses (`cargo xtask image
/// --arch arm64`, and the test suite's arm64 check). rust-lld links, so no cross C toolchain.
pub const CROSS: &[Need] = &[apt(
    "qemu-aarch64-static",
    "qemu-user-static",
    "running the arm64 spot-sim on this machine",
)];

/// Runs the installer `cmd` on `packages`; whether it succeeded.
fn installed(mut cmd: Command, packages: &[&str]) -> bool {
    cmd.args(packages).status().is_ok_and(|s| s.success())
}

/// The needs that `present` says are missing, in order, without repeats.
pub fn missing(needs: &[Need], present: impl Fn(&Probe) -> bool) -> Vec<Need> {
    let mut out: Vec<Need> = Vec::new();
    for n in needs {
        if !out.contains(n) && !present(&n.probe) {
            out.push(*n);
        }
    }
    out
}

/// Checks `needs` on this machine and installs what is missing (apt-get and pip; as root).
pub fn ensure(needs: &[Need]) -> Result<()> {
    let todo = missing(needs, is_present);
    if todo.is_empty() {
        return Ok(());
    }
    let (apt_pkgs, pip_pkgs) = split(&todo);
    for n in &todo {
        let name = match n.source {
            Source::Apt(p) | Source::Pip(p) | Source::Npm(p) => p,
            Source::DebUnpack { package, .. } => package,
        };
        eprintln!("xtask: {name} is missing ({}); installing it", n.why);
    }
    if !apt_pkgs.is_empty() {
        let ok = root_command("apt-get")
            .args(["update", "-qq"])
            .status()
            .is_ok_and(|s| s.success());
        let mut install = root_command("apt-get");
        install
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            // dpkg's progress lines would bury the test output; errors go to stderr.
            .stdout(Stdio::null());
        if !ok || !installed(install, &apt_pkgs) {
            bail!(
                "installing {} with apt-get failed; install them by hand and run again",
                apt_pkgs.join(" ")
            );
        }
    }
    let mut pip = root_command("python3");
    pip.args(["-m", "pip", "install", "-q"]);
    if !pip_pkgs.is_empty() && !installed(pip, &pip_pkgs) {
        bail!(
            "installing {} with `python3 -m pip` failed; install them by hand and run again",
            pip_pkgs.join(" ")
        );
    }
    for n in &todo {
        match n.source {
            Source::Npm(package) => npm_install(package)?,
            Source::DebUnpack { package, python } => deb_unpack(package, python)?,
            Source::Apt(_) | Source::Pip(_) => {}
        }
    }
    let still = missing(needs, is_present);
    if !still.is_empty() {
        bail!("still missing after installing: {still:?}");
    }
    Ok(())
}

fn tools_dir() -> std::path::PathBuf {
    crate::workspace_root().join("target/tools")
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<()> {
    let ok = cmd.status().is_ok_and(|s| s.success());
    if !ok {
        bail!("{what} failed (see the output above); fix that and run again");
    }
    Ok(())
}

/// `npm install` into target/tools/node: the tests put its node_modules on NODE_PATH.
fn npm_install(package: &str) -> Result<()> {
    let prefix = tools_dir().join("node");
    std::fs::create_dir_all(&prefix)?;
    run_ok(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&prefix)
            .arg(package),
        &format!("npm install {package}"),
    )
}

/// `apt-get download` + `dpkg-deb -x` (no maintainer scripts, no units, nothing at boot), then
/// a venv for the Python modules the package's code imports; a marker file says it is complete.
fn deb_unpack(package: &str, python: &[&str]) -> Result<()> {
    let dir = tools_dir().join(package);
    std::fs::create_dir_all(&dir)?;
    let download = || {
        Command::new("apt-get")
            // apt's `_apt` sandbox user may not write into target/tools.
            .args(["download", "-qq", "-o", "APT::Sandbox::User=root", package])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !download() {
        run_ok(
            root_command("apt-get").args(["update", "-qq"]),
            "apt-get update",
        )?;
        if !download() {
            bail!("apt-get download {package} failed; is a Debian mirror reachable?");
        }
    }
    let deb = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "apt-get download {package} left no .deb in {}",
                dir.display()
            )
        })?;
    run_ok(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(dir.join("root")),
        &format!("dpkg-deb -x {}", deb.display()),
    )?;
    if !python.is_empty() {
        let venv = dir.join("venv");
        run_ok(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv (on Debian: apt-get install python3-venv)",
        )?;
        run_ok(
            Command::new(venv.join("bin/pip"))
                .args(["install", "-q"])
                .args(python),
            &format!("pip install {} into {}", python.join(" "), venv.display()),
        )?;
    }
    std::fs::write(dir.join(".unpacked"), deb.display().to_string())?;
    Ok(())
}

fn split(todo: &[Need]) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut apt = Vec::new();
    let mut pip = Vec::new();
    for n in todo {
        match n.source {
            Source::Apt(p) if !apt.contains(&p) => apt.push(p),
            Source::Pip(p) if !pip.contains(&p) => pip.push(p),
            _ => {}
        }
    }
    (apt, pip)
}

fn is_present(probe: &Probe) -> bool {
    match probe {
        Probe::Program(bin) => on_path(bin),
        Probe::PythonModule(m) => Command::new("python3")
            .args(["-c", &format!("import {m}")])
            .output()
            .is_ok_and(|o| o.status.success()),
        Probe::Tool(path) => tools_dir().join(path).is_file(),
        Probe::File(path) => Path::new(path).is_file(),
    }
}

pub fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(bin).is_file())
}

/// `program` as root: directly when we are root, else through `sudo`.
fn root_command(program: &str) -> Command {
    if crate::is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg(program);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_missing_when_every_probe_answers() {
        assert!(missing(TEST, |_| true).is_empty());
    }

    #[test]
    fn a_fresh_machine_misses_every_test_need_once() {
        let m = missing(TEST, |_| false);
        assert_eq!(m.len(), TEST.len());
        let (apt, pip) = split(&m);
        for p in [
            "bpftool",
            "wrk",
            "socat",
            "curl",
            "containerd",
            "runc",
            "containernetworking-plugins",
            "busybox-static",
            "protobuf-compiler",
        ] {
            assert!(apt.contains(&p), "{p} is not installed on a fresh machine");
        }
        assert_eq!(pip, vec!["botocore", "pyyaml", "kubernetes-validate"]);
    }

    #[test]
    fn only_what_is_absent_is_installed() {
        let m = missing(TEST, |p| {
            !matches!(p, Probe::Program("wrk") | Probe::PythonModule("yaml"))
        });
        let (apt, pip) = split(&m);
        assert_eq!(apt, vec!["wrk"]);
        assert_eq!(pip, vec!["pyyaml"]);
    }

    #[test]
    fn a_need_listed_twice_is_installed_once() {
        let twice = [TEST[0], TEST[0]];
        assert_eq!(missing(&twice, |_| false).len(), 1);
    }
}
