//! Personal data: payment cards, US social security numbers and phone
//! numbers (all read as one chain of digit groups), IBANs, email addresses.
//!
//! Sources: Presidio's recognizers (card IIN ranges then Luhn; SSN shapes
//! and invalidation; IBAN then mod 97), the SSA's numbering rules, the SWIFT
//! IBAN registry, E.164 and the NANP.
//!
//! Invariants:
//! - A number is never part of a longer one: it starts where no digit,
//!   letter or decimal point with a digit before it precedes it, and ends
//!   where no digit or letter follows (invisible characters are
//!   transparent on both sides).
//! - Reading a chain costs at most [`MAX_GROUPS`] groups; every matcher is
//!   linear in what it reads, and nothing allocates.

use super::chars::{before, class, digit_here, is, Before, Cur, Sep, ALNUM, LABEL, LOCAL};
use super::detector::{Detector, Mask};
use super::validate::{iban_length, luhn, nanp, ssn, Mod97};

/// Groups read per chain: enough for every card, SSN and phone layout,
/// plus one to see whether the chain goes on. A power of two: group
/// indexes are masked with `MAX_GROUPS - 1`, so they are never out of
/// bounds (and every caller's index is below it anyway).
const MAX_GROUPS: usize = 8;
/// Digits kept per chain (cards have at most 19, E.164 numbers 15); a
/// power of two, for the same reason.
const MAX_DIGITS: usize = 32;

/// Digit groups joined by single separators, as read from one start.
/// Group `k` is described by `ends[k]`, `lens[k]`, `firsts[k]`, `seps[k]`
/// and bit `k` of `parens`.
struct Chain {
    n: usize,
    /// Position after the group (after its `)` if parenthesised).
    ends: [usize; MAX_GROUPS],
    /// Digits in the group (saturating).
    lens: [u8; MAX_GROUPS],
    /// Index of the group's first digit in `digits`.
    firsts: [u8; MAX_GROUPS],
    /// What separates the group from the one before.
    seps: [Sep; MAX_GROUPS],
    /// Bit `k`: group `k` is written `(…)`.
    parens: u8,
    digits: [u8; MAX_DIGITS],
    /// A letter or digit follows the last group at once.
    glued: bool,
}

impl Chain {
    /// No group read yet.
    const EMPTY: Chain = Chain {
        n: 0,
        ends: [0; MAX_GROUPS],
        lens: [0; MAX_GROUPS],
        firsts: [0; MAX_GROUPS],
        seps: [Sep::None; MAX_GROUPS],
        parens: 0,
        digits: [0; MAX_DIGITS],
        glued: false,
    };

    fn len(&self, k: usize) -> usize {
        usize::from(self.lens[k & (MAX_GROUPS - 1)])
    }
    fn sep(&self, k: usize) -> Sep {
        self.seps[k & (MAX_GROUPS - 1)]
    }
    fn end(&self, k: usize) -> usize {
        self.ends[k & (MAX_GROUPS - 1)]
    }
    fn paren(&self, k: usize) -> bool {
        self.parens & (1 << (k & (MAX_GROUPS - 1))) != 0
    }
    /// The first digit of group `k`.
    fn first_digit(&self, k: usize) -> u8 {
        self.digits[usize::from(self.firsts[k & (MAX_GROUPS - 1)]) & (MAX_DIGITS - 1)]
    }
    /// Group `k` ends a candidate: no letter or digit right after it.
    fn ends_clean(&self, k: usize) -> bool {
        k + 1 < self.n || !self.glued
    }
    /// The group after `k` does not continue the layout joined as `s`.
    fn stops_after(&self, k: usize, s: Sep) -> bool {
        if k + 1 < self.n {
            self.sep(k + 1) != s
        } else {
            !self.glued
        }
    }
}

