//! cgroup v2 directories: finding the mount, opening a target, and transient cgroups that
//! remove themselves.

use std::{
    fs,
    io::{self, ErrorKind},
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
    time::Duration,
};

use nix::{
    fcntl::{open, OFlag},
    sys::{stat::Mode, statfs::statfs},
};

/// `CGROUP2_SUPER_MAGIC` from linux/magic.h.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup v2 filesystem is mounted (spot-sim attaches to cgroup v2 only): boot with systemd.unified_cgroup_hierarchy=1 or mount one with `mount -t cgroup2 none /sys/fs/cgroup`"
    )]
    NoCgroup2,
    #[error(
        "cgroup {path} does not exist: check the path (absolute, or relative to the cgroup v2 mount {mount})"
    )]
    NotFound { path: PathBuf, mount: PathBuf },
    #[error(
        "{path} is not a cgroup v2 directory: give a directory under the cgroup v2 mount {mount}"
    )]
    NotCgroup2 { path: PathBuf, mount: PathBuf },
    #[error("cannot create a cgroup under {parent}: {source} (spot-sim needs root, or a delegated cgroup subtree)")]
    Create { parent: PathBuf, source: io::Error },
    #[error("the cgroup v2 mount {} is read-only, so spot-sim cannot create a cgroup for the command: mount it read-write (a container needs /sys/fs/cgroup rw), or target an existing cgroup with `spot-sim run --cgroup`, which only reads", mount.display())]
    ReadOnly { mount: PathBuf },
    #[error("cannot move a process into cgroup {path}: {source}")]
    Move { path: PathBuf, source: io::Error },
    #[error("cannot open cgroup {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("refusing to target {}, the root of the cgroup v2 mount: that is every process on the machine (an empty or unset variable in --cgroup \"$VAR\"?). Target the workload's own cgroup instead: a pod (--pod NS/NAME, see --list-pods), a unit (system.slice/NAME.service), or a command (spot-sim exec -- CMD)", mount.display())]
    MountRoot { mount: PathBuf },
    #[error("refusing to target {}: it holds {holder}, so the redirect would reach far more than the workload. Target a cgroup below it that holds only the workload, or pass --allow-own-cgroup if that is really meant", path.display())]
    HoldsUs { path: PathBuf, holder: &'static str },
}

