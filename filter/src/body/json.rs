//! Strict, single-pass validation of a JSON request body, locating the few
//! values the policy reads.
//!
//! [`inspect`] accepts exactly the RFC 8259 grammar, and on top of it refuses
//! anything two JSON parsers could read differently, so the request the filter
//! checked is the request the provider reads. For every body it accepts:
//! - the whole body is valid UTF-8 (no BOM, no overlong forms, no encoded
//!   surrogates), and every `\u` escape decodes to a Unicode scalar value
//!   (surrogate pairs are joined; a lone surrogate is an error);
//! - the body is one value, with only JSON whitespace before and after it;
//! - no container is nested deeper than [`MAX_DEPTH`] (the root container is
//!   depth 1);
//! - no object, at any depth, holds two keys that are equal once escapes are
//!   decoded (`"model"` and `"mod\u0065l"` are the same key).
//!
//! The parser is iterative: its stack is a `Vec` of at most [`MAX_DEPTH`]
//! frames, so hostile nesting fails at depth 65 with bounded memory and no
//! recursion. Every byte is visited a bounded number of times; duplicate keys
//! are found by a linear scan for small objects and a hash table for large
//! ones. Keys borrow from the body unless they hold an escape; values are never
//! copied. Only values at the requested key paths are recorded, as byte spans
//! into the body (see [`Found`] and [`ObjectSpan`]); [`crate::body::splice`]
//! rewrites them without touching any other byte. Errors carry a byte offset
//! and never echo the body.

use core::fmt;
use core::hash::BuildHasher;
use core::ops::Range;
use std::borrow::Cow;

use hashbrown::{DefaultHashBuilder, HashTable};

/// The deepest nesting accepted: a root object alone is depth 1.
pub const MAX_DEPTH: usize = 64;

/// Objects with at most this many keys are checked for duplicates by a linear
/// scan; larger ones get a hash table.
const LINEAR_KEYS: usize = 8;

/// The JSON type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

/// A value found at a requested path: its type and its raw bytes in the body
/// (for a string, including both quotes; for a container, from the opening to
/// the closing bracket).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Found {
    pub kind: Kind,
    pub span: Range<usize>,
}

/// An object in the body, by the offsets of its `{` and `}`; `empty` when it
/// has no members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectSpan {
    pub open: usize,
    pub close: usize,
    pub empty: bool,
}

/// What [`inspect`] learned about a body it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The type of the root value.
    pub root: Kind,
    /// `found[i]`: the value at `paths[i]`, if present.
    pub found: Vec<Option<Found>>,
    /// `holders[i]`: the object that holds, or would hold, the last key of
    /// `paths[i]`, when the root and every intermediate value on the path are
    /// objects. `None` for the empty path.
    pub holders: Vec<Option<ObjectSpan>>,
    /// Every string *value* (not object keys), quotes included, in body
    /// order: filled by [`inspect_strings`] only.
    pub strings: Vec<Range<usize>>,
}

impl Inspected {
    /// The value at `paths[i]`, if present.
    pub fn found(&self, i: usize) -> Option<&Found> {
        self.found.get(i)?.as_ref()
    }

    /// The object that holds, or would hold, the last key of `paths[i]`.
    pub fn holder(&self, i: usize) -> Option<ObjectSpan> {
        *self.holders.get(i)?
    }
}

/// Why a body was refused: one variant per rule, each with the byte offset
/// where the problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JsonError {
    /// The body is empty or only whitespace.
    Empty { at: usize },
    /// The body starts with a UTF-8 byte order mark.
    ByteOrderMark { at: usize },
    /// A byte sequence is not valid UTF-8 (overlong, surrogate, truncated...).
    InvalidUtf8 { at: usize },
    /// A byte that the grammar does not allow here.
    UnexpectedByte { at: usize },
    /// The body ends inside a value.
    UnexpectedEnd { at: usize },
    /// A malformed number (leading zero, missing digits).
    InvalidNumber { at: usize },
    /// An unescaped control character (below 0x20) inside a string.
    ControlCharacter { at: usize },
    /// A backslash escape that JSON does not define, or bad `\u` hex digits.
    InvalidEscape { at: usize },
    /// A `\u` escape of a high surrogate not followed by a low one, or of a
    /// lone low surrogate.
    LoneSurrogate { at: usize },
    /// Non-whitespace after the root value.
    TrailingData { at: usize },
    /// A container nested deeper than [`MAX_DEPTH`].
    TooDeep { at: usize },
    /// An object holds the same key twice (compared after decoding escapes).
    DuplicateKey { at: usize },
    /// An object holds more than [`MAX_KEYS_PER_OBJECT`] keys: no LLM
    /// request needs that many, and it bounds the duplicate check's worst
    /// case if an attacker could make keys collide in the hash table.
    TooManyKeys { at: usize },
}

/// The most keys one object may hold (OpenAI's largest map, `logit_bias`,
/// takes 300).
pub const MAX_KEYS_PER_OBJECT: usize = 1024;

