//! Credential formats, each an anchored matcher run after a prefix hit at a
//! word start (PEM blocks: at a `-`).
//!
//! Sources: gitleaks' `config/gitleaks.toml` rules and their test cases,
//! and the providers' documented formats. Where gitleaks pins exact shapes
//! and a DLP should rather err towards matching, the choice is noted on the
//! table or the function. Formats that are a prefix and a run of one
//! character class are rows of [`Format`] tables; the others (AWS, Google,
//! Bedrock long-term, legacy OpenAI, Slack tokens, JWTs, PEM blocks, AWS
//! secrets) are functions.
//!
//! Invariants:
//! - A matcher either answers its detector, the cursor at the end of a
//!   match that starts where it was given (or at `c.start`, moved back), or
//!   `None`; it never panics and reads no further than the run it measures
//!   (bounded where the run could be re-measured from inside itself, see
//!   [`Memo`]).
//! - A key body must be [`varied`]: a run of one repeated character
//!   (`ghp_xxxx…`, `AKIAXXXX…`) is a placeholder, not a key.
//! - Formats with a documented fixed length match exactly that length: the
//!   specific prefixes (`ghp_`, `github_pat_`, `sk-ant-api03-`) are cut at
//!   it, so two keys written back to back are two matches; the others
//!   (`AKIA…`, `AIza…`, legacy `sk-…`) must end there, unless another key of
//!   the same kind follows at once.

use super::chars::{is, Cur, ALNUM, B64, B64URL, BASE32, LABEL, WORD};
use super::detector::Detector;

/// What a word start holds; where it ends is the cursor's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// A credential.
    Key(Detector),
    /// An `aws_secret_access_key`-style label: a 40-character secret may
    /// follow.
    AwsLabel,
}

/// Positions before which a matcher is known to fail: a failed attempt
/// measured a run that later word starts inside it would measure again
/// (`eyJa-eyJa-…`, `xoxb-xoxb-…`), and would fail the same way, having only
/// a suffix of the same run and the same text after it. Keeps the scan
/// linear on such input.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Memo {
    jwt: usize,
    slack: usize,
}

/// The credential (or AWS label) at the word start `c.p`; the cursor ends
/// at its end. On `None` the cursor is anywhere.
pub(super) fn at_word(c: &mut Cur, memo: &mut Memo) -> Option<Found> {
    let i = c.p;
    let b = *c.t.get(i)?;
    // A cheap look at the second byte first (or at the invisible character
    // that may stand before it): most words are gone after it.
    let b1 = c.t.get(i + 1).copied().unwrap_or(0);
    let second = |x: u8| b1 == x || b1 >= 0x80;
    let key = match b {
        b's' if second(b'k') => prefixed(c, &SK).or_else(|| {
            c.reset(i);
            legacy_openai(c)
        }),
        b'r' if second(b'k') => prefixed(c, &RK),
        b'A' if b"IBKSC".iter().any(|&x| second(x)) => upper_a(c),
        b'g' if second(b'h') || second(b'i') => prefixed(c, &GH),
        b'x' if second(b'o') || second(b'a') => slack(c, memo),
        b'h' if second(b't') || second(b'o') => {
            let _ = c.lit(b"https://") || c.lit(b"http://");
            prefixed(c, &HOOKS)
        }
        b'e' if second(b'y') => jwt(c, memo),
        b'b' if second(b'e') => bedrock_short_term(c),
        _ => None,
    };
    if key.is_some() {
        return key.map(Found::Key);
    }
    c.reset(i);
    let label = match (b | 0x20, b1 | 0x20) {
        (b'a', b'w') | (b's', b'e') => true,
        (b'a' | b's', _) => b1 >= 0x80,
        _ => false,
    };
    (label && aws_label(c)).then_some(Found::AwsLabel)
}

/// Not a placeholder: the visible bytes of `t[s..e]` hold at least four
/// distinct values.
fn varied(t: &[u8], s: usize, e: usize) -> bool {
    let mut seen = [0u64; 2];
    let mut distinct = 0;
    for &b in t.get(s..e).unwrap_or_default() {
        let bit = 1u64 << (b & 63);
        if let Some(w) = seen.get_mut(usize::from(b >> 6)) {
            if *w & bit == 0 {
                *w |= bit;
                distinct += 1;
            }
        }
    }
    distinct >= 4
}

