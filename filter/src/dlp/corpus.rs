//! Test corpora: positives for every built-in (recall), benign prompts
//! (false positives), and the generators behind them.
//!
//! Key-shaped positives are generated from a fixed seed at test time rather
//! than written out, so the source holds no string a secret scanner would
//! flag (a push could be refused for it); the values published as
//! examples (AWS's `AKIAIOSFODNN7EXAMPLE`, the standard test cards, the
//! example IBANs, jwt.io's token) are written out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::Detector;

/// A small deterministic generator (xorshift64*).
pub(super) struct Rng(u64);

pub(super) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub(super) const B64URL: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
pub(super) const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub(super) const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub(super) const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub(super) const HEX: &[u8] = b"0123456789abcdef";
pub(super) const DIGITS: &[u8] = b"0123456789";

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() >> 33) as usize % n
    }

    /// `n` characters drawn from `alphabet`.
    pub(super) fn pick(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }

    pub(super) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Base64 (standard with padding, or base64url without).
pub(super) fn base64(data: &[u8], url: bool) -> String {
    let abc = if url { B64URL } else { B64 };
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..=chunk.len() {
            s.push(char::from(abc[(n >> (18 - 6 * k)) as usize & 63]));
        }
        if !url {
            s.push_str(&"=="[..3 - chunk.len()]);
        }
    }
    s
}

/// A PEM block with `lines` lines of 64 base64 characters.
fn pem(rng: &mut Rng, label: &str, headers: &str, lines: usize) -> String {
    let mut s = format!("-----BEGIN {label}-----\n{headers}");
    for _ in 0..lines {
        s += &rng.pick(B64, 64);
        s.push('\n');
    }
    s + &rng.pick(B64, 20) + "==\n-----END " + label + "-----"
}

fn jwt(rng: &mut Rng, header: &str, payload: &str, sig: usize) -> String {
    let sig = rng.bytes(sig);
    format!(
        "{}.{}.{}",
        base64(header.as_bytes(), true),
        base64(payload.as_bytes(), true),
        base64(&sig, true)
    )
}

