//! Deterministic embedding vectors, as floats or OpenAI's base64 form.
//!
//! Job: give every input text a fixed vector of the requested size, so an
//! SDK can decode it and a test can compare two calls.
//!
//! Invariants:
//! - The same (text, dimensions) always gives the same vector; components
//!   lie in [-1, 1] and are multiples of 1/1024 (exact in `f32` and JSON).
//! - The base64 form is the little-endian `f32` array in standard base64
//!   with padding, as OpenAI returns for `encoding_format: "base64"`.
//! - Pure; dimensions are capped by the caller.

use serde_json::Value;

/// Dimensions when the request names none.
pub(crate) const DEFAULT_DIMENSIONS: usize = 16;
/// Largest accepted `dimensions`.
pub(crate) const MAX_DIMENSIONS: usize = 4096;

/// The vector for `text`.
pub(crate) fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let seed = fnv1a(text.as_bytes());
    (0..dimensions as u64)
        .map(|i| {
            let h = splitmix(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            ((h % 2049) as f32 - 1024.0) / 1024.0
        })
        .collect()
}

/// The vector as a JSON array of numbers.
pub(crate) fn as_json(v: &[f32]) -> Value {
    Value::Array(v.iter().map(|&x| Value::from(f64::from(x))).collect())
}

/// The vector as base64 of its little-endian `f32`s.
pub(crate) fn as_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64(&bytes)
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Standard base64 with padding.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn vectors_are_deterministic_and_bounded() {
        let a = vector("hello", 32);
        assert_eq!(a, vector("hello", 32));
        assert_ne!(a, vector("hello!", 32));
        assert_eq!(a.len(), 32);
        assert!(a.iter().all(|x| (-1.0..=1.0).contains(x)));
        assert_eq!(as_base64(&[1.0]), "AACAPw==");
        assert_eq!(as_json(&[0.5]), serde_json::json!([0.5]));
    }
}
