//! A small pull reader of JSON over a [`std::io::Read`], in windows, for
//! [`super::read`]: serde_json reads several times slower from a reader
//! than from a slice, and a 10,000-rule policy cannot be held as a slice.
//!
//! Invariants:
//! - In strict mode the scanner accepts only what serde_json accepts: any
//!   doubt (a syntax or read error, a number, deep nesting) is a [`Stop`],
//!   after which the caller has serde_json check the whole document, which
//!   reports the problem exactly as it always did (`line L column C: …`).
//!   Numbers other than plain non-negative integers (the only numbers a
//!   setting takes) stop it, and serde_json decides whether they are also a
//!   syntax error.
//! - In lenient mode (serde_json found the document well-formed) such
//!   numbers are skipped; a [`Stop`] there means the two readers disagree.
//! - Strings are unescaped as serde_json does (surrogates paired, control
//!   characters refused) and must be UTF-8.

use std::io::{self, Read};

/// A syntax or read error, or something only serde_json may judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

/// What a JSON value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    List,
    Object,
}

impl Kind {
    /// For "expected X, got Y". Never the content.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::List => "a list",
            Kind::Object => "an object",
        }
    }
}

/// Deeper than this, strict mode leaves the judgement to serde_json (whose
/// limit is 128).
const STRICT_DEPTH: u32 = 100;
/// A bound on recursion whatever the mode.
const MAX_DEPTH: u32 = 200;

pub struct Scanner<'r> {
    src: Box<dyn Read + 'r>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    lenient: bool,
    depth: u32,
    /// The last string read, unescaped (its buffer is reused).
    text: String,
    scratch: Vec<u8>,
}

impl<'r> Scanner<'r> {
    pub fn new(src: Box<dyn Read + 'r>, window: usize, lenient: bool) -> Self {
        Scanner {
            src,
            buf: vec![0; window.max(1)],
            pos: 0,
            end: 0,
            lenient,
            depth: 0,
            text: String::new(),
            scratch: Vec::new(),
        }
    }

    /// Reads the next window; false at the end of the document.
    #[inline(never)]
    fn fill(&mut self) -> Result<bool, Stop> {
        loop {
            match self.src.read(&mut self.buf) {
                Ok(n) => {
                    self.pos = 0;
                    self.end = n.min(self.buf.len());
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Stop),
            }
        }
    }

