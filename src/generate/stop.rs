//! Stop strings over streamed text: text that might be the start of a stop string is held back
//! until it is known not to be one, so the caller never sees a stop string or a part of it.

/// Where the stream stands after new text.
#[derive(Debug, PartialEq)]
pub enum StopCheck {
    /// Text safe to show now (possibly empty).
    Continue(String),
    /// A stop string occurred: the text before it, then the stream ends.
    Stopped(String),
}

pub struct StopStrings {
    stops: Vec<String>,
    pending: String,
}

impl StopStrings {
    /// Empty strings are ignored.
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), pending: String::new() }
    }

    pub fn push(&mut self, text: &str) -> StopCheck {
        self.pending.push_str(text);
        let first = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min();
        if let Some(at) = first {
            let before = self.pending[..at].to_owned();
            self.pending.clear();
            return StopCheck::Stopped(before);
        }
        // Hold back the longest tail of `pending` that begins some stop string.
        let hold = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.pending[i..])))
            .unwrap_or(self.pending.len());
        let out = self.pending[..hold].to_owned();
        self.pending.drain(..hold);
        StopCheck::Continue(out)
    }

    /// The held-back text, when the stream ends for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}