/// `d`, if the key body from `body` to the cursor is [`varied`].
fn key(d: Detector, c: &Cur, body: usize) -> Option<Detector> {
    varied(c.t, body, c.p).then_some(d)
}

/// A fixed-length body of `len` at `body`, out of a run of `n` visible
/// bytes: exactly `len` and a boundary (the run ended), or longer with
/// another key starting at once (one of `also` there). The cursor ends
/// after `len`.
fn fixed(c: &mut Cur, body: usize, n: usize, len: usize, also: &[&[u8]]) -> bool {
    c.p = body;
    c.skip(len);
    let e = c.p;
    let ok = n == len || (n > len && also.iter().any(|s| c.lit(s)));
    c.p = e;
    ok
}

/// A credential written as a prefix and a run of one character class (the
/// body), of `min` characters or more. With `cut`, the body is exactly
/// `min` long and the match ends there whatever follows, so two keys
/// written back to back are two matches.
struct Format {
    prefix: &'static [u8],
    detector: Detector,
    body: u8,
    min: u8,
    cut: bool,
}

const fn format(prefix: &'static [u8], detector: Detector, body: u8, min: u8, cut: bool) -> Format {
    Format {
        prefix,
        detector,
        body,
        min,
        cut,
    }
}

use Detector::{AnthropicApiKey as ANTHROPIC, GithubToken as GITHUB, OpenaiApiKey as OPENAI};
use Detector::{SlackWebhookUrl as WEBHOOK, StripeKey as STRIPE};

/// After `s`. OpenAI project, service-account and admin keys (and the
/// 2024 `sk-None-` user keys) are 124 or 156 characters around `T3BlbkFJ`
/// (base64 of "OpenAI"); any 100 or more match, so a format variant is
/// still caught. Anthropic `api03` and `admin01` keys are exactly 95
/// (gitleaks: 93 and `AA`; the `AA` is not required, a key with another
/// ending is still a key), OAuth tokens (`oat01`, `ort01`) 40 or more.
/// Stripe secret keys: 20 or more alphanumerics (gitleaks: 10; real keys
/// have 24 or more, and 10 matches placeholders like `sk_test_1234567890`).
const SK: [Format; 11] = [
    format(b"sk-proj-", OPENAI, B64URL, 100, false),
    format(b"sk-svcacct-", OPENAI, B64URL, 100, false),
    format(b"sk-admin-", OPENAI, B64URL, 100, false),
    format(b"sk-None-", OPENAI, B64URL, 100, false),
    format(b"sk-ant-api03-", ANTHROPIC, B64URL, 95, true),
    format(b"sk-ant-admin01-", ANTHROPIC, B64URL, 95, true),
    format(b"sk-ant-oat01-", ANTHROPIC, B64URL, 40, false),
    format(b"sk-ant-ort01-", ANTHROPIC, B64URL, 40, false),
    format(b"sk_live_", STRIPE, ALNUM, 20, false),
    format(b"sk_test_", STRIPE, ALNUM, 20, false),
    format(b"sk_prod_", STRIPE, ALNUM, 20, false),
];

/// Stripe restricted keys, as secret keys.
const RK: [Format; 3] = [
    format(b"rk_live_", STRIPE, ALNUM, 20, false),
    format(b"rk_test_", STRIPE, ALNUM, 20, false),
    format(b"rk_prod_", STRIPE, ALNUM, 20, false),
];

/// GitHub: classic tokens, exactly 36 alphanumerics; fine-grained ones,
/// exactly 82 `[A-Za-z0-9_]`. As in gitleaks, what follows does not
/// matter.
const GH: [Format; 6] = [
    format(b"ghp_", GITHUB, ALNUM, 36, true),
    format(b"gho_", GITHUB, ALNUM, 36, true),
    format(b"ghu_", GITHUB, ALNUM, 36, true),
    format(b"ghs_", GITHUB, ALNUM, 36, true),
    format(b"ghr_", GITHUB, ALNUM, 36, true),
    format(b"github_pat_", GITHUB, WORD, 82, true),
];

/// Slack webhooks (after an optional `http(s)://`): 20 or more path
/// characters.
const HOOKS: [Format; 3] = [
    format(
        b"hooks.slack.com/services/",
        WEBHOOK,
        B64 | B64URL,
        20,
        false,
    ),
    format(
        b"hooks.slack.com/workflows/",
        WEBHOOK,
        B64 | B64URL,
        20,
        false,
    ),
    format(
        b"hooks.slack.com/triggers/",
        WEBHOOK,
        B64 | B64URL,
        20,
        false,
    ),
];

