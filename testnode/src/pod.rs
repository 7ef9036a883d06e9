//! Pods as kubelet makes them through CRI, on a [`Node`]: the sandbox with its cgroup parent,
//! log directory, labels and annotations; containers with their log paths; a restart as a new
//! container in the same sandbox; deletion as StopPodSandbox + RemovePodSandbox.
//!
//! What kubelet sends is in kubernetes/pkg/kubelet/kuberuntime: `generatePodSandboxConfig`
//! (kuberuntime_sandbox.go: log directory `/var/log/pods/<ns>_<name>_<uid>`, created before
//! RunPodSandbox; labels and annotations from labels.go), `generateContainerConfig`
//! (kuberuntime_container.go: log path `<container>/<restartCount>.log`, the container's log
//! folder created first) and the namespace options (security_context.go / helpers.go:
//! hostNetwork, hostPID → NamespaceMode NODE; otherwise network POD and pid CONTAINER).

use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use k8s_cri::v1::{
    security_profile::ProfileType, Capability, ContainerConfig, ContainerMetadata, ImageSpec,
    KeyValue, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, SecurityProfile,
};

use crate::{Layout, Node};

/// kubelet's root for pod logs.
pub const POD_LOGS: &str = "/var/log/pods";

/// A pod's QoS class, which decides its cgroup parent in kubelet's cgroupfs layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    /// `kubepods/pod<uid>`
    Guaranteed,
    /// `kubepods/burstable/pod<uid>`
    Burstable,
    /// `kubepods/besteffort/pod<uid>`
    BestEffort,
}

/// A hostPath volume mounted into a container.
#[derive(Clone, Debug)]
pub struct MountSpec {
    pub container_path: String,
    pub host_path: PathBuf,
    pub readonly: bool,
}

/// One container of a pod, as a pod spec's container says it.
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// The entrypoint (`command`); empty keeps the image's.
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<MountSpec>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    /// resources.limits.memory, in bytes (0: none).
    pub memory_limit: i64,
    /// resources.requests.cpu in millicores (0: none).
    pub cpu_request_milli: i64,
}

impl ContainerSpec {
    /// A busybox container running `sh -c SCRIPT`, which ends on SIGTERM (a shell as PID 1
    /// would otherwise ignore it and make every deletion wait out the grace period).
    pub fn sh(name: &str, script: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.to_owned(),
            image: crate::BUSYBOX.to_owned(),
            command: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("trap 'exit 0' TERM; {script}"),
            ],
            ..Default::default()
        }
    }
}

/// A pod: what the API server would hand kubelet.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    /// metadata.uid.
    pub uid: String,
    pub qos: Qos,
    pub host_network: bool,
    pub host_pid: bool,
    pub labels: Vec<(String, String)>,
    pub containers: Vec<ContainerSpec>,
    /// terminationGracePeriodSeconds: StopContainer's timeout.
    pub grace_seconds: i64,
    /// A runtime handler of the node's (RuntimeClass); empty: the default.
    pub runtime_handler: String,
}

impl PodSpec {
    /// A BestEffort pod with a fresh uid and these containers.
    pub fn new(namespace: &str, name: &str, containers: Vec<ContainerSpec>) -> PodSpec {
        PodSpec {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: fresh_uid(),
            qos: Qos::BestEffort,
            host_network: false,
            host_pid: false,
            labels: Vec::new(),
            containers,
            grace_seconds: 30,
            runtime_handler: String::new(),
        }
    }

    /// kubelet's pod log folder: `/var/log/pods/<ns>_<name>_<uid>`.
    pub fn log_directory(&self) -> PathBuf {
        Path::new(POD_LOGS).join(format!("{}_{}_{}", self.namespace, self.name, self.uid))
    }

    /// kubelet's cgroupfs pod cgroup below the node's cgroup root (its `--cgroup-root`).
    pub fn cgroup_parent(&self, cgroup_root: &str) -> String {
        let class = match self.qos {
            Qos::Guaranteed => String::new(),
            Qos::Burstable => "burstable/".into(),
            Qos::BestEffort => "besteffort/".into(),
        };
        format!("{cgroup_root}/kubepods/{class}pod{}", self.uid)
    }

    fn privileged(&self) -> bool {
        self.containers.iter().any(|c| c.privileged)
    }

