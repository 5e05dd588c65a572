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
//!   client-sent `x-forwarded-client-cert`, and strips host ports;
//! - the HTTP filter chain: Tollgate (`envoy.filters.http.wasm`, v8,
//!   fail-closed) then the router;
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
        let mut boot = json!({
            "node": {"id": "tollgate-local", "cluster": "tollgate"},
            "admin": {"address": socket("127.0.0.1", admin_port)},
            "static_resources": {"clusters": clusters},
        });
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
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "egress",
                        "codec_type": "AUTO",
                        "strip_any_host_port": true,
                        // The filter never reads this header; sanitising it
                        // also keeps a spoofed one from reaching upstream.
                        "forward_client_cert_details": "SANITIZE",
                        "route_config": self.routes(),
                        "http_filters": [self.wasm_filter(), router()],
                    },
                }],
            }],
        })
    }

    fn wasm_filter(&self) -> Value {
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
                },
            },
        })
    }

    fn routes(&self) -> Value {
        let timeout = "300s"; // streamed completions can be long
        let vhosts: Vec<Value> = match &self.upstream {
            Upstream::Mock(_) => vec![json!({
                "name": "mock_llm",
                "domains": ["*"],
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

fn socket(ip: &str, port: u16) -> Value {
    json!({"socket_address": {"address": ip, "port_value": port}})
}

fn router() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    })
}

fn plain_cluster(name: &str, addr: SocketAddr) -> Value {
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