impl JsonError {
    /// A stable snake_case name for logs and counters.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty { .. } => "empty_body",
            Self::ByteOrderMark { .. } => "byte_order_mark",
            Self::InvalidUtf8 { .. } => "invalid_utf8",
            Self::UnexpectedByte { .. } => "unexpected_byte",
            Self::UnexpectedEnd { .. } => "unexpected_end",
            Self::InvalidNumber { .. } => "invalid_number",
            Self::ControlCharacter { .. } => "control_character",
            Self::InvalidEscape { .. } => "invalid_escape",
            Self::LoneSurrogate { .. } => "lone_surrogate",
            Self::TrailingData { .. } => "trailing_data",
            Self::TooDeep { .. } => "too_deep",
            Self::DuplicateKey { .. } => "duplicate_key",
            Self::TooManyKeys { .. } => "too_many_keys",
        }
    }

    /// The byte offset in the body where the problem was found.
    pub fn offset(&self) -> usize {
        match *self {
            Self::Empty { at }
            | Self::ByteOrderMark { at }
            | Self::InvalidUtf8 { at }
            | Self::UnexpectedByte { at }
            | Self::UnexpectedEnd { at }
            | Self::InvalidNumber { at }
            | Self::ControlCharacter { at }
            | Self::InvalidEscape { at }
            | Self::LoneSurrogate { at }
            | Self::TrailingData { at }
            | Self::TooDeep { at }
            | Self::DuplicateKey { at }
            | Self::TooManyKeys { at } => at,
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = match self {
            Self::Empty { .. } => "the body is empty",
            Self::ByteOrderMark { .. } => "the body must not start with a byte order mark",
            Self::InvalidUtf8 { .. } => "the body is not valid UTF-8",
            Self::UnexpectedByte { .. } => "unexpected byte",
            Self::UnexpectedEnd { .. } => "the body ends inside a value",
            Self::InvalidNumber { .. } => "malformed number",
            Self::ControlCharacter { .. } => "unescaped control character in a string",
            Self::InvalidEscape { .. } => "invalid escape in a string",
            Self::LoneSurrogate { .. } => "a \\u escape encodes a lone surrogate",
            Self::TrailingData { .. } => "data after the JSON value",
            Self::TooDeep { .. } => "nesting deeper than 64",
            Self::DuplicateKey { .. } => "duplicate object key",
            Self::TooManyKeys { .. } => "more than 1024 keys in one object",
        };
        write!(f, "invalid JSON body: {rule} at byte {}", self.offset())
    }
}

impl std::error::Error for JsonError {}

/// Why [`Found::strict_u64`] refused a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NumberError {
    /// The value is not a JSON number (a string, `null`, a bool...), or the
    /// span is not in the body.
    NotANumber,
    /// The number has a minus sign.
    Negative,
    /// The number has a fraction part (`4096.0`).
    Fraction,
    /// The number has an exponent (`1e9`).
    Exponent,
    /// The integer has a leading zero (`007`).
    LeadingZero,
    /// The integer is above `u32::MAX`.
    TooLarge,
}

impl NumberError {
    /// A stable snake_case name for logs and counters.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotANumber => "not_a_number",
            Self::Negative => "negative_number",
            Self::Fraction => "fractional_number",
            Self::Exponent => "number_with_exponent",
            Self::LeadingZero => "number_with_leading_zero",
            Self::TooLarge => "number_too_large",
        }
    }
}

impl fmt::Display for NumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotANumber => "the value must be a JSON number",
            Self::Negative => "the number must not be negative",
            Self::Fraction => "the number must be an integer without a fraction part",
            Self::Exponent => "the number must be written without an exponent",
            Self::LeadingZero => "the number must not have a leading zero",
            Self::TooLarge => "the number must be at most 4294967295",
        })
    }
}

impl std::error::Error for NumberError {}

impl Found {
    /// The raw bytes of the value, if the span lies in `body`.
    pub fn raw<'b>(&self, body: &'b [u8]) -> Option<&'b [u8]> {
        body.get(self.span.clone())
    }

    /// The decoded string (escapes resolved, surrogate pairs joined); `None`
    /// if the value is not a string.
    pub fn string(&self, body: &[u8]) -> Option<String> {
        if self.kind != Kind::String {
            return None;
        }
        let inner = self.raw(body)?.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        decode(inner)
    }

    /// The value as a strict non-negative integer: the raw token must be `0`
    /// or `[1-9][0-9]*`, at most `u32::MAX` (no sign, fraction or exponent,
    /// and never a string).
    pub fn strict_u64(&self, body: &[u8]) -> Result<u64, NumberError> {
        let raw = match (self.kind, self.raw(body)) {
            (Kind::Number, Some(raw)) if !raw.is_empty() => raw,
            _ => return Err(NumberError::NotANumber),
        };
        if raw.first() == Some(&b'-') {
            return Err(NumberError::Negative);
        }
        if raw.contains(&b'.') {
            return Err(NumberError::Fraction);
        }
        if raw.iter().any(|&b| b == b'e' || b == b'E') {
            return Err(NumberError::Exponent);
        }
        if !raw.iter().all(u8::is_ascii_digit) {
            return Err(NumberError::NotANumber);
        }
        if raw.len() > 1 && raw.first() == Some(&b'0') {
            return Err(NumberError::LeadingZero);
        }
        let mut value: u64 = 0;
        for &digit in raw {
            value = value * 10 + u64::from(digit - b'0');
            if value > u64::from(u32::MAX) {
                return Err(NumberError::TooLarge);
            }
        }
        Ok(value)
    }

    /// The value of a JSON bool; `None` for any other value.
    pub fn as_bool(&self, body: &[u8]) -> Option<bool> {
        match (self.kind, self.raw(body)?) {
            (Kind::Bool, b"true") => Some(true),
            (Kind::Bool, b"false") => Some(false),
            _ => None,
        }
    }
}

/// Validates `body` (see the module invariants) and locates the values at
/// `paths`.
///
/// `paths[i]` is a sequence of object keys from the root object, such as
/// `&["model"]` or `&["generationConfig", "maxOutputTokens"]`; the empty path
/// names the root value. A path never goes through an array. The result has one
/// entry per path in `found` and `holders`.
pub fn inspect(body: &[u8], paths: &[&[&str]]) -> Result<Inspected, JsonError> {
    if body.starts_with(b"\xEF\xBB\xBF") {
        return Err(JsonError::ByteOrderMark { at: 0 });
    }
    Parser::new(body, paths).run()
}

/// [`inspect`], also listing every string value's span in
/// [`Inspected::strings`] (for DLP, which reads them all).
pub fn inspect_strings(body: &[u8], paths: &[&[&str]]) -> Result<Inspected, JsonError> {
    if body.starts_with(b"\xEF\xBB\xBF") {
        return Err(JsonError::ByteOrderMark { at: 0 });
    }
    let mut p = Parser::new(body, paths);
    p.collect_strings = true;
    p.run()
}

/// Decodes a string's inner bytes (between the quotes, already validated
/// by [`inspect`]) into `out`, and records in `map`, for each decoded byte,
/// the offset in `inner` where its source starts, then one last entry,
/// `inner.len()`: decoded `a..b` (on char boundaries) came from
/// `inner[map[a]..map[b]]`. `None` if `inner` is not a valid string body.
pub fn decode_mapped(inner: &[u8], out: &mut Vec<u8>, map: &mut Vec<u32>) -> Option<()> {
    decode_into(inner, out, Some(map))
}

