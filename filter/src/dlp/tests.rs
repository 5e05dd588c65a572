//! The engine against the corpora: recall, false positives, adversarial
//! input, and the invariants of every scan.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::corpus::{self, Rng};
use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Scans `text` with every built-in; checks the invariants of the result.
fn scan_all(text: &[u8]) -> Vec<Match> {
    let mut out = Vec::new();
    DetectorSet::all_builtins().scan(text, &mut out);
    check_invariants(text, &out);
    out
}

fn check_invariants(text: &[u8], out: &[Match]) {
    let mut prev_end = 0;
    for m in out {
        assert!(
            m.start < m.end && m.end <= text.len(),
            "{m:?} in {} bytes",
            text.len()
        );
        assert!(m.start >= prev_end, "overlap or disorder at {m:?}");
        prev_end = m.end;
        if let Ok(s) = core::str::from_utf8(text) {
            assert!(
                s.is_char_boundary(m.start) && s.is_char_boundary(m.end),
                "{m:?}"
            );
        }
    }
}

/// `(detector name, matched text)` for each match.
fn found(text: &str) -> Vec<(&'static str, String)> {
    scan_all(text.as_bytes())
        .into_iter()
        .map(|m| {
            let name = match m.detector {
                DetectorId::Builtin(d) => d.name(),
                DetectorId::Literal(_) => "literal",
            };
            (
                name,
                String::from_utf8_lossy(&text.as_bytes()[m.start..m.end]).into_owned(),
            )
        })
        .collect()
}

/// Contexts each positive is tried in: alone, at the start, at the end,
/// quoted, in parentheses, after a label, ending a sentence, twice.
const CONTEXTS: [&str; 8] = [
    "{}",
    "{}\nis what I pasted",
    "here it is: {}",
    "{\"value\": \"{}\", \"n\": 1}",
    "(see {}), thanks",
    "key='{}';",
    "The value is {}. Next sentence.",
    "{}, {}",
];

#[test]
fn every_builtin_finds_every_positive_in_every_context() {
    let mut per_detector = [0usize; Detector::ALL.len()];
    for (d, v) in corpus::values() {
        per_detector[d as usize] += 1;
        for ctx in CONTEXTS {
            let text = ctx.replace("{}", &v);
            let want: Vec<_> = (0..ctx.matches("{}").count())
                .map(|_| (d.name(), v.clone()))
                .collect();
            assert_eq!(found(&text), want, "{} in {text:?}", d.name());
        }
    }
    for (text, want) in corpus::cases() {
        for (d, _) in &want {
            per_detector[*d as usize] += 1;
        }
        let want: Vec<_> = want.into_iter().map(|(d, s)| (d.name(), s)).collect();
        assert_eq!(found(&text), want, "{text:?}");
    }
    for d in Detector::ALL {
        assert!(
            per_detector[d as usize] >= 5,
            "{}: {} positives",
            d.name(),
            per_detector[d as usize]
        );
    }
}

/// Every match the built-ins make in the benign corpus, each justified:
/// - `git@github.com` is an address by every syntax rule (SSH's user@host),
///   and a DLP cannot know the mailbox does not exist.
const EXPECTED_BENIGN: [(&str, &str); 1] = [("email", "git@github.com")];

#[test]
fn benign_prompts_match_only_the_justified_few() {
    let mut all = Vec::new();
    let mut bytes = 0;
    for (kind, text) in corpus::benign() {
        bytes += text.len();
        for (name, s) in found(&text) {
            all.push((kind, name, s));
        }
    }
    let got: Vec<(&str, &str)> = all.iter().map(|(_, n, s)| (*n, s.as_str())).collect();
    assert_eq!(
        got, EXPECTED_BENIGN,
        "false positives in {bytes} benign bytes: {all:?}"
    );
}

