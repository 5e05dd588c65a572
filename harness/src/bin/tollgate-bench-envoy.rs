//! `tollgate-bench-envoy` (`make bench-envoy`): Tollgate against Envoy's
//! native filters and against ext_authz, each in a real Envoy 1.40 gateway,
//! measured in one run on one machine.
//!
//! ```text
//! tollgate-bench-envoy [--repo DIR] [--wasm FILE] [--rounds N] [--run-ms MS]
//!                      [--warmup-ms MS] [--rate RPS] [--rate-clients N]
//!                      [--connections N] [--keep] [--hold] [--no-pin] [--no-spin]
//! ```
//!
//! Noise control on a small shared VM (both on by default): the gateways
//! are pinned to one CPU and everything else to the other (`--no-pin`), so
//! all gateways get the same placement and their CPU time is their own; and
//! one `SCHED_IDLE` busy-loop thread per CPU keeps the CPUs out of idle
//! states (`--no-spin`). Without it, waking an idle vCPU adds hundreds of µs
//! of random delay per hop; the spinners yield to any other runnable task at
//! once, so they take no CPU from what is measured.
//!
//! `--hold` starts and checks everything, prints where each gateway and its
//! sidecar entry listen, and waits for Ctrl-C instead of measuring: for
//! profiling by hand (`perf record -p <gateway pid>`, h2load against an
//! entry).
//!
//! Topology, all on loopback, every Envoy started with `--concurrency 1`:
//!
//! ```text
//! h2load --h1 ─HTTP/1.1─▶ client sidecar Envoy ─mTLS, workload SVID─▶ gateway Envoy ─HTTP/1.1─▶ mock LLM
//!                         (one plain listener                          (1) router only
//!                          per gateway, keep-alive)                    (2) rbac + credential_injector
//!                                                                      (3) ext_authz ──▶ authz service (here)
//!                                                                      (4) Tollgate  ──▶ mock credential service
//!                                                                      (diag) a no-op wasm filter
//!                                                                      (diag) Tollgate, audit line off
//! ```
//!
//! The two diagnostic gateways split Tollgate's cost: what any v8 wasm
//! filter costs (a hand-encoded module whose callbacks return at once), and
//! what writing the per-request audit line through Envoy's logger costs
//! (the same Tollgate with `--component-log-level wasm:warn`). The others
//! run with `wasm:info`, as the mesh configuration deploys Tollgate.
//!
//! Neither h2load nor wrk can present a client certificate, so a sidecar
//! Envoy originates the mTLS, as an Istio sidecar would; it is the same for
//! all four gateways. The gateways share the listener rendered by
//! [`GatewaySpec`] (client certificate required, SPIFFE URI SAN), the
//! upstream cluster and the route; they differ only in their HTTP filters,
//! and ext_authz also gets the caller's URI SAN in `x-forwarded-client-cert`
//! (`SANITIZE_SET`), since that is how an HTTP authz service learns it.
//!
//! Each round runs every gateway, in an order rotated per round: (a) latency
//! at a fixed request rate (h2load `--rps`, per-request log, p50 and p99),
//! then (b) closed-loop throughput. Added latency and throughput ratios are
//! taken per round against the plain proxy, and the table shows medians over
//! rounds.
//!
//! Invariants:
//! - Before measuring, every gateway is checked: the allowed request reaches
//!   the mock LLM with the expected credential, and (except for the plain
//!   proxy) a request outside the policy is refused. After every load run the
//!   mock's last request must still carry the expected credential.
//! - A load run with any failed or non-2xx request fails the whole run.
//! - Everything started here stops when the driver exits, on success, error,
//!   Ctrl-C or SIGTERM: Envoys and h2load are children with
//!   `PR_SET_PDEATHSIG`, Envoys are stopped on drop, h2load is killed on a
//!   signal, and the mocks and the authz service live in this process.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tollgate_harness::envoy::{
    envoy_binary, free_port, DevCa, EnvoyOptions, EnvoyProcess, GatewaySpec, ListenerSource,
    PemFiles, Upstream,
};
use tollgate_harness::mock::{MockCredentialService, MockLlm, ServedLlm, ServedMock};

/// The caller: the workload certificate's only SAN.
const WORKLOAD: &str = "spiffe://cluster.local/ns/support/sa/chatbot";
/// The prefix every policy allows (Tollgate's `ns/support/*`).
const ALLOWED_PREFIX: &str = "spiffe://cluster.local/ns/support/";
const PROVIDER_HOST: &str = "api.openai.com";
const CHAT_PATH: &str = "/v1/chat/completions";
/// An endpoint no policy allows: the refusal check.
const DENIED_PATH: &str = "/v1/embeddings";
/// What the credential service (or the native secret, or the authz service)
/// hands out.
macro_rules! real_key {
    () => {
        "sk-bench-real-openai-0123456789abcdef"
    };
}
const REAL_KEY: &str = real_key!();
const REAL_BEARER: &str = concat!("Bearer ", real_key!());
/// What the client sends; every gateway but the plain proxy replaces it.
const CLIENT_KEY: &str = "placeholder-not-a-key";
const CREDS_CLUSTER: &str = "tollgate-credentials";
const AUTHZ_CLUSTER: &str = "ext_authz";
const AUTHZ_PREFIX: &str = "/authz";
const SECRET_NAME: &str = "openai-key";
const BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi."}],"max_tokens":16}"#;

/// Where every gateway Envoy runs (unless `--no-pin`): alone on one core,
/// so all four get the same placement and their CPU time is their own.
const GATEWAY_CPU: usize = 1;
/// Where the client side (h2load, the sidecar), the mocks and the authz
/// service run.
const CLIENT_CPU: usize = 0;

/// Set by SIGINT/SIGTERM; checked between steps.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The running h2load's pid (0 if none), killed on a signal.
static LOAD_PID: AtomicI32 = AtomicI32::new(0);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-bench-envoy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let opts = Options::parse(std::env::args().skip(1))?;
    if opts.pin {
        // Inherited by the runtime's threads, the authz thread, the sidecar
        // and h2load; gateways are started from inside `on_gateway_cpu`.
        pin_current_thread(CLIENT_CPU)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.spawn(stop_on_signal());
    let spinners = if opts.spin {
        Spinners::start()?
    } else {
        Spinners::default()
    };
    let outcome = Bench::start(&opts, &rt).and_then(|bench| bench_all(&opts, &rt, &bench));
    drop(spinners);
    // Keep the logs of a failed run; an interrupted one is not a failure.
    let failed = outcome.is_err() && !INTERRUPTED.load(Ordering::SeqCst);
    if !failed && !opts.keep {
        let _ = std::fs::remove_dir_all(&opts.work_dir);
    } else {
        eprintln!(
            "work directory (configs, Envoy logs) kept at {}",
            opts.work_dir.display()
        );
    }
    outcome
}

