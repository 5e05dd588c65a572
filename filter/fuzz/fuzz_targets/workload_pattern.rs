//! WorkloadPattern::parse: never panics; Display round-trips; the index
//! returns exactly the rules a linear scan would.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::policy::workload_pattern::{WorkloadIndex, WorkloadPattern};
use tollgate::spiffe::SpiffeId;

fuzz_target!(|data: &[u8]| {
    // First line: a pattern; second line: an ID to look up.
    let mut lines = data.splitn(2, |&b| b == b'\n');
    let Some(Ok(text)) = lines.next().map(std::str::from_utf8) else {
        return;
    };
    let Ok(pattern) = WorkloadPattern::parse(text) else {
        return;
    };
    assert_eq!(pattern.to_string(), text);
    let Some(Ok(id)) = lines.next().map(SpiffeId::parse) else {
        return;
    };
    let mut index = WorkloadIndex::new();
    index.insert(&pattern, 3);
    index.insert(&pattern, 1);
    let mut out = Vec::new();
    index.candidates(&id, &mut out);
    let want: &[u32] = if pattern.matches(&id) { &[1, 3] } else { &[] };
    assert_eq!(out, want);
});
