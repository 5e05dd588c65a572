//! Sends N chat requests of the DLP benchmark's 64 KB prompt through the
//! real `.wasm` (`TOLLGATE_WASM`, else the built module), with or without
//! a DLP policy of every built-in detector. Run under an instruction
//! counter, two N apart, it gives the DLP step's instructions per request,
//! which do not move with the machine's load as wall-clock time does:
//!
//! ```sh
//! cargo build --profile bench -p tollgate-tests --example dlp_instructions
//! for mode in plain dlp; do for n in 10 60; do
//!   valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
//!     target/release/examples/dlp_instructions $mode $n 2>&1 | grep 'I *refs'
//! done; done
//! ```
//!
//! (dlp at 60 − dlp at 10) − (plain at 60 − plain at 10), over 50, is the
//! step's instructions per request (BENCHMARKS.md, "Operator patterns as
//! shapes").

use tollgate_tests::dlp_bench::{every_builtin, prompt, send_chat, without_dlp};
use tollgate_tests::scenario::Policy;
use tollgate_tests::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let dlp = args.next().as_deref() == Some("dlp");
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let plain = without_dlp(Policy::Bodies.config());
    let config = if dlp { every_builtin(plain) } else { plain };
    let body = prompt(64 * 1024);
    let creds = credential_service();
    let mut gw = gateway(&config, 1, &creds);
    let json: &[(&str, &[u8])] = &[("content-type", b"application/json")];
    for _ in 0..n {
        let id = send_chat(&mut gw, &body);
        gw.respond(id, 200, json, b"");
    }
    assert_eq!(gw.trap(), None);
}
