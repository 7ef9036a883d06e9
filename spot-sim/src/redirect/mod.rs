//! The redirect: loads the eBPF programs once and attaches them to target cgroups.
//!
//! [`Redirector`] owns the loaded programs and maps; every [`TargetLink`] it hands out owns the
//! kernel links for one cgroup, so dropping it (or the process dying, even by SIGKILL, which
//! closes the link fds) detaches. Nothing is pinned: no redirect can outlive spot-sim.

mod activity;
mod events;
mod holder;
mod kernel_btf;
mod preflight;

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

pub use activity::{ActivityReader, KernelActivity};
use aya::{
    maps::{MapData, PerCpuHashMap, PerCpuValues},
    programs::{
        cgroup_sock_addr::CgroupSockAddrLink, CgroupAttachMode, CgroupSockAddr, ProgramError,
    },
    Ebpf, EbpfLoader,
};
pub use events::{EventReader, RedirectEvent};
pub use holder::Holder;
pub use preflight::preflight;
use spot_sim_common::Target;

use crate::lock::lock;
use crate::targets::CgroupDir;

/// The eBPF object, built by `cargo xtask build-ebpf` and embedded by build.rs (empty when it
/// was missing at build time).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/spot-sim.bpf.o"));

/// The programs every target gets; [`TargetLink`] detaches them in reverse order.
const PROGRAMS: [&str; 4] = ["connect4", "connect6", "getpeername4", "getpeername6"];

#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    #[error(
        "this spot-sim was built without its eBPF programs: run `cargo xtask build-ebpf`, then rebuild (or use `cargo xtask run`)"
    )]
    MissingObject,
    #[error("{0}")]
    Preflight(String),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the kernel refused eBPF program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("the eBPF object has no {0}: rebuild it with `cargo xtask build-ebpf`")]
    Missing(&'static str),
    #[error("cannot attach to cgroup {cgroup}: {source}")]
    Attach {
        cgroup: String,
        #[source]
        source: ProgramError,
    },
    #[error("cgroup {0} is already a target of this spot-sim")]
    AlreadyTargeted(String),
    #[error("cgroup {cgroup} is already redirected by another spot-sim ({holder}): stop that one first, or add this target to it with `spot-sim target add`")]
    HeldByAnother { cgroup: String, holder: Holder },
    #[error("cannot update the target map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("cannot count the possible CPUs (/sys/devices/system/cpu/possible): {0}")]
    Cpus(#[source] std::io::Error),
}

/// The kernel's per-CPU target map: the same ports in every CPU's copy, a redirect count each.
type TargetMap = Arc<Mutex<PerCpuHashMap<MapData, u64, Target>>>;

/// The loaded programs and maps. One per spot-sim process.
pub struct Redirector {
    ebpf: Ebpf,
    targets: TargetMap,
    events: Option<EventReader>,
    logs: Option<events::EbpfLogs>,
    activity: Option<ActivityReader>,
}

impl Drop for Redirector {
    fn drop(&mut self) {
        if let Some(logs) = &self.logs {
            logs.flush();
        }
    }
}

impl std::fmt::Debug for Redirector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redirector").finish_non_exhaustive()
    }
}

