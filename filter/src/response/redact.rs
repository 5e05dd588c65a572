//! Key-echo redaction: the provider key the gateway injected never reaches
//! the client.
//!
//! Some providers echo the credential they were sent in an error body
//! (`Incorrect API key provided: sk-proj-…`). A [`Redactor`] is compiled once
//! from that key and masks every echo of it on the way back: in header values
//! ([`Redactor::redact_value`]) and in the body, fed chunk by chunk as Envoy
//! delivers it ([`Redactor::feed`], then [`Redactor::finish`]), whatever the
//! status and content type.
//!
//! An echo is any of the key's [`forms`]: its raw bytes, the ways common JSON
//! serialisers escape it (`\/`, `\"`, `\n`, `\u00XX`, …) and its
//! percent-encodings (`%2B`, `%2F`, `%3D`, …).
//!
//! Invariants:
//! - Same length out as in: each byte of an echo becomes `*` (or, for a key
//!   that contains `*`, another byte that no form contains); every other byte
//!   goes on unchanged, in order, exactly once. Content-Length stays valid.
//! - Chunking changes nothing: the outputs of the `feed`s and `finish`,
//!   concatenated, equal the one-shot output, wherever the chunks were split.
//! - As little as possible waits: after each chunk only the longest suffix of
//!   the stream that is a proper prefix of some form is held back, so a near
//!   miss is released on the byte that breaks it. That is always shorter than
//!   the longest form.
//! - Linear time: an Aho-Corasick automaton over the forms steps once per
//!   byte (amortised) and skips, eight bytes at a time, bytes that start no
//!   form; a match masks only what lies outside the last masked run. A chunk
//!   costs O(chunk + longest form) unless echoes overlap.
//! - The key is never logged or printed: `Debug` shows only lengths.
//! - Keys shorter than [`MIN_SECRET_LEN`] bytes are refused: masking so short
//!   a string would mangle ordinary text, so the caller fails closed instead.
//!
//! Not covered: a partial echo (a provider printing `sk-proj-…abcd`, or a
//! stream that ends mid-key) is a near miss and goes through unchanged, as do
//! encodings other than the [`forms`] (base64, double JSON escaping, case
//! changes).

use std::fmt;
use std::sync::Arc;

/// The shortest key a [`Redactor`] accepts.
pub const MIN_SECRET_LEN: usize = 8;

/// Masks every echo of one key, in header values and in a chunked body.
///
/// Compile one per key and clone it per stream: clones share the compiled
/// automaton (a clone costs an `Arc` increment), and a clone of a fresh
/// redactor, like a redactor after [`Redactor::finish`], starts a new stream.
#[derive(Clone)]
pub struct Redactor {
    automaton: Arc<Automaton>,
    cursor: Cursor,
    /// Scanned bytes not yet sent on, masked where a match covered them: the
    /// longest suffix of the stream that may still grow into an echo.
    held: Vec<u8>,
}

impl Redactor {
    /// None when the secret is too short to redact safely (< 8 bytes): the
    /// caller then fails closed.
    pub fn new(secret: &[u8]) -> Option<Self> {
        if secret.len() < MIN_SECRET_LEN {
            return None;
        }
        Some(Redactor {
            automaton: Arc::new(Automaton::new(&forms(secret))),
            cursor: Cursor::default(),
            held: Vec::new(),
        })
    }

    /// Feeds one chunk; appends to `out` every byte that can be sent on now,
    /// with matches replaced. Returns the number of redactions made.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> u32 {
        let start = out.len();
        let scanned = self.held.len();
        out.extend_from_slice(&self.held);
        out.extend_from_slice(chunk);
        let count = match out.get_mut(start..) {
            Some(window) => self.automaton.scan(&mut self.cursor, window, scanned),
            None => 0,
        };
        let hold = self.automaton.hold_len(self.cursor.node);
        let split = out.len().saturating_sub(hold).max(start);
        self.held.clear();
        if let Some(tail) = out.get(split..) {
            self.held.extend_from_slice(tail);
        }
        out.truncate(split);
        count
    }

    /// Steps over `chunk` when it can go on exactly as it is: nothing is
    /// held from earlier chunks, it holds no echo, and it does not end in
    /// the start of one. Then the redactor has consumed it and the caller
    /// forwards the chunk itself (no copy); returns true. Otherwise nothing
    /// changes and the caller must [`Redactor::feed`] it; returns false.
    pub fn pass(&mut self, chunk: &[u8]) -> bool {
        if !self.held.is_empty() {
            return false;
        }
        let mut cursor = self.cursor;
        let mut i = 0;
        if self
            .automaton
            .next_match(&mut cursor.node, chunk, &mut i)
            .is_some()
            || self.automaton.hold_len(cursor.node) > 0
        {
            return false;
        }
        cursor.scanned = cursor.scanned.saturating_add(to_u64(chunk.len()));
        self.cursor = cursor;
        true
    }

    /// End of stream: flushes the held-back tail, unchanged (it is a near
    /// miss: a prefix of an echo, never a whole one), and readies the
    /// redactor for a new stream. Returns 0: every match completes in
    /// [`Redactor::feed`].
    pub fn finish(&mut self, out: &mut Vec<u8>) -> u32 {
        out.append(&mut self.held);
        self.cursor = Cursor::default();
        0
    }

    /// Whole-value redaction, for header values: returns the redacted copy
    /// and the count (None when nothing matched).
    pub fn redact_value(&self, value: &[u8]) -> Option<(Vec<u8>, u32)> {
        // Most values hold no echo: look before copying.
        let (mut node, mut at) = (ROOT, 0);
        self.automaton.next_match(&mut node, value, &mut at)?;
        let mut copy = value.to_vec();
        let count = self.automaton.scan(&mut Cursor::default(), &mut copy, 0);
        (count > 0).then_some((copy, count))
    }

    /// Bytes currently held back.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("forms", &self.automaton.forms)
            .field("longest_form", &self.automaton.longest)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

