//! Any string where the scenario takes a duration or a time: refused clearly, or a timeline
//! that computes every instant without overflowing.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    start_in: String,
    interruption_in: String,
    rebalance_lead: String,
    latency: String,
    not_before: String,
    which: u8,
}

fuzz_target!(|input: Input| {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let scenario = match input.which % 3 {
        0 => format!(
            "start-in = {}\ninterruption-in = {}\nrebalance-lead = {}",
            q(&input.start_in),
            q(&input.interruption_in),
            q(&input.rebalance_lead)
        ),
        1 => format!(
            "manual = true\ninterruption-in = {}\naction = \"hibernate\"",
            q(&input.interruption_in)
        ),
        _ => format!("start-in = {}", q(&input.start_in)),
    };
    let text = format!(
        "[scenario]\n{scenario}\n\n[faults]\nlatency = {}\n\n[[maintenance]]\ncode = \"system-reboot\"\ndescription = \"x\"\nnot-before = {}\n",
        q(&input.latency),
        q(&input.not_before)
    );
    match spot_sim::settings::Settings::from_toml(Path::new("fuzz.toml"), &text) {
        Ok(settings) => common::exercise(settings),
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "more than one line: {message:?}");
        }
    }
});
