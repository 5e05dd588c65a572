//! One small sort for the whole module. The standard library's sorts are
//! fast but large (pattern-defeating quicksort or driftsort, with sorting
//! networks), and every element type gets its own copy: a dozen call sites
//! cost the module about 20 KB. Nothing Tollgate sorts is hot (policy
//! compilation, a handful of body edits, a credential's few encodings), so
//! one heapsort, small per instance, serves every site.
//!
//! Invariants: `O(n log n)` comparisons whatever the input (no quadratic
//! case for a hostile policy), no allocation, never panics (indices stay in
//! bounds by construction: every access goes through `swap` and `get`).
//! Unstable: callers that need a stable order put the position in the key.

/// Sorts `v` by `key`, ascending.
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    let n = v.len();
    let mut less = |v: &[T], a: usize, b: usize| match (v.get(a), v.get(b)) {
        (Some(x), Some(y)) => key(x) < key(y),
        _ => false,
    };
    // Builds a max-heap, then moves the largest to the end, shrinking.
    for start in (0..n / 2).rev() {
        sift_down(v, start, n, &mut less);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end, &mut less);
    }
}

/// Sorts `v` ascending.
pub fn sort<T: Ord>(v: &mut [T]) {
    let n = v.len();
    let mut less = |v: &[T], a: usize, b: usize| match (v.get(a), v.get(b)) {
        (Some(x), Some(y)) => x < y,
        _ => false,
    };
    for start in (0..n / 2).rev() {
        sift_down(v, start, n, &mut less);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end, &mut less);
    }
}

fn sift_down<T>(
    v: &mut [T],
    mut root: usize,
    end: usize,
    less: &mut impl FnMut(&[T], usize, usize) -> bool,
) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && less(v, child, child + 1) {
            child += 1;
        }
        if !less(v, root, child) {
            return;
        }
        v.swap(root, child);
        root = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn sorts_like_the_standard_library() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for n in 0..200 {
            let mut v: Vec<u32> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 50) as u32
                })
                .collect();
            let mut expected = v.clone();
            expected.sort();
            let mut by_key = v.clone();
            sort(&mut v);
            assert_eq!(v, expected);
            sort_by_key(&mut by_key, |x| core::cmp::Reverse(*x));
            expected.reverse();
            assert_eq!(by_key, expected);
        }
    }
}
