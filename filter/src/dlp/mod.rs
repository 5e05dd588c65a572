//! Prompt DLP, the detector engine: finds secrets, personal data and the
//! operator's literals and patterns in one decoded JSON string value.
//!
//! The caller decodes first (JSON escapes, and tool-call arguments that
//! are JSON inside a string, each value scanned on its own), so a key
//! written `"\u0073k-…"` is seen as `sk-…`. [`DetectorSet::scan`] takes the
//! decoded UTF-8 bytes and reports byte ranges; acting on them (block,
//! redact, audit) is the caller's business. Pure Rust, no host calls, no
//! regular expressions, no allocation while scanning beyond `out`.
//!
//! # Engine
//! One pass over the text ([`scan`]): a 256-byte class table splits it into
//! words; each word start is dispatched on its first byte to anchored
//! matchers (`sk` → OpenAI, Anthropic, Stripe; `A` → AWS, Google, Bedrock;
//! `gh` → GitHub; a digit → card, SSN, phone; two letters and two digits →
//! IBAN; …), and so are the few bytes outside words that can start a match
//! (`@` email, `+` and `(` phone, `-` PEM block, 0xEF full-width digit). A
//! word that starts nothing is skipped whole. Validators (Luhn, mod 97, the
//! SSA's and NANP's rules, in [`validate`]) run only on a shape that
//! matched. Simple credential formats are rows of a table (prefix, body
//! class, length: [`secrets`]); the others are small functions. Literals
//! and patterns ([`pattern`]: characters and classes with counts, matched
//! greedily, never backtracking) are a second pass ([`literal`]), run only
//! when the policy has some, so
//! the built-ins cost the same whether or not literals are used; the two
//! sorted lists are then merged.
//!
//! # Cost
//! Measured on this machine: about 1 GiB/s natively (64 KB prompt, every
//! built-in on; 760 MiB/s on a 2 KB prompt; `benches/dlp.rs`), and about
//! 310 MB/s for the whole DLP step (JSON decoding included) of a 64 KB
//! request in the real `.wasm` under wasmtime, 290 MB/s in Envoy's V8
//! (BENCHMARKS.md, "Prompt DLP"). About 14 KB of
//! `tollgate.wasm` after `wasm-opt -Oz`, tables included (256-byte class
//! table, the IBAN registry, the format table, the names). Helpers return
//! one scalar and keep positions in a cursor ([`chars::Cur`]): on wasm32
//! anything wider returns through memory, which cost 2 KB more.
//! Operator patterns add about 9.5 KB (with their config) and, eight
//! typical ones, about 220 µs per 64 KB natively (BENCHMARKS.md,
//! "Operator patterns as shapes"); a policy without them pays nothing.
//!
//! # Matches
//! - `out` is cleared, then holds the matches sorted by start, with no two
//!   overlapping; `start < end <= text.len()`, and both are char
//!   boundaries when the text is UTF-8.
//! - When two candidates overlap, the longer wins; on equal length the
//!   earlier-starting one, and on the same span the built-in over a
//!   literal or pattern. This is greedy: a match dropped for an overlap is not
//!   reconsidered when its rival later loses to a third.
//! - Built-ins need a token boundary: a match does not start right after a
//!   letter or digit, and a fixed-length key or a number does not end right
//!   before one (see [`secrets`] for cut-at-length prefixes, [`personal`]
//!   for numbers). Patterns need one where their own edge is a letter or
//!   digit. Literals match anywhere.
//!
//! # Unicode decisions
//! - **Invisible characters** (U+200B–U+200D zero-width space, non-joiner
//!   and joiner, U+2060 word joiner, U+FEFF, U+00AD soft hyphen) are
//!   transparent inside a match: skipped in prefixes, key bodies, digit
//!   groups and literals. A key with a zero-width joiner inside renders as
//!   the key and works once pasted, so it must be found. The match spans
//!   the invisible characters too (it never starts or ends with one), so a
//!   redaction removes them with the key: fail-safe. IBANs and email
//!   addresses are read as plain ASCII and are broken by them.
//! - **Full-width digits** (U+FF10–U+FF19) count as digits in card, SSN and
//!   phone numbers, and full-width, no-break and ideographic spaces and
//!   Unicode dashes count as separators ([`chars::Sep`]): IMEs type them,
//!   and the number is the same number. Keys are ASCII by definition; a
//!   key spelled with full-width letters is not a key.
//! - Nothing else is normalised: homoglyphs (Cyrillic `А` in `AKIA`), other
//!   digit scripts and NFKC forms are not matched.
//!
//! # Per-detector decisions
//! Documented on each [`Detector`] variant and matcher. The notable ones:
//! - `aws_secret_access_key`: 40 `[A-Za-z0-9+/]` with mixed case, only
//!   within 128 bytes after an access key id or 24 after a label such as
//!   `aws_secret_access_key`, `SecretAccessKey`, "AWS secret key"; a bare
//!   40-character token is far more often a hash or an id.
//! - `us_ssn`: only `AAA-GG-SSSS` with one kind of separator (dash, space,
//!   dot); nine bare digits never match.
//! - `phone`: E.164 (`+`, 8–15 digits) and North American national forms
//!   with dashes, dots or a parenthesised area code; other national
//!   formats (`020 7946 0958`) do not match: without the `+` they cannot be
//!   told from other numbers.
//! - `payment_card`: first digit 2–6 only, so 13-digit millisecond
//!   timestamps and 19-digit snowflake ids (first digit 1) never match.
//! - Key placeholders: a body with fewer than four distinct characters
//!   (`ghp_xxxx…`, `AKIAXXXX…`) is not a key. AWS's documentation example
//!   `AKIAIOSFODNN7EXAMPLE` is matched: it is format-valid, a DLP cannot
//!   tell an example from a key, and redacting it costs nothing.
//! - Truncated keys (shorter than the format) do not match; longer runs
//!   match whole, except where the format has a fixed length ([`secrets`]).
//! - Literals and patterns are case-sensitive unless `ignore_ascii_case`
//!   (ASCII only). Patterns keep the built-ins' boundaries; literals match
//!   anywhere.