/// Checks, measures, and prints the table.
fn bench_all(opts: &Options, rt: &tokio::runtime::Runtime, bench: &Bench) -> anyhow::Result<()> {
    print_header(opts, bench);
    rt.block_on(bench.verify())?;
    if opts.hold {
        return hold(bench);
    }
    let fetches_before = bench.creds.requests();
    let rounds = measure(opts, bench)?;
    let fetches = bench.creds.requests().saturating_sub(fetches_before);
    let summary = summarize(&rounds);
    print_rounds(&rounds);
    print_table(&summary);
    print_targets(&summary);
    print_gateway_stats(bench, fetches);
    Ok(())
}

/// Prints the entry points and waits until SIGINT or SIGTERM.
fn hold(bench: &Bench) -> anyhow::Result<()> {
    for g in &bench.gateways {
        println!(
            "{:<32} entry http://{} (Host {PROVIDER_HOST})  gateway admin http://{}  log {}",
            g.variant.label(),
            g.entry,
            g.envoy.admin_addr(),
            g.envoy.log_path().display()
        );
    }
    println!("holding; Ctrl-C stops everything");
    while !INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Options

/// Command-line options.
#[derive(Debug)]
struct Options {
    repo: PathBuf,
    wasm: PathBuf,
    rounds: usize,
    /// Measured milliseconds per load run.
    run_ms: u32,
    /// Unmeasured milliseconds before each load run.
    warmup_ms: u32,
    /// Total request rate of the latency runs.
    rate: u32,
    /// Connections sharing that rate.
    rate_clients: u32,
    /// Connections of the closed-loop throughput runs.
    connections: u32,
    keep: bool,
    /// Start, check, print the addresses, and wait for a signal.
    hold: bool,
    /// Gateways on [`GATEWAY_CPU`], everything else on [`CLIENT_CPU`].
    pin: bool,
    /// Keep every CPU out of idle with a `SCHED_IDLE` busy loop.
    spin: bool,
    /// `/proc/loadavg` when the driver started: other tenants' load.
    loadavg_at_start: String,
    work_dir: PathBuf,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut o = Self {
            repo: PathBuf::from("."),
            wasm: PathBuf::new(),
            rounds: 8,
            run_ms: 1500,
            warmup_ms: 500,
            rate: 400,
            rate_clients: 1,
            connections: 32,
            keep: false,
            hold: false,
            pin: online_cpus() >= 2,
            spin: true,
            loadavg_at_start: loadavg(),
            work_dir: std::env::temp_dir()
                .join(format!("tollgate-bench-envoy-{}", std::process::id())),
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
            match flag.as_str() {
                "--repo" => o.repo = value()?.into(),
                "--wasm" => o.wasm = value()?.into(),
                "--rounds" => o.rounds = number(&flag, &value()?)?,
                "--run-ms" => o.run_ms = number(&flag, &value()?)?,
                "--warmup-ms" => o.warmup_ms = number(&flag, &value()?)?,
                "--rate" => o.rate = number(&flag, &value()?)?,
                "--rate-clients" => o.rate_clients = number(&flag, &value()?)?,
                "--connections" => o.connections = number(&flag, &value()?)?,
                "--keep" => o.keep = true,
                "--hold" => o.hold = true,
                "--no-pin" => o.pin = false,
                "--no-spin" => o.spin = false,
                "-h" | "--help" => {
                    bail!("usage: see the //! header of harness/src/bin/tollgate-bench-envoy.rs")
                }
                other => bail!("unknown argument {other:?} (try --help)"),
            }
        }
        if o.wasm.as_os_str().is_empty() {
            o.wasm = o.repo.join("target/wasm32-wasip1/release/tollgate.wasm");
        }
        ensure!(
            o.rounds >= 1 && o.run_ms >= 100,
            "--rounds must be at least 1 and --run-ms at least 100"
        );
        ensure!(
            o.rate_clients >= 1 && o.rate >= o.rate_clients,
            "--rate must be at least --rate-clients (≥ 1)"
        );
        ensure!(o.connections >= 1, "--connections must be at least 1");
        ensure!(
            o.wasm.exists(),
            "{} is missing: run `make build`",
            o.wasm.display()
        );
        Ok(o)
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> anyhow::Result<T> {
    v.parse()
        .map_err(|_| anyhow!("{flag}: {v:?} is not a number"))
}

// ---------------------------------------------------------------------------
// The gateways

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Variant {
    Plain,
    Native,
    ExtAuthz,
    Tollgate,
    /// Diagnostic: a wasm filter in the same v8 runtime that does nothing,
    /// to split Tollgate's cost into "being a wasm filter" and "its work".
    WasmNoop,
    /// Diagnostic: Tollgate with Envoy's `wasm` logger at `warn`, so the
    /// per-request audit line is built and handed to `proxy_log` but not
    /// written: the cost of writing it through Envoy's logger.
    TollgateNoAudit,
}

impl Variant {
    const ALL: [Variant; 6] = [
        Self::Plain,
        Self::Native,
        Self::ExtAuthz,
        Self::Tollgate,
        Self::WasmNoop,
        Self::TollgateNoAudit,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Plain => "1 plain proxy (router only)",
            Self::Native => "2 rbac + credential_injector",
            Self::ExtAuthz => "3 ext_authz (HTTP, Rust svc)",
            Self::Tollgate => "4 Tollgate (cached key)",
            Self::WasmNoop => "(diag) no-op wasm filter, v8",
            Self::TollgateNoAudit => "(diag) Tollgate, audit line off",
        }
    }

    /// A short name for directories, clusters and listeners.
    fn slug(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Native => "native",
            Self::ExtAuthz => "ext_authz",
            Self::Tollgate => "tollgate",
            Self::WasmNoop => "wasm_noop",
            Self::TollgateNoAudit => "tollgate_no_audit",
        }
    }

    /// Whether the gateway enforces the policy (refuses other endpoints).
    fn enforces(self) -> bool {
        matches!(
            self,
            Self::Native | Self::ExtAuthz | Self::Tollgate | Self::TollgateNoAudit
        )
    }

    /// Envoy's `wasm` log level: `info` shows Tollgate's audit line, as the
    /// mesh configuration deploys it (`componentLogLevel: wasm:info`).
    fn wasm_log_level(self) -> &'static str {
        match self {
            Self::TollgateNoAudit => "wasm:warn",
            Self::Plain | Self::Native | Self::ExtAuthz | Self::Tollgate | Self::WasmNoop => {
                "wasm:info"
            }
        }
    }

    /// The credential the mock LLM must receive through this gateway.
    fn upstream_key(self) -> &'static str {
        match self {
            Self::Plain | Self::WasmNoop => CLIENT_KEY,
            Self::Native | Self::ExtAuthz | Self::Tollgate | Self::TollgateNoAudit => REAL_KEY,
        }
    }
}

