//! Waiting for SIGINT or SIGTERM: how `run` and a game day's node stay up until they are told
//! to stop.

use std::time::Duration;

use anyhow::Result;
use tokio::signal::unix::{signal, SignalKind};

/// Waits for SIGINT or SIGTERM, calling `on_tick` (if any) every 0.5 s meanwhile. A second
/// signal while the caller cleans up exits at once.
pub(super) async fn wait_for_shutdown(mut on_tick: Option<&mut dyn FnMut()>) -> Result<()> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = tick.tick(), if on_tick.is_some() => {
                if let Some(f) = on_tick.as_mut() {
                    f();
                }
            }
        }
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        eprintln!("spot-sim: second signal, exiting now");
        std::process::exit(130);
    });
    Ok(())
}
