//! A small pull reader of JSON for [`super`]: the values at a few key
//! paths of one object (or of each object in an array), and nothing else.
//!
//! Invariants:
//! - It follows the RFC 8259 grammar (numbers, escapes, literals, no
//!   trailing data) but does not check that string contents are UTF-8 or
//!   that `\u` escapes pair their surrogates: neither changes a document's
//!   structure, and such a key (like any key that is not ASCII) is simply
//!   an unknown one.
//! - It recurses only into objects on the requested paths (at most four
//!   keys deep); everything else is skipped by a loop whose stack holds one
//!   byte per open container, so nesting of any depth costs no recursion.
//! - A key read twice in one object on the paths refuses the document;
//!   keys are compared after decoding escapes, in a fixed buffer of
//!   [`NAME_MAX`] bytes. Nothing else is copied.
//! - Every byte access is checked: no panic on any input.

/// The most paths one reading asks for.
pub(super) const MAX_PATHS: usize = 8;

/// The longest key kept for comparison; no field name read is longer,
/// so a longer key is an unknown one.
pub(super) const NAME_MAX: usize = 32;

/// What a document holds at one requested path.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value {
    /// Nothing: the key is missing, or a value on the way is not an object.
    #[default]
    Absent,
    /// A non-negative integer that fits `u64`, written without sign,
    /// fraction or exponent.
    Count(u64),
    /// An object.
    Object,
    /// An array with no elements.
    EmptyArray,
    /// Any other value.
    Other,
}

/// Reads the JSON object `json` at `paths` (key paths from the root object,
/// at most [`MAX_PATHS`] of them); `values[i]` is what is at `paths[i]`.
/// `None` when `json` is not one JSON object, or when an object on the paths
/// holds one of the keys read twice.
pub(super) fn read(json: &[u8], paths: &[&[&str]]) -> Option<[Value; MAX_PATHS]> {
    let mut reader = Reader { json, pos: 0 };
    let mut values = [Value::Absent; MAX_PATHS];
    reader.object(paths, 0, all_paths(paths), &mut values)?;
    reader.at_end().then_some(values)
}

/// The bit of path `i` in a path set.
fn bit(i: usize) -> u32 {
    u32::try_from(i)
        .ok()
        .and_then(|i| 1u32.checked_shl(i))
        .unwrap_or(0)
}

/// Every path of `paths` that can be recorded, as a set.
fn all_paths(paths: &[&[&str]]) -> u32 {
    (0..paths.len().min(MAX_PATHS)).fold(0, |set, i| set | bit(i))
}

/// The paths of the set `among` that `keep` accepts, as a set.
fn select(paths: &[&[&str]], among: u32, keep: impl Fn(&[&str]) -> bool) -> u32 {
    paths.iter().enumerate().fold(0, |set, (i, path)| {
        if among & bit(i) != 0 && keep(path) {
            set | bit(i)
        } else {
            set
        }
    })
}

/// A key decoded far enough to compare it with a field name: its first
/// [`NAME_MAX`] bytes and its length. A character that is not ASCII, raw
/// or escaped, is stored as a byte no field name holds.
struct Name {
    bytes: [u8; NAME_MAX],
    len: usize,
}

impl Name {
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
        }
        self.len = self.len.saturating_add(1);
    }

    fn extend(&mut self, run: &[u8]) {
        let end = self.len.saturating_add(run.len());
        if let Some(slot) = self.bytes.get_mut(self.len..end) {
            slot.copy_from_slice(run);
        }
        self.len = end;
    }

    fn is(&self, field: &str) -> bool {
        self.bytes.get(..self.len) == Some(field.as_bytes())
    }
}