/// The gateway's bootstrap: [`GatewaySpec`]'s, with this variant's HTTP
/// filters (and what they need) swapped in.
fn gateway_bootstrap(v: Variant, spec: &GatewaySpec, authz: SocketAddr) -> anyhow::Result<Value> {
    let mut boot = spec.bootstrap(0);
    let hcm = boot
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
        .ok_or_else(|| {
            anyhow!("GatewaySpec's bootstrap no longer has the listener's HCM where expected")
        })?;
    let router = hcm["http_filters"]
        .as_array()
        .and_then(|f| f.last().cloned())
        .ok_or_else(|| anyhow!("GatewaySpec's HCM has no http_filters"))?;
    match v {
        Variant::Plain => hcm["http_filters"] = json!([router]),
        Variant::Native => {
            hcm["http_filters"] = json!([rbac_filter(), credential_injector_filter(), router]);
        }
        Variant::ExtAuthz => {
            hcm["forward_client_cert_details"] = json!("SANITIZE_SET");
            hcm["set_current_client_cert_details"] = json!({"uri": true});
            hcm["http_filters"] = json!([ext_authz_filter(authz), router]);
        }
        Variant::Tollgate | Variant::TollgateNoAudit | Variant::WasmNoop => {}
    }
    let statics = &mut boot["static_resources"];
    match v {
        Variant::Native => {
            statics["secrets"] = json!([{
                "name": SECRET_NAME,
                "generic_secret": {"secret": {"inline_string": REAL_KEY}},
            }]);
        }
        Variant::ExtAuthz => push_cluster(statics, plain_cluster(AUTHZ_CLUSTER, authz))?,
        Variant::Plain | Variant::Tollgate | Variant::TollgateNoAudit | Variant::WasmNoop => {}
    }
    Ok(boot)
}

/// Native policy equal to Tollgate's rule: the workload prefix (on the
/// verified URI SAN), the provider host, `POST /v1/chat/completions`.
fn rbac_filter() -> Value {
    let header = |name: &str, exact: &str| json!({"header": {"name": name, "string_match": {"exact": exact}}});
    json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW", "policies": {"support-chat": {
                "permissions": [{"and_rules": {"rules": [
                    header(":authority", PROVIDER_HOST),
                    header(":method", "POST"),
                    {"url_path": {"path": {"exact": CHAT_PATH}}},
                ]}}],
                "principals": [{"authenticated": {"principal_name": {"prefix": ALLOWED_PREFIX}}}],
            }}},
        },
    })
}

/// The generic credential from a static secret, as `Authorization: Bearer`.
fn credential_injector_filter() -> Value {
    json!({
        "name": "envoy.filters.http.credential_injector",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
            "overwrite": true,
            "credential": {
                "name": "envoy.http.injected_credentials.generic",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic",
                    "credential": {"name": SECRET_NAME},
                    "header": "Authorization",
                    "header_value_prefix": "Bearer ",
                },
            },
        },
    })
}

/// ext_authz in HTTP mode: the service sees the XFCC header (the caller's
/// URI SAN), and its `authorization` reply header goes upstream.
fn ext_authz_filter(authz: SocketAddr) -> Value {
    json!({
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "failure_mode_allow": false,
            "allowed_headers": {"patterns": [{"exact": "x-forwarded-client-cert"}]},
            "http_service": {
                "server_uri": {"uri": format!("http://{authz}"), "cluster": AUTHZ_CLUSTER, "timeout": "1s"},
                "path_prefix": AUTHZ_PREFIX,
                "authorization_response": {
                    "allowed_upstream_headers": {"patterns": [{"exact": "authorization"}]},
                },
            },
        },
    })
}

fn plain_cluster(name: &str, addr: SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": socket(addr)}}]}]},
    })
}

fn socket(addr: SocketAddr) -> Value {
    json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}})
}

fn push_cluster(statics: &mut Value, cluster: Value) -> anyhow::Result<()> {
    statics["clusters"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("GatewaySpec's bootstrap has no static clusters"))?
        .push(cluster);
    Ok(())
}

/// The client sidecar: per gateway, a plain HTTP listener whose cluster
/// originates mTLS with the workload's certificate.
fn sidecar_bootstrap(
    routes: &[(Variant, SocketAddr, SocketAddr)],
    ca: &Path,
    svid: &PemFiles,
) -> Value {
    let listeners: Vec<Value> = routes
        .iter()
        .map(|(v, listen, _)| sidecar_listener(*v, *listen))
        .collect();
    let clusters: Vec<Value> = routes
        .iter()
        .map(|(v, _, gateway)| sidecar_cluster(*v, *gateway, ca, svid))
        .collect();
    json!({
        "node": {"id": "bench-sidecar", "cluster": "bench-client"},
        "admin": {"address": socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    })
}

fn sidecar_listener(v: Variant, listen: SocketAddr) -> Value {
    json!({
        "name": format!("to_{}", v.slug()),
        "address": socket(listen),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": format!("to_{}", v.slug()),
                "codec_type": "HTTP1",
                "route_config": {"name": "out", "virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"},
                                "route": {"cluster": format!("gw_{}", v.slug()), "timeout": "30s"}}],
                }]},
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }],
            },
        }]}],
    })
}

fn sidecar_cluster(v: Variant, gateway: SocketAddr, ca: &Path, svid: &PemFiles) -> Value {
    let mut c = plain_cluster(&format!("gw_{}", v.slug()), gateway);
    c["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": PROVIDER_HOST,
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": {"filename": svid.cert},
                    "private_key": {"filename": svid.key},
                }],
                "validation_context": {
                    "trusted_ca": {"filename": ca},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": PROVIDER_HOST}}],
                },
            },
        },
    });
    c
}

/// Tollgate's policy: one provider, one rule, equal to the rbac policy.
fn tollgate_policy() -> Value {
    json!({
        "mode": "enforce",
        "trust_domains": ["cluster.local"],
        "credential_service": {
            "cluster": CREDS_CLUSTER,
            "authority": "credentials.tollgate.local",
            "protocol": "tollgate_v1",
            "timeout": "2s",
            "ttl": "10m",
        },
        "providers": [{"name": "openai", "kind": "openai", "hosts": [PROVIDER_HOST],
                       "credential": {"name": "openai"}}],
        "rules": [{"name": "support-chat", "workloads": [format!("{ALLOWED_PREFIX}*")],
                   "providers": ["openai"], "endpoints": [format!("POST {CHAT_PATH}")]}],
    })
}

/// One exported function of [`noop_wasm`]: its signature (value types) and
/// its body, without the final `end`.
struct WasmFunc {
    export: &'static str,
    params: &'static [u8],
    results: &'static [u8],
    body: &'static [u8],
}

