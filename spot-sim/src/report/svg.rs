//! The report's timelines as SVG: one `<svg>` element per target for the HTML page, or all
//! of them in one SVG document. Everything that came from a target is escaped
//! ([`esc`], which the HTML page takes too).

use std::fmt::Write as _;

use super::{clock, Report, TargetReport};
use crate::journal::ReactKind;
use crate::scenario::Event;
use crate::stop::Stopped;

/// XML/HTML text and attribute escaping.
pub fn esc(s: &str) -> String {
    // The one rule first (escape.rs: controls, bidi, XML-invalid code points), HTML on top.
    let s = crate::escape::inert(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 120.0;
const RIGHT: f64 = 20.0;
const HEIGHT: f64 = 210.0;
const REQ_TOP: f64 = 48.0;
const REQ_BOTTOM: f64 = 82.0;
const REACT_Y: f64 = 112.0;
const AXIS_Y: f64 = 140.0;

/// Milliseconds since the epoch from an RFC 3339 timestamp the report wrote.
fn ms_of(at: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

fn status_colour(status: u16, version: &str) -> &'static str {
    match status {
        200..=299 if version == "v2" => "#2e7d32",
        200..=299 => "#f9a825",
        401 => "#c62828",
        404 => "#90a4ae",
        _ => "#6a1b9a",
    }
}

fn reaction_colour(kind: ReactKind) -> &'static str {
    match kind {
        ReactKind::Exec => "#ef6c00",
        ReactKind::Connect => "#00838f",
        ReactKind::Exit => "#5d4037",
    }
}

struct Scale {
    from: u64,
    to: u64,
}

impl Scale {
    fn of(t: &TargetReport, generated: u64, stopped: Option<u64>) -> Scale {
        let mut times: Vec<u64> = stopped.into_iter().collect();
        times.extend(t.requests.iter().filter_map(|r| ms_of(&r.at)));
        times.extend(
            t.events
                .iter()
                .filter(|e| !e.pending)
                .filter_map(|e| ms_of(&e.issued_at)),
        );
        times.extend(t.reactions.iter().filter_map(|r| ms_of(&r.at)));
        let from = times.iter().copied().min().unwrap_or(generated);
        let to = times
            .iter()
            .copied()
            .max()
            .unwrap_or(generated)
            .max(from + 1000);
        let pad = (to - from) / 30;
        Scale {
            from: from.saturating_sub(pad),
            to: to + pad,
        }
    }

    fn x(&self, ms: u64) -> f64 {
        let f = (ms.saturating_sub(self.from)) as f64 / (self.to - self.from) as f64;
        LEFT + f.clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }
}

/// One target's timeline as an `<svg>` element (no XML prolog).
pub(super) fn timeline(
    t: &TargetReport,
    generated: u64,
    standalone: bool,
    stopped: Option<&Stopped>,
) -> String {
    let stopped_ms = stopped.and_then(|st| ms_of(&st.at));
    let scale = Scale::of(t, generated, stopped_ms);
    let mut s = String::new();
    let ns = if standalone {
        " xmlns=\"http://www.w3.org/2000/svg\""
    } else {
        ""
    };
    let _ = write!(
        s,
        "<svg{ns} class=\"timeline\" data-target=\"{}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\">",
        esc(&t.name)
    );
    let _ = write!(
        s,
        "<title>{}</title><rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fff\"/>",
        esc(&t.name)
    );
    // Lanes.
    let _ = write!(
        s,
        "<text x=\"8\" y=\"{}\">IMDS requests</text><text x=\"8\" y=\"{}\">reactions</text>",
        (REQ_TOP + REQ_BOTTOM) / 2.0 + 4.0,
        REACT_Y + 4.0
    );
    let _ = write!(
        s,
        "<rect x=\"{LEFT}\" y=\"{REQ_TOP}\" width=\"{}\" height=\"{}\" fill=\"#f5f5f5\"/>",
        WIDTH - LEFT - RIGHT,
        REQ_BOTTOM - REQ_TOP
    );
    // Axis with five labels.
    let _ = write!(
        s,
        "<line x1=\"{LEFT}\" y1=\"{AXIS_Y}\" x2=\"{}\" y2=\"{AXIS_Y}\" stroke=\"#444\"/>",
        WIDTH - RIGHT
    );
    for i in 0..=4u64 {
        let ms = scale.from + (scale.to - scale.from) * i / 4;
        let x = scale.x(ms);
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{AXIS_Y}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#444\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            AXIS_Y + 4.0,
            AXIS_Y + 16.0,
            esc(&clock(&super::at(ms)))
        );
    }
    // Requests: one tick each.
    for r in &t.requests {
        let Some(ms) = ms_of(&r.at) else { continue };
        let x = scale.x(ms);
        let age = r
            .token_age_s
            .map(|a| format!(", token {a:.1} s old"))
            .unwrap_or_default();
        let _ = write!(
            s,
            "<line class=\"req\" data-status=\"{}\" data-version=\"{}\" x1=\"{x:.2}\" y1=\"{REQ_TOP}\" x2=\"{x:.2}\" y2=\"{REQ_BOTTOM}\" stroke=\"{}\" stroke-width=\"1.5\"><title>{} {} {} → {} (IMDS{}{age})</title></line>",
            r.status,
            esc(&r.version),
            status_colour(r.status, &r.version),
            esc(&clock(&r.at)),
            esc(&r.method),
            esc(&r.path),
            r.status,
            esc(&r.version)
        );
    }
    // Scenario events: a marker each; the interruption as a red line. Labels of events close
    // together go on alternate rows.
    let mut last_label: Option<(f64, u8)> = None;
    for e in t.events.iter().filter(|e| !e.pending) {
        let Some(ms) = ms_of(&e.issued_at) else {
            continue;
        };
        let x = scale.x(ms);
        let interruption = e.kind == Event::Interruption;
        let read = match (&e.first_read_at, e.detection_latency_s) {
            (Some(r), Some(l)) => format!(", first read {} ({l:.1} s later)", clock(r)),
            _ if interruption => String::new(),
            _ => ", never read".into(),
        };
        let row = match last_label {
            Some((lx, row)) if (x - lx).abs() < 70.0 => (row + 1) % 3,
            _ => 0,
        };
        last_label = Some((x, row));
        let label_y = 12.0 + 11.0 * f64::from(row);
        let (colour, width, dash) = if interruption {
            ("#d50000", 3.0, "")
        } else {
            ("#1565c0", 1.5, " stroke-dasharray=\"4 3\"")
        };
        let _ = write!(
            s,
            "<g class=\"event{}\" data-kind=\"{}\"><title>{} issued {}{}</title><line x1=\"{x:.2}\" y1=\"24\" x2=\"{x:.2}\" y2=\"{AXIS_Y}\" stroke=\"{colour}\" stroke-width=\"{width}\"{dash}/><path d=\"M{:.2} 14 l5 8 l-10 0 z\" fill=\"{colour}\"/><text x=\"{:.2}\" y=\"{label_y}\" text-anchor=\"end\" dx=\"-6\" fill=\"{colour}\">{}</text></g>",
            if interruption { " interruption" } else { "" },
            esc(e.kind.name()),
            esc(e.kind.name()),
            esc(&clock(&e.issued_at)),
            esc(&read),
            x,
            x,
            esc(e.kind.name())
        );
        if let Some(r) = e.first_read_at.as_deref().and_then(ms_of) {
            let xr = scale.x(r);
            let _ = write!(
                s,
                "<circle class=\"read\" cx=\"{xr:.2}\" cy=\"{REQ_TOP}\" r=\"4\" fill=\"#1565c0\"><title>{} first read {}</title></circle>",
                esc(e.kind.name()),
                esc(&clock(&super::at(r)))
            );
        }
    }
    if let (Some(st), Some(ms)) = (stopped, stopped_ms) {
        s.push_str(&stop_marker(&scale, st, ms));
    }
    for r in &t.reactions {
        let Some(ms) = ms_of(&r.at) else { continue };
        let x = scale.x(ms);
        // One row per kind, so a program start and an exit a millisecond apart both show.
        let y = REACT_Y
            + match r.kind {
                ReactKind::Exec => -8.0,
                ReactKind::Connect => 0.0,
                ReactKind::Exit => 8.0,
            };
        let _ = write!(
            s,
            "<circle class=\"reaction\" data-kind=\"{}\" cx=\"{x:.2}\" cy=\"{y}\" r=\"4\" fill=\"{}\"><title>{} {}: {} (pid {}, {:+.1} s from detection)</title></circle>",
            r.kind,
            reaction_colour(r.kind),
            esc(&clock(&r.at)),
            r.kind,
            esc(&r.detail),
            r.pid,
            r.latency_s
        );
    }
    // Legend.
    let legend: [(&str, &str, &str); 9] = [
        ("line", "#2e7d32", "2xx IMDSv2"),
        ("line", "#f9a825", "2xx IMDSv1"),
        ("line", "#c62828", "401"),
        ("line", "#90a4ae", "404"),
        ("line", "#6a1b9a", "other status"),
        ("dot", "#ef6c00", "program started"),
        ("dot", "#00838f", "outbound connect"),
        ("dot", "#5d4037", "exit"),
        ("bar", "#d50000", "interruption"),
    ];
    let _ = write!(s, "<g class=\"legend\">");
    let mut x = LEFT;
    let y = HEIGHT - 28.0;
    for (shape, colour, label) in legend {
        match shape {
            "dot" => {
                let _ = write!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{colour}\"/>",
                    x + 5.0,
                    y - 4.0
                );
            }
            _ => {
                let w = if shape == "bar" { 3 } else { 2 };
                let _ = write!(
                    s,
                    "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"{w}\"/>",
                    x + 5.0,
                    y - 11.0,
                    x + 5.0
                );
            }
        }
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{y:.1}\">{label}</text>", x + 14.0);
        x += 14.0 + label.len() as f64 * 6.2 + 12.0;
    }
    let _ = write!(
        s,
        "<line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{LEFT}\" y2=\"{:.1}\" stroke=\"#1565c0\" stroke-dasharray=\"4 3\" stroke-width=\"1.5\"/><text x=\"{:.1}\" y=\"{:.1}\">scenario event (dot: first read)</text>",
        y + 4.0,
        y + 16.0,
        LEFT + 14.0,
        y + 14.0
    );
    s.push_str("</g></svg>");
    s
}

