//! A rule's model allow-list entry: an exact model name, or a glob where `*`
//! stands for any run of characters (`gpt-4o-*`, `claude-*-haiku-*`).
//!
//! Invariants:
//! - A pattern is 1..=256 bytes of printable ASCII without spaces; that is
//!   checked once, at load.
//! - Matching is on the decoded model name (JSON escapes resolved by the
//!   body reader, or the path segment), byte for byte, case-sensitive, as
//!   providers compare names.
//! - Matching is linear in practice and never recursive: the classic
//!   two-pointer glob with one backtrack point.

use crate::exchange::MAX_MODEL_LEN;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelPattern(Box<str>);

impl ModelPattern {
    pub fn parse(s: &str) -> Result<ModelPattern, String> {
        if s.is_empty() || s.len() > MAX_MODEL_LEN {
            return Err(format!(
                "a model pattern is 1 to {MAX_MODEL_LEN} characters"
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a model pattern is printable ASCII without spaces".into());
        }
        Ok(ModelPattern(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, model: &str) -> bool {
        glob(self.0.as_bytes(), model.as_bytes())
    }
}

/// `*` matches any run of bytes (also empty); every other byte itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // After the last `*`: where the pattern resumes, and the text position
    // the star has absorbed up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&b| b == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn m(p: &str, s: &str) -> bool {
        ModelPattern::parse(p).unwrap().matches(s)
    }

    #[test]
    fn exact_names_match_only_themselves() {
        assert!(m("gpt-4o-mini", "gpt-4o-mini"));
        assert!(!m("gpt-4o-mini", "gpt-4o-mini-2024"));
        assert!(!m("gpt-4o-mini", "GPT-4o-mini"));
        assert!(!m("gpt-4o", "gpt-4o-mini"));
    }

    #[test]
    fn stars_match_any_run() {
        assert!(m("gpt-4o-*", "gpt-4o-mini"));
        assert!(m("gpt-4o-*", "gpt-4o-"));
        assert!(!m("gpt-4o-*", "gpt-4o"));
        assert!(m("claude-*-haiku-*", "claude-3-5-haiku-20241022"));
        assert!(!m("claude-*-haiku-*", "claude-3-5-sonnet-20241022"));
        assert!(m("*", "anything"));
        assert!(m("*mini", "gpt-4o-mini"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn patterns_are_checked_at_load() {
        assert!(ModelPattern::parse("").is_err());
        assert!(ModelPattern::parse("gpt 4").is_err());
        assert!(ModelPattern::parse(&"a".repeat(257)).is_err());
        assert!(ModelPattern::parse("ft:gpt-4o-mini:org::abc").is_ok());
    }

    #[test]
    fn many_stars_stay_fast() {
        let p = "*a".repeat(100);
        let s = "a".repeat(99);
        assert!(!m(&p, &s));
    }
}
