//! The list of deliberate breaks (`xtask/mutants.toml`): what each one changes, where, and
//! which tests must catch it. An entry names its place by an exact snippet, not a line
//! number, so it survives code moving around it; a snippet that no longer occurs exactly
//! once is reported by entry and file, and the run fails, so drift is seen at once.

use std::{collections::BTreeSet, fs, path::Path};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The data file, relative to the workspace root.
pub const LIST: &str = "xtask/mutants.toml";

/// The file's shape: `[[mutant]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    mutant: Vec<Mutant>,
}

/// One deliberate break.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mutant {
    /// Short and unique: how the command line and the report name it.
    pub id: String,
    /// What the break does, in one sentence.
    pub what: String,
    /// The file it changes, relative to the workspace root.
    pub file: String,
    /// Text that must occur exactly once in `file`...
    pub find: String,
    /// ...and what it becomes.
    pub replace: String,
    /// The tests that must fail with the break in place; it is killed when one does.
    pub tests: Vec<Guard>,
    /// Part of the fixed fast subset `.ci/run` runs (`--ci`).
    #[serde(default)]
    pub ci: bool,
    /// Seconds one guard's `cargo test` may take (building included) before it counts as hung.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
}

fn default_timeout() -> u64 {
    900
}

/// A cargo test filter in one test binary: the spot-sim library's unit tests (`lib =
/// "spot-sim"`) or an end-to-end file (`test = "verdict"`, for tests/tests/verdict.rs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    #[serde(default)]
    pub lib: Option<String>,
    #[serde(default)]
    pub test: Option<String>,
    pub filter: String,
}

impl Guard {
    /// `cargo test` arguments before `--`.
    pub fn cargo_args(&self) -> Vec<String> {
        match (&self.lib, &self.test) {
            (Some(lib), _) => vec!["-p".into(), lib.clone(), "--lib".into()],
            (None, Some(test)) => vec![
                "-p".into(),
                "spot-sim-tests".into(),
                "--test".into(),
                test.clone(),
            ],
            (None, None) => Vec::new(),
        }
    }

    /// An end-to-end test: it runs the spot-sim binary, which must be built first.
    pub fn needs_binary(&self) -> bool {
        self.test.is_some()
    }

    /// `verdict: run_exits_3` as the report shows it.
    pub fn label(&self) -> String {
        let bin = self.lib.as_deref().or(self.test.as_deref()).unwrap_or("?");
        format!("{bin}: {}", self.filter)
    }
}

impl Mutant {
    /// A break of the eBPF programs: the task rebuilds them with it.
    pub fn in_ebpf(&self) -> bool {
        self.file.starts_with("spot-sim-ebpf/")
    }

    /// The file's text with the break in place, or why the entry no longer applies.
    pub fn apply(&self, original: &str) -> Result<String, String> {
        match original.matches(&self.find).count() {
            1 => Ok(original.replacen(&self.find, &self.replace, 1)),
            0 => Err(format!(
                "no longer applies: its `find` text is not in {} (re-point it at the code it guards)",
                self.file
            )),
            n => Err(format!(
                "no longer applies: its `find` text occurs {n} times in {} (make it unique)",
                self.file
            )),
        }
    }

    /// [`Mutant::apply`] to the file as it is in the tree at `root`.
    pub fn check(&self, root: &Path) -> Result<String, String> {
        let path = root.join(&self.file);
        let text = fs::read_to_string(&path).map_err(|e| {
            format!(
                "no longer applies: cannot read {} ({e}; moved or renamed?)",
                self.file
            )
        })?;
        self.apply(&text)
    }
}

/// Reads and checks the list: unique ids, a guard each, each guard naming one binary.
pub fn load(root: &Path) -> Result<Vec<Mutant>> {
    let path = root.join(LIST);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

pub fn parse(text: &str) -> Result<Vec<Mutant>> {
    let file: File = toml::from_str(text)?;
    let mut ids = BTreeSet::new();
    for m in &file.mutant {
        if !ids.insert(m.id.as_str()) {
            bail!("two entries are named {:?}", m.id);
        }
        if m.find == m.replace || m.find.is_empty() {
            bail!(
                "{}: `find` must be non-empty and differ from `replace`",
                m.id
            );
        }
        if m.tests.is_empty() {
            bail!("{}: no tests guard it", m.id);
        }
        for g in &m.tests {
            if g.lib.is_some() == g.test.is_some() || g.filter.is_empty() {
                bail!(
                    "{}: each test names `lib` or `test` (not both) and a non-empty `filter`",
                    m.id
                );
            }
        }
    }
    Ok(file.mutant)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
[[mutant]]
id = "a"
what = "x"
file = "spot-sim/src/a.rs"
find = "a < b"
replace = "a <= b"
tests = [{ lib = "spot-sim", filter = "m::t" }, { test = "verdict", filter = "run_" }]
"#;

    #[test]
    fn an_entry_applies_only_where_its_text_occurs_exactly_once() {
        let m = &parse(ONE).expect("valid")[0];
        assert_eq!(m.apply("if a < b {}").as_deref(), Ok("if a <= b {}"));
        let none = m.apply("if b > a {}").expect_err("absent");
        assert!(none.contains("not in spot-sim/src/a.rs"), "{none}");
        let twice = m.apply("a < b; a < b").expect_err("twice");
        assert!(twice.contains("occurs 2 times"), "{twice}");
        assert!(!m.in_ebpf() && !m.ci && m.timeout == 900);
        assert_eq!(m.tests[0].cargo_args(), ["-p", "spot-sim", "--lib"]);
        assert_eq!(
            m.tests[1].cargo_args(),
            ["-p", "spot-sim-tests", "--test", "verdict"]
        );
        assert!(m.tests[1].needs_binary() && !m.tests[0].needs_binary());
    }

    #[test]
    fn bad_lists_are_refused() {
        let twice = format!("{ONE}{ONE}");
        assert!(parse(&twice).is_err(), "duplicate id");
        let unguarded = ONE.replace(
            "tests = [{ lib = \"spot-sim\", filter = \"m::t\" }, { test = \"verdict\", filter = \"run_\" }]",
            "tests = []",
        );
        assert!(parse(&unguarded).is_err());
        let both = ONE.replace(
            "{ lib = \"spot-sim\",",
            "{ lib = \"spot-sim\", test = \"x\",",
        );
        assert!(parse(&both).is_err());
        let same = ONE.replace("a <= b", "a < b");
        assert!(parse(&same).is_err());
        assert!(
            parse(&ONE.replace("id = ", "idd = ")).is_err(),
            "unknown field"
        );
    }

    #[test]
    fn the_committed_list_parses_and_every_entry_applies_to_this_tree() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let list = load(&root).expect("xtask/mutants.toml is valid");
        assert!(list.len() >= 15, "{} entries", list.len());
        assert!(list.iter().any(|m| m.ci) && list.iter().any(Mutant::in_ebpf));
        for m in &list {
            if let Err(e) = m.check(&root) {
                panic!("{}: {e}", m.id);
            }
        }
    }
}
