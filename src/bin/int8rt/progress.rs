//! src/bin/int8rt/progress.rs — a one-line progress bar on stderr for long commands, drawn only
//! when stderr is a terminal (logs and pipes get no control characters).

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// `[#####.....] done/total label (elapsed)`, redrawn in place.
pub struct Progress {
    total: usize,
    done: usize,
    start: Instant,
    tty: bool,
}

impl Progress {
    pub fn new(total: usize) -> Self {
        Progress {
            total,
            done: 0,
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Count one unit of work done, labelled `label`.
    pub fn tick(&mut self, label: &str) {
        self.done += 1;
        if !self.tty {
            return;
        }
        let width = 30;
        let filled = (self.done * width).checked_div(self.total).unwrap_or(width);
        let n = label.chars().count();
        let label: String = if n > 48 {
            std::iter::once('…')
                .chain(label.chars().skip(n - 47))
                .collect()
        } else {
            label.to_string()
        };
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r[{}{}] {}/{} {:<48} {:>5.1}s",
            "#".repeat(filled.min(width)),
            ".".repeat(width - filled.min(width)),
            self.done,
            self.total,
            label,
            self.start.elapsed().as_secs_f64()
        );
        let _ = e.flush();
    }

    /// Clear the bar.
    pub fn finish(&self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r{:120}\r", "");
        }
    }
}