/// A proxy-wasm (ABI 0.2.1) module that does nothing: every callback
/// returns at once (`Continue`, `true`). Encoded by hand, so the diagnostic
/// needs no extra crate or toolchain.
fn noop_wasm() -> Vec<u8> {
    const I32: u8 = 0x7f;
    const RETURN_0: &[u8] = &[0x41, 0]; // i32.const 0
    const RETURN_1: &[u8] = &[0x41, 1];
    const RETURN_16: &[u8] = &[0x41, 16];
    let f = |export, params, results, body| WasmFunc {
        export,
        params,
        results,
        body,
    };
    let funcs = [
        f("proxy_abi_version_0_2_1", &[], &[], &[]),
        f("proxy_on_memory_allocate", &[I32], &[I32], RETURN_16),
        f("proxy_on_vm_start", &[I32, I32], &[I32], RETURN_1),
        f("proxy_on_configure", &[I32, I32], &[I32], RETURN_1),
        f("proxy_on_context_create", &[I32, I32], &[], &[]),
        f(
            "proxy_on_request_headers",
            &[I32, I32, I32],
            &[I32],
            RETURN_0,
        ),
        f(
            "proxy_on_response_headers",
            &[I32, I32, I32],
            &[I32],
            RETURN_0,
        ),
        f("proxy_on_done", &[I32], &[I32], RETURN_1),
        f("proxy_on_delete", &[I32], &[], &[]),
    ];
    let n = funcs.len() as u8; // < 128: one-byte LEB128 everywhere below
    let (mut types, mut fidx, mut exports, mut code) = (vec![n], vec![n], vec![n + 1], vec![n]);
    for (i, func) in funcs.iter().enumerate() {
        types.extend([0x60, func.params.len() as u8]);
        types.extend_from_slice(func.params);
        types.push(func.results.len() as u8);
        types.extend_from_slice(func.results);
        fidx.push(i as u8); // one type per function, same index
        exports.push(func.export.len() as u8);
        exports.extend_from_slice(func.export.as_bytes());
        exports.extend([0x00, i as u8]); // a function
        code.extend([func.body.len() as u8 + 2, 0x00]); // size, no locals
        code.extend_from_slice(func.body);
        code.push(0x0b); // end
    }
    exports.extend([6, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00]);
    let memory = vec![1, 0x00, 1]; // one memory, min 1 page, no max
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    for (id, section) in [
        (1u8, types),
        (3, fidx),
        (5, memory),
        (7, exports),
        (10, code),
    ] {
        module.push(id);
        leb128(&mut module, section.len());
        module.extend(section);
    }
    module
}

fn leb128(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

// ---------------------------------------------------------------------------
// The ext_authz service

/// The out-of-process authorizer, on its own thread and single-threaded
/// runtime, as a separate one-core service would be. Stops on drop.
struct AuthzService {
    addr: SocketAddr,
    /// The service thread's id, for its CPU time.
    tid: i32,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AuthzService {
    fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the authz service")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ext-authz".into())
            .spawn(move || {
                // SAFETY: gettid(2) has no preconditions.
                let _ = tid_tx.send(unsafe { libc::gettid() });
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(authz_serve(listener, stopped)),
                    Err(e) => eprintln!("ext-authz runtime: {e}"),
                }
            })
            .context("spawning the authz thread")?;
        let tid = tid_rx.recv().context("the authz thread died at start")?;
        Ok(Self {
            addr,
            tid,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for AuthzService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn authz_serve(
    listener: std::net::TcpListener,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        eprintln!("ext-authz: cannot register the listener");
        return;
    };
    // Dropping the set (when this returns) aborts every connection.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(authz_check);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn authz_check(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let xfcc = req
        .headers()
        .get("x-forwarded-client-cert")
        .and_then(|v| v.to_str().ok());
    let mut resp = Response::new(Full::new(Bytes::new()));
    match authorize(req.method(), req.uri().path(), xfcc) {
        Ok(()) => {
            resp.headers_mut().insert(
                AUTHORIZATION,
                hyper::header::HeaderValue::from_static(REAL_BEARER),
            );
        }
        Err(reason) => {
            *resp.status_mut() = StatusCode::FORBIDDEN;
            resp.headers_mut().insert(
                "x-authz-reason",
                hyper::header::HeaderValue::from_static(reason),
            );
        }
    }
    Ok(resp)
}

/// The same decision as the rbac policy and Tollgate's rule. The caller is
/// the URI of the single XFCC element Envoy set (`SANITIZE_SET`).
fn authorize(method: &Method, path: &str, xfcc: Option<&str>) -> Result<(), &'static str> {
    if path.strip_prefix(AUTHZ_PREFIX) != Some(CHAT_PATH) || method != Method::POST {
        return Err("endpoint_not_permitted");
    }
    let xfcc = xfcc.ok_or("no_identity")?;
    if xfcc.contains(',') {
        return Err("several_identities");
    }
    let mut uris = xfcc.split(';').filter_map(|kv| kv.strip_prefix("URI="));
    match (uris.next(), uris.next()) {
        (Some(id), None) if id.starts_with(ALLOWED_PREFIX) => Ok(()),
        (Some(_), None) => Err("workload_not_permitted"),
        _ => Err("no_identity"),
    }
}

// ---------------------------------------------------------------------------
// Setting up

/// One running gateway.
struct Gateway {
    variant: Variant,
    envoy: EnvoyProcess,
    /// Envoy's pid, for its CPU time.
    pid: u32,
    /// The sidecar listener that leads to this gateway.
    entry: SocketAddr,
}

/// Everything that runs during the benchmark. Field order is drop order:
/// Envoys stop before the services they talk to.
struct Bench {
    _sidecar: EnvoyProcess,
    gateways: Vec<Gateway>,
    authz: AuthzService,
    llm: MockLlm,
    creds: MockCredentialService,
    _llm_served: ServedLlm,
    _creds_served: ServedMock,
    envoy_bin: PathBuf,
}

impl Bench {
    fn start(opts: &Options, rt: &tokio::runtime::Runtime) -> anyhow::Result<Self> {
        let envoy_bin = envoy_binary(&opts.repo)?;
        let dir = &opts.work_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("body.json"), BODY).context("writing the request body")?;
        let noop = dir.join("noop.wasm");
        std::fs::write(&noop, noop_wasm()).context("writing the no-op wasm module")?;

        let ca = DevCa::generate("Tollgate bench CA")?;
        let pki = dir.join("pki");
        let ca_file = ca.save(&pki)?.cert;
        let server = ca
            .issue_server(
                &[PROVIDER_HOST, "localhost"],
                &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            )?
            .write(&pki, "gateway")?;
        let svid = ca.issue_workload(WORKLOAD)?.write(&pki, "chatbot")?;

        let creds = MockCredentialService::new();
        creds.set_key("openai", REAL_KEY, "openai-bench-1");
        let llm = MockLlm::new();
        llm.accept_key(REAL_KEY);
        llm.accept_key(CLIENT_KEY);
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let (creds_served, llm_served) = rt.block_on(async {
            let c = creds
                .serve(loopback)
                .await
                .context("serving the credential service")?;
            let l = llm.serve(loopback).await.context("serving the mock LLM")?;
            anyhow::Ok((c, l))
        })?;
        let authz = AuthzService::start()?;

        let base = GatewaySpec {
            listen: loopback,
            wasm: opts.wasm.clone(),
            policy_json: tollgate_policy().to_string(),
            client_ca: ca_file.clone(),
            server_cert: server.cert.clone(),
            server_key: server.key.clone(),
            credential_cluster: CREDS_CLUSTER.into(),
            credential_addr: creds_served.addr,
            upstream: Upstream::Mock(llm_served.addr),
            listener_source: ListenerSource::Static,
        };
        let mut gateways = Vec::new();
        let mut routes = Vec::new();
        for v in Variant::ALL {
            check_interrupted()?;
            let mut spec = GatewaySpec {
                listen: free_port(loopback.ip())?,
                ..base.clone()
            };
            if v == Variant::WasmNoop {
                spec.wasm = noop.clone();
            }
            let boot = gateway_bootstrap(v, &spec, authz.addr)?;
            let envoy = on_gateway_cpu(opts.pin, || {
                start_envoy(
                    &envoy_bin,
                    &dir.join(v.slug()),
                    &boot,
                    &["--component-log-level", v.wasm_log_level()],
                )
            })
            .with_context(|| format!("starting the {} gateway", v.slug()))?;
            let pid = pid_running(&dir.join(v.slug()).join("envoy.json"))?;
            let entry = free_port(loopback.ip())?;
            routes.push((v, entry, spec.listen));
            gateways.push(Gateway {
                variant: v,
                envoy,
                pid,
                entry,
            });
        }
        check_interrupted()?;
        let sidecar = start_envoy(
            &envoy_bin,
            &dir.join("sidecar"),
            &sidecar_bootstrap(&routes, &ca_file, &svid),
            &[],
        )
        .context("starting the client sidecar")?;
        Ok(Self {
            _sidecar: sidecar,
            gateways,
            authz,
            llm,
            creds,
            _llm_served: llm_served,
            _creds_served: creds_served,
            envoy_bin,
        })
    }

    fn gateway(&self, v: Variant) -> anyhow::Result<&Gateway> {
        self.gateways
            .iter()
            .find(|g| g.variant == v)
            .ok_or_else(|| anyhow!("no {} gateway", v.slug()))
    }

    /// One allowed and one refused request per gateway, before measuring.
    /// For Tollgate the allowed one also fills the credential cache.
    async fn verify(&self) -> anyhow::Result<()> {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        for g in &self.gateways {
            let v = g.variant;
            self.llm.clear();
            let status = post(&client, g.entry, CHAT_PATH).await?;
            ensure!(
                status == 200,
                "{}: the allowed request got {status}",
                v.slug()
            );
            self.check_upstream_key(v)?;
            let seen = self.llm.counts().total;
            let status = post(&client, g.entry, DENIED_PATH).await?;
            let reached = self.llm.counts().total > seen;
            if !v.enforces() {
                ensure!(
                    reached,
                    "{}: {DENIED_PATH} did not reach the mock LLM ({status})",
                    v.slug()
                );
            } else {
                ensure!(
                    status == 403 && !reached,
                    "{}: {DENIED_PATH} got {status} and {} the mock LLM; expected a 403 from the gateway",
                    v.slug(),
                    if reached { "reached" } else { "did not reach" }
                );
            }
        }
        println!("checked: each gateway forwards the allowed request with the expected key; the policy gateways refuse {DENIED_PATH} with 403\n");
        Ok(())
    }

    /// The mock LLM's last request carried the credential `v` must send.
    fn check_upstream_key(&self, v: Variant) -> anyhow::Result<()> {
        let last = self
            .llm
            .last_request()
            .ok_or_else(|| anyhow!("{}: nothing reached the mock LLM", v.slug()))?;
        ensure!(
            last.key.as_deref() == Some(v.upstream_key().as_bytes()),
            "{}: the mock LLM did not receive the expected credential",
            v.slug()
        );
        Ok(())
    }
}

