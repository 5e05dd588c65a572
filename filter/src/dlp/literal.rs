//! The operator's named literals: exact strings found anywhere in the
//! text, and patterns ([`pattern`](super::pattern)), which share their
//! list, names, filter and scan.
//!
//! Invariants:
//! - A literal is found wherever its bytes occur, inside words too; with
//!   `ignore_ascii_case`, ASCII letters match either case (no Unicode case
//!   folding). Invisible characters in the text are transparent, as for
//!   the built-ins.
//! - Matches are leftmost, then longest, and do not overlap; at one start
//!   the literal listed first wins a tie.
//! - Names are not empty, unique, and not a built-in's name.
//! - A pattern is compiled here, once; its matches follow the same
//!   leftmost-longest rule as literals'.
//! - The filter costs 8 KB; the scan is one bit test per byte (is this
//!   byte pair the start of some literal?) plus, where it passes, one
//!   comparison per literal: fine for tens of literals, no automaton. The
//!   duplicate-name check at load is quadratic in the number of literals.

use super::chars::{class, Cur, ALNUM};
use super::detector::Detector;
use super::pattern::{self, add, has, Memo, Pattern};
use super::{DetectorId, DetectorSetError, Match};

/// A named string the operator wants found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    /// What matches are reported as (`[REDACTED:<name>]`, audit records).
    pub name: String,
    /// The exact text to find, or with `pattern`, its shape; not empty.
    pub text: String,
    /// Match ASCII letters in either case.
    pub ignore_ascii_case: bool,
    /// `text` is a pattern ([`pattern::compile`]), not literal text.
    pub pattern: bool,
}

/// The literals, with a filter on the pair of bytes they start with.
#[derive(Debug, Clone, Default)]
pub(super) struct Literals {
    list: Vec<Literal>,
    /// Each literal's compiled pattern (empty for text).
    patterns: Vec<Pattern>,
    /// Per first byte, the literals that may start with it: bit `k` for
    /// literal `k < 63`, bit 63 for any later one (256 words, or none).
    first: Vec<u64>,
    /// The bits of [`first`](Self::first) that are patterns (`k < 63`).
    pattern_bits: u64,
    /// [`ALNUM`] when there are patterns (the second half of `pairs` is in
    /// use), else 0.
    split: u8,

    /// One bit per pair of bytes that may start a literal (1024 words,
    /// empty when there are no literals): most positions are passed over
    /// after one lookup. Then 1024 more for positions right after a letter
    /// or digit, where a pattern cannot start with one: inside words, most
    /// patterns cost nothing.
    pairs: Vec<u64>,
}

/// The word and bit of byte pair `(a, b)` in [`Literals::pairs`].
fn pair(a: u8, b: u8) -> (usize, u64) {
    let k = usize::from(a) << 8 | usize::from(b);
    (k >> 6, 1 << (k & 63))
}

