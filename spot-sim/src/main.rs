use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    spot_sim::cli::init_logging();
    spot_sim::cli::Cli::parse().execute()
}
