//! A short, non-reversible fingerprint of a secret for logs and audit.
//!
//! Invariant: the output is 8 hex digits of SHA-256 (32 bits): enough to tell
//! keys apart in an audit trail, far too little to recover or test a key.

use sha2::{Digest, Sha256};

/// `sha256:` followed by the first 8 hex digits of SHA-256(secret).
pub fn fingerprint(secret: &[u8]) -> String {
    let digest = Sha256::digest(secret);
    let mut out = String::with_capacity(15);
    out.push_str("sha256:");
    for b in digest.iter().take(4) {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0x0f));
    }
    out
}

fn hex_digit(n: u8) -> char {
    match n {
        0..=9 => char::from(b'0' + n),
        _ => char::from(b'a' + (n - 10)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn is_short_and_stable() {
        // SHA-256("abc") = ba7816bf...
        assert_eq!(fingerprint(b"abc"), "sha256:ba7816bf");
        assert_ne!(fingerprint(b"sk-a"), fingerprint(b"sk-b"));
    }
}