impl Literals {
    pub(super) fn new(list: Vec<Literal>) -> Result<Literals, DetectorSetError> {
        if list.is_empty() {
            return Ok(Literals::default());
        }
        if list.len() > usize::from(u16::MAX) / 2 {
            return Err(DetectorSetError::TooManyLiterals);
        }
        let mut pairs = vec![0u64; 2048];
        let mut first = vec![0u64; 256];
        let mut pattern_bits = 0;
        let mut patterns = Vec::with_capacity(list.len());
        let mut open = 0;
        for (k, l) in list.iter().enumerate() {
            let text = l.text.as_bytes();
            let Some(&a) = text.first() else {
                return Err(DetectorSetError::EmptyLiteral { index: k });
            };
            let taken = Detector::from_name(&l.name).is_some()
                || list
                    .get(..k)
                    .is_some_and(|before| before.iter().any(|o| o.name == l.name));
            if l.name.is_empty() || taken {
                return Err(DetectorSetError::NameInvalid { index: k });
            }
            let fold = l.ignore_ascii_case;
            let (firsts, seconds) = if l.pattern {
                let p = pattern::compile(&l.text, fold, &mut open).map_err(|e| {
                    DetectorSetError::PatternInvalid {
                        index: k,
                        at: e.at,
                        near: l.text.get(e.at..e.at + e.len).unwrap_or("").into(),
                        why: e.why,
                    }
                })?;
                let (f, seconds) = p.starts().unwrap_or_default();
                patterns.push(p);
                ([f[0], f[1], 0, 0], seconds)
            } else {
                // Its first two bytes (either case if folding), or its first
                // byte and any (one byte).
                patterns.push(Pattern::default());
                let mut firsts = [0; 4];
                let mut seconds = [0; 4];
                add(&mut firsts, a);
                if fold {
                    add(&mut firsts, a.to_ascii_lowercase());
                    add(&mut firsts, a.to_ascii_uppercase());
                }
                match text.get(1) {
                    None => seconds = [u64::MAX; 4],
                    Some(&b) => {
                        add(&mut seconds, b);
                        if fold {
                            add(&mut seconds, b.to_ascii_lowercase());
                            add(&mut seconds, b.to_ascii_uppercase());
                        }
                    }
                }
                (firsts, seconds)
            };
            let k_bit = 1u64 << k.min(63);
            if l.pattern && k < 63 {
                pattern_bits |= k_bit;
            }
            // The pairs it may start with, an invisible character's lead
            // byte second included.
            for a in 0..=255u8 {
                if !has(&firsts, a) {
                    continue;
                }
                if let Some(f) = first.get_mut(usize::from(a)) {
                    *f |= k_bit;
                }
                for second in 0..=255u8 {
                    if has(&seconds, second) || matches!(second, 0xC2 | 0xE2 | 0xEF) {
                        let (w, bit) = pair(a, second);
                        let inside = !(l.pattern && a.is_ascii_alphanumeric());
                        for w in [Some(w), inside.then_some(w + 1024)].into_iter().flatten() {
                            if let Some(word) = pairs.get_mut(w) {
                                *word |= bit;
                            }
                        }
                    }
                }
            }
        }
        let split = if list.iter().any(|l| l.pattern) {
            ALNUM
        } else {
            0
        };
        Ok(Literals {
            list,
            patterns,
            first,
            pattern_bits,
            split,
            pairs,
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(super) fn get(&self, k: u16) -> Option<&Literal> {
        self.list.get(usize::from(k))
    }

    /// Appends the literal matches in `t` to `out`, in order. Kept out of
    /// line: inlined, it slowed the built-ins' scan by 7% in the `.wasm`.
    #[inline(never)]
    pub(super) fn scan(&self, t: &[u8], out: &mut Vec<Match>) {
        if self.list.is_empty() {
            return;
        }
        // Without patterns the two halves of `pairs` are the same, and the
        // byte before is not read: 14% faster on text literals alone.
        if self.split == 0 {
            self.scan_with::<false>(t, out);
        } else {
            self.scan_with::<true>(t, out);
        }
    }

    fn scan_with<const PATTERNS: bool>(&self, t: &[u8], out: &mut Vec<Match>) {
        let mut memo: Memo = Default::default();
        let mut i = 0;
        while let Some(&b) = t.get(i) {
            let (mut w, bit) = pair(b, t.get(i + 1).copied().unwrap_or(0));
            if PATTERNS {
                let prev = t.get(i.wrapping_sub(1)).copied().unwrap_or(0);
                w += usize::from(class(prev) & ALNUM) * 1024;
            }
            if self.pairs.get(w).is_none_or(|word| word & bit == 0) {
                i += 1;
                continue;
            }
            // The literals that may start here; no pattern where a word
            // goes on (patterns keep the built-ins' boundary).
            let mut may = self.first.get(usize::from(b)).copied().unwrap_or(0);
            if PATTERNS && may & self.pattern_bits != 0 && pattern::glued_start(t, i) {
                may &= !self.pattern_bits;
            }
            // Leftmost, then longest, then listed first.
            let (mut end, mut best) = (0, 0u16);
            while may != 0 {
                let k = may.trailing_zeros() as usize;
                may &= may - 1;
                let upto = if k == 63 { self.list.len() } else { k + 1 };
                for k in k..upto {
                    let (Some(l), Some(p)) = (self.list.get(k), self.patterns.get(k)) else {
                        break;
                    };
                    let mut c = Cur::new(t, i);
                    let here = if l.pattern {
                        p.at(t, i, &mut memo)
                    } else if c.spell(l.text.as_bytes(), l.ignore_ascii_case) {
                        c.p
                    } else {
                        0
                    };
                    if here > end {
                        (end, best) = (here, k as u16);
                    }
                }
            }
            if end > i {
                out.push(Match {
                    detector: DetectorId::Literal(best),
                    start: i,
                    end,
                });
                i = end;
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn lit(name: &str, text: &str, ignore_ascii_case: bool) -> Literal {
        Literal {
            name: name.into(),
            text: text.into(),
            ignore_ascii_case,
            pattern: false,
        }
    }

    fn scan(ls: &Literals, t: &str) -> Vec<(u16, usize, usize)> {
        let mut out = Vec::new();
        ls.scan(t.as_bytes(), &mut out);
        out.into_iter()
            .map(|m| match m.detector {
                DetectorId::Literal(k) => (k, m.start, m.end),
                DetectorId::Builtin(_) => (u16::MAX, 0, 0),
            })
            .collect()
    }

    #[test]
    fn literals_are_found_leftmost_longest_and_case_as_configured() {
        let ls = Literals::new(vec![
            lit("codename", "Nightingale", false),
            lit("codename_long", "Nightingale-2", false),
            lit("customer", "acme corp", true),
        ])
        .unwrap();
        assert_eq!(
            scan(&ls, "ProjectNightingale-2 and nightingale"),
            [(1, 7, 20)]
        );
        assert_eq!(
            scan(&ls, "ACME Corp, Acme\u{200B} corp"),
            [(2, 0, 9), (2, 11, 23)]
        );
        assert_eq!(scan(&ls, "Nightingal"), []);
        let one = Literals::new(vec![lit("q", "Q", true), lit("zz", "zz", false)]).unwrap();
        assert_eq!(
            scan(&one, "aqz\u{200D}zQ"),
            [(0, 1, 2), (1, 2, 7), (0, 7, 8)]
        );
    }

    #[test]
    fn empty_literals_and_names_are_refused() {
        let e = Literals::new(vec![lit("a", "x", false), lit("b", "", false)]).unwrap_err();
        assert_eq!(e, DetectorSetError::EmptyLiteral { index: 1 });
        for names in [["", "b"], ["a", "a"], ["a", "email"]] {
            let e = Literals::new(names.map(|n| lit(n, "x", false)).to_vec()).unwrap_err();
            let index = if names[0].is_empty() { 0 } else { 1 };
            assert_eq!(e, DetectorSetError::NameInvalid { index }, "{names:?}");
        }
    }
}