/// The cgroup v2 mount point, from `/proc/self/mountinfo` (hybrid hosts mount it at
/// `/sys/fs/cgroup/unified`, unified ones at `/sys/fs/cgroup`).
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(|source| CgroupError::Read {
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    super::host::cgroup2_mount_from_mountinfo(&text).ok_or(CgroupError::NoCgroup2)
}

/// An open cgroup v2 directory: the fd the kernel attaches programs to, and its id (the
/// directory's inode number, which is what `bpf_get_current_ancestor_cgroup_id` returns).
#[derive(Debug)]
pub struct CgroupDir {
    path: PathBuf,
    fd: OwnedFd,
    id: u64,
}

impl CgroupDir {
    /// Opens `path`, absolute or relative to the cgroup v2 mount `mount`.
    pub fn open(mount: &Path, path: &Path) -> Result<Self, CgroupError> {
        // "/system.slice/x.service" as /proc/PID/cgroup writes it is relative to the mount too,
        // unless it names an existing directory as it is.
        // "/" is the root as /proc/PID/cgroup writes it, never the filesystem's root.
        let full = if path.is_absolute()
            && path != Path::new("/")
            && (path.starts_with(mount) || path.exists())
        {
            path.to_path_buf()
        } else {
            mount.join(path.strip_prefix("/").unwrap_or(path))
        };
        let meta = fs::metadata(&full).map_err(|e| match e.kind() {
            ErrorKind::NotFound => CgroupError::NotFound {
                path: full.clone(),
                mount: mount.to_path_buf(),
            },
            _ => CgroupError::Open {
                path: full.clone(),
                source: e,
            },
        })?;
        let not_cg2 = || CgroupError::NotCgroup2 {
            path: full.clone(),
            mount: mount.to_path_buf(),
        };
        if !meta.is_dir() {
            return Err(not_cg2());
        }
        let fs_type = statfs(&full).map_err(|e| CgroupError::Open {
            path: full.clone(),
            source: e.into(),
        })?;
        if fs_type.filesystem_type().0 as i64 != CGROUP2_SUPER_MAGIC {
            return Err(not_cg2());
        }
        let fd = open(
            &full,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| CgroupError::Open {
            path: full.clone(),
            source: e.into(),
        })?;
        Ok(Self {
            path: full,
            // SAFETY: `open` returned a fresh descriptor that nothing else owns.
            fd: unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) },
            id: meta.ino(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The kernel's cgroup id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the directory is still there (a pod's cgroup disappears when the pod is deleted).
    pub fn exists(&self) -> bool {
        // Looked up through the directory we hold open, not by path: a removed cgroup's files
        // are gone even while its directory is still open (and one recreated at the same path
        // is another directory), and no path walk from the mount is needed — this runs for
        // every target every 2 s.
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: a valid directory fd, a NUL-terminated name and room for one stat.
        unsafe {
            libc::fstatat(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                c"cgroup.events".as_ptr(),
                st.as_mut_ptr(),
                0,
            ) == 0
        }
    }

    /// Whether any process is in this cgroup or below it (`populated` in `cgroup.events`);
    /// `None` when the cgroup is gone. One small read, where [`CgroupDir::pids`] walks the
    /// whole subtree.
    pub fn populated(&self) -> Option<bool> {
        let events = open_at(self.fd.as_fd(), c"cgroup.events", libc::O_RDONLY)?;
        let text = io::read_to_string(fs::File::from(events)).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("populated "))
            .map(|v| v.trim() == "1")
    }

    /// Every pid in this cgroup and below it.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        // Walked from the directory we hold open: no path walk from the mount (kernfs
        // revalidates every component), which was most of what the safety scan of 200
        // targets cost.
        collect_pids_at(self.fd.as_fd(), &mut pids, 0);
        pids
    }

    /// Kills every process in this cgroup and below (`cgroup.kill`, Linux 5.14+; otherwise
    /// SIGKILL to each pid).
    pub fn kill_all(&self) -> io::Result<()> {
        match fs::write(self.path.join("cgroup.kill"), "1") {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                for pid in self.pids() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Whom a target may hold besides the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetScope {
    /// Neither spot-sim's own cgroup nor PID 1's, nor any ancestor of them.
    WorkloadOnly,
    /// `--allow-own-cgroup`: anything but the mount root.
    AllowOwn,
}

impl CgroupDir {
    /// Refuses targets that would redirect (and with `--on-interrupt kill`, kill) far more
    /// than a workload: the mount root always, whatever path named it (`""`, `.`, `/`,
    /// `/x/..`), since compared by inode; and by default any cgroup holding spot-sim itself
    /// or PID 1 (as `/proc` at `proc` shows it).
    pub fn check_target(
        &self,
        mount: &Path,
        proc: &Path,
        scope: TargetScope,
    ) -> Result<(), CgroupError> {
        let root = fs::metadata(mount).map_err(|source| CgroupError::Open {
            path: mount.to_path_buf(),
            source,
        })?;
        let mine = fs::metadata(&self.path).map_err(|source| CgroupError::Open {
            path: self.path.clone(),
            source,
        })?;
        let same = |m: &fs::Metadata| m.ino() == mine.ino() && m.dev() == mine.dev();
        if same(&root) {
            return Err(CgroupError::MountRoot {
                mount: mount.to_path_buf(),
            });
        }
        if scope == TargetScope::AllowOwn {
            return Ok(());
        }
        for (holder, cgroup_file) in [
            ("spot-sim itself", PathBuf::from("/proc/self/cgroup")),
            ("PID 1 (the init system)", proc.join("1/cgroup")),
        ] {
            let Some(own) = cgroup_of(mount, &cgroup_file) else {
                continue;
            };
            // The process's cgroup and every ancestor up to the mount.
            for dir in own.ancestors().take_while(|d| d.starts_with(mount)) {
                if fs::metadata(dir).is_ok_and(|m| same(&m)) {
                    return Err(CgroupError::HoldsUs {
                        path: self.path.clone(),
                        holder,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The cgroup v2 directory a `/proc/PID/cgroup` file names ("0::/path"), under `mount`; `None`
/// when it lies outside our view (a cgroup namespace shows such paths as "/../..").
fn cgroup_of(mount: &Path, cgroup_file: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(cgroup_file).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let rel = Path::new(rel.trim_start_matches('/'));
    if rel
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return None;
    }
    Some(mount.join(rel))
}

impl AsFd for CgroupDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens `name` relative to the directory `dir` (no path walk from the mount).
fn open_at(dir: BorrowedFd<'_>, name: &std::ffi::CStr, flags: libc::c_int) -> Option<OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: a valid directory fd and a NUL-terminated name; the result is checked.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    // SAFETY: a fresh descriptor nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn collect_pids_at(dir: BorrowedFd<'_>, pids: &mut Vec<u32>, depth: usize) {
    use std::os::fd::AsRawFd;
    if depth > 64 {
        return;
    }
    let at = |name: &std::ffi::CStr, flags| open_at(dir, name, flags);
    if let Some(procs) = at(c"cgroup.procs", libc::O_RDONLY) {
        if let Ok(text) = io::read_to_string(fs::File::from(procs)) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
    }
    // Child cgroups: the directory's subdirectories (a cgroup's files are all regular).
    let Some(list) = at(c".", libc::O_RDONLY | libc::O_DIRECTORY) else {
        return;
    };
    // SAFETY: fdopendir takes over the descriptor; closedir below releases both.
    let d = unsafe { libc::fdopendir(list.as_raw_fd()) };
    if d.is_null() {
        return;
    }
    std::mem::forget(list);
    let mut children = Vec::new();
    loop {
        // SAFETY: `d` is an open DIR stream; the entry is valid until the next readdir.
        let e = unsafe { libc::readdir64(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: readdir returned a valid entry with a NUL-terminated name.
        let (kind, name) = unsafe { ((*e).d_type, std::ffi::CStr::from_ptr((*e).d_name.as_ptr())) };
        if kind == libc::DT_DIR && name != c"." && name != c".." {
            children.push(name.to_owned());
        }
    }
    // SAFETY: closes the stream opened above, once.
    unsafe { libc::closedir(d) };
    for name in children {
        if let Some(child) = at(&name, libc::O_RDONLY | libc::O_DIRECTORY) {
            collect_pids_at(child.as_fd(), pids, depth + 1);
        }
    }
}

/// A cgroup spot-sim created for `exec`; dropping it kills what is left inside and removes it.
#[derive(Debug)]
pub struct TransientCgroup {
    dir: CgroupDir,
    /// `cgroup.procs`, opened up front so a forked child can move itself in with one write.
    procs: fs::File,
}

impl TransientCgroup {
    /// Creates a uniquely named cgroup next to spot-sim's own (so it inherits the same
    /// delegation and limits), falling back to the mount root.
    pub fn create(mount: &Path, prefix: &str) -> Result<Self, CgroupError> {
        let own = own_cgroup_path(mount);
        let name = format!("{prefix}-{}-{}", std::process::id(), unique_suffix());
        let mut last = None;
        for parent in [own.as_deref(), Some(mount)].into_iter().flatten() {
            let path = parent.join(&name);
            match fs::create_dir(&path) {
                Ok(()) => {
                    let dir = CgroupDir::open(mount, &path)?;
                    let procs = fs::OpenOptions::new()
                        .write(true)
                        .open(path.join("cgroup.procs"))
                        .map_err(|source| CgroupError::Open {
                            path: path.clone(),
                            source,
                        })?;
                    return Ok(Self { dir, procs });
                }
                Err(source) if source.raw_os_error() == Some(libc::EROFS) => {
                    return Err(CgroupError::ReadOnly {
                        mount: mount.to_path_buf(),
                    });
                }
                Err(source) => {
                    last = Some(CgroupError::Create {
                        parent: parent.to_path_buf(),
                        source,
                    })
                }
            }
        }
        Err(last.unwrap_or(CgroupError::NoCgroup2))
    }

    pub fn dir(&self) -> &CgroupDir {
        &self.dir
    }

    /// The open `cgroup.procs`: writing "0" to it moves the writing process in.
    pub fn procs_fd(&self) -> BorrowedFd<'_> {
        self.procs.as_fd()
    }
}

impl Drop for TransientCgroup {
    fn drop(&mut self) {
        let path = self.dir.path.clone();
        // Processes the command left behind (daemons it forked) would keep the cgroup alive.
        for attempt in 0..50 {
            match fs::remove_dir(&path) {
                Ok(()) => return,
                Err(e) if e.kind() == ErrorKind::NotFound => return,
                Err(_) if attempt == 0 => {
                    if !self.dir.pids().is_empty() {
                        log::info!(
                            "killing processes left in {} by the command",
                            path.display()
                        );
                    }
                    let _ = self.dir.kill_all();
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        log::warn!("could not remove cgroup {}", path.display());
    }
}

/// Removes the transient cgroups (`PREFIX-PID-…`) that instances killed with SIGKILL left next
/// to ours or at the mount root. Only those whose process is gone, and only once empty
/// (`rmdir` of a cgroup that still holds processes fails, and they are left as they are).
/// Returns how many were removed.
pub fn remove_dead_transients(mount: &Path, prefix: &str) -> usize {
    let own = own_cgroup_path(mount);
    let mut removed = 0;
    for parent in [own.as_deref(), Some(mount)].into_iter().flatten() {
        let Ok(entries) = fs::read_dir(parent) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix)?.strip_prefix('-'))
                .and_then(|rest| rest.split('-').next()?.parse::<i32>().ok())
            else {
                continue;
            };
            if pid as u32 == std::process::id() || process_alive(pid) {
                continue;
            }
            match fs::remove_dir(e.path()) {
                Ok(()) => {
                    log::info!(
                        "removed {}, left by a spot-sim (pid {pid}) that is gone",
                        crate::escape::untrusted_path(&e.path())
                    );
                    removed += 1;
                }
                Err(err) => log::debug!(
                    "{} (left by pid {pid}) stays: {err}",
                    crate::escape::untrusted_path(&e.path())
                ),
            }
        }
    }
    removed
}

/// Whether a process with this pid exists (a zombie counts as gone).
fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised comm, which may itself hold ") ".
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// spot-sim's own cgroup v2 directory, from `/proc/self/cgroup` ("0::/path").
fn own_cgroup_path(mount: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let p = mount.join(rel.trim_start_matches('/'));
    p.is_dir().then_some(p)
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{}", nanos, N.fetch_add(1, Ordering::Relaxed))
}
