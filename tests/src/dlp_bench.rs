//! Fixtures shared by the DLP benchmarks of the real `.wasm`
//! (`benches/cached_request.rs`) and the instruction counter
//! (`examples/dlp_instructions.rs`): the same prompt, policies and request.

use crate::CHATBOT;
use serde_json::{json, Value};
use tollgate_harness::{Gateway, StreamId};

/// The body rule as it was before DLP (the scenario table's policy has it).
pub fn without_dlp(mut c: Value) -> Value {
    if let Some(rules) = c["rules"].as_array_mut() {
        for r in rules.iter_mut() {
            if let Some(r) = r.as_object_mut() {
                r.remove("dlp");
            }
        }
    }
    c
}

/// A chat request of about `size` bytes: prose, code, ids, hashes, numbers
/// and an e-mail address per kilobyte or so (what DLP reads on its way), and
/// no secret.
pub fn prompt(size: usize) -> String {
    let parts = [
        "Please review the following change and summarise the risks. ",
        "fn main() { let id = \"3f2b8c1e-9a4d-4e0b-8c55-1d2e3f4a5b6c\"; println!(\"{id}\"); } ",
        "Order 88412093 shipped on 2026-11-30T10:15:00Z, sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08. ",
        "Contact ops-team@example.com or see ticket 4412-8890. ",
    ];
    let mut content = String::new();
    let mut i = 0;
    while content.len() < size.saturating_sub(160) {
        content.push_str(parts[i % parts.len()]);
        i += 1;
    }
    json!({
        "model": "gpt-4o-mini",
        "max_tokens": 100,
        "messages": [
            {"role": "system", "content": "You are a reviewer."},
            {"role": "user", "content": content}
        ]
    })
    .to_string()
}

/// `c` with a DLP policy of every built-in detector (audit, so every
/// request is forwarded unchanged) on the body rule `chatbot-clamp`.
pub fn every_builtin(mut c: Value) -> Value {
    c["dlp_policies"] = json!([{"name": "all", "audit": ["all"]}]);
    if let Some(rules) = c["rules"].as_array_mut() {
        for r in rules.iter_mut().filter(|r| r["name"] == "chatbot-clamp") {
            r["dlp"] = json!("all");
        }
    }
    c
}

/// Sends `body` as the chatbot's JSON chat request and settles it.
pub fn send_chat(gw: &mut Gateway, body: &str) -> StreamId {
    let id = gw
        .request(0)
        .mtls(true)
        .peer_uri_san(CHATBOT)
        .method("POST")
        .authority("api.openai.com")
        .path("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("content-length", body.len().to_string())
        .body(body)
        .send();
    gw.settle();
    id
}