/// The first of `formats` whose prefix is at `c.p`, if its body holds.
fn prefixed(c: &mut Cur, formats: &[Format]) -> Option<Detector> {
    let f = formats.iter().find(|f| c.lit(f.prefix))?;
    let body = c.p;
    let min = usize::from(f.min);
    if c.run(f.body, if f.cut { min } else { usize::MAX }) < min {
        return None;
    }
    key(f.detector, c, body)
}

/// Legacy OpenAI keys at `s`: `sk-` and exactly 48 alphanumerics with
/// `T3BlbkFJ` at 20.
fn legacy_openai(c: &mut Cur) -> Option<Detector> {
    if !c.lit(b"sk-") {
        return None;
    }
    let p = c.p;
    let n = c.run(ALNUM, 51);
    if !fixed(c, p, n, 48, &[b"sk-"]) {
        return None;
    }
    let e = c.p;
    c.p = p;
    c.skip(20);
    if !c.lit(b"T3BlbkFJ") {
        return None;
    }
    c.p = e;
    key(Detector::OpenaiApiKey, c, p)
}

/// The prefixes of AWS access key ids.
const AWS_PREFIXES: [&[u8]; 4] = [b"AKIA", b"ASIA", b"ABIA", b"ACCA"];

/// At `A`: Google (`AIza`), Bedrock long-term (`ABSK`) and AWS keys.
fn upper_a(c: &mut Cur) -> Option<Detector> {
    if c.lit(b"AIza") {
        let body = c.p;
        let n = c.run(B64URL, 40);
        return if fixed(c, body, n, 35, &[b"AIza"]) {
            key(Detector::GoogleApiKey, c, body)
        } else {
            None
        };
    }
    if c.lit(b"ABSK") {
        return bedrock_long_term(c);
    }
    if !AWS_PREFIXES.iter().any(|x| c.lit(x)) {
        return None;
    }
    let body = c.p;
    let n = c.run(BASE32, 21);
    // The id ends with the word: `[A-Z2-7]` stops at 0, 1, 8, 9 and lower
    // case, which would still continue it.
    let ends = n == 16 && !c.glued();
    if !(ends || (n > 16 && fixed(c, body, n, 16, &AWS_PREFIXES))) {
        return None;
    }
    key(Detector::AwsAccessKeyId, c, body)
}

/// After `ABSK`: base64 of `BedrockAPIKey-…:secret`. With the encoded
/// `BedrockAPIKey-` (`QmVkcm9ja0FQSUtleS`) 32 or more characters match;
/// without it, 109 to 269 (gitleaks). Then up to two `=`.
fn bedrock_long_term(c: &mut Cur) -> Option<Detector> {
    let body = c.p;
    let marked = c.lit(b"QmVkcm9ja0FQSUtleS");
    c.p = body;
    let n = c.run(B64, if marked { 4096 } else { 270 });
    let ok = if marked {
        n >= 32
    } else {
        (109..=269).contains(&n)
    };
    if !ok {
        return None;
    }
    padding(c);
    key(Detector::BedrockApiKey, c, body)
}

/// Short-term Bedrock keys: `bedrock-api-key-` and base64 of a presigned
/// `bedrock.amazonaws.com/…` URL.
fn bedrock_short_term(c: &mut Cur) -> Option<Detector> {
    if !c.lit(b"bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t") {
        return None;
    }
    c.run(B64, usize::MAX);
    padding(c);
    Some(Detector::BedrockApiKey)
}

/// Consumes up to two `=`.
fn padding(c: &mut Cur) {
    let _ = c.lit(b"=") && c.lit(b"=");
}

/// Slack tokens: `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xoxe-` or
/// `xapp-`, then 20 or more `[A-Za-z0-9-]` with at least one digit (every
/// Slack token carries numeric team or user ids; `xoxb-your-bot-token-here`
/// does not).
fn slack(c: &mut Cur, memo: &mut Memo) -> Option<Detector> {
    if c.p < memo.slack {
        return None;
    }
    let token = c.lit(b"xapp-")
        || (c.lit(b"xox") && c.bump().is_some_and(|k| b"bpares".contains(&k)) && c.lit(b"-"));
    if !token {
        return None;
    }
    let body = c.p;
    let n = c.run(LABEL, usize::MAX);
    let digit =
        c.t.get(body..c.p)
            .is_some_and(|s| s.iter().any(u8::is_ascii_digit));
    if n >= 20 && digit {
        return key(Detector::SlackToken, c, body);
    }
    memo.slack = c.p;
    None
}