/// Values each built-in must find, standing alone (the tests put them in
/// several contexts).
pub(super) fn values() -> Vec<(Detector, String)> {
    use Detector::*;
    let r = &mut Rng::new(10);
    let mut v = Vec::new();
    let mut add = |d: Detector, s: String| v.push((d, s));

    for (label, n) in [
        ("proj", 58),
        ("proj", 74),
        ("svcacct", 58),
        ("admin", 58),
        ("None", 74),
    ] {
        add(
            OpenaiApiKey,
            format!(
                "sk-{label}-{}T3BlbkFJ{}",
                r.pick(B64URL, n),
                r.pick(B64URL, n)
            ),
        );
    }
    for _ in 0..2 {
        add(
            OpenaiApiKey,
            format!("sk-{}T3BlbkFJ{}", r.pick(ALNUM, 20), r.pick(ALNUM, 20)),
        );
    }

    for _ in 0..3 {
        add(
            AnthropicApiKey,
            format!("sk-ant-api03-{}AA", r.pick(B64URL, 93)),
        );
    }
    add(
        AnthropicApiKey,
        format!("sk-ant-admin01-{}AA", r.pick(B64URL, 93)),
    );
    add(
        AnthropicApiKey,
        format!("sk-ant-oat01-{}", r.pick(B64URL, 108)),
    );
    // gitleaks' example's shape: words and dashes in the body.
    add(
        AnthropicApiKey,
        format!(
            "sk-ant-api03-abc123xyz-456def789ghij-{}-{}AA",
            r.pick(B64URL, 35),
            r.pick(B64URL, 33)
        ),
    );

    for _ in 0..5 {
        add(GoogleApiKey, format!("AIza{}", r.pick(B64URL, 35)));
    }

    add(AwsAccessKeyId, "AKIAIOSFODNN7EXAMPLE".into());
    for p in ["AKIA", "ASIA", "ABIA", "ACCA"] {
        add(AwsAccessKeyId, format!("{p}{}", r.pick(BASE32, 16)));
    }

    for _ in 0..3 {
        let inner = format!(
            "BedrockAPIKey-{}-at-{}:{}",
            r.pick(ALNUM, 4),
            r.pick(DIGITS, 12),
            base64(&r.bytes(33), false)
        );
        add(
            BedrockApiKey,
            format!("ABSK{}", base64(inner.as_bytes(), false)),
        );
    }
    add(BedrockApiKey, format!("ABSK{}", r.pick(B64, 120)));
    // A shortened key from a public test file.
    add(
        BedrockApiKey,
        "ABSKQmVkcm9ja0FQSUtleS10ZXN0LWtleS0xMjM0NTY3ODkw".into(),
    );
    let url = format!(
        "bedrock.amazonaws.com/?Action=CallWithBearerToken&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIA{}%2F20250101%2Fus-east-1%2Fbedrock%2Faws4_request&X-Amz-Date=20250101T000000Z&X-Amz-Expires=43200&X-Amz-SignedHeaders=host&X-Amz-Signature={}&Version=1",
        r.pick(BASE32, 16),
        r.pick(HEX, 64)
    );
    add(
        BedrockApiKey,
        format!("bedrock-api-key-{}", base64(url.as_bytes(), false)),
    );

    for p in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
        add(GithubToken, format!("{p}{}", r.pick(ALNUM, 36)));
    }
    add(
        GithubToken,
        format!("github_pat_{}_{}", r.pick(ALNUM, 22), r.pick(ALNUM, 59)),
    );

    add(
        SlackToken,
        format!(
            "xoxb-{}-{}-{}",
            r.pick(DIGITS, 13),
            r.pick(DIGITS, 13),
            r.pick(ALNUM, 24)
        ),
    );
    add(
        SlackToken,
        format!(
            "xoxp-{}-{}-{}-{}",
            r.pick(DIGITS, 12),
            r.pick(DIGITS, 13),
            r.pick(DIGITS, 13),
            r.pick(HEX, 32)
        ),
    );
    add(
        SlackToken,
        format!(
            "xapp-1-A{}-{}-{}",
            r.pick(UPPER_ALNUM, 10),
            r.pick(DIGITS, 13),
            r.pick(HEX, 64)
        ),
    );
    add(SlackToken, format!("xoxa-2-{}", r.pick(ALNUM, 40)));
    add(SlackToken, format!("xoxr-1-{}", r.pick(ALNUM, 40)));
    add(
        SlackToken,
        format!(
            "xoxs-{}-{}-{}-{}",
            r.pick(DIGITS, 10),
            r.pick(DIGITS, 11),
            r.pick(DIGITS, 12),
            r.pick(HEX, 64)
        ),
    );
    add(SlackToken, format!("xoxe-1-{}", r.pick(UPPER_ALNUM, 146)));

    for scheme in ["https://", "http://", ""] {
        let id = format!(
            "T{}/B{}/{}",
            r.pick(UPPER_ALNUM, 8),
            r.pick(UPPER_ALNUM, 8),
            r.pick(ALNUM, 24)
        );
        add(
            SlackWebhookUrl,
            format!("{scheme}hooks.slack.com/services/{id}"),
        );
    }
    add(
        SlackWebhookUrl,
        format!(
            "https://hooks.slack.com/workflows/T{}/A{}/{}/{}",
            r.pick(UPPER_ALNUM, 8),
            r.pick(UPPER_ALNUM, 10),
            r.pick(DIGITS, 18),
            r.pick(ALNUM, 24)
        ),
    );
    add(
        SlackWebhookUrl,
        format!(
            "https://hooks.slack.com/triggers/T{}/{}/{}",
            r.pick(UPPER_ALNUM, 8),
            r.pick(DIGITS, 13),
            r.pick(HEX, 32)
        ),
    );

    for (p, n) in [
        ("sk_live_", 24),
        ("sk_test_", 99),
        ("rk_live_", 24),
        ("rk_test_", 99),
        ("sk_prod_", 40),
    ] {
        add(StripeKey, format!("{p}{}", r.pick(ALNUM, n)));
    }
    // The length of Stripe's documentation test key.
    add(StripeKey, format!("sk_test_{}", r.pick(ALNUM, 24)));

    for label in [
        "RSA PRIVATE KEY",
        "PRIVATE KEY",
        "EC PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
    ] {
        add(PrivateKey, pem(r, label, "", 6));
    }
    add(
        PrivateKey,
        pem(
            r,
            "PGP PRIVATE KEY BLOCK",
            "Version: GnuPG v2\nComment: test only\n\n",
            8,
        ),
    );
    add(
        PrivateKey,
        pem(
            r,
            "RSA PRIVATE KEY",
            "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0123456789ABCDEF0123456789ABCDEF\n\n",
            6,
        ),
    );
    // Literal `\n` escapes, as in a JSON file pasted as text.
    let escaped = pem(r, "RSA PRIVATE KEY", "", 4).replace('\n', "\\n");
    add(PrivateKey, escaped);

    // jwt.io's example, and an unsigned token (gitleaks' case).
    add(
        Jwt,
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c".into(),
    );
    add(
        Jwt,
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0ZXN0LXVzZXIifQ.".into(),
    );
    add(
        Jwt,
        jwt(
            r,
            r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#,
            r#"{"sub":"user-1","aud":"api","exp":1700000000}"#,
            256,
        ),
    );
    add(
        Jwt,
        jwt(
            r,
            r#"{"alg":"ES256"}"#,
            r#"{"iss":"https://issuer.example","scope":"read write"}"#,
            64,
        ),
    );
    add(
        Jwt,
        jwt(
            r,
            r#"{"typ":"JWT","alg":"HS512"}"#,
            r#"{"role":"admin"}"#,
            64,
        ),
    );

    for c in [
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "3530111333300000",
        "30569309025904",
        "4222222222222",
        "2223003122003222",
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",
        "3782 822463 10005",
        "6011 0009 9013 9424",
        "\u{FF14}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}",
    ] {
        add(PaymentCard, c.into());
    }

    for s in [
        "536-22-5555",
        "601-10-3456",
        "449 56 7890",
        "772.15.3092",
        "123-45-6780",
        "\u{FF15}\u{FF13}\u{FF16}\u{FF0D}\u{FF12}\u{FF12}\u{FF0D}\u{FF15}\u{FF15}\u{FF15}\u{FF15}",
    ] {
        add(UsSsn, s.into());
    }

    for i in [
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "DE89370400440532013000",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "CH9300762011623852957",
        "ES9121000418450200051332",
        "IT60X0542811101000000123456",
        "BE68539007547034",
        "NO9386011117947",
        "de89370400440532013000",
    ] {
        add(Iban, i.into());
    }

    for e in [
        "john.doe@example.com",
        "jane_doe+newsletter@sub.example.co.uk",
        "a@b.io",
        "UPPER.CASE@EXAMPLE.ORG",
        "first-last@company-name.museum",
        "x_y%z@mail.example.com",
    ] {
        add(Email, e.into());
    }

    for p in [
        "+1 415-555-0132",
        "+14155550132",
        "+44 20 7946 0958",
        "+44 (0) 20 7946 0958",
        "+49 30 901820",
        "+33 1 23 45 67 89",
        "(415) 555-0132",
        "415-555-0132",
        "415.555.0132",
        "1-800-555-0199",
        "1 (800) 555-0199",
        "(415)555-0132",
    ] {
        add(Phone, p.into());
    }
    v
}

