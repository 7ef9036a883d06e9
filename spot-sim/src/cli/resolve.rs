//! Turning what the user names (a cgroup path, a pod selector, a scenario file) into a
//! session's `TargetSpec`: one resolver for `run`, `--follow`, `target add` and a game day.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

use crate::{
    escape::{untrusted, untrusted_path},
    session::TargetSpec,
    settings::{ScenarioArgs, Settings},
    targets::{pods, visible_pids, CgroupDir, HostView, NetNs, PodSelector, TargetScope},
};

/// `PATH=FILE` → (PATH, Some(FILE)).
pub(super) fn split_target_arg(arg: &str) -> (&str, Option<PathBuf>) {
    match arg.rsplit_once('=') {
        Some((p, f)) if !f.is_empty() => (p, Some(PathBuf::from(f))),
        _ => (arg, None),
    }
}

fn settings_for(args: &ScenarioArgs, file: Option<&Path>) -> Result<Settings> {
    let mut args = args.clone();
    if let Some(f) = file {
        args.scenario = Some(f.to_path_buf());
    }
    Ok(args.resolve()?)
}

fn relative_name(mount: &Path, path: &Path) -> String {
    // A cgroup's name is chosen by whoever created it: shown escaped.
    path.strip_prefix(mount)
        .map(|p| format!("/{}", untrusted_path(p)))
        .unwrap_or_else(|_| untrusted_path(path))
}

/// Resolves target specs the way the command line asked: `run`'s own targets, `--follow`'s
/// re-resolved pods and `target add` all go through one of these.
#[derive(Clone)]
pub(super) struct Resolver {
    /// The cgroup v2 mount and the node's `/proc` (a pod's view of the node, with a host root).
    mount: PathBuf,
    proc: PathBuf,
    /// The scenario flags, which a per-target file overrides.
    args: ScenarioArgs,
    port: u16,
    scope: TargetScope,
}

impl Resolver {
    pub(super) fn new(
        mount: PathBuf,
        proc: PathBuf,
        args: ScenarioArgs,
        port: u16,
        scope: TargetScope,
    ) -> Self {
        Self {
            mount,
            proc,
            args,
            port,
            scope,
        }
    }

    /// A cgroup's target (`--cgroup PATH[=FILE]`): refused if it is the mount root or (by
    /// default) holds spot-sim or PID 1, with the namespace its processes use.
    pub(super) fn cgroup(&self, path: &Path, file: Option<&Path>) -> Result<TargetSpec> {
        self.open(&self.mount, &self.proc, path, file)
    }

    /// A pod's target: its pod-level cgroup (so restarted containers stay covered) and the
    /// network namespace its containers share. Checked as any cgroup is: a pod never
    /// resolves to the mount root (nor, by default, to spot-sim's own cgroup).
    pub(super) fn pod(
        &self,
        host: &HostView,
        sel: &PodSelector,
        file: Option<&Path>,
    ) -> Result<TargetSpec> {
        let pod = pods::resolve(host, sel)?;
        let path = pod.cgroup.clone().ok_or_else(|| {
            anyhow!(
                "pod {} has no cgroup on this node (is it still running?)",
                pod.full_name()
            )
        })?;
        let mut spec = self.open(&host.cgroup2, &host.proc, &path, file)?;
        spec.name = pod_name(&pod);
        Ok(spec)
    }

    fn open(
        &self,
        mount: &Path,
        proc: &Path,
        path: &Path,
        file: Option<&Path>,
    ) -> Result<TargetSpec> {
        let settings = settings_for(&self.args, file)?;
        cgroup_spec(mount, proc, path, settings, self.port, self.scope)
    }
}

/// Any target: the cgroup at `path`, refused if it is the mount root or (with
/// [`TargetScope::WorkloadOnly`]) holds spot-sim or PID 1, with the namespace its processes
/// use. Named after its cgroup; a pod's caller renames it.
pub(super) fn cgroup_spec(
    mount: &Path,
    proc: &Path,
    path: &Path,
    settings: Settings,
    port: u16,
    scope: TargetScope,
) -> Result<TargetSpec> {
    let cgroup = CgroupDir::open(mount, path)?;
    cgroup.check_target(mount, proc, scope)?;
    let netns = netns_of(&cgroup, proc)?;
    Ok(TargetSpec {
        name: format!("cgroup {}", relative_name(mount, cgroup.path())),
        cgroup,
        netns,
        proc: proc.to_path_buf(),
        settings,
        port,
    })
}

/// A pod's target name, escaped (the name comes from the node's pod folders).
pub(super) fn pod_name(pod: &pods::Pod) -> String {
    format!("pod {}", untrusted(pod.full_name()))
}

/// The namespace a target's processes use: that of any process in it, else ours (an empty
/// cgroup gets the node's namespace; processes that join later are expected to share it).
/// Refused when spot-sim cannot see them (no `hostPID: true`): never a guess.
pub(super) fn netns_of(cgroup: &CgroupDir, proc: &Path) -> Result<NetNs> {
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
