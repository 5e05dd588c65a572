//! The proxy-wasm pair encoding used for header maps and map-valued properties.
//!
//! Layout: `u32 count`, then per pair `u32 key_len, u32 value_len`, then for
//! each pair the key bytes, a NUL, the value bytes, a NUL. All integers are
//! little-endian.
//!
//! Invariants: decoding never panics; any length that points past the end of
//! the input is a `PairsError`, and values are kept as raw bytes.

/// A header map as an ordered list of (name, value) byte pairs.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed proxy-wasm pair encoding")]
pub struct PairsError;

/// Encodes pairs. An empty map encodes as `[0, 0, 0, 0]`.
pub fn encode(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(pairs, &mut out);
    out
}

/// Appends the encoding of `pairs` to `out` (to reuse a buffer).
pub fn encode_into(pairs: &[(Vec<u8>, Vec<u8>)], out: &mut Vec<u8>) {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>();
    out.reserve(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Result<usize, PairsError> {
    let end = at.checked_add(4).ok_or(PairsError)?;
    let b = bytes.get(at..end).ok_or(PairsError)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Decodes pairs. An empty input is an empty map (the SDK sends that for `vec![]`).
pub fn decode(bytes: &[u8]) -> Result<Pairs, PairsError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = read_u32(bytes, 0)?;
    let header_end = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(4))
        .ok_or(PairsError)?;
    if header_end > bytes.len() {
        return Err(PairsError);
    }
    let mut out = Vec::with_capacity(count);
    let mut p = header_end;
    for n in 0..count {
        let klen = read_u32(bytes, 4 + n * 8)?;
        let vlen = read_u32(bytes, 8 + n * 8)?;
        let kend = p.checked_add(klen).ok_or(PairsError)?;
        let key = bytes.get(p..kend).ok_or(PairsError)?.to_vec();
        p = kend.checked_add(1).ok_or(PairsError)?;
        let vend = p.checked_add(vlen).ok_or(PairsError)?;
        let value = bytes.get(p..vend).ok_or(PairsError)?.to_vec();
        p = vend.checked_add(1).ok_or(PairsError)?;
        if p > bytes.len() {
            return Err(PairsError);
        }
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_binary_values() {
        let m: Pairs = vec![
            (b":path".to_vec(), b"/x".to_vec()),
            (b"x-bin".to_vec(), vec![0xff, 0, 0x80]),
        ];
        assert_eq!(decode(&encode(&m)).unwrap(), m);
    }

    #[test]
    fn empty_inputs_are_empty_maps() {
        assert_eq!(decode(&[]).unwrap(), Vec::new());
        assert_eq!(decode(&encode(&[])).unwrap(), Vec::new());
    }

    #[test]
    fn rejects_lengths_past_the_end() {
        let mut bytes = encode(&[(b"a".to_vec(), b"b".to_vec())]);
        bytes[8] = 200;
        assert_eq!(decode(&bytes), Err(PairsError));
        assert_eq!(decode(&[5, 0, 0, 0]), Err(PairsError));
        assert_eq!(decode(&[1, 0]), Err(PairsError));
    }
}