/// Texts with several expected matches: the AWS secret key in the places
/// it is written next to its id or label.
pub(super) fn cases() -> Vec<(String, Vec<(Detector, String)>)> {
    use Detector::*;
    let r = &mut Rng::new(11);
    let mut v = Vec::new();
    let docs_id = "AKIAIOSFODNN7EXAMPLE".to_string();
    let docs_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string();
    v.push((
        format!("[default]\naws_access_key_id = {docs_id}\naws_secret_access_key = {docs_secret}\nregion = us-east-1\n"),
        vec![(AwsAccessKeyId, docs_id.clone()), (AwsSecretAccessKey, docs_secret.clone())],
    ));
    let (id, secret, token) = (
        format!("ASIA{}", r.pick(BASE32, 16)),
        r.pick(B64, 40),
        r.pick(B64, 300),
    );
    v.push((
        format!("export AWS_ACCESS_KEY_ID={id}\nexport AWS_SECRET_ACCESS_KEY={secret}\nexport AWS_SESSION_TOKEN={token}\n"),
        vec![(AwsAccessKeyId, id), (AwsSecretAccessKey, secret)],
    ));
    let (id, secret) = (format!("ASIA{}", r.pick(BASE32, 16)), r.pick(B64, 40));
    v.push((
        format!(
            r#"{{"Credentials": {{"AccessKeyId": "{id}", "SecretAccessKey": "{secret}", "SessionToken": "{}", "Expiration": "2024-01-15T10:30:00Z"}}}}"#,
            r.pick(B64, 200)
        ),
        vec![(AwsAccessKeyId, id), (AwsSecretAccessKey, secret)],
    ));
    let (id, secret) = (format!("AKIA{}", r.pick(BASE32, 16)), r.pick(B64, 40));
    v.push((
        format!("Access key ID,Secret access key\n{id},{secret}\n"),
        vec![(AwsAccessKeyId, id), (AwsSecretAccessKey, secret)],
    ));
    let secret = r.pick(B64, 40);
    v.push((
        format!("my AWS secret key is {secret} please rotate it"),
        vec![(AwsSecretAccessKey, secret)],
    ));
    let secret = r.pick(B64, 40);
    v.push((
        format!(
            "const client = new S3Client({{ credentials: {{ secretAccessKey: '{secret}' }} }});"
        ),
        vec![(AwsSecretAccessKey, secret)],
    ));
    v
}

