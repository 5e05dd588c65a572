//! SpiffeId::parse: never panics; an accepted ID re-parses to itself, and its
//! parts satisfy the SPIFFE-ID rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::spiffe::{SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(id) = SpiffeId::parse(data) else {
        return;
    };
    assert_eq!(id.as_str().as_bytes(), data);
    assert_eq!(SpiffeId::parse(id.as_str().as_bytes()).as_ref(), Ok(&id));
    assert!(data.len() <= 2048);
    let td = id.trust_domain();
    assert!(!td.is_empty() && td.len() <= 255);
    assert!(TrustDomain::parse(td).is_ok());
    let path = id.path();
    assert!(path.is_empty() || (path.starts_with('/') && !path.ends_with('/')));
    assert_eq!(format!("spiffe://{td}{path}"), id.as_str());
    for segment in id.segments() {
        assert!(!segment.is_empty() && segment != "." && segment != "..");
    }
});
