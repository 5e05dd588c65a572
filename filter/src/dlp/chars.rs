//! What a byte or a character counts as for the detectors, and the small
//! readers every detector is built from.
//!
//! Invariants:
//! - Every reader takes a byte position and answers about the text from
//!   there; any position is allowed, including one past the end (it sees no
//!   character). Nothing here panics or allocates.
//! - Invisible characters ([`invisible_len`]) are transparent to the
//!   [`Cur`] methods: a method steps over them as if they were absent, and
//!   never leaves the cursor after a trailing one it did not need.
//! - Readers return one scalar (a bool, a count, an `Option<u8>`): on
//!   wasm32 anything wider is returned through memory, which costs code at
//!   every call. Positions live in the cursor instead.

/// `[A-Za-z0-9]`.
pub(super) const ALNUM: u8 = 1;
/// `[A-Za-z0-9_-]`: base64url, and most API keys' bodies.
pub(super) const B64URL: u8 = 2;
/// `[A-Za-z0-9+/]`: standard base64 without padding.
pub(super) const B64: u8 = 4;
/// `[A-Z2-7]`: the RFC 4648 base32 alphabet of AWS access key ids.
pub(super) const BASE32: u8 = 8;
/// `[A-Za-z0-9._%+-]`: an email address's local part.
pub(super) const LOCAL: u8 = 16;
/// `[A-Za-z0-9-]`: a DNS label; also Slack tokens' bodies.
pub(super) const LABEL: u8 = 32;
/// `[A-Za-z0-9_]`: GitHub fine-grained tokens' bodies.
pub(super) const WORD: u8 = 64;
/// A byte outside words that may start a match: `@ + ( -` and 0xEF, the
/// lead byte of full-width digits.
pub(super) const TRIGGER: u8 = 128;

const fn class_of(b: u8) -> u8 {
    let alnum = b.is_ascii_alphanumeric();
    let mut c = 0;
    if alnum {
        c |= ALNUM | B64URL | B64 | LOCAL | LABEL | WORD;
    }
    if b.is_ascii_uppercase() || (b >= b'2' && b <= b'7') {
        c |= BASE32;
    }
    match b {
        b'_' => c |= B64URL | LOCAL | WORD,
        b'-' => c |= B64URL | LOCAL | LABEL | TRIGGER,
        b'+' => c |= B64 | LOCAL | TRIGGER,
        b'/' => c |= B64,
        b'.' | b'%' => c |= LOCAL,
        b'@' | b'(' | 0xEF => c |= TRIGGER,
        _ => {}
    }
    c
}

const fn table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = class_of(b as u8);
        b += 1;
    }
    t
}

/// The classes of each byte value.
static CLASS: [u8; 256] = table();

/// The classes of byte `b`.
#[inline]
pub(super) fn class(b: u8) -> u8 {
    CLASS[usize::from(b)]
}

/// The byte at `p` is in one of the classes of `mask` (no skipping).
#[inline]
pub(super) fn is(t: &[u8], p: usize, mask: u8) -> bool {
    t.get(p).is_some_and(|&b| class(b) & mask != 0)
}

/// The position of the first byte at or after `p` that is not ASCII
/// alphanumeric (`t.len()` if none): the end of a word. Eight bytes at a
/// time, with 64-bit arithmetic wasm32 has natively.
pub(super) fn word_end(t: &[u8], mut p: usize) -> usize {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    // High bit of each byte set when the 7-bit value `y` is within lo..=hi
    // (no carries: every byte of `y` is below 0x80, every addend too).
    let within = |y: u64, lo: u8, hi: u8| {
        (y + ONES * u64::from(0x80 - lo)) & !(y + ONES * u64::from(0x7F - hi))
    };
    while let Some(chunk) = t.get(p..p + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(word);
        let y = x & LOW7;
        let alnum = (within(y, b'0', b'9') | within(y | (ONES * 0x20), b'a', b'z')) & !x & HIGH;
        if alnum != HIGH {
            return p + ((!alnum & HIGH).trailing_zeros() / 8) as usize;
        }
        p += 8;
    }
    let rest = t.get(p..).unwrap_or_default();
    p + rest
        .iter()
        .position(|&b| class(b) & ALNUM == 0)
        .unwrap_or(rest.len())
}

