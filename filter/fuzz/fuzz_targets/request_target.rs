//! RequestTarget::parse: never panics; normalisation is idempotent, never
//! leaves an ambiguous path, and never lets a `key` parameter through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::request_path::RequestTarget;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = RequestTarget::parse(data) else {
        return;
    };
    let text = target.as_str();
    assert!(text.starts_with('/'));
    assert_eq!(target.upstream_target().is_none(), text.as_bytes() == data);
    let again = RequestTarget::parse(text.as_bytes());
    assert_eq!(again.as_ref().map(RequestTarget::as_str), Ok(text));
    assert_eq!(again.as_ref().map(RequestTarget::upstream_target), Ok(None));
    let path = target.path();
    let upper = path.to_ascii_uppercase();
    for banned in ["%2E", "%2F", "%5C", "%00", "#", "\\"] {
        assert!(!upper.contains(banned), "{banned}");
    }
    let segments: Vec<&str> = target.segments().collect();
    for (n, segment) in segments.iter().enumerate() {
        assert!(*segment != "." && *segment != "..");
        assert!(!segment.is_empty() || n + 1 == segments.len());
    }
    if let Some(query) = target.query() {
        for param in query.split('&') {
            let name = param.split('=').next().unwrap_or("");
            assert!(!name.eq_ignore_ascii_case("key"));
        }
    }
});