#[test]
fn truncated_keys_do_not_match() {
    let r = &mut Rng::new(20);
    let cut = |s: String, n: usize| s[..s.len() - n].to_string();
    let truncated = [
        cut(format!("sk-ant-api03-{}AA", r.pick(corpus::B64URL, 93)), 1),
        "sk-ant-api03-abc123xyz-456de-klMnopqrstuvwx-3456yza789bcde-1234fghijklmnopAA".to_string(),
        cut(
            format!(
                "sk-proj-{}T3BlbkFJ{}",
                r.pick(corpus::B64URL, 58),
                r.pick(corpus::B64URL, 58)
            ),
            30,
        ),
        cut(
            format!(
                "sk-{}T3BlbkFJ{}",
                r.pick(corpus::ALNUM, 20),
                r.pick(corpus::ALNUM, 20)
            ),
            1,
        ),
        cut(format!("AIza{}", r.pick(corpus::B64URL, 35)), 1),
        "AKIAIOSFODNN7EXAMPL".to_string(),
        cut(format!("ghp_{}", r.pick(corpus::ALNUM, 36)), 1),
        cut(
            format!(
                "github_pat_{}_{}",
                r.pick(corpus::ALNUM, 22),
                r.pick(corpus::ALNUM, 59)
            ),
            1,
        ),
        "xoxb-12345-abcd234".to_string(),
        "https://hooks.slack.com/services/".to_string(),
        format!("sk_live_{}", r.pick(corpus::ALNUM, 12)),
        format!("ABSK{}", r.pick(corpus::B64, 60)),
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0".to_string(),
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n".to_string(),
        "4111 1111 1111".to_string(),
        "536-22-555".to_string(),
        "GB82WEST1234569876543".to_string(),
        "john.doe@example".to_string(),
        "+44 20 79".to_string(),
    ];
    for t in truncated {
        assert_eq!(found(&t), [], "{t:?}");
    }
}

#[test]
fn keys_back_to_back_are_separate_matches() {
    let r = &mut Rng::new(21);
    let gh = || format!("ghp_{}", Rng::new(7).pick(corpus::ALNUM, 36));
    let ant = format!("sk-ant-api03-{}AA", r.pick(corpus::B64URL, 93));
    let aws = format!("AKIA{}", r.pick(corpus::BASE32, 16));
    let goo = format!("AIza{}", r.pick(corpus::B64URL, 35));
    for (a, b) in [
        (gh(), gh()),
        (ant.clone(), ant.clone()),
        (aws.clone(), aws.clone()),
        (goo.clone(), goo.clone()),
    ] {
        for sep in ["", " ", ",", "\n", "\u{200B}"] {
            let t = format!("{a}{sep}{b}");
            let got = found(&t);
            assert_eq!(got.len(), 2, "{t:?}: {got:?}");
            assert_eq!(got[0].1, a);
            assert_eq!(got[1].1, b);
        }
    }
    // Different kinds, back to back with separators.
    let t = format!("{aws} {goo}\n{ant},4111111111111111;john@example.com");
    let names: Vec<_> = found(&t).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "aws_access_key_id",
            "google_api_key",
            "anthropic_api_key",
            "payment_card",
            "email"
        ]
    );
}

#[test]
fn zero_width_characters_inside_a_key_are_matched_and_covered() {
    let r = &mut Rng::new(22);
    let body = r.pick(corpus::B64URL, 93);
    for zw in [
        "\u{200D}", "\u{200B}", "\u{200C}", "\u{2060}", "\u{FEFF}", "\u{00AD}",
    ] {
        // Inside the prefix, inside the body, and several at once.
        let t = format!(
            "key sk-ant{zw}-api03-{}{zw}{}AA{zw}{zw} end",
            &body[..40],
            &body[40..]
        );
        let got = scan_all(t.as_bytes());
        assert_eq!(got.len(), 1, "{t:?}");
        let m = got[0];
        assert_eq!(m.detector, DetectorId::Builtin(Detector::AnthropicApiKey));
        assert_eq!(
            &t[m.start..m.end],
            &t[4..t.len() - 4 - 2 * zw.len()],
            "covers the inner ones only"
        );
        let aws = format!("AKIA{zw}IOSFODNN7{zw}EXAMPLE");
        assert_eq!(found(&aws), [("aws_access_key_id", aws.clone())]);
        for card in [
            format!("4111111{zw}111111111"),
            format!("4111{zw} 1111 {zw}1111 1111"),
        ] {
            assert_eq!(found(&card), [("payment_card", card.clone())]);
        }
    }
}