/// Decodes a string's inner bytes into `out`, recording the offset map in
/// `map` when given (see [`decode_mapped`]; without one, nothing but the
/// copy is paid).
pub fn decode_into(inner: &[u8], out: &mut Vec<u8>, mut map: Option<&mut Vec<u32>>) -> Option<()> {
    // Decoding never lengthens: room for all of it at once.
    out.clear();
    out.reserve(inner.len());
    if let Some(m) = map.as_deref_mut() {
        m.clear();
        m.reserve(inner.len() + 1);
    }
    let mut at = 0;
    loop {
        let rest = inner.get(at..)?;
        let run = crate::string_run::string_run(rest);
        out.extend_from_slice(rest.get(..run)?);
        if let Some(m) = map.as_deref_mut() {
            m.extend(at as u32..(at + run) as u32);
        }
        at += run;
        match inner.get(at) {
            None => break,
            Some(b'\\') => {}
            // A quote or a control byte: not a string body.
            Some(_) => return None,
        }
        let (c, len) = escape(inner.get(at..)?).ok()?;
        let mut buf = [0u8; 4];
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        out.extend_from_slice(bytes);
        if let Some(m) = map.as_deref_mut() {
            m.extend(core::iter::repeat_n(at as u32, bytes.len()));
        }
        at += len;
    }
    if let Some(m) = map {
        m.push(inner.len() as u32);
    }
    Some(())
}

/// The key path of a value, as the first `len` keys of `paths[rep]`; only
/// kept while it is a prefix of some requested path.
#[derive(Debug, Clone, Copy)]
struct Prefix {
    rep: usize,
    len: usize,
}

/// An open container.
struct Frame {
    /// Offset of its `[` or `{`.
    open: usize,
    /// Its key path, when requested paths go through or end at it.
    at: Option<Prefix>,
    kind: FrameKind,
}

enum FrameKind {
    Array,
    Object {
        /// Index in `Parser::keys` of this object's first key.
        first_key: usize,
        /// Indices into `Parser::keys`, once the object has many keys.
        index: Option<HashTable<usize>>,
    },
}

/// What the parser expects next.
#[derive(Clone, Copy)]
enum State {
    /// A value (after `:`, after `,` in an array, or the root).
    Value,
    /// A value or `]` (after `[`).
    ValueOrClose,
    /// A key or `}` (after `{`).
    KeyOrClose,
    /// A key (after `,` in an object).
    Key,
    /// `,` or a closing bracket, or the end of the body at the root.
    AfterValue,
}

struct Parser<'a, 'p> {
    body: &'a [u8],
    pos: usize,
    paths: &'p [&'p [&'p str]],
    frames: Vec<Frame>,
    /// The keys of every open object, innermost last.
    keys: Vec<Cow<'a, [u8]>>,
    hasher: DefaultHashBuilder,
    root: Option<Kind>,
    found: Vec<Option<Found>>,
    holders: Vec<Option<ObjectSpan>>,
    collect_strings: bool,
    strings: Vec<Range<usize>>,
}

impl<'a, 'p> Parser<'a, 'p> {
    fn new(body: &'a [u8], paths: &'p [&'p [&'p str]]) -> Self {
        Parser {
            body,
            pos: 0,
            paths,
            frames: Vec::new(),
            keys: Vec::new(),
            hasher: DefaultHashBuilder::default(),
            root: None,
            found: vec![None; paths.len()],
            holders: vec![None; paths.len()],
            collect_strings: false,
            strings: Vec::new(),
        }
    }

    fn run(mut self) -> Result<Inspected, JsonError> {
        self.skip_whitespace();
        if self.pos >= self.body.len() {
            return Err(JsonError::Empty { at: self.pos });
        }
        let mut slot = (!self.paths.is_empty()).then_some(Prefix { rep: 0, len: 0 });
        let mut state = State::Value;
        loop {
            self.skip_whitespace();
            let at = self.pos;
            let byte = self.body.get(at).copied();
            state = match (state, byte) {
                (State::ValueOrClose, Some(b']')) | (State::KeyOrClose, Some(b'}')) => {
                    self.close(at)?
                }
                (State::Value | State::ValueOrClose, _) => self.value(slot.take())?,
                (State::KeyOrClose | State::Key, Some(b'"')) => {
                    slot = self.key()?;
                    State::Value
                }
                (State::AfterValue, _) => match (self.frames.last().map(|f| &f.kind), byte) {
                    (None, None) => return self.finish(),
                    (None, Some(_)) => return Err(self.trailing(at)),
                    (Some(FrameKind::Array), Some(b',')) => {
                        self.pos += 1;
                        State::Value
                    }
                    (Some(FrameKind::Object { .. }), Some(b',')) => {
                        self.pos += 1;
                        State::Key
                    }
                    (Some(FrameKind::Array), Some(b']'))
                    | (Some(FrameKind::Object { .. }), Some(b'}')) => self.close(at)?,
                    (Some(_), _) => return Err(self.unexpected(at)),
                },
                (State::KeyOrClose | State::Key, _) => return Err(self.unexpected(at)),
            };
        }
    }

    fn finish(self) -> Result<Inspected, JsonError> {
        let root = self.root.ok_or(JsonError::Empty { at: 0 })?;
        Ok(Inspected {
            root,
            found: self.found,
            holders: self.holders,
            strings: self.strings,
        })
    }

    /// Parses the value at `self.pos`; `slot` is its key path, if requested.
    fn value(&mut self, slot: Option<Prefix>) -> Result<State, JsonError> {
        let at = self.pos;
        let (kind, end) = match self.body.get(at) {
            Some(b'{' | b'[') => return self.open(slot),
            Some(b'"') => (Kind::String, self.string()?.0),
            Some(b'-' | b'0'..=b'9') => (Kind::Number, self.number()?),
            Some(b't') => (Kind::Bool, self.literal(b"true")?),
            Some(b'f') => (Kind::Bool, self.literal(b"false")?),
            Some(b'n') => (Kind::Null, self.literal(b"null")?),
            _ => return Err(self.unexpected(at)),
        };
        self.pos = end;
        if self.collect_strings && kind == Kind::String {
            self.strings.push(at..end);
        }
        self.complete(slot, kind, at..end);
        Ok(State::AfterValue)
    }

