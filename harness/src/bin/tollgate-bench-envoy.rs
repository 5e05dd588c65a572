//! `tollgate-bench-envoy` (`make bench-envoy`): Tollgate against Envoy's
//! native filters and against ext_authz, each in a real Envoy 1.40 gateway.
//! Options, topology and method: the `//!` header of
//! `harness/src/bench/mod.rs`.

fn main() -> std::process::ExitCode {
    tollgate_harness::bench::main()
}
