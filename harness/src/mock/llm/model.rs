//! The mock's deterministic "model": what it answers and how many tokens
//! that costs.
//!
//! Job: turn the text of a request into a reply and token counts that tests
//! can predict: one token per word, a word being a maximal run of bytes that
//! are not ASCII whitespace.
//!
//! Invariants:
//! - Prompt tokens are the words of every text the request carries (system
//!   prompt, instructions, every message and part), counted once.
//! - The reply is `Hello from the mock. You said: ` followed by the first
//!   [`ECHO_WORDS`] words of the last user text (just `Hello from the mock.`
//!   when there is none); completion tokens are its words.
//! - A token cap keeps the first `cap` words and marks the completion
//!   truncated; streamed pieces are the words, each after the first with a
//!   leading space, so concatenated pieces equal the full text.
//! - Pure: same input, same output.

use serde_json::Value;

/// The fixed start of every reply.
pub(crate) const GREETING: &str = "Hello from the mock.";
/// How many words of the last user text the reply echoes.
pub(crate) const ECHO_WORDS: usize = 6;

/// The input side of a request, as the model sees it.
#[derive(Default)]
pub(crate) struct Prompt<'a> {
    /// Words over all input text.
    pub(crate) words: u64,
    /// The most recent user text.
    pub(crate) last_user: Option<&'a str>,
}

impl<'a> Prompt<'a> {
    /// Counts `text` (not from the user: system, assistant, instructions).
    pub(crate) fn add(&mut self, text: &str) {
        self.words += count_words(text);
    }

    /// Counts `text` and makes it the last user text.
    pub(crate) fn add_user(&mut self, text: &'a str) {
        self.add(text);
        self.last_user = Some(text);
    }

    /// Counts every text in a message `content`: a string, or an array of
    /// parts where each part with a string `text` counts.
    pub(crate) fn add_content(&mut self, content: &'a Value, from_user: bool) {
        each_text(content, |t| {
            if from_user {
                self.add_user(t);
            } else {
                self.add(t);
            }
        });
    }
}

/// Calls `f` with every text in `v`: `v` itself if a string, else each
/// element's string (or its `text` field) if an array, else `v.text`.
pub(crate) fn each_text<'a>(v: &'a Value, mut f: impl FnMut(&'a str)) {
    let text_of = |p: &'a Value| match p {
        Value::String(s) => Some(s.as_str()),
        Value::Object(m) => m.get("text").and_then(Value::as_str),
        _ => None,
    };
    match v {
        Value::Array(parts) => parts.iter().filter_map(text_of).for_each(f),
        other => {
            if let Some(t) = text_of(other) {
                f(t);
            }
        }
    }
}

/// Words in `text` (runs of non-ASCII-whitespace bytes); a byte loop, as
/// this runs on every request of a load benchmark.
pub(crate) fn count_words(text: &str) -> u64 {
    let mut words = 0;
    let mut in_word = false;
    for &b in text.as_bytes() {
        let space = b.is_ascii_whitespace();
        words += u64::from(!space && !in_word);
        in_word = !space;
    }
    words
}

/// The model's answer: the reply text and where its pieces (words) end.
pub(crate) struct Completion {
    pub(crate) prompt_tokens: u64,
    text: String,
    /// End offset in `text` of each piece.
    ends: Vec<usize>,
    /// The token cap cut the reply short.
    pub(crate) truncated: bool,
}

