//! `cargo xtask mutants`: the suite must fail when the code it guards is broken on purpose.
//!
//! Each entry of `xtask/mutants.toml` is one small deliberate break (a bound made infinite, a
//! check dropped, an exit status forced) with the tests that guard it. One at a time, the break
//! is applied to a scratch copy of the tree (`target/mutants/tree/`, never the checkout), the
//! eBPF programs are rebuilt when the break is theirs, and the guards run; the break is
//! "killed" when one of them fails. A survivor is fixed with a better test, never by dropping
//! the entry. Before any break, every guard runs once on the clean tree: a guard that fails
//! there, or selects no test, proves nothing, and the run stops.

mod list;
mod runner;
mod tree;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use list::{Guard, Mutant};
use runner::{Outcome, Runner};
use tree::Tree;

#[derive(Debug, clap::Args)]
pub struct MutantsArgs {
    /// Only the fixed fast subset (the entries marked `ci = true`), as `.ci/run` runs it.
    #[arg(long)]
    ci: bool,
    /// Only say whether every entry still applies to the tree (no build, no root): the quick
    /// check after code moved.
    #[arg(long)]
    check: bool,
    /// Skip the run of every guard on the clean tree (when it just passed).
    #[arg(long)]
    no_baseline: bool,
    /// Only these entries (by id).
    ids: Vec<String>,
}

/// How one entry ended.
enum Verdict {
    Killed { by: String, secs: f64 },
    Survived { secs: f64 },
    NoLongerApplies(String),
    DoesNotBuild(String),
}