impl Redirector {
    /// Checks the kernel and privileges, then loads the programs. Must run inside a tokio
    /// runtime: the eBPF side's log records are forwarded to spot-sim's log by a task.
    pub fn load() -> Result<Self, RedirectError> {
        if OBJECT.is_empty() {
            return Err(RedirectError::MissingObject);
        }
        let mut clock = Phases::start();
        preflight().map_err(RedirectError::Preflight)?;
        clock.lap("preflight");
        let level = ebpf_log_level();
        // Read once for the argv offsets and the tracepoints (aya's loader reads its own).
        let kernel_btf = kernel_btf::read();
        // Without them program starts still show, with their command line read from /proc
        // when the program is still there.
        let argv = kernel_btf
            .as_deref()
            .map_err(String::clone)
            .and_then(kernel_btf::argv_offsets_in)
            .unwrap_or_else(|e| {
                log::warn!("the report's command lines come from /proc, best effort: {e}");
                spot_sim_common::ArgvOffsets::UNKNOWN
            });
        clock.lap("argv offsets");
        // aya reads and parses the kernel's BTF (/sys/kernel/btf/vmlinux) here.
        let mut loader = EbpfLoader::new();
        clock.lap("kernel BTF parsed");
        let mut ebpf = loader
            .override_global(aya_log::LEVEL, &level, false)
            .override_global("ARGV_OFFSETS", &argv, false)
            .load(OBJECT)
            .map_err(|e| RedirectError::Preflight(preflight::explain_load_error(e)))?;
        // Its copy of the kernel's BTF goes now, before the tracepoints parse their own: two
        // at once would double the peak, and the heap would keep it.
        drop(loader);
        let logs = events::EbpfLogs::forward(&mut ebpf);
        clock.lap("object and maps");
        for name in PROGRAMS {
            let prog = sock_addr_program(&mut ebpf, name)?;
            prog.load().map_err(|source| RedirectError::Program {
                program: name,
                source,
            })?;
        }
        clock.lap("connect/getpeername programs verified");
        let targets = ebpf
            .take_map("TARGETS")
            .ok_or(RedirectError::Missing("TARGETS map"))?;
        let targets = PerCpuHashMap::try_from(targets)?;
        let events = ebpf
            .take_map("EVENTS")
            .ok_or(RedirectError::Missing("EVENTS map"))?;
        let activity = ActivityReader::load(&mut ebpf, kernel_btf.as_deref());
        drop(kernel_btf);
        clock.lap("process watchers (kernel BTF parsed again, tracepoints verified and attached)");
        // The kernel's BTF was read twice (ours, aya's loader's) and parsed three times, and
        // all of it freed; without this glibc kept 17 MiB of it (idle RSS 28.1 MiB, 9.4 with
        // it: `cargo xtask bench`).
        crate::memory::release();
        log::debug!(target: STARTUP, "eBPF loaded in {clock}");
        Ok(Self {
            ebpf,
            targets: Arc::new(Mutex::new(targets)),
            events: Some(EventReader::new(events)?),
            logs,
            activity: Some(activity),
        })
    }

    /// The redirect events; there is one reader, so the first call takes it.
    pub fn take_events(&mut self) -> Option<EventReader> {
        self.events.take()
    }

    /// What the targets do besides polling; one reader, so the first call takes it.
    pub fn take_activity(&mut self) -> Option<ActivityReader> {
        self.activity.take()
    }

    /// Sends `cgroup`'s IMDS connects (and its descendants') to `target`'s ports on loopback.
    pub fn attach(
        &mut self,
        cgroup: &CgroupDir,
        target: Target,
    ) -> Result<TargetLink, RedirectError> {
        let started = Instant::now();
        let id = cgroup.id();
        // Two spot-sims on one cgroup would each answer some connects: refuse the second.
        let ours = sock_addr_program(&mut self.ebpf, "connect4")?
            .info()
            .map(|i| i.id())
            .unwrap_or(0);
        if let Some(holder) = holder::other_spot_sim(cgroup, ours) {
            return Err(RedirectError::HeldByAnother {
                cgroup: cgroup.path().display().to_string(),
                holder,
            });
        }
        {
            let mut map = lock(&self.targets);
            if map.get(&id, 0).is_ok() {
                return Err(RedirectError::AlreadyTargeted(
                    cgroup.path().display().to_string(),
                ));
            }
            let cpus = aya::util::nr_cpus().map_err(|(_, e)| RedirectError::Cpus(e))?;
            let copies = PerCpuValues::try_from(vec![
                Target {
                    redirects: 0,
                    ..target
                };
                cpus
            ])
            .map_err(RedirectError::Cpus)?;
            map.insert(id, copies, 0)?;
        }
        // From here on, the guard removes the entry and detaches whatever attached if we fail.
        let mut link = TargetLink {
            cgroup_id: id,
            links: Vec::with_capacity(PROGRAMS.len()),
            targets: Arc::clone(&self.targets),
        };
        for name in PROGRAMS {
            let prog = sock_addr_program(&mut self.ebpf, name)?;
            let attach_err = |source| RedirectError::Attach {
                cgroup: cgroup.path().display().to_string(),
                source,
            };
            // Single: with bpf links the kernel rejects the other modes, and links from
            // several programs (or several spot-sims) to one cgroup coexist anyway.
            let id = prog
                .attach(cgroup, CgroupAttachMode::Single)
                .map_err(attach_err)?;
            link.links.push(prog.take_link(id).map_err(attach_err)?);
        }
        log::debug!(
            target: STARTUP,
            "attached in {} (checked for another spot-sim, {} programs linked)",
            ms(started),
            PROGRAMS.len()
        );
        Ok(link)
    }
}