/// Reads the chain starting at `c.p`; a group may be `(…)`, and only after
/// one may the next group follow with no separator.
#[inline(never)]
fn read(mut c: Cur, ch: &mut Chain) {
    let mut kept = 0usize;
    while ch.n < MAX_GROUPS {
        let at = c.p;
        let mut sep = Sep::None;
        if ch.n > 0 {
            match c.sep() {
                Some(k) => sep = k,
                None if ch.paren(ch.n - 1) => {}
                None => break,
            }
        }
        let paren = c.peek() == Some(b'(');
        if paren {
            c.bump();
        }
        let first = kept;
        let mut len = 0usize;
        loop {
            let v = match c.t.get(c.p) {
                Some(&b) if b.is_ascii_digit() => {
                    c.p += 1;
                    b - b'0'
                }
                Some(&b) if b >= 0x80 => match c.digit() {
                    Some(v) => v,
                    None => break,
                },
                _ => break,
            };
            if kept < MAX_DIGITS {
                ch.digits[kept & (MAX_DIGITS - 1)] = v;
                kept += 1;
            }
            len += 1;
        }
        if len == 0 || (paren && c.bump() != Some(b')')) {
            c.p = at;
            break;
        }
        let k = ch.n & (MAX_GROUPS - 1);
        ch.ends[k] = c.p;
        ch.lens[k] = len.min(255) as u8;
        ch.firsts[k] = first as u8;
        ch.seps[k] = sep;
        ch.parens |= u8::from(paren) << k;
        ch.n += 1;
        if kept >= MAX_DIGITS {
            break;
        }
    }
    ch.glued = c.glued();
}

/// An ASCII digit run at `i` that no layout can start, decided from at
/// most two ASCII groups without reading a chain (the common case in code
/// and logs): glued to a letter (hex, ids); alone with a length no card
/// has; or followed by a second group that no layout's first two groups
/// make (dates, times, versions). Layouts open with 13–19 digits (a card
/// run), 4 then 3–6 joined by a space or dash (a card), 3 then 2 or 3 (an
/// SSN, a NANP number) or `1` then 3 (`1-800-…`). Anything non-ASCII after
/// a group may continue it: not decided here. The scanner asks this before
/// [`number`] (which does not), so such a run costs no call.
pub(super) fn hopeless(t: &[u8], i: usize) -> bool {
    let rest = t.get(i..).unwrap_or_default();
    let digits = |k: usize| {
        let r = rest.get(k..).unwrap_or_default();
        r.iter().take_while(|b| b.is_ascii_digit()).count()
    };
    let n = digits(0);
    let card_run = (13..=19).contains(&n);
    match rest.get(n) {
        Some(c) if c.is_ascii_alphabetic() => true,
        // After a separator, another group may follow.
        Some(&s @ (b' ' | b'-' | b'.')) => {
            let m = digits(n + 1);
            match rest.get(n + 1 + m) {
                Some(0x80..) => false,
                Some(b'(') if m == 0 => false,
                _ if m == 0 => !card_run,
                _ => {
                    !(card_run
                        || (n == 4 && s != b'.' && (3..=6).contains(&m))
                        || (n == 3 && (m == 2 || m == 3))
                        || (n == 1 && m == 3))
                }
            }
        }
        // An invisible or full-width character, or a Unicode separator.
        Some(0x80..) => false,
        _ => !card_run,
    }
}

/// The number (card, SSN or phone) at `c.p`: a digit (ASCII or
/// full-width), `+` (E.164) or `(` (a parenthesised area code). Only
/// detectors in `m` are tried. The cursor ends at the match's end.
#[inline(never)]
pub(super) fn number(m: Mask, c: &mut Cur) -> Option<Detector> {
    let (t, i) = (c.t, c.p);
    let b = *t.get(i)?;
    if before(t, i) != Before::Other {
        return None;
    }
    let mut ch = Chain::EMPTY;
    let (d, end) = match b {
        b'+' | b'(' if !m.has(Detector::Phone) => return None,
        b'+' => {
            read(Cur::new(t, i + 1), &mut ch);
            (Detector::Phone, e164(&ch))
        }
        b'(' => {
            read(*c, &mut ch);
            (Detector::Phone, nanp_number(&ch))
        }
        _ if digit_here(t, i).is_some() => {
            read(*c, &mut ch);
            let shapes: [(Detector, Shape); 3] = [
                (Detector::PaymentCard, card),
                (Detector::UsSsn, ssn_number),
                (Detector::Phone, nanp_number),
            ];
            shapes
                .into_iter()
                .filter(|&(d, _)| m.has(d))
                .map(|(d, f)| (d, f(&ch)))
                .find(|&(_, e)| e != 0)?
        }
        _ => return None,
    };
    c.p = end;
    (end != 0).then_some(d)
}

/// A reading of a chain as one detector's layout: where the match ends, 0
/// for no match (a match never ends at 0).
type Shape = fn(&Chain) -> usize;

