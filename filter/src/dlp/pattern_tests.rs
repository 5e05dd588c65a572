//! Tests of [`super`]: the syntax, every refusal, the boundaries, and two
//! properties over random patterns and texts: the greedy match is the
//! longest a backtracking matcher finds, and the memo never changes a
//! result.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn pat(src: &str) -> Pattern {
    compile(src, false, &mut 0).unwrap_or_else(|e| panic!("{src:?}: {e:?}"))
}

/// Every match in `t`, leftmost, as the literal scan walks it.
fn find(p: &Pattern, t: &str) -> Vec<(usize, usize)> {
    let t = t.as_bytes();
    let mut memo: Memo = Default::default();
    let (mut i, mut out) = (0, Vec::new());
    while i < t.len() {
        match p.at(t, i, &mut memo) {
            0 => i += 1,
            e => {
                out.push((i, e));
                i = e;
            }
        }
    }
    out
}

#[test]
fn identifiers_are_found_whole() {
    let p = pat(r"EMP-\d{6}");
    assert_eq!(
        find(&p, "ticket EMP-123456, EMP-000001."),
        [(7, 17), (19, 29)]
    );
    // Glued to a letter or digit on either side: not this identifier.
    assert_eq!(find(&p, "EMP-1234567 XEMP-123456 EMP-12345"), []);
    assert_eq!(find(&p, "(EMP-123456)"), [(1, 11)]);

    let host = pat(r"[a-z0-9-]+\.corp\.example\.com");
    assert_eq!(
        find(&host, "see db-01.corp.example.com and x.corp.example.org"),
        [(4, 26)]
    );
    let token = pat(r"acme_[A-Za-z0-9]{8,12}");
    assert_eq!(find(&token, "acme_abc12345 acme_short"), [(0, 13)]);
    assert_eq!(
        find(&token, "acme_abcdefghijklm"),
        [],
        "13 is over the maximum"
    );
    let optional = pat(r"\d{3}[- ]?\d{2}[- ]?\d{4}");
    assert_eq!(
        find(&optional, "a 123-45 6789 b 123456789"),
        [(2, 13), (16, 25)]
    );
}

#[test]
fn case_folding_and_invisible_characters() {
    let p = compile("sku-[a-f]{4}", true, &mut 0).unwrap();
    assert_eq!(
        find(&p, "SKU-ABCD sku-abcd Sku-aBcD"),
        [(0, 8), (9, 17), (18, 26)]
    );
    assert_eq!(find(&pat("sku-[a-f]{4}"), "SKU-ABCD"), []);
    // A negated class excludes both cases of what it lists.
    let p = compile("#[^a-f]{2}", true, &mut 0).unwrap();
    assert_eq!(
        find(&p, "#gh #GH #ab #AB #Ab #12"),
        [(0, 3), (4, 7), (20, 23)]
    );
    // A zero-width joiner inside a match is stepped over and removed
    // with it; one right after it is left alone.
    let t = "EMP-12\u{200D}3456\u{200D} x";
    assert_eq!(find(&pat(r"EMP-\d{6}"), t), [(0, 13)]);
}

#[test]
fn a_run_longer_than_any_count_is_read_whole() {
    let mut t = String::from("x-");
    t.push_str(&"a".repeat(70_000));
    t.push('!');
    assert_eq!(find(&pat("x-[a-z]+!"), &t), [(0, t.len())]);
    assert_eq!(find(&pat(r"x-[a-z]+\?"), &t), []);
    assert!(
        compile("x-[a-z]+?", false, &mut 0).is_err(),
        "no lazy counts"
    );
}

#[test]
fn every_refusal_says_where_and_why() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "empty"),
        ("*a", 0, "must follow"),
        ("a**", 2, "one count"),
        ("a+?", 2, "one count"),
        ("(ab)", 0, "not supported"),
        ("a|b", 1, "not supported"),
        ("a.b", 1, "not supported"),
        ("^a", 0, "not supported"),
        ("ab$", 2, "not supported"),
        ("caf\u{e9}", 3, "printable ASCII"),
        ("a\tb", 1, "printable ASCII"),
        (r"a\q", 1, "unknown escape"),
        ("a\\", 2, "cannot end"),
        ("[ab", 0, "without its ']'"),
        ("[]", 0, "without its ']'"),
        ("[z-a]", 2, "must go up"),
        ("[a-\\d]", 2, "plain printable"),
        (r"[^\x00]", 2, "unknown escape"),
        ("a{0}", 1, "a count is"),
        ("a{2,1}", 1, "a count is"),
        ("a{300}", 1, "a count is"),
        ("a{,3}", 1, "a count is"),
        ("a{3", 1, "a count is"),
        ("a?b", 0, "must be required"),
        ("a{0,2}b", 0, "must be required"),
        (r"x\d+\d", 1, "backtracking"),
        ("x[a-z]+[a-z0-9]*", 1, "backtracking"),
        ("xa+-?a", 1, "backtracking"),
        ("xa?-?a", 1, "backtracking"),
    ];
    for &(src, at, why) in cases {
        let e = compile(src, false, &mut 0).expect_err(src);
        assert_eq!(e.at, at, "{src:?}: {e:?}");
        assert!(e.why.contains(why), "{src:?}: {e:?}");
    }
    // Case folding decides overlaps too.
    assert!(compile("x[a-z]+X", false, &mut 0).is_ok());
    assert!(compile("x[a-z]+X", true, &mut 0).is_err());
    // Bounds: atoms, the sum of bounded counts, unbounded counts per policy.
    assert!(compile(&"a".repeat(32), false, &mut 0).is_ok());
    assert!(compile(&"a".repeat(33), false, &mut 0).is_err());
    assert!(compile(&r"\d{255}-".repeat(4), false, &mut 0).is_ok());
    let e = compile(&r"\d{255}-".repeat(5), false, &mut 0).unwrap_err();
    assert!(e.why.contains("over 1024"), "{e:?}");
    let e = compile(r"ab[a-z]{1,4}[a-c]", false, &mut 0).unwrap_err();
    assert_eq!((e.at, e.len), (2, 10), "the atom that could backtrack");
    let mut slots = 0;
    for _ in 0..5 {
        compile("a+-b{9}-c{8}-d*", false, &mut slots).unwrap();
    }
    assert_eq!(slots, 15, "counts over 8 take a slot");
    let e = compile("a+-b+", false, &mut slots).unwrap_err();
    assert!(e.why.contains("at most 16 counts over 8"), "{e:?}");
}