/// JWTs: `eyJ` and 13 or more base64url (a JSON object's header), `.`,
/// `ey` and 14 or more (the payload), `.`, a signature that may be empty
/// (`alg: none`); up to two more parts (JWE) are included.
fn jwt(c: &mut Cur, memo: &mut Memo) -> Option<Detector> {
    if c.p < memo.jwt || !c.lit(b"eyJ") {
        return None;
    }
    let header = c.run(B64URL, usize::MAX);
    memo.jwt = c.p;
    if header < 13 || !c.lit(b".ey") || c.run(B64URL, usize::MAX) < 14 || !c.lit(b".") {
        return None;
    }
    c.run(B64URL, usize::MAX);
    for _ in 0..2 {
        let e = c.p;
        if !c.lit(b".") || c.run(B64URL, usize::MAX) == 0 {
            c.p = e;
            break;
        }
    }
    Some(Detector::Jwt)
}

/// The end of the run of `[A-Z0-9 ]` from `p` (at most 48): a PEM label.
fn pem_label(t: &[u8], p: usize) -> usize {
    let rest = t.get(p..).unwrap_or_default();
    let n = rest
        .iter()
        .take(48)
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b' ')
        .count();
    p + n
}

/// PEM private keys at the `-` at `c.p`, from `-----BEGIN <label>PRIVATE
/// KEY-----` (or `… PRIVATE KEY BLOCK-----`, PGP) to the end of the
/// `-----END …-----` line. A block cut short (no END line before the body
/// stops) still matches up to its last body character when the body holds
/// 64 or more base64 characters: part of a key is a leak too. The body may
/// hold whitespace, RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`, `DEK-Info:
/// …`) and literal `\n` escapes.
pub(super) fn pem(c: &mut Cur) -> bool {
    // Most dashes are not followed by another (visible or not).
    let dash = matches!(c.t.get(c.p + 1), Some(b'-' | 0x80..));
    if !dash || !c.lit(b"-----BEGIN ") {
        return false;
    }
    let t = c.t;
    let q = pem_label(t, c.p);
    let label = t.get(c.p..q).unwrap_or_default();
    c.p = q;
    if !(label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK"))
        || !c.lit(b"-----")
    {
        return false;
    }
    let mut p = c.p;
    let mut base64 = 0;
    while let Some(&b) = t.get(p) {
        if b == b'-' && t.get(p..p + 5) == Some(b"-----") {
            c.p = p;
            let end = c.lit(b"-----END ") && {
                c.p = pem_label(t, c.p);
                c.lit(b"-----")
            };
            if end {
                return true;
            }
            break;
        }
        if is(t, p, B64) || b == b'=' {
            base64 += 1;
            c.p = p + 1;
        } else if !matches!(
            b,
            b' ' | b'\t' | b'\r' | b'\n' | b'\\' | b':' | b',' | b'-' | b'.'
        ) {
            break;
        }
        p += 1;
    }
    // Cut short: the cursor is after the last body character.
    base64 >= 64
}

/// An `aws_secret_access_key`-style label at `c.p`, case-insensitive, with
/// `_`, `-`, `.` or a space (or nothing) between the words: `aws` `secret`
/// [`access`] `key`, or `secret` `access` `key`. Covers the CLI's
/// credentials file and environment (`aws_secret_access_key`,
/// `AWS_SECRET_ACCESS_KEY`), the API's `SecretAccessKey`, the SDKs'
/// `secretAccessKey` and prose ("AWS secret key").
fn aws_label(c: &mut Cur) -> bool {
    fn word(c: &mut Cur, w: &[u8]) -> bool {
        let found = c.ilit(w);
        if found && matches!(c.t.get(c.p), Some(b'_' | b'-' | b'.' | b' ')) {
            c.p += 1;
        }
        found
    }
    let aws = word(c, b"aws");
    if !word(c, b"secret") {
        return false;
    }
    let access = word(c, b"access");
    (aws || access) && c.ilit(b"key")
}

/// An AWS secret access key at the word start `c.p` (or at `/` or `+` just
/// before it): exactly 40 `[A-Za-z0-9+/]`, no base64 padding after, with
/// upper and lower case and a digit, `/` or `+` (so a 40-digit hex SHA-1
/// never matches). Only asked shortly after an access key id or a label.
/// Moves `c.start` back to the `/` or `+`.
pub(super) fn aws_secret(c: &mut Cur) -> bool {
    let t = c.t;
    let i = c.p;
    let mut s = i;
    while s + 40 > i && s > 0 && matches!(t.get(s - 1), Some(b'/' | b'+')) {
        s -= 1;
    }
    if s > 0 && is(t, s - 1, B64) {
        return false;
    }
    c.p = s;
    if c.run(B64, 41) != 40 || c.peek() == Some(b'=') {
        return false;
    }
    let body = t.get(s..c.p).unwrap_or_default();
    let upper = body.iter().any(u8::is_ascii_uppercase);
    let lower = body.iter().any(u8::is_ascii_lowercase);
    let other = body
        .iter()
        .any(|b| b.is_ascii_digit() || *b == b'/' || *b == b'+');
    c.start = s;
    upper && lower && other && varied(t, s, c.p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn found(t: &str) -> Option<(Found, usize)> {
        let mut c = Cur::new(t.as_bytes(), 0);
        at_word(&mut c, &mut Memo::default()).map(|f| (f, c.p))
    }

    #[test]
    fn placeholders_are_not_keys() {
        assert_eq!(found("ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), None);
        assert_eq!(found("AKIAXXXXXXXXXXXXXXXX"), None);
        assert_eq!(found("xoxb-xxxxxxxxx-xxxxxxxxxx-xxxxxxxxxxxx"), None);
        assert_eq!(found("xoxb-12345-abcd234"), None);
        assert_eq!(found("xoxb-your-bot-token-goes-right-here"), None);
        assert_eq!(found("sk_test_1234567890"), None);
    }

    #[test]
    fn aws_labels_are_recognised_in_their_usual_spellings() {
        for l in [
            "aws_secret_access_key",
            "AWS_SECRET_ACCESS_KEY",
            "SecretAccessKey",
            "secretAccessKey",
            "aws_secret_key",
            "AWS secret key",
            "secret-access-key",
        ] {
            assert_eq!(found(l), Some((Found::AwsLabel, l.len())), "{l}");
        }
        for l in ["secret_key", "secrets", "aws_key", "SECRET"] {
            assert_eq!(found(l), None, "{l}");
        }
    }

    fn secret(t: &[u8], i: usize) -> Option<(usize, usize)> {
        let mut c = Cur::new(t, i);
        aws_secret(&mut c).then_some((c.start, c.p))
    }

    #[test]
    fn a_sha1_is_not_an_aws_secret() {
        assert_eq!(secret(b"3f786850e387550fdab836ed7e6dc881de23001b", 0), None);
        let t = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(secret(t, 0), Some((0, 40)));
        assert_eq!(secret(t, 14), None, "inside the token");
        let t = b"x /K7MDENG/bPxRfiCYEXAMPLEKEYwJalrXUtnFEMI";
        assert_eq!(secret(t, 3), Some((2, 42)), "starts at the slash");
        assert_eq!(secret(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE=", 0), None);
    }

    fn pem_end(t: &str) -> Option<usize> {
        let mut c = Cur::new(t.as_bytes(), 0);
        pem(&mut c).then_some(c.p)
    }

    #[test]
    fn pem_needs_a_private_key_label() {
        let body = "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n";
        let t = format!("-----BEGIN PUBLIC KEY-----\n{body}{body}-----END PUBLIC KEY-----");
        assert_eq!(pem_end(&t), None);
        let t = format!("-----BEGIN CERTIFICATE-----\n{body}{body}");
        assert_eq!(pem_end(&t), None);
        assert_eq!(pem_end("-----BEGIN PRIVATE KEY-----"), None);
        let t = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----";
        assert_eq!(pem_end(t), Some(t.len()));
        let t = format!("-----BEGIN PRIVATE KEY-----\n{body}\n\n");
        assert_eq!(
            pem_end(&t),
            Some(t.len() - 3),
            "cut short: up to the body's end"
        );
    }
}