/// Benign prompts: what the built-ins must not find. Each entry is a kind
/// and a text.
pub(super) fn benign() -> Vec<(&'static str, String)> {
    let r = &mut Rng::new(12);
    let mut v: Vec<(&'static str, String)> = vec![
        ("prose", PROSE.into()),
        ("rust code", RUST.into()),
        ("python code", PYTHON.into()),
        ("shell and git", SHELL.into()),
        ("log lines", LOGS.into()),
        ("placeholders", PLACEHOLDERS.into()),
        ("numbers", NUMBERS.into()),
    ];
    let uuids: Vec<String> = (0..50)
        .map(|_| {
            format!(
                "{}-{}-4{}-a{}-{}",
                r.pick(HEX, 8),
                r.pick(HEX, 4),
                r.pick(HEX, 3),
                r.pick(HEX, 3),
                r.pick(HEX, 12)
            )
        })
        .collect();
    v.push(("uuids", uuids.join("\n")));
    let hashes: Vec<String> = (0..50)
        .map(|k| r.pick(HEX, if k % 2 == 0 { 40 } else { 64 }))
        .collect();
    v.push(("sha-1 and sha-256", hashes.join(" ")));
    let upper: Vec<String> = (0..20).map(|_| r.pick(b"0123456789ABCDEF", 40)).collect();
    v.push(("upper-case hex", upper.join(", ")));
    v.push((
        "base64 image",
        format!(
            "![chart](data:image/png;base64,{})",
            base64(&r.bytes(6000), false)
        ),
    ));
    v.push((
        "base64url ids",
        (0..40)
            .map(|_| r.pick(B64URL, 22))
            .collect::<Vec<_>>()
            .join(" "),
    ));
    let nine: Vec<String> = (0..50).map(|_| r.pick(DIGITS, 9)).collect();
    v.push(("nine-digit numbers", nine.join(", ")));
    let mut invalid = Vec::new();
    while invalid.len() < 50 {
        let len = 13 + r.below(7);
        let mut d = format!("{}{}", 2 + r.below(5), r.pick(DIGITS, len - 1));
        let digits: Vec<u8> = d.bytes().map(|b| b - b'0').collect();
        if super::validate::luhn(&digits) {
            d.pop();
            d.push(if d.ends_with('9') { '0' } else { '9' });
            let digits: Vec<u8> = d.bytes().map(|b| b - b'0').collect();
            if super::validate::luhn(&digits) {
                continue;
            }
        }
        invalid.push(d);
    }
    v.push(("luhn-invalid digit runs", invalid.join(" ")));
    let stamps: Vec<String> = (0..30)
        .map(|k| {
            format!(
                "{} {}{}",
                1_700_000_000 + k * 7919,
                1_700_000_000_000u64 + k * 104_729,
                r.pick(DIGITS, 6)
            )
        })
        .collect();
    v.push(("unix timestamps (s, ms, ns)", stamps.join("\n")));
    v
}

const PROSE: &str = "Please summarise the attached quarterly report for the board. Revenue grew 12% \
to $4,310,000 in Q3 2024, driven by the EMEA region (up 18%) and the new self-serve tier. \
Churn fell from 3.1% to 2.4%. The team shipped v2.3.0 on 2024-09-14 and v2.3.1 on 2024-10-02, \
which fixed the login loop reported in ticket #48213. Headcount is 128 (up from 117). Our \
office moved to 500 Market Street, Suite 1200, San Francisco, CA 94105-1234. Call the front desk \
at extension 4417 or dial 911 in an emergency. The meeting is at 10:30 on 15.01.2025 in room 3B. \
ISBN 978-3-16-148410-0 is the style guide we follow. Section 4.2.1 describes the escalation path; \
see also RFC 7519 and ISO 8601. Give me three bullet points, then a one-paragraph outlook, and \
keep it under 300 words. Mention the NPS score (61) and the CSAT (4.6/5). Scores: 3 5 7 9 11 13 15 17 19 21 23 25 27.";

const RUST: &str = r##"use std::collections::HashMap;

/// Parses `key=value` pairs; see https://doc.rust-lang.org/std/ for details.
fn parse(input: &str) -> Result<HashMap<String, u64>, ParseError> {
    let mut out = HashMap::with_capacity(16);
    for (i, line) in input.lines().enumerate() {
        let Some((k, v)) = line.split_once('=') else { return Err(ParseError::Line(i + 1)) };
        let n: u64 = v.trim().parse().map_err(|_| ParseError::Number(i + 1))?;
        out.insert(k.to_string(), n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 3);
    }
    assert_eq!(1 + 2, 3);
    let mask = 0xdeadbeef_u32 & 0xFF00FF00;
    let color = "#ff8800"; let version = "1.20.3-beta.4+build.5";
    let ipv4 = "192.168.100.200"; let ipv6 = "2001:db8:85a3::8a2e:370:7334";
    let skip = sk_len + rk_total - ghp_count; // variable names, not keys
    let ask = task_test_value(); let mask_sk = "sk-";
    Ok(out)
}