/// The byte strings that count as an echo of `secret`, sorted and without
/// duplicates: the raw bytes, its JSON string escapes and its
/// percent-encodings. Public so tests and the fuzz target can check a
/// [`Redactor`] against a naive search.
pub fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![secret.to_vec()];
    forms.extend(
        JSON_STYLES
            .iter()
            .filter_map(|style| json_escaped(secret, *style)),
    );
    forms.extend(percent_encoded(secret));
    crate::sort::sort(&mut forms);
    forms.dedup();
    forms
}

// ---------------------------------------------------------------------------
// JSON string escapes.

/// How one family of JSON serialisers writes a string.
#[derive(Debug, Clone, Copy)]
struct JsonStyle {
    /// `/` written `\/`.
    escaped_slash: bool,
    /// `"`, `\` and control characters written `\u00XX`, never `\"`, `\n`….
    unicode_only: bool,
    /// Upper-case hex digits in `\uXXXX`.
    upper_hex: bool,
    /// `<`, `>`, `&`, U+2028 and U+2029 written `\uXXXX`.
    html_safe: bool,
    /// Every non-ASCII character written `\uXXXX` (surrogate pairs above
    /// U+FFFF).
    ascii_only: bool,
}

const PLAIN: JsonStyle = JsonStyle {
    escaped_slash: false,
    unicode_only: false,
    upper_hex: false,
    html_safe: false,
    ascii_only: false,
};

const JSON_STYLES: [JsonStyle; 7] = [
    // serde_json, JavaScript's JSON.stringify.
    PLAIN,
    // Python's json.dumps.
    JsonStyle {
        ascii_only: true,
        ..PLAIN
    },
    // PHP's json_encode.
    JsonStyle {
        escaped_slash: true,
        ascii_only: true,
        ..PLAIN
    },
    // Java and other encoders that escape `/` but keep UTF-8.
    JsonStyle {
        escaped_slash: true,
        ..PLAIN
    },
    // Go's encoding/json.
    JsonStyle {
        html_safe: true,
        ..PLAIN
    },
    // Encoders that use `\u00XX` for everything they escape.
    JsonStyle {
        unicode_only: true,
        ..PLAIN
    },
    JsonStyle {
        unicode_only: true,
        upper_hex: true,
        ..PLAIN
    },
];

/// `secret` as `style` writes it inside a JSON string; None when the style
/// cannot write it (non-ASCII escapes of bytes that are not UTF-8).
fn json_escaped(secret: &[u8], style: JsonStyle) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(secret.len().saturating_add(8));
    match std::str::from_utf8(secret) {
        Ok(text) => text
            .chars()
            .for_each(|c| push_json_char(&mut out, c, style)),
        Err(_) if style.ascii_only => return None,
        Err(_) => {
            for &b in secret {
                if b.is_ascii() {
                    push_json_char(&mut out, char::from(b), style);
                } else {
                    out.push(b);
                }
            }
        }
    }
    Some(out)
}

fn push_json_char(out: &mut Vec<u8>, c: char, style: JsonStyle) {
    let must_escape = matches!(c, '"' | '\\') || c < ' ';
    if must_escape && style.unicode_only {
        return push_unicode_escape(out, c, style.upper_hex);
    }
    let short = match c {
        '"' => Some(b'"'),
        '\\' => Some(b'\\'),
        '\u{8}' => Some(b'b'),
        '\u{c}' => Some(b'f'),
        '\n' => Some(b'n'),
        '\r' => Some(b'r'),
        '\t' => Some(b't'),
        '/' if style.escaped_slash => Some(b'/'),
        _ => None,
    };
    if let Some(letter) = short {
        out.extend_from_slice(&[b'\\', letter]);
    } else if must_escape
        || (style.html_safe && matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}'))
        || (style.ascii_only && !c.is_ascii())
    {
        push_unicode_escape(out, c, style.upper_hex);
    } else {
        let mut utf8 = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
}

fn push_unicode_escape(out: &mut Vec<u8>, c: char, upper: bool) {
    let mut units = [0; 2];
    for &unit in c.encode_utf16(&mut units).iter() {
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(hex_digit(unit >> shift, upper));
        }
    }
}