/// A payment card: 13–19 digits starting 2–6 (Mastercard 2-series, Amex,
/// Diners, JCB, Visa, Mastercard, Discover, UnionPay, Maestro), Luhn-valid.
/// Written as one run, or as a first group of 4 then groups of 3–6 (the
/// last may be shorter: `4222 2222 2222 2`) joined by one kind of
/// separator, space or dash. When the chain goes on (an expiry date after
/// the number), the longest Luhn-valid prefix ending at a group wins.
fn card(ch: &Chain) -> usize {
    if ch.paren(0) || !(2..=6).contains(&ch.first_digit(0)) {
        return 0;
    }
    let joint = ch.sep(1);
    let mut total = 0usize;
    let mut best = 0;
    for k in 0..ch.n {
        let len = ch.len(k);
        if k > 0
            && (ch.len(0) != 4
                || ch.paren(k)
                || ch.sep(k) != joint
                || !matches!(joint, Sep::Space | Sep::Dash)
                || len > 6)
        {
            break;
        }
        total += len;
        if total > 19 {
            break;
        }
        if total >= 13 && ch.ends_clean(k) && ch.digits.get(..total).is_some_and(luhn) {
            best = ch.end(k);
        }
        if k > 0 && len < 3 {
            break;
        }
    }
    best
}

/// A US social security number, `AAA-GG-SSSS`, with dashes, spaces or dots
/// (one kind), valid under [`ssn`]. Nine bare digits never match: they are
/// order numbers, zip+4 codes, routing numbers and ids far more often.
fn ssn_number(ch: &Chain) -> usize {
    let shape = ch.n >= 3 && (ch.len(0), ch.len(1), ch.len(2)) == (3, 2, 4) && ch.parens & 7 == 0;
    let s = ch.sep(1);
    let joined = s == ch.sep(2) && s != Sep::None && ch.stops_after(2, s);
    if shape && joined && ch.digits.get(..9).is_some_and(ssn) {
        ch.end(2)
    } else {
        0
    }
}

/// A North American number, optionally after `1` (`1-800-…`, `1 (800) …`):
/// `(AAA) BBB-CCCC` (no separator or a space after the parenthesis; dash,
/// dot or space before the last group), or `AAA-BBB-CCCC` / `AAA.BBB.CCCC`
/// (one kind). Area and exchange codes start 2–9. Ten bare digits and
/// `AAA BBB CCCC` with spaces only do not match: tables of numbers look
/// the same.
fn nanp_number(ch: &Chain) -> usize {
    let off = usize::from(ch.n >= 4 && ch.len(0) == 1 && ch.first_digit(0) == 1 && !ch.paren(0));
    let (a, b, s) = (off, off + 1, off + 2);
    if ch.n <= s || (ch.len(a), ch.len(b), ch.len(s)) != (3, 3, 4) || ch.paren(b) || ch.paren(s) {
        return 0;
    }
    let seps = if ch.paren(a) {
        matches!(ch.sep(b), Sep::None | Sep::Space) && ch.sep(s) != Sep::None
    } else {
        ch.sep(b) == ch.sep(s) && matches!(ch.sep(b), Sep::Dash | Sep::Dot)
    };
    let codes = nanp(ch.first_digit(a), ch.first_digit(b));
    if seps && codes && ch.stops_after(s, ch.sep(s)) {
        ch.end(s)
    } else {
        0
    }
}

/// An E.164 number after `+`: a country code not starting with 0, then
/// groups joined by single separators (a `(0)` or `(AAA)` group allowed
/// after the first), 8 to 15 digits in all. When the chain goes on past 15
/// digits, the longest prefix ending at a group wins.
fn e164(ch: &Chain) -> usize {
    if ch.n == 0 || ch.paren(0) || ch.first_digit(0) == 0 {
        return 0;
    }
    let mut total = 0usize;
    let mut best = 0;
    for k in 0..ch.n {
        total += ch.len(k);
        if total > 15 {
            break;
        }
        if total >= 8 && ch.ends_clean(k) {
            best = ch.end(k);
        }
    }
    best
}

