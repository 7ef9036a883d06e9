//! Pods running on a [`Node`], driven as kubelet drives them: RunPodSandbox, then for each
//! container CreateContainer and StartContainer; a restart as a new container in the same
//! sandbox; deletion as StopContainer (with the grace period), StopPodSandbox,
//! RemovePodSandbox, and the pod cgroup and log folder removed after, as kubelet does.

use std::{fs, io, path::PathBuf, sync::Arc, time::Duration};

use k8s_cri::v1::PodSandboxConfig;

use crate::{spec::ContainerSpec, Node, PodSpec};

/// One container of a running pod: its current id and how often it was restarted.
#[derive(Clone, Debug)]
struct Running {
    name: String,
    id: String,
    restarts: u32,
}

/// A pod running on a [`Node`]; dropping it deletes it (StopPodSandbox, RemovePodSandbox, its
/// log folder).
pub struct Pod {
    node: Arc<Node>,
    pub spec: PodSpec,
    pub sandbox: String,
    config: PodSandboxConfig,
    running: Vec<Running>,
    deleted: bool,
}

impl Node {
    /// Runs `spec` as kubelet would: the pod's log folder, RunPodSandbox, then for each
    /// container its log folder, CreateContainer and StartContainer.
    pub fn run_pod(self: &Arc<Self>, spec: PodSpec) -> io::Result<Pod> {
        let config = spec.sandbox_config(&self.cgroup_root);
        fs::create_dir_all(spec.log_directory())?;
        self.track_log_dir(spec.log_directory());
        let sandbox = match self
            .cri
            .run_pod_sandbox(config.clone(), &spec.runtime_handler)
        {
            Ok(id) => id,
            Err(e) => {
                let _ = fs::remove_dir_all(spec.log_directory());
                return Err(self.with_log(e));
            }
        };
        self.track_sandbox(&sandbox);
        let mut pod = Pod {
            node: Arc::clone(self),
            spec,
            sandbox,
            config,
            running: Vec::new(),
            deleted: false,
        };
        for c in pod.spec.containers.clone() {
            let id = pod.start_container(&c, 0).map_err(|e| self.with_log(e))?;
            pod.running.push(Running {
                name: c.name.clone(),
                id,
                restarts: 0,
            });
        }
        Ok(pod)
    }
}

impl Pod {
    fn start_container(&self, c: &ContainerSpec, restart: u32) -> io::Result<String> {
        fs::create_dir_all(self.spec.log_directory().join(&c.name))?;
        let config = self.spec.container_config(c, restart, self.node.layout);
        let id = self
            .node
            .cri
            .create_container(&self.sandbox, config, self.config.clone())?;
        self.node.cri.start_container(&id)?;
        Ok(id)
    }

