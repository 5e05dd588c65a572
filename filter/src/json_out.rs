//! A small writer for the JSON the filter emits: the audit line and the
//! deny reply body.
//!
//! Invariants:
//! - The output is always one valid JSON object: [`Obj::finish`] closes
//!   it, and every string goes through [`push_str`], which escapes `"`,
//!   `\` and every control character (`\u00XX`), so untrusted text can
//!   never end a string early or break the line.
//! - Names are static, written by the caller, and never need escaping.
//! - No allocation beyond the output, no formatting machinery: written by
//!   hand because serde's serializer cost about 3 KB of `tollgate.wasm`
//!   for two flat objects.

/// An object being written; members are added in call order.
pub struct Obj {
    out: String,
    empty: bool,
}

impl Obj {
    pub fn new() -> Obj {
        Obj::within(String::with_capacity(512))
    }

    /// An object written at the end of `out` (a member's value).
    fn within(mut out: String) -> Obj {
        out.push('{');
        Obj { out, empty: true }
    }

    fn name(&mut self, name: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
    }

    pub fn str(&mut self, name: &str, value: &str) {
        self.name(name);
        push_str(&mut self.out, value);
    }

    pub fn opt_str(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(name, v);
        }
    }

    pub fn u64(&mut self, name: &str, value: u64) {
        self.name(name);
        push_u64(&mut self.out, value);
    }

    pub fn opt_u64(&mut self, name: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.u64(name, v);
        }
    }

    pub fn bool(&mut self, name: &str, value: bool) {
        self.name(name);
        self.out.push_str(if value { "true" } else { "false" });
    }

    /// A member whose value is an object, written by `fill`.
    pub fn obj(&mut self, name: &str, fill: impl FnOnce(&mut Obj)) {
        self.name(name);
        let mut inner = Obj::within(core::mem::take(&mut self.out));
        fill(&mut inner);
        self.out = inner.finish();
    }

    /// A member whose value is an array of objects, each written by `fill`.
    pub fn list<T>(&mut self, name: &str, items: &[T], mut fill: impl FnMut(&mut Obj, &T)) {
        self.name(name);
        self.out.push('[');
        for (k, item) in items.iter().enumerate() {
            if k > 0 {
                self.out.push(',');
            }
            let mut inner = Obj::within(core::mem::take(&mut self.out));
            fill(&mut inner, item);
            self.out = inner.finish();
        }
        self.out.push(']');
    }

    /// A member whose value is an array of strings.
    pub fn strs(&mut self, name: &str, items: &[Box<str>]) {
        self.name(name);
        self.out.push('[');
        for (k, item) in items.iter().enumerate() {
            if k > 0 {
                self.out.push(',');
            }
            push_str(&mut self.out, item);
        }
        self.out.push(']');
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

impl Default for Obj {
    fn default() -> Obj {
        Obj::new()
    }
}

/// Appends `s` as a JSON string, quotes included.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    // Every byte that needs escaping is ASCII, so each plain run between
    // them is whole characters.
    let mut plain = 0;
    for (k, &b) in s.as_bytes().iter().enumerate() {
        if b != b'"' && b != b'\\' && b >= b' ' {
            continue;
        }
        out.push_str(s.get(plain..k).unwrap_or_default());
        plain = k + 1;
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                for nibble in [b >> 4, b & 15] {
                    let h = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
                    out.push(char::from(h));
                }
            }
        }
    }
    out.push_str(s.get(plain..).unwrap_or_default());
    out.push('"');
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut k = digits.len();
    loop {
        k -= 1;
        if let Some(d) = digits.get_mut(k) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || k == 0 {
            break;
        }
    }
    for &d in digits.get(k..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_string_reads_back_as_written() {
        for s in [
            "",
            "plain",
            "quote \" and \\ backslash",
            "lines\nand\ttabs\r\u{0}\u{1f}\u{7f}",
            "ünïcödé \u{2028} 🔑",
        ] {
            let mut o = Obj::new();
            o.str("s", s);
            o.opt_str("none", None);
            let json = o.finish();
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(v["s"], s, "{json}");
            assert!(!json.contains('\n'), "{json}");
        }
    }

    #[test]
    fn numbers_bools_objects_and_lists() {
        let mut o = Obj::new();
        for n in [0, 7, 10, 4096, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        o.u64("n", 42);
        o.opt_u64("absent", None);
        o.bool("t", true);
        o.obj("inner", |i| i.bool("f", false));
        o.list("xs", &[1u64, 2], |i, x| i.u64("x", *x));
        o.list("empty", &[] as &[u64], |i, x| i.u64("x", *x));
        o.strs("names", &["a".into(), "b\"".into()]);
        assert_eq!(
            o.finish(),
            r#"{"n":42,"t":true,"inner":{"f":false},"xs":[{"x":1},{"x":2}],"empty":[],"names":["a","b\""]}"#
        );
    }
}
