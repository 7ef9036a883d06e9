//! Child processes stopped by their pid on drop, with the lines they print collected (each
//! with when it arrived, for the benchmark's timings).

use std::{
    io::{self, BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

use crate::{lock, ControlSocket};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into [`interrupted`], so a long run (the benchmark) ends through
/// its normal error path and its fixtures clean up.
pub fn stop_on_signals() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Whether SIGINT or SIGTERM arrived since [`stop_on_signals`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Which of a child's outputs [`Proc`] collects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// stderr only, each line echoed to the test's stderr with the process's name (so a
    /// failing test shows what its spot-sim said); stdout stays the test's.
    Stderr,
    /// stdout and stderr, not echoed.
    Both,
}

type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// A child process, stopped (SIGTERM, then SIGKILL after 5 s) by its pid when dropped.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    name: String,
    lines: Lines,
    /// A control socket that belongs to the process, removed after the process is gone.
    pub control: Option<ControlSocket>,
}

impl Proc {
    /// Starts `cmd` (stdin from /dev/null), collecting what `capture` says.
    pub fn spawn(name: &str, cmd: &mut Command, capture: Capture) -> io::Result<Self> {
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        if capture == Capture::Both {
            cmd.stdout(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| crate::context(format!("starting {name}"), e))?;
        let lines: Lines = Arc::default();
        let out = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for stream in [out, err].into_iter().flatten() {
            let sink = Arc::clone(&lines);
            let echo = (capture == Capture::Stderr).then(|| name.to_owned());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(name) = &echo {
                        eprintln!("[{name}] {line}");
                    }
                    lock(&sink).push((Instant::now(), line));
                }
            });
        }
        Ok(Self {
            child,
            name: name.to_owned(),
            lines,
            control: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When a line containing `needle` arrived, waiting at most `timeout`; an error (with all
    /// the process printed) when it exits first, the time runs out, or the run is interrupted.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> io::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.arrived(needle) {
                return Ok(at);
            }
            if interrupted() {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "interrupted; cleaned up",
                ));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Its last lines may still be on their way through the pipe.
                std::thread::sleep(Duration::from_millis(50));
                if let Some(at) = self.arrived(needle) {
                    return Ok(at);
                }
                return Err(io::Error::other(format!(
                    "{} exited ({status}) before printing {needle:?}; it printed:\n{}",
                    self.name,
                    self.log()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} did not print {needle:?} within {timeout:?}; it printed:\n{}",
                        self.name,
                        self.log()
                    ),
                ));
            }
            // The reader threads stamp each line as it arrives: polling slower loses no precision.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`Proc::wait_for`] for tests: panics with what the process printed.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        if let Err(e) = self.wait_for(needle, timeout) {
            panic!("{e}");
        }
    }

    fn arrived(&self, needle: &str) -> Option<Instant> {
        lock(&self.lines)
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(at, _)| *at)
    }

    /// Every line so far, with when it arrived.
    pub fn lines(&self) -> Vec<(Instant, String)> {
        lock(&self.lines).clone()
    }

    /// Every line so far, each ending in a newline.
    pub fn log(&self) -> String {
        lock(&self.lines)
            .iter()
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    }

    pub fn signal(&self, sig: Signal) {
        // A pid of our own child, not yet reaped while `child` is alive.
        let _ = nix::sys::signal::kill(Pid::from_raw(self.pid() as i32), sig);
    }

    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM first, so the process cleans up as it would for a user; SIGKILL if it hangs.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(Signal::SIGTERM);
            if self.wait_timeout(Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}
