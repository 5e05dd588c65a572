//! The gateways under test: each variant is a [`GatewaySpec`], the one
//! `make run` renders, with its own HTTP filters (and what they need); plus
//! the client sidecar that originates mTLS, and Tollgate's policy.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{json, Value};

use crate::envoy::bootstrap::{grpc_cluster, plain_cluster, socket};
use crate::envoy::{ClientCertDetails, GatewaySpec, HttpFilters, PemFiles};

use super::lua::lua_filter;
use super::options::Mode;
use super::probe_wasm::HostCall;
use super::traffic::{Kind, MAX_OUTPUT_TOKENS, MODEL};
use super::{
    ALLOWED_PREFIX, AUTHZ_CLUSTER, AUTHZ_PREFIX, CHAT_PATH, CLIENT_KEY, CREDS_CLUSTER,
    PROVIDER_HOST, REAL_KEY, SECRET_NAME,
};

/// The gateways of both modes. The order is the table's row order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Variant {
    Plain,
    Native,
    ExtAuthz,
    Tollgate,
    /// Body path: Tollgate with the body rule (`models`, `max_output_tokens`
    /// clamp), held mode.
    TollgateBody,
    /// Body path: rbac then the Lua filter doing the body rule's job.
    Lua,
    /// Body path: Tollgate with a header-only rule (`stream_usage: leave`,
    /// so no request body is read) on the same traffic.
    TollgateHeaderOnly,
    /// Diagnostic: a wasm filter in the same v8 runtime that does nothing,
    /// to split Tollgate's cost into "being a wasm filter" and "its work".
    WasmNoop,
    /// Body path: the body rule plus a per-workload request budget and a
    /// per-workload token budget that never run out (issue 9's local tier:
    /// reserved at admission and at the body, settled at the stream's end).
    TollgateBodyBudgets,
    /// Body path: the same two budgets in the global tier (issue 9): each
    /// request asks the rate-limit service (here, on Redis) to hold them,
    /// and settles them there when its stream ends.
    TollgateBodyGlobal,
    /// Body-path diagnostic: a wasm filter in the same v8 runtime that holds
    /// each request until its body is complete, as held mode does, and does
    /// nothing else: the floor of any wasm filter that checks whole bodies.
    WasmNoopHeld,
    /// Diagnostic: Tollgate with `audit_log: proxy_log`, the record written
    /// through Envoy's logger as before filter state: what that option costs.
    TollgateProxyLog,
    /// Diagnostic, only with `--tollgate-b FILE`: another build of Tollgate,
    /// same policy, for A/B measurements of a filter change in one run.
    TollgateB,
    /// Body path, only with `--tollgate-b FILE`: build B with the body rule.
    TollgateBodyB,
    /// `--dlp`: the body rule plus a DLP policy of every built-in detector
    /// (secrets blocked, personal data redacted), on the 2 KB prompt.
    TollgateBodyDlp,
    /// `--dlp`: the plain proxy on the 64 KB prompt.
    PlainLong,
    /// `--dlp`: the body rule on the 64 KB prompt.
    TollgateBodyLong,
    /// `--dlp`: the body rule plus DLP on the 64 KB prompt.
    TollgateBodyDlpLong,
    /// `--dlp`, only with `--tollgate-b FILE`: build B with the body rule
    /// plus DLP on the 64 KB prompt (A/B of a change to DLP's speed).
    TollgateBodyDlpLongB,
    /// `--dlp` diagnostic: the body rule plus a DLP policy that only
    /// records (`audit: ["all"]`) on the 64 KB prompt: what redact's
    /// bookkeeping adds when nothing is found.
    TollgateBodyDlpAuditLong,
    /// `--probes` diagnostic: the no-op module, except that its request
    /// headers make one host call ten times, or once for a once-probe
    /// (`HostCall::calls_per_request`, `probe_wasm`); otherwise like
    /// [`Variant::WasmNoop`].
    Probe(HostCall),
}

/// What a gateway's rule does with DLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dlp {
    /// No DLP policy.
    Off,
    /// [`tollgate_dlp_policy`]: secrets blocked, personal data redacted.
    Enforce,
    /// Every built-in detector recorded, nothing blocked or changed.
    Audit,
}

impl Variant {
    /// The default mode's gateways (`TollgateB` only with `--tollgate-b`).
    pub(crate) const HEADER_MODE: [Variant; 7] = [
        Self::Plain,
        Self::Native,
        Self::ExtAuthz,
        Self::Tollgate,
        Self::WasmNoop,
        Self::TollgateProxyLog,
        Self::TollgateB,
    ];

