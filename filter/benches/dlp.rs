//! Prompt DLP scan throughput: every built-in detector on, over a realistic
//! 64 KB chat prompt and a 2 KB one (prose, code, UUIDs, hashes, base64, log
//! lines, numbers, and a few secrets and personal data), plus the 64 KB
//! prompt with 16 operator literals added, and with 8 operator patterns
//! added; and the patterns' worst cases (64 KB written to make each
//! attempt read far before failing).
//!
//! Target (issue 10): at least 300 MB/s on the 64 KB prompt, natively here
//! and inside the real `.wasm`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tollgate::dlp::{DetectorSet, Literal, Match};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(alphabet[(self.next() >> 33) as usize % alphabet.len()]))
            .collect()
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEX: &[u8] = b"0123456789abcdef";

const PROSE: &str = "You are a careful assistant helping our support team. The customer wrote in \
about invoice INV-2024-000123, which they say was charged twice on 2024-09-14. Their plan is the \
Team tier at $49 per seat per month with 23 seats, billed annually since March. Please read the \
thread below, summarise what happened in three bullet points, and draft a reply that apologises, \
explains the refund timeline (5 to 10 business days), and links to the billing FAQ. Keep it under \
200 words and do not promise anything the policy in section 4.2 does not allow. ";

const CODE: &str = r#"
fn retry<T, E>(mut op: impl FnMut() -> Result<T, E>, attempts: u32) -> Result<T, E> {
    let mut delay_ms = 100u64;
    for i in 0..attempts {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if i + 1 == attempts => return Err(e),
            Err(_) => { std::thread::sleep(std::time::Duration::from_millis(delay_ms)); delay_ms *= 2; }
        }
    }
    unreachable!()
}
def handler(event, context):
    order_id = event["pathParameters"]["id"]  # e.g. 100234987
    total = sum(item["price"] * item["qty"] for item in event["items"])
    return {"statusCode": 200, "body": json.dumps({"id": order_id, "total": round(total, 2)})}
"#;

/// A chat prompt of about `size` bytes.
fn prompt(size: usize, seed: u64) -> String {
    let r = &mut Rng(seed | 1);
    let mut s = String::with_capacity(size + 4096);
    let secrets = [
        format!("Our staging key is sk-proj-{}T3BlbkFJ{} (rotate it!). ", r.pick(B64URL, 58), r.pick(B64URL, 58)),
        format!("aws_access_key_id = AKIA{}\naws_secret_access_key = {}\n", r.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16), r.pick(B64, 40)),
        format!("GITHUB_TOKEN=ghp_{} ", r.pick(ALNUM, 36)),
        "Reach me at jane.doe@example.com or +1 415-555-0132. Card 4111 1111 1111 1111, exp 12/27. ".to_string(),
    ];
    let mut k = 0u64;
    while s.len() < size {
        match k % 9 {
            0 | 5 => s += PROSE,
            1 => s += &secrets[(k / 9) as usize % secrets.len()],
            2 => s += CODE,
            3 => {
                for _ in 0..8 {
                    s += &format!(
                        "{}-{}-4{}-a{}-{}\n",
                        r.pick(HEX, 8),
                        r.pick(HEX, 4),
                        r.pick(HEX, 3),
                        r.pick(HEX, 3),
                        r.pick(HEX, 12)
                    );
                }
            }
            4 => {
                for _ in 0..6 {
                    s += &format!("commit {} sha256:{}\n", r.pick(HEX, 40), r.pick(HEX, 64));
                }
            }
            6 => {
                s += "![screenshot](data:image/png;base64,";
                s += &r.pick(B64, 3000);
                s += "==)\n";
            }
            7 => {
                for i in 0..6 {
                    s += &format!(
                        "2024-01-15T10:{:02}:00.123Z INFO request_id={}-{} status=200 latency_ms={} user=u_{}\n",
                        i * 7,
                        r.pick(HEX, 8),
                        r.pick(HEX, 4),
                        r.next() % 900,
                        r.next() % 100_000_000
                    );
                }
            }
            _ => {
                s +=
                    "Numbers for context: 12, 345, 6789, 2024-10-02, 1.20.3, 10.0.0.1, 94105-1234. "
            }
        }
        k += 1;
    }
    s.truncate(s.floor_char_boundary(size));
    s
}

