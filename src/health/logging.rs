//! JSON log lines on stderr, with every configured password scrubbed from every line.
//!
//! The server's own messages never include a password (connection targets are printed with
//! `describe`), but drivers' error texts and third-party debug logs (`RUST_LOG=debug`) are not
//! ours to audit. So the writer itself replaces each secret, raw and JSON-escaped, before a
//! line reaches stderr: "no secret in any log line" holds by construction, whatever logs it.

use std::io::Write;
use std::sync::Arc;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// What a secret is replaced with.
const MASK: &str = "***";

/// Replaces known secrets in text. Cheap to clone.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Each secret and, where it differs, its JSON-escaped form (a `"` or `\` in a password).
    patterns: Arc<[String]>,
}

impl Scrubber {
    pub fn new(secrets: &[String]) -> Scrubber {
        let mut patterns: Vec<String> = Vec::new();
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            patterns.push(secret.clone());
            let escaped = serde_json::to_string(secret).unwrap_or_default();
            let escaped = escaped.trim_matches('"');
            if escaped != secret && !escaped.is_empty() {
                patterns.push(escaped.to_string());
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Scrubber {
            patterns: patterns.into(),
        }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for pattern in self.patterns.iter() {
            if text.contains(pattern.as_str()) {
                text = text.replace(pattern.as_str(), MASK);
            }
        }
        text
    }
}

/// Installs the JSON subscriber: `RUST_LOG` or `info`, one event per line on stderr.
pub fn init(scrubber: Scrubber) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(ScrubbingStderr { scrubber })
        .try_init();
}

/// A `MakeWriter` whose writers buffer one event and write it scrubbed, in one call, on drop.
struct ScrubbingStderr {
    scrubber: Scrubber,
}

impl<'a> MakeWriter<'a> for ScrubbingStderr {
    type Writer = ScrubbedLine;

    fn make_writer(&'a self) -> ScrubbedLine {
        ScrubbedLine {
            scrubber: self.scrubber.clone(),
            buffer: Vec::with_capacity(256),
        }
    }
}

struct ScrubbedLine {
    scrubber: Scrubber,
    buffer: Vec<u8>,
}

impl Write for ScrubbedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let line = self.scrubber.scrub(&String::from_utf8_lossy(&self.buffer));
        self.buffer.clear();
        // A closed stderr must not take the server down: the line is lost, the probe answers.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        Ok(())
    }
}

impl Drop for ScrubbedLine {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_raw_and_json_escaped() {
        let s = Scrubber::new(&["pa\"ss".to_string(), "hunter2".to_string(), String::new()]);
        assert_eq!(s.scrub("auth pa\"ss failed"), "auth *** failed");
        assert_eq!(s.scrub(r#"{"e":"pa\"ss"}"#), r#"{"e":"***"}"#);
        assert_eq!(s.scrub("x hunter2 hunter2"), "x *** ***");
        assert_eq!(s.scrub("nothing here"), "nothing here");
    }
}
