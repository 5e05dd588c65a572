//! The operator's patterns: the shape of an identifier (`EMP-\d{6}`,
//! `acme_[a-z0-9]{32}`), compiled once at load, matched without
//! backtracking.
//!
//! A pattern is a sequence of atoms, each one ASCII character or class
//! with a count; there are no groups, no alternation, no anchors and no
//! `.` (see [`compile`] for the syntax). That is what identifiers look
//! like, and it is what can be matched in one greedy pass.
//!
//! Invariants:
//! - **Deterministic.** Each atom takes as many characters as it may
//!   (greedy, never giving any back). [`compile`] refuses a pattern where
//!   that could miss a match a regular expression would find: a variable
//!   count whose characters the atoms after it could also take (`\d+\d`,
//!   `[a-z]+[a-z0-9]*`). So at one start there is at most one match, and
//!   it is the longest.
//! - **Boundaries.** Like the built-ins, a match does not start right after
//!   an ASCII letter or digit when its first character is one, and does
//!   not end right before one when its last character is one (`EMP-\d{6}`
//!   is not found in `EMP-1234567` or `XEMP-123456`). Invisible characters
//!   are transparent inside a match, as for literals.
//! - **Linear.** An atom that may take more than 8 characters keeps what
//!   it knows of the run it read last ([`Run`]): a later start that enters
//!   the same run slides a window along it instead of reading it again,
//!   and if the rest of the pattern already failed after the run's end,
//!   fails at once. Entries only move forward, so such an atom reads each
//!   byte of a text about once, whatever the starts; the others read at
//!   most 8 per start. Counts are at most 256, and the bounded maxima of
//!   one pattern sum to at most 1024.
//! - **ASCII.** Classes hold ASCII bytes only; text in other scripts
//!   belongs in a literal.
//! - Nothing here panics or allocates while matching.

use super::chars::{class, invisible_len, Cur, ALNUM};

/// An unbounded count.
const OPEN: u16 = u16::MAX;
/// The largest bounded count.
const MAX_COUNT: u16 = 256;
/// The largest sum of a pattern's bounded maxima.
const MAX_SPAN: u32 = 1024;
/// The most atoms in one pattern.
const MAX_ATOMS: usize = 32;
/// Atoms that may take more than this many characters keep a [`Run`].
const SHORT: u16 = 8;
/// The most such atoms across one policy's patterns (one [`Memo`] slot
/// each).
pub(super) const MAX_SLOTS: usize = 16;

/// A set of ASCII bytes, one bit each.
pub(super) type Set = [u64; 2];

/// Bit `b` of a set of bytes (a [`Set`], or all 256 in four words).
pub(super) fn has(set: &[u64], b: u8) -> bool {
    set.get(usize::from(b >> 6))
        .is_some_and(|w| w >> (b & 63) & 1 == 1)
}

/// Sets bit `b` (nothing if the set is too short to hold it).
pub(super) fn add(set: &mut [u64], b: u8) {
    if let Some(w) = set.get_mut(usize::from(b >> 6)) {
        *w |= 1 << (b & 63);
    }
}

fn overlap(a: &Set, b: &Set) -> bool {
    a[0] & b[0] != 0 || a[1] & b[1] != 0
}

/// One character or class and its count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Atom {
    set: Set,
    min: u16,
    /// [`OPEN`]: unbounded.
    max: u16,
    /// The [`Memo`] slot of an atom whose `max` is over [`SHORT`].
    slot: u8,
}

/// A compiled pattern (empty for a text literal).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Pattern {
    atoms: Vec<Atom>,
}

/// What an atom knows of the run of its characters it entered last, in
/// the text being scanned.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Run {
    /// The latest entry. Every visible byte in `from..end` is in the
    /// atom's set, and the next visible byte from `end` is not.
    from: usize,
    end: usize,
    /// Visible bytes in `from..end`.
    count: usize,
    /// Right after the `cut_n`-th visible byte from `from` (`cut == from`
    /// when `cut_n` is 0): where a bounded atom stops when the run is
    /// longer than its maximum.
    cut: usize,
    cut_n: usize,
    /// The atoms after this one failed from `end`.
    dead: bool,
}