/// Runs `f` (which starts a gateway) with this thread on [`GATEWAY_CPU`],
/// so the child inherits that placement; then moves back.
fn on_gateway_cpu<T>(pin: bool, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    if !pin {
        return f();
    }
    pin_current_thread(GATEWAY_CPU)?;
    let out = f();
    pin_current_thread(CLIENT_CPU)?;
    out
}

/// Restricts the calling thread (and what it spawns later) to `cpu`.
fn pin_current_thread(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; CPU_SET stays in
    // bounds for cpu < CPU_SETSIZE; sched_setaffinity(0, ..) only affects
    // the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("pinning to CPU {cpu} (try --no-pin)"));
    }
    Ok(())
}

/// Writes `boot` to `dir/envoy.json` and starts Envoy on it, one worker.
fn start_envoy(
    bin: &Path,
    dir: &Path,
    boot: &Value,
    extra: &[&str],
) -> anyhow::Result<EnvoyProcess> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("envoy.json");
    std::fs::write(&config, serde_json::to_vec_pretty(boot)?)
        .with_context(|| format!("writing {}", config.display()))?;
    let mut eo = EnvoyOptions::new(bin.to_path_buf(), config, dir.to_path_buf());
    eo.concurrency = 1;
    eo.log_level = "warning".into();
    eo.extra_args = extra.iter().map(|s| s.to_string()).collect();
    Ok(EnvoyProcess::start(&eo)?)
}

async fn post(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    entry: SocketAddr,
    path: &str,
) -> anyhow::Result<u16> {
    let req = Request::post(format!("http://{entry}{path}"))
        .header(HOST, PROVIDER_HOST)
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, format!("Bearer {CLIENT_KEY}"))
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| anyhow!("POST {path} via {entry}: no answer within 10s"))?
        .with_context(|| format!("POST {path} via {entry}"))?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Ok(status)
}

// ---------------------------------------------------------------------------
// Load

/// One gateway's figures in one round.
#[derive(Clone, Copy, Debug)]
struct RoundResult {
    p50_us: f64,
    p99_us: f64,
    /// Gateway CPU µs per request in the fixed-rate run.
    fixed_cpu_us: f64,
    rps: f64,
    /// Gateway CPU µs per request in the closed-loop run.
    cpu_us: f64,
    /// The authz service's CPU µs per request in the closed-loop run.
    svc_cpu_us: f64,
}

/// Every round's results, per gateway, in round order.
type Rounds = BTreeMap<Variant, Vec<RoundResult>>;

fn measure(opts: &Options, bench: &Bench) -> anyhow::Result<Rounds> {
    let mut rounds: Rounds = BTreeMap::new();
    for round in 0..opts.rounds {
        let mut order = Variant::ALL.to_vec();
        let n = order.len();
        order.rotate_left(round % n);
        for v in order {
            let g = bench.gateway(v)?;
            let lat = latency_run(opts, bench, g, round)?;
            bench.check_upstream_key(v)?;
            let t = throughput_run(opts, bench, g)?;
            bench.check_upstream_key(v)?;
            eprintln!(
                "round {}/{} {:<32} p50 {:>5.0} µs  p99 {:>5.0} µs  CPU {:>5.1} µs/req | closed loop {:>6.0} req/s  CPU {:>5.1} µs/req",
                round + 1,
                opts.rounds,
                v.label(),
                lat.p50_us,
                lat.p99_us,
                lat.cpu_us,
                t.rps,
                t.cpu_us,
            );
            let r = RoundResult {
                p50_us: lat.p50_us,
                p99_us: lat.p99_us,
                fixed_cpu_us: lat.cpu_us,
                rps: t.rps,
                cpu_us: t.cpu_us,
                svc_cpu_us: t.svc_cpu_us,
            };
            rounds.entry(v).or_default().push(r);
        }
    }
    Ok(rounds)
}