    /// `--body-path`'s gateways (`TollgateBodyB` only with `--tollgate-b`).
    pub(crate) const BODY_MODE: [Variant; 8] = [
        Self::Plain,
        Self::TollgateBody,
        Self::TollgateBodyBudgets,
        Self::TollgateBodyGlobal,
        Self::Lua,
        Self::TollgateHeaderOnly,
        Self::WasmNoopHeld,
        Self::TollgateBodyB,
    ];

    /// `--dlp`'s gateways: each prompt size through the plain proxy, the
    /// body rule and the body rule with DLP (`TollgateBodyDlpLongB` only
    /// with `--tollgate-b`).
    pub(crate) const DLP_MODE: [Variant; 8] = [
        Self::Plain,
        Self::TollgateBody,
        Self::TollgateBodyDlp,
        Self::PlainLong,
        Self::TollgateBodyLong,
        Self::TollgateBodyDlpLong,
        Self::TollgateBodyDlpAuditLong,
        Self::TollgateBodyDlpLongB,
    ];

    /// `--probes`' gateways besides one [`Variant::Probe`] per host call
    /// (`TollgateB` only with `--tollgate-b`).
    pub(crate) const PROBE_BASE: [Variant; 4] =
        [Self::Plain, Self::Tollgate, Self::WasmNoop, Self::TollgateB];

    /// The gateways of one mode; `probes`: `--probes`' instead of the
    /// default mode's.
    pub(crate) fn all(mode: Mode, probes: bool) -> Vec<Variant> {
        match mode {
            Mode::Headers if probes => Self::PROBE_BASE
                .into_iter()
                .chain(HostCall::ALL.map(Self::Probe))
                .collect(),
            Mode::Headers => Self::HEADER_MODE.to_vec(),
            Mode::BodyPath => Self::BODY_MODE.to_vec(),
            Mode::Dlp => Self::DLP_MODE.to_vec(),
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Plain => "1 plain proxy (router only)",
            Self::Native => "2 rbac + credential_injector",
            Self::ExtAuthz => "3 ext_authz (HTTP, Rust svc)",
            Self::Tollgate => "4 Tollgate (cached key)",
            Self::TollgateBody => "2 Tollgate, body rule (held)",
            Self::TollgateBodyBudgets => "(issue 9) Tollgate, body rule + budgets",
            Self::TollgateBodyGlobal => "(issue 9) Tollgate, body + global budgets",
            Self::Lua => "3 rbac + lua, body rule",
            Self::TollgateHeaderOnly => "(ref) Tollgate, header-only rule",
            Self::WasmNoop => "(diag) no-op wasm filter, v8",
            Self::WasmNoopHeld => "(floor) no-op wasm holding the body",
            Self::TollgateProxyLog => "(diag) Tollgate, audit via proxy_log",
            Self::TollgateB => "(diag) Tollgate, build B",
            Self::TollgateBodyB => "(diag) Tollgate build B, body rule",
            Self::TollgateBodyDlp => "3 Tollgate, body rule + DLP, 2 KB",
            Self::PlainLong => "4 plain proxy, 64 KB",
            Self::TollgateBodyLong => "5 Tollgate, body rule, 64 KB",
            Self::TollgateBodyDlpLong => "6 Tollgate, body rule + DLP, 64 KB",
            Self::TollgateBodyDlpLongB => "(diag) build B, body + DLP, 64 KB",
            Self::TollgateBodyDlpAuditLong => "(diag) body + DLP audit-only, 64 KB",
            Self::Probe(call) => call.label(),
        }
    }

