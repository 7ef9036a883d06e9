//! A start of `spot-sim run`, timed to the first redirected answer and broken into its parts,
//! so a regression shows where it happened: spot-sim says how long each step took in its
//! `spot_sim::startup` debug lines, and the bench notes when each line arrived.

use std::{path::Path, time::Duration};

use anyhow::{bail, Result};

use super::{check_interrupted, command_in, report::Startup, spawn, Bench, NetNs};

/// spot-sim's log for a timed start: its usual lines plus the start-up timings (only those:
/// the eBPF programs' own records stay at info, so the verifier's work is the same as ever).
pub(super) const STARTUP_LOG: &str = "info,spot_sim::startup=debug";

/// The figure after `label` in a start-up line: "... object and maps 3.1 ms, ..." → 3.1.
fn figure_after(line: &str, label: &str) -> Option<f64> {
    let rest = &line[line.find(label)? + label.len()..];
    rest.trim_start().split(" ms").next()?.trim().parse().ok()
}

/// The parts of one start, from its lines and their arrival times (ms after `t0`); the figures
/// the lines carry are spot-sim's own.
fn parts(lines: &[(f64, String)], answered: f64, st: &mut Startup) -> Result<()> {
    let find = |needle: &str| {
        lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(at, l)| (*at, l.as_str()))
    };
    let (Some(load), Some(btf), Some(session), Some(attach), Some(added)) = (
        find("eBPF loaded in "),
        find("process watchers: kernel BTF parsed in "),
        find("session started in "),
        find("attached in "),
        find(": added in "),
    ) else {
        bail!("spot-sim printed no start-up timings (is spot_sim::startup logged at debug?)");
    };
    let num = |(_, l): (f64, &str), label: &str| {
        figure_after(l, label).ok_or_else(|| anyhow::anyhow!("no {label:?} figure in {l:?}"))
    };
    let (load_ms, session_ms) = (num(load, "eBPF loaded in")?, num(session, "started in")?);
    let (attach_ms, add_ms) = (num(attach, "attached in")?, num(added, "added in")?);
    st.add(
        "process start → session start (exec, runtime, arguments, target resolved)",
        session.0 - session_ms,
    );
    for (label, part) in [
        ("preflight", "eBPF: preflight (kernel, capabilities)"),
        (
            "argv offsets",
            "eBPF: where the kernel keeps a command line (its BTF read and parsed by spot-sim)",
        ),
        (
            "kernel BTF parsed",
            "eBPF: the kernel's BTF read and parsed (by aya's loader)",
        ),
        ("object and maps", "eBPF: object parsed, maps created"),
        (
            "connect/getpeername programs verified",
            "eBPF: connect/getpeername programs loaded and verified",
        ),
    ] {
        st.add(part, num(load, label)?);
    }
    let watchers = num(
        load,
        "process watchers (kernel BTF parsed again, tracepoints verified and attached)",
    )?;
    let btf_again = num(btf, "kernel BTF parsed in")?;
    st.add(
        "eBPF: the kernel's BTF parsed again (for the tracepoints, from spot-sim's read)",
        btf_again,
    );
    st.add(
        "eBPF: exec/exit tracepoints loaded, verified and attached",
        watchers - btf_again,
    );
    st.add(
        "session: the rest (inotify, poller, owner thread)",
        session_ms - load_ms,
    );
    st.add(
        "session start → the target's add (game-day checks, the owner's first job)",
        added.0 - add_ms - session.0,
    );
    st.add("target: listeners and responder", add_ms - attach_ms);
    st.add("target: attach (4 cgroup links)", attach_ms);
    st.add(
        "attached → the probe's first answer (its 1 ms polling included)",
        answered - added.0,
    );
    st.add("total: start → first redirected answer", answered);
    Ok(())
}

impl Bench<'_> {
    /// Starts spot-sim with a probe already polling from the target; returns the seconds to
    /// the probe's first answer and to the "serving" log line, and adds the start's parts.
    pub(super) fn first_answer(
        &mut self,
        ns: &NetNs,
        target: &Path,
        servers: &Path,
        st: &mut Startup,
    ) -> Result<(f64, f64)> {
        check_interrupted()?;
        let xtask = self.xtask.clone();
        let mut probe = spawn(
            "probe",
            &mut command_in(ns, target, &xtask, &["bench", "--probe", "first-answer"])?,
        )?;
        probe.wait_for("polling", Duration::from_secs(10))?;
        let t0 = std::time::Instant::now();
        let (mut sim, _ctl) =
            self.spot_sim_run(ns, servers, &[target.to_path_buf()], 0, STARTUP_LOG)?;
        let answered = probe.wait_for("answered", Duration::from_secs(30))?;
        let serving = sim.wait_for("serving 1 target", Duration::from_secs(30))?;
        sim.stop();
        let ms = |at: std::time::Instant| at.saturating_duration_since(t0).as_secs_f64() * 1e3;
        let lines: Vec<(f64, String)> =
            sim.lines().into_iter().map(|(at, l)| (ms(at), l)).collect();
        parts(&lines, ms(answered), st)?;
        Ok((ms(answered) / 1e3, ms(serving) / 1e3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_is_broken_into_its_parts_from_spot_sims_lines() {
        let lines: Vec<(f64, String)> = [
            (29.9, "DEBUG] process watchers: kernel BTF parsed in 3.0 ms"),
            (30.0, "DEBUG] eBPF loaded in 20.0 ms (preflight 0.2 ms, argv offsets 1.5 ms, kernel BTF parsed 4.0 ms, object and maps 3.1 ms, connect/getpeername programs verified 5.5 ms, process watchers (kernel BTF parsed again, tracepoints verified and attached) 7.2 ms)"),
            (31.0, "DEBUG] session started in 21.0 ms"),
            (33.0, "DEBUG] attached in 0.4 ms (checked for another spot-sim, 4 programs linked)"),
            (33.5, "DEBUG] cgroup /x: added in 1.5 ms (its listeners, responder and attach)"),
        ]
        .into_iter()
        .map(|(t, l)| (t, l.to_string()))
        .collect();
        let mut st = Startup::default();
        parts(&lines, 35.0, &mut st).expect("parts");
        let get = |p: &str| {
            st.parts
                .iter()
                .find(|(n, _)| n.starts_with(p))
                .map(|(_, v)| v[0])
        };
        assert_eq!(get("process start"), Some(10.0));
        assert_eq!(get("eBPF: where the kernel keeps"), Some(1.5));
        assert_eq!(get("eBPF: object"), Some(3.1));
        assert_eq!(get("eBPF: connect/getpeername"), Some(5.5));
        assert_eq!(get("eBPF: the kernel's BTF read and parsed (by"), Some(4.0));
        assert_eq!(get("eBPF: the kernel's BTF parsed again"), Some(3.0));
        assert!((get("eBPF: exec/exit").unwrap() - 4.2).abs() < 1e-9);
        assert!((get("session start → the target's add").unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(get("session: the rest"), Some(1.0));
        assert!((get("target: listeners").unwrap() - 1.1).abs() < 1e-9);
        assert_eq!(get("attached → "), Some(1.5));
        assert_eq!(get("total"), Some(35.0));
        assert!(parts(&lines[..2], 35.0, &mut st).is_err(), "no attach line");
    }
}
