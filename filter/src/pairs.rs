//! proxy-wasm's pair encoding of header maps: `u32` count, then per pair
//! `u32` key size and `u32` value size, then the bytes, each NUL-terminated.
//!
//! Invariants: decoding never panics and never reads out of bounds; a
//! malformed buffer is rejected whole. Keys and values are bytes, never
//! assumed UTF-8.

/// A header map as the host returns it: one buffer in pair encoding,
/// validated once, iterated without copying.
pub struct HeaderMap {
    buf: Vec<u8>,
    count: usize,
}

impl HeaderMap {
    /// Validates the encoding; `None` if malformed.
    pub fn parse(buf: Vec<u8>) -> Option<HeaderMap> {
        let count = if buf.is_empty() {
            0
        } else {
            pairs(&buf)?.count()
        };
        // A second walk proves every pair is in bounds.
        if !buf.is_empty() && pairs(&buf)?.any(|p| p.is_none()) {
            return None;
        }
        Some(HeaderMap { buf, count })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        pairs(&self.buf).into_iter().flatten().flatten()
    }

    /// The first value of `name`.
    pub fn first(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &[u8]) -> Vec<&[u8]> {
        self.iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .collect()
    }
}

/// Walks pair encoding; each item is `None` if that pair is out of bounds.
fn pairs(bytes: &[u8]) -> Option<impl Iterator<Item = Option<(&[u8], &[u8])>>> {
    let u32_at = move |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    };
    let n = u32_at(0)?;
    let mut data = 4usize.checked_add(n.checked_mul(8)?)?;
    Some((0..n).map(move |i| {
        let ks = u32_at(4 + i * 8)?;
        let vs = u32_at(8 + i * 8)?;
        let k = bytes.get(data..data.checked_add(ks)?)?;
        data = data.checked_add(ks)?.checked_add(1)?;
        let v = bytes.get(data..data.checked_add(vs)?)?;
        data = data.checked_add(vs)?.checked_add(1)?;
        Some((k, v))
    }))
}

/// proxy-wasm pair encoding: u32 count, u32 sizes, then NUL-terminated bytes.
pub fn encode_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size: usize = 4 + pairs
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn header_maps_round_trip_and_reject_truncation() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b":path", b"/v1"), (b"x", b"\xff\x00y")];
        let enc = encode_pairs(&pairs);
        let m = HeaderMap::parse(enc.clone()).unwrap();
        assert_eq!(m.iter().collect::<Vec<_>>(), pairs);
        assert_eq!(m.first(b"x"), Some(&b"\xff\x00y"[..]));
        // (Only the final NUL may be missing without losing data.)
        for n in 1..enc.len() - 1 {
            assert!(
                HeaderMap::parse(enc[..n].to_vec()).map_or(true, |m| m.len() < 2),
                "prefix {n}"
            );
        }
    }
}