#[test]
fn the_syntax_reads_as_documented() {
    let yes = |src: &str, t: &str| assert_eq!(find(&pat(src), t), [(0, t.len())], "{src} {t}");
    let no = |src: &str, t: &str| assert_eq!(find(&pat(src), t), [], "{src} {t}");
    yes(r"\w+", "a_Z9");
    yes(r"#\W", "#!");
    no(r"#\W", "#a");
    yes(r"a\sb\Sc", "a\tb-c");
    yes(r"[\d_]+", "1_2");
    yes(r"[^a-z ]+", "ABC-123");
    yes(r"[-a]{2}\-[a-]{2}", "a---a");
    yes(r"[]x]{2}", "]x");
    yes(r"\.\\\[\{\$", r".\[{$");
    yes(r"a\ b", "a b");
    yes(r"k{2,}", "kkkkk");
    yes(r"k{2}", "kk");
    no(r"k{3}", "kk");
    yes("a\\nb", "a\nb");
}

/// xorshift64*: reproducible, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// The longest end of any way `atoms` can match `t` from `p`, trying
/// every count (backtracking), or `None`.
fn longest(atoms: &[Atom], t: &[u8], p: usize) -> Option<usize> {
    let Some((a, rest)) = atoms.split_first() else {
        return Some(p);
    };
    let mut best = None;
    let mut q = p;
    let mut n = 0usize;
    loop {
        if n >= usize::from(a.min) {
            best = best.max(longest(rest, t, q));
        }
        if n == usize::from(a.max) || !t.get(q).is_some_and(|&b| has(&a.set, b)) {
            return best;
        }
        q += 1;
        n += 1;
    }
}

#[test]
fn greedy_is_the_longest_match_and_the_memo_changes_nothing() {
    let pieces = ["a", "b", "1", "-", "[ab]", r"\d", "[a1]", "[b-]", r"\w"];
    let counts = [
        "", "", "?", "*", "+", "{2}", "{1,3}", "{2,}", "{9}", "{2,10}", "{9,}",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut matched) = (0, 0);
    for _ in 0..40_000 {
        let len = 1 + rng.next(4);
        let src: String = (0..len)
            .map(|_| {
                format!(
                    "{}{}",
                    pieces[rng.next(pieces.len())],
                    counts[rng.next(counts.len())]
                )
            })
            .collect();
        let Ok(p) = compile(&src, false, &mut 0) else {
            continue;
        };
        accepted += 1;
        // Long runs of few characters, to go past the counts; sometimes
        // with invisible characters inside.
        let alphabet: &[&str] = if rng.next(4) == 0 {
            &["a", "b", "1", "-", " ", "\u{200B}"]
        } else {
            &["a", "a", "b", "1", "1", "-", " "]
        };
        let text: String = (0..rng.next(40))
            .map(|_| alphabet[rng.next(alphabet.len())])
            .collect();
        let t = text.as_bytes();
        for i in 0..t.len() {
            if text.contains('\u{200B}') {
                break;
            }
            let want = longest(&p.atoms, t, i).filter(|&e| e > i).unwrap_or(0);
            let got = p.greedy(t, i, &mut Default::default(), false);
            assert_eq!(got, want, "{src:?} on {text:?} at {i}");
            matched += usize::from(got > 0);
        }
        // The scan with one memo for the whole text finds what a fresh
        // memo at every start finds.
        let mut fresh = Vec::new();
        let mut i = 0;
        while i < t.len() {
            match p.at(t, i, &mut Default::default()) {
                0 => i += 1,
                e => {
                    fresh.push((i, e));
                    i = e;
                }
            }
        }
        assert_eq!(find(&p, &text), fresh, "{src:?} on {text:?}");
    }
    assert!(accepted > 3_000 && matched > 3_000, "{accepted} {matched}");
}
