#!/usr/bin/env bash
# Runs the filter's pure-logic unit tests (tollgate-filter --lib, without the
# `host` feature) on a 32-bit wasm target, in node. Two modes:
#
#   scripts/test-wasm32.sh [FILTER...]         wasm32-unknown-unknown through
#       wasm-bindgen-test: 32-bit usize, no threads, no clock, no WASI. Runs
#       only tests that opt in, with this line in their test module:
#           #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
#           use wasm_bindgen_test::wasm_bindgen_test as test;
#       Every failing test is reported. The first run builds wasm-bindgen-cli
#       (exactly the wasm-bindgen version in Cargo.lock) into .tools/
#       (gitignored; TOLLGATE_TOOLS=dir overrides): several CPU-minutes.
#
#   scripts/test-wasm32.sh --wasi [FILTER...]  wasm32-wasip1 (the target the
#       filter ships as) under node's built-in WASI: runs every plain #[test]
#       of the lib, needs no extra tool, but the first failing test aborts the
#       run (panic=abort) after printing its message.
#
# Idempotent: installs the rustup target and the runner only when missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tools="${TOLLGATE_TOOLS:-$root/.tools}"
mode=bindgen
if [ "${1:-}" = "--wasi" ]; then
    mode=wasi
    shift
fi

run() {
    printf '+ %s\n' "$*" >&2
    "$@"
}

if ! command -v node >/dev/null 2>&1; then
    echo "test-wasm32: node is required (the tests run in node)" >&2
    exit 1
fi

ensure_target() {
    if ! rustup target list --installed | grep -qx "$1"; then
        run rustup target add "$1"
    fi
}

if [ "$mode" = wasi ]; then
    target=wasm32-wasip1
    ensure_target "$target"
    mkdir -p "$tools"
    # A libtest binary is a WASI command: run its _start with the test args.
    cat >"$tools/wasi-run.mjs" <<'EOF'
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import process from 'node:process';
const [file, ...args] = process.argv.slice(2);
// Without capture, a panicking test's message is printed before the abort.
const wasi = new WASI({ version: 'preview1', args: [file, ...args],
  env: { RUST_TEST_NOCAPTURE: '1' }, preopens: {}, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(file));
process.exitCode = wasi.start(await WebAssembly.instantiate(module, wasi.getImportObject()));
EOF
    export CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $tools/wasi-run.mjs"
    printf '+ CARGO_TARGET_WASM32_WASIP1_RUNNER=%s\n' "$CARGO_TARGET_WASM32_WASIP1_RUNNER" >&2
    run cargo test -p tollgate-filter --no-default-features --target "$target" --lib -- "$@"
    exit
fi

target=wasm32-unknown-unknown
ensure_target "$target"

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
    # those is missing from the index (seen here: webpki-roots 1.0.11),
    # resolve afresh within the same wasm-bindgen version.
    if ! run cargo install wasm-bindgen-cli --version "=$version" --locked --force --root "$tools"; then
        run cargo install wasm-bindgen-cli --version "=$version" --force --root "$tools"
    fi
fi

export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$runner"
printf '+ CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=%s\n' "$runner" >&2
run cargo test -p tollgate-filter --no-default-features --target "$target" --lib -- "$@"