/// Fixed rate: `rate` requests/s over `rate_clients` connections; p50 and
/// p99 from h2load's per-request log.
/// Also measures the gateway's CPU time per request at that rate.
fn latency_run(
    opts: &Options,
    bench: &Bench,
    g: &Gateway,
    round: usize,
) -> anyhow::Result<Latency> {
    let log = opts
        .work_dir
        .join(format!("latency-{}-{round}.tsv", g.variant.slug()));
    let per_client = (opts.rate / opts.rate_clients).to_string();
    let mut args = load_args(opts, g.entry, opts.rate_clients);
    args.extend([
        "--rps".into(),
        per_client,
        format!("--log-file={}", log.display()),
    ]);
    let window = CpuWindow::open(bench, g)?;
    let out = h2load(&args)?;
    let (cpu_us, _) = window.per_request(bench, g)?;
    let summary = H2loadSummary::parse(&out)
        .with_context(|| format!("{}: h2load output:\n{out}", g.variant.slug()))?;
    summary.ensure_clean(g.variant)?;
    let mut micros = read_latency_log(&log)?;
    let _ = std::fs::remove_file(&log);
    ensure!(
        !micros.is_empty(),
        "{}: the latency run logged no request",
        g.variant.slug()
    );
    micros.sort_unstable();
    Ok(Latency {
        p50_us: percentile(&micros, 0.50),
        p99_us: percentile(&micros, 0.99),
        cpu_us,
    })
}

/// A fixed-rate run's figures.
struct Latency {
    p50_us: f64,
    p99_us: f64,
    /// Gateway CPU time per request, µs.
    cpu_us: f64,
}

/// A gateway's completed requests and CPU time (and the authz service's,
/// for ext_authz) at the start of a load run.
struct CpuWindow {
    requests: u64,
    gateway_ns: u64,
    service_ns: u64,
}

impl CpuWindow {
    fn open(bench: &Bench, g: &Gateway) -> anyhow::Result<Self> {
        Ok(Self {
            requests: g.envoy.stat("http.egress.downstream_rq_completed"),
            gateway_ns: process_cpu_ns(g.pid)?,
            service_ns: thread_cpu_ns(service_tid(bench, g))?,
        })
    }

    /// CPU µs per request since `open`: (gateway, authz service).
    fn per_request(self, bench: &Bench, g: &Gateway) -> anyhow::Result<(f64, f64)> {
        let now = Self::open(bench, g)?;
        let requests = now.requests.saturating_sub(self.requests).max(1) as f64;
        let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1e3 / requests;
        Ok((
            per(now.gateway_ns, self.gateway_ns),
            per(now.service_ns, self.service_ns),
        ))
    }
}

fn service_tid(bench: &Bench, g: &Gateway) -> Option<i32> {
    (g.variant == Variant::ExtAuthz).then_some(bench.authz.tid)
}

/// Closed loop: `connections` connections, each with one request in flight.
/// Also measures the CPU time the gateway (and, for ext_authz, the authz
/// service) spent per request over the whole run, warm-up included.
fn throughput_run(opts: &Options, bench: &Bench, g: &Gateway) -> anyhow::Result<Throughput> {
    let window = CpuWindow::open(bench, g)?;
    let out = h2load(&load_args(opts, g.entry, opts.connections))?;
    let (cpu_us, svc_cpu_us) = window.per_request(bench, g)?;
    let summary = H2loadSummary::parse(&out)
        .with_context(|| format!("{}: h2load output:\n{out}", g.variant.slug()))?;
    summary.ensure_clean(g.variant)?;
    Ok(Throughput {
        rps: summary.rps,
        cpu_us,
        svc_cpu_us,
    })
}

/// A closed-loop run's figures.
struct Throughput {
    rps: f64,
    /// Gateway CPU time per request, µs (all Envoy threads).
    cpu_us: f64,
    /// The ext_authz service's CPU time per request, µs (0 for the others).
    svc_cpu_us: f64,
}

/// On-CPU time of every thread of `pid`, ns (`/proc/PID/task/*/schedstat`).
fn process_cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    let mut total = 0;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {}", tasks.display()))? {
        total += schedstat_ns(&task?.path().join("schedstat"))?;
    }
    Ok(total)
}

/// On-CPU time of one of this process's threads, ns (0 for `None`).
fn thread_cpu_ns(tid: Option<i32>) -> anyhow::Result<u64> {
    tid.map_or(Ok(0), |tid| {
        schedstat_ns(Path::new(&format!("/proc/self/task/{tid}/schedstat")))
    })
}

fn schedstat_ns(path: &Path) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .ok_or_else(|| anyhow!("{}: unexpected content {text:?}", path.display()))
}

/// The pid of the process whose command line names `config` (Envoy, which
/// the venv's wrapper `exec`s, so the pid is the child's).
fn pid_running(config: &Path) -> anyhow::Result<u32> {
    let wanted = config.as_os_str().as_encoded_bytes();
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|arg| arg == wanted) {
            return Ok(pid);
        }
    }
    bail!(
        "no running process has {} on its command line",
        config.display()
    )
}

/// The arguments every load run shares: same request, same client.
fn load_args(opts: &Options, entry: SocketAddr, clients: u32) -> Vec<String> {
    let body = opts.work_dir.join("body.json");
    vec![
        "--h1".into(),
        "-t".into(),
        "1".into(),
        "-c".into(),
        clients.to_string(),
        "-D".into(),
        format!("{}ms", opts.run_ms),
        format!("--warm-up-time={}ms", opts.warmup_ms),
        "-d".into(),
        body.display().to_string(),
        "-H".into(),
        "content-type: application/json".into(),
        "-H".into(),
        format!("authorization: Bearer {CLIENT_KEY}"),
        format!("--connect-to={entry}"),
        format!("http://{PROVIDER_HOST}{CHAT_PATH}"),
    ]
}