#[derive(Debug)]
enum ParseError { Line(usize), Number(usize) }
"##;

const PYTHON: &str = r#"import os, re, hashlib
from dataclasses import dataclass

@dataclass
class Order:
    order_id: int = 100234987
    sku: str = "AB-1234-XYZ"
    total_cents: int = 129999

@app.route("/api/v1/orders/<int:order_id>", methods=["GET"])
def get_order(order_id):
    api_key = os.environ["OPENAI_API_KEY"]  # never hard-code keys
    digest = hashlib.sha256(b"payload").hexdigest()
    pattern = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$")
    return {"id": order_id, "digest": digest, "price": 1299.99, "qty": 3}

print(f"{2**64 - 1} {3.141592653589793} {1e-9} {-4111} {0o755} {0b1010}")
"#;

const SHELL: &str = "git clone git@github.com:acme/widgets.git && cd widgets\n\
git log --oneline -3\n\
3f786850e387550fdab836ed7e6dc881de23001b Fix race in scheduler (#482)\n\
a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 Bump serde to 1.0.197\n\
docker run -p 8080:8080 -e RUST_LOG=debug ghcr.io/acme/widgets:sha-3f78685\n\
npm install react@18.2.0 @types/node@20.11.5 --save-dev\n\
curl -H 'Authorization: Bearer $TOKEN' https://api.example.com/v1/items?page=2&per_page=100\n\
kubectl get pods -n prod -o wide | grep -v Completed\n\
ssh -i ~/.ssh/id_ed25519 deploy@10.0.12.7 'sudo systemctl restart widgets'\n\
echo \"-----BEGIN PUBLIC KEY-----\" > /tmp/key.pub; echo ---------------------------\n";

const LOGS: &str = "2024-01-15T10:30:00.123Z INFO request_id=9f1c2e3d-4b5a-6978-8a9b-0c1d2e3f4a5b status=200 latency_ms=42\n\
2024-01-15 10:30:45,678 WARN [worker-7] retry 3/5 after 1500ms (order 5123-4567-89)\n\
Jan 15 10:31:02 host-12 kernel: [123456.789012] eth0: link up, 1000 Mbps, full duplex\n\
{\"ts\":1705314662,\"ts_ms\":1705314662123,\"span\":\"a3f5c9e1b2d4f6a8\",\"user\":\"u_83927461\",\"amount\":\"1,234,567.89\"}\n\
trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 sampled=1\n";

const PLACEHOLDERS: &str =
    "Set OPENAI_API_KEY=sk-... and ANTHROPIC_API_KEY=sk-ant-api03-xxxx in your .env.\n\
GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n\
AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX\n\
SLACK_BOT_TOKEN=xoxb-your-bot-token\n\
STRIPE_SECRET_KEY=sk_test_your_key_here\n\
Use a key like `sk-proj-...` (it starts with sk-proj-) and pass it as a Bearer token.\n\
Your JWT looks like eyJhbGciOi... (header.payload.signature).\n\
Email us at support at example dot com, or @acme on social media.\n";

const NUMBERS: &str =
    "Order #100234987 shipped; invoice INV-2024-000123; tracking 1Z999AA10123456784.\n\
Account 12345678, sort code 12-34-56. Routing 021000021. Zip+4 94105-1234. PO box 4417.\n\
Local numbers: 555-1234, 867-5309. Extension x4417. Table: 200 300 4000 | 250 310 4100.\n\
Temperatures 21.5 22.0 23.25; coordinates 37.7749,-122.4194; pi 3.14159265358979323846.\n\
Versions 10.0.19045.3930 and 6.1.7601.24214; IPs 10.0.0.255 and 172.16.254.1.\n\
Dates 2024-01-15, 15/01/2024, 01-15-2024, 20240115. Times 10:30:45, 103045.\n\
(1) first (2) second (3) third. Ranges 100-200-3000 and 1-2-3-4-5-6-7-8-9.\n\
Prices $1,299.99 and EUR 1.299,99. Big numbers 1,000,000,000 and 18446744073709551615.\n\
Card ending 4242, expires 12/27. SSN last four 6789. Phone ext 555 0132.\n";