pub fn run(root: &Path, args: MutantsArgs) -> Result<ExitCode> {
    let all = list::load(root)?;
    let chosen = select(&all, &args)?;
    let stale: Vec<(&Mutant, String)> = chosen
        .iter()
        .filter_map(|m| m.check(root).err().map(|e| (*m, e)))
        .collect();
    for (m, e) in &stale {
        eprintln!("xtask mutants: {} ({}): {e}", m.id, m.file);
    }
    if args.check {
        println!(
            "{} of {} entries apply to this tree",
            chosen.len() - stale.len(),
            chosen.len()
        );
        return Ok(if stale.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if let Some(code) = super::rerun_as_root("the mutation check")? {
        return Ok(code);
    }
    spot_sim_testkit::stop_on_signals();
    let started = Instant::now();
    // The guards are the suite's own tests: they need what `cargo xtask test` installs.
    crate::deps::ensure(crate::deps::TEST)?;
    let check = Check::prepare(root)?;
    let mut verdicts: Vec<(&Mutant, Verdict)> = stale
        .into_iter()
        .map(|(m, e)| (m, Verdict::NoLongerApplies(e)))
        .collect();
    let live: Vec<&Mutant> = chosen
        .iter()
        .copied()
        .filter(|m| !verdicts.iter().any(|(s, _)| s.id == m.id))
        .collect();
    if !args.no_baseline {
        check.baseline(&live)?;
    }
    for m in live {
        let v = check.one(m)?;
        eprintln!("xtask mutants: {}: {}", m.id, v.word());
        verdicts.push((m, v));
    }
    let report = render(&verdicts, started.elapsed(), &args);
    println!("\n{report}");
    let out = root.join("target/mutants/results.md");
    fs::write(&out, &report)?;
    println!("written: {}", out.display());
    let all_killed = verdicts
        .iter()
        .all(|(_, v)| matches!(v, Verdict::Killed { .. }));
    Ok(if all_killed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The entries to run: `--ci`'s subset or the named ones (all by default), in list order.
fn select<'a>(all: &'a [Mutant], args: &MutantsArgs) -> Result<Vec<&'a Mutant>> {
    for id in &args.ids {
        if !all.iter().any(|m| &m.id == id) {
            let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
            bail!(
                "no entry {id:?} in {}; there are: {}",
                list::LIST,
                ids.join(", ")
            );
        }
    }
    Ok(all
        .iter()
        .filter(|m| !args.ci || m.ci)
        .filter(|m| args.ids.is_empty() || args.ids.contains(&m.id))
        .collect())
}

/// The scratch tree, its clean eBPF object, and where the logs go.
struct Check<'a> {
    src: &'a Path,
    tree: Tree,
    clean_object: PathBuf,
    logs: PathBuf,
}

/// Where `cargo +nightly build` of the eBPF crate puts the object under `target_dir`.
fn object_in(target_dir: &Path) -> PathBuf {
    target_dir.join("bpfel-unknown-none/release/spot-sim")
}

impl<'a> Check<'a> {
    fn prepare(src: &'a Path) -> Result<Self> {
        let tree = Tree::sync(src)?;
        let logs = src.join("target/mutants/logs");
        fs::create_dir_all(&logs)?;
        let target = tree.root.join("target/ebpf");
        super::ebpf_cargo_in(
            src,
            &tree.root,
            &target,
            &["build", "--release", "--quiet"],
            &[],
        )
        .context("building the clean tree's eBPF programs")?;
        Ok(Self {
            src,
            clean_object: object_in(&target),
            tree,
            logs,
        })
    }

    fn runner(&self, object: &Path) -> Runner {
        Runner {
            tree: self.tree.root.clone(),
            object: object.to_path_buf(),
            logs: self.logs.clone(),
        }
    }

    /// Every guard once on the clean tree: each must pass and select at least one test.
    fn baseline(&self, live: &[&Mutant]) -> Result<()> {
        let mut guards: BTreeMap<&Guard, Duration> = BTreeMap::new();
        for m in live {
            for g in &m.tests {
                let t = Duration::from_secs(m.timeout);
                guards
                    .entry(g)
                    .and_modify(|d| *d = (*d).max(t))
                    .or_insert(t);
            }
        }
        let r = self.runner(&self.clean_object);
        if guards.keys().any(|g| g.needs_binary()) && !r.build_binary("baseline-build.log")? {
            bail!("the clean tree does not build: see target/mutants/logs/baseline-build.log");
        }
        for (i, (g, timeout)) in guards.into_iter().enumerate() {
            let t = Instant::now();
            let log = format!("baseline-{i}.log");
            match r.test(g, &log, timeout)? {
                Outcome::Passed(0) => bail!(
                    "guard `{}` selects no test on the clean tree: fix its filter (log: target/mutants/logs/{log})",
                    g.label()
                ),
                Outcome::Passed(n) => eprintln!(
                    "xtask mutants: clean tree: {} passes ({n} tests, {:.0} s)",
                    g.label(),
                    t.elapsed().as_secs_f64()
                ),
                other => bail!(
                    "guard `{}` fails on the clean tree ({other:?}): it cannot tell a break from working code; fix it first (log: target/mutants/logs/{log})",
                    g.label()
                ),
            }
        }
        Ok(())
    }

    /// Applies `m` to the scratch tree, runs its guards until one fails, and restores the file.
    fn one(&self, m: &Mutant) -> Result<Verdict> {
        let original = fs::read_to_string(self.src.join(&m.file))?;
        let broken = match m.apply(&original) {
            Ok(b) => b,
            Err(e) => return Ok(Verdict::NoLongerApplies(e)),
        };
        eprintln!("xtask mutants: {}: {}", m.id, m.what);
        self.tree.write(&m.file, &broken)?;
        let verdict = self.judge(m);
        // Restored whatever happened, so the next entry starts from the clean tree.
        self.tree.restore(self.src, &m.file)?;
        verdict
    }

    fn judge(&self, m: &Mutant) -> Result<Verdict> {
        let t = Instant::now();
        let object = if m.in_ebpf() {
            let target = self.tree.root.join("target/ebpf-mutant");
            let built = super::ebpf_cargo_in(
                self.src,
                &self.tree.root,
                &target,
                &["build", "--release", "--quiet"],
                &[],
            );
            if let Err(e) = built {
                return Ok(Verdict::DoesNotBuild(format!("{e:#}")));
            }
            object_in(&target)
        } else {
            self.clean_object.clone()
        };
        let r = self.runner(&object);
        let log = |what: &str| format!("{}-{what}.log", m.id);
        let mut built = false;
        for (i, g) in m.tests.iter().enumerate() {
            // The binary only when an end-to-end guard is reached: a unit test may kill first.
            if g.needs_binary() && !built {
                if !r.build_binary(&log("build"))? {
                    return Ok(Verdict::DoesNotBuild(format!(
                        "see target/mutants/logs/{}",
                        log("build")
                    )));
                }
                built = true;
            }
            let name = log(&format!("test{i}"));
            match r.test(g, &name, Duration::from_secs(m.timeout))? {
                Outcome::Passed(_) => {}
                Outcome::BuildFailed => {
                    return Ok(Verdict::DoesNotBuild(format!(
                        "see target/mutants/logs/{name}"
                    )));
                }
                Outcome::Failed(tests) => {
                    // No test named: the test binary itself died (a crash is a failure too).
                    let names = if tests.is_empty() {
                        "the test binary".to_string()
                    } else {
                        tests.join(", ")
                    };
                    let by = format!("{names} (`{}`)", g.label());
                    let secs = t.elapsed().as_secs_f64();
                    return Ok(Verdict::Killed { by, secs });
                }
                Outcome::TimedOut => {
                    let by = format!("`{}` hung past {} s", g.label(), m.timeout);
                    let secs = t.elapsed().as_secs_f64();
                    return Ok(Verdict::Killed { by, secs });
                }
            }
        }
        Ok(Verdict::Survived {
            secs: t.elapsed().as_secs_f64(),
        })
    }
}

impl Verdict {
    fn word(&self) -> String {
        match self {
            Verdict::Killed { by, secs } => format!("killed in {secs:.0} s by {by}"),
            Verdict::Survived { secs } => {
                format!("SURVIVED ({secs:.0} s): every guard passed with the break in place")
            }
            Verdict::NoLongerApplies(e) => e.clone(),
            Verdict::DoesNotBuild(e) => format!("DOES NOT BUILD: {e}"),
        }
    }
}

/// The Markdown report: one row per entry, then the totals and how long it took.
fn render(verdicts: &[(&Mutant, Verdict)], took: Duration, args: &MutantsArgs) -> String {
    let mut s = String::from("| entry | file | what it breaks | result |\n|---|---|---|---|\n");
    let mut killed = 0;
    for (m, v) in verdicts {
        killed += usize::from(matches!(v, Verdict::Killed { .. }));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            m.id,
            m.file,
            m.what,
            v.word().replace('|', "\\|")
        );
    }
    let subset = if args.ci {
        "the CI subset (`--ci`)"
    } else if args.ids.is_empty() {
        "the whole list"
    } else {
        "the named entries"
    };
    let _ = writeln!(
        s,
        "\n{killed} of {} killed ({subset} of {}); {:.0} s in all (builds and the clean-tree run included).",
        verdicts.len(),
        list::LIST,
        took.as_secs_f64()
    );
    s
}
