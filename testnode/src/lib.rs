//! A real Kubernetes node for the test suite, without kubelet: a private containerd (its own
//! root, state, sockets and runc root under a scratch folder, never the machine's runtime),
//! runc, and CNI with only the `loopback` plugin, so every pod's network namespace has `lo`
//! and nothing else. Pods are made through CRI as kubelet makes them ([`pod`]), from images
//! built on this machine ([`images`]): nothing is pulled.
//!
//! A [`Node`] owns all of it. Dropping it deletes its pods, stops containerd, kills any shim
//! of its own still running (by pid), removes its cgroups (every hierarchy, v1 and v2), its
//! pod log folders and its scratch folder, even when a test panicked. Every node has its own
//! cgroup root (kubelet's `--cgroup-root`: `/<unique>/kubepods/...`), so nodes of parallel
//! tests, and of other people's tests, never share a cgroup.

mod containerd;
mod cri;
mod images;
pub mod manifest;
mod pod;
mod spec;
mod sweep;

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::Child,
    sync::{Arc, Mutex, OnceLock, Weak},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};
use spot_sim_testkit::{lock, remove_cgroup_tree, unique, OwnedPath};

pub use containerd::CGROUPNS_HANDLER;
pub use images::{BUSYBOX, PAUSE};
pub use pod::Pod;
pub use spec::{fresh_uid, ContainerSpec, MountSpec, PodSpec, Qos, POD_LOGS};

/// How the node's cgroups look to containerd and runc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// This machine as it is (here: hybrid, cgroup v1 controllers and cgroup2 at
    /// /sys/fs/cgroup/unified).
    Host,
    /// A cgroup v2 only node (EKS AL2023, Bottlerocket): containerd runs in a mount namespace
    /// whose /sys/fs/cgroup is the cgroup2 mount, and the [`CGROUPNS_HANDLER`] runtime handler
    /// gives containers a cgroup namespace of their own.
    Unified,
}

/// A running node. See the module documentation.
pub struct Node {
    pub layout: Layout,
    /// The cgroup root of this node's pods (`/spot-sim-test-node-PID-N`).
    pub cgroup_root: String,
    paths: containerd::Paths,
    containerd: Mutex<Option<Child>>,
    cri: cri::Cri,
    sandboxes: Mutex<Vec<String>>,
    log_dirs: Mutex<Vec<PathBuf>>,
    spot_sim_image: OnceLock<String>,
    /// `None` once a mount was found left inside it: then it is kept, not removed.
    scratch: Option<OwnedPath>,
}

/// The cgroup v2 path of `cgroup` (as `/proc/PID/cgroup` writes it) in this process's view.
pub fn cgroup_v2_path(cgroup: &str) -> PathBuf {
    spot_sim_testkit::cgroup2_mount()
        .unwrap_or_else(|_| PathBuf::from("/sys/fs/cgroup"))
        .join(cgroup.trim_start_matches('/'))
}

impl Node {
    /// One node per layout shared by the tests of one binary that run at the same time; it is
    /// stopped when the last of them drops its handle (and started again by a later test).
    pub fn shared(layout: Layout) -> Arc<Node> {
        static HOST: Mutex<Weak<Node>> = Mutex::new(Weak::new());
        static UNIFIED: Mutex<Weak<Node>> = Mutex::new(Weak::new());
        let slot = match layout {
            Layout::Host => &HOST,
            Layout::Unified => &UNIFIED,
        };
        let mut weak = lock(slot);
        if let Some(node) = weak.upgrade() {
            return node;
        }
        let node = Arc::new(
            Node::start(layout).unwrap_or_else(|e| panic!("the test node did not start: {e}")),
        );
        *weak = Arc::downgrade(&node);
        node
    }

