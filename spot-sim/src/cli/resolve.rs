//! Turning what the user names (a [`TargetKind`], and maybe its own scenario file) into a
//! session's `TargetSpec`: the one resolver for `exec`, `run`, `--follow`, `target add` and a
//! game day.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use crate::{
    escape::{untrusted, untrusted_path},
    session::TargetSpec,
    settings::{ScenarioArgs, Settings},
    targets::{pods, visible_pids, CgroupDir, ExecNetns, HostView, NetNs, TargetKind, TargetScope},
};

/// `--cgroup PATH[=FILE]`, `--pod NS/NAME[=FILE]`, `--pod-uid UID[=FILE]`: a target and its own
/// scenario file, parsed when the command line is.
#[derive(Clone, Debug)]
pub(super) struct TargetArg {
    pub kind: TargetKind,
    pub scenario: Option<PathBuf>,
}

impl TargetArg {
    pub(super) fn cgroup(arg: &str) -> Result<TargetArg, String> {
        Self::split(arg, |path| Ok(TargetKind::Cgroup(PathBuf::from(path))))
    }

    pub(super) fn pod(arg: &str) -> Result<TargetArg, String> {
        Self::split(arg, |sel| {
            Ok(TargetKind::Pod(sel.parse().map_err(pod_error)?))
        })
    }

    pub(super) fn pod_uid(arg: &str) -> Result<TargetArg, String> {
        Self::split(arg, |uid| {
            Ok(TargetKind::Pod(
                pods::PodSelector::uid(uid).map_err(pod_error)?,
            ))
        })
    }

    /// `TARGET=FILE`: the target as `kind` parses it, and its own scenario file.
    fn split(
        arg: &str,
        kind: impl FnOnce(&str) -> Result<TargetKind, String>,
    ) -> Result<TargetArg, String> {
        let (target, scenario) = split_target_arg(arg);
        Ok(TargetArg {
            kind: kind(target)?,
            scenario,
        })
    }
}

fn pod_error(e: pods::PodError) -> String {
    e.to_string()
}

/// `PATH=FILE` → (PATH, Some(FILE)).
fn split_target_arg(arg: &str) -> (&str, Option<PathBuf>) {
    match arg.rsplit_once('=') {
        Some((p, f)) if !f.is_empty() => (p, Some(PathBuf::from(f))),
        _ => (arg, None),
    }
}

/// Where a target's settings come from.
#[derive(Clone)]
pub(super) enum SettingsFrom {
    /// The command line's scenario flags, which a target's own file overrides.
    Args(Box<ScenarioArgs>),
    /// Settings already resolved (`exec`'s, checked before anything starts; a game day's).
    Resolved(Box<Settings>),
}

/// How the node's pods are seen (`--host-root`, `--cgroup-root`): looked at afresh for each
/// pod, so a pod that appeared since is found.
#[derive(Clone, Debug, Default)]
pub(super) struct NodeRoots {
    pub host_root: Option<PathBuf>,
    pub cgroup_root: Option<PathBuf>,
}

impl NodeRoots {
    pub(super) fn host(&self) -> Result<HostView> {
        Ok(HostView::detect(
            self.host_root.as_deref(),
            self.cgroup_root.as_deref(),
        )?)
    }
}

/// Resolves targets the way the command line asked: every target of every command goes
/// through one of these.
#[derive(Clone)]
pub(super) struct Resolver {
    /// The cgroup v2 mount and the node's `/proc` (a pod's view of the node, with a host root).
    pub mount: PathBuf,
    pub proc: PathBuf,
    pub node: NodeRoots,
    pub settings: SettingsFrom,
    /// The responders' port (0: a free one).
    pub port: u16,
    /// Whether a target may hold spot-sim itself or PID 1.
    pub scope: TargetScope,
}