/// Per scanned text, one [`Run`] per slot; starts all-empty.
pub(super) type Memo = [Run; MAX_SLOTS];

/// Why a pattern is refused: where in its source (`at`, `len` bytes),
/// and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub at: usize,
    pub len: usize,
    pub why: &'static str,
}

fn err<T>(at: usize, why: &'static str) -> Result<T, PatternError> {
    Err(PatternError { at, len: 1, why })
}

/// Compiles `src`; `fold` makes ASCII letters match either case; `slots`
/// is the number of [`Memo`] slots earlier patterns took, and grows.
///
/// Syntax:
/// - an ASCII character stands for itself, except `\ [ ] { } ( ) | * + ?
///   . ^ $`; `\` before one of those (or any ASCII punctuation) makes it
///   plain; `\t \n \r` are tab, newline, return;
/// - `\d` digit, `\w` letter, digit or `_`, `\s` ASCII white space, and
///   `\D \W \S` the other ASCII characters;
/// - `[…]` one of a set: characters, ranges `a-z`, the classes above;
///   `[^…]` any ASCII character but those; `-` is plain first or last;
/// - after a character or set, a count: `?` `*` `+` `{n}` `{n,}` `{n,m}`
///   (n ≤ m ≤ 256, m ≥ 1);
/// - the first atom must be required (no `?`, `*` or `{0,…}`).
pub(super) fn compile(src: &str, fold: bool, slots: &mut usize) -> Result<Pattern, PatternError> {
    let b = src.as_bytes();
    let mut atoms: Vec<(Atom, usize, usize)> = Vec::new();
    let mut k = 0;
    while let Some(&c) = b.get(k) {
        let from = k;
        let mut set = [0; 2];
        match c {
            b'\\' => {
                k += 1;
                escape(b, k, &mut set)?;
                k += 1;
            }
            // Folded inside, before a `^` negates it.
            b'[' => k = class_set(b, k + 1, fold, &mut set)?,
            b'*' | b'+' | b'?' | b'{' => {
                return err(k, "a count must follow a character or a class");
            }
            b'(' | b')' | b'|' | b'.' | b'^' | b'$' | b']' | b'}' => {
                return err(
                    k,
                    "groups, alternation, anchors and '.' are not supported: a pattern is \
                     characters and classes with counts (write '\\' before a plain one)",
                );
            }
            0x20..=0x7E => {
                add(&mut set, c);
                k += 1;
            }
            _ => {
                return err(
                    k,
                    "patterns are printable ASCII: put other text in a literal",
                )
            }
        }
        if fold && c != b'[' {
            fold_case(&mut set);
        }
        let (min, max);
        (min, max, k) = count(b, k)?;
        if matches!(b.get(k), Some(b'*' | b'+' | b'?' | b'{')) {
            return err(k, "one count per character or class");
        }
        let slot = if max > SHORT {
            *slots += 1;
            if *slots > MAX_SLOTS {
                return err(
                    k,
                    "at most 16 counts over 8 (+, *, {n,} included) per policy",
                );
            }
            (*slots - 1) as u8
        } else {
            0
        };
        let atom = Atom {
            set,
            min,
            max,
            slot,
        };
        atoms.push((atom, from, k));
    }
    check(&atoms)?;
    Ok(Pattern {
        atoms: atoms.into_iter().map(|(a, _, _)| a).collect(),
    })
}

