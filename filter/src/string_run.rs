//! Byte searches eight bytes at a time: where the plain run of a JSON
//! string ends ([`string_run`]), and where one of a few bytes first occurs
//! ([`first_of`]).
//!
//! Both JSON readers, the request inspector (`body::json`) and the usage
//! reader (`response::usage::reader`), spend most of their time inside long
//! string values: prompts and answers. [`string_run`] gives the length of the
//! prefix that holds no `"`, no `\` and no control byte (< 0x20), the bytes a
//! reader passes over without looking at them.
//!
//! Invariants: `string_run(b)` equals
//! `b.iter().position(|&c| is_special(c)).unwrap_or(b.len())`, and
//! `first_of(b, n)` equals `b.iter().position(|c| n.contains(c))
//! .unwrap_or(b.len())`, for every `b` and `n`; the tests check both against
//! those definitions. The word loop uses 64-bit
//! integer arithmetic, which wasm32 has natively (no SIMD needed).

/// A byte that ends a JSON string's plain run: the closing quote, an escape,
/// or a control byte, which JSON forbids raw inside a string.
#[inline]
pub fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `x` below `n` (n ≤ 128). Only the lowest
/// flagged byte is exact: a borrow may flag bytes above it.
#[inline]
fn bytes_below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES.wrapping_mul(u64::from(n))) & !x & HIGHS
}

/// High bit set in each byte of `x` equal to `b`; lowest flag exact, as above.
#[inline]
fn bytes_equal(x: u64, b: u8) -> u64 {
    bytes_below(x ^ ONES.wrapping_mul(u64::from(b)), 1)
}

/// The index of the first byte of `bytes` that `hit` accepts, or
/// `bytes.len()`: whole words through `flags` (high bit set in each byte it
/// accepts, the lowest flag exact), the tail byte by byte.
#[inline(always)]
fn first(bytes: &[u8], flags: impl Fn(u64) -> u64, hit: impl Fn(u8) -> bool) -> usize {
    let mut i = 0;
    for word in bytes.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        // The lowest flag of each mask is exact, and a false flag always
        // sits above a true one of the same mask, so the lowest flag of the
        // union is the first byte accepted.
        let f = flags(u64::from_le_bytes(word));
        if f != 0 {
            return i + (f.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let rest = bytes.get(i..).unwrap_or_default();
    i + rest.iter().position(|&b| hit(b)).unwrap_or(rest.len())
}

/// The length of the longest prefix of `bytes` without a [special](is_special)
/// byte: the index of the first one, or `bytes.len()`.
pub fn string_run(bytes: &[u8]) -> usize {
    first(
        bytes,
        |x| bytes_equal(x, b'"') | bytes_equal(x, b'\\') | bytes_below(x, 0x20),
        is_special,
    )
}

/// The index of the first byte of `bytes` that is one of `needles`, or
/// `bytes.len()`. Meant for a few needles (each costs a few operations per
/// word): the key-echo redactor skips to where a form of the key can begin.
pub fn first_of(bytes: &[u8], needles: &[u8]) -> usize {
    first(
        bytes,
        |x| needles.iter().fold(0, |f, &n| f | bytes_equal(x, n)),
        |b| needles.contains(&b),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn naive(b: &[u8]) -> usize {
        b.iter().position(|&c| is_special(c)).unwrap_or(b.len())
    }

    #[test]
    fn every_byte_value_at_every_offset_of_two_words() {
        for special_at in 0..17 {
            for byte in 0..=255u8 {
                let mut b = vec![b'a'; 17];
                if let Some(slot) = b.get_mut(special_at) {
                    *slot = byte;
                }
                for len in 0..=b.len() {
                    let s = &b[..len];
                    assert_eq!(
                        string_run(s),
                        naive(s),
                        "byte {byte:#x} at {special_at}, len {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn first_of_agrees_with_the_definition_for_every_byte_and_offset() {
        let naive_of = |b: &[u8], n: &[u8]| b.iter().position(|c| n.contains(c)).unwrap_or(b.len());
        for needles in [&[][..], &[b's'], &[0x00, 0x80], &[b'\\', b'%', 0xFF]] {
            for at in 0..17 {
                for byte in 0..=255u8 {
                    let mut b = vec![0x01; 17];
                    if let Some(slot) = b.get_mut(at) {
                        *slot = byte;
                    }
                    // A zero byte below the needle exercises the borrow.
                    if at > 0 {
                        b[at - 1] = 0x00;
                    }
                    for len in 0..=b.len() {
                        let s = &b[..len];
                        assert_eq!(
                            first_of(s, needles),
                            naive_of(s, needles),
                            "needles {needles:?}, byte {byte:#x} at {at}, len {len}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn borrow_false_positives_never_win() {
        // 0x00 then bytes 0x01..: the borrow of the zero byte flags the
        // bytes above it in the subtraction; the answer is still the zero.
        for lead in 0..8 {
            let mut b = vec![b'x'; lead];
            b.extend_from_slice(&[0x00, 0x01, 0x21, 0x23, 0x5B, 0x5D, 0x80, 0xFF]);
            assert_eq!(string_run(&b), lead);
        }
        // High bytes (UTF-8) never flag.
        let utf8 = "né ü 漢字 🙂 long enough to span words".as_bytes();
        assert_eq!(string_run(utf8), utf8.len());
    }

    #[test]
    fn pseudo_random_inputs_agree_with_the_definition() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    let r = state.rotate_left(i as u32 * 5);
                    // Mostly plain bytes, sometimes a special one.
                    if r % 11 == 0 {
                        [b'"', b'\\', 0x00, 0x1F, 0x20, 0x21, 0x5B, 0x7F][(r >> 8) as usize % 8]
                    } else {
                        (r >> 16) as u8 | 0x20
                    }
                })
                .collect();
            assert_eq!(string_run(&bytes), naive(&bytes), "{bytes:?}");
        }
    }
}