/// The length of the invisible character at `p`, 0 if there is none.
///
/// Invisible: U+200B–U+200D (zero-width space, non-joiner, joiner), U+2060
/// (word joiner), U+FEFF (zero-width no-break space) and U+00AD (soft
/// hyphen). They render as nothing, so text that shows a key shows it whole.
#[inline(never)]
pub(super) fn invisible_len(t: &[u8], p: usize) -> usize {
    match t.get(p) {
        Some(0xE2) => match (t.get(p + 1), t.get(p + 2)) {
            (Some(0x80), Some(0x8B..=0x8D)) | (Some(0x81), Some(0xA0)) => 3,
            _ => 0,
        },
        Some(0xEF) if t.get(p + 1) == Some(&0xBB) && t.get(p + 2) == Some(&0xBF) => 3,
        Some(0xC2) if t.get(p + 1) == Some(&0xAD) => 2,
        _ => 0,
    }
}

/// `p` moved past any invisible characters.
#[inline]
pub(super) fn skip_invisible(t: &[u8], p: usize) -> usize {
    if t.get(p).is_some_and(|&b| b >= 0x80) {
        skip_invisible_slow(t, p)
    } else {
        p
    }
}

#[inline(never)]
fn skip_invisible_slow(t: &[u8], mut p: usize) -> usize {
    while t.get(p).is_some_and(|&b| b >= 0x80) {
        match invisible_len(t, p) {
            0 => break,
            n => p += n,
        }
    }
    p
}

/// The value of the digit at `p` (no skipping): ASCII, one byte, or
/// full-width (U+FF10–U+FF19), three bytes starting 0xEF.
pub(super) fn digit_here(t: &[u8], p: usize) -> Option<u8> {
    match *t.get(p)? {
        b @ b'0'..=b'9' => Some(b - b'0'),
        0xEF if t.get(p + 1) == Some(&0xBC) => match *t.get(p + 2)? {
            c @ 0x90..=0x99 => Some(c - 0x90),
            _ => None,
        },
        _ => None,
    }
}

/// A reading position in a text, for the anchored matchers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cur<'a> {
    pub(super) t: &'a [u8],
    /// Where reading continues; after a successful match, its end.
    pub(super) p: usize,
    /// Where the match being read starts: the dispatch position, unless a
    /// matcher moves it back (an email's local part, an AWS secret that
    /// starts with `/`).
    pub(super) start: usize,
}