    /// Starts containerd and imports the base images. Fails with containerd's own error when
    /// it cannot start.
    pub fn start(layout: Layout) -> io::Result<Node> {
        sweep::stale_nodes();
        let name = unique("node");
        let scratch = OwnedPath::scratch_dir("node")?;
        let paths = containerd::Paths {
            dir: scratch.to_path_buf(),
        };
        containerd::write_config(&paths, PAUSE, layout)?;
        let mut child = containerd::spawn(&paths, layout)?;
        // From here on the node's Drop releases the pod log folder.
        let cri = match wait_ready(&paths, &mut child).and_then(|c| pod_logs_claim().map(|()| c)) {
            Ok(cri) => cri,
            Err(e) => {
                containerd::stop(&mut child);
                return Err(e);
            }
        };
        let node = Node {
            layout,
            cgroup_root: format!("/{name}"),
            paths,
            containerd: Mutex::new(Some(child)),
            cri,
            sandboxes: Mutex::default(),
            log_dirs: Mutex::default(),
            spot_sim_image: OnceLock::new(),
            scratch: Some(scratch),
        };
        for archive in images::build_base(&node.paths.dir)? {
            images::import(&node.paths.socket(), &archive)?;
            let _ = fs::remove_file(archive);
        }
        for image in [BUSYBOX, PAUSE] {
            if !node.cri.image_present(image)? {
                return Err(io::Error::other(format!(
                    "{image} was imported but CRI does not see it"
                )));
            }
        }
        Ok(node)
    }

    /// `containerd 1.6.20~ds1 (CRI v1)`, as the runtime reports itself through CRI.
    pub fn runtime_version(&self) -> String {
        match self.cri.version() {
            Ok(v) => format!(
                "{} {} (CRI {})",
                v.runtime_name, v.runtime_version, v.runtime_api_version
            ),
            Err(e) => format!("unknown ({e})"),
        }
    }

    /// Imports `image` from buildah's storage (e.g. `cargo xtask image`'s
    /// `localhost/spot-sim:dev`), once per node; the name CRI knows it by.
    pub fn import_image(&self, image: &str) -> io::Result<String> {
        if let Some(done) = self.spot_sim_image.get() {
            return Ok(done.clone());
        }
        let archive = images::export(image, &self.paths.dir)?;
        let imported = images::import(&self.paths.socket(), &archive);
        let _ = fs::remove_file(&archive);
        imported?;
        if !self.cri.image_present(image)? {
            return Err(io::Error::other(format!(
                "{image} was imported but CRI does not see it"
            )));
        }
        let _ = self.spot_sim_image.set(image.to_owned());
        Ok(image.to_owned())
    }

    /// The node's pods' cgroup root under the cgroup v2 mount (what `--cgroup-root` takes).
    pub fn cgroup_root_path(&self) -> PathBuf {
        cgroup_v2_path(&self.cgroup_root)
    }

    /// containerd's pid: with [`Layout::Unified`], `nsenter -t PID -m` enters the node's
    /// mount namespace (where /sys/fs/cgroup is the cgroup2 mount).
    pub fn containerd_pid(&self) -> u32 {
        lock(&self.containerd).as_ref().map_or(0, Child::id)
    }

    /// The node's network namespace (containerd's: private, only `lo`), where hostNetwork
    /// pods run.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.containerd_pid()))
    }

    /// Scratch space of the node's (removed with it), e.g. for emptyDir volumes.
    pub fn scratch(&self, tag: &str) -> io::Result<PathBuf> {
        let dir = self.paths.dir.join("volumes").join(unique(tag));
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// `e` with what containerd logged last.
    fn with_log(&self, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!(
                "{e}\ncontainerd said:\n{}",
                containerd::log_tail(&self.paths)
            ),
        )
    }

    fn track_sandbox(&self, id: &str) {
        lock(&self.sandboxes).push(id.to_owned());
    }

    fn untrack_sandbox(&self, id: &str) {
        lock(&self.sandboxes).retain(|s| s != id);
    }

    fn track_log_dir(&self, dir: PathBuf) {
        lock(&self.log_dirs).push(dir);
    }
}

/// Live nodes of this process, and whether one of them created /var/log/pods: the last to go
/// removes it then (when empty), so parallel nodes never pull it from under each other.
static POD_LOGS_USERS: Mutex<(usize, bool)> = Mutex::new((0, false));