/// An IBAN at the word start `c.p`: a registered country code (either
/// case), two check digits, then exactly the registered number of
/// alphanumerics, written together or in the print format's groups of four
/// separated by single spaces; mod-97 valid; no letter or digit right
/// after. The cursor ends at its end.
#[inline(never)]
pub(super) fn iban(c: &mut Cur) -> bool {
    let (t, i) = (c.t, c.p);
    let at = |k: usize| t.get(i + k).copied().unwrap_or(0);
    let head = [
        at(0).to_ascii_uppercase(),
        at(1).to_ascii_uppercase(),
        at(2),
        at(3),
    ];
    let shape = head[0].is_ascii_uppercase()
        && head[1].is_ascii_uppercase()
        && head[2].is_ascii_digit()
        && head[3].is_ascii_digit();
    if !shape {
        return false;
    }
    let Some(len) = iban_length([head[0], head[1]]) else {
        return false;
    };
    let mut m = Mod97::default();
    let mut p = i + 4;
    for count in 4..len {
        if count % 4 == 0 && t.get(p) == Some(&b' ') && is(t, p + 1, ALNUM) {
            p += 1;
        }
        if !m.push(t.get(p).copied().unwrap_or(0)) {
            return false;
        }
        p += 1;
    }
    c.p = p;
    !c.glued() && head.iter().all(|&b| m.push(b)) && m.valid()
}