    fn namespaces(&self) -> NamespaceOption {
        let mode = |node: bool, otherwise: NamespaceMode| {
            if node {
                NamespaceMode::Node as i32
            } else {
                otherwise as i32
            }
        };
        NamespaceOption {
            network: mode(self.host_network, NamespaceMode::Pod),
            pid: mode(self.host_pid, NamespaceMode::Container),
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }

    /// kubelet's sandbox labels (labels.go `newPodLabels`) and annotations.
    fn sandbox_config(&self, cgroup_root: &str) -> PodSandboxConfig {
        let mut labels: HashMap<String, String> = self.labels.iter().cloned().collect();
        labels.insert("io.kubernetes.pod.name".into(), self.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), self.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), self.uid.clone());
        let annotations = HashMap::from([
            ("kubernetes.io/config.source".into(), "api".into()),
            ("kubernetes.io/config.seen".into(), now_rfc3339ish()),
        ]);
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            hostname: if self.host_network {
                String::new()
            } else {
                self.name.clone()
            },
            log_directory: self.log_directory().display().to_string(),
            labels,
            annotations,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(cgroup_root),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(self.namespaces()),
                    privileged: self.privileged(),
                    seccomp: Some(unconfined()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// kubelet's container config (labels.go `newContainerLabels` and
    /// `newContainerAnnotations`), log path `<name>/<restart>.log`.
    fn container_config(&self, c: &ContainerSpec, restart: u32, layout: Layout) -> ContainerConfig {
        let labels = HashMap::from([
            ("io.kubernetes.container.name".into(), c.name.clone()),
            ("io.kubernetes.pod.name".into(), self.name.clone()),
            ("io.kubernetes.pod.namespace".into(), self.namespace.clone()),
            ("io.kubernetes.pod.uid".into(), self.uid.clone()),
        ]);
        let annotations = HashMap::from([
            ("io.kubernetes.container.hash".into(), "0".into()),
            (
                "io.kubernetes.container.restartCount".into(),
                restart.to_string(),
            ),
            (
                "io.kubernetes.container.terminationMessagePath".into(),
                "/dev/termination-log".into(),
            ),
            (
                "io.kubernetes.container.terminationMessagePolicy".into(),
                "File".into(),
            ),
            (
                "io.kubernetes.pod.terminationGracePeriod".into(),
                self.grace_seconds.to_string(),
            ),
        ]);
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: c.name.clone(),
                attempt: restart,
            }),
            image: Some(ImageSpec {
                image: c.image.clone(),
                ..Default::default()
            }),
            command: c.command.clone(),
            args: c.args.clone(),
            envs: c
                .env
                .iter()
                .map(|(key, value)| KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            mounts: c
                .mounts
                .iter()
                .map(|m| Mount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.display().to_string(),
                    readonly: m.readonly,
                    ..Default::default()
                })
                .collect(),
            labels,
            annotations,
            log_path: format!("{}/{restart}.log", c.name),
            linux: Some(LinuxContainerConfig {
                resources: Some(self.resources(c, layout)),
                security_context: Some(LinuxContainerSecurityContext {
                    capabilities: Some(Capability::default()),
                    privileged: c.privileged,
                    namespace_options: Some(self.namespaces()),
                    readonly_rootfs: c.readonly_rootfs,
                    seccomp: Some(unconfined()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    /// kubelet's container resources (kuberuntime_container_linux.go): cpu shares from the
    /// request (2 for none), the memory limit. On the unified layout of this machine the cpu
    /// and memory controllers stay bound to their cgroup v1 hierarchies, so the cgroup2 tree
    /// has none to write to: no resources are set there.
    fn resources(&self, c: &ContainerSpec, layout: Layout) -> LinuxContainerResources {
        if layout == Layout::Unified {
            return LinuxContainerResources::default();
        }
        let shares = match c.cpu_request_milli {
            0 => 2,
            m => (m * 1024 / 1000).max(2),
        };
        LinuxContainerResources {
            cpu_shares: shares,
            memory_limit_in_bytes: c.memory_limit,
            oom_score_adj: match self.qos {
                Qos::Guaranteed => -997,
                Qos::Burstable => 500,
                Qos::BestEffort => 1000,
            },
            ..Default::default()
        }
    }
}

fn unconfined() -> SecurityProfile {
    SecurityProfile {
        profile_type: ProfileType::Unconfined as i32,
        ..Default::default()
    }
}

fn now_rfc3339ish() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}")
}

/// A fresh pod uid (the API server's metadata.uid: a random UUID).
pub fn fresh_uid() -> String {
    let mut b = [0u8; 16];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (n ^ u128::from(std::process::id())).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

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