/// Where the game day was stopped: a dashed black line across the lanes, labelled.
fn stop_marker(scale: &Scale, st: &Stopped, ms: u64) -> String {
    let x = scale.x(ms);
    format!(
        "<g class=\"stop\" data-reason=\"{}\"><title>stopped {}: {}</title><line x1=\"{x:.2}\" y1=\"24\" x2=\"{x:.2}\" y2=\"{AXIS_Y}\" stroke=\"#212121\" stroke-width=\"3\" stroke-dasharray=\"6 3\"/><text x=\"{x:.2}\" y=\"{}\" dx=\"6\" fill=\"#212121\" font-weight=\"bold\">stopped</text></g>",
        esc(st.reason.as_str()),
        esc(&clock(&st.at)),
        esc(&st.condition),
        REQ_BOTTOM + 12.0
    )
}

pub(super) fn generated_ms(r: &Report) -> u64 {
    ms_of(&r.generated_at).unwrap_or(0)
}

/// The timelines alone, one under the other.
pub fn document(r: &Report) -> String {
    let generated = generated_ms(r);
    let total = HEIGHT * r.targets.len().max(1) as f64;
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {total}\" width=\"{WIDTH}\" height=\"{total}\">"
    );
    for (i, t) in r.targets.iter().enumerate() {
        let _ = write!(
            s,
            "<g transform=\"translate(0 {})\">{}</g>",
            HEIGHT * i as f64,
            timeline(t, generated, false, r.stopped.as_ref())
        );
    }
    s.push_str("</svg>\n");
    s
}