fn pod_logs_claim() -> io::Result<()> {
    let mut users = lock(&POD_LOGS_USERS);
    if !Path::new(POD_LOGS).exists() {
        fs::create_dir_all(POD_LOGS)?;
        users.1 = true;
    }
    users.0 += 1;
    Ok(())
}

fn pod_logs_release() {
    let mut users = lock(&POD_LOGS_USERS);
    users.0 = users.0.saturating_sub(1);
    if users.0 == 0 && std::mem::take(&mut users.1) {
        let _ = fs::remove_dir(POD_LOGS);
    }
}

/// Removes `cgroup` (as /proc/PID/cgroup names it) in every hierarchy, v1 and v2: the v2 tree
/// first, whose `cgroup.kill` ends what still runs there, then each, deepest first.
fn remove_cgroup_everywhere(cgroup: &str) {
    let rel = cgroup.trim_start_matches('/');
    let mut mounts = containerd::cgroup_mounts();
    mounts.sort_by_key(|(_, v2)| !v2);
    for (mount, _) in mounts {
        remove_cgroup_tree(&mount.join(rel));
    }
}

/// Waits for containerd's CRI service to answer; containerd's own last words when it exits or
/// does not answer in time.
fn wait_ready(paths: &containerd::Paths, child: &mut Child) -> io::Result<cri::Cri> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(io::Error::other(format!(
                "containerd exited ({status}) before serving CRI; it said:\n{}",
                containerd::log_tail(paths)
            )));
        }
        if paths.socket().exists() {
            if let Ok(cri) = cri::Cri::connect(&paths.socket()) {
                if cri.version().is_ok() {
                    return Ok(cri);
                }
            }
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "containerd did not serve CRI within 30 s; it said:\n{}",
                containerd::log_tail(paths)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Pods first, through CRI, as kubelet would delete them.
        let mut ids = std::mem::take(&mut *lock(&self.sandboxes));
        ids.extend(self.cri.list_pod_sandboxes().unwrap_or_default());
        ids.sort();
        ids.dedup();
        for id in &ids {
            let _ = self.cri.stop_pod_sandbox(id);
            let _ = self.cri.remove_pod_sandbox(id);
        }
        if let Some(mut child) = lock(&self.containerd).take() {
            containerd::stop(&mut child);
        }
        // Shims of ours still running (a pod that could not be removed): by pid.
        for pid in containerd::our_shims(&self.paths.socket()) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // What is left in our cgroups dies with them.
        remove_cgroup_everywhere(&self.cgroup_root);
        for dir in lock(&self.log_dirs).drain(..) {
            let _ = fs::remove_dir_all(dir);
        }
        pod_logs_release();
        // /run/containerd/s holds the shims' sockets, removed by each shim as it exits.
        let _ = fs::remove_dir("/run/containerd/s");
        let _ = fs::remove_dir("/run/containerd");
        let left = containerd::unmount_under(&self.paths.dir);
        if !left.is_empty() {
            // Never remove a folder that still holds a mount: leave it, loudly.
            eprintln!(
                "[testnode] mounts left under {}: {left:?}; not removing it",
                self.paths.dir.display()
            );
            std::mem::forget(self.scratch.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A containerd that cannot start fails the node with containerd's own words, never a
    /// skip.
    #[test]
    fn a_containerd_that_cannot_start_is_an_error_in_its_own_words() {
        if !nix::unistd::geteuid().is_root() {
            spot_sim_testkit::skip("starting containerd needs root");
            return;
        }
        let scratch = OwnedPath::scratch_dir("node-bad").expect("scratch");
        let paths = containerd::Paths {
            dir: scratch.to_path_buf(),
        };
        fs::write(paths.config(), "version = 2\n[grpc\n").expect("config");
        let mut child = containerd::spawn(&paths, Layout::Host).expect("spawn");
        let err = match wait_ready(&paths, &mut child) {
            Ok(_) => panic!("containerd started with a broken config"),
            Err(e) => e.to_string(),
        };
        containerd::stop(&mut child);
        assert!(err.contains("containerd exited"), "{err}");
        assert!(
            err.to_lowercase().contains("toml"),
            "containerd's own error: {err}"
        );
    }
}