fn hex_digit(nibble: u16, upper: bool) -> u8 {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    digits
        .get(usize::from(nibble & 0xf))
        .copied()
        .unwrap_or(b'0')
}

// ---------------------------------------------------------------------------
// Percent-encoding.

/// Encoders disagree on which printable characters outside `A-Za-z0-9-._`
/// to encode (Python's `quote` keeps `/`, Go's `PathEscape` keeps `+` and
/// `=`, `encodeURIComponent` keeps `!'()*~`). Up to this many distinct such
/// characters in a key, every choice is a form; above it, only "all encoded".
const MAX_CONTESTED: usize = 4;

/// The percent-encodings of `secret`, upper- and lower-case hex: bytes in
/// `A-Za-z0-9-._` stay, spaces, controls, `%` and non-ASCII bytes are
/// always encoded, and each subset of the other printable characters is.
fn percent_encoded(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut contested: Vec<u8> = secret
        .iter()
        .copied()
        .filter(|&b| b.is_ascii_graphic() && b != b'%' && !is_never_encoded(b))
        .collect();
    crate::sort::sort(&mut contested);
    contested.dedup();
    let subsets: Vec<u32> = if contested.len() <= MAX_CONTESTED {
        (0..1u32 << contested.len()).collect()
    } else {
        vec![u32::MAX]
    };
    let mut forms = Vec::with_capacity(subsets.len().saturating_mul(2));
    for upper in [true, false] {
        for &subset in &subsets {
            let encoded = |b: u8| match contested.iter().position(|&c| c == b) {
                Some(bit) => u32::try_from(bit)
                    .ok()
                    .and_then(|bit| subset.checked_shr(bit))
                    .is_none_or(|bits| bits & 1 == 1),
                None => !is_never_encoded(b),
            };
            let mut form = Vec::with_capacity(secret.len().saturating_mul(3));
            for &b in secret {
                if encoded(b) {
                    form.extend_from_slice(&[
                        b'%',
                        hex_digit(u16::from(b >> 4), upper),
                        hex_digit(u16::from(b), upper),
                    ]);
                } else {
                    form.push(b);
                }
            }
            forms.push(form);
        }
    }
    forms
}

fn is_never_encoded(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

// ---------------------------------------------------------------------------
// The automaton.

const ROOT: usize = 0;

/// Where a stream stands.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    /// The automaton node: the longest suffix of the stream that is a prefix
    /// of some form.
    node: usize,
    /// Bytes scanned since the stream began.
    scanned: u64,
    /// The last run of masked bytes, as stream offsets `[from, to)`: a
    /// later match masks only what it covers outside it.
    masked_from: u64,
    masked_to: u64,
}

/// An Aho-Corasick automaton over the forms, with goto edges and failure
/// links (no dense table: its size stays linear in the forms' total length).
/// Not `Debug`: its edges spell the key.
struct Automaton {
    nodes: Vec<Node>,
    /// Every node's goto edges, node by node; see [`Node::edges`].
    edges: Vec<(u8, usize)>,
    /// The bytes that begin some form, each once: from the root, every other
    /// byte is skipped, eight at a time. There are few (the key's first byte,
    /// and `\\` or `%` when that byte is escaped), usually one: every form
    /// of `sk-…` begins with `s`.
    starts: Vec<u8>,
    /// How many forms, and the longest one's length (for `Debug` only).
    forms: usize,
    longest: usize,
    /// What each matched byte becomes.
    mask: u8,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// `edges[edges.0..edges.1]` are this node's goto edges.
    edges: (usize, usize),
    fail: usize,
    /// Length of the longest form that ends here, 0 when none does.
    match_len: usize,
    /// Length of the longest suffix of this node's string that is a proper
    /// prefix of some form: what must be held back when a chunk ends here.
    hold_len: usize,
}

impl Automaton {
    fn new(forms: &[Vec<u8>]) -> Self {
        let trie = Trie::build(forms);
        let mut nodes = vec![Node::default(); trie.depth.len()];
        let mut start = 0;
        for group in trie.edges.chunk_by(|a, b| a.0 == b.0) {
            if let Some(node) = group.first().and_then(|e| nodes.get_mut(e.0)) {
                node.edges = (start, start + group.len());
            }
            start += group.len();
        }
        let edges: Vec<(u8, usize)> = trie.edges.iter().map(|e| (e.1, e.2)).collect();
        link(&mut nodes, &edges, &trie);
        let mut starts = Vec::new();
        for &b in forms.iter().filter_map(|f| f.first()) {
            if !starts.contains(&b) {
                starts.push(b);
            }
        }
        Automaton {
            nodes,
            edges,
            starts,
            forms: forms.len(),
            longest: forms.iter().map(Vec::len).max().unwrap_or(0),
            mask: mask_byte(forms),
        }
    }