/// The whole-pattern rules: not empty, bounded size, a required first
/// atom, and no choice a greedy match could get wrong.
fn check(atoms: &[(Atom, usize, usize)]) -> Result<(), PatternError> {
    let Some((first, _, _)) = atoms.first() else {
        return err(0, "empty pattern");
    };
    if atoms.len() > MAX_ATOMS {
        return err(0, "at most 32 characters and classes");
    }
    if first.min == 0 {
        return err(
            0,
            "the first character or class must be required (no ?, * or {0,…})",
        );
    }
    let span: u32 = atoms
        .iter()
        .filter(|(a, _, _)| a.max != OPEN)
        .map(|(a, _, _)| u32::from(a.max))
        .sum();
    if span > MAX_SPAN {
        return err(
            0,
            "the maximum counts (other than unbounded) sum to over 1024",
        );
    }
    for (i, (a, from, to)) in atoms.iter().enumerate() {
        if a.min == a.max {
            continue;
        }
        for (b, _, _) in atoms.iter().skip(i + 1) {
            if overlap(&a.set, &b.set) {
                return Err(PatternError {
                    at: *from,
                    len: to.saturating_sub(*from),
                    why: "can take the same characters as what follows it, so a match \
                          would need backtracking: make them disjoint, or merge them",
                });
            }
            if b.min > 0 {
                break;
            }
        }
    }
    Ok(())
}

/// The escape whose letter is at `b[k]`, added to `set`.
fn escape(b: &[u8], k: usize, set: &mut Set) -> Result<(), PatternError> {
    let Some(&e) = b.get(k) else {
        return err(k, "a pattern cannot end with '\\'");
    };
    let test: fn(u8) -> bool = match e.to_ascii_lowercase() {
        b'd' => |x| x.is_ascii_digit(),
        b'w' => |x| x.is_ascii_alphanumeric() || x == b'_',
        b's' => |x| matches!(x, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C),
        _ => {
            let plain = match e {
                b't' => b'\t',
                b'n' => b'\n',
                b'r' => b'\r',
                x if x.is_ascii_punctuation() || x == b' ' => x,
                _ => return err(k.saturating_sub(1), "unknown escape: \\d \\w \\s \\D \\W \\S \\t \\n \\r, or '\\' before punctuation"),
            };
            add(set, plain);
            return Ok(());
        }
    };
    let negate = e.is_ascii_uppercase();
    for x in 0..128u8 {
        if test(x) != negate {
            add(set, x);
        }
    }
    Ok(())
}

/// Adds the other case of every ASCII letter in `set`.
fn fold_case(set: &mut Set) {
    for x in b'a'..=b'z' {
        if has(set, x) || has(set, x.to_ascii_uppercase()) {
            add(set, x);
            add(set, x.to_ascii_uppercase());
        }
    }
}

/// Reads a `[…]` whose first item is at `k` (`fold`: letters in either
/// case, before any negation); answers the offset after `]`.
fn class_set(b: &[u8], mut k: usize, fold: bool, out: &mut Set) -> Result<usize, PatternError> {
    let open = k.saturating_sub(1);
    let negate = b.get(k) == Some(&b'^');
    if negate {
        k += 1;
    }
    let mut set = [0; 2];
    let first = k;
    loop {
        let (lo, next) = match b.get(k) {
            None => return err(open, "'[' without its ']'"),
            Some(b']') if k > first => break,
            Some(b'\\') => {
                let mut one = [0; 2];
                escape(b, k + 1, &mut one)?;
                if one[0].count_ones() + one[1].count_ones() > 1 {
                    set[0] |= one[0];
                    set[1] |= one[1];
                    k += 2;
                    continue;
                }
                let c = (0..128u8).find(|&x| has(&one, x)).unwrap_or(0);
                (c, k + 2)
            }
            Some(&c @ 0x20..=0x7E) => (c, k + 1),
            Some(_) => {
                return err(
                    k,
                    "patterns are printable ASCII: put other text in a literal",
                )
            }
        };
        k = next;
        let range = b.get(k) == Some(&b'-') && !matches!(b.get(k + 1), Some(b']') | None);
        if !range {
            add(&mut set, lo);
            continue;
        }
        let hi = match b.get(k + 1) {
            Some(&c @ 0x20..=0x7E) if c != b'\\' => c,
            _ => return err(k, "a range ends with a plain printable character"),
        };
        if hi < lo {
            return err(k, "a range must go up (a-z, not z-a)");
        }
        for x in lo..=hi {
            add(&mut set, x);
        }
        k += 2;
    }
    if fold {
        fold_case(&mut set);
    }
    if negate {
        set = [!set[0], !set[1]];
    }
    if set == [0, 0] {
        return err(open, "a class must allow some character");
    }
    *out = set;
    Ok(k + 1)
}

