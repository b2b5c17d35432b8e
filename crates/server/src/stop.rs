//! Stop sequences, matched on committed text only.
//!
//! The worker feeds the text of each committed token, in order, to a [`StopText`]. It passes
//! on only text that cannot be the start of a stop sequence; the rest is held until the next
//! token decides. When a stop sequence appears, the text before it is released and nothing
//! after: the stop string itself is never sent (as OpenAI does), and a stream never carries
//! text past a stop. Only committed (verified) tokens reach it, so speculation cannot make a
//! stop appear or vanish: every engine stops at the same token.

/// The matcher of one request.
#[derive(Debug)]
pub struct StopText {
    stops: Vec<String>,
    /// Text received and not yet released (a possible start of a stop sequence).
    held: String,
    stopped: bool,
}

impl StopText {
    pub fn new(stops: Vec<String>) -> StopText {
        StopText {
            stops,
            held: String::new(),
            stopped: false,
        }
    }

    /// True once a stop sequence appeared.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Takes the next committed text; returns what may be sent now.
    pub fn push(&mut self, text: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.held.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first {
            self.stopped = true;
            self.held.truncate(at);
            return std::mem::take(&mut self.held);
        }
        // Hold the longest suffix that a stop sequence starts with.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let suffix = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(suffix))
            })
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep);
        std::mem::replace(&mut self.held, rest)
    }

    /// The answer ended without a stop: whatever is held goes out.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut m = StopText::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out: Vec<String> = pieces.iter().map(|p| m.push(p)).collect();
        if !m.stopped() {
            out.push(m.flush());
        }
        (out, m.stopped())
    }

    #[test]
    fn no_stop_passes_everything() {
        assert_eq!(
            run(&[], &["a", "b"]),
            (vec!["a".into(), "b".into(), "".into()], false)
        );
    }

    #[test]
    fn a_stop_across_pieces_is_held_then_dropped() {
        let (out, stopped) = run(&["\nQ:"], &["Paris", ".\n", "Q", ": next"]);
        assert!(stopped);
        assert_eq!(out.concat(), "Paris.");
        assert_eq!(out[1], ".", "the newline is held: it may start the stop");
    }

    #[test]
    fn a_false_start_is_released() {
        let (out, stopped) = run(&["END"], &["the E", "ND", "x"]);
        assert!(stopped);
        assert_eq!(out.concat(), "the ");
        let (out, stopped) = run(&["END"], &["the E", "nd."]);
        assert!(!stopped);
        assert_eq!(out.concat(), "the End.");
    }

    #[test]
    fn the_earliest_stop_wins_and_nothing_follows() {
        let (out, _) = run(&["c", "ab"], &["xabc", "more"]);
        assert_eq!(out, vec!["x".to_string(), String::new()]);
    }

    #[test]
    fn multibyte_text_is_cut_on_characters() {
        let (out, stopped) = run(&["é!"], &["café", "!"]);
        assert!(stopped);
        assert_eq!(out.concat(), "caf");
    }
}