    /// A short name for directories, clusters and listeners.
    pub(crate) fn slug(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Native => "native",
            Self::ExtAuthz => "ext_authz",
            Self::Tollgate => "tollgate",
            Self::TollgateBody => "tollgate_body",
            Self::TollgateBodyBudgets => "tollgate_body_budgets",
            Self::TollgateBodyGlobal => "tollgate_body_global",
            Self::Lua => "lua",
            Self::TollgateHeaderOnly => "tollgate_header_only",
            Self::WasmNoop => "wasm_noop",
            Self::WasmNoopHeld => "wasm_noop_held",
            Self::TollgateProxyLog => "tollgate_proxy_log",
            Self::TollgateB => "tollgate_b",
            Self::TollgateBodyB => "tollgate_body_b",
            Self::TollgateBodyDlp => "tollgate_body_dlp",
            Self::PlainLong => "plain_64k",
            Self::TollgateBodyLong => "tollgate_body_64k",
            Self::TollgateBodyDlpLong => "tollgate_body_dlp_64k",
            Self::TollgateBodyDlpLongB => "tollgate_body_dlp_64k_b",
            Self::TollgateBodyDlpAuditLong => "tollgate_body_dlp_audit_64k",
            Self::Probe(call) => call.slug(),
        }
    }

    /// Whether the gateway enforces the policy (refuses other endpoints).
    pub(crate) fn enforces(self) -> bool {
        !matches!(
            self,
            Self::Plain | Self::PlainLong | Self::WasmNoop | Self::WasmNoopHeld | Self::Probe(_)
        )
    }

    /// Whether the gateway writes Tollgate's (or the Lua script's) record.
    pub(crate) fn records(self) -> bool {
        self.enforces()
    }

    /// Whether the gateway enforces the body rule: refuses a model off the
    /// list and clamps `max_tokens` to the cap.
    pub(crate) fn checks_body(self) -> bool {
        matches!(
            self,
            Self::TollgateBody
                | Self::TollgateBodyBudgets
                | Self::TollgateBodyGlobal
                | Self::Lua
                | Self::TollgateBodyB
                | Self::TollgateBodyDlp
                | Self::TollgateBodyLong
                | Self::TollgateBodyDlpLong
                | Self::TollgateBodyDlpLongB
                | Self::TollgateBodyDlpAuditLong
        )
    }

    /// What the gateway's rule does with DLP (`--dlp`).
    pub(crate) fn dlp(self) -> Dlp {
        match self {
            Self::TollgateBodyDlp | Self::TollgateBodyDlpLong | Self::TollgateBodyDlpLongB => {
                Dlp::Enforce
            }
            Self::TollgateBodyDlpAuditLong => Dlp::Audit,
            _ => Dlp::Off,
        }
    }

    /// The chat request this gateway is fed: the 64 KB one or the 2 KB one.
    pub(crate) fn chat_kind(self) -> Kind {
        match self {
            Self::PlainLong
            | Self::TollgateBodyLong
            | Self::TollgateBodyDlpLong
            | Self::TollgateBodyDlpLongB
            | Self::TollgateBodyDlpAuditLong => Kind::LongChat,
            _ => Kind::Chat,
        }
    }

    /// Whether this is a build of Tollgate under test with `--tollgate-b`.
    pub(crate) fn is_build_b(self) -> bool {
        matches!(
            self,
            Self::TollgateB | Self::TollgateBodyB | Self::TollgateBodyDlpLongB
        )
    }

    /// Envoy's `wasm` log level, as the mesh configuration deploys it
    /// (`componentLogLevel: wasm:info`), for every gateway.
    pub(crate) fn wasm_log_level(self) -> &'static str {
        "wasm:info"
    }

    /// The credential the upstream must receive through this gateway.
    pub(crate) fn upstream_key(self) -> &'static str {
        match self {
            Self::Plain
            | Self::PlainLong
            | Self::WasmNoop
            | Self::WasmNoopHeld
            | Self::Probe(_) => CLIENT_KEY,
            _ => REAL_KEY,
        }
    }
}

/// The rate-limit service's cluster in the global-tier gateway.
pub(crate) const RLS_CLUSTER: &str = "ratelimit";

/// The held no-op module's file, beside the no-op module.
pub(crate) const NOOP_HELD_FILE: &str = "noop_held.wasm";

