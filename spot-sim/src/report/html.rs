//! The report as one self-contained HTML page (no scripts, no external resources) with an SVG
//! timeline per target (`svg.rs`). Everything that came from a target (paths, command names) is
//! escaped.

use std::fmt::Write as _;

use super::svg::esc;
use super::svg::{generated_ms, timeline};
use super::{clock, ReactionReport, Report, TargetReport};
use crate::journal::ReactKind;

/// Safe for a terminal: the one rule of escape.rs (escape sequences, bidi controls, ...).
pub fn plain(s: &str) -> String {
    crate::escape::inert(s)
}

/// The whole report as one HTML page.
pub fn page(r: &Report) -> String {
    let generated = generated_ms(r);
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>spot-sim game-day report</title><style>\
body{font-family:sans-serif;margin:2em;color:#222}h2{margin-top:2em}.pass{color:#2e7d32}.fail{color:#c62828}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:13px}\
svg.timeline{border:1px solid #ddd}.stopped{background:#fff3e0;border-left:4px solid #212121;padding:.4em .8em}\
.none{color:#555}tr.telling td{font-weight:bold;background:#fff8e1}td.argv{font-family:monospace}</style></head><body>",
    );
    let (class, verdict) = verdict_words(r.pass);
    let _ = write!(
        s,
        "<h1>spot-sim game-day report</h1><p>Generated {}. Verdict: <strong class=\"{class}\">{verdict}</strong></p>",
        esc(&r.generated_at),
    );
    if let Some(st) = &r.stopped {
        let _ = write!(
            s,
            "<p class=\"stopped\"><strong>Stopped</strong> at {} ({}): {}. Every target was detached then; the findings end there.</p>",
            esc(&clock(&st.at)),
            esc(st.reason.as_str()),
            esc(&st.condition)
        );
    }
    for t in &r.targets {
        let (class, verdict) = verdict_words(t.verdict.as_ref().map(|v| v.pass));
        let _ = write!(
            s,
            "<section class=\"target\"><h2>{} — <span class=\"{class}\">{verdict}</span></h2>",
            esc(&t.name),
        );
        match &t.verdict {
            Some(v) => {
                if !v.reasons.is_empty() {
                    s.push_str("<ul class=\"reasons\">");
                    for reason in &v.reasons {
                        let _ = write!(s, "<li>{}</li>", esc(reason));
                    }
                    s.push_str("</ul>");
                }
                let _ = write!(s, "<p>Checked: {}.</p>", esc(&v.checked.join("; ")));
            }
            None => s.push_str(
                "<p>No expectation was given, so nothing was judged: these are the facts. Give --expect-detect, --expect-react or --expect-drained for a verdict.</p>",
            ),
        }
        s.push_str(&timeline(t, generated, false, r.stopped.as_ref()));
        if t.requests_total > t.requests.len() as u64 {
            let _ = write!(
                s,
                "<p>Showing {} of {} requests (the first and the latest).</p>",
                t.requests.len(),
                t.requests_total
            );
        }
        table(
            &mut s,
            &["event", "issued", "first read", "detection latency"],
            t.events.iter().map(|e| {
                [
                    e.kind.to_string(),
                    format!(
                        "{}{}",
                        clock(&e.issued_at),
                        if e.pending { " (not yet)" } else { "" }
                    ),
                    e.first_read_at.as_deref().map(clock).unwrap_or_default(),
                    e.detection_latency_s
                        .map(|l| format!("{l:.2} s"))
                        .unwrap_or_default(),
                ]
            }),
        );
        let p = &t.polls;
        let _ = write!(
            s,
            "<p>{} requests in {} polls; median interval {}, longest gap {}; IMDSv1 {}, IMDSv2 {}; {} tokens issued; {} 401s{}.</p>",
            t.requests_total,
            p.count,
            p.median_interval_s.map(|m| format!("{m:.2} s")).unwrap_or("–".into()),
            p.max_gap_s.map(|m| format!("{m:.2} s")).unwrap_or("–".into()),
            p.tokens.v1,
            p.tokens.v2,
            p.tokens.tokens_issued,
            p.unauthorized,
            p.unauthorized_recovery
                .as_deref()
                .map(|r| format!(" ({})", esc(r)))
                .unwrap_or_default()
        );
        reactions(&mut s, t);
        if !t.outbound.is_empty() {
            let header = ["outbound destination", "command", "first", "connects"];
            let rows = t.outbound.iter().map(|o| {
                [
                    o.destination.clone(),
                    o.comm.clone(),
                    clock(&o.first_at),
                    o.count.to_string(),
                ]
            });
            table(&mut s, &header, rows);
        }
        s.push_str("</section>");
    }
    s.push_str("</body></html>\n");
    s
}

/// `(class, word)` of a verdict: PASS, FAIL, or none without expectations.
fn verdict_words(pass: Option<bool>) -> (&'static str, &'static str) {
    match pass {
        Some(true) => ("pass", "PASS"),
        Some(false) => ("fail", "FAIL"),
        None => ("none", "none (no expectation given)"),
    }
}

/// The reactions after detection in order, each with its command line or destination, the
/// most telling ones marked.
fn reactions(s: &mut String, t: &TargetReport) {
    if t.detected_at.is_none() {
        return;
    }
    if t.reactions.is_empty() {
        s.push_str("<p class=\"reactions\">No reaction after detection: no program started, no outbound connect, no exit.</p>");
        return;
    }
    if !t.most_telling.is_empty() {
        let telling: Vec<String> = t
            .most_telling
            .iter()
            .map(ReactionReport::with_delay)
            .collect();
        let _ = write!(
            s,
            "<p class=\"telling\">Most telling: <strong>{}</strong></p>",
            esc(&telling.join(", "))
        );
    }
    s.push_str("<table class=\"reactions\"><tr><th>reaction</th><th>at</th><th>from detection</th><th>pid</th><th>process</th><th>command line or destination</th></tr>");
    for x in &t.reactions {
        let telling = t.most_telling.contains(x);
        let what = match x.kind {
            ReactKind::Exec if !x.argv.is_empty() => x.argv.join(" "),
            ReactKind::Connect => x.destination.clone().unwrap_or_default(),
            _ => x.detail.clone(),
        };
        let _ = write!(
            s,
            "<tr class=\"reaction{}\" data-kind=\"{}\"><td>{}</td><td>{}</td><td>{:+.2} s</td><td>{}</td><td>{}</td><td class=\"argv\">{}</td></tr>",
            if telling { " telling" } else { "" },
            x.kind,
            x.kind,
            esc(&clock(&x.at)),
            x.latency_s,
            x.pid,
            esc(&x.comm),
            esc(&what)
        );
    }
    s.push_str("</table>");
    let more = t.reactions_not_listed;
    let _ = write!(
        s,
        "<p>{} program(s) started and {} destination(s) first connected to after detection{}.</p>",
        t.programs_after_detection,
        t.destinations_after_detection,
        if more > 0 {
            format!("; {more} more not listed")
        } else {
            String::new()
        }
    );
}

/// A table with a header row. Every cell is escaped here: most come from the target.
fn table<const N: usize>(
    s: &mut String,
    header: &[&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
) {
    s.push_str("<table><tr>");
    for h in header {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for row in rows {
        s.push_str("<tr>");
        for cell in row {
            let _ = write!(s, "<td>{}</td>", esc(&cell));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
}