impl<'a> Cur<'a> {
    pub(super) fn new(t: &'a [u8], p: usize) -> Cur<'a> {
        Cur { t, p, start: p }
    }

    /// Back to `p` (and the start with it).
    pub(super) fn reset(&mut self, p: usize) {
        self.p = p;
        self.start = p;
    }

    /// The next visible byte, not consumed.
    pub(super) fn peek(&self) -> Option<u8> {
        self.t.get(skip_invisible(self.t, self.p)).copied()
    }

    /// The next visible byte, consumed.
    #[inline(never)]
    pub(super) fn bump(&mut self) -> Option<u8> {
        let p = skip_invisible(self.t, self.p);
        let b = *self.t.get(p)?;
        self.p = p + 1;
        Some(b)
    }

    /// The visible bytes spell `s` (ASCII case ignored if `fold`):
    /// consumed. Otherwise nothing moves.
    #[inline(never)]
    pub(super) fn spell(&mut self, s: &[u8], fold: bool) -> bool {
        let save = self.p;
        for &c in s {
            let same = self
                .bump()
                .is_some_and(|b| b == c || (fold && b.eq_ignore_ascii_case(&c)));
            if !same {
                self.p = save;
                return false;
            }
        }
        true
    }

    /// The visible bytes spell `s` exactly: consumed.
    pub(super) fn lit(&mut self, s: &[u8]) -> bool {
        self.spell(s, false)
    }

    /// As [`lit`](Self::lit), ignoring ASCII case; `s` is lowercase.
    pub(super) fn ilit(&mut self, s: &[u8]) -> bool {
        self.spell(s, true)
    }

    /// Consumes the run of visible bytes in `mask`, at most `cap` of them,
    /// and answers how many. The cursor ends right after the last one.
    /// When the count is below `cap`, the next visible byte is not in
    /// `mask`.
    #[inline(never)]
    pub(super) fn run(&mut self, mask: u8, cap: usize) -> usize {
        let mut n = 0;
        let mut p = self.p;
        while n < cap {
            let Some(&b) = self.t.get(p) else { break };
            if class(b) & mask != 0 {
                n += 1;
                p += 1;
                self.p = p;
            } else {
                match invisible_len(self.t, p) {
                    0 => break,
                    len => p += len,
                }
            }
        }
        n
    }

    /// Consumes `k` visible bytes (fewer at the end of the text).
    #[inline(never)]
    pub(super) fn skip(&mut self, k: usize) {
        for _ in 0..k {
            if self.bump().is_none() {
                break;
            }
        }
    }

    /// The next visible digit, ASCII or full-width, consumed.
    #[inline(never)]
    pub(super) fn digit(&mut self) -> Option<u8> {
        let p = skip_invisible(self.t, self.p);
        let v = digit_here(self.t, p)?;
        self.p = p + if self.t.get(p) == Some(&0xEF) { 3 } else { 1 };
        Some(v)
    }

    /// The next separator, consumed.
    #[inline(never)]
    pub(super) fn sep(&mut self) -> Option<Sep> {
        let p = skip_invisible(self.t, self.p);
        let (len, kind) = match self.t.get(p..).unwrap_or_default() {
            [b' ', ..] => (1, Sep::Space),
            [b'-', ..] => (1, Sep::Dash),
            [b'.', ..] => (1, Sep::Dot),
            // U+00A0 no-break space, U+3000 ideographic space.
            [0xC2, 0xA0, ..] => (2, Sep::Space),
            [0xE3, 0x80, 0x80, ..] => (3, Sep::Space),
            // U+2010–U+2013 hyphens and dashes, U+FF0D full-width hyphen-minus.
            [0xE2, 0x80, 0x90..=0x93, ..] | [0xEF, 0xBC, 0x8D, ..] => (3, Sep::Dash),
            // U+FF0E full-width full stop.
            [0xEF, 0xBC, 0x8E, ..] => (3, Sep::Dot),
            _ => return None,
        };
        self.p = p + len;
        Some(kind)
    }

    /// The visible character here continues a word or a number: an ASCII
    /// letter or digit, or a full-width digit.
    pub(super) fn glued(&self) -> bool {
        let p = skip_invisible(self.t, self.p);
        is(self.t, p, ALNUM) || digit_here(self.t, p).is_some()
    }
}

/// What separates the groups of a card, SSN or phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sep {
    /// Groups written together (only after a parenthesised group).
    None,
    /// ASCII space, U+00A0 no-break space, U+3000 ideographic space.
    Space,
    /// `-`, U+2010–U+2013 (hyphens, figure and en dash), U+FF0D.
    Dash,
    /// `.`, U+FF0E.
    Dot,
}

/// What the visible character before `p` is, for numbers' left edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Before {
    /// A digit (ASCII or full-width) or an ASCII letter.
    Alnum,
    /// `.` or `,` right after a digit: the number would be a fraction.
    Decimal,
    /// Anything else, or the start of the text.
    Other,
}

/// Classifies the visible character before `p`, stepping back over
/// invisible characters.
#[inline(never)]
pub(super) fn before(t: &[u8], p: usize) -> Before {
    let mut p = p;
    loop {
        if p >= 3 && invisible_len(t, p - 3) == 3 {
            p -= 3;
        } else if p >= 2 && invisible_len(t, p - 2) == 2 {
            p -= 2;
        } else {
            break;
        }
    }
    let Some(q) = p.checked_sub(1) else {
        return Before::Other;
    };
    if is(t, q, ALNUM) || digit_ending_at(t, q + 1) {
        return Before::Alnum;
    }
    if matches!(t.get(q), Some(b'.' | b',')) && digit_ending_at(t, q) {
        return Before::Decimal;
    }
    Before::Other
}

