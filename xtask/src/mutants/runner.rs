//! Building the scratch tree and running one guard's tests there, bounded in time: a break
//! that makes a test hang must not hang the check.

use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::list::Guard;

/// How one guard's run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every selected test passed; how many ran.
    Passed(u64),
    /// These tests failed (empty: the build or the harness failed before naming one).
    Failed(Vec<String>),
    /// Still running after the entry's timeout; stopped.
    TimedOut,
    /// The code did not compile.
    BuildFailed,
}

/// Cargo commands in the scratch tree, with its eBPF object and spot-sim binary.
pub struct Runner {
    pub tree: PathBuf,
    /// The eBPF object spot-sim embeds (the clean one or a broken one).
    pub object: PathBuf,
    /// Where each command's output goes.
    pub logs: PathBuf,
}

impl Runner {
    fn cargo(&self) -> Command {
        let mut c = Command::new(crate::cargo());
        c.current_dir(&self.tree)
            .env("SPOT_SIM_EBPF_OBJECT", &self.object)
            .env("SPOT_SIM_BIN", self.tree.join("target/debug/spot-sim"))
            // A skipped privileged test must fail, never pass silently.
            .env("CI", "true")
            .env_remove("CARGO_TARGET_DIR");
        c
    }

    /// `cargo build -p spot-sim` (the binary the end-to-end tests run).
    pub fn build_binary(&self, log: &str) -> Result<bool> {
        let mut c = self.cargo();
        c.args(["build", "--quiet", "-p", "spot-sim"]);
        Ok(run_logged(c, &self.logs.join(log), Duration::from_secs(1800))?.0 == Some(true))
    }

    /// Runs `guard`'s tests (building them first) and says how it went.
    pub fn test(&self, guard: &Guard, log: &str, timeout: Duration) -> Result<Outcome> {
        let mut c = self.cargo();
        c.arg("test")
            .args(guard.cargo_args())
            .args(["--", &guard.filter]);
        let path = self.logs.join(log);
        let (ok, out) = run_logged(c, &path, timeout)?;
        Ok(match ok {
            None => Outcome::TimedOut,
            Some(true) => Outcome::Passed(passed(&out)),
            Some(false) if out.contains("error: could not compile") => Outcome::BuildFailed,
            Some(false) => Outcome::Failed(failed_tests(&out)),
        })
    }
}

/// Runs `cmd` with its output into `log`; `Some(success)`, or `None` when it ran past
/// `timeout` (then its whole process group is stopped and what its tests left is removed).
fn run_logged(mut cmd: Command, log: &Path, timeout: Duration) -> Result<(Option<bool>, String)> {
    let file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        // Its own process group, so a hung test and everything it started stop together.
        .process_group(0);
    let mut child = cmd.spawn().context("starting cargo")?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() >= deadline || spot_sim_testkit::interrupted() {
            stop_group(child.id());
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if spot_sim_testkit::interrupted() {
        bail!("interrupted; the scratch tree keeps the break until the next run restores it");
    }
    let out = fs::read_to_string(log).unwrap_or_default();
    Ok((status.map(|s| s.success()), out))
}

/// SIGKILLs every process of the group `pgid` (ours: cargo and what it started), then removes
/// the cgroups their tests made (`spot-sim-test-TAG-PID-N`, named by the test's own pid).
fn stop_group(pgid: u32) {
    let members = group_members(pgid);
    // SAFETY: a signal to a process group we created; no memory involved.
    unsafe { libc::kill(-(pgid as i32), libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    let Ok(mount) = spot_sim_testkit::cgroup2_mount() else {
        return;
    };
    let Ok(entries) = fs::read_dir(&mount) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with("spot-sim-test-")
            && members.iter().any(|pid| name.contains(&format!("-{pid}-")));
        if ours {
            spot_sim_testkit::remove_cgroup_tree(&e.path());
        }
    }
}

/// The pids whose process group is `pgid`, from /proc/PID/stat.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                // Fields after "pid (comm) ": state, ppid, pgrp.
                s.rfind(')')
                    .and_then(|i| s[i + 1..].split_whitespace().nth(2)?.parse::<u32>().ok())
                    == Some(pgid)
            })
        })
        .collect()
}

/// Tests that passed, summed over libtest's `test result:` lines.
pub fn passed(out: &str) -> u64 {
    out.lines()
        .filter_map(|l| l.strip_prefix("test result: "))
        .filter_map(|l| {
            let n = l.split(". ").nth(1)?.split(' ').next()?;
            n.parse::<u64>().ok()
        })
        .sum()
}

/// The names of the tests libtest reported as failed.
pub fn failed_tests(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("test ")?.strip_suffix(" ... FAILED"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libtest_s_summary() {
        let out = "running 2 tests\ntest a::b ... ok\ntest a::c ... FAILED\n\nfailures:\n\ntest result: FAILED. 1 passed; 1 failed; 0 ignored\n\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed\n";
        assert_eq!(failed_tests(out), ["a::c"]);
        assert_eq!(passed(out), 1);
        assert_eq!(passed("test result: ok. 3 passed; 0 failed; 0 ignored"), 3);
        assert_eq!(passed("error[E0308]: mismatched types"), 0);
    }
}
