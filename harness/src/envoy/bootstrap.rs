//! Envoy 1.40 configuration for a local Tollgate egress gateway.
//!
//! Job: turn a [`GatewaySpec`] into an Envoy bootstrap and the listener it
//! serves, as JSON that Envoy reads directly. The same rendering serves
//! `make run`, the Envoy end-to-end suites and the benchmarks, so what is
//! tested is what users run.
//!
//! Shape:
//! - one downstream listener that requires a client certificate from the
//!   development CA (`require_client_certificate`), sanitises any
//!   client-sent `x-forwarded-client-cert`, strips host ports, refuses
//!   header names with underscores (400), and makes Envoy generate every
//!   `x-request-id` itself (a client-sent one is removed before Envoy's
//!   request-id logic runs, so it never becomes the id the gateway records
//!   or forwards);
//! - the HTTP filter chain: Tollgate (`envoy.filters.http.wasm`, v8,
//!   fail-closed) then the router, or other filters for the benchmarks
//!   ([`HttpFilters`]);
//! - optionally, an access log writing one JSON line per request with
//!   Tollgate's audit record ([`AUDIT_LOG_FORMAT`]);
//! - a cluster for the credential service, named as the policy names it;
//! - upstreams: one plain-HTTP mock, or the real provider hosts with TLS
//!   origination.
//!
//! The listener is either static or served from a watched file (filesystem
//! LDS, [`ListenerSource::File`]), which is how policy reloads are exercised.
//!
//! Invariants: rendering is pure (no I/O); every path in the output is the
//! one given in the spec.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{json, Value};

/// The Tollgate filter's name in Envoy's logs and stats.
pub const FILTER_NAME: &str = "tollgate";
/// The downstream listener's name (stable across LDS updates).
pub const LISTENER_NAME: &str = "tollgate_egress";

/// Where provider traffic goes after the filter.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// Every provider host goes to one plain-HTTP server (the mock LLM).
    Mock(SocketAddr),
    /// Each provider host goes to the real provider on 443 with TLS
    /// origination, verified against the system CA bundle.
    Providers { ca_bundle: PathBuf },
}

/// The provider hosts routed in [`Upstream::Providers`] mode, with their
/// cluster names.
pub const PROVIDER_HOSTS: [(&str, &str); 3] = [
    ("openai", "api.openai.com"),
    ("anthropic", "api.anthropic.com"),
    ("gemini", "generativelanguage.googleapis.com"),
];

/// How the listener reaches Envoy.
#[derive(Clone, Debug)]
pub enum ListenerSource {
    /// In the bootstrap's `static_resources`.
    Static,
    /// From this file, watched by Envoy (filesystem LDS). Replace it by
    /// atomic rename to trigger an update.
    File(PathBuf),
}

/// Envoy's access-log line for a Tollgate gateway, one JSON object per
/// request: Envoy's own fields, and under `"tollgate"` the audit record the
/// filter keeps in filter state (`proxy_set_property("tollgate.audit", …)`,
/// stored by Envoy as `wasm.tollgate.audit`), or `null` when the filter
/// never saw the request (e.g. a header name with an underscore, refused by
/// the codec).
///
/// Why this shape (measured in Envoy 1.40):
/// - `%FILTER_STATE(wasm.tollgate.audit:PLAIN)%` in a `json_format` is the
///   record as an escaped JSON *string*; `:TYPED` is a
///   `google.protobuf.BytesValue` with the record in base64. Neither nests.
/// - In a text format, `:PLAIN` writes the bytes as they are (a nested
///   object), but a missing value prints `-`, which is not JSON.
/// - `%CEL(… ? filter_state[…] : b'null')%` in a text format writes the
///   bytes as they are, and `null` when absent: always valid JSON as long as
///   the filter stores one JSON object, which it does.
/// - The record the filter rewrites in `on_log` is the one logged: the wasm
///   filter's `on_log` runs before the HTTP connection manager's access
///   loggers.
///
/// Only fields Envoy generates are written outside the record (no header a
/// client chooses, which a text format would not escape): the request id is
/// Envoy's own (a client's `x-request-id` is removed before Envoy assigns
/// one; see the listener's connection manager).
pub const AUDIT_LOG_FORMAT: &str = concat!(
    r#"{"start_time":"%START_TIME%","request_id":"%REQ(X-REQUEST-ID)%","#,
    r#""status":%RESPONSE_CODE%,"response_code_details":"%RESPONSE_CODE_DETAILS%","#,
    r#""response_flags":"%RESPONSE_FLAGS%","duration_ms":%DURATION%,"#,
    r#""upstream_host":"%UPSTREAM_HOST%","upstream_cluster":"%UPSTREAM_CLUSTER%","#,
    r#""tollgate":%CEL('wasm.tollgate.audit' in filter_state ? filter_state['wasm.tollgate.audit'] : b'null')%}"#,
    "\n"
);

