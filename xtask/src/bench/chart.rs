//! The bar chart of requests/s the bench writes beside its tables (`target/bench/requests.svg`).

use std::fmt::Write as _;

use super::report::{find, Mode, Row};

/// A grouped bar chart of requests/s: one group per setup, one bar per mode.
pub(super) fn svg(rows: &[Row]) -> String {
    let setups: Vec<&str> = rows.iter().fold(Vec::new(), |mut v, r| {
        if !v.contains(&r.setup) {
            v.push(r.setup);
        }
        v
    });
    let max = rows
        .iter()
        .filter_map(|r| r.median().map(|l| l.rps))
        .fold(1.0, f64::max);
    let (w, h, left, top, bottom) = (760.0, 400.0, 70.0, 40.0, 60.0);
    let plot_h = h - top - bottom;
    let group_w = (w - left - 20.0) / setups.len().max(1) as f64;
    let bar_w = group_w * 0.35;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"22\" font-size=\"15\">IMDS requests/s by setup (higher is better)</text>\n"
    );
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = top + plot_h - plot_h * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>",
            w - 20.0,
            left - 6.0,
            y + 4.0
        );
    }
    for (g, setup) in setups.iter().enumerate() {
        let x0 = left + g as f64 * group_w + group_w * 0.12;
        for (k, (mode, color)) in [
            (Mode::NewConnection, "#4e79a7"),
            (Mode::KeepAlive, "#f28e2b"),
        ]
        .into_iter()
        .enumerate()
        {
            let x = x0 + k as f64 * bar_w;
            match find(rows, setup, mode).and_then(Row::median) {
                Some(l) => {
                    let bh = plot_h * l.rps / max;
                    let y = top + plot_h - bh;
                    let _ = writeln!(
                        s,
                        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{:.0}</text>",
                        bar_w - 2.0,
                        x + bar_w / 2.0,
                        y - 3.0,
                        l.rps
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">n/a</text>",
                        x + bar_w / 2.0,
                        top + plot_h - 3.0
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{setup}</text>",
            x0 + bar_w,
            top + plot_h + 18.0
        );
    }
    let ly = h - 18.0;
    let _ = writeln!(
        s,
        "<rect x=\"{left}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"#4e79a7\"/><text x=\"{}\" y=\"{ly}\">new connection per request</text>\n\
         <rect x=\"{}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"#f28e2b\"/><text x=\"{}\" y=\"{ly}\">keep-alive</text>\n</svg>",
        ly - 10.0,
        left + 16.0,
        left + 220.0,
        ly - 10.0,
        left + 236.0
    );
    s
}