#[test]
fn full_width_digits_count_in_cards_ssns_and_phones() {
    let fw = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                '0'..='9' => char::from_u32(0xFF10 + (c as u32 - '0' as u32)).unwrap_or(c),
                '-' => '\u{FF0D}',
                ' ' => '\u{3000}',
                c => c,
            })
            .collect()
    };
    for (d, s) in [
        ("payment_card", "4111 1111 1111 1111"),
        ("us_ssn", "536-22-5555"),
        ("phone", "+44 20 7946 0958"),
    ] {
        let t = format!("番号は{}です", fw(s));
        assert_eq!(found(&t), [(d, fw(s))], "{t}");
    }
    // Mixed ASCII and full-width digits in one number.
    let t = "4111\u{FF11}111\u{FF11}111\u{FF11}111";
    assert_eq!(found(t), [("payment_card", t.to_string())]);
    // A full-width digit before the number makes it part of a longer one.
    let t = format!("\u{FF19}{}", "4111111111111111");
    assert_eq!(found(&t), []);
}

#[test]
fn numbers_inside_longer_runs_do_not_match() {
    for t in [
        "94111111111111111",
        "41111111111111119",
        "x4111111111111111",
        "3.4111111111111111",
        "1536-22-5555",
        "536-22-55551",
        "a536-22-5555",
        "2415-555-0132",
    ] {
        assert_eq!(found(t), [], "{t}");
    }
}

#[test]
fn keys_next_to_punctuation_and_at_the_edges() {
    let key = format!("ghp_{}", Rng::new(23).pick(corpus::ALNUM, 36));
    for p in [
        "\"", "'", "`", "(", ")", "[", "]", "<", ">", ":", "=", ";", ",", "|", "\t", "\r\n", "/",
        "\\",
    ] {
        for t in [
            format!("{p}{key}{p}"),
            format!("{key}{p}"),
            format!("{p}{key}"),
        ] {
            assert_eq!(found(&t), [("github_token", key.clone())], "{t:?}");
        }
    }
    assert_eq!(found(&format!("x{key}")), [], "glued to a word");
}

#[test]
fn literals_merge_with_builtins() {
    let set = DetectorSet::new(
        &[Detector::Email, Detector::PaymentCard],
        vec![
            Literal {
                name: "codename".into(),
                text: "Nightingale".into(),
                ignore_ascii_case: false,
                pattern: false,
            },
            Literal {
                name: "test_card".into(),
                text: "4111111111111111".into(),
                ignore_ascii_case: false,
                pattern: false,
            },
            Literal {
                name: "domain".into(),
                text: "example.com".into(),
                ignore_ascii_case: true,
                pattern: false,
            },
        ],
    )
    .unwrap();
    let t = "Nightingale: 4111111111111111 mail bob@EXAMPLE.COM, Example.com";
    let mut out = Vec::new();
    set.scan(t.as_bytes(), &mut out);
    check_invariants(t.as_bytes(), &out);
    let got: Vec<_> = out
        .iter()
        .map(|m| (set.name(m.detector), &t[m.start..m.end]))
        .collect();
    assert_eq!(
        got,
        [
            ("codename", "Nightingale"),
            ("payment_card", "4111111111111111"),
            ("email", "bob@EXAMPLE.COM"),
            ("domain", "Example.com")
        ],
        "same span: the built-in; overlapping: the longer"
    );
    assert!(!set.is_empty());
    assert!(DetectorSet::new(&[], vec![]).unwrap().is_empty());
}

