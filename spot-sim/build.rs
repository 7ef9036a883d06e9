//! Embeds the eBPF object built by `cargo xtask build-ebpf`. When it is missing the crate still
//! builds (so `cargo build`, clippy and `spot-sim serve` work without the nightly toolchain);
//! the commands that need the redirect then say how to get it.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let object = std::env::var_os("SPOT_SIM_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/ebpf/bpfel-unknown-none/release/spot-sim"));
    println!("cargo:rerun-if-env-changed=SPOT_SIM_EBPF_OBJECT");
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("spot-sim.bpf.o");
    match std::fs::read(&object) {
        Ok(bytes) => std::fs::write(&out, bytes).expect("writing OUT_DIR"),
        Err(_) => {
            println!(
                "cargo:warning=eBPF object not found at {}: run `cargo xtask build-ebpf` (spot-sim builds, but `exec` and `run` will refuse to start)",
                object.display()
            );
            std::fs::write(&out, []).expect("writing OUT_DIR");
        }
    }
}
