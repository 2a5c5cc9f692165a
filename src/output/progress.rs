//! Progress on stderr: an indicatif bar when stderr is a terminal, plain lines otherwise (CI logs,
//! Kubernetes), nothing with `--format json` unless verbose.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::escape;
use crate::progress::Progress;

pub enum Reporter {
    Bar(Mutex<Option<ProgressBar>>),
    /// Plain lines, starting with the verb ("applying", "rolling back").
    Lines(&'static str),
    /// The same lines, kept for later: a fleet target's, printed as one block when it ends so
    /// that targets running at once do not interleave.
    Kept(&'static str, Mutex<String>),
    Quiet,
}

impl Reporter {
    /// A bar on a terminal, lines elsewhere; `quiet` for JSON output.
    pub fn for_stderr(quiet: bool, verb: &'static str) -> Reporter {
        if quiet {
            Reporter::Quiet
        } else if std::io::stderr().is_terminal() {
            Reporter::Bar(Mutex::new(None))
        } else {
            Reporter::Lines(verb)
        }
    }

    /// Lines kept for later ([`Reporter::taken`]); `quiet` for JSON output.
    pub fn kept(quiet: bool, verb: &'static str) -> Reporter {
        if quiet {
            Reporter::Quiet
        } else {
            Reporter::Kept(verb, Mutex::new(String::new()))
        }
    }

    /// The lines a [`Reporter::Kept`] has kept (emptied).
    pub fn taken(&self) -> String {
        match self {
            Reporter::Kept(_, kept) => kept
                .lock()
                .map(|mut k| std::mem::take(&mut *k))
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// A line, as the variant wants it.
    fn say(&self, text: &str) {
        match self {
            Reporter::Kept(_, kept) => {
                if let Ok(mut k) = kept.lock() {
                    k.push_str(&escape::text(text));
                    k.push('\n');
                }
            }
            _ => line(text),
        }
    }
}

fn line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", escape::text(text));
}

impl Progress for Reporter {
    fn planned(&self, total: usize) {
        if let Reporter::Bar(slot) = self {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            if let Ok(mut s) = slot.lock() {
                *s = Some(bar);
            }
        }
    }

    fn started(&self, what: &str) {
        // A migration file or partition name: one line, escaped (also what the bar shows).
        let what = escape::field(what);
        match self {
            Reporter::Bar(slot) => {
                if let Some(bar) = slot.lock().ok().and_then(|s| s.clone()) {
                    bar.set_message(what.to_string());
                }
            }
            Reporter::Lines(verb) | Reporter::Kept(verb, _) => self.say(&format!("{verb} {what}")),
            Reporter::Quiet => {}
        }
    }

    fn finished(&self, what: &str, took: Duration) {
        let what = escape::field(what);
        match self {
            Reporter::Bar(slot) => {
                if let Some(bar) = slot.lock().ok().and_then(|s| s.clone()) {
                    bar.println(format!(
                        "  done {what} ({:.1} ms)",
                        took.as_secs_f64() * 1000.0
                    ));
                    bar.inc(1);
                }
            }
            Reporter::Lines(_) | Reporter::Kept(..) => self.say(&format!(
                "  done {what} ({:.1} ms)",
                took.as_secs_f64() * 1000.0
            )),
            Reporter::Quiet => {}
        }
    }

    fn retrying(&self, what: &str, attempt: u32, reason: &str) {
        let text = format!(
            "  {}: {} on attempt {attempt}; retrying",
            escape::field(what),
            escape::text(reason)
        );
        match self {
            Reporter::Bar(slot) => match slot.lock().ok().and_then(|s| s.clone()) {
                Some(bar) => bar.println(text),
                None => line(&text),
            },
            Reporter::Lines(_) | Reporter::Kept(..) => self.say(&text),
            Reporter::Quiet => {}
        }
    }

    fn done(&self) {
        if let Reporter::Bar(slot) = self {
            if let Some(bar) = slot.lock().ok().and_then(|mut s| s.take()) {
                bar.finish_and_clear();
            }
        }
    }
}
