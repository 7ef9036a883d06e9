//! A stopped game day (a stop condition held, `--max-duration` passed, an abort): a message to
//! the owner like any other, carried out on its thread.

use super::Owner;
use crate::{
    journal,
    stop::{Halt, Stopped},
};

impl Owner {
    /// Stops the game day: every target detached at once (its link first, then its
    /// responder, whose connections close), and none attached again. The journals stay for
    /// the report. The first stop is the one; a later one gets it back.
    pub(in crate::session) fn halt(&mut self, halt: Halt) -> Stopped {
        if let Some(h) = &self.halted {
            return h.clone();
        }
        self.drain(true);
        let stopped = Stopped::new(halt, crate::report::at(journal::ms(self.clock.now())));
        let mut targets = std::mem::take(&mut self.targets);
        for t in &mut targets {
            drop(t.link.take());
            if let Some(w) = &mut self.watch {
                w.remove(t.index);
            }
        }
        let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
        drop(targets);
        log::warn!(
            "stopped ({}): {}; detached {} target(s){}: their IMDS connects reach the real IMDS again",
            stopped.reason.as_str(),
            stopped.condition,
            names.len(),
            if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", names.join(", "))
            }
        );
        self.halted = Some(stopped.clone());
        stopped
    }
}