/// Where the access log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogSink {
    /// Appended to this file (Envoy buffers it and flushes it from its own
    /// thread: every 10 s by default, every 250 ms with
    /// [`GatewaySpec::envoy_options`]).
    File(PathBuf),
    /// Envoy's standard output.
    Stdout,
}

/// The HTTP filters before the router.
#[derive(Clone, Debug)]
pub enum HttpFilters {
    /// Tollgate (the spec's `wasm` with its `policy_json`).
    Tollgate,
    /// These filters instead (the benchmarks' native and ext_authz
    /// gateways; empty for a plain proxy).
    Custom(Vec<Value>),
}

/// What the listener does with `x-forwarded-client-cert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCertDetails {
    /// Remove any the client sent, add none (Tollgate never reads it).
    Sanitize,
    /// Replace it with the verified peer certificate's URI SAN (what an
    /// HTTP ext_authz service needs to learn the caller).
    SanitizeSetUri,
}

/// Everything a gateway needs.
#[derive(Clone, Debug)]
pub struct GatewaySpec {
    /// Listener address (a concrete port).
    pub listen: SocketAddr,
    /// The compiled `tollgate.wasm`.
    pub wasm: PathBuf,
    /// The policy, as the JSON text the filter receives.
    pub policy_json: String,
    /// The trust bundle that client certificates must chain to.
    pub client_ca: PathBuf,
    /// The gateway's own certificate and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The credential cluster's name (the policy's
    /// `credential_service.cluster`) and address.
    pub credential_cluster: String,
    pub credential_addr: SocketAddr,
    pub upstream: Upstream,
    pub listener_source: ListenerSource,
    /// The access log with the audit record, if any.
    pub access_log: Option<AccessLogSink>,
    pub http_filters: HttpFilters,
    pub client_cert_details: ClientCertDetails,
    /// More clusters (e.g. an ext_authz service).
    pub extra_clusters: Vec<Value>,
    /// `static_resources.secrets` (e.g. a credential_injector's key).
    pub secrets: Vec<Value>,
    /// Envoy worker threads (`--concurrency`).
    pub concurrency: u32,
    /// With the mock upstream: the route table's domains. Empty: `*` (any
    /// host reaches the mock); otherwise exact domains only, as a
    /// production route table lists the provider hosts.
    pub mock_domains: Vec<String>,
    /// Envoy's `allow_on_headers_stop_iteration` for the wasm filter (true
    /// by default: Tollgate's held body mode needs it). False renders a
    /// stock configuration, as a plain Istio WasmPlugin deploys.
    pub held_bodies: bool,
}

/// The listener's `per_connection_buffer_limit_bytes`: above the largest
/// `max_body_bytes` a shipped policy uses (the default is 512 KiB), so that
/// a body over the rule's limit gets Tollgate's 413 and not Envoy's.
pub const ENVOY_BUFFER_LIMIT_BYTES: u32 = 4 * 1024 * 1024;

impl GatewaySpec {
    /// A Tollgate gateway with the defaults `make run` uses: Tollgate's
    /// filter, XFCC sanitised, no access log, one worker.
    #[allow(clippy::too_many_arguments)]
    pub fn tollgate(
        listen: SocketAddr,
        wasm: PathBuf,
        policy_json: String,
        client_ca: PathBuf,
        server_cert: PathBuf,
        server_key: PathBuf,
        credential_cluster: String,
        credential_addr: SocketAddr,
        upstream: Upstream,
    ) -> Self {
        Self {
            listen,
            wasm,
            policy_json,
            client_ca,
            server_cert,
            server_key,
            credential_cluster,
            credential_addr,
            upstream,
            listener_source: ListenerSource::Static,
            access_log: None,
            http_filters: HttpFilters::Tollgate,
            client_cert_details: ClientCertDetails::Sanitize,
            extra_clusters: vec![],
            secrets: vec![],
            concurrency: 1,
            mock_domains: vec![],
            held_bodies: true,
        }
    }
}

impl GatewaySpec {
    /// The bootstrap, with `admin` on loopback at `admin_port` (0 for any;
    /// Envoy then reports it through `--admin-address-path`).
    pub fn bootstrap(&self, admin_port: u16) -> Value {
        let mut clusters = vec![plain_cluster(
            &self.credential_cluster,
            self.credential_addr,
        )];
        clusters.extend(self.upstream_clusters());
        clusters.extend(self.extra_clusters.iter().cloned());
        let mut boot = json!({
            "node": {"id": "tollgate-local", "cluster": "tollgate"},
            "admin": {"address": socket("127.0.0.1", admin_port)},
            "static_resources": {"clusters": clusters},
        });
        if !self.secrets.is_empty() {
            boot["static_resources"]["secrets"] = json!(self.secrets);
        }
        match &self.listener_source {
            ListenerSource::Static => {
                boot["static_resources"]["listeners"] = json!([self.listener()]);
            }
            ListenerSource::File(path) => {
                boot["dynamic_resources"] = json!({
                    "lds_config": {
                        "resource_api_version": "V3",
                        "path_config_source": {"path": path},
                    }
                });
            }
        }
        boot
    }

