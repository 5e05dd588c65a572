#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer instrumentation and runs each one,
# starting from seeds/ and keeping what it learns in corpus/ (gitignored).
# Stable Rust is enough: the coverage flags below are stable codegen
# options, and libfuzzer-sys builds libFuzzer itself (no cargo-fuzz, no
# nightly; with them, `cargo +nightly fuzz run <target>` works too).
#
# Usage: filter/fuzz/run.sh [--runs N | SECONDS] [TARGET...]
#   SECONDS   run each target for that long (default 30)
#   --runs N  run each target for exactly N inputs (the long runs reported
#             in BENCHMARKS.md use --runs 10000000)
# `make test` runs every target for a few seconds (`make fuzz-smoke`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
limit="-max_total_time=30"
case "${1:-}" in
    --runs) limit="-runs=$2"; shift 2 ;;
    ''|*[!0-9]*) ;;
    *) limit="-max_total_time=$1"; shift ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(spiffe_id request_target workload_pattern endpoint_pattern
    config_document json_body sse_stream usage_json key_redact dlp_body dlp_response dlp_pattern)
host="$(rustc -vV | awk '/^host:/ {print $2}')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps RUSTFLAGS off build scripts.
echo "+ cargo build --release --bins --target $host" >&2
cargo build --locked --release --bins --target "$host"
# Bodies and streams need room for nesting and split events; the other
# inputs are short by nature.
max_len() {
    case "$1" in
        json_body|usage_json|dlp_body|dlp_response) echo 4096 ;;
        *) echo 512 ;;
    esac
}
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" artifacts
    cp -n "seeds/$t/"* "corpus/$t/" 2>/dev/null || true
    echo "+ $t ($limit)" >&2
    if ! "${CARGO_TARGET_DIR:-target}/$host/release/$t" "corpus/$t" "$limit" -max_len="$(max_len "$t")" \
        -artifact_prefix="artifacts/$t-" -print_final_stats=1 >"artifacts/$t.log" 2>&1; then
        tail -n 40 "artifacts/$t.log"
        echo "fuzz: $t failed; the input is in filter/fuzz/artifacts/" >&2
        exit 1
    fi
    runs="$(awk '/stat::number_of_executed_units/ {n = $2} END {print n}' "artifacts/$t.log")"
    echo "  $t: ${runs:-?} runs, no failure" >&2
done