    fn hold_len(&self, node: usize) -> usize {
        self.nodes.get(node).map_or(0, |n| n.hold_len)
    }

    /// Scans `buf[scanned..]`, the bytes after the `scanned` already-scanned
    /// ones that open `buf`, masking every match in `buf`. A match never
    /// reaches further back than the held tail, so it always lies in `buf`.
    /// Returns the number of matches (one per end position).
    ///
    /// Matches end in order but need not start in order: a longer form can
    /// end after a shorter one and begin before it (a key's JSON-escaped
    /// form around the raw key, when the key holds `\`). So the last masked
    /// run `[from, to)` is kept, and each match masks what it covers outside
    /// that run: the bytes before the run as well as after it. Overlapping
    /// echoes do not mask the same run over and over.
    fn scan(&self, cursor: &mut Cursor, buf: &mut [u8], scanned: usize) -> u32 {
        let base = cursor.scanned.saturating_sub(to_u64(scanned));
        let at = |offset: u64| usize::try_from(offset.saturating_sub(base)).unwrap_or(0);
        let (mut run_from, mut run_to) = (at(cursor.masked_from), at(cursor.masked_to));
        let mut count = 0u32;
        let mut i = scanned;
        while let Some(len) = self.next_match(&mut cursor.node, buf, &mut i) {
            let from = i.saturating_sub(len);
            for (a, b) in [(from, run_from.min(i)), (run_to.max(from), i)] {
                if let Some(bytes) = buf.get_mut(a..b) {
                    bytes.fill(self.mask);
                }
            }
            run_from = if from <= run_to {
                from.min(run_from)
            } else {
                from
            };
            run_to = i;
            count = count.saturating_add(1);
        }
        cursor.scanned = base.saturating_add(to_u64(buf.len()));
        cursor.masked_from = base.saturating_add(to_u64(run_from));
        cursor.masked_to = base.saturating_add(to_u64(run_to));
        count
    }

    /// Steps from `node` over `buf[*i..]` until a form ends: returns its
    /// length, with `*i` just past it. None when `buf` ran out first (`*node`
    /// is then where the stream stands).
    fn next_match(&self, node: &mut usize, buf: &[u8], i: &mut usize) -> Option<usize> {
        while *i < buf.len() {
            if *node == ROOT {
                let rest = buf.get(*i..).unwrap_or_default();
                *i += crate::string_run::first_of(rest, &self.starts);
            }
            let Some(&byte) = buf.get(*i) else { break };
            *node = step(&self.nodes, &self.edges, *node, byte);
            *i += 1;
            let len = self.nodes.get(*node).map_or(0, |n| n.match_len);
            if len > 0 {
                return Some(len);
            }
        }
        None
    }
}

/// The trie of the forms, before failure links.
struct Trie {
    /// `(parent, byte, child)`, sorted by parent then byte.
    edges: Vec<(usize, u8, usize)>,
    /// Per node: its depth, and whether a form ends there.
    depth: Vec<usize>,
    is_form: Vec<bool>,
}

impl Trie {
    /// In sorted order each form shares with the previous one the longest
    /// prefix it shares with any earlier one: one pass, no lookups.
    fn build(forms: &[Vec<u8>]) -> Trie {
        let mut sorted: Vec<&[u8]> = forms.iter().map(Vec::as_slice).collect();
        crate::sort::sort(&mut sorted);
        sorted.dedup();
        let mut trie = Trie {
            edges: Vec::new(),
            depth: vec![0],
            is_form: vec![false],
        };
        // `path[d]`: the node of the previous form's first `d` bytes.
        let mut path = vec![ROOT];
        let mut previous: &[u8] = &[];
        for form in sorted {
            let shared = previous
                .iter()
                .zip(form)
                .take_while(|(a, b)| a == b)
                .count();
            path.truncate(shared + 1);
            for &byte in form.get(shared..).unwrap_or_default() {
                let child = trie.depth.len();
                trie.edges
                    .push((path.last().copied().unwrap_or(ROOT), byte, child));
                trie.depth.push(path.len());
                trie.is_form.push(false);
                path.push(child);
            }
            if let Some(end) = path.last().and_then(|&n| trie.is_form.get_mut(n)) {
                *end = true;
            }
            previous = form;
        }
        crate::sort::sort(&mut trie.edges);
        trie
    }
}

