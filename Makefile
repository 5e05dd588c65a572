# Tollgate: build, test and try the proxy-wasm egress filter.
#
#   make build   the filter, as target/wasm32-wasip1/release/tollgate.wasm
#   make test    everything: unit tests (native and wasm32), harness and
#                end-to-end scenarios on the compiled .wasm
#   make run     try the demo policy locally, without Envoy
#   make bench   criterion benchmarks (see BENCHMARKS.md)
#
# Nothing needs installing by hand: the Rust targets are added on demand.

CARGO   ?= cargo
WASM    := target/wasm32-wasip1/release/tollgate.wasm
PROBE   := target/wasm32-wasip1/release/tollgate_harness_probe.wasm
POLICY  ?= mesh-config/local/policy.json

.PHONY: all build probe test test-native test-wasm32 run check-config bench fmt clippy clean

all: build

.wasm32-wasip1-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

build: .wasm32-wasip1-target
	$(CARGO) build -p tollgate-filter --target wasm32-wasip1 --release
	@echo "tollgate.wasm: $$(stat -c %s $(WASM)) bytes"

probe: .wasm32-wasip1-target
	$(CARGO) build -p tollgate-harness-probe --target wasm32-wasip1 --release

# The CLI's policy checks run inside test-native (harness/tests/cli.rs).
test: build probe test-native test-wasm32

test-native:
	$(CARGO) test --workspace --exclude tollgate-harness-probe

test-wasm32:
	scripts/test-wasm32.sh

check-config:
	$(CARGO) run -q -p tollgate-harness --bin tollgate-harness -- check --wasm $(WASM) $(POLICY)

run: build
	$(CARGO) run -q -p tollgate-harness --bin tollgate-harness -- demo --wasm $(WASM) $(POLICY)

bench: build
	$(CARGO) bench -p tollgate-filter --bench policy
	$(CARGO) bench -p tollgate-tests --bench cached_request

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy -p tollgate-filter --target wasm32-wasip1 --release -- -D warnings

clean:
	$(CARGO) clean
