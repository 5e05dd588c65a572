#!/usr/bin/env bash
# Runs the filter's pure-logic unit tests on wasm32-unknown-unknown (32-bit
# usize, no threads, no clock), in node, through wasm-bindgen-test.
#
# Idempotent. On first use it installs, and afterwards reuses:
#   - the rustup target wasm32-unknown-unknown;
#   - wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock, into
#     .tools/ (gitignored; override with TOLLGATE_TOOLS=dir). Building it from
#     crates.io takes several minutes on 2 cores; later runs skip it.
# Only tests marked for wasm-bindgen-test run there: a test module opts in with
#     #[cfg(target_arch = "wasm32")]
#     use wasm_bindgen_test::wasm_bindgen_test as test;
# Plain #[test] functions are compiled but not run on wasm32.
#
# Usage: scripts/test-wasm32.sh [TESTNAME-FILTER...]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target=wasm32-unknown-unknown
tools="${TOLLGATE_TOOLS:-$root/.tools}"

run() {
    printf '+ %s\n' "$*" >&2
    "$@"
}

if ! command -v node >/dev/null 2>&1; then
    echo "test-wasm32: node is required (wasm-bindgen-test-runner runs the tests in node)" >&2
    exit 1
fi

if ! rustup target list --installed | grep -qx "$target"; then
    run rustup target add "$target"
fi

# The runner must be the same version as the wasm-bindgen crate the tests link.
lock_version() {
    [ -f Cargo.lock ] || return 0
    awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}
version="$(lock_version)"
if [ -z "$version" ]; then
    run cargo fetch --target "$target"
    version="$(lock_version)"
fi
if [ -z "$version" ]; then
    echo "test-wasm32: no wasm-bindgen in Cargo.lock; is wasm-bindgen-test a wasm32 dev-dependency of tollgate-filter?" >&2
    exit 1
fi

runner="$tools/bin/wasm-bindgen-test-runner"
if [ "$("$runner" --version 2>/dev/null || true)" != "wasm-bindgen-test-runner $version" ]; then
    # --locked first, for the versions wasm-bindgen released with. If one of
    # those is missing from the index (seen here: a yanked or unpublished
    # webpki-roots), resolve afresh within the same wasm-bindgen version.
    if ! run cargo install wasm-bindgen-cli --version "=$version" --locked --force --root "$tools"; then
        run cargo install wasm-bindgen-cli --version "=$version" --force --root "$tools"
    fi
fi

export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$runner"
printf '+ CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=%s\n' "$runner" >&2
run cargo test -p tollgate-filter --no-default-features --target "$target" --lib -- "$@"
