//! Images made on this machine, never pulled: a busybox image (Debian's static busybox, the
//! workload's shell and HTTP client) and a pause image made the same way, written as OCI
//! archives with buildah and imported through containerd's image service (`ctr images
//! import`, which the CRI plugin then finds in its `k8s.io` namespace).

use std::{
    fs, io,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use spot_sim_testkit::unique;

/// The workload image: `/bin/busybox` and its applets.
pub const BUSYBOX: &str = "localhost/spot-sim-test/busybox:1";
/// The sandbox (pause) image: busybox's `sleep`, which holds the pod's namespaces open. It
/// never has to reap: a pause container is stopped with SIGKILL.
pub const PAUSE: &str = "localhost/spot-sim-test/pause:1";

/// Applets the workloads use.
const APPLETS: &[&str] = &[
    "sh", "sleep", "wget", "nc", "cat", "echo", "ls", "true", "date", "kill",
];

/// Where Debian's busybox-static puts its binary.
const BUSYBOX_BIN: &str = "/bin/busybox";

/// Runs `cmd`, failing with its stderr.
pub(crate) fn run(cmd: &mut Command, what: &str) -> io::Result<String> {
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: cannot start: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds the busybox and pause images as OCI archives in `dir`; their paths.
pub(crate) fn build_base(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let rootfs = dir.join("busybox-rootfs");
    fs::create_dir_all(rootfs.join("bin"))?;
    fs::create_dir_all(rootfs.join("tmp"))?;
    fs::copy(BUSYBOX_BIN, rootfs.join("bin/busybox")).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{BUSYBOX_BIN}: {e} (install busybox-static: `cargo xtask test` does)"),
        )
    })?;
    for applet in APPLETS {
        symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    let mut archives = Vec::new();
    for (name, entrypoint) in [
        (BUSYBOX, r#"["/bin/sh"]"#),
        (PAUSE, r#"["/bin/sleep", "2147483647"]"#),
    ] {
        let archive = dir.join(format!("{}.tar", unique("image")));
        commit(&rootfs, name, entrypoint, &archive)?;
        archives.push(archive);
    }
    fs::remove_dir_all(&rootfs)?;
    Ok(archives)
}

/// `buildah from scratch`, the root filesystem copied in, the entrypoint set, committed
/// straight to an OCI archive (nothing kept in buildah's own storage).
fn commit(rootfs: &Path, name: &str, entrypoint: &str, archive: &Path) -> io::Result<()> {
    let ctr = unique("buildah");
    run(
        Command::new("buildah").args(["from", "--quiet", "--name", &ctr, "scratch"]),
        "buildah from scratch",
    )?;
    let result = (|| {
        run(
            Command::new("buildah")
                .args(["copy", "--quiet", &ctr])
                .arg(rootfs)
                .arg("/"),
            "buildah copy",
        )?;
        run(
            Command::new("buildah").args([
                "config",
                "--entrypoint",
                entrypoint,
                "--cmd",
                "",
                "--env",
                "PATH=/bin",
                &ctr,
            ]),
            "buildah config",
        )?;
        run(
            Command::new("buildah")
                .args(["commit", "--quiet", &ctr])
                .arg(format!("oci-archive:{}:{name}", archive.display())),
            "buildah commit",
        )
    })();
    let _ = Command::new("buildah").args(["rm", &ctr]).output();
    result.map(drop)
}

/// Writes the image `name` from buildah's storage (e.g. `cargo xtask image`'s
/// `localhost/spot-sim:dev`) to an OCI archive in `dir`.
pub(crate) fn export(name: &str, dir: &Path) -> io::Result<PathBuf> {
    let archive = dir.join(format!("{}.tar", unique("image")));
    run(
        Command::new("buildah")
            .args(["push", "--quiet", name])
            .arg(format!("oci-archive:{}:{name}", archive.display())),
        &format!("buildah push {name} (build it with `cargo xtask image`)"),
    )?;
    Ok(archive)
}

/// Imports an OCI archive into containerd's `k8s.io` namespace, where the CRI plugin looks.
pub(crate) fn import(socket: &Path, archive: &Path) -> io::Result<()> {
    run(
        Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(archive),
        "ctr images import",
    )
    .map(drop)
}
