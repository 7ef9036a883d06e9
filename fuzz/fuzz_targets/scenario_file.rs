//! Any scenario file text: a clear one-line error or settings that run.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match spot_sim::settings::Settings::from_toml(Path::new("fuzz.toml"), text) {
        Ok(settings) => common::exercise(settings),
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("fuzz.toml"), "{message}");
            assert!(!message.contains('\n'), "more than one line: {message:?}");
        }
    }
});