/// Runs h2load to completion (or until a signal) and returns its stdout.
fn h2load(args: &[String]) -> anyhow::Result<String> {
    check_interrupted()?;
    let mut cmd = Command::new("h2load");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .context("running h2load (apt-get install nghttp2-client, or use `make bench-envoy`)")?;
    LOAD_PID.store(child.id() as i32, Ordering::SeqCst);
    let out = child.wait_with_output();
    LOAD_PID.store(0, Ordering::SeqCst);
    let out = out.context("waiting for h2load")?;
    check_interrupted()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "h2load {} failed ({}):\n{stdout}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// What h2load's summary says about one run.
#[derive(Debug, Default)]
struct H2loadSummary {
    rps: f64,
    succeeded: u64,
    failed: u64,
    errored: u64,
    non_2xx: u64,
}

impl H2loadSummary {
    /// Reads `finished in 5.00s, 1234.5 req/s, …`, `requests: … N succeeded,
    /// N failed, N errored, …` and `status codes: N 2xx, N 3xx, N 4xx, N 5xx`.
    fn parse(out: &str) -> anyhow::Result<Self> {
        let mut s = Self::default();
        let mut seen = 0;
        for line in out.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("finished in ") {
                s.rps =
                    field_before(rest, "req/s").ok_or_else(|| anyhow!("no req/s in {line:?}"))?;
                seen += 1;
            } else if let Some(rest) = line.strip_prefix("requests: ") {
                s.succeeded = field_before(rest, "succeeded").unwrap_or(0);
                s.failed = field_before(rest, "failed").unwrap_or(0);
                s.errored = field_before(rest, "errored").unwrap_or(0);
                seen += 1;
            } else if let Some(rest) = line.strip_prefix("status codes: ") {
                let by = |class: &str| field_before::<u64>(rest, class).unwrap_or(0);
                s.non_2xx = by("3xx") + by("4xx") + by("5xx");
                seen += 1;
            }
        }
        ensure!(seen == 3, "h2load's summary lines are missing");
        Ok(s)
    }

    fn ensure_clean(&self, v: Variant) -> anyhow::Result<()> {
        ensure!(
            self.succeeded > 0 && self.failed == 0 && self.errored == 0 && self.non_2xx == 0,
            "{}: {} succeeded, {} failed, {} errored, {} not 2xx",
            v.slug(),
            self.succeeded,
            self.failed,
            self.errored,
            self.non_2xx
        );
        Ok(())
    }
}

/// The number just before `word` in a comma-separated summary line.
fn field_before<T: std::str::FromStr>(line: &str, word: &str) -> Option<T> {
    line.split(',')
        .map(str::trim)
        .find_map(|part| part.strip_suffix(word).and_then(|n| n.trim().parse().ok()))
}

/// Response times (µs) of h2load's `--log-file`: `start\tstatus\tmicros`.
fn read_latency_log(path: &Path) -> anyhow::Result<Vec<u64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            match cols.as_slice() {
                [_, status, micros, ..] if status.starts_with('2') => micros
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("bad h2load log line {l:?}")),
                _ => Err(anyhow!("h2load logged a failed request: {l:?}")),
            }
        })
        .collect()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

// ---------------------------------------------------------------------------
// Results

/// One gateway's medians over rounds; `added_*` and `ratio` are per-round
/// differences and ratios against the plain proxy, then medians.
#[derive(Clone, Copy, Debug)]
struct Summary {
    p50_us: f64,
    p99_us: f64,
    added_p50_us: f64,
    added_p99_us: f64,
    rps: f64,
    ratio: f64,
    fixed_cpu_us: f64,
    cpu_us: f64,
    svc_cpu_us: f64,
    /// Plain proxy's gateway CPU per request over this one's: the
    /// throughput ratio of a gateway whose one worker is the bottleneck.
    cpu_capacity: f64,
}

fn summarize(rounds: &Rounds) -> BTreeMap<Variant, Summary> {
    let Some(plain) = rounds.get(&Variant::Plain) else {
        return BTreeMap::new();
    };
    rounds
        .iter()
        .map(|(v, rs)| {
            let paired = |f: &dyn Fn(&RoundResult, &RoundResult) -> f64| {
                median(rs.iter().zip(plain).map(|(r, p)| f(r, p)).collect())
            };
            let s = Summary {
                p50_us: median(rs.iter().map(|r| r.p50_us).collect()),
                p99_us: median(rs.iter().map(|r| r.p99_us).collect()),
                added_p50_us: paired(&|r, p| r.p50_us - p.p50_us),
                added_p99_us: paired(&|r, p| r.p99_us - p.p99_us),
                rps: median(rs.iter().map(|r| r.rps).collect()),
                ratio: paired(&|r, p| r.rps / p.rps),
                fixed_cpu_us: median(rs.iter().map(|r| r.fixed_cpu_us).collect()),
                cpu_us: median(rs.iter().map(|r| r.cpu_us).collect()),
                svc_cpu_us: median(rs.iter().map(|r| r.svc_cpu_us).collect()),
                cpu_capacity: paired(&|r, p| p.cpu_us / r.cpu_us),
            };
            (*v, s)
        })
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn print_header(opts: &Options, bench: &Bench) {
    let version = |bin: &Path, arg: &str| {
        Command::new(bin)
            .arg(arg)
            .output()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
                text.lines().last().unwrap_or_default().trim().to_string()
            })
            .unwrap_or_else(|e| format!("unknown ({e})"))
    };
    println!("Envoy gateways: Tollgate vs native filters vs ext_authz");
    println!("  envoy:  {}", version(&bench.envoy_bin, "--version"));
    println!("  h2load: {}", version(Path::new("h2load"), "--version"));
    println!(
        "  every Envoy --concurrency 1; {} rounds, order rotated; each run {} ms after {} ms warm-up",
        opts.rounds, opts.run_ms, opts.warmup_ms
    );
    println!(
        "  latency: {} req/s over {} connection(s) (h2load --rps); throughput: closed loop, {} connections",
        opts.rate, opts.rate_clients, opts.connections
    );
    if opts.pin {
        println!("  placement: gateways pinned to CPU {GATEWAY_CPU}; h2load, sidecar, mocks and authz service to CPU {CLIENT_CPU}");
    } else {
        println!("  placement: unpinned (--no-pin)");
    }
    if opts.spin {
        println!("  idle CPUs kept busy by SCHED_IDLE spinners (--no-spin to disable)");
    }
    println!(
        "  background load before the run (/proc/loadavg, before the spinners): {}",
        opts.loadavg_at_start
    );
    println!(
        "  request: POST {CHAT_PATH} (non-streaming), {} bytes, Host {PROVIDER_HOST}\n",
        BODY.len()
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|e| format!("unknown ({e})"), |s| s.trim().to_string())
}

fn print_rounds(rounds: &Rounds) {
    println!("\nper round (fixed rate: p50 µs / p99 µs / gateway CPU µs per request; closed loop: req/s / gateway CPU µs per request):");
    for (v, rs) in rounds {
        let cells: Vec<String> = rs
            .iter()
            .map(|r| {
                format!(
                    "{:.0}/{:.0}/{:.1} {:.0}/{:.1}",
                    r.p50_us, r.p99_us, r.fixed_cpu_us, r.rps, r.cpu_us
                )
            })
            .collect();
        println!("  {:<32} {}", v.label(), cells.join("  "));
    }
}