fn bench(c: &mut Criterion) {
    let set = DetectorSet::all_builtins();
    let literals: Vec<Literal> = (0..16)
        .map(|i| Literal {
            name: format!("codename_{i}"),
            text: format!("Project-{i:02}-Nightingale"),
            ignore_ascii_case: i % 2 == 0,
            pattern: false,
        })
        .collect();
    let with_literals =
        DetectorSet::new(&tollgate::dlp::Detector::ALL, literals).unwrap_or_else(|e| panic!("{e}"));
    // The same eight shapes as the harness bench (`cached_request.rs`).
    let patterns: Vec<Literal> = include_str!("dlp_patterns.txt")
        .lines()
        .enumerate()
        .map(|(i, p)| Literal {
            name: format!("pattern_{i}"),
            text: p.to_string(),
            ignore_ascii_case: false,
            pattern: true,
        })
        .collect();
    let with_patterns =
        DetectorSet::new(&tollgate::dlp::Detector::ALL, patterns).unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("dlp_scan");
    for (name, size) in [("64KB", 64 * 1024), ("2KB", 2 * 1024)] {
        let text = prompt(size, 42);
        let mut out: Vec<Match> = Vec::new();
        set.scan(text.as_bytes(), &mut out);
        eprintln!("{name}: {} bytes, {} matches", text.len(), out.len());
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(format!("all_builtins/{name}"), |b| {
            b.iter(|| {
                set.scan(black_box(text.as_bytes()), &mut out);
                black_box(out.len())
            })
        });
        if size > 4096 {
            g.bench_function(format!("all_builtins+16_literals/{name}"), |b| {
                b.iter(|| {
                    with_literals.scan(black_box(text.as_bytes()), &mut out);
                    black_box(out.len())
                })
            });
            g.bench_function(format!("all_builtins+8_patterns/{name}"), |b| {
                b.iter(|| {
                    with_patterns.scan(black_box(text.as_bytes()), &mut out);
                    black_box(out.len())
                })
            });
        }
    }
    g.finish();
    // Worst cases, one pattern alone: an unbounded count that every start
    // re-enters (linear thanks to the memo), and a bounded count of 256
    // read in full from every start before failing (256 reads a byte).
    let mut g = c.benchmark_group("dlp_pattern_worst");
    let worst = [
        ("unbounded", r"a[a-z-]+!", "a-".repeat(32 * 1024)),
        ("bounded_256", r"-[a-z-]{256}!", "-".repeat(64 * 1024)),
    ];
    for (name, src, text) in worst {
        let set = DetectorSet::new(
            &[],
            vec![Literal {
                name: "p".into(),
                text: src.into(),
                ignore_ascii_case: false,
                pattern: true,
            }],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut out: Vec<Match> = Vec::new();
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                set.scan(black_box(text.as_bytes()), &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// Model output through response DLP (every built-in; secrets and personal
/// data redacted): an OpenAI chat stream of ~4 KB of text in 4-character
/// events (about 1,000 events, 140 KB of SSE), and the same text as one
/// 4 KB JSON answer. The text is the prompt generator's (so it holds a few
/// secrets and personal data to redact).
fn bench_responses(c: &mut Criterion) {
    use std::rc::Rc;
    use tollgate::body::dlp_scan::{DlpAction, DlpPolicy};
    use tollgate::dlp::{Detector, DetectorId};
    use tollgate::response::dlp::ResponseDlp;
    let policy = Rc::new(DlpPolicy {
        name: "out".into(),
        set: DetectorSet::all_builtins(),
        actions: Detector::ALL
            .iter()
            .map(|d| (DetectorId::Builtin(*d), DlpAction::Redact))
            .collect(),
        block_set: None,
        responses: true,
        response_holdback: 256,
    });
    let text = prompt(4 * 1024, 7);
    let chars: Vec<char> = text.chars().collect();
    let mut stream = String::new();
    for part in chars.chunks(4) {
        let part: String = part.iter().collect();
        stream += &format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}}}}]}}\n\n",
            serde_json::to_string(&part).unwrap_or_default()
        );
    }
    stream += "data: [DONE]\n\n";
    let json = serde_json::json!({"id": "chatcmpl-1", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": text}}]})
    .to_string();
    let mut g = c.benchmark_group("dlp_response");
    for (name, body, sse) in [("sse_4KB_text", &stream, true), ("json_4KB", &json, false)] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut dlp = ResponseDlp::new(policy.clone(), sse, false);
                let mut out = Vec::with_capacity(body.len());
                // As Envoy delivers a stream: a DATA frame per event or two.
                for chunk in body.as_bytes().chunks(256) {
                    let _ = dlp.feed(black_box(chunk), false, &mut out);
                }
                let _ = dlp.feed(&[], true, &mut out);
                black_box((out.len(), dlp.redacted))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_responses);
criterion_main!(benches);