/// The gateway for `v`: `base` (Tollgate's spec, as `make run` renders it)
/// with this variant's HTTP filters and what they need. `noop` is the no-op
/// module (the held one and the probes beside it), `authz` the ext_authz
/// service, `rls` the rate-limit service (body path only).
pub(crate) fn spec_for(
    v: Variant,
    base: &GatewaySpec,
    noop: &Path,
    authz: SocketAddr,
    rls: Option<SocketAddr>,
) -> GatewaySpec {
    let mut spec = base.clone();
    match v {
        Variant::Plain | Variant::PlainLong => spec.http_filters = HttpFilters::Custom(vec![]),
        Variant::Native => {
            spec.http_filters =
                HttpFilters::Custom(vec![rbac_filter(), credential_injector_filter()]);
            spec.secrets = vec![json!({
                "name": SECRET_NAME,
                "generic_secret": {"secret": {"inline_string": REAL_KEY}},
            })];
        }
        Variant::ExtAuthz => {
            spec.client_cert_details = ClientCertDetails::SanitizeSetUri;
            spec.http_filters = HttpFilters::Custom(vec![ext_authz_filter(authz)]);
            spec.extra_clusters = vec![plain_cluster(AUTHZ_CLUSTER, authz)];
        }
        Variant::WasmNoop => spec.wasm = noop.to_path_buf(),
        Variant::WasmNoopHeld => spec.wasm = noop.with_file_name(NOOP_HELD_FILE),
        Variant::Probe(call) => spec.wasm = noop.with_file_name(call.file_name()),
        Variant::TollgateProxyLog => {
            let mut policy = tollgate_policy();
            policy["audit_log"] = "proxy_log".into();
            spec.policy_json = policy.to_string();
        }
        Variant::TollgateBody | Variant::TollgateBodyB | Variant::TollgateBodyLong => {
            spec.policy_json = tollgate_body_policy().to_string();
        }
        Variant::TollgateBodyDlp | Variant::TollgateBodyDlpLong | Variant::TollgateBodyDlpLongB => {
            spec.policy_json = tollgate_dlp_policy().to_string();
        }
        Variant::TollgateBodyDlpAuditLong => {
            let mut policy = tollgate_dlp_policy();
            policy["dlp_policies"] = json!([{"name": DLP_POLICY, "audit": ["all"]}]);
            spec.policy_json = policy.to_string();
        }
        Variant::TollgateBodyBudgets => {
            let mut policy = tollgate_body_policy();
            policy["budgets"] = json!([
                {"name": "rpm", "requests": 1_000_000_000_000u64, "window": "minute"},
                {"name": "tokens", "tokens": 1_000_000_000_000_000u64, "window": "minute"}
            ]);
            policy["rules"][0]["budgets"] = json!(["rpm", "tokens"]);
            spec.policy_json = policy.to_string();
        }
        Variant::TollgateBodyGlobal => {
            let mut policy = tollgate_body_policy();
            policy["rate_limit_service"] = json!({"cluster": RLS_CLUSTER, "timeout": "1s"});
            // The protocol carries limits in 32 bits.
            policy["budgets"] = json!([
                {"name": "rpm", "requests": u32::MAX, "window": "minute", "tier": "global"},
                {"name": "tokens", "tokens": u32::MAX, "window": "minute", "tier": "global"}
            ]);
            policy["rules"][0]["budgets"] = json!(["rpm", "tokens"]);
            spec.policy_json = policy.to_string();
            if let Some(rls) = rls {
                spec.extra_clusters = vec![grpc_cluster(RLS_CLUSTER, rls)];
            }
        }
        Variant::TollgateHeaderOnly => {
            let mut policy = tollgate_policy();
            policy["stream_usage"] = "leave".into();
            spec.policy_json = policy.to_string();
        }
        Variant::Lua => {
            spec.http_filters = HttpFilters::Custom(vec![rbac_filter(), lua_filter()]);
        }
        Variant::Tollgate | Variant::TollgateB => {}
    }
    // Held body mode, as README "Bodies" deploys it (also the default of
    // `GatewaySpec::tollgate`; said here so the body path does not depend
    // on that default).
    spec.held_bodies = true;
    spec
}

/// Native policy equal to Tollgate's rule: the workload prefix (on the
/// verified URI SAN), the provider host, `POST /v1/chat/completions`.
pub(crate) fn rbac_filter() -> Value {
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
pub(crate) fn credential_injector_filter() -> Value {
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
pub(crate) fn ext_authz_filter(authz: SocketAddr) -> Value {
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

/// The client sidecar: per gateway, a plain HTTP listener whose cluster
/// originates mTLS with the workload's certificate.
pub(crate) fn sidecar_bootstrap(
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
        "admin": {"address": socket("127.0.0.1", 0)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    })
}

fn sidecar_listener(v: Variant, listen: SocketAddr) -> Value {
    json!({
        "name": format!("to_{}", v.slug()),
        "address": socket(&listen.ip().to_string(), listen.port()),
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

/// Tollgate's body rule (`--body-path`): the same rule with the model
/// allow-list and the output cap (clamp), in held mode.
pub(crate) fn tollgate_body_policy() -> Value {
    let mut policy = tollgate_policy();
    policy["body_mode"] = "held".into();
    policy["rules"][0]["models"] = json!([MODEL]);
    policy["rules"][0]["max_output_tokens"] = json!(MAX_OUTPUT_TOKENS);
    policy["rules"][0]["max_output_tokens_action"] = "clamp".into();
    policy
}

/// The DLP policy of `--dlp`'s gateways, as an operator would write it:
/// every built-in detector on, credentials blocked and personal data
/// redacted.
pub(crate) const DLP_POLICY: &str = "prompts";

/// Tollgate's body rule with [`DLP_POLICY`] (`--dlp`): every built-in
/// detector, `secrets` blocked, `personal_data` redacted.
pub(crate) fn tollgate_dlp_policy() -> Value {
    let mut policy = tollgate_body_policy();
    policy["dlp_policies"] = json!([
        {"name": DLP_POLICY, "block": ["secrets"], "redact": ["personal_data"]}
    ]);
    policy["rules"][0]["dlp"] = DLP_POLICY.into();
    policy
}

/// Tollgate's policy: one provider, one rule, equal to the rbac policy.
pub(crate) fn tollgate_policy() -> Value {
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