/// The count at `b[k]`, if any: `(min, max, offset after it)`.
fn count(b: &[u8], k: usize) -> Result<(u16, u16, usize), PatternError> {
    match b.get(k) {
        Some(b'?') => return Ok((0, 1, k + 1)),
        Some(b'*') => return Ok((0, OPEN, k + 1)),
        Some(b'+') => return Ok((1, OPEN, k + 1)),
        Some(b'{') => {}
        _ => return Ok((1, 1, k)),
    }
    let number = |p: &mut usize| -> Option<u16> {
        let from = *p;
        let mut n: u16 = 0;
        while let Some(&d) = b.get(*p).filter(|d| d.is_ascii_digit()) {
            n = n.saturating_mul(10).saturating_add(u16::from(d - b'0'));
            *p += 1;
        }
        (*p > from).then_some(n)
    };
    let mut p = k + 1;
    let bad = "a count is {n}, {n,} or {n,m}, with n <= m <= 256 and m >= 1";
    let Some(min) = number(&mut p) else {
        return err(k, bad);
    };
    let max = match b.get(p) {
        Some(b'}') => min,
        Some(b',') => {
            p += 1;
            if b.get(p) == Some(&b'}') {
                OPEN
            } else {
                match number(&mut p) {
                    Some(m) => m,
                    None => return err(k, bad),
                }
            }
        }
        _ => return err(k, bad),
    };
    if b.get(p) != Some(&b'}')
        || min > MAX_COUNT
        || (max != OPEN && (max < min || max > MAX_COUNT))
        || max == 0
    {
        return err(k, bad);
    }
    Ok((min, max, p + 1))
}

impl Pattern {
    /// The bytes a match may start with, and the bytes that may follow
    /// the first (all of them when a match may be one character long):
    /// for the literal filter.
    pub(super) fn starts(&self) -> Option<(Set, [u64; 4])> {
        let first = self.atoms.first()?;
        let mut second = [0u64; 4];
        if first.max >= 2 {
            second[0] |= first.set[0];
            second[1] |= first.set[1];
        }
        if first.min == 1 {
            // After one character of the first atom: the atoms that follow,
            // up to the first required one; if none is, anything.
            let mut optional = true;
            for a in self.atoms.iter().skip(1) {
                second[0] |= a.set[0];
                second[1] |= a.set[1];
                if a.min > 0 {
                    optional = false;
                    break;
                }
            }
            if optional {
                second = [u64::MAX; 4];
            }
        }
        Some((first.set, second))
    }

    /// The end of the match that starts at `i`, or 0: the greedy match,
    /// if the boundaries allow it.
    #[inline]
    pub(super) fn at(&self, t: &[u8], i: usize, memo: &mut Memo) -> usize {
        let b = t.get(i).copied().unwrap_or(0);
        if !self.atoms.first().is_some_and(|a| has(&a.set, b)) {
            return 0;
        }
        if glued_start(t, i) {
            return 0;
        }
        self.greedy(t, i, memo, true)
    }

    /// Each atom in turn takes what it can: the end, or 0 if some atom got
    /// fewer than its minimum, entered a run known to fail, or (`edge`) the
    /// end is glued to a letter or digit.
    fn greedy(&self, t: &[u8], i: usize, memo: &mut Memo, edge: bool) -> usize {
        let mut p = i;
        // The slots whose atom took its whole run in this attempt: if the
        // attempt fails, what follows their run's end fails.
        let mut whole: u32 = 0;
        let mut ok = true;
        for a in &self.atoms {
            let long = memo.get_mut(usize::from(a.slot)).filter(|_| a.max > SHORT);
            let (n, took_all) = match long {
                None => (run(t, &mut p, &a.set, usize::from(a.max)), false),
                Some(r) => {
                    let max = if a.max == OPEN {
                        usize::MAX
                    } else {
                        usize::from(a.max)
                    };
                    r.enter(t, p, &a.set);
                    if r.count > max {
                        p = r.cut_at(t, max);
                        (max, false)
                    } else if r.dead {
                        ok = false;
                        break;
                    } else {
                        p = r.end;
                        (r.count, true)
                    }
                }
            };
            if n < usize::from(a.min) {
                ok = false;
                break;
            }
            if took_all {
                whole |= 1 << a.slot;
            }
        }
        if ok && !(edge && glued_end(t, p)) {
            return p;
        }
        while whole != 0 {
            if let Some(r) = memo.get_mut(whole.trailing_zeros() as usize) {
                r.dead = true;
            }
            whole &= whole - 1;
        }
        0
    }
}

