//! What a waiting command shows on stderr: a spinner on a terminal, plain step lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports the steps of a long operation.
pub(crate) struct Progress {
    spinner: Option<ProgressBar>,
    last: String,
}

impl Progress {
    pub(crate) fn new() -> Self {
        let spinner = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
            bar.enable_steady_tick(Duration::from_millis(80));
            bar
        });
        Self {
            spinner,
            last: String::new(),
        }
    }

    /// Shows a step; repeated steps are shown once.
    pub(crate) fn step(&mut self, message: impl Into<String>) {
        let message = message.into();
        if message == self.last {
            return;
        }
        match &self.spinner {
            Some(bar) => {
                if !self.last.is_empty() {
                    bar.println(format!("  {}", self.last));
                }
                bar.set_message(message.clone());
            }
            None => eprintln!("  {message}"),
        }
        self.last = message;
    }

    /// Ends the display with a final line.
    pub(crate) fn finish(&mut self, message: impl Into<String>) {
        let message = message.into();
        match self.spinner.take() {
            Some(bar) => {
                if !self.last.is_empty() {
                    bar.println(format!("  {}", self.last));
                }
                bar.finish_and_clear();
                eprintln!("{message}");
            }
            None => eprintln!("{message}"),
        }
        self.last.clear();
    }
}
