//! `cargo xtask fuzz`: every cargo-fuzz target in `fuzz/` for a bounded time, starting from the
//! committed corpus in `fuzz/corpus/<target>/`. New inputs go to `target/fuzz-corpus/`, so the
//! committed corpus only grows by hand (crash reproducers, seeds worth keeping).

use std::{
    path::Path,
    process::{Command, ExitCode},
};

use anyhow::{bail, Context, Result};

pub const TARGETS: [&str; 4] = ["scenario_file", "durations", "router", "tokens"];

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Only these targets [default: all of them].
    targets: Vec<String>,
}

pub fn run(root: &Path, args: FuzzArgs) -> Result<ExitCode> {
    let tools = root.join("target/tools/cargo-fuzz");
    if !tools.join("bin/cargo-fuzz").exists() {
        eprintln!("xtask: installing cargo-fuzz into {}", tools.display());
        let status = Command::new(super::cargo())
            .args(["install", "--locked", "cargo-fuzz", "--root"])
            .arg(&tools)
            .status()
            .context("running cargo install cargo-fuzz")?;
        if !status.success() {
            bail!("installing cargo-fuzz failed (see above)");
        }
    }
    let path = std::env::join_paths(std::iter::once(tools.join("bin")).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))?;
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    let mut summary = Vec::new();
    for target in targets {
        let work = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&work)?;
        let seeds = root.join("fuzz/corpus").join(target);
        let out = Command::new("cargo")
            .current_dir(root.join("fuzz"))
            .args(["+nightly", "fuzz", "run", "-O", target])
            .arg(&work)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", args.secs))
            .env("PATH", &path)
            // The host workspace's cargo/rustc variables would point the nightly build at stable.
            .env_remove("RUSTC")
            .env_remove("RUSTDOC")
            .env_remove("CARGO")
            .env_remove("RUSTUP_TOOLCHAIN")
            .output()
            .context("running cargo +nightly fuzz")?;
        let log = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
            bail!(
                "fuzz target {target} failed; the input is in fuzz/artifacts/{target}/ (rerun it with `cargo +nightly fuzz run {target} FILE` in fuzz/)"
            );
        }
        let done = match done_line(&log) {
            Ok(done) => done,
            Err(why) => {
                for line in log
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    eprintln!("{line}");
                }
                bail!("fuzz target {target}: {why}; its output ends as above");
            }
        };
        let line = format!("fuzz {target}: {done}, no crash");
        eprintln!("{line}");
        summary.push(line);
    }
    println!("{}", summary.join("\n"));
    Ok(ExitCode::SUCCESS)
}

/// libFuzzer's closing "Done N runs in S second(s)" line, required: a run that printed none, or
/// ran nothing, fuzzed nothing, and must not read as "no crash".
fn done_line(log: &str) -> Result<String, String> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.starts_with("Done "))
        .ok_or("libFuzzer printed no \"Done N runs\" summary")?;
    let runs: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("cannot read the run count in {line:?}"))?;
    if runs == 0 {
        return Err(format!("libFuzzer ran nothing ({line:?})"));
    }
    Ok(line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::done_line;

    #[test]
    fn a_run_without_libfuzzers_summary_is_a_failure() {
        assert_eq!(
            done_line("INFO: Seed: 1\n#2 INITED\nDone 46767 runs in 21 second(s)\n"),
            Ok("Done 46767 runs in 21 second(s)".to_owned())
        );
        assert!(done_line("INFO: Seed: 1\n#2 INITED\n").is_err());
        assert!(done_line("Done 0 runs in 0 second(s)").is_err());
        assert!(done_line("Done many runs").is_err());
    }
}