/// A cursor over a JSON document. Every method that fails returns `None`
/// and leaves the cursor anywhere: a failure refuses the whole document.
struct Reader<'a> {
    json: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.json.get(self.pos).copied()
    }

    fn rest(&self) -> &[u8] {
        self.json.get(self.pos..).unwrap_or_default()
    }

    fn skip_whitespace(&mut self) {
        let n = self
            .rest()
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        self.pos += n;
    }

    /// Skips whitespace, then takes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let next = self.peek() == Some(byte);
        if next {
            self.pos += 1;
        }
        next
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// Whether only whitespace is left.
    fn at_end(&mut self) -> bool {
        self.skip_whitespace();
        self.pos >= self.json.len()
    }

    /// Reads the object that comes next. `paths` selects the values to
    /// record: the object is at the first `depth` keys of every path in the
    /// set `active`. Recurses only into values that a longer path goes
    /// through, so never deeper than the longest path.
    fn object(
        &mut self,
        paths: &[&[&str]],
        depth: usize,
        active: u32,
        values: &mut [Value; MAX_PATHS],
    ) -> Option<()> {
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Some(());
        }
        let mut seen = 0;
        loop {
            let name = self.string()?;
            self.expect(b':')?;
            let hits = select(paths, active, |path| {
                path.get(depth).is_some_and(|key| name.is(key))
            });
            if hits == 0 {
                self.skip_value()?;
            } else {
                // Paths sharing this key are hit together, and no other key
                // hits them: a key met twice hits a path seen before.
                if hits & seen != 0 {
                    return None;
                }
                seen |= hits;
                let deeper = select(paths, hits, |path| path.len() > depth + 1);
                let value = self.value(paths, depth + 1, deeper, values)?;
                let ends = select(paths, hits, |path| path.len() == depth + 1);
                for (i, slot) in values.iter_mut().enumerate() {
                    if ends & bit(i) != 0 {
                        *slot = value;
                    }
                }
            }
            if self.eat(b'}') {
                return Some(());
            }
            self.expect(b',')?;
        }
    }

    /// Reads a value at a requested path; an object is read further when
    /// `deeper` paths go through it.
    fn value(
        &mut self,
        paths: &[&[&str]],
        depth: usize,
        deeper: u32,
        values: &mut [Value; MAX_PATHS],
    ) -> Option<Value> {
        self.skip_whitespace();
        let start = self.pos;
        match self.peek()? {
            b'{' if deeper != 0 => {
                self.object(paths, depth, deeper, values)?;
                Some(Value::Object)
            }
            b'{' => {
                self.skip_value()?;
                Some(Value::Object)
            }
            b'[' => {
                self.pos += 1;
                if self.eat(b']') {
                    return Some(Value::EmptyArray);
                }
                self.pos = start;
                self.skip_value()?;
                Some(Value::Other)
            }
            _ => self.scalar(),
        }
    }

    /// Skips the value that comes next, of any depth, without storing it.
    fn skip_value(&mut self) -> Option<()> {
        // The open containers, innermost last: `true` for an object.
        let mut open: Vec<bool> = Vec::new();
        loop {
            // A value comes next.
            if self.eat(b'{') {
                if !self.eat(b'}') {
                    open.push(true);
                    self.string()?;
                    self.expect(b':')?;
                    continue;
                }
            } else if self.eat(b'[') {
                if !self.eat(b']') {
                    open.push(false);
                    continue;
                }
            } else {
                self.scalar()?;
            }
            // A value ended: close containers until a comma or the end.
            loop {
                let Some(&object) = open.last() else {
                    return Some(());
                };
                if self.eat(b',') {
                    if object {
                        self.string()?;
                        self.expect(b':')?;
                    }
                    break;
                }
                self.expect(if object { b'}' } else { b']' })?;
                open.pop();
            }
        }
    }

    /// Reads the string, number or literal that comes next.
    fn scalar(&mut self) -> Option<Value> {
        self.skip_whitespace();
        let (value, len) = match self.peek()? {
            b'"' => {
                self.string()?;
                return Some(Value::Other);
            }
            b'-' | b'0'..=b'9' => return self.number(),
            b't' if self.rest().starts_with(b"true") => (Value::Other, 4),
            b'f' if self.rest().starts_with(b"false") => (Value::Other, 5),
            b'n' if self.rest().starts_with(b"null") => (Value::Other, 4),
            _ => return None,
        };
        self.pos += len;
        Some(value)
    }

    /// Reads the number that comes next: a count when it is a plain
    /// non-negative integer that fits `u64`, else [`Value::Other`].
    fn number(&mut self) -> Option<Value> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let start = self.pos;
        let digits = self.digits();
        if digits == 0 || (digits > 1 && self.peek_at(start) == Some(b'0')) {
            return None;
        }
        let integer = self.json.get(start..self.pos).unwrap_or_default();
        let mut plain = !negative;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return None;
            }
            plain = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            plain = false;
        }
        let count = integer.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?
                .checked_add(u64::from(d.wrapping_sub(b'0')))
        });
        Some(match count {
            Some(n) if plain => Value::Count(n),
            _ => Value::Other,
        })
    }

    fn peek_at(&self, at: usize) -> Option<u8> {
        self.json.get(at).copied()
    }

    /// Takes the digits that come next; returns how many.
    fn digits(&mut self) -> usize {
        let n = self
            .rest()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.pos += n;
        n
    }

    /// Reads the string that comes next, checking its escapes and that it
    /// holds no raw control character; returns it decoded as a [`Name`].
    fn string(&mut self) -> Option<Name> {
        self.expect(b'"')?;
        let mut name = Name {
            bytes: [0; NAME_MAX],
            len: 0,
        };
        loop {
            let rest = self.rest();
            let run = crate::string_run::string_run(rest);
            if run == rest.len() {
                return None;
            }
            name.extend(rest.get(..run).unwrap_or_default());
            let (byte, len) = match rest.get(run..).unwrap_or_default() {
                [b'"', ..] => {
                    self.pos += run + 1;
                    return Some(name);
                }
                [b'\\', b'u', digits @ ..] => {
                    let unit = digits.get(..4)?.iter().try_fold(0u32, |unit, &d| {
                        Some(unit << 4 | char::from(d).to_digit(16)?)
                    })?;
                    // Surrogates, paired or not, and every other character
                    // beyond ASCII can only be part of an unknown key.
                    (
                        u8::try_from(unit).ok().filter(u8::is_ascii).unwrap_or(0xFF),
                        6,
                    )
                }
                [b'\\', escaped, ..] => {
                    let byte = match escaped {
                        b'"' | b'\\' | b'/' => *escaped,
                        b'b' => 0x08,
                        b'f' => 0x0C,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        _ => return None,
                    };
                    (byte, 2)
                }
                _ => return None,
            };
            name.push(byte);
            self.pos += run + len;
        }
    }
}

/// Reads the JSON array `json`, each element that is an object at `paths`
/// (other elements are skipped), handing `each` the values of each such
/// object in order. `None` when `json` is not one JSON array, or an element
/// object is refused as [`read`] refuses one.
pub(super) fn read_each(
    json: &[u8],
    paths: &[&[&str]],
    mut each: impl FnMut(&[Value; MAX_PATHS]),
) -> Option<()> {
    let mut reader = Reader { json, pos: 0 };
    reader.expect(b'[')?;
    if !reader.eat(b']') {
        loop {
            reader.skip_whitespace();
            if reader.peek() == Some(b'{') {
                let mut values = [Value::Absent; MAX_PATHS];
                reader.object(paths, 0, all_paths(paths), &mut values)?;
                each(&values);
            } else {
                reader.skip_value()?;
            }
            if reader.eat(b']') {
                break;
            }
            reader.expect(b',')?;
        }
    }
    reader.at_end().then_some(())
}

/// Whether the reader takes `json` as one JSON value, skipping it whole.
#[cfg(test)]
pub(super) fn skips(json: &[u8]) -> bool {
    let mut reader = Reader { json, pos: 0 };
    reader.skip_value().is_some() && reader.at_end()
}
