//! EndpointPattern::parse: never panics; Display round-trips; matching never
//! panics on any accepted request target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::policy::endpoint_pattern::EndpointPattern;
use tollgate::request_path::RequestTarget;

fuzz_target!(|data: &[u8]| {
    // First line: a pattern; second line: a request target.
    let mut lines = data.splitn(2, |&b| b == b'\n');
    let Some(Ok(text)) = lines.next().map(std::str::from_utf8) else {
        return;
    };
    let Ok(pattern) = EndpointPattern::parse(text) else {
        return;
    };
    assert_eq!(pattern.to_string(), text);
    let Some(Ok(target)) = lines.next().map(RequestTarget::parse) else {
        return;
    };
    let (get, post) = (
        pattern.matches(b"GET", &target),
        pattern.matches(b"POST", &target),
    );
    match pattern.method() {
        None => assert_eq!(get, post),
        Some(method) => assert!(!(get && post) && (method == "GET" || !get)),
    }
});