    fn running(&self, name: &str) -> &Running {
        self.running
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("pod {} has no container {name}", self.spec.name))
    }

    /// `namespace/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.spec.namespace, self.spec.name)
    }

    /// The pod cgroup's path under the cgroup v2 mount of this process.
    pub fn cgroup(&self) -> PathBuf {
        crate::cgroup_v2_path(&self.spec.cgroup_parent(&self.node.cgroup_root))
    }

    /// The container's current id.
    pub fn container_id(&self, name: &str) -> String {
        self.running(name).id.clone()
    }

    /// The container's cgroup (cgroupfs driver: `<pod cgroup>/<container id>`) under the
    /// cgroup v2 mount.
    pub fn container_cgroup(&self, name: &str) -> PathBuf {
        self.cgroup().join(self.container_id(name))
    }

    /// The container's main process, as containerd reports it (ContainerStatus, verbose).
    pub fn pid(&self, name: &str) -> io::Result<u32> {
        let status = self.node.cri.container_status(&self.container_id(name))?;
        let info = status.info.get("info").cloned().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&info).map_err(io::Error::other)?;
        v.get("pid")
            .and_then(serde_json::Value::as_u64)
            .filter(|p| *p != 0)
            .map(|p| p as u32)
            .ok_or_else(|| io::Error::other(format!("container {name} has no pid (not running?)")))
    }

    /// The container's state (`CONTAINER_RUNNING`, `CONTAINER_EXITED`...) and exit code.
    pub fn state(&self, name: &str) -> io::Result<(String, i32)> {
        let status = self.node.cri.container_status(&self.container_id(name))?;
        let s = status
            .status
            .ok_or_else(|| io::Error::other("no container status"))?;
        let state = k8s_cri::v1::ContainerState::try_from(s.state)
            .map(|st| st.as_str_name().to_owned())
            .unwrap_or_else(|_| s.state.to_string());
        Ok((state, s.exit_code))
    }

    /// The sandbox's network namespace, through its pause process.
    pub fn netns_path(&self) -> io::Result<PathBuf> {
        let status = self.node.cri.pod_sandbox_status(&self.sandbox)?;
        let info = status.info.get("info").cloned().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&info).map_err(io::Error::other)?;
        let pid = v
            .get("pid")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| io::Error::other("the sandbox has no pid"))?;
        Ok(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    /// The container's current log file: `<log directory>/<name>/<restarts>.log`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        let r = self.running(name);
        self.spec
            .log_directory()
            .join(&r.name)
            .join(format!("{}.log", r.restarts))
    }

    /// What the container's current instance wrote (CRI log lines).
    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Restarts a container as kubelet does: the old one is stopped (and kept, exited), a new
    /// one with the next attempt number and log file is created in the same sandbox.
    pub fn restart(&mut self, name: &str) -> io::Result<String> {
        let old = self.running(name).clone();
        self.node.cri.stop_container(&old.id, 0)?;
        let spec = self
            .spec
            .containers
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .ok_or_else(|| io::Error::other(format!("no container {name}")))?;
        let id = self.start_container(&spec, old.restarts + 1)?;
        let r = self
            .running
            .iter_mut()
            .find(|r| r.name == name)
            .ok_or_else(|| io::Error::other(format!("no container {name}")))?;
        r.id = id.clone();
        r.restarts += 1;
        Ok(id)
    }

    /// StopContainer with `timeout` seconds of grace (0: SIGKILL at once).
    pub fn stop_container(&self, name: &str, timeout: i64) -> io::Result<()> {
        self.node
            .cri
            .stop_container(&self.container_id(name), timeout)
    }

    /// Waits until the container has exited; its exit code.
    pub fn wait_exited(&self, name: &str, timeout: Duration) -> io::Result<i32> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let (state, code) = self.state(name)?;
            if state == "CONTAINER_EXITED" {
                return Ok(code);
            }
            if std::time::Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("container {name} still {state} after {timeout:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops and removes the sandbox (and so every container) but keeps the log folder, as
    /// kubelet does until it garbage-collects it: the pod is gone, its name still known.
    pub fn remove_sandbox(&mut self) -> io::Result<()> {
        self.node.cri.stop_pod_sandbox(&self.sandbox)?;
        self.node.cri.remove_pod_sandbox(&self.sandbox)?;
        self.remove_cgroup();
        Ok(())
    }

    /// kubelet's pod cgroup manager removes the pod cgroup once the pod is gone, in every
    /// hierarchy (`podContainerManagerImpl.Destroy`, pkg/kubelet/cm/pod_container_manager_linux.go);
    /// the runtime only removes its containers' cgroups.
    fn remove_cgroup(&self) {
        let parent = self.spec.cgroup_parent(&self.node.cgroup_root);
        crate::remove_cgroup_everywhere(&parent);
    }

    /// Deletes the pod as kubelet does: StopPodSandbox (stopping its containers with the
    /// grace period), RemovePodSandbox, then its log folder.
    pub fn delete(mut self) -> io::Result<()> {
        self.remove()
    }

    fn remove(&mut self) -> io::Result<()> {
        if self.deleted {
            return Ok(());
        }
        self.deleted = true;
        for r in &self.running {
            let _ = self.node.cri.stop_container(&r.id, self.spec.grace_seconds);
        }
        let stopped = self.node.cri.stop_pod_sandbox(&self.sandbox);
        let removed = self.node.cri.remove_pod_sandbox(&self.sandbox);
        self.node.untrack_sandbox(&self.sandbox);
        self.remove_cgroup();
        let _ = fs::remove_dir_all(self.spec.log_directory());
        stopped.and(removed)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("[testnode] deleting pod {}: {e}", self.full_name());
        }
    }
}