/// A digit (ASCII or full-width) ends right before `p`.
fn digit_ending_at(t: &[u8], p: usize) -> bool {
    let ascii = p >= 1 && t.get(p - 1).is_some_and(u8::is_ascii_digit);
    ascii || (p >= 3 && t.get(p - 3) == Some(&0xEF) && digit_here(t, p - 3).is_some())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn classes_match_their_definitions() {
        for b in 0..=255u8 {
            let c = class(b);
            let an = b.is_ascii_alphanumeric();
            assert_eq!(c & ALNUM != 0, an, "{b}");
            assert_eq!(c & B64URL != 0, an || b == b'_' || b == b'-', "{b}");
            assert_eq!(c & B64 != 0, an || b == b'+' || b == b'/', "{b}");
            assert_eq!(
                c & BASE32 != 0,
                b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b),
                "{b}"
            );
            assert_eq!(c & LOCAL != 0, an || b"._%+-".contains(&b), "{b}");
            assert_eq!(c & LABEL != 0, an || b == b'-', "{b}");
            assert_eq!(c & WORD != 0, an || b == b'_', "{b}");
            assert_eq!(c & TRIGGER != 0, b"@+(-\xEF".contains(&b), "{b}");
        }
    }

    #[test]
    fn word_end_agrees_with_the_class_table() {
        let t: Vec<u8> = (0..=255u8)
            .chain(b"abcdefghijKLMNOPQRST0123456789".iter().copied())
            .collect();
        let slow = |p: usize| {
            p + t[p..]
                .iter()
                .position(|&b| class(b) & ALNUM == 0)
                .unwrap_or(t.len() - p)
        };
        for p in 0..=t.len() {
            assert_eq!(word_end(&t, p), slow(p), "{p}");
        }
        for b in 0..=255u8 {
            for k in 0..12 {
                let mut w = b"abcdefghijkl".to_vec();
                w[k] = b;
                let want = if class(b) & ALNUM != 0 { 12 } else { k };
                assert_eq!(word_end(&w, 0), want, "{b} at {k}");
            }
        }
    }

    #[test]
    fn invisible_characters_are_skipped_and_never_end_a_run() {
        let t = "ab\u{200D}cd\u{FEFF}\u{00AD}!".as_bytes();
        let mut c = Cur::new(t, 0);
        assert_eq!(c.run(ALNUM, usize::MAX), 4);
        assert_eq!(c.p, 7, "not after the trailing invisible characters");
        assert_eq!(c.bump(), Some(b'!'));
        assert_eq!(c.p, 13);
        let mut c = Cur::new(t, 0);
        assert!(c.lit(b"abcd") && c.p == 7);
        let mut c = Cur::new(t, 0);
        assert!(
            !c.lit(b"abce") && c.p == 0,
            "a failed literal moves nothing"
        );
        assert!(c.ilit(b"abc") && c.p == 6);
        let mut c = Cur::new(t, 0);
        c.skip(3);
        assert_eq!(c.p, 6);
        // A truncated invisible character is not one.
        assert_eq!(invisible_len(b"\xE2\x80", 0), 0);
        assert_eq!(skip_invisible(b"\xE2\x80", 0), 0);
    }

    #[test]
    fn full_width_digits_and_separators_are_read() {
        let t = "\u{FF14}\u{FF11}\u{2013}7\u{00A0}x".as_bytes();
        let mut c = Cur::new(t, 0);
        assert_eq!((c.digit(), c.p), (Some(4), 3));
        assert_eq!((c.digit(), c.p), (Some(1), 6));
        assert_eq!(c.digit(), None);
        assert_eq!((c.sep(), c.p), (Some(Sep::Dash), 9));
        assert_eq!((c.digit(), c.p), (Some(7), 10));
        assert!(!c.glued());
        assert_eq!((c.sep(), c.p), (Some(Sep::Space), 12));
        assert!(c.glued());
        assert_eq!(before(t, 3), Before::Alnum);
        assert_eq!(before(t, 0), Before::Other);
        assert_eq!(before(b"3.5", 2), Before::Decimal);
        assert_eq!(before(b"No.5", 3), Before::Other);
        assert_eq!(before(b"1111, 4", 6), Before::Other);
    }

    #[test]
    fn readers_never_panic_at_any_position() {
        let t: Vec<u8> = (0..=255u8).chain([0xE2, 0x80, 0xEF, 0xBC, 0xC2]).collect();
        for p in 0..t.len() + 4 {
            let _ = (
                invisible_len(&t, p),
                skip_invisible(&t, p),
                before(&t, p),
                is(&t, p, ALNUM),
            );
            let _ = (word_end(&t, p), digit_here(&t, p));
            let c = Cur::new(&t, p);
            let _ = (
                c.clone().bump(),
                c.clone().digit(),
                c.clone().sep(),
                c.glued(),
                c.peek(),
            );
            let _ = (
                c.clone().run(B64, 10),
                c.clone().skip(5),
                c.clone().lit(b"ab"),
                c.clone().ilit(b"ab"),
            );
        }
    }
}