impl Resolver {
    /// The target `kind` names now, with the namespace its processes use; `file` its own
    /// scenario. A cgroup or a pod is refused if it is the mount root or (by default) holds
    /// spot-sim or PID 1.
    pub(super) fn resolve(&self, kind: &TargetKind, file: Option<&Path>) -> Result<TargetSpec> {
        let settings = self.settings_for(file)?;
        match kind {
            TargetKind::Cgroup(path) => self.open(&self.mount, &self.proc, path, settings),
            TargetKind::Pod(sel) => {
                let host = self.node.host()?;
                let pod = pods::resolve(&host, sel)?;
                let path = pod_cgroup(&pod)?;
                let mut spec = self.open(&host.cgroup2, &host.proc, &path, settings)?;
                spec.name = format!("pod {}", untrusted(pod.full_name()));
                Ok(spec)
            }
            // The transient cgroup spot-sim just made: empty, so nothing to check in it.
            TargetKind::Exec { cgroup, netns } => Ok(TargetSpec {
                name: "exec".to_string(),
                cgroup: CgroupDir::open(&self.mount, cgroup)?,
                netns: match netns {
                    ExecNetns::New => NetNs::new_private()?,
                    ExecNetns::Current => NetNs::current()?,
                },
                proc: self.proc.clone(),
                settings,
                port: self.port,
            }),
        }
    }

    /// The cgroup `kind` names now, without opening it: whether a followed pod came back
    /// under a new cgroup.
    pub(super) fn locate(&self, kind: &TargetKind) -> Result<PathBuf> {
        match kind {
            TargetKind::Cgroup(path) | TargetKind::Exec { cgroup: path, .. } => Ok(path.clone()),
            TargetKind::Pod(sel) => pod_cgroup(&pods::resolve(&self.node.host()?, sel)?),
        }
    }

    fn settings_for(&self, file: Option<&Path>) -> Result<Settings> {
        match (&self.settings, file) {
            (SettingsFrom::Args(args), file) => {
                let mut args = ScenarioArgs::clone(args);
                if let Some(f) = file {
                    args.file.scenario = Some(f.to_path_buf());
                }
                Ok(args.resolve()?)
            }
            (SettingsFrom::Resolved(settings), None) => Ok(Settings::clone(settings)),
            (SettingsFrom::Resolved(_), Some(f)) => bail!(
                "{}: a target's own scenario file is for run and target add",
                f.display()
            ),
        }
    }

    /// Any cgroup target: refused if it is the mount root or (with
    /// [`TargetScope::WorkloadOnly`]) holds spot-sim or PID 1, with the namespace its
    /// processes use. Named after its cgroup.
    fn open(
        &self,
        mount: &Path,
        proc: &Path,
        path: &Path,
        settings: Settings,
    ) -> Result<TargetSpec> {
        let cgroup = CgroupDir::open(mount, path)?;
        cgroup.check_target(mount, proc, self.scope)?;
        let netns = netns_of(&cgroup, proc)?;
        Ok(TargetSpec {
            name: format!("cgroup {}", relative_name(mount, cgroup.path())),
            cgroup,
            netns,
            proc: proc.to_path_buf(),
            settings,
            port: self.port,
        })
    }
}

fn pod_cgroup(pod: &pods::Pod) -> Result<PathBuf> {
    pod.cgroup.clone().ok_or_else(|| {
        anyhow!(
            "pod {} has no cgroup on this node (is it still running?)",
            untrusted(pod.full_name())
        )
    })
}

fn relative_name(mount: &Path, path: &Path) -> String {
    // A cgroup's name is chosen by whoever created it: shown escaped.
    path.strip_prefix(mount)
        .map(|p| format!("/{}", untrusted_path(p)))
        .unwrap_or_else(|_| untrusted_path(path))
}

/// The namespace a target's processes use: that of any process in it, else ours (an empty
/// cgroup gets the node's namespace; processes that join later are expected to share it).
/// Refused when spot-sim cannot see them (no `hostPID: true`): never a guess.
fn netns_of(cgroup: &CgroupDir, proc: &Path) -> Result<NetNs> {
    let ours = NetNs::current()?;
    for pid in visible_pids(cgroup)? {
        if let Ok(ns) = NetNs::of_pid(proc, pid) {
            if !ns.same_as(&ours) {
                log::info!(
                    "{}: serving inside the network namespace of pid {pid} (net:[{}])",
                    untrusted_path(cgroup.path()),
                    ns.inode()
                );
            }
            return Ok(ns);
        }
    }
    Ok(ours)
}