/// A match starting at `i` with a letter or digit follows one.
#[inline]
pub(super) fn glued_start(t: &[u8], i: usize) -> bool {
    t.get(i).is_some_and(u8::is_ascii_alphanumeric) && alnum_before(t, i)
}

/// A match ending at `p` whose last byte is a letter or digit goes on
/// with one.
fn glued_end(t: &[u8], p: usize) -> bool {
    let last_alnum = p
        .checked_sub(1)
        .and_then(|q| t.get(q))
        .is_some_and(|&b| class(b) & ALNUM != 0);
    last_alnum && Cur::new(t, p).glued()
}

impl Run {
    /// Aligns the run on entry `p`: slides the window forward when `p` is
    /// inside the known run, else reads the run from `p` afresh.
    fn enter(&mut self, t: &[u8], p: usize, set: &Set) {
        if !(self.from..self.end).contains(&p) {
            let mut end = p;
            let count = run(t, &mut end, set, usize::MAX);
            *self = Run {
                from: p,
                end,
                count,
                cut: p,
                cut_n: 0,
                dead: false,
            };
            return;
        }
        while self.from < p {
            let len = invisible_len(t, self.from);
            if len > 0 {
                self.from += len;
                continue;
            }
            self.from += 1;
            self.count = self.count.saturating_sub(1);
            if self.cut_n > 0 {
                self.cut_n = self.cut_n.saturating_sub(1);
            }
            if self.cut < self.from {
                (self.cut, self.cut_n) = (self.from, 0);
            }
        }
    }

    /// The position right after `max` visible bytes from `from` (fewer
    /// than `count`), moving the cut forward.
    fn cut_at(&mut self, t: &[u8], max: usize) -> usize {
        while self.cut_n < max && self.cut < self.end {
            let len = invisible_len(t, self.cut);
            self.cut += len.max(1);
            if len == 0 {
                self.cut_n += 1;
            }
        }
        self.cut
    }
}

/// The visible character before `p` is an ASCII letter or digit. (Not
/// `chars::before`: calling that from here took it out of line in the
/// built-ins' hot path, 6% slower in the `.wasm`.)
#[inline]
fn alnum_before(t: &[u8], p: usize) -> bool {
    match p.checked_sub(1).and_then(|q| t.get(q)) {
        Some(&b) if b < 0x80 => b.is_ascii_alphanumeric(),
        Some(_) => alnum_before_invisible(t, p),
        None => false,
    }
}

/// [`alnum_before`] past invisible characters.
#[inline(never)]
fn alnum_before_invisible(t: &[u8], mut p: usize) -> bool {
    while let Some(len) = [3, 2]
        .into_iter()
        .find(|&n| p >= n && invisible_len(t, p - n) == n)
    {
        p -= len;
    }
    p.checked_sub(1)
        .and_then(|q| t.get(q))
        .is_some_and(u8::is_ascii_alphanumeric)
}

/// Consumes at most `cap` visible bytes in `set` from `*p`, stepping over invisible characters between them; `*p` ends
/// right after the last one taken. Answers how many were taken.
#[inline(never)]
fn run(t: &[u8], p: &mut usize, set: &Set, cap: usize) -> usize {
    let mut n = 0;
    let mut q = *p;
    while n < cap {
        let Some(&b) = t.get(q) else { break };
        if has(set, b) {
            n += 1;
            q += 1;
            *p = q;
        } else if b < 0x80 {
            break;
        } else {
            match invisible_len(t, q) {
                0 => break,
                len => q += len,
            }
        }
    }
    n
}

#[cfg(test)]
#[path = "pattern_tests.rs"]
mod tests;