fn print_table(summary: &BTreeMap<Variant, Summary>) {
    println!("\nmedians over rounds (added = over the plain proxy, paired per round):\n");
    println!("| gateway | p50 µs | p99 µs | added p50 µs | added p99 µs | gateway CPU µs/req, fixed rate | max req/s | vs plain | gateway CPU µs/req, closed loop | CPU-bound capacity vs plain |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (v, s) in summary {
        let added = |x: f64| {
            if *v == Variant::Plain {
                "–".to_string()
            } else {
                format!("{x:+.0}")
            }
        };
        let svc = if s.svc_cpu_us > 0.0 {
            format!(" (+{:.1} in the service)", s.svc_cpu_us)
        } else {
            String::new()
        };
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {:.1} | {:.0} | {:.0}% | {:.1}{svc} | {:.0}% |",
            v.label(),
            s.p50_us,
            s.p99_us,
            added(s.added_p50_us),
            added(s.added_p99_us),
            s.fixed_cpu_us,
            s.rps,
            s.ratio * 100.0,
            s.cpu_us,
            s.cpu_capacity * 100.0
        );
    }
}

fn print_targets(summary: &BTreeMap<Variant, Summary>) {
    let get = |v| summary.get(&v).copied();
    let (Some(native), Some(authz), Some(tollgate)) = (
        get(Variant::Native),
        get(Variant::ExtAuthz),
        get(Variant::Tollgate),
    ) else {
        return;
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    // A median added latency below zero is noise around "adds nothing".
    let floor = |us: f64| us.max(0.0);
    let (t, n, a) = (
        floor(tollgate.added_p50_us),
        floor(native.added_p50_us),
        floor(authz.added_p50_us),
    );
    println!("\ntargets (a negative added p50 counts as 0):");
    println!(
        "  Tollgate added p50 ≤ 1.5 × native's:     {t:.0} µs vs ≤ {:.0} µs  {}",
        1.5 * n,
        verdict(t <= 1.5 * n)
    );
    println!(
        "  Tollgate added p50 ≤ 1/3 of ext_authz's: {t:.0} µs vs ≤ {:.0} µs  {}",
        a / 3.0,
        verdict(t <= a / 3.0)
    );
    println!(
        "  Tollgate throughput ≥ 85% of plain:      {:.1}% closed loop on this box  {};  {:.1}% CPU-bound gateway  {}",
        tollgate.ratio * 100.0,
        verdict(tollgate.ratio >= 0.85),
        tollgate.cpu_capacity * 100.0,
        verdict(tollgate.cpu_capacity >= 0.85)
    );
}

/// Evidence that each gateway did its job during the runs.
fn print_gateway_stats(bench: &Bench, credential_fetches: usize) {
    println!("\ngateway counters over the whole run:");
    let wanted: [(Variant, &[&str]); 3] = [
        (
            Variant::Native,
            &["http.egress.rbac.allowed", "http.egress.rbac.denied"],
        ),
        (
            Variant::ExtAuthz,
            &[
                "http.egress.ext_authz.ok",
                "http.egress.ext_authz.denied",
                "http.egress.ext_authz.error",
            ],
        ),
        (
            Variant::Tollgate,
            &[
                "wasmcustom.tollgate.cache.hit",
                "wasmcustom.tollgate.cache.miss",
                "wasmcustom.tollgate.fetch.ok",
            ],
        ),
    ];
    for (v, names) in wanted {
        let Ok(g) = bench.gateway(v) else { continue };
        let cells: Vec<String> = names
            .iter()
            .map(|n| format!("{n} {}", g.envoy.stat(n)))
            .collect();
        println!("  {}: {}", v.slug(), cells.join(", "));
    }
    println!("  credential-service requests during measurement: {credential_fetches}");
}

/// One `SCHED_IDLE` busy-loop thread per CPU; stopped on drop.
#[derive(Default)]
struct Spinners {
    stop: std::sync::Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Spinners {
    fn start() -> anyhow::Result<Self> {
        let mut s = Self::default();
        for cpu in 0..online_cpus() {
            let stop = s.stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("idle-spin-{cpu}"))
                .spawn(move || {
                    if pin_current_thread(cpu).is_err() || !set_idle_policy() {
                        return; // never spin at normal priority
                    }
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
                .context("spawning an idle spinner")?;
            s.threads.push(thread);
        }
        Ok(s)
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// CPUs online (not this thread's affinity, which may already be pinned).
fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Moves the calling thread to `SCHED_IDLE`; false if that failed.
fn set_idle_policy() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
}

// ---------------------------------------------------------------------------
// Signals and children

/// On SIGINT or SIGTERM: flag the run as interrupted and kill h2load, so the
/// main thread returns and drops (stops) everything.
async fn stop_on_signal() {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let Ok(mut term) = term else {
        eprintln!("cannot install the SIGTERM handler");
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("\ninterrupted: stopping Envoys and load");
    INTERRUPTED.store(true, Ordering::SeqCst);
    let pid = LOAD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Asks the kernel to SIGKILL the child when this thread's process dies.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs in pre_exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authz_allows_only_the_policy() {
        let xfcc = "Hash=ab12;URI=spiffe://cluster.local/ns/support/sa/chatbot";
        let chat = format!("{AUTHZ_PREFIX}{CHAT_PATH}");
        assert_eq!(authorize(&Method::POST, &chat, Some(xfcc)), Ok(()));
        assert!(authorize(&Method::GET, &chat, Some(xfcc)).is_err());
        assert!(authorize(&Method::POST, "/authz/v1/embeddings", Some(xfcc)).is_err());
        assert!(authorize(&Method::POST, &chat, None).is_err());
        let other = "Hash=ab12;URI=spiffe://cluster.local/ns/default/sa/x";
        assert_eq!(
            authorize(&Method::POST, &chat, Some(other)),
            Err("workload_not_permitted")
        );
        let two = format!("{xfcc},{xfcc}");
        assert!(authorize(&Method::POST, &chat, Some(&two)).is_err());
    }

    #[test]
    fn reads_h2load_summary() {
        let out = "finished in 5.00s, 2345.60 req/s, 1.2MB/s\n\
                   requests: 11728 total, 11728 started, 11728 done, 11728 succeeded, 0 failed, 0 errored, 0 timeout\n\
                   status codes: 11728 2xx, 0 3xx, 0 4xx, 0 5xx\n";
        let s = H2loadSummary::parse(out).unwrap();
        assert_eq!(s.rps, 2345.60);
        assert_eq!((s.succeeded, s.failed, s.non_2xx), (11728, 0, 0));
    }

    #[test]
    fn noop_module_is_valid_wasm_with_the_proxy_wasm_exports() {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, noop_wasm()).unwrap();
        let names: Vec<&str> = module.exports().map(|e| e.name()).collect();
        assert!(names.contains(&"proxy_abi_version_0_2_1"));
        assert!(names.contains(&"proxy_on_request_headers"));
        assert!(names.contains(&"memory"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