/// One of our programs, typed.
fn sock_addr_program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut CgroupSockAddr, RedirectError> {
    ebpf.program_mut(name)
        .ok_or(RedirectError::Missing(name))?
        .try_into()
        .map_err(|source| RedirectError::Program {
            program: name,
            source,
        })
}

/// One target cgroup's redirect. Dropping it detaches the programs, then forgets the target.
pub struct TargetLink {
    cgroup_id: u64,
    links: Vec<CgroupSockAddrLink>,
    targets: TargetMap,
}

impl TargetLink {
    pub fn cgroup_id(&self) -> u64 {
        self.cgroup_id
    }

    /// Redirects the kernel counted for this target so far: exact, summed over the CPUs.
    pub fn redirects(&self) -> u64 {
        lock(&self.targets)
            .get(&self.cgroup_id, 0)
            .map(|per_cpu| per_cpu.iter().map(|t| t.redirects).sum())
            .unwrap_or(0)
    }
}

impl std::fmt::Debug for TargetLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetLink")
            .field("cgroup_id", &self.cgroup_id)
            .field("links", &self.links.len())
            .finish()
    }
}

impl Drop for TargetLink {
    fn drop(&mut self) {
        // Detach first: a connect between the two steps then simply goes where it was going.
        while let Some(link) = self.links.pop() {
            drop(link);
        }
        let _ = lock(&self.targets).remove(&self.cgroup_id);
    }
}

/// The log target of the start-up timings (`RUST_LOG=info,spot_sim::startup=debug` shows them
/// alone; `cargo xtask bench` reads them to break a start into its parts).
pub const STARTUP: &str = "spot_sim::startup";

/// Milliseconds since `t`, as the start-up lines show them.
pub fn ms(t: Instant) -> String {
    format!("{:.1} ms", t.elapsed().as_secs_f64() * 1000.0)
}

/// Laps of one start-up step: "12.0 ms (preflight 0.3 ms, ...)".
struct Phases {
    started: Instant,
    last: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Phases {
    fn start() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, what: &'static str) {
        let now = Instant::now();
        self.laps
            .push((what, now.duration_since(self.last).as_secs_f64() * 1000.0));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (", ms(self.started))?;
        for (i, (what, took)) in self.laps.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{what} {took:.1} ms")?;
        }
        write!(f, ")")
    }
}

/// The eBPF side's log level follows ours for its records, so debug records cost nothing
/// unless asked for. They are logged under `spot_sim::<module>` (the eBPF crate's binary is
/// `spot-sim`), and their level is what the log lets through for `spot_sim` as a whole: a
/// debug line asked for one module (`spot_sim::startup=debug`) leaves them at info, so the
/// verifier does not check their debug paths and slow the very load being timed.
fn ebpf_log_level() -> u8 {
    use aya_log::Level;
    let enabled = |level: log::Level| {
        let meta = log::Metadata::builder()
            .level(level)
            .target("spot_sim")
            .build();
        log::max_level() >= level && log::logger().enabled(&meta)
    };
    [
        (log::Level::Trace, Level::Trace),
        (log::Level::Debug, Level::Debug),
        (log::Level::Info, Level::Info),
        (log::Level::Warn, Level::Warn),
        (log::Level::Error, Level::Error),
    ]
    .into_iter()
    .find(|(ours, _)| enabled(*ours))
    .map_or(0, |(_, theirs)| theirs as u8)
}