    /// Opens the container at `self.pos`.
    fn open(&mut self, at: Option<Prefix>) -> Result<State, JsonError> {
        let open = self.pos;
        if self.frames.len() >= MAX_DEPTH {
            return Err(JsonError::TooDeep { at: open });
        }
        let (kind, state) = match self.body.get(open) {
            Some(b'{') => (
                FrameKind::Object {
                    first_key: self.keys.len(),
                    index: None,
                },
                State::KeyOrClose,
            ),
            _ => (FrameKind::Array, State::ValueOrClose),
        };
        self.frames.push(Frame { open, at, kind });
        self.pos += 1;
        Ok(state)
    }

    /// Closes the innermost container, whose closing bracket is at `close`.
    fn close(&mut self, close: usize) -> Result<State, JsonError> {
        let frame = self
            .frames
            .pop()
            .ok_or(JsonError::UnexpectedByte { at: close })?;
        self.pos = close + 1;
        let kind = match frame.kind {
            FrameKind::Array => Kind::Array,
            FrameKind::Object { first_key, .. } => {
                let empty = self.keys.len() <= first_key;
                self.keys.truncate(first_key);
                if let Some(prefix) = frame.at {
                    let span = ObjectSpan {
                        open: frame.open,
                        close,
                        empty,
                    };
                    self.record_holders(prefix, span);
                }
                Kind::Object
            }
        };
        self.complete(frame.at, kind, frame.open..close + 1);
        Ok(State::AfterValue)
    }

    /// Records a complete value: the root's kind, and `found` for every path
    /// that is exactly `slot`.
    fn complete(&mut self, slot: Option<Prefix>, kind: Kind, span: Range<usize>) {
        if self.frames.is_empty() {
            self.root = Some(kind);
        }
        let Some(prefix) = slot else { return };
        let Some(base) = prefix_keys(self.paths, prefix) else {
            return;
        };
        for (path, found) in self.paths.iter().zip(self.found.iter_mut()) {
            if *path == base {
                *found = Some(Found {
                    kind,
                    span: span.clone(),
                });
            }
        }
    }

    /// Records `object` as the holder of every path one key longer than `prefix`.
    fn record_holders(&mut self, prefix: Prefix, object: ObjectSpan) {
        let Some(base) = prefix_keys(self.paths, prefix) else {
            return;
        };
        for (path, holder) in self.paths.iter().zip(self.holders.iter_mut()) {
            if path.len() == prefix.len + 1 && path.get(..prefix.len) == Some(base) {
                *holder = Some(object);
            }
        }
    }

    /// Parses a key and the `:` after it, checks it is new in its object, and
    /// returns the key path of its value if a requested path goes there.
    fn key(&mut self) -> Result<Option<Prefix>, JsonError> {
        let at = self.pos;
        let (end, escaped) = self.string()?;
        let inner = self.body.get(at + 1..end - 1).unwrap_or_default();
        let key: Cow<'a, [u8]> = if escaped {
            Cow::Owned(
                decode(inner)
                    .ok_or(JsonError::InvalidEscape { at })?
                    .into_bytes(),
            )
        } else {
            Cow::Borrowed(inner)
        };
        self.pos = end;
        self.skip_whitespace();
        match self.body.get(self.pos) {
            Some(b':') => self.pos += 1,
            _ => return Err(self.unexpected(self.pos)),
        }
        let Some(frame) = self.frames.last_mut() else {
            return Err(JsonError::UnexpectedByte { at });
        };
        let child = frame
            .at
            .and_then(|prefix| child_prefix(self.paths, prefix, &key));
        let FrameKind::Object { first_key, index } = &mut frame.kind else {
            return Err(JsonError::UnexpectedByte { at });
        };
        let (keys, hasher) = (&mut self.keys, &self.hasher);
        let hash = hasher.hash_one(&*key);
        let duplicate = match index {
            None => keys
                .get(*first_key..)
                .unwrap_or_default()
                .iter()
                .any(|k| **k == *key),
            Some(table) => table.find(hash, |&i| keys_get(keys, i) == &*key).is_some(),
        };
        if duplicate {
            return Err(JsonError::DuplicateKey { at });
        }
        if keys.len().saturating_sub(*first_key) >= MAX_KEYS_PER_OBJECT {
            return Err(JsonError::TooManyKeys { at });
        }
        keys.push(key);
        let keys: &[Cow<'a, [u8]>] = keys;
        let hash_of = |i: &usize| hasher.hash_one(keys_get(keys, *i));
        match index {
            Some(table) => {
                table.insert_unique(hash, keys.len() - 1, hash_of);
            }
            None if keys.len() - *first_key > LINEAR_KEYS => {
                let mut table = HashTable::with_capacity(4 * LINEAR_KEYS);
                for i in *first_key..keys.len() {
                    table.insert_unique(hash_of(&i), i, hash_of);
                }
                *index = Some(table);
            }
            None => {}
        }
        Ok(child)
    }

    /// Scans the string whose opening quote is at `self.pos`, validating its
    /// UTF-8 and escapes. Returns the offset just past the closing quote and
    /// whether the string holds an escape. Does not move `self.pos`.
    fn string(&self) -> Result<(usize, bool), JsonError> {
        let body = self.body;
        let mut i = self.pos + 1;
        let mut escaped = false;
        loop {
            let rest = body.get(i..).unwrap_or_default();
            let run = crate::string_run::string_run(rest);
            // '"', '\' and control bytes are ASCII, so they never split a
            // valid multi-byte sequence: each run is checked on its own.
            if let Err(e) = core::str::from_utf8(rest.get(..run).unwrap_or_default()) {
                return Err(JsonError::InvalidUtf8 {
                    at: i + e.valid_up_to(),
                });
            }
            i += run;
            match body.get(i) {
                None => return Err(JsonError::UnexpectedEnd { at: i }),
                Some(b'"') => return Ok((i + 1, escaped)),
                Some(b'\\') => {
                    let (_, len) =
                        escape(body.get(i..).unwrap_or_default()).map_err(|e| e.at(i))?;
                    escaped = true;
                    i += len;
                }
                Some(_) => return Err(JsonError::ControlCharacter { at: i }),
            }
        }
    }