    /// The LDS file's content: a discovery response holding the listener.
    pub fn lds_file(&self) -> Value {
        let mut listener = self.listener();
        listener["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
        json!({ "resources": [listener] })
    }

    /// The downstream mTLS listener with Tollgate in its filter chain.
    pub fn listener(&self) -> Value {
        json!({
            "name": LISTENER_NAME,
            "address": socket(&self.listen.ip().to_string(), self.listen.port()),
            // Above the largest max_body_bytes of the policy, so that
            // Tollgate's 413 body_too_large answers before Envoy's own.
            "per_connection_buffer_limit_bytes": ENVOY_BUFFER_LIMIT_BYTES,
            "filter_chains": [{
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "require_client_certificate": true,
                        "common_tls_context": {
                            "tls_certificates": [{
                                "certificate_chain": {"filename": self.server_cert},
                                "private_key": {"filename": self.server_key},
                            }],
                            "validation_context": {
                                "trusted_ca": {"filename": self.client_ca},
                            },
                        },
                    },
                },
                "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": self.http_connection_manager(),
                }],
            }],
        })
    }

    /// The listener's HTTP connection manager.
    pub(crate) fn http_connection_manager(&self) -> Value {
        let mut filters = match &self.http_filters {
            HttpFilters::Tollgate => vec![self.wasm_filter()],
            HttpFilters::Custom(f) => f.clone(),
        };
        filters.push(router());
        let mut hcm = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "egress",
            "codec_type": "AUTO",
            "strip_any_host_port": true,
            // WebSocket upgrades reach the filter chain, so that Tollgate
            // refuses them with its reason (501 upgrade_not_supported) and
            // an audit record; without this Envoy answers a bare 403
            // `upgrade_failed` before any filter runs. (Istio's gateways
            // configure websocket upgrades already.)
            "upgrade_configs": [{"upgrade_type": "websocket"}],
            // A header name with an underscore (`x_api_key`) is refused with
            // 400 by the codec: some servers read it as `x-api-key`, and
            // Tollgate strips credential headers by their dashed names.
            "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
            // The request id is Envoy's, never the client's. Clients connect
            // directly, so the peer address is the real one. With
            // use_remote_address a request from an *internal* address keeps
            // its x-request-id, and which addresses are internal depends on
            // internal_address_config and the Envoy version (an explicit
            // config with no ranges makes loopback and RFC 1918 internal), so
            // the client's header is removed before Envoy's request-id logic
            // runs, and Envoy always generates one.
            "use_remote_address": true,
            "generate_request_id": true,
            "preserve_external_request_id": false,
            "early_header_mutation_extensions": [remove_request_id()],
            // Every refusal carries a reason: a local reply Envoy itself
            // makes before Tollgate runs (`OPTIONS *`, a codec error, an
            // upgrade it cannot route) gets Envoy's response-code details in
            // x-tollgate-reason; Tollgate's own replies keep their code.
            "local_reply_config": reason_on_local_replies(),
            // So a caller can quote the id that is in the audit record.
            "always_set_request_id_in_response": true,
            "route_config": self.routes(),
            "http_filters": filters,
        });
        match self.client_cert_details {
            // The filter never reads this header; sanitising it also keeps
            // a spoofed one from reaching upstream.
            ClientCertDetails::Sanitize => {
                hcm["forward_client_cert_details"] = json!("SANITIZE");
            }
            ClientCertDetails::SanitizeSetUri => {
                hcm["forward_client_cert_details"] = json!("SANITIZE_SET");
                hcm["set_current_client_cert_details"] = json!({"uri": true});
            }
        }
        if let Some(sink) = &self.access_log {
            hcm["access_log"] = json!([audit_access_log(sink)]);
        }
        hcm
    }

    /// Envoy's command-line options for this gateway: its workers, and the
    /// log levels every gateway we render runs with (`info`, which shows
    /// Tollgate's own log lines but no request headers; see README
    /// "Logging").
    pub fn envoy_options(
        &self,
        binary: PathBuf,
        config: PathBuf,
        work_dir: PathBuf,
    ) -> super::process::EnvoyOptions {
        let mut eo = super::process::EnvoyOptions::new(binary, config, work_dir);
        eo.concurrency = self.concurrency;
        if let Some(AccessLogSink::File(_)) = self.access_log {
            // Envoy flushes log files every 10 s by default; a local
            // gateway (and a test waiting for its line) wants them sooner.
            eo.extra_args
                .extend(["--file-flush-interval-msec".into(), "250".into()]);
        }
        eo
    }

    pub(crate) fn wasm_filter(&self) -> Value {
        json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": FILTER_NAME,
                    "root_id": FILTER_NAME,
                    "vm_config": {
                        "vm_id": FILTER_NAME,
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": self.wasm}},
                    },
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": self.policy_json,
                    },
                    // A VM that fails (a panic, a trap) must not let traffic
                    // through without the filter.
                    "failure_policy": "FAIL_CLOSED",
                    // Held body mode: headers stay held (editable) while
                    // the body is read and checked (README, "Bodies").
                    "allow_on_headers_stop_iteration": self.held_bodies,
                },
            },
        })
    }

    fn routes(&self) -> Value {
        let timeout = "300s"; // streamed completions can be long
        let vhosts: Vec<Value> = match &self.upstream {
            Upstream::Mock(_) => vec![json!({
                "name": "mock_llm",
                "domains": if self.mock_domains.is_empty() {
                    json!(["*"])
                } else {
                    json!(self.mock_domains)
                },
                "routes": [{"match": {"prefix": "/"},
                            "route": {"cluster": "mock_llm", "timeout": timeout}}],
            })],
            Upstream::Providers { .. } => PROVIDER_HOSTS
                .iter()
                .map(|(cluster, host)| {
                    json!({
                        "name": cluster,
                        "domains": [host],
                        "routes": [{"match": {"prefix": "/"},
                                    "route": {"cluster": cluster, "timeout": timeout}}],
                    })
                })
                .collect(),
        };
        json!({"name": "egress", "virtual_hosts": vhosts})
    }

    fn upstream_clusters(&self) -> Vec<Value> {
        match &self.upstream {
            Upstream::Mock(addr) => vec![plain_cluster("mock_llm", *addr)],
            Upstream::Providers { ca_bundle } => PROVIDER_HOSTS
                .iter()
                .map(|(name, host)| tls_cluster(name, host, ca_bundle))
                .collect(),
        }
    }
}

