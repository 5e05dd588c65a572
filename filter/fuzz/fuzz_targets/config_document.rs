//! config::parse (the windowed JSON reader in config/scan.rs and read.rs,
//! then compile): never panics; never accepts a document serde_json rejects;
//! a document serde_json rejects gets exactly one problem, the syntax error
//! with an empty path (or, for a blank document, that it is empty); the same
//! input always gives the same answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ours = tollgate::config::parse(data);
    let json = serde_json::from_slice::<serde_json::Value>(data);
    match (&ours, &json) {
        (Ok(_), Err(e)) => panic!("accepted a document serde_json rejects: {e}"),
        (Err(errs), Err(_)) => {
            assert_eq!(errs.0.len(), 1, "a syntax error is the only problem");
            let shown = errs.to_string();
            let blank = data.iter().all(|b| b.is_ascii_whitespace());
            assert!(
                shown.starts_with("line ") || (blank && shown.contains("empty")),
                "{shown}"
            );
        }
        _ => {}
    }
    let again = tollgate::config::parse(data);
    assert_eq!(
        ours.as_ref().err().map(|e| e.to_string()),
        again.as_ref().err().map(|e| e.to_string()),
        "deterministic"
    );
});