    /// Scans the number at `self.pos`; returns the offset just past it.
    fn number(&self) -> Result<usize, JsonError> {
        let start = self.pos;
        let invalid = JsonError::InvalidNumber { at: start };
        let mut i = start;
        if self.body.get(i) == Some(&b'-') {
            i += 1;
        }
        match self.body.get(i) {
            Some(b'0') => {
                i += 1;
                if self.body.get(i).is_some_and(u8::is_ascii_digit) {
                    return Err(invalid);
                }
            }
            Some(b'1'..=b'9') => i = self.digits(i),
            _ => return Err(invalid),
        }
        if self.body.get(i) == Some(&b'.') {
            let after = self.digits(i + 1);
            if after == i + 1 {
                return Err(invalid);
            }
            i = after;
        }
        if matches!(self.body.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(self.body.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let after = self.digits(i);
            if after == i {
                return Err(invalid);
            }
            i = after;
        }
        Ok(i)
    }

    /// The offset of the first non-digit at or after `i`.
    fn digits(&self, i: usize) -> usize {
        let rest = self.body.get(i..).unwrap_or_default();
        i + rest.iter().take_while(|b| b.is_ascii_digit()).count()
    }

    /// Matches `word` at `self.pos`; returns the offset just past it.
    fn literal(&self, word: &[u8]) -> Result<usize, JsonError> {
        let at = self.pos;
        let rest = self.body.get(at..).unwrap_or_default();
        match rest.iter().zip(word).position(|(a, b)| a != b) {
            Some(n) => Err(self.unexpected(at + n)),
            None if rest.len() < word.len() => Err(JsonError::UnexpectedEnd {
                at: self.body.len(),
            }),
            None => Ok(at + word.len()),
        }
    }

    /// The error for data after the root value at `at`: invalid UTF-8 is
    /// reported as such.
    fn trailing(&self, at: usize) -> JsonError {
        match self.unexpected(at) {
            e @ JsonError::InvalidUtf8 { .. } => e,
            _ => JsonError::TrailingData { at },
        }
    }

    fn skip_whitespace(&mut self) {
        let rest = self.body.get(self.pos..).unwrap_or_default();
        self.pos += rest
            .iter()
            .take_while(|&&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
    }

    /// The error for a byte the grammar does not allow at `at`: the end of
    /// the body, invalid UTF-8, or a misplaced byte.
    fn unexpected(&self, at: usize) -> JsonError {
        let Some(rest) = self.body.get(at..).filter(|r| !r.is_empty()) else {
            return JsonError::UnexpectedEnd { at };
        };
        let window = rest.get(..4).unwrap_or(rest);
        match core::str::from_utf8(window) {
            Err(e) if e.valid_up_to() == 0 => JsonError::InvalidUtf8 { at },
            _ => JsonError::UnexpectedByte { at },
        }
    }
}

fn keys_get<'k>(keys: &'k [Cow<'_, [u8]>], i: usize) -> &'k [u8] {
    keys.get(i).map_or(&[], |k| k)
}

/// The keys of `prefix`.
fn prefix_keys<'p>(paths: &[&'p [&'p str]], prefix: Prefix) -> Option<&'p [&'p str]> {
    paths.get(prefix.rep)?.get(..prefix.len)
}

/// The key path of the value under `key` in the object at `prefix`, if some
/// requested path goes through or ends at it.
fn child_prefix(paths: &[&[&str]], prefix: Prefix, key: &[u8]) -> Option<Prefix> {
    let base = prefix_keys(paths, prefix)?;
    let len = prefix.len;
    let rep = paths.iter().position(|path| {
        path.get(..len) == Some(base) && path.get(len).is_some_and(|k| k.as_bytes() == key)
    })?;
    Some(Prefix { rep, len: len + 1 })
}

/// Why an escape is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EscapeFault {
    Invalid,
    LoneSurrogate,
    Truncated,
}

impl EscapeFault {
    fn at(self, at: usize) -> JsonError {
        match self {
            Self::Invalid => JsonError::InvalidEscape { at },
            Self::LoneSurrogate => JsonError::LoneSurrogate { at },
            Self::Truncated => JsonError::UnexpectedEnd { at },
        }
    }
}

/// Decodes the escape at the start of `bytes` (which starts with `\`):
/// the character and the escape's length in bytes.
fn escape(bytes: &[u8]) -> Result<(char, usize), EscapeFault> {
    let c = match bytes.get(1) {
        None => return Err(EscapeFault::Truncated),
        Some(b'u') => return unicode_escape(bytes),
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(_) => return Err(EscapeFault::Invalid),
    };
    Ok((c, 2))
}

/// Decodes a `\uXXXX` escape, or a `\uXXXX\uXXXX` surrogate pair.
fn unicode_escape(bytes: &[u8]) -> Result<(char, usize), EscapeFault> {
    let unit = hex4(bytes.get(2..6))?;
    match unit {
        0xD800..=0xDBFF => {
            if bytes.get(6..8) != Some(b"\\u") {
                return Err(EscapeFault::LoneSurrogate);
            }
            let low = hex4(bytes.get(8..12))?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return Err(EscapeFault::LoneSurrogate);
            }
            let scalar = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            let c = char::from_u32(scalar).ok_or(EscapeFault::LoneSurrogate)?;
            Ok((c, 12))
        }
        0xDC00..=0xDFFF => Err(EscapeFault::LoneSurrogate),
        _ => char::from_u32(unit)
            .map(|c| (c, 6))
            .ok_or(EscapeFault::Invalid),
    }
}

fn hex4(digits: Option<&[u8]>) -> Result<u32, EscapeFault> {
    let digits = digits.ok_or(EscapeFault::Truncated)?;
    digits.iter().try_fold(0u32, |acc, &b| {
        let v = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(EscapeFault::Invalid),
        };
        Ok((acc << 4) | u32::from(v))
    })
}

/// Decodes the inside of a string (between its quotes); `None` if it is not
/// a well-formed JSON string body.
fn decode(inner: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    decode_into(inner, &mut out, None)?;
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const MODEL: &[&str] = &["model"];
    const MAX_OUT: &[&str] = &["generationConfig", "maxOutputTokens"];
    const INCLUDE_USAGE: &[&str] = &["stream_options", "include_usage"];

    fn ok(body: &str) -> Inspected {
        ok_paths(body, &[MODEL, MAX_OUT, INCLUDE_USAGE])
    }

    fn ok_paths(body: &str, paths: &[&[&str]]) -> Inspected {
        inspect(body.as_bytes(), paths).unwrap_or_else(|e| panic!("{body:?}: {e}"))
    }

    fn err(body: &[u8]) -> JsonError {
        match inspect(body, &[MODEL]) {
            Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(body)),
            Err(e) => e,
        }
    }

