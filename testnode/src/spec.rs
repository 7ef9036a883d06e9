//! What kubelet asks CRI for, from a pod spec: the sandbox config (cgroup parent in the
//! cgroupfs layout, log directory, labels and annotations, namespace options) and each
//! container's config (log path, labels and annotations, security context, resources).
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
};

use k8s_cri::v1::{
    security_profile::ProfileType, Capability, ContainerConfig, ContainerMetadata, ImageSpec,
    KeyValue, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, SecurityProfile,
};

use crate::Layout;

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
    pub(crate) fn sandbox_config(&self, cgroup_root: &str) -> PodSandboxConfig {
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
    pub(crate) fn container_config(
        &self,
        c: &ContainerSpec,
        restart: u32,
        layout: Layout,
    ) -> ContainerConfig {
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