#[test]
fn disabled_detectors_find_nothing_and_enabled_ones_still_work() {
    let values = corpus::values();
    for only in Detector::ALL {
        let set = DetectorSet::new(&[only], vec![]).unwrap();
        for (d, v) in &values {
            let mut out = Vec::new();
            set.scan(v.as_bytes(), &mut out);
            check_invariants(v.as_bytes(), &out);
            // Another detector's value may hold this one's shape inside
            // it (a Luhn-valid digit run in a Slack token): with that
            // detector off, the inner match is right.
            assert!(
                out.iter().all(|m| m.detector == DetectorId::Builtin(only)),
                "{out:?}"
            );
            if *d == only {
                assert_eq!(out.len(), 1, "{} value {v:?}", d.name());
                assert_eq!((out[0].start, out[0].end), (0, v.len()));
            }
        }
    }
    // The secret after a key id is found with the id's detector off.
    let set = DetectorSet::new(&[Detector::AwsSecretAccessKey], vec![]).unwrap();
    let t = "AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let mut out = Vec::new();
    set.scan(t.as_bytes(), &mut out);
    assert_eq!(
        out,
        [Match {
            detector: DetectorId::Builtin(Detector::AwsSecretAccessKey),
            start: 21,
            end: 61
        }]
    );
}

#[test]
fn any_byte_anywhere_never_panics() {
    let mut all: Vec<u8> = (0..=255u8).collect();
    scan_all(&all);
    all.reverse();
    scan_all(&all);
    for b in 0..=255u8 {
        scan_all(&[b]);
        scan_all(&[b, b]);
    }
    // Each value cut at every byte, and with every byte value spliced in.
    let values = corpus::values();
    for (_, v) in values.iter().step_by(3) {
        let v = v.as_bytes();
        for k in 0..=v.len() {
            scan_all(&v[..k]);
            scan_all(&v[k..]);
        }
        for b in [0u8, b' ', b'-', b'.', b'@', 0x80, 0xBC, 0xE2, 0xEF, 0xFF] {
            for k in (0..=v.len()).step_by(7) {
                let mut w = v.to_vec();
                w.insert(k, b);
                scan_all(&w);
            }
        }
    }
    // Random bytes drawn mostly from the characters matchers care about.
    let r = &mut Rng::new(24);
    let alphabet: Vec<u8> = b"sk-ant_AIzaKSghpxobe.J@+(0123456789 =/\n"
        .iter()
        .copied()
        .chain([0xEF, 0xBC, 0x91, 0xE2, 0x80, 0x8D, 0xC2, 0xA0])
        .collect();
    for _ in 0..300 {
        let n = r.below(400);
        let t: Vec<u8> = (0..n).map(|_| alphabet[r.below(alphabet.len())]).collect();
        scan_all(&t);
    }
}

#[test]
fn repetitive_inputs_scan_in_linear_time() {
    // Each would be quadratic if a failed attempt's run were re-measured
    // from every word start inside it; at 256 KB that would take minutes.
    let n = 256 * 1024;
    let fill = |unit: &str| unit.repeat(n / unit.len());
    for unit in [
        "eyJa-",
        "xoxb-a",
        "ABSK/",
        "sk-ant-api03-",
        "sk-proj-a",
        "-----BEGIN PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----",
        "a@",
        "a.",
        "1 ",
        "1-",
        "\u{FF11}",
        "1\u{FF11}",
        "1\u{200B}",
        "\u{200B}",
        "+1",
        "(1",
        "GB82 ",
        "AKIA",
        "aws_secret_access_key=",
        "0",
        "a",
    ] {
        let t = fill(unit);
        #[cfg(not(target_arch = "wasm32"))]
        let start = std::time::Instant::now();
        scan_all(t.as_bytes());
        #[cfg(not(target_arch = "wasm32"))]
        assert!(
            start.elapsed().as_secs() < 5,
            "{unit:?}: {:?}",
            start.elapsed()
        );
    }
    // A key id followed by a long slash run: the backward step is bounded.
    let t = format!("AKIAIOSFODNN7EXAMPLE {}", "/a".repeat(n / 2));
    scan_all(t.as_bytes());
}

#[test]
fn every_match_is_named() {
    let set = DetectorSet::all_builtins();
    for d in Detector::ALL {
        assert_eq!(set.name(DetectorId::Builtin(d)), d.name());
    }
    assert_eq!(set.name(DetectorId::Literal(3)), "literal");
}