/// Sets failure links, match and hold lengths, breadth first: a node's
/// failure target is shallower, so it is finished before the node.
fn link(nodes: &mut [Node], edges: &[(u8, usize)], trie: &Trie) {
    let mut order = vec![ROOT];
    let mut next = 0;
    while let Some(&parent) = order.get(next) {
        next += 1;
        let Some(&Node {
            edges: (first, end),
            fail: parent_fail,
            ..
        }) = nodes.get(parent)
        else {
            continue;
        };
        for &(byte, child) in edges.get(first..end).unwrap_or_default() {
            let fail = if parent == ROOT {
                ROOT
            } else {
                step(nodes, edges, parent_fail, byte)
            };
            let (fail_match, fail_hold) = nodes
                .get(fail)
                .map_or((0, 0), |n| (n.match_len, n.hold_len));
            let depth = trie.depth.get(child).copied().unwrap_or(0);
            let is_form = trie.is_form.get(child).copied().unwrap_or(false);
            if let Some(node) = nodes.get_mut(child) {
                node.fail = fail;
                node.match_len = if is_form { depth } else { fail_match };
                node.hold_len = if node.edges.0 < node.edges.1 {
                    depth
                } else {
                    fail_hold
                };
            }
            order.push(child);
        }
    }
}

/// The automaton's transition: the goto edge, else the failure link's, down
/// to the root. Amortised O(1): each failure link taken is a byte of depth
/// gained earlier.
fn step(nodes: &[Node], edges: &[(u8, usize)], mut node: usize, byte: u8) -> usize {
    loop {
        let goto = nodes
            .get(node)
            .and_then(|n| edges.get(n.edges.0..n.edges.1))
            .and_then(|out| out.iter().find(|e| e.0 == byte));
        if let Some(&(_, next)) = goto {
            return next;
        }
        if node == ROOT {
            return ROOT;
        }
        node = nodes.get(node).map_or(ROOT, |n| n.fail);
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// `*`, unless some form contains it: then `#`, the first printable ASCII
/// byte or the first byte that none does, so a masked echo can never spell a
/// form.
fn mask_byte(forms: &[Vec<u8>]) -> u8 {
    let mut used = [false; 256];
    for &b in forms.iter().flatten() {
        if let Some(u) = used.get_mut(usize::from(b)) {
            *u = true;
        }
    }
    [b'*', b'#']
        .into_iter()
        .chain(b'!'..=b'~')
        .chain(0..=u8::MAX)
        .find(|&b| !used.get(usize::from(b)).copied().unwrap_or(true))
        .unwrap_or(b'*')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const KEY: &[u8] = b"sk-proj-Abc123_def456-GHI789jklMNO012pqr";
    const B64_KEY: &[u8] = b"b64/Key+with=Slash/0123456789ABCDEF==";

    fn redactor(secret: &[u8]) -> Redactor {
        Redactor::new(secret).unwrap()
    }

    /// Feeds `chunks` in order, then finishes; checks the length invariant
    /// and that nothing is held more than the longest form minus one.
    /// Feeds `chunks` as the response tap does: a chunk that
    /// [`Redactor::pass`] takes goes on as it is, the others through
    /// [`Redactor::feed`].
    fn run(r: &mut Redactor, chunks: &[&[u8]]) -> (Vec<u8>, u32) {
        let mut out = Vec::new();
        let mut count = 0;
        let mut fed = 0;
        for chunk in chunks {
            if r.pass(chunk) {
                out.extend_from_slice(chunk);
            } else {
                count += r.feed(chunk, &mut out);
            }
            fed += chunk.len();
            assert_eq!(out.len() + r.held(), fed);
            assert!(r.held() < r.automaton.longest);
        }
        count += r.finish(&mut out);
        assert_eq!(r.held(), 0);
        assert_eq!(out.len(), fed);
        (out, count)
    }

    fn one_shot(secret: &[u8], body: &[u8]) -> (Vec<u8>, u32) {
        run(&mut redactor(secret), &[body])
    }

    #[test]
    fn pass_takes_only_chunks_that_go_on_unchanged() {
        let mut r = redactor(KEY);
        assert!(r.pass(b"no key here"), "a clean chunk passes");
        assert!(!r.pass(&[&b"echo: "[..], KEY].concat()), "an echo does not");
        let prefix = &KEY[..KEY.len() / 2];
        assert!(
            !r.pass(&[&b"ends with "[..], prefix].concat()),
            "a possible start of one does not"
        );
        // A refused chunk left the redactor as it was: feeding it now gives
        // the one-shot output, and a later clean chunk passes again.
        let mut out = Vec::new();
        assert_eq!(r.feed(&[&b"echo: "[..], KEY].concat(), &mut out), 1);
        assert!(r.pass(b" and clean text after"));
        // With a tail held, nothing passes until it is released.
        let mut out = Vec::new();
        r.feed(prefix, &mut out);
        assert!(r.held() > 0);
        assert!(!r.pass(b"clean"));
        r.feed(b"clean", &mut out);
        assert_eq!(r.held(), 0);
        assert!(r.pass(b"clean again"));
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// The specification, slowly: every occurrence of every form masked.
    fn naive(secret: &[u8], body: &[u8]) -> (Vec<u8>, u32) {
        let forms = forms(secret);
        let mut out = body.to_vec();
        let mut count = 0;
        for end in 1..=body.len() {
            let longest = forms
                .iter()
                .filter(|f| body[..end].ends_with(f))
                .map(|f| f.len())
                .max();
            if let Some(len) = longest {
                out[end - len..end].fill(b'*');
                count += 1;
            }
        }
        (out, count)
    }

    /// The longest suffix of `seen` that is a proper prefix of a form.
    fn naive_hold(secret: &[u8], seen: &[u8]) -> usize {
        forms(secret)
            .iter()
            .filter_map(|f| (1..f.len()).rev().find(|&k| seen.ends_with(&f[..k])))
            .max()
            .unwrap_or(0)
    }

    fn stars(n: usize) -> Vec<u8> {
        vec![b'*'; n]
    }

    #[test]
    fn secrets_shorter_than_eight_bytes_are_refused() {
        assert!(Redactor::new(b"").is_none());
        assert!(Redactor::new(b"1234567").is_none());
        assert!(Redactor::new(b"12345678").is_some());
    }

    #[test]
    fn a_401_json_error_echoing_the_key_is_masked() {
        let prefix = br#"{"error":{"message":"Incorrect API key provided: "#;
        let body = [
            &prefix[..],
            KEY,
            br#". You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        ]
        .concat();
        let (out, count) = one_shot(KEY, &body);
        assert_eq!(count, 1);
        assert!(!contains(&out, KEY));
        let at = prefix.len();
        assert_eq!(out[at..at + KEY.len()], stars(KEY.len()));
        assert_eq!(out[..at], body[..at]);
        assert_eq!(out[at + KEY.len()..], body[at + KEY.len()..]);
    }

    #[test]
    fn an_sse_error_event_echoing_the_key_is_masked() {
        let body = [
            &b"event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"invalid x-api-key "[..],
            KEY,
            b"\"}}\n\n",
        ]
        .concat();
        let (out, count) = one_shot(KEY, &body);
        assert_eq!(count, 1);
        assert!(!contains(&out, KEY));
        assert_eq!(out, naive(KEY, &body).0);
        assert!(out.starts_with(b"event: message_start\n"));
        assert!(out.ends_with(b"\"}}\n\n"));
    }

    #[test]
    fn a_key_split_at_every_position_gives_the_one_shot_output() {
        let body = [&b"{\"error\":\"bad key "[..], KEY, b"\"}"].concat();
        let expected = one_shot(KEY, &body);
        for i in 0..=body.len() {
            let got = run(&mut redactor(KEY), &[&body[..i], &body[i..]]);
            assert_eq!(got, expected, "split at {i}");
        }
    }

    #[test]
    fn a_key_split_at_every_pair_of_positions_gives_the_one_shot_output() {
        let body = [
            &b"x="[..],
            B64_KEY,
            b"&y=b64\\/Key+with=Slash\\/0123456789ABCDEF==;",
        ]
        .concat();
        let expected = one_shot(B64_KEY, &body);
        assert_eq!(expected.1, 2);
        for i in 0..=body.len() {
            for j in i..=body.len() {
                let got = run(
                    &mut redactor(B64_KEY),
                    &[&body[..i], &body[i..j], &body[j..]],
                );
                assert_eq!(got, expected, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn one_byte_chunks_give_the_one_shot_output() {
        let body = [&b"key "[..], KEY, b" and again:", KEY, KEY, b"."].concat();
        let expected = one_shot(KEY, &body);
        assert_eq!(expected.1, 3);
        let chunks: Vec<&[u8]> = body.chunks(1).collect();
        let mut r = redactor(KEY);
        assert_eq!(run(&mut r, &chunks), expected);
    }

    #[test]
    fn every_occurrence_is_masked() {
        let body = [KEY, b" ", KEY, KEY, b"\n", KEY].concat();
        let (out, count) = one_shot(KEY, &body);
        assert_eq!(count, 4);
        assert!(!contains(&out, KEY));
        assert_eq!(out.iter().filter(|&&b| b == b'*').count(), 4 * KEY.len());
    }

    #[test]
    fn a_self_similar_key_is_found_after_a_longer_run_of_its_prefix() {
        let secret = b"aaaaaaaab";
        let mut r = redactor(secret);
        let mut out = Vec::new();
        assert_eq!(r.feed(b"aaaaaaaaaaa", &mut out), 0);
        assert_eq!(out, b"aaa");
        assert_eq!(r.held(), 8);
        assert_eq!(r.feed(b"b", &mut out), 1);
        assert_eq!(r.held(), 0);
        assert_eq!(out, b"aaa*********");
    }

    /// Found by the `key_redact` fuzzer: the raw key ends inside its
    /// JSON-escaped form, which starts before it and ends after it. The
    /// longer match used to be masked only from the shorter one's end, so
    /// its first bytes went out unmasked.
    #[test]
    fn a_longer_echo_that_starts_before_a_shorter_one_is_masked_whole() {
        let secret = &[&[b'\\'; 4][..], b"]", &[b'\\'; 4]].concat()[..];
        let escaped = &[&[b'\\'; 8][..], b"]", &[b'\\'; 8]].concat()[..];
        assert!(forms(secret).iter().any(|f| f == escaped));
        for body in [escaped, &[&b"x"[..], escaped, b"y"].concat()] {
            let (out, count) = one_shot(secret, body);
            assert_eq!((out.clone(), count), naive(secret, body), "{body:?}");
            assert_eq!(out.iter().filter(|&&b| b == b'*').count(), escaped.len());
        }
        // Fed a byte at a time, the same.
        let mut r = redactor(secret);
        let mut out = Vec::new();
        for b in escaped {
            r.feed(&[*b], &mut out);
        }
        r.finish(&mut out);
        assert_eq!(out, vec![b'*'; escaped.len()]);
    }

    #[test]
    fn overlapping_echoes_of_a_periodic_key_are_all_masked() {
        let secret = b"abababab";
        let (out, count) = one_shot(secret, b"xabababababx");
        assert_eq!(out, b"x**********x");
        assert_eq!(count, 2);
        let (out, count) = one_shot(b"aaaaaaaa", b"aaaaaaaaaa");
        assert_eq!((out, count), (stars(10), 3));
    }

    #[test]
    fn a_json_escaped_slash_form_is_masked() {
        let body = br#"{"error":"key b64\/Key+with=Slash\/0123456789ABCDEF== is invalid"}"#;
        let (out, count) = one_shot(B64_KEY, body);
        assert_eq!(count, 1);
        assert_eq!(
            out,
            [&br#"{"error":"key "#[..], &stars(39), br#" is invalid"}"#].concat()
        );
    }

    #[test]
    fn json_quote_backslash_and_control_escapes_are_masked() {
        let secret = b"pass\"word\\with\ttab";
        for form in [
            &br#"pass\"word\\with\ttab"#[..],
            br#"pass\u0022word\u005cwith\u0009tab"#,
            br#"pass\u0022word\u005Cwith\u0009tab"#,
        ] {
            let body = [&b"{\"msg\":\""[..], form, b"\"}"].concat();
            let (out, count) = one_shot(secret, &body);
            assert_eq!(count, 1, "{}", String::from_utf8_lossy(form));
            assert_eq!(
                out,
                [&b"{\"msg\":\""[..], &stars(form.len()), b"\"}"].concat()
            );
        }
    }

    #[test]
    fn non_ascii_and_html_escapes_are_masked() {
        let secret = "clé<&>secret".as_bytes();
        for form in [
            &br#"cl\u00e9<&>secret"#[..],
            "clé\\u003c\\u0026\\u003esecret".as_bytes(),
        ] {
            let (out, count) = one_shot(secret, form);
            assert_eq!(
                (out, count),
                (stars(form.len()), 1),
                "{}",
                String::from_utf8_lossy(form)
            );
        }
    }

    #[test]
    fn percent_encoded_forms_are_masked() {
        for form in [
            &b"b64%2FKey%2Bwith%3DSlash%2F0123456789ABCDEF%3D%3D"[..],
            b"b64%2fKey%2bwith%3dSlash%2f0123456789ABCDEF%3d%3d",
            // Python's quote keeps `/`.
            b"b64/Key%2Bwith%3DSlash/0123456789ABCDEF%3D%3D",
            // Go's PathEscape keeps `+` and `=`.
            b"b64%2FKey+with=Slash%2F0123456789ABCDEF==",
        ] {
            let body = [&b"GET /v1?key="[..], form, b"&alt=sse"].concat();
            let (out, count) = one_shot(B64_KEY, &body);
            assert_eq!(count, 1, "{}", String::from_utf8_lossy(form));
            assert_eq!(
                out,
                [&b"GET /v1?key="[..], &stars(form.len()), b"&alt=sse"].concat()
            );
        }
    }

    #[test]
    fn plain_keys_have_a_single_form() {
        assert_eq!(forms(KEY), vec![KEY.to_vec()]);
        assert_eq!(forms(b"0123456789abcdef0123456789ABCDEF").len(), 1);
        assert_eq!(forms(b"AIzaSyA-abcdefghijklmnopqrstuvwxyz0123").len(), 1);
    }

    #[test]
    fn near_misses_are_untouched_and_released_on_the_breaking_byte() {
        let mut r = redactor(KEY);
        let mut out = Vec::new();
        r.feed(b"provided: ", &mut out);
        assert_eq!(r.held(), 0);
        r.feed(b"sk-proj-Abc", &mut out);
        assert_eq!(r.held(), 11);
        assert_eq!(out, b"provided: ");
        r.feed(b"12", &mut out);
        assert_eq!(r.held(), 13);
        r.feed(b"X", &mut out);
        assert_eq!(r.held(), 0);
        assert_eq!(out, b"provided: sk-proj-Abc12X");
        // A byte that breaks one prefix may start another.
        r.feed(b"ssk-", &mut out);
        assert_eq!(r.held(), 3);
        r.finish(&mut out);
        assert_eq!(out, b"provided: sk-proj-Abc12Xssk-");
    }

    #[test]
    fn the_held_tail_is_exactly_the_longest_proper_prefix_of_a_form() {
        let body = b"b64/b64%2FKey+with=Slash\\/01b64/Key+with=Slash/0123456789ABCDEF=";
        let mut r = redactor(B64_KEY);
        let mut out = Vec::new();
        for end in 1..=body.len() {
            r.feed(&body[end - 1..end], &mut out);
            assert_eq!(
                r.held(),
                naive_hold(B64_KEY, &body[..end]),
                "after {end} bytes"
            );
        }
        r.finish(&mut out);
        assert_eq!(out, body);
    }

    #[test]
    fn finish_flushes_a_truncated_echo_unchanged_and_resets() {
        let mut r = redactor(KEY);
        let mut out = Vec::new();
        r.feed(&KEY[..20], &mut out);
        assert!(out.is_empty());
        assert_eq!(r.finish(&mut out), 0);
        assert_eq!(out, &KEY[..20]);
        // The next stream does not continue the last one's prefix.
        let mut next = Vec::new();
        assert_eq!(r.feed(&KEY[20..], &mut next), 0);
        r.finish(&mut next);
        assert_eq!(next, &KEY[20..]);
        assert_eq!(run(&mut r, &[KEY]).1, 1);
    }

    #[test]
    fn output_matches_the_naive_specification_under_random_splits() {
        let secrets: [&[u8]; 4] = [KEY, B64_KEY, b"aabaabaaab", b"p\"q\\r/s+t=u\nv"];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for secret in secrets {
            let forms = forms(secret);
            let mut alphabet: Vec<u8> = forms.concat();
            alphabet.extend_from_slice(b" \"{}");
            for _ in 0..200 {
                let mut body = Vec::new();
                while body.len() < 300 {
                    match rand(6) {
                        0 => body.extend_from_slice(&forms[rand(forms.len())]),
                        1 => {
                            let f = &forms[rand(forms.len())];
                            body.extend_from_slice(&f[..rand(f.len())]);
                        }
                        _ => body.push(alphabet[rand(alphabet.len())]),
                    }
                }
                let expected = naive(secret, &body);
                assert_eq!(one_shot(secret, &body), expected);
                let mut chunks = Vec::new();
                let mut rest = &body[..];
                while !rest.is_empty() {
                    let (chunk, tail) = rest.split_at(rand(rest.len().min(40)) + 1);
                    chunks.push(chunk);
                    rest = tail;
                }
                assert_eq!(run(&mut redactor(secret), &chunks), expected);
                assert!(!contains(&expected.0, secret));
            }
        }
    }

    #[test]
    fn a_mebibyte_of_near_misses_in_one_byte_chunks_is_passed_through() {
        let secret = b"aaaaaaaab";
        let mut r = redactor(secret);
        let mut out = Vec::with_capacity(1 << 20);
        for _ in 0..(1 << 20) {
            r.feed(b"a", &mut out);
            assert!(r.held() <= 8);
        }
        assert_eq!(r.feed(b"b", &mut out), 1);
        r.finish(&mut out);
        assert_eq!(out.len(), (1 << 20) + 1);
        assert!(out[..(1 << 20) - 8].iter().all(|&b| b == b'a'));
        assert_eq!(out[(1 << 20) - 8..], stars(9));
    }

    #[test]
    fn header_values_are_redacted_whole() {
        let r = redactor(KEY);
        let value = [&b"Bearer "[..], KEY].concat();
        let (redacted, count) = r.redact_value(&value).unwrap();
        assert_eq!(count, 1);
        assert_eq!(redacted, [&b"Bearer "[..], &stars(KEY.len())].concat());
        assert_eq!(r.redact_value(b"application/json"), None);
        assert_eq!(r.redact_value(&KEY[..KEY.len() - 1]), None);
        // A stream in progress is not disturbed.
        let mut r = redactor(KEY);
        let mut out = Vec::new();
        r.feed(&KEY[..10], &mut out);
        assert!(r.redact_value(KEY).is_some());
        r.feed(&KEY[10..], &mut out);
        assert_eq!(out, stars(KEY.len()));
    }

    #[test]
    fn a_key_containing_the_mask_byte_is_masked_with_another() {
        let secret = b"ab******";
        let (out, count) = one_shot(secret, b"ab******");
        assert_eq!(count, 1);
        assert_eq!(out, b"########");
        let (out, _) = one_shot(secret, b"abab******");
        assert_eq!(out, b"ab########");
        assert!(!contains(&out, secret));
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let mut r = redactor(KEY);
        r.feed(&KEY[..12], &mut Vec::new());
        let text = format!("{r:?}");
        assert!(!text.contains("sk-"), "{text}");
        assert!(text.contains("held: 12"), "{text}");
    }
}