/// The email address around the `@` at `c.p`: a local part of
/// `[A-Za-z0-9._%+-]` (at most 256 back, not starting or ending with `.`),
/// then a domain of two or more DNS labels (1–63 `[A-Za-z0-9-]`, no `-` at
/// either end) whose last label is alphabetic, two letters or more. Quoted
/// local parts, IP literals and internationalised addresses do not match;
/// `user@localhost` does not either (no top-level domain). Moves
/// `c.start` back to the local part.
#[inline(never)]
pub(super) fn email(c: &mut Cur) -> bool {
    let (t, at) = (c.t, c.p);
    let mut s = at;
    while s > 0 && at - s < 256 && t.get(s - 1).is_some_and(|&b| class(b) & LOCAL != 0) {
        s -= 1;
    }
    while s < at && t.get(s) == Some(&b'.') {
        s += 1;
    }
    if s == at || t.get(at - 1) == Some(&b'.') {
        return false;
    }
    let mut p = at + 1;
    let mut labels = 0;
    let mut best = 0;
    loop {
        let label = t.get(p..).unwrap_or_default();
        let n = label.iter().take_while(|&&b| class(b) & LABEL != 0).count();
        let label = label.get(..n).unwrap_or_default();
        if n == 0 || n > 63 || label.first() == Some(&b'-') || label.last() == Some(&b'-') {
            break;
        }
        labels += 1;
        if labels >= 2 && n >= 2 && label.iter().all(u8::is_ascii_alphabetic) {
            best = p + n;
        }
        p += n;
        if p - at > 255 || t.get(p) != Some(&b'.') {
            break;
        }
        p += 1;
    }
    c.start = s;
    c.p = best;
    best != 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn all() -> Mask {
        Mask(u32::MAX)
    }

    fn num(s: &str) -> Option<(Detector, String)> {
        let mut c = Cur::new(s.as_bytes(), 0);
        number(all(), &mut c).map(|d| (d, s[..c.p].to_string()))
    }

    fn iban_end(t: &[u8]) -> Option<usize> {
        let mut c = Cur::new(t, 0);
        iban(&mut c).then_some(c.p)
    }

    #[test]
    fn card_layouts_are_read_and_an_expiry_after_is_left_out() {
        for s in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "3782 822463 10005",
            "4222 2222 2222 2",
        ] {
            assert_eq!(num(s), Some((Detector::PaymentCard, s.to_string())), "{s}");
        }
        let s = "4111 1111 1111 1111 12/25";
        assert_eq!(
            num(s),
            Some((Detector::PaymentCard, "4111 1111 1111 1111".into()))
        );
        assert_eq!(num("4111 1111-1111 1111"), None, "one kind of separator");
        assert_eq!(num("4111  1111 1111 1111"), None, "single separators");
        assert_eq!(num("41111111111111111111"), None, "20 digits");
        assert_eq!(num("4111111111111111x"), None);
    }

    #[test]
    fn ssn_and_nanp_shapes() {
        assert_eq!(
            num("536-22-5555"),
            Some((Detector::UsSsn, "536-22-5555".into()))
        );
        assert_eq!(
            num("536 22 5555"),
            Some((Detector::UsSsn, "536 22 5555".into()))
        );
        assert_eq!(num("536-22 5555"), None);
        assert_eq!(num("536-22-5555-1"), None);
        assert_eq!(num("536225555"), None);
        assert_eq!(
            num("415-555-0132"),
            Some((Detector::Phone, "415-555-0132".into()))
        );
        assert_eq!(
            num("1-800-555-0199"),
            Some((Detector::Phone, "1-800-555-0199".into()))
        );
        assert_eq!(
            num("(415) 555-0132"),
            Some((Detector::Phone, "(415) 555-0132".into()))
        );
        assert_eq!(num("415 555 0132"), None);
        assert_eq!(num("115-555-0132"), None);
        assert_eq!(
            num("+44 20 7946 0958"),
            Some((Detector::Phone, "+44 20 7946 0958".into()))
        );
        assert_eq!(
            num("+1 (415) 555-0132"),
            Some((Detector::Phone, "+1 (415) 555-0132".into()))
        );
        assert_eq!(num("+1234567"), None, "7 digits");
        assert_eq!(num("+0123456789"), None);
    }

    #[test]
    fn iban_print_and_electronic_formats() {
        assert_eq!(iban_end(b"GB82WEST12345698765432"), Some(22));
        assert_eq!(iban_end(b"GB82 WEST 1234 5698 7654 32"), Some(27));
        assert_eq!(iban_end(b"gb82west12345698765432"), Some(22));
        assert_eq!(iban_end(b"GB82WEST12345698765433"), None, "mod 97");
        assert_eq!(iban_end(b"GB82WEST1234569876543"), None, "short");
        assert_eq!(iban_end(b"GB82WEST123456987654321"), None, "long");
        assert_eq!(
            iban_end(b"GB82 WEST 12 345698765432"),
            None,
            "groups of four"
        );
        assert_eq!(iban_end(b"US82WEST12345698765432"), None);
    }

    #[test]
    fn email_bounds() {
        let e = |s: &str| {
            let mut c = Cur::new(s.as_bytes(), s.find('@').unwrap_or(0));
            email(&mut c).then(|| s[c.start..c.p].to_string())
        };
        assert_eq!(
            e("mail john.doe@example.com."),
            Some("john.doe@example.com".into())
        );
        assert_eq!(
            e("<a+b@mail.example.co.uk>"),
            Some("a+b@mail.example.co.uk".into())
        );
        assert_eq!(e("@Override"), None);
        assert_eq!(e("user@localhost"), None);
        assert_eq!(e("react@18.2.0"), None);
        assert_eq!(e("x.@example.com"), None);
        assert_eq!(e("a@-example.com"), None);
        assert_eq!(e("a@example.c0m"), None);
    }

    /// What `number` would find at 0 of a digit start without the
    /// `hopeless` shortcut: the chain read and every layout tried.
    fn any_layout(t: &[u8]) -> bool {
        let mut ch = Chain::EMPTY;
        read(Cur::new(t, 0), &mut ch);
        card(&ch) != 0 || ssn_number(&ch) != 0 || nanp_number(&ch) != 0
    }

    #[test]
    fn hopeless_runs_start_no_layout_whatever_their_digits() {
        // Three groups and what follows, every length and joint; digits 2-5
        // (valid SSN parts and NANP codes, card IINs) or a leading 1, and
        // each value of the last digit, so one variant is Luhn-valid.
        let mut x = 7u32;
        let mut digit = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            char::from(b'2' + (x >> 16) as u8 % 4)
        };
        let (mut tried, mut skipped) = (0, 0);
        for lead in ["", "1"] {
            for n0 in 1..=20usize {
                for s1 in ["", " ", "-", ".", ":", "/"] {
                    for n1 in 0..=7usize {
                        for s2 in ["", " ", "-", "."] {
                            for n2 in 0..=5usize {
                                for tail in [
                                    "",
                                    " ",
                                    "x",
                                    "\u{FF11}",
                                    "\u{200B}",
                                    "(",
                                    "-2345",
                                    ".2345",
                                    "\u{FF11}-2345",
                                    "(234) 234-2345",
                                ] {
                                    let mut t = lead.to_string();
                                    t.extend((lead.len()..n0).map(|_| digit()));
                                    t.push_str(s1);
                                    t.extend((0..n1).map(|_| digit()));
                                    t.push_str(s2);
                                    t.extend((0..n2).map(|_| digit()));
                                    t.push_str(tail);
                                    if !hopeless(t.as_bytes(), 0) {
                                        tried += 1;
                                        continue;
                                    }
                                    skipped += 1;
                                    let last = t.rfind(|c: char| c.is_ascii_digit()).unwrap();
                                    for d in b'0'..=b'9' {
                                        let mut v = t.clone().into_bytes();
                                        v[last] = d;
                                        assert!(!any_layout(&v), "{:?}", String::from_utf8(v));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(skipped > tried, "{skipped} decided, {tried} read");
    }
}
