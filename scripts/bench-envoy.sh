#!/usr/bin/env bash
# make bench-envoy: Tollgate against Envoy's native filters (rbac +
# credential_injector) and ext_authz, each in a real Envoy 1.40 gateway
# behind the same mTLS listener, measured in one run (see BENCHMARKS.md and
# harness/src/bench/mod.rs, the driver tollgate-bench-envoy).
#
#   scripts/bench-envoy.sh [driver options, e.g. --rounds 3 --run-ms 1000]
#   scripts/bench-envoy.sh --body-path [options]   # request/response bodies:
#       Tollgate's body rule (models + max_output_tokens clamp, held) vs the
#       plain proxy vs rbac + lua, with time to first byte on a stream
#   scripts/bench-envoy.sh --dlp [options]   # prompt DLP (issue 10): the
#       body rule with and without a DLP rule of every built-in detector,
#       on a 2 KB and a 64 KB prompt, against the plain proxy on each
#   scripts/bench-envoy.sh --probes [options]   # per-host-call cost: the
#       no-op wasm module making one proxy-wasm host call (of those on
#       Tollgate's cached request path) 10 times per request, or once (a
#       stream's first call), minus the no-op module, over the count
#       (harness/src/bench/probe_wasm.rs)
#
# Needs: the venv's Envoy and target/.../tollgate.wasm (the Makefile target
# builds both first), and h2load, which is installed here if missing
# (Debian package nghttp2-client; sudo only when not root).
# CARGO_TARGET_DIR is honoured for both the driver and the wasm module.
# Everything the driver starts is stopped when it exits, also on Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CARGO=${CARGO:-cargo}

install_h2load() {
    command -v h2load >/dev/null 2>&1 && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "h2load is missing and sudo is not available: install nghttp2-client" >&2; exit 1; }
        sudo="sudo"
    fi
    echo "installing h2load (nghttp2-client)" >&2
    $sudo apt-get install -y nghttp2-client >/dev/null \
        || { $sudo apt-get update >/dev/null && $sudo apt-get install -y nghttp2-client >/dev/null; }
}

install_h2load

# The bench profile: optimised like release, without the filter's LTO and
# single codegen unit, so building wasmtime for the harness stays affordable.
"$CARGO" build -q --profile bench -p tollgate-harness --bin tollgate-bench-envoy

exec "$TARGET_DIR/release/tollgate-bench-envoy" \
    --repo "$ROOT" \
    --wasm "$TARGET_DIR/wasm32-wasip1/release/tollgate.wasm" \
    "$@"
