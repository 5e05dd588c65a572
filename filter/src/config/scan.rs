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
//!   characters refused) and must be UTF-8. One without escapes that ends
//!   in the current window is read where it lies, never copied.
//! - [`Scanner::count_list`] is the one reader that judges nothing: what it
//!   passes over must be read strictly by another pass.

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
    /// Bytes of the document before the current window.
    before: usize,
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
            before: 0,
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
                    self.before += self.end;
                    self.pos = 0;
                    self.end = n.min(self.buf.len());
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Stop),
            }
        }
    }

    /// How many bytes of the document have been consumed: a position in
    /// document order, the same for every reader of the same document.
    pub fn offset(&self) -> usize {
        self.before + self.pos
    }

    #[inline]
    fn peek(&mut self) -> Result<Option<u8>, Stop> {
        if self.pos >= self.end && !self.fill()? {
            return Ok(None);
        }
        Ok(self.buf.get(self.pos).copied())
    }

    /// The next byte that is not whitespace, not consumed.
    #[inline(always)]
    fn peek_token(&mut self) -> Result<Option<u8>, Stop> {
        match self.buf.get(self.pos) {
            Some(&b) if self.pos < self.end && !matches!(b, b' ' | b'\n' | b'\t' | b'\r') => {
                Ok(Some(b))
            }
            _ => self.peek_token_slow(),
        }
    }

    /// [`Scanner::peek_token`] past whitespace or a window's end.
    #[inline(never)]
    fn peek_token_slow(&mut self) -> Result<Option<u8>, Stop> {
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

    /// Consumes a `null`, `true`, `false` or number: whether it was `true`.
    pub fn scalar(&mut self) -> Result<bool, Stop> {
        let word: &[u8] = match self.peek_token()?.ok_or(Stop)? {
            b't' => b"true",
            b'f' => b"false",
            b'n' => b"null",
            b'-' | b'0'..=b'9' => return self.uint().map(|_| false),
            _ => return Err(Stop),
        };
        for &want in word {
            match self.peek()? {
                Some(b) if b == want => self.pos += 1,
                _ => return Err(Stop),
            }
        }
        Ok(word == b"true")
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
        let at = self.string_at()?;
        self.text_at(at)
    }

    /// Consumes a string: where its text is, for [`Scanner::text_at`]
    /// before anything else is read. A string without escapes that ends in
    /// this window is left there, unchecked; any other goes to `self.text`.
    fn string_at(&mut self) -> Result<Option<(usize, usize)>, Stop> {
        self.eat(b'"')?;
        let avail = self.buf.get(self.pos..self.end).unwrap_or(&[]);
        let n = crate::string_run::string_run(avail);
        if avail.get(n) == Some(&b'"') {
            let start = self.pos;
            self.pos += n + 1;
            return Ok(Some((start, start + n)));
        }
        self.string_slow().map(|()| None)
    }

    /// The text of a string [`Scanner::string_at`] consumed; it must be
    /// UTF-8.
    fn text_at(&self, at: Option<(usize, usize)>) -> Result<&str, Stop> {
        match at {
            Some((start, end)) => {
                core::str::from_utf8(self.buf.get(start..end).unwrap_or(&[])).map_err(|_| Stop)
            }
            None => Ok(&self.text),
        }
    }

    /// Reads the rest of a string into `self.text`, across windows and
    /// escapes.
    #[inline(never)]
    fn string_slow(&mut self) -> Result<(), Stop> {
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
        Ok(())
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
        let mut at = self.string_at()?;
        if self.pos < self.end && self.buf.get(self.pos) == Some(&b':') {
            self.pos += 1;
        } else {
            // The key may be in the window the `:` search replaces.
            if let Some((start, end)) = at.take() {
                let key = self.buf.get(start..end).unwrap_or(&[]);
                self.text.clear();
                self.text
                    .push_str(core::str::from_utf8(key).map_err(|_| Stop)?);
            }
            self.eat(b':')?;
        }
        self.text_at(at).map(Some)
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
            _ => {
                self.scalar()?;
            }
        }
        Ok(kind)
    }

    /// Consumes a list without judging it, and counts its elements. Only
    /// brackets, braces, commas and string bounds are looked at: the count
    /// is exact for well-formed JSON, and whatever reads the list strictly
    /// afterwards finds any fault in it.
    pub fn count_list(&mut self) -> Result<usize, Stop> {
        self.eat(b'[')?;
        let mut depth = 1usize;
        let mut commas = 0usize;
        let mut empty = true;
        loop {
            if self.pos >= self.end && !self.fill()? {
                return Err(Stop);
            }
            let avail = self.buf.get(self.pos..self.end).unwrap_or(&[]);
            let mut used = avail.len();
            let mut string = false;
            for (k, &b) in avail.iter().enumerate() {
                match b {
                    b' ' | b'\n' | b'\t' | b'\r' => continue,
                    b'"' => {
                        used = k + 1;
                        string = true;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            self.pos += k + 1;
                            return Ok(if empty { 0 } else { commas + 1 });
                        }
                    }
                    b',' if depth == 1 => commas += 1,
                    _ => {}
                }
                empty = false;
                if string {
                    break;
                }
            }
            self.pos += used;
            if string {
                self.pass_string()?;
            }
        }
    }

    /// Passes over the rest of a string (its `"` consumed) without reading
    /// it: only its end is found.
    fn pass_string(&mut self) -> Result<(), Stop> {
        loop {
            if self.pos >= self.end && !self.fill()? {
                return Err(Stop);
            }
            let avail = self.buf.get(self.pos..self.end).unwrap_or(&[]);
            let n = crate::string_run::string_run(avail);
            let stop = avail.get(n).copied();
            self.pos += n;
            match stop {
                None => {}
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.next_byte()?;
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// Checks that nothing but whitespace follows the document.
    pub fn finish(&mut self) -> Result<(), Stop> {
        match self.peek_token()? {
            None => Ok(()),
            Some(_) => Err(Stop),
        }
    }
}