    #[inline]
    fn peek(&mut self) -> Result<Option<u8>, Stop> {
        if self.pos >= self.end && !self.fill()? {
            return Ok(None);
        }
        Ok(self.buf.get(self.pos).copied())
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek_token(&mut self) -> Result<Option<u8>, Stop> {
        loop {
            match self.peek()? {
                Some(b' ' | b'\n' | b'\t' | b'\r') => self.pos += 1,
                other => return Ok(other),
            }
        }
    }

    fn eat(&mut self, want: u8) -> Result<(), Stop> {
        match self.peek_token()? {
            Some(b) if b == want => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(Stop),
        }
    }

    /// The kind of the next value, not consumed.
    pub fn kind(&mut self) -> Result<Kind, Stop> {
        Ok(match self.peek_token()?.ok_or(Stop)? {
            b'{' => Kind::Object,
            b'[' => Kind::List,
            b'"' => Kind::String,
            b't' | b'f' => Kind::Bool,
            b'n' => Kind::Null,
            b'-' | b'0'..=b'9' => Kind::Number,
            _ => return Err(Stop),
        })
    }

    /// Consumes a `null`, `true`, `false` or number.
    pub fn scalar(&mut self) -> Result<(), Stop> {
        let word: &[u8] = match self.peek_token()?.ok_or(Stop)? {
            b't' => b"true",
            b'f' => b"false",
            b'n' => b"null",
            b'-' | b'0'..=b'9' => return self.uint().map(drop),
            _ => return Err(Stop),
        };
        for &want in word {
            match self.peek()? {
                Some(b) if b == want => self.pos += 1,
                _ => return Err(Stop),
            }
        }
        Ok(())
    }

    /// Consumes a number: `Some(n)` for a plain non-negative integer that
    /// fits in a u64 (`0` or `[1-9][0-9]*`), which serde_json reads the same
    /// way. Any other number is a [`Stop`] in strict mode (serde_json judges
    /// it) and `None` in lenient mode.
    pub fn uint(&mut self) -> Result<Option<u64>, Stop> {
        let mut n: Option<u64> = Some(0);
        let mut digits = 0u32;
        let mut plain = true;
        match self.peek_token()? {
            Some(b'0'..=b'9') => {}
            Some(b'-') if self.lenient => plain = false,
            _ => return Err(Stop),
        }
        while let Some(b) = self.peek()? {
            match b {
                b'0'..=b'9' => {
                    if digits == 1 && n == Some(0) {
                        plain = false; // a leading zero
                    }
                    digits += 1;
                    n = n
                        .and_then(|n| n.checked_mul(10))
                        .and_then(|n| n.checked_add(u64::from(b - b'0')));
                }
                b'-' | b'+' | b'.' | b'e' | b'E' => plain = false,
                _ => break,
            }
            self.pos += 1;
        }
        match (plain, n) {
            (true, Some(n)) if digits > 0 => Ok(Some(n)),
            _ if self.lenient => Ok(None),
            _ => Err(Stop),
        }
    }

    /// Consumes a string; its text until the next read.
    pub fn string(&mut self) -> Result<&str, Stop> {
        self.eat(b'"')?;
        self.scratch = core::mem::take(&mut self.text).into_bytes();
        self.scratch.clear();
        loop {
            if self.pos >= self.end && !self.fill()? {
                return Err(Stop);
            }
            let avail = self.buf.get(self.pos..self.end).unwrap_or(&[]);
            match Some(crate::string_run::string_run(avail)).filter(|&n| n < avail.len()) {
                None => {
                    self.scratch.extend_from_slice(avail);
                    self.pos = self.end;
                }
                Some(n) => {
                    let stop = avail.get(n).copied();
                    self.scratch
                        .extend_from_slice(avail.get(..n).unwrap_or(&[]));
                    self.pos += n + 1;
                    match stop {
                        Some(b'"') => break,
                        Some(b'\\') => self.escape()?,
                        _ => return Err(Stop),
                    }
                }
            }
        }
        self.text = String::from_utf8(core::mem::take(&mut self.scratch)).map_err(|_| Stop)?;
        Ok(&self.text)
    }

    fn next_byte(&mut self) -> Result<u8, Stop> {
        let b = self.peek()?.ok_or(Stop)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline(never)]
    fn escape(&mut self) -> Result<(), Stop> {
        let c = match self.next_byte()? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let n = self.hex4()?;
                let c = match n {
                    0xDC00..=0xDFFF => return Err(Stop),
                    0xD800..=0xDBFF => {
                        if self.next_byte()? != b'\\' || self.next_byte()? != b'u' {
                            return Err(Stop);
                        }
                        let n2 = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&n2) {
                            return Err(Stop);
                        }
                        0x1_0000 + (((n - 0xD800) << 10) | (n2 - 0xDC00))
                    }
                    n => n,
                };
                let c = char::from_u32(c).ok_or(Stop)?;
                let mut utf8 = [0; 4];
                self.scratch
                    .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                return Ok(());
            }
            _ => return Err(Stop),
        };
        self.scratch.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Stop> {
        let mut n = 0;
        for _ in 0..4 {
            let d = char::from(self.next_byte()?).to_digit(16).ok_or(Stop)?;
            n = n * 16 + d;
        }
        Ok(n)
    }

    fn enter(&mut self, open: u8) -> Result<(), Stop> {
        self.eat(open)?;
        self.depth += 1;
        let limit = if self.lenient {
            MAX_DEPTH
        } else {
            STRICT_DEPTH
        };
        if self.depth >= limit {
            return Err(Stop);
        }
        Ok(())
    }

    /// Consumes `{`.
    pub fn open_object(&mut self) -> Result<(), Stop> {
        self.enter(b'{')
    }

    /// Consumes `[`.
    pub fn open_list(&mut self) -> Result<(), Stop> {
        self.enter(b'[')
    }

    /// The next key of an object, with its `:` (false, with the `}`
    /// consumed, at the end). `first` is true before the first key.
    pub fn next_key(&mut self, first: &mut bool) -> Result<Option<&str>, Stop> {
        match self.peek_token()? {
            Some(b'}') => {
                self.pos += 1;
                self.depth = self.depth.saturating_sub(1);
                return Ok(None);
            }
            Some(b',') if !*first => self.pos += 1,
            Some(b'"') if *first => {}
            _ => return Err(Stop),
        }
        *first = false;
        self.string()?;
        self.eat(b':')?;
        Ok(Some(&self.text))
    }

    /// Whether a list has another element (false, with the `]` consumed, at
    /// the end). `first` is true before the first element.
    pub fn next_element(&mut self, first: &mut bool) -> Result<bool, Stop> {
        match self.peek_token()? {
            Some(b']') => {
                self.pos += 1;
                self.depth = self.depth.saturating_sub(1);
                return Ok(false);
            }
            Some(b',') if !*first => self.pos += 1,
            Some(_) if *first => {}
            _ => return Err(Stop),
        }
        *first = false;
        Ok(true)
    }

    /// Skips a value, whatever it is.
    pub fn skip(&mut self) -> Result<Kind, Stop> {
        let kind = self.kind()?;
        match kind {
            Kind::Object => {
                self.open_object()?;
                let mut first = true;
                while self.next_key(&mut first)?.is_some() {
                    self.skip()?;
                }
            }
            Kind::List => {
                self.open_list()?;
                let mut first = true;
                while self.next_element(&mut first)? {
                    self.skip()?;
                }
            }
            Kind::String => {
                self.string()?;
            }
            _ => self.scalar()?,
        }
        Ok(kind)
    }

    /// Checks that nothing but whitespace follows the document.
    pub fn finish(&mut self) -> Result<(), Stop> {
        match self.peek_token()? {
            None => Ok(()),
            Some(_) => Err(Stop),
        }
    }
}