impl Completion {
    /// Answers `prompt`, keeping at most `cap` tokens.
    pub(crate) fn new(prompt: &Prompt<'_>, cap: Option<u64>) -> Self {
        let echo = prompt
            .last_user
            .map(|t| t.split_ascii_whitespace().take(ECHO_WORDS))
            .into_iter()
            .flatten();
        let said = prompt
            .last_user
            .is_some_and(|t| t.split_ascii_whitespace().next().is_some());
        let words = GREETING
            .split(' ')
            .chain(said.then_some(["You", "said:"]).into_iter().flatten())
            .chain(echo);
        let mut text = String::with_capacity(96);
        let mut ends = Vec::with_capacity(6 + ECHO_WORDS);
        let mut truncated = false;
        for w in words {
            if cap.is_some_and(|c| ends.len() as u64 >= c) {
                truncated = true;
                break;
            }
            if !ends.is_empty() {
                text.push(' ');
            }
            text.push_str(w);
            ends.push(text.len());
        }
        Completion {
            prompt_tokens: prompt.words,
            text,
            ends,
            truncated,
        }
    }

    /// The whole reply.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The reply's pieces in order; concatenated they give [`text`](Self::text).
    pub(crate) fn pieces(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.ends.len()).map(|i| {
            let start = i.checked_sub(1).and_then(|j| self.ends.get(j)).copied();
            let end = self.ends.get(i).copied().unwrap_or_default();
            self.text.get(start.unwrap_or(0)..end).unwrap_or_default()
        })
    }

    pub(crate) fn completion_tokens(&self) -> u64 {
        self.ends.len() as u64
    }

    pub(crate) fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_echo_the_last_user_words_and_count_words_as_tokens() {
        let mut p = Prompt::default();
        p.add("You are terse.");
        p.add_user("first question");
        p.add_user("  say hi to   the nice mock please now ");
        let c = Completion::new(&p, None);
        assert_eq!(
            c.text(),
            "Hello from the mock. You said: say hi to the nice mock"
        );
        assert_eq!(c.prompt_tokens, 3 + 2 + 8);
        assert_eq!(c.completion_tokens(), 12);
        assert_eq!(c.total_tokens(), 25);
        assert!(!c.truncated);
        assert_eq!(c.pieces().len(), 12);
        assert_eq!(c.pieces().collect::<String>(), c.text());
        assert_eq!(c.pieces().nth(6), Some(" say"));
    }

    #[test]
    fn words_are_runs_of_non_whitespace() {
        for (text, n) in [
            ("", 0),
            ("  ", 0),
            ("a", 1),
            (" a\tb\n c ", 3),
            ("héllo wörld", 2),
        ] {
            assert_eq!(count_words(text), n, "{text:?}");
            assert_eq!(
                count_words(text),
                text.split_ascii_whitespace().count() as u64
            );
        }
    }

    #[test]
    fn no_user_text_gives_the_greeting_alone() {
        let c = Completion::new(&Prompt::default(), None);
        assert_eq!(c.text(), GREETING);
        assert_eq!(c.prompt_tokens, 0);
        let mut p = Prompt::default();
        p.add_user("   ");
        assert_eq!(Completion::new(&p, None).text(), GREETING);
    }

    #[test]
    fn a_cap_truncates() {
        let mut p = Prompt::default();
        p.add_user("hi");
        let c = Completion::new(&p, Some(2));
        assert_eq!(c.pieces().collect::<Vec<_>>(), ["Hello", " from"]);
        assert!(c.truncated);
        let c = Completion::new(&p, Some(7));
        assert_eq!(c.text(), "Hello from the mock. You said: hi");
        assert!(!c.truncated);
        assert_eq!(Completion::new(&p, Some(0)).pieces().len(), 0);
    }

    #[test]
    fn content_may_be_a_string_or_parts() {
        let v = json!([{"type": "text", "text": "a b"}, {"type": "image"}, "c", 3]);
        let mut p = Prompt::default();
        p.add_content(&v, true);
        assert_eq!(p.words, 3);
        assert_eq!(p.last_user, Some("c"));
        let (plain, part) = (json!("x y z"), json!({"text": "w"}));
        let mut p = Prompt::default();
        p.add_content(&plain, false);
        assert_eq!((p.words, p.last_user), (3, None));
        p.add_content(&part, true);
        assert_eq!((p.words, p.last_user), (4, Some("w")));
    }
}
