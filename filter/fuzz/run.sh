#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer instrumentation on nightly (no
# cargo-fuzz needed) and runs each for SECONDS (default 30), starting from
# seeds/ and keeping what it learns in corpus/ (gitignored).
# Usage: filter/fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
seconds="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(spiffe_id request_target workload_pattern endpoint_pattern config_document)
host="$(rustc +nightly -vV | awk '/^host:/ {print $2}')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps RUSTFLAGS off build scripts.
echo "+ cargo +nightly build --release --bins --target $host" >&2
cargo +nightly build --release --bins --target "$host"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" artifacts
    cp -n "seeds/$t/"* "corpus/$t/" 2>/dev/null || true
    echo "+ $t for ${seconds}s" >&2
    if ! "${CARGO_TARGET_DIR:-target}/$host/release/$t" "corpus/$t" -max_total_time="$seconds" -max_len=512 \
        -artifact_prefix="artifacts/$t-" >"artifacts/$t.log" 2>&1; then
        tail -n 40 "artifacts/$t.log"
        echo "fuzz: $t failed; the input is in filter/fuzz/artifacts/" >&2
        exit 1
    fi
    tail -n 1 "artifacts/$t.log"
done