mod chars;
mod detector;
mod literal;
mod pattern;
mod personal;
mod scan;
mod secrets;
mod validate;

#[cfg(test)]
mod corpus;

pub use detector::Detector;
pub use literal::Literal;

use core::fmt;
use detector::Mask;
use literal::Literals;

/// Which detector a match is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DetectorId {
    Builtin(Detector),
    /// The operator's literal, by its index in the list the set was built
    /// from.
    Literal(u16),
}

/// One finding: `text[start..end]` is what `detector` matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub detector: DetectorId,
    pub start: usize,
    pub end: usize,
}

/// Why a detector set cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectorSetError {
    /// `literals[index]` has empty text.
    EmptyLiteral { index: usize },
    /// `literals[index]`'s name is empty, repeats an earlier literal's, or
    /// is a built-in's.
    NameInvalid { index: usize },
    /// More literals than the index holds (32767).
    TooManyLiterals,
    /// `literals[index]`'s pattern is refused at byte `at` of its source,
    /// which reads `near` there.
    PatternInvalid {
        index: usize,
        at: usize,
        near: String,
        why: &'static str,
    },
}

impl fmt::Display for DetectorSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetectorSetError::EmptyLiteral { index } => {
                write!(f, "literals[{index}]: text must not be empty")
            }
            DetectorSetError::NameInvalid { index } => write!(
                f,
                "literals[{index}]: name must be non-empty, unique and not a built-in detector's"
            ),
            DetectorSetError::TooManyLiterals => f.write_str("literals: too many (at most 32767)"),
            DetectorSetError::PatternInvalid {
                index,
                at,
                near,
                why,
            } => write!(
                f,
                "literals[{index}].pattern: at offset {at} ({near:?}): {why}"
            ),
        }
    }
}

/// The detectors one policy enables, compiled once and shared.
#[derive(Debug, Clone, Default)]
pub struct DetectorSet {
    builtins: Mask,
    literals: Literals,
}

impl DetectorSet {
    /// The set of `builtins` (repeats are harmless) and `literals`.
    pub fn new(
        builtins: &[Detector],
        literals: Vec<Literal>,
    ) -> Result<DetectorSet, DetectorSetError> {
        let mask = builtins.iter().fold(0, |m, d| m | d.bit());
        Ok(DetectorSet {
            builtins: Mask(mask),
            literals: Literals::new(literals)?,
        })
    }

    /// Every built-in, no literals.
    pub fn all_builtins() -> DetectorSet {
        DetectorSet {
            builtins: Mask(Detector::ALL.iter().fold(0, |m, d| m | d.bit())),
            literals: Literals::default(),
        }
    }

    /// Nothing is enabled: [`scan`](Self::scan) never finds anything.
    pub fn is_empty(&self) -> bool {
        self.builtins.0 == 0 && self.literals.is_empty()
    }

    /// The name a match is reported under: the built-in's stable name or
    /// the literal's configured one.
    pub fn name(&self, id: DetectorId) -> &str {
        match id {
            DetectorId::Builtin(d) => d.name(),
            DetectorId::Literal(k) => self.literals.get(k).map_or("literal", |l| l.name.as_str()),
        }
    }

    /// Clears `out` and fills it with the matches in `text`, sorted by
    /// start and not overlapping (see the module docs).
    pub fn scan(&self, text: &[u8], out: &mut Vec<Match>) {
        out.clear();
        // Called through an opaque pointer so that wasm-opt cannot inline
        // it into this function: inlined, the literal and pattern loop
        // cost the built-ins' loop beside it 1.7% more instructions in
        // the `.wasm` (register pressure in Cranelift's output).
        let literal_scan: fn(&Literals, &[u8], &mut Vec<Match>) =
            core::hint::black_box(Literals::scan);
        literal_scan(&self.literals, text, out);
        let literals = out.len();
        if self.builtins.0 != 0 {
            scan::builtins(self.builtins, text, out, literals);
        }
        if literals > 0 && out.len() > literals {
            merge(out, literals);
        }
    }
}

/// Merges the sorted runs `out[..mid]` (literals) and `out[mid..]`
/// (built-ins) into one, resolving overlaps, using `out`'s own spare room.
fn merge(out: &mut Vec<Match>, mid: usize) {
    let n = out.len();
    let (mut a, mut b) = (0, mid);
    loop {
        let next = match (out.get(a).filter(|_| a < mid), out.get(b).filter(|_| b < n)) {
            (Some(&x), Some(&y)) if x.start < y.start => {
                a += 1;
                x
            }
            (_, Some(&y)) => {
                b += 1;
                y
            }
            (Some(&x), None) => {
                a += 1;
                x
            }
            (None, None) => break,
        };
        scan::push(out, n, next);
    }
    let merged = out.len() - n;
    out.copy_within(n.., 0);
    out.truncate(merged);
}

#[cfg(test)]
mod tests;