pub(crate) fn socket(ip: &str, port: u16) -> Value {
    json!({"socket_address": {"address": ip, "port_value": port}})
}

/// An early header mutation that removes a client-sent `x-request-id`
/// before the connection manager's request-id logic runs.
fn remove_request_id() -> Value {
    json!({
        "name": "envoy.http.early_header_mutation.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
            "mutations": [{"remove": "x-request-id"}],
        },
    })
}

/// The connection manager's `local_reply_config`: every local reply with a
/// status of 400 or more gets `x-tollgate-reason`, if it has none, holding
/// Envoy's response-code details (e.g. `absolute_path_rejected`).
pub fn reason_on_local_replies() -> Value {
    json!({"mappers": [{
        "filter": {"status_code_filter": {"comparison": {
            "op": "GE",
            "value": {"default_value": 400, "runtime_key": "tollgate.local_reply_reason_min_status"},
        }}},
        "headers_to_add": [{
            "header": {"key": "x-tollgate-reason", "value": "%RESPONSE_CODE_DETAILS%"},
            "append_action": "ADD_IF_ABSENT",
        }],
    }]})
}

/// The access logger writing [`AUDIT_LOG_FORMAT`] to `sink`.
fn audit_access_log(sink: &AccessLogSink) -> Value {
    let format = json!({"text_format_source": {"inline_string": AUDIT_LOG_FORMAT}});
    match sink {
        AccessLogSink::File(path) => json!({
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": path,
                "log_format": format,
            },
        }),
        AccessLogSink::Stdout => json!({
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": format,
            },
        }),
    }
}

pub(crate) fn router() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    })
}

pub(crate) fn plain_cluster(name: &str, addr: SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
                socket(&addr.ip().to_string(), addr.port())}}]}],
        },
    })
}

/// A plaintext HTTP/2 cluster (a gRPC service such as the rate-limit
/// service) at `addr`.
pub fn grpc_cluster(name: &str, addr: SocketAddr) -> Value {
    let mut c = plain_cluster(name, addr);
    c["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}
        }
    });
    c
}

fn tls_cluster(name: &str, host: &str, ca_bundle: &PathBuf) -> Value {
    json!({
        "name": name,
        "type": "LOGICAL_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(host, 443)}}]}],
        },
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": {"filename": ca_bundle},
                        "match_typed_subject_alt_names": [{
                            "san_type": "DNS",
                            "matcher": {"exact": host},
                        }],
                    },
                },
            },
        },
    })
}