    fn code(body: &[u8]) -> &'static str {
        err(body).code()
    }

    fn number(raw: &str) -> Result<u64, NumberError> {
        let body = format!("{{\"n\":{raw}}}");
        let found = ok_paths(&body, &[&["n"]]).found(0).cloned().unwrap();
        found.strict_u64(body.as_bytes())
    }

    #[test]
    fn finds_the_model_in_a_chat_request() {
        let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
        let got = ok(body);
        assert_eq!(got.root, Kind::Object);
        let model = got.found(0).unwrap();
        assert_eq!(model.kind, Kind::String);
        assert_eq!(model.raw(body.as_bytes()), Some(&b"\"gpt-4o\""[..]));
        assert_eq!(model.string(body.as_bytes()).as_deref(), Some("gpt-4o"));
        assert_eq!(got.found(1), None);
        assert_eq!(
            got.holder(0),
            Some(ObjectSpan {
                open: 0,
                close: body.len() - 1,
                empty: false
            })
        );
    }

    #[test]
    fn accepts_every_kind_of_value_and_reports_the_root_kind() {
        let cases = [
            ("{}", Kind::Object),
            (
                " [1, -0.5e+3, \"x\", true, false, null, {}, []] ",
                Kind::Array,
            ),
            ("\"s\"", Kind::String),
            ("-0", Kind::Number),
            ("1E-7", Kind::Number),
            ("true", Kind::Bool),
            ("null", Kind::Null),
            ("\t\r\n{\"a\" : [ ] }\n", Kind::Object),
        ];
        for (body, kind) in cases {
            assert_eq!(ok(body).root, kind, "{body}");
        }
    }

    #[test]
    fn rejects_a_duplicate_key_in_either_order() {
        assert_eq!(code(br#"{"model":"a","model":"b"}"#), "duplicate_key");
        assert_eq!(code(br#"{"model":"b","model":"a"}"#), "duplicate_key");
        assert_eq!(
            err(br#"{"model":"a","model":"b"}"#),
            JsonError::DuplicateKey { at: 13 }
        );
    }

    #[test]
    fn rejects_a_nested_duplicate_key() {
        let body = br#"{"messages":[{"role":"user","content":"a","role":"system"}]}"#;
        assert_eq!(code(body), "duplicate_key");
        assert_eq!(code(br#"{"a":{"b":{"c":1,"c":2}}}"#), "duplicate_key");
    }

    #[test]
    fn rejects_a_duplicate_key_spelled_with_escapes() {
        assert_eq!(code(br#"{"model":1,"mod\u0065l":2}"#), "duplicate_key");
        assert_eq!(code(br#"{"mod\u0065l":1,"model":2}"#), "duplicate_key");
        assert_eq!(code(br#"{"a\/b":1,"a/b":2}"#), "duplicate_key");
    }

    #[test]
    fn allows_the_same_key_in_sibling_and_nested_objects() {
        ok(r#"{"a":{"a":1},"b":{"a":2},"c":[{"a":1},{"a":2}]}"#);
    }

    #[test]
    fn finds_duplicates_in_objects_larger_than_the_linear_scan() {
        let members: Vec<String> = (0..1000).map(|i| format!("\"k{i}\":{i}")).collect();
        let body = format!("{{{}}}", members.join(","));
        ok(&body);
        let dup = format!("{{{},\"k7\":0}}", members.join(","));
        assert_eq!(code(dup.as_bytes()), "duplicate_key");
        let escaped = format!("{{{},\"k\\u0039\":0}}", members.join(","));
        assert_eq!(code(escaped.as_bytes()), "duplicate_key");
        // Keys of a closed child object do not leak into the parent's table.
        let nested = format!("{{{},\"inner\":{{\"x\":1}},\"x\":2}}", members.join(","));
        ok(&nested);
    }

    #[test]
    fn decodes_escapes_in_found_strings() {
        let body = r#"{"model":"gpt-4\u006f"}"#;
        let got = ok(body);
        assert_eq!(
            got.found(0).unwrap().string(body.as_bytes()).as_deref(),
            Some("gpt-4o")
        );
        let body = r#"{"model":"\"\\\/\b\f\n\r\t\u00e9\u20AC"}"#;
        let got = ok(body);
        assert_eq!(
            got.found(0).unwrap().string(body.as_bytes()).as_deref(),
            Some("\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{20ac}")
        );
    }

    #[test]
    fn matches_a_path_key_written_with_escapes() {
        let body = r#"{"mod\u0065l":"x"}"#;
        assert_eq!(
            ok(body)
                .found(0)
                .unwrap()
                .string(body.as_bytes())
                .as_deref(),
            Some("x")
        );
    }

    #[test]
    fn joins_a_surrogate_pair() {
        let body = r#"{"model":"\uD83D\uDE00 \ud83d\ude00"}"#;
        let got = ok(body);
        assert_eq!(
            got.found(0).unwrap().string(body.as_bytes()).as_deref(),
            Some("\u{1F600} \u{1F600}")
        );
    }

    #[test]
    fn rejects_lone_surrogates() {
        for body in [
            &br#"{"model":"\uD83D"}"#[..],
            br#"{"model":"\uD83Dx"}"#,
            br#"{"model":"\uDE00"}"#,
            br#"{"model":"x\uDE00\uD83D"}"#,
            br#"{"model":"\uD83D\u0041"}"#,
            br#"{"model":"\uD83D\uD83D"}"#,
            br#"{"model":"\uD83D\n"}"#,
            br#"{"\uD800":1}"#,
        ] {
            assert_eq!(
                code(body),
                "lone_surrogate",
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            err(br#"{"model":"ab\uDE00"}"#),
            JsonError::LoneSurrogate { at: 12 }
        );
    }

    #[test]
    fn rejects_invalid_utf8_inside_and_outside_strings() {
        assert_eq!(
            err(b"{\"model\":\"a\xffb\"}"),
            JsonError::InvalidUtf8 { at: 11 }
        );
        assert_eq!(err(b"{\"mo\xc3\"}"), JsonError::InvalidUtf8 { at: 4 });
        assert_eq!(err(b"{\"model\":\xff}"), JsonError::InvalidUtf8 { at: 9 });
        assert_eq!(err(b"{\"a\":1}\xc3"), JsonError::InvalidUtf8 { at: 7 });
        // A valid non-ASCII character outside a string is a syntax error.
        assert_eq!(code("{\"a\":é}".as_bytes()), "unexpected_byte");
        // Multi-byte characters inside strings are fine.
        let body = "{\"model\":\"é€😀\"}";
        assert_eq!(
            ok(body)
                .found(0)
                .unwrap()
                .string(body.as_bytes())
                .as_deref(),
            Some("é€😀")
        );
    }

    #[test]
    fn rejects_overlong_forms_and_encoded_surrogates() {
        for bad in [
            &b"\xc0\xaf"[..],
            b"\xe0\x80\xaf",
            b"\xf0\x80\x80\xaf",
            b"\xed\xa0\x80",
            b"\xed\xbf\xbf",
            b"\xf4\x90\x80\x80",
            b"\xe2\x82",
            b"\x80",
        ] {
            let mut body = b"{\"model\":\"".to_vec();
            body.extend_from_slice(bad);
            body.extend_from_slice(b"\"}");
            assert_eq!(err(&body), JsonError::InvalidUtf8 { at: 10 }, "{bad:x?}");
        }
    }

    #[test]
    fn rejects_trailing_data_after_the_root_value() {
        assert_eq!(err(br#"{"a":1}{"b":2}"#), JsonError::TrailingData { at: 7 });
        assert_eq!(err(b"{} x"), JsonError::TrailingData { at: 3 });
        assert_eq!(code(b"1 2"), "trailing_data");
        assert_eq!(code(b"{}\x00"), "trailing_data");
        ok("{}  \r\n\t");
    }

    #[test]
    fn rejects_empty_bodies_and_byte_order_marks() {
        assert_eq!(err(b""), JsonError::Empty { at: 0 });
        assert_eq!(err(b" \n"), JsonError::Empty { at: 2 });
        assert_eq!(err(b"\xEF\xBB\xBF{}"), JsonError::ByteOrderMark { at: 0 });
    }

    #[test]
    fn accepts_depth_64_and_rejects_depth_65() {
        let nested = |depth: usize| {
            let mut body = "{\"a\":".repeat(depth - 1);
            body.push_str("{}");
            body.push_str(&"}".repeat(depth - 1));
            body
        };
        ok(&nested(MAX_DEPTH));
        assert_eq!(
            err(nested(MAX_DEPTH + 1).as_bytes()),
            JsonError::TooDeep { at: 5 * MAX_DEPTH }
        );
        let arrays = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        ok(&arrays(MAX_DEPTH));
        assert_eq!(code(arrays(MAX_DEPTH + 1).as_bytes()), "too_deep");
    }

    #[test]
    fn rejects_100k_nested_arrays_without_deep_recursion() {
        let body = "[".repeat(100_000);
        assert_eq!(err(body.as_bytes()), JsonError::TooDeep { at: MAX_DEPTH });
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(code(body.as_bytes()), "too_deep");
    }

    #[test]
    fn accepts_a_10_mb_string_value() {
        let mut body = String::from("{\"model\":\"m\",\"prompt\":\"");
        body.push_str(&"aé\\n".repeat(10 * 1024 * 1024 / 5));
        body.push_str("\"}");
        let got = ok(&body);
        assert_eq!(
            got.found(0).unwrap().string(body.as_bytes()).as_deref(),
            Some("m")
        );
    }

    #[test]
    fn rejects_syntax_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"{\"a\":1,}", "unexpected_byte"),
            (b"[1,]", "unexpected_byte"),
            (b"[,1]", "unexpected_byte"),
            (b"{,}", "unexpected_byte"),
            (b"{\"a\" 1}", "unexpected_byte"),
            (b"{\"a\":1 \"b\":2}", "unexpected_byte"),
            (b"{a:1}", "unexpected_byte"),
            (b"{'a':1}", "unexpected_byte"),
            (b"{1:1}", "unexpected_byte"),
            (b"[1}", "unexpected_byte"),
            (b"{\"a\":1]", "unexpected_byte"),
            (b"// c\n{}", "unexpected_byte"),
            (b"{} /* c */", "trailing_data"),
            (b"{\"a\":/*c*/1}", "unexpected_byte"),
            (b"[NaN]", "unexpected_byte"),
            (b"[Infinity]", "unexpected_byte"),
            (b"[tru]", "unexpected_byte"),
            (b"[True]", "unexpected_byte"),
            (b"[nul", "unexpected_end"),
            (b"{\"a\":1", "unexpected_end"),
            (b"{\"a\"", "unexpected_end"),
            (b"[\"abc", "unexpected_end"),
            (b"[\"ab\\", "unexpected_end"),
            (b"[\"\\u12", "unexpected_end"),
            (b"[01]", "invalid_number"),
            (b"[007]", "invalid_number"),
            (b"[-]", "invalid_number"),
            (b"[-01]", "invalid_number"),
            (b"[+1]", "unexpected_byte"),
            (b"[.5]", "unexpected_byte"),
            (b"[1.]", "invalid_number"),
            (b"[1.e5]", "invalid_number"),
            (b"[1e]", "invalid_number"),
            (b"[1e+]", "invalid_number"),
            (b"[0x10]", "unexpected_byte"),
            (b"[\"a\tb\"]", "control_character"),
            (b"[\"a\nb\"]", "control_character"),
            (b"[\"a\x00b\"]", "control_character"),
            (b"[\"\\x41\"]", "invalid_escape"),
            (b"[\"\\'\"]", "invalid_escape"),
            (b"[\"\\u12G4\"]", "invalid_escape"),
            (b"[\"\\U0041\"]", "invalid_escape"),
            (b"\x0c{}", "unexpected_byte"),
            (b"\xc2\xa0{}", "unexpected_byte"),
        ];
        for (body, want) in cases {
            assert_eq!(code(body), *want, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn strict_u64_accepts_only_plain_integers_up_to_u32_max() {
        assert_eq!(number("4096"), Ok(4096));
        assert_eq!(number("0"), Ok(0));
        assert_eq!(number("4294967295"), Ok(u64::from(u32::MAX)));
        assert_eq!(number("4294967296"), Err(NumberError::TooLarge));
        assert_eq!(
            number("99999999999999999999999"),
            Err(NumberError::TooLarge)
        );
        assert_eq!(number("1e9"), Err(NumberError::Exponent));
        assert_eq!(number("1e400"), Err(NumberError::Exponent));
        assert_eq!(number("4096.0"), Err(NumberError::Fraction));
        assert_eq!(number("-1"), Err(NumberError::Negative));
        assert_eq!(number("-0"), Err(NumberError::Negative));
        assert_eq!(number("\"4096\""), Err(NumberError::NotANumber));
        assert_eq!(number("null"), Err(NumberError::NotANumber));
        assert_eq!(number("true"), Err(NumberError::NotANumber));
        assert_eq!(number("[1]"), Err(NumberError::NotANumber));
        // `007` never passes inspect; a hand-made span over it is still refused.
        assert_eq!(code(b"{\"n\":007}"), "invalid_number");
        let raw = Found {
            kind: Kind::Number,
            span: 0..3,
        };
        assert_eq!(raw.strict_u64(b"007"), Err(NumberError::LeadingZero));
        assert_eq!(raw.strict_u64(b"0a7"), Err(NumberError::NotANumber));
    }

    #[test]
    fn as_bool_reads_only_json_bools() {
        let body = r#"{"stream_options":{"include_usage":true},"model":"true"}"#;
        let got = ok(body);
        assert_eq!(got.found(2).unwrap().as_bool(body.as_bytes()), Some(true));
        assert_eq!(got.found(0).unwrap().as_bool(body.as_bytes()), None);
        let body = r#"{"stream_options":{"include_usage":false}}"#;
        assert_eq!(
            ok(body).found(2).unwrap().as_bool(body.as_bytes()),
            Some(false)
        );
    }

    #[test]
    fn finds_values_at_depth_two_and_their_holders() {
        let body = r#"{"generationConfig":{"temperature":0,"maxOutputTokens":256},"contents":[]}"#;
        let got = ok(body);
        let found = got.found(1).unwrap();
        assert_eq!(found.kind, Kind::Number);
        assert_eq!(found.strict_u64(body.as_bytes()), Ok(256));
        let holder = got.holder(1).unwrap();
        assert_eq!(holder.open, 20);
        assert_eq!(body.as_bytes().get(holder.close), Some(&b'}'));
        assert_eq!(Some(holder.close), body.find("},"));
        assert!(!holder.empty);
        // The model is absent; the root object would hold it.
        assert_eq!(got.found(0), None);
        assert_eq!(
            got.holder(0).map(|h| (h.open, h.close)),
            Some((0, body.len() - 1))
        );
        // No stream_options: no holder for include_usage.
        assert_eq!((got.found(2), got.holder(2)), (None, None));
    }

    #[test]
    fn reports_an_empty_holder_when_the_parent_object_is_empty() {
        let body = r#"{"stream_options": { } }"#;
        let got = ok(body);
        assert_eq!(got.found(2), None);
        assert_eq!(
            got.holder(2),
            Some(ObjectSpan {
                open: 19,
                close: 21,
                empty: true
            })
        );
        let got = ok("{}");
        assert_eq!(
            got.holder(0),
            Some(ObjectSpan {
                open: 0,
                close: 1,
                empty: true
            })
        );
    }

    #[test]
    fn has_no_holder_when_a_parent_is_not_an_object() {
        for body in [
            r#"{"stream_options":true}"#,
            r#"{"stream_options":[{"include_usage":true}]}"#,
            r#"{"stream_options":"{\"include_usage\":true}"}"#,
            r#"{"stream_options":null}"#,
        ] {
            let got = ok(body);
            assert_eq!((got.found(2), got.holder(2)), (None, None), "{body}");
            assert!(got.found(0).is_none());
        }
        for body in [r#"[{"model":"x"}]"#, r#""model""#] {
            let got = ok(body);
            assert_eq!((got.found(0), got.holder(0)), (None, None), "{body}");
        }
    }

    #[test]
    fn records_containers_and_paths_sharing_a_prefix() {
        let paths: &[&[&str]] = &[
            &["a"],
            &["a", "b"],
            &["a", "c"],
            &["a", "b"],
            &[],
            &["x", "y", "z"],
        ];
        let body = r#"{"a":{"c":[1,{"b":2}],"b":{"z":1}},"x":{"y":{"z":null}}}"#;
        let got = ok_paths(body, paths);
        let raw = |i: usize| got.found(i).and_then(|f| f.raw(body.as_bytes()));
        assert_eq!(raw(0), Some(&br#"{"c":[1,{"b":2}],"b":{"z":1}}"#[..]));
        assert_eq!(raw(1), Some(&br#"{"z":1}"#[..]));
        assert_eq!(raw(2), Some(&br#"[1,{"b":2}]"#[..]));
        assert_eq!(raw(3), raw(1));
        assert_eq!(raw(4), Some(body.as_bytes()));
        assert_eq!(got.found(5).map(|f| f.kind), Some(Kind::Null));
        assert_eq!(got.holder(1), got.holder(2));
        assert_eq!(got.holder(4), None);
        assert_eq!(got.holder(5).map(|h| h.open), body.find(r#"{"z":null"#));
    }

    #[test]
    fn errors_have_stable_codes_and_do_not_echo_the_body() {
        let e = err(br#"{"secret-key":1,"secret-key":2}"#);
        assert_eq!(e.code(), "duplicate_key");
        let text = e.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert!(text.ends_with("at byte 16"), "{text}");
        assert_eq!(NumberError::TooLarge.code(), "number_too_large");
    }
}
