//! The test suite's own rules: root-only tests skip loudly (and fail under CI), load-heavy
//! tests take turns, and waiting polls with a deadline.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// Skips (returns false) with a loud message when not root, unless CI is set: then it fails.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip("this end-to-end test needs root (run `sudo -E cargo xtask test`)");
    false
}

/// The first line of a root-only test: returns from it (a skip, see [`skip`]) when not root.
#[macro_export]
macro_rules! root_or_skip {
    () => {
        if !$crate::require_root() {
            return;
        }
    };
}

/// The first line of a root-only, load-heavy test: skips as [`root_or_skip!`] does, else
/// holds [`heavy`] (bind it: `let _heavy = heavy_or_skip!();`).
#[macro_export]
macro_rules! heavy_or_skip {
    () => {{
        $crate::root_or_skip!();
        $crate::heavy()
    }};
}

/// The suite's one way to skip a test: fails the test when `CI` is set, and otherwise writes
/// straight to the terminal's stderr (the harness captures `eprintln!`, so a skip printed that
/// way would read as `ok`). Call it and `return`.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    if std::env::var_os("CI").is_some() {
        panic!("{test} would be skipped ({reason}), and CI is set: a skip must not pass in CI");
    }
    use std::io::Write;
    // Straight to fd 2, past the harness's capture.
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!!!! SKIPPED {test}: {reason} !!!!!\n"
    );
}

/// Load-heavy tests hold this while they run, so two of them never compete for the two cores
/// their timing assumes (tests of one file run on parallel threads).
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub fn poll_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
