//! The one-pass tokenizer: walks the text word by word, dispatches each word
//! start (and each `@ + ( -` and full-width digit) on its first byte to the
//! anchored matchers in [`super::secrets`] and [`super::personal`], and
//! keeps the matches in order without overlaps.
//!
//! Invariants:
//! - Each byte is looked at a bounded number of times: a word that starts
//!   no match is skipped whole; after a match the scan resumes at its end;
//!   matchers that measure runs crossing word starts are bounded or
//!   memoised ([`super::secrets::Memo`]).
//! - [`push`] keeps `out[base..]` sorted by start and free of overlaps.

use super::chars::{class, word_end, Cur, ALNUM, TRIGGER};
use super::detector::{Detector, Mask};
use super::personal;
use super::secrets::{self, Found, Memo};
use super::{DetectorId, Match};

/// How far after an AWS access key id its secret is looked for (bytes).
const AFTER_AWS_KEY_ID: usize = 128;
/// How far after an `aws_secret_access_key`-style label (bytes): room for
/// `": "`, ` = ` and the like.
const AFTER_AWS_LABEL: usize = 24;

/// Appends `m` to `out[base..]`, resolving overlaps with what is there: of
/// two overlapping matches the longer stays; on equal length, the one
/// already there. `m` must not start before the last match that ends
/// before it (true when matches arrive sorted by start, and for an email's
/// local part, which only reaches back over matches it overlaps).
pub(super) fn push(out: &mut Vec<Match>, base: usize, m: Match) {
    while out.len() > base {
        let Some(last) = out.last() else { break };
        if last.end <= m.start {
            break;
        }
        if m.end - m.start > last.end - last.start {
            out.pop();
        } else {
            return;
        }
    }
    out.push(m);
}

/// The scan's state between word starts.
struct Scanner {
    mask: Mask,
    /// Any credential detector is on.
    secrets: bool,
    /// Word starts before this may hold an AWS secret access key.
    aws_until: usize,
    memo: Memo,
}

impl Scanner {
    /// The match starting at the word start `c.p`, if any; it spans
    /// `c.start..c.p`.
    #[inline(never)]
    fn word(&mut self, c: &mut Cur) -> Option<Detector> {
        let m = self.mask;
        let i = c.p;
        if i < self.aws_until && m.has(Detector::AwsSecretAccessKey) {
            if secrets::aws_secret(c) {
                return Some(Detector::AwsSecretAccessKey);
            }
            c.reset(i);
        }
        if c.t.get(i)?.is_ascii_digit() {
            return personal::number(m, c);
        }
        if self.secrets {
            match secrets::at_word(c, &mut self.memo) {
                Some(Found::Key(d)) => {
                    if d == Detector::AwsAccessKeyId {
                        self.aws_until = c.p.saturating_add(AFTER_AWS_KEY_ID);
                    }
                    return m.has(d).then_some(d);
                }
                Some(Found::AwsLabel) => {
                    self.aws_until = c.p.saturating_add(AFTER_AWS_LABEL);
                    return None;
                }
                None => c.reset(i),
            }
        }
        // An IBAN has its check digits third and fourth.
        let iban = m.has(Detector::Iban) && c.t.get(i + 2).is_some_and(u8::is_ascii_digit);
        (iban && personal::iban(c)).then_some(Detector::Iban)
    }

    /// The match around the trigger byte at `c.p` (outside words), if any.
    fn trigger(&mut self, c: &mut Cur) -> Option<Detector> {
        let m = self.mask;
        match *c.t.get(c.p)? {
            b'@' => (m.has(Detector::Email) && personal::email(c)).then_some(Detector::Email),
            b'-' => {
                (m.has(Detector::PrivateKey) && secrets::pem(c)).then_some(Detector::PrivateKey)
            }
            b'+' | b'(' | 0xEF => personal::number(m, c),
            _ => None,
        }
    }
}

/// The word starts [`secrets::at_word`] dispatches on, as pairs of a first
/// byte and a second letter: credential prefixes (`sk`, `rk`, `AI`, `AB`,
/// `AK`, `AS`, `AC`, `gh`, `gi`, `xo`, `xa`, `ht`, `ho`, `ey`, `be`) and
/// AWS labels (`aw`, `se`, either case).
const PAIRS: &[u8] = b"skrkAIABAKASACghgixoxahthoeybeawAWseSE";

/// [`PAIRS`] as a filter: entry `b & 31` has bit `(c | 0x20) - b'a'` for
/// each pair `b c`. Bytes that share an entry with a first byte, and
/// bytes that share a bit with a letter, pass too: a false start costs a
/// call, nothing more.
static SECONDS: [u32; 32] = {
    let mut t = [0u32; 32];
    let mut k = 0;
    while k + 1 < PAIRS.len() {
        t[(PAIRS[k] & 31) as usize] |= 1 << ((PAIRS[k + 1] | 0x20) - b'a');
        k += 2;
    }
    t
};

/// Appends the built-in matches of `mask` in `t` to `out[base..]`.
pub(super) fn builtins(mask: Mask, t: &[u8], out: &mut Vec<Match>, base: usize) {
    let mut s = Scanner {
        mask,
        secrets: Detector::ALL.iter().any(|d| d.is_secret() && mask.has(*d)),
        aws_until: 0,
        memo: Memo::default(),
    };
    let mut i = 0;
    while let Some(&b) = t.get(i) {
        let k = class(b);
        if k & (ALNUM | TRIGGER) == 0 {
            i += 1;
            continue;
        }
        // Most words start nothing: a digit run no number layout can
        // start, or not the first two letters of a credential or an AWS
        // label and no IBAN check digits; and no AWS secret expected.
        // Those are skipped without a call.
        let b1 = t.get(i + 1).copied().unwrap_or(0);
        let starts = if b.is_ascii_digit() {
            !personal::hopeless(t, i)
        } else {
            b1 >= 0x80
                || SECONDS[usize::from(b & 31)] >> ((b1 | 0x20).wrapping_sub(b'a') & 31) & 1 != 0
                || t.get(i + 2).is_some_and(u8::is_ascii_digit)
        } || i < s.aws_until;
        if k & ALNUM != 0 && !starts {
            i = word_end(t, i + 1);
            continue;
        }
        let mut c = Cur::new(t, i);
        let hit = if k & ALNUM != 0 {
            s.word(&mut c)
        } else {
            s.trigger(&mut c)
        };
        if let Some(d) = hit {
            if c.p > i && c.start < c.p {
                push(
                    out,
                    base,
                    Match {
                        detector: DetectorId::Builtin(d),
                        start: c.start,
                        end: c.p,
                    },
                );
                i = c.p;
                continue;
            }
        }
        i = if k & ALNUM != 0 {
            // The rest of a word that starts nothing starts nothing.
            word_end(t, i + 1)
        } else {
            i + 1
        };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn m(start: usize, end: usize) -> Match {
        Match {
            detector: DetectorId::Literal(0),
            start,
            end,
        }
    }

    #[test]
    fn push_keeps_the_longer_of_overlapping_matches() {
        let mut out = vec![m(0, 2)];
        push(&mut out, 0, m(3, 5));
        push(&mut out, 0, m(4, 6));
        assert_eq!(out, [m(0, 2), m(3, 5)], "equal length: the first stays");
        push(&mut out, 0, m(1, 9));
        assert_eq!(out, [m(1, 9)]);
        push(&mut out, 1, m(2, 3));
        assert_eq!(out, [m(1, 9), m(2, 3)], "nothing before base is touched");
    }
}
