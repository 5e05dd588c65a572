//! The deployment files under `mesh-config/` are checked, not trusted.
//!
//! - Envoy: every `mesh-config/envoy/*.yaml` passes `envoy --mode validate`
//!   with each `/etc/tollgate/` path pointed at a real file: the built
//!   `tollgate.wasm` and a throwaway CA and gateway certificate made here
//!   with rcgen. Validation then really loads the TLS contexts and the
//!   module, and runs its `on_configure` on the inline policy. Negative
//!   controls: an unknown field and a broken inline policy both fail.
//! - Istio: every `mesh-config/istio/*.yaml` document parses and has
//!   `apiVersion`, `kind`, `metadata.name` and `metadata.namespace`. Each
//!   document of a kind with a schema vendored from Istio
//!   (`mesh-config/istio/schema/`) passes [`check_schema`], a structural
//!   validator that rejects unknown fields, wrong types, values outside an
//!   enum, missing required fields and pattern mismatches, with the path of
//!   each problem. Negative tests prove it fails on a misspelt field, a wrong
//!   type, a bad enum value and more.
//! - Policies: every WasmPlugin `pluginConfig` and every policy inline in an
//!   Envoy config passes `tollgate-harness check` (the real module in the
//!   harness); a broken one is rejected.
//! - Wiring: names that must agree across files do (the credential cluster
//!   is a real Service or cluster; every provider host is routed through the
//!   gateway with TLS on both hops), and the WasmPlugin cannot silently miss
//!   the gateway.
//! - The Vault / OpenBao agent (`vault-agent.yaml`, the alternative to
//!   the broker): the `credential_service` its header tells operators to
//!   use names the agent's Service port and passes `tollgate-harness check`
//!   in the shipped policy; only the egress gateway's principal may call
//!   it, only with GET on the KV mount's `data/` paths; its agent
//!   configuration proxies with a Kubernetes auto-auth token, on the port
//!   the Service targets, with the role, ServiceAccount and audience the
//!   Vault-side instructions set up.
//! - Edge and access log: every gateway configuration (Envoy HCMs and the
//!   Istio EnvoyFilter) refuses header names with underscores and makes
//!   Envoy generate the request id exactly as `GatewaySpec` renders it, and
//!   every access log (Envoy, Istio's mesh-config provider turned on by the
//!   Telemetry resource) writes `AUDIT_LOG_FORMAT`: the same settings the
//!   Envoy suites prove in a real Envoy.
//!
//! Envoy comes from `TOLLGATE_ENVOY`, else `<repo>/.venv/bin/envoy`
//! (`make venv`); the module from `TOLLGATE_WASM`, else the release build
//! (`make build`). A missing one fails the test: nothing here is skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{root, wasm};

// ---------------------------------------------------------------------------
// Locations and tools
// ---------------------------------------------------------------------------

fn envoy() -> PathBuf {
    let p = std::env::var_os("TOLLGATE_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/envoy"));
    assert!(
        p.exists(),
        "Envoy not found at {}: run `make venv` (or set TOLLGATE_ENVOY)",
        p.display()
    );
    p
}

/// A fresh scratch directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("tollgate-mesh-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    Scratch(dir)
}

/// `*.yaml` files directly in `dir` (not in subdirectories), sorted.
fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {dir}");
    files
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// Runs `cmd`, killing it after `limit`.
fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!("{cmd:?} still running after {limit:?}:\n{}", text_of(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `tollgate-harness check --wasm <wasm> <policy.json>`: (exit code, output).
fn harness_check(policy: &Value, dir: &Path, stem: &str) -> (i32, String) {
    let file = dir.join(format!("{stem}.json"));
    let text = serde_json::to_string_pretty(policy).expect("serialise policy");
    std::fs::write(&file, text).expect("write policy");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate-harness"));
    cmd.current_dir(root())
        .args(["check", "--wasm"])
        .arg(wasm())
        .arg(&file)
        .env_remove("TOLLGATE_KEYS_FILE");
    let out = run_with_timeout(cmd, Duration::from_secs(120));
    (out.status.code().unwrap_or(-1), text_of(&out))
}

// ---------------------------------------------------------------------------
// Envoy
// ---------------------------------------------------------------------------

/// Files that stand in for `/etc/tollgate/` during validation.
struct EtcTollgate {
    dir: Scratch,
}

impl EtcTollgate {
    /// The built module, and a CA (the "SPIFFE trust bundle") with a gateway
    /// certificate it signed. Throwaway: made fresh for each test.
    fn new(name: &str) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let dir = scratch(name);
        std::fs::create_dir_all(dir.join("certs")).expect("certs dir");
        std::fs::copy(wasm(), dir.join("tollgate.wasm")).expect("copy wasm");

        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, "mesh_config test trust bundle");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca, ca_key);

        let gw_key = KeyPair::generate().expect("gateway key");
        let mut gw =
            CertificateParams::new(vec!["tollgate-egress.test".to_string()]).expect("gw params");
        gw.distinguished_name
            .push(DnType::CommonName, "tollgate-egress.test");
        let gw_cert = gw.signed_by(&gw_key, &issuer).expect("gateway cert");

        let certs = dir.join("certs");
        std::fs::write(certs.join("spiffe-bundle.pem"), ca_cert.pem()).expect("bundle");
        std::fs::write(certs.join("gateway.crt"), gw_cert.pem()).expect("gateway.crt");
        std::fs::write(certs.join("gateway.key"), gw_key.serialize_pem()).expect("gateway.key");
        EtcTollgate { dir }
    }

    /// `config` with every `/etc/tollgate/` path pointed here.
    fn substitute(&self, config: &str) -> String {
        config.replace("/etc/tollgate/", &format!("{}/", self.dir.display()))
    }

    /// `envoy --mode validate` on `config` (already substituted).
    fn validate(&self, config: &str, stem: &str) -> (bool, String) {
        let file = self.dir.join(format!("{stem}.yaml"));
        std::fs::write(&file, config).expect("write config");
        let mut cmd = Command::new(envoy());
        cmd.args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "info",
            "-c",
        ])
        .arg(&file);
        let out = run_with_timeout(cmd, Duration::from_secs(120));
        (out.status.success(), text_of(&out))
    }
}

fn envoy_configs() -> Vec<(PathBuf, String)> {
    yaml_files("mesh-config/envoy")
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read Envoy config");
            (p, text)
        })
        .collect()
}

/// Every value in `v`, depth first (objects and arrays included).
fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Object(m) => m.values().for_each(|c| walk(c, out)),
        Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
        _ => {}
    }
}

fn objects_of_type<'a>(doc: &'a Value, type_url: &str) -> Vec<&'a Value> {
    let mut all = vec![];
    walk(doc, &mut all);
    all.into_iter()
        .filter(|v| v.get("@type").and_then(Value::as_str) == Some(type_url))
        .collect()
}

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// The Tollgate policies inline in an Envoy config: (filter name, policy).
fn inline_policies(config: &Value) -> Vec<(String, Value)> {
    objects_of_type(config, WASM_FILTER)
        .into_iter()
        .map(|w| {
            let name = w["config"]["name"].as_str().unwrap_or("?").to_string();
            let c = &w["config"]["configuration"];
            assert_eq!(
                c["@type"], "type.googleapis.com/google.protobuf.StringValue",
                "{name}: the policy is passed as a StringValue"
            );
            let text = c["value"].as_str().expect("policy text");
            let policy = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("{name}: inline policy is not JSON: {e}"));
            (name, policy)
        })
        .collect()
}

fn parse_yaml(text: &str, what: &str) -> Value {
    let y: serde_yaml::Value = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    serde_json::to_value(y).unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[test]
fn every_envoy_config_passes_envoy_validate_with_the_real_module_and_certificates() {
    let etc = EtcTollgate::new("validate");
    for (path, text) in envoy_configs() {
        assert!(
            text.contains("/etc/tollgate/"),
            "{}: expected its files under /etc/tollgate/",
            rel(&path)
        );
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("stem");
        let (ok, out) = etc.validate(&etc.substitute(&text), stem);
        assert!(ok, "{}: envoy --mode validate failed:\n{out}", rel(&path));
        assert!(out.contains("OK"), "{}: {out}", rel(&path));
        // Validation got as far as the module's on_configure.
        assert!(
            out.contains("tollgate: configured"),
            "{}: the module did not configure:\n{out}",
            rel(&path)
        );
    }
}

#[test]
fn envoy_validate_fails_on_an_unknown_field() {
    let etc = EtcTollgate::new("unknown-field");
    let (path, text) = envoy_configs().remove(0);
    let good = etc.substitute(&text);
    let bad = good.replacen("failure_policy:", "failure_polcy:", 1);
    assert_ne!(good, bad, "{}: no failure_policy to misspell", rel(&path));
    let (ok, out) = etc.validate(&bad, "unknown-field");
    assert!(!ok, "a misspelt field passed validation:\n{out}");
    assert!(out.contains("failure_polcy"), "{out}");
}

#[test]
fn envoy_validate_fails_on_a_policy_tollgate_rejects() {
    let etc = EtcTollgate::new("bad-policy");
    let (path, text) = envoy_configs().remove(0);
    let good = etc.substitute(&text);
    let bad = good.replacen(r#""mode": "enforce""#, r#""mode": "enforse""#, 1);
    assert_ne!(good, bad, "{}: no inline mode to break", rel(&path));
    let (ok, out) = etc.validate(&bad, "bad-policy");
    assert!(!ok, "a policy Tollgate rejects passed validation:\n{out}");
    assert!(
        out.contains("invalid configuration: mode"),
        "Tollgate's own error should be in Envoy's output:\n{out}"
    );
}

#[test]
fn every_policy_inline_in_an_envoy_config_passes_tollgate_check() {
    let dir = scratch("envoy-policies");
    let mut n = 0;
    for (path, text) in envoy_configs() {
        let config = parse_yaml(&text, &rel(&path));
        for (name, policy) in inline_policies(&config) {
            n += 1;
            let stem = format!("envoy-{n}-{name}");
            let (code, out) = harness_check(&policy, &dir, &stem);
            assert_eq!(code, 0, "{} ({name}): {out}", rel(&path));
            assert!(out.contains(": ok"), "{out}");
        }
    }
    assert!(n > 0, "no Tollgate filter found in mesh-config/envoy/");
}

#[test]
fn envoy_configs_are_wired_fail_closed_to_the_policy() {
    for (path, text) in envoy_configs() {
        let f = rel(&path);
        let config = parse_yaml(&text, &f);
        let clusters: BTreeSet<&str> = config["static_resources"]["clusters"]
            .as_array()
            .unwrap_or_else(|| panic!("{f}: no static clusters"))
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();

        for w in objects_of_type(&config, WASM_FILTER) {
            let c = &w["config"];
            assert_eq!(c["failure_policy"], "FAIL_CLOSED", "{f}");
            assert_eq!(c["vm_config"]["runtime"], "envoy.wasm.runtime.v8", "{f}");
        }

        let hcms = objects_of_type(
            &config,
            "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        );
        assert!(!hcms.is_empty(), "{f}: no http_connection_manager");
        for hcm in &hcms {
            assert_eq!(hcm["strip_any_host_port"], true, "{f}");
            assert_eq!(hcm["forward_client_cert_details"], "SANITIZE", "{f}");
            let filters: Vec<&str> = hcm["http_filters"]
                .as_array()
                .expect("http_filters")
                .iter()
                .filter_map(|h| h["name"].as_str())
                .collect();
            assert_eq!(
                filters.first(),
                Some(&"envoy.filters.http.wasm"),
                "{f}: Tollgate must run first"
            );
            assert_eq!(filters.last(), Some(&"envoy.filters.http.router"), "{f}");
        }
        for tls in objects_of_type(
            &config,
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        ) {
            assert_eq!(tls["require_client_certificate"], true, "{f}");
        }

        let vhosts: Vec<Value> = hcms
            .iter()
            .flat_map(|h| {
                h["route_config"]["virtual_hosts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        for (_, policy) in inline_policies(&config) {
            let cred = policy["credential_service"]["cluster"]
                .as_str()
                .expect("cluster");
            assert!(
                clusters.contains(cred),
                "{f}: credential_service.cluster {cred:?} is not a cluster ({clusters:?})"
            );
            for host in provider_hosts(&policy) {
                let vh = vhosts
                    .iter()
                    .find(|v| {
                        v["domains"]
                            .as_array()
                            .is_some_and(|d| d.contains(&json!(host)))
                    })
                    .unwrap_or_else(|| panic!("{f}: no virtual host for {host}"));
                let cluster = vh["routes"][0]["route"]["cluster"]
                    .as_str()
                    .expect("route cluster");
                let def = config["static_resources"]["clusters"]
                    .as_array()
                    .expect("clusters")
                    .iter()
                    .find(|c| c["name"] == cluster)
                    .unwrap_or_else(|| panic!("{f}: {host} routes to missing cluster {cluster}"));
                let up = &def["transport_socket"]["typed_config"];
                assert_eq!(
                    up["@type"],
                    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "{f}: {host} without TLS origination"
                );
                assert_eq!(up["sni"], host, "{f}: SNI for {host}");
            }
        }
    }
}

fn provider_hosts(policy: &Value) -> Vec<String> {
    policy["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .flat_map(|p| p["hosts"].as_array().cloned().unwrap_or_default())
        .map(|h| h.as_str().expect("host").to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Istio manifests
// ---------------------------------------------------------------------------

/// One document of a multi-document manifest file.
struct Doc {
    file: String,
    index: usize,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }
    fn api_version(&self) -> &str {
        self.value["apiVersion"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
    fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"].as_str().unwrap_or("")
    }
    fn label(&self) -> String {
        format!(
            "{}#{} {}/{}",
            self.file,
            self.index,
            self.kind(),
            self.name()
        )
    }
}

fn istio_docs() -> Vec<Doc> {
    let mut docs = vec![];
    for path in yaml_files("mesh-config/istio") {
        let file = rel(&path);
        let text = std::fs::read_to_string(&path).expect("read manifest");
        for (index, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let y = <serde_yaml::Value as serde::Deserialize>::deserialize(de)
                .unwrap_or_else(|e| panic!("{file}#{index}: {e}"));
            let value = serde_json::to_value(y).unwrap_or_else(|e| panic!("{file}#{index}: {e}"));
            docs.push(Doc {
                file: file.clone(),
                index,
                value,
            });
        }
    }
    docs
}

fn docs_of<'a>(docs: &'a [Doc], kind: &str) -> Vec<&'a Doc> {
    docs.iter().filter(|d| d.kind() == kind).collect()
}

/// Kinds with a schema vendored from Istio: (apiVersion, kind, file in
/// `mesh-config/istio/schema/`), each the CRD's `spec` schema.
///
/// The last three are not vendored but written here from Istio's API
/// reference, covering the subset of fields the manifests use (each file's
/// header says so); they are checked by the same validator, so a misspelt or
/// unexpected field still fails.
const SCHEMAS: [(&str, &str, &str); 7] = [
    (
        "extensions.istio.io/v1alpha1",
        "WasmPlugin",
        "wasmplugin.v1alpha1.yaml",
    ),
    ("networking.istio.io/v1", "Gateway", "gateway.v1.yaml"),
    (
        "networking.istio.io/v1",
        "ServiceEntry",
        "serviceentry.v1.yaml",
    ),
    (
        "security.istio.io/v1",
        "PeerAuthentication",
        "peerauthentication.v1.yaml",
    ),
    (
        "networking.istio.io/v1alpha3",
        "EnvoyFilter",
        "envoyfilter.v1alpha3.yaml",
    ),
    ("telemetry.istio.io/v1", "Telemetry", "telemetry.v1.yaml"),
    (
        "install.istio.io/v1alpha1",
        "IstioOperator",
        "istiooperator.v1alpha1.yaml",
    ),
];

/// Kinds shipped without a vendored schema: Istio's DestinationRule and
/// VirtualService schemas are ~100 KB each per version, too large to vendor
/// by hand; the others are core Kubernetes or small. They get the document
/// checks and the wiring tests below.
const WITHOUT_SCHEMA: [(&str, &str); 8] = [
    ("networking.istio.io/v1", "DestinationRule"),
    ("networking.istio.io/v1", "VirtualService"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
    ("v1", "Service"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    // vault-agent.yaml: the agent's identity, configuration and pods.
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("apps/v1", "Deployment"),
];

fn schema_for(api_version: &str, kind: &str) -> Option<Value> {
    let (_, _, file) = SCHEMAS
        .iter()
        .find(|(a, k, _)| *a == api_version && *k == kind)?;
    let path = root().join("mesh-config/istio/schema").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", rel(&path)));
    Some(parse_yaml(&text, &rel(&path)))
}

/// The envelope every document must have; `spec` is checked separately. A
/// ConfigMap has no `spec` but `data`, a map of strings.
fn envelope_schema(kind: &str) -> Value {
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let mut envelope = json!({
        "type": "object",
        "required": ["apiVersion", "kind", "metadata"],
        "properties": {
            "apiVersion": {"type": "string", "minLength": 1},
            "kind": {"type": "string", "minLength": 1},
            "metadata": {
                "type": "object",
                "required": ["name", "namespace"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 253},
                    "namespace": {"type": "string", "minLength": 1, "maxLength": 63},
                    "labels": string_map,
                    "annotations": string_map,
                },
            },
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
    });
    if kind == "ConfigMap" {
        let properties = envelope["properties"].as_object_mut().expect("properties");
        properties.remove("spec");
        properties.insert("data".to_string(), string_map);
    }
    envelope
}

/// Every problem with one document: envelope, kind, and `spec` against its
/// vendored schema.
fn check_doc(doc: &Doc) -> Vec<String> {
    let mut errs = vec![];
    check_schema(&envelope_schema(doc.kind()), &doc.value, "", &mut errs);
    let (api, kind) = (doc.api_version(), doc.kind());
    if let Some(schema) = schema_for(api, kind) {
        check_schema(&schema, &doc.value["spec"], "spec", &mut errs);
    } else if !WITHOUT_SCHEMA.contains(&(api, kind)) {
        errs.push(format!("{api} {kind}: not a kind this repository expects"));
    }
    errs
}

#[test]
fn every_istio_manifest_parses_and_matches_its_schema() {
    let docs = istio_docs();
    let mut errs = vec![];
    for doc in &docs {
        errs.extend(
            check_doc(doc)
                .into_iter()
                .map(|e| format!("{}: {e}", doc.label())),
        );
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    // Every vendored schema was used, so none of them is dead weight.
    for (_, kind, file) in SCHEMAS {
        assert!(
            !docs_of(&docs, kind).is_empty(),
            "{file}: no {kind} to check"
        );
    }
}

// ---------------------------------------------------------------------------
// The structural validator
// ---------------------------------------------------------------------------

/// Schema keywords with no effect on this check: documentation, CEL rules
/// (evaluated by the API server, not here) and list/map merge hints.
const IGNORED_KEYWORDS: [&str; 8] = [
    "description",
    "format",
    "x-kubernetes-validations",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "title",
    "default",
];

const CHECKED_KEYWORDS: [&str; 22] = [
    "type",
    "properties",
    "additionalProperties",
    "required",
    "enum",
    "items",
    "nullable",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
];

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Checks `value` against an OpenAPI v3 structural schema the way the
/// Kubernetes API server treats a custom resource under
/// `kubectl apply --validate=strict`: a field the schema does not declare is
/// an error (not silently pruned). Supports type (object, array, string,
/// integer, number, boolean), properties, additionalProperties, required,
/// enum, items, nullable, pattern, length/size/range bounds, oneOf, anyOf,
/// allOf, not, x-kubernetes-preserve-unknown-fields and
/// x-kubernetes-int-or-string. A keyword it does not know is itself an
/// error, so a newer schema cannot be under-checked without notice.
///
/// Each message starts with the path of the offending value
/// (`spec.match[0].ports[0].number: ...`).
fn check_schema(schema: &Value, value: &Value, path: &str, errs: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        errs.push(format!("{path}: schema is not an object"));
        return;
    };
    let at = if path.is_empty() { "(document)" } else { path };
    for k in s.keys() {
        if !CHECKED_KEYWORDS.contains(&k.as_str()) && !IGNORED_KEYWORDS.contains(&k.as_str()) {
            errs.push(format!(
                "{at}: schema keyword {k:?} is not supported by this validator"
            ));
        }
    }

    if value.is_null() {
        if s.get("nullable") != Some(&Value::Bool(true)) && s.contains_key("type") {
            errs.push(format!("{at}: null is not allowed"));
        }
        return;
    }

    let int_or_string = s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if int_or_string {
        if !matches!(type_name(value), "integer" | "string") {
            errs.push(format!(
                "{at}: expected integer or string, got {}",
                type_name(value)
            ));
        }
    } else if let Some(t) = s.get("type").and_then(Value::as_str) {
        let got = type_name(value);
        let ok = got == t || (t == "number" && got == "integer");
        if !ok {
            errs.push(format!("{at}: expected {t}, got {got}"));
            return;
        }
    }

    if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            errs.push(format!("{at}: {value} is not one of [{}]", list.join(", ")));
        }
    }

    match value {
        Value::Object(map) => {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties");
            let preserve =
                s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            // Only a structural node (one with a type) declares the complete
            // set of fields; oneOf/anyOf branches merely add constraints.
            let closed = s.contains_key("type") && !preserve;
            for (k, v) in map {
                let p = child(path, k);
                if let Some(sub) = props.and_then(|pr| pr.get(k)) {
                    check_schema(sub, v, &p, errs);
                } else if let Some(sub) = additional.filter(|a| a.is_object()) {
                    check_schema(sub, v, &p, errs);
                } else if closed && additional != Some(&Value::Bool(true)) {
                    errs.push(format!("{p}: unknown field"));
                }
            }
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap_or_default();
                if !map.contains_key(r) {
                    errs.push(format!("{at}: missing required field {r:?}"));
                }
            }
            bound(
                s,
                "minProperties",
                "maxProperties",
                map.len(),
                "properties",
                at,
                errs,
            );
        }
        Value::Array(items) => {
            if let Some(sub) = s.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check_schema(sub, v, &format!("{path}[{i}]"), errs);
                }
            }
            bound(s, "minItems", "maxItems", items.len(), "items", at, errs);
        }
        Value::String(text) => {
            bound(
                s,
                "minLength",
                "maxLength",
                text.chars().count(),
                "characters",
                at,
                errs,
            );
            if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if re.is_match(text) => {}
                    Ok(_) => errs.push(format!("{at}: {value} does not match pattern {pattern:?}")),
                    Err(e) => errs.push(format!("{at}: schema pattern {pattern:?}: {e}")),
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
                if x < min {
                    errs.push(format!("{at}: {n} is below the minimum {min}"));
                }
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
                if x > max {
                    errs.push(format!("{at}: {n} is above the maximum {max}"));
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }

    // Combinators: each branch is checked on its own, quietly.
    let passes = |sub: &Value| {
        let mut scratch = vec![];
        check_schema(sub, value, path, &mut scratch);
        scratch.is_empty()
    };
    if let Some(branches) = s.get("oneOf").and_then(Value::as_array) {
        let n = branches.iter().filter(|b| passes(b)).count();
        if n != 1 {
            errs.push(format!(
                "{at}: matches {n} of the oneOf alternatives, expected exactly 1"
            ));
        }
    }
    if let Some(branches) = s.get("anyOf").and_then(Value::as_array) {
        if !branches.iter().any(passes) {
            errs.push(format!("{at}: matches none of the anyOf alternatives"));
        }
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        check_schema(sub, value, path, errs);
    }
    if let Some(sub) = s.get("not") {
        if passes(sub) {
            errs.push(format!("{at}: matches a schema it must not match"));
        }
    }
}

fn bound(
    s: &serde_json::Map<String, Value>,
    min_key: &str,
    max_key: &str,
    n: usize,
    unit: &str,
    at: &str,
    errs: &mut Vec<String>,
) {
    let n = n as u64;
    if let Some(min) = s.get(min_key).and_then(Value::as_u64) {
        if n < min {
            errs.push(format!("{at}: {n} {unit}, fewer than {min_key} {min}"));
        }
    }
    if let Some(max) = s.get(max_key).and_then(Value::as_u64) {
        if n > max {
            errs.push(format!("{at}: {n} {unit}, more than {max_key} {max}"));
        }
    }
}

/// The one document of `kind` in the shipped manifests, as a mutable copy.
fn shipped(kind: &str) -> Doc {
    let mut docs = istio_docs();
    let i = docs
        .iter()
        .position(|d| d.kind() == kind)
        .unwrap_or_else(|| panic!("no {kind} in mesh-config/istio"));
    docs.swap_remove(i)
}

/// Applies `mutate` to a copy of the shipped document of `kind` and returns
/// the validator's complaints.
fn complaints(kind: &str, mutate: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut doc = shipped(kind);
    mutate(&mut doc.value);
    check_doc(&doc)
}

fn assert_rejected(kind: &str, mutate: impl FnOnce(&mut Value), expected: &str) {
    let errs = complaints(kind, mutate);
    assert!(
        errs.iter().any(|e| e.contains(expected)),
        "{kind}: expected a complaint containing {expected:?}, got {errs:#?}"
    );
}

fn spec(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    v["spec"].as_object_mut().expect("spec")
}

#[test]
fn the_shipped_documents_used_by_the_negative_tests_are_valid() {
    for (_, kind, _) in SCHEMAS {
        let errs = complaints(kind, |_| {});
        assert!(errs.is_empty(), "{kind}: {errs:#?}");
    }
}

#[test]
fn a_misspelt_field_is_rejected_with_its_path() {
    assert_rejected(
        "WasmPlugin",
        |v| {
            let s = spec(v);
            let x = s.remove("failStrategy").expect("failStrategy");
            s.insert("failStratgy".into(), x);
        },
        "spec.failStratgy: unknown field",
    );
    assert_rejected(
        "Gateway",
        |v| {
            let port = v["spec"]["servers"][0]["port"]
                .as_object_mut()
                .expect("port");
            let x = port.remove("number").expect("number");
            port.insert("nmber".into(), x);
        },
        "spec.servers[0].port.nmber: unknown field",
    );
    // ...and the field it replaced is then missing.
    assert_rejected(
        "Gateway",
        |v| {
            v["spec"]["servers"][0]["port"]
                .as_object_mut()
                .expect("port")
                .remove("number");
        },
        "spec.servers[0].port: missing required field \"number\"",
    );
    assert_rejected(
        "WasmPlugin",
        |v| {
            v["metadata"]["nmespace"] = json!("istio-egress");
        },
        "metadata.nmespace: unknown field",
    );
}

#[test]
fn a_wrong_type_is_rejected_with_its_path() {
    assert_rejected(
        "WasmPlugin",
        |v| {
            spec(v).insert("priority".into(), json!("high"));
        },
        "spec.priority: expected integer, got string",
    );
    assert_rejected(
        "WasmPlugin",
        |v| {
            spec(v).insert(
                "match".into(),
                json!([{"mode": "CLIENT", "ports": [{"number": "8080"}]}]),
            );
        },
        "spec.match[0].ports[0].number: expected integer, got string",
    );
    assert_rejected(
        "WasmPlugin",
        |v| {
            spec(v).insert("pluginConfig".into(), json!("mode: enforce"));
        },
        "spec.pluginConfig: expected object, got string",
    );
    assert_rejected(
        "ServiceEntry",
        |v| {
            spec(v).insert("hosts".into(), json!("api.openai.com"));
        },
        "spec.hosts: expected array, got string",
    );
}

#[test]
fn a_value_outside_its_enum_is_rejected() {
    assert_rejected(
        "WasmPlugin",
        |v| {
            spec(v).insert("phase".into(), json!("AUTHORIZE"));
        },
        "spec.phase: \"AUTHORIZE\" is not one of",
    );
    assert_rejected(
        "WasmPlugin",
        |v| {
            spec(v).insert("failStrategy".into(), json!("FAIL_CLOSED"));
        },
        "spec.failStrategy: \"FAIL_CLOSED\" is not one of",
    );
    assert_rejected(
        "Gateway",
        |v| {
            v["spec"]["servers"][0]["tls"]["mode"] = json!("MUTUAL_ISTIO");
        },
        "spec.servers[0].tls.mode: \"MUTUAL_ISTIO\" is not one of",
    );
    assert_rejected(
        "PeerAuthentication",
        |v| {
            v["spec"]["mtls"]["mode"] = json!("strict");
        },
        "spec.mtls.mode: \"strict\" is not one of",
    );
}

#[test]
fn missing_fields_patterns_and_bounds_are_enforced() {
    assert_rejected(
        "WasmPlugin",
        |v| {
            spec(v).remove("url");
        },
        "spec: missing required field \"url\"",
    );
    assert_rejected(
        "WasmPlugin",
        |v| {
            spec(v).insert("sha256".into(), json!("sha256:0123"));
        },
        "spec.sha256: \"sha256:0123\" does not match pattern",
    );
    assert_rejected(
        "WasmPlugin",
        |v| {
            spec(v).insert("match".into(), json!([{"ports": [{"number": 70000}]}]));
        },
        "spec.match[0].ports[0].number: 70000 is above the maximum",
    );
    assert_rejected(
        "ServiceEntry",
        |v| {
            spec(v).insert("hosts".into(), json!([]));
        },
        "spec.hosts: 0 items, fewer than minItems 1",
    );
    assert_rejected(
        "Gateway",
        |v| {
            v["apiVersion"] = json!("networking.istio.io/v1beta2");
        },
        "networking.istio.io/v1beta2 Gateway: not a kind this repository expects",
    );
}

#[test]
fn combinators_and_unknown_keywords_behave() {
    let one_of = json!({
        "type": "object",
        "properties": {"simple": {"type": "string"}, "consistentHash": {"type": "object"}},
        "oneOf": [
            {"not": {"anyOf": [{"required": ["simple"]}, {"required": ["consistentHash"]}]}},
            {"required": ["simple"]},
            {"required": ["consistentHash"]},
        ],
    });
    let run = |schema: &Value, v: Value| {
        let mut errs = vec![];
        check_schema(schema, &v, "lb", &mut errs);
        errs
    };
    assert!(run(&one_of, json!({})).is_empty());
    assert!(run(&one_of, json!({"simple": "ROUND_ROBIN"})).is_empty());
    let both = run(&one_of, json!({"simple": "RANDOM", "consistentHash": {}}));
    assert!(both.iter().any(|e| e.contains("oneOf")), "{both:#?}");

    let newer = json!({"type": "string", "x-kubernetes-new-thing": true});
    let errs = run(&newer, json!("x"));
    assert!(
        errs.iter()
            .any(|e| e.contains("not supported by this validator")),
        "{errs:#?}"
    );
}

// ---------------------------------------------------------------------------
// Policies and wiring in the Istio manifests
// ---------------------------------------------------------------------------

fn the_wasmplugin(docs: &[Doc]) -> &Doc {
    let plugins = docs_of(docs, "WasmPlugin");
    assert_eq!(plugins.len(), 1, "expected exactly one WasmPlugin");
    plugins[0]
}

#[test]
fn every_wasmplugin_plugin_config_passes_tollgate_check() {
    let dir = scratch("plugin-configs");
    let docs = istio_docs();
    let plugins = docs_of(&docs, "WasmPlugin");
    assert!(!plugins.is_empty());
    for (i, doc) in plugins.iter().enumerate() {
        let policy = &doc.value["spec"]["pluginConfig"];
        assert!(policy.is_object(), "{}: no pluginConfig", doc.label());
        let (code, out) = harness_check(policy, &dir, &format!("wasmplugin-{i}"));
        assert_eq!(code, 0, "{}: {out}", doc.label());
        assert!(out.contains(": ok"), "{out}");
    }
}

#[test]
fn a_broken_plugin_config_fails_tollgate_check() {
    let dir = scratch("broken-plugin-config");
    let docs = istio_docs();
    let mut policy = the_wasmplugin(&docs).value["spec"]["pluginConfig"].clone();
    policy["rules"][0]["workloads"][0] = json!("spiffe://cluster.local/ns/support/");
    let (code, out) = harness_check(&policy, &dir, "broken");
    assert_ne!(code, 0, "a broken policy passed: {out}");
    assert!(
        out.contains("rejected") && out.contains("rules[0].workloads[0]"),
        "{out}"
    );
}

#[test]
fn the_wasmplugin_fails_closed_and_cannot_miss_the_egress_gateway() {
    let docs = istio_docs();
    let wp = the_wasmplugin(&docs);
    let s = &wp.value["spec"];
    let f = wp.label();
    assert_eq!(s["failStrategy"], "FAIL_CLOSE", "{f}");
    assert_eq!(s["phase"], "AUTHZ", "{f}");
    assert_eq!(
        s["selector"]["matchLabels"]["istio"], "egressgateway",
        "{f}"
    );
    let url = s["url"].as_str().expect("url");
    assert!(
        url.starts_with("oci://") || url.starts_with("file://"),
        "{f}: url {url}"
    );
    // Istio classifies gateway listeners as CLIENT and, in the source we
    // read, matches them without a port: a SERVER mode or a port selector
    // would leave the gateway without Tollgate, i.e. fail open.
    for (i, m) in s["match"].as_array().into_iter().flatten().enumerate() {
        assert_ne!(
            m["mode"], "SERVER",
            "{f}: match[{i}].mode SERVER never attaches to a gateway"
        );
        assert!(
            m.get("ports").is_none(),
            "{f}: match[{i}].ports can miss gateway listeners"
        );
    }
    // The gateway it selects is the one the Gateway resource uses.
    let gateways = docs_of(&docs, "Gateway");
    assert!(gateways.iter().any(
        |g| g.value["spec"]["selector"] == s["selector"]["matchLabels"]
            && g.namespace() == wp.namespace()
    ));
}

/// `outbound|8200||svc.ns.svc.cluster.local` -> (8200, svc, ns).
fn istio_cluster(name: &str) -> Option<(u64, String, String)> {
    let mut parts = name.split('|');
    let (dir, port, subset, fqdn) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if dir != "outbound" || !subset.is_empty() || parts.next().is_some() {
        return None;
    }
    let host = fqdn.strip_suffix(".svc.cluster.local")?;
    let (svc, ns) = host.split_once('.')?;
    Some((port.parse().ok()?, svc.to_string(), ns.to_string()))
}

/// The Service port an Istio cluster name (`outbound|<port>||<FQDN>`)
/// stands for: (the Service document, the port entry, its namespace).
fn service_port_of<'d>(docs: &'d [Doc], cluster: &str) -> (&'d Doc, Value, String) {
    let (port, svc, ns) = istio_cluster(cluster).unwrap_or_else(|| {
        panic!("{cluster:?} is not outbound|<port>||<svc>.<ns>.svc.cluster.local")
    });
    let service = docs_of(docs, "Service")
        .into_iter()
        .find(|d| d.name() == svc && d.namespace() == ns)
        .unwrap_or_else(|| panic!("no Service {ns}/{svc} for {cluster}"));
    let p = service.value["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["port"] == port)
        .cloned()
        .unwrap_or_else(|| panic!("Service {ns}/{svc} has no port {port}"));
    (service, p, ns)
}

#[test]
fn the_credential_cluster_is_a_real_service_port() {
    let docs = istio_docs();
    let wp = the_wasmplugin(&docs);
    let cs = &wp.value["spec"]["pluginConfig"]["credential_service"];
    let cluster = cs["cluster"].as_str().expect("cluster");
    let (service, p, ns) = service_port_of(&docs, cluster);
    assert!(
        p["name"].as_str().is_some_and(|n| n.starts_with("http")) || p["appProtocol"] == "http",
        "the credential port must be declared HTTP for Istio"
    );
    let authority = cs["authority"].as_str().expect("authority");
    assert!(
        authority.starts_with(&format!("{}.{ns}", service.name())),
        "{authority}"
    );
}

/// Global budgets: the rate-limit cluster is a Service port declared gRPC
/// (HTTP/2 for Istio), only the gateway may call it, and the gateway's
/// NetworkPolicy lets it out to that port.
#[test]
fn the_rate_limit_cluster_is_a_real_grpc_service_port_open_to_the_gateway_only() {
    let docs = istio_docs();
    let wp = the_wasmplugin(&docs);
    let config = &wp.value["spec"]["pluginConfig"];
    let budgets = config["budgets"].as_array().expect("budgets");
    assert!(
        budgets.iter().any(|b| b["tier"] == "global"),
        "the shipped policy shows a global budget"
    );
    let cluster = config["rate_limit_service"]["cluster"]
        .as_str()
        .expect("rate_limit_service.cluster");
    let (service, p, ns) = service_port_of(&docs, cluster);
    assert!(
        p["name"].as_str().is_some_and(|n| n.starts_with("grpc")) && p["appProtocol"] == "grpc",
        "the rate-limit port must be declared gRPC for Istio (HTTP/2)"
    );
    let policy = docs_of(&docs, "AuthorizationPolicy")
        .into_iter()
        .find(|d| d.file.ends_with("ratelimit-service.yaml"))
        .expect("the rate-limit service's AuthorizationPolicy");
    assert_eq!(policy.namespace(), ns);
    let selector = &service.value["spec"]["selector"];
    assert_eq!(&policy.value["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(
        policy.value["spec"]["rules"][0]["to"],
        json!([{"operation": {"methods": ["POST"],
            "paths": ["/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"]}}])
    );
    let target = p["targetPort"].clone();
    let gateway_out = docs_of(&docs, "NetworkPolicy")
        .into_iter()
        .find(|d| d.name() == "egress-gateway")
        .expect("the gateway's NetworkPolicy");
    let egress = gateway_out.value["spec"]["egress"]
        .as_array()
        .expect("egress");
    assert!(
        egress
            .iter()
            .any(|e| e["to"][0]["podSelector"]["matchLabels"] == *selector
                && e["ports"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|x| x["port"] == target))),
        "the gateway may connect to the rate-limit pods on {target}"
    );
}

#[test]
fn every_provider_host_goes_through_the_gateway_with_tls_on_both_hops() {
    let docs = istio_docs();
    let wp = the_wasmplugin(&docs);
    let hosts = provider_hosts(&wp.value["spec"]["pluginConfig"]);
    let gw = docs_of(&docs, "Gateway")[0];
    let gw_ns = gw.namespace();
    let gw_service = format!("istio-egressgateway.{gw_ns}.svc.cluster.local");
    let dr = |host: &str| {
        docs_of(&docs, "DestinationRule")
            .into_iter()
            .find(|d| d.value["spec"]["host"] == host)
            .unwrap_or_else(|| panic!("no DestinationRule for {host}"))
    };
    let to_gateway = dr(&gw_service);

    for host in &hosts {
        let h = json!(host);
        // Registered, with the in-mesh HTTP port and the real HTTPS port.
        let se = docs_of(&docs, "ServiceEntry")
            .into_iter()
            .find(|d| {
                d.value["spec"]["hosts"]
                    .as_array()
                    .is_some_and(|a| a.contains(&h))
            })
            .unwrap_or_else(|| panic!("{host}: no ServiceEntry"));
        let se_ports: Vec<(&Value, &Value)> = se.value["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| (&p["number"], &p["protocol"]))
            .collect();
        assert!(
            se_ports.contains(&(&json!(80), &json!("HTTP"))),
            "{host}: {se_ports:?}"
        );
        assert!(
            se_ports.contains(&(&json!(443), &json!("HTTPS"))),
            "{host}: {se_ports:?}"
        );

        // The gateway serves it over Istio mTLS (that is where the identity
        // comes from).
        let server = gw.value["spec"]["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .find(|s| s["hosts"].as_array().is_some_and(|a| a.contains(&h)))
            .unwrap_or_else(|| panic!("{host}: not on the Gateway"));
        assert_eq!(server["tls"]["mode"], "ISTIO_MUTUAL", "{host}");
        let gw_port = &server["port"]["number"];

        // Hop 1: mesh -> gateway, through a subset with ISTIO_MUTUAL and the
        // provider's SNI. Hop 2: gateway -> provider on 443.
        let vs = docs_of(&docs, "VirtualService")
            .into_iter()
            .find(|d| d.value["spec"]["hosts"] == json!([host]))
            .unwrap_or_else(|| panic!("{host}: no VirtualService"));
        let routes = vs.value["spec"]["http"].as_array().expect("http routes");
        let hop = |gateway: &str| {
            routes
                .iter()
                .find(|r| r["match"][0]["gateways"] == json!([gateway]))
                .unwrap_or_else(|| panic!("{host}: no route for gateway {gateway}"))
        };
        let first = &hop("mesh")["route"][0]["destination"];
        assert_eq!(first["host"], json!(gw_service), "{host}");
        assert_eq!(&first["port"]["number"], gw_port, "{host}");
        let subset = first["subset"].as_str().expect("subset");
        let sub = to_gateway.value["spec"]["subsets"]
            .as_array()
            .expect("subsets")
            .iter()
            .find(|s| s["name"] == subset)
            .unwrap_or_else(|| panic!("{host}: no subset {subset}"));
        let tls = &sub["trafficPolicy"]["portLevelSettings"][0];
        assert_eq!(&tls["port"]["number"], gw_port, "{host}");
        assert_eq!(tls["tls"]["mode"], "ISTIO_MUTUAL", "{host}");
        assert_eq!(tls["tls"]["sni"], h, "{host}");

        let gw_name = gw.name();
        let second = &hop(gw_name)["route"][0]["destination"];
        assert_eq!(second["host"], h, "{host}");
        assert_eq!(second["port"]["number"], 443, "{host}");
        let origin = &dr(host).value["spec"]["trafficPolicy"]["portLevelSettings"][0];
        assert_eq!(origin["port"]["number"], 443, "{host}");
        assert_eq!(origin["tls"]["mode"], "SIMPLE", "{host}");
        assert_eq!(origin["tls"]["sni"], h, "{host}");
    }
}

// ---------------------------------------------------------------------------
// Edge behaviour and the access log: the shipped files carry what the Envoy
// suites prove in a real Envoy (tests/tests/envoy_edge.rs,
// tests/tests/envoy_access_log.rs), which runs GatewaySpec's rendering.
// ---------------------------------------------------------------------------

/// The HTTP connection manager `GatewaySpec` renders for `make run` and the
/// Envoy suites (rendering is pure; the paths are never read).
fn rendered_hcm() -> Value {
    use tollgate_harness::envoy::{GatewaySpec, Upstream};
    let p = PathBuf::from("/nonexistent");
    let spec = GatewaySpec::tollgate(
        "127.0.0.1:1".parse().expect("addr"),
        p.clone(),
        "{}".into(),
        p.clone(),
        p.clone(),
        p,
        "creds".into(),
        "127.0.0.1:2".parse().expect("addr"),
        Upstream::Mock("127.0.0.1:3".parse().expect("addr")),
    );
    spec.listener()["filter_chains"][0]["filters"][0]["typed_config"].clone()
}

/// The HCM fields that make the edge behaviour: underscores refused, the
/// request id always Envoy's.
const EDGE_FIELDS: [&str; 6] = [
    "local_reply_config",
    "use_remote_address",
    "generate_request_id",
    "preserve_external_request_id",
    "always_set_request_id_in_response",
    "early_header_mutation_extensions",
];

fn assert_edge_fields(hcm: &Value, what: &str) {
    let want = rendered_hcm();
    assert_eq!(
        hcm["common_http_protocol_options"]["headers_with_underscores_action"], "REJECT_REQUEST",
        "{what}"
    );
    for field in EDGE_FIELDS {
        assert_eq!(hcm[field], want[field], "{what}: {field}");
    }
    assert_eq!(
        want["early_header_mutation_extensions"][0]["typed_config"]["mutations"],
        json!([{"remove": "x-request-id"}])
    );
}

#[test]
fn every_gateway_refuses_underscore_headers_and_generates_its_own_request_ids() {
    for (path, text) in envoy_configs() {
        let f = rel(&path);
        let config = parse_yaml(&text, &f);
        let hcms = objects_of_type(
            &config,
            "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        );
        assert!(!hcms.is_empty(), "{f}");
        for hcm in hcms {
            assert_edge_fields(hcm, &f);
            // Upgrades reach Tollgate, which refuses them with a reason
            // (Istio's gateways configure websocket upgrades themselves).
            assert_eq!(
                hcm["upgrade_configs"],
                rendered_hcm()["upgrade_configs"],
                "{f}"
            );
        }
    }
    let docs = istio_docs();
    let filters = docs_of(&docs, "EnvoyFilter");
    let ef = filters
        .iter()
        .find(|d| {
            d.value["spec"]["configPatches"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| {
                    p["applyTo"] == "NETWORK_FILTER"
                        && p["match"]["listener"]["filterChain"]["filter"]["name"]
                            == "envoy.filters.network.http_connection_manager"
                })
        })
        .expect("an EnvoyFilter patching the gateway's HTTP connection manager");
    let f = ef.label();
    assert_eq!(ef.namespace(), "istio-egress", "{f}");
    assert_eq!(
        ef.value["spec"]["workloadSelector"]["labels"]["istio"], "egressgateway",
        "{f}"
    );
    let patch = &ef.value["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "NETWORK_FILTER", "{f}");
    assert_eq!(patch["match"]["context"], "GATEWAY", "{f}");
    assert_eq!(patch["patch"]["operation"], "MERGE", "{f}");
    let value = &patch["patch"]["value"]["typed_config"];
    assert_eq!(
        value["@type"],
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "{f}"
    );
    assert_edge_fields(value, &f);
}

#[test]
fn every_access_log_writes_the_audit_format_proven_in_envoy() {
    use tollgate_harness::envoy::AUDIT_LOG_FORMAT;
    // Plain Envoy: the connection manager's access log.
    for (path, text) in envoy_configs() {
        let f = rel(&path);
        let config = parse_yaml(&text, &f);
        let hcm = &objects_of_type(
            &config,
            "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        )[0];
        let logs = hcm["access_log"].as_array().expect("access_log");
        assert_eq!(logs.len(), 1, "{f}");
        assert_eq!(
            logs[0]["typed_config"]["log_format"]["text_format_source"]["inline_string"],
            AUDIT_LOG_FORMAT,
            "{f}"
        );
    }
    // Istio: a mesh-config provider with that format, turned on for the
    // egress gateway by a Telemetry resource.
    let docs = istio_docs();
    let providers: Vec<Value> = docs_of(&docs, "IstioOperator")
        .iter()
        .flat_map(|d| {
            d.value["spec"]["meshConfig"]["extensionProviders"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let telemetry = docs_of(&docs, "Telemetry");
    assert_eq!(telemetry.len(), 1, "one Telemetry resource");
    let t = telemetry[0];
    assert_eq!(t.namespace(), "istio-egress", "{}", t.label());
    assert_eq!(
        t.value["spec"]["selector"]["matchLabels"]["istio"],
        "egressgateway",
        "{}",
        t.label()
    );
    let names: Vec<String> = t.value["spec"]["accessLogging"]
        .as_array()
        .expect("accessLogging")
        .iter()
        .flat_map(|a| a["providers"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    assert!(!names.is_empty(), "{}", t.label());
    for name in names {
        let p = providers
            .iter()
            .find(|p| p["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{}: no extensionProvider {name:?}", t.label()));
        let log = &p["envoyFileAccessLog"];
        assert_eq!(log["path"], "/dev/stdout", "{name}");
        assert_eq!(log["logFormat"]["text"], AUDIT_LOG_FORMAT, "{name}");
    }
}

// ---------------------------------------------------------------------------
// Body mode: the policy and Envoy agree
// ---------------------------------------------------------------------------

/// The policy's body mode as Tollgate reads it (`held` when absent).
fn body_mode(policy: &Value) -> &str {
    policy["body_mode"].as_str().unwrap_or("held")
}

/// Held mode without `allow_on_headers_stop_iteration` answers every request
/// that needs its body with 408 after 10 s; streamed mode with it gives up
/// the guarantee held mode exists for. Every shipped Envoy configuration
/// pairs the two.
#[test]
fn every_shipped_wasm_filter_sets_the_envoy_option_its_body_mode_needs() {
    for (path, text) in envoy_configs() {
        let f = rel(&path);
        let config = parse_yaml(&text, &f);
        let filters = objects_of_type(&config, WASM_FILTER);
        assert!(!filters.is_empty(), "{f}");
        for w in filters {
            let text = w["config"]["configuration"]["value"]
                .as_str()
                .expect("policy");
            let policy: Value = serde_json::from_str(text).expect("policy JSON");
            assert_eq!(
                w["config"]["allow_on_headers_stop_iteration"] == json!(true),
                body_mode(&policy) == "held",
                "{f}: body_mode {} with allow_on_headers_stop_iteration {}",
                body_mode(&policy),
                w["config"]["allow_on_headers_stop_iteration"]
            );
        }
    }
    // A WasmPlugin cannot set the option: its policy must stream.
    let docs = istio_docs();
    let wp = the_wasmplugin(&docs);
    assert_eq!(
        body_mode(&wp.value["spec"]["pluginConfig"]),
        "streamed",
        "{}",
        wp.label()
    );
}

/// The held-mode EnvoyFilter (`tollgate-held.yaml`): its patches.
fn the_held_envoyfilter(docs: &[Doc]) -> (&Doc, &Value, &Value) {
    let ef = docs_of(docs, "EnvoyFilter")
        .into_iter()
        .find(|d| d.name() == "tollgate-held")
        .expect("the EnvoyFilter tollgate-held");
    let patches = ef.value["spec"]["configPatches"]
        .as_array()
        .expect("patches");
    assert_eq!(patches.len(), 2, "{}", ef.label());
    (ef, &patches[0], &patches[1])
}

#[test]
fn the_held_envoyfilter_is_the_wasmplugin_with_held_bodies() {
    let docs = istio_docs();
    let wp = the_wasmplugin(&docs);
    let (ef, ext, http) = the_held_envoyfilter(&docs);
    let f = ef.label();
    let ws = &wp.value["spec"];

    // Same gateway, same namespace.
    assert_eq!(ef.namespace(), wp.namespace(), "{f}");
    assert_eq!(
        ef.value["spec"]["workloadSelector"]["labels"], ws["selector"]["matchLabels"],
        "{f}"
    );

    // 1. The extension config, added (the only operation Istio applies).
    assert_eq!(ext["applyTo"], "EXTENSION_CONFIG", "{f}");
    assert_eq!(ext["match"]["context"], "GATEWAY", "{f}");
    assert_eq!(ext["patch"]["operation"], "ADD", "{f}");
    let name = ext["patch"]["value"]["name"].as_str().expect("name");
    let wasm = &ext["patch"]["value"]["typed_config"];
    assert_eq!(wasm["@type"], WASM_FILTER, "{f}");
    let c = &wasm["config"];
    assert_eq!(c["name"], name, "{f}");
    assert_eq!(c["root_id"], ws["pluginName"], "{f}");
    assert_eq!(c["failure_policy"], "FAIL_CLOSED", "{f}");
    assert_eq!(c["allow_on_headers_stop_iteration"], true, "{f}");
    assert_eq!(c["vm_config"]["runtime"], "envoy.wasm.runtime.v8", "{f}");
    assert_eq!(
        c["vm_config"]["code"]["remote"]["http_uri"]["uri"], ws["url"],
        "{f}: the same module as the WasmPlugin"
    );

    // 2. The HTTP filter that takes it over ECDS, where phase AUTHZ puts a
    //    WasmPlugin (after authentication, before authorization), waiting
    //    for it rather than serving without it.
    assert_eq!(ws["phase"], "AUTHZ");
    assert_eq!(http["applyTo"], "HTTP_FILTER", "{f}");
    assert_eq!(http["match"]["context"], "GATEWAY", "{f}");
    assert_eq!(
        http["match"]["listener"]["filterChain"]["filter"]["name"],
        "envoy.filters.network.http_connection_manager",
        "{f}"
    );
    assert_eq!(http["patch"]["operation"], "ADD", "{f}");
    assert_eq!(http["patch"]["filterClass"], "AUTHN", "{f}");
    let v = &http["patch"]["value"];
    assert_eq!(v["name"], name, "{f}");
    let cd = &v["config_discovery"];
    assert_eq!(cd["type_urls"], json!([WASM_FILTER]), "{f}");
    assert_eq!(cd["config_source"]["ads"], json!({}), "{f}");
    assert_eq!(cd["config_source"]["initial_fetch_timeout"], "0s", "{f}");
    assert!(
        cd.get("default_config").is_none(),
        "{f}: a default config could serve without Tollgate"
    );
    assert!(
        cd.get("apply_default_config_without_warming").is_none(),
        "{f}"
    );

    // The policy: the WasmPlugin's, held instead of streamed.
    let text = c["configuration"]["value"].as_str().expect("policy text");
    assert_eq!(
        c["configuration"]["@type"],
        "type.googleapis.com/google.protobuf.StringValue"
    );
    let mut held: Value = serde_json::from_str(text).expect("policy JSON");
    let mut streamed = ws["pluginConfig"].clone();
    assert_eq!(held["body_mode"], "held", "{f}");
    assert_eq!(streamed["body_mode"], "streamed", "{}", wp.label());
    held.as_object_mut().map(|m| m.remove("body_mode"));
    streamed.as_object_mut().map(|m| m.remove("body_mode"));
    assert_eq!(
        held, streamed,
        "{f}: the policy differs from the WasmPlugin's beyond body_mode"
    );
}

/// The held-mode Wasm configuration, with its remote module replaced by the
/// built one, in a gateway Envoy validates: the fields are Envoy 1.40's, the
/// module loads and configures on the policy.
#[test]
fn the_held_wasm_config_passes_envoy_validate_with_the_real_module() {
    let docs = istio_docs();
    let (ef, ext, _) = the_held_envoyfilter(&docs);
    let etc = EtcTollgate::new("held-validate");
    let mut wasm = ext["patch"]["value"]["typed_config"].clone();
    wasm["config"]["vm_config"]["code"] =
        json!({"local": {"filename": "/etc/tollgate/tollgate.wasm"}});
    let text = wasm["config"]["configuration"]["value"]
        .as_str()
        .expect("policy");
    let policy: Value = serde_json::from_str(text).expect("policy JSON");
    let cluster = policy["credential_service"]["cluster"]
        .as_str()
        .expect("cluster");

    let (code, out) = harness_check(&policy, &etc.dir, "held-policy");
    assert_eq!(code, 0, "{}: {out}", ef.label());

    let bootstrap = json!({
        "static_resources": {
            "listeners": [{
                "name": "egress",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "egress",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
                        "http_filters": [
                            {"name": ext["patch"]["value"]["name"], "typed_config": wasm},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                        ]
                    }
                }]}]
            }],
            "clusters": [{
                "name": cluster,
                "type": "STATIC",
                "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8200}}}
                }]}]}
            }]
        }
    });
    let config = etc.substitute(&serde_json::to_string_pretty(&bootstrap).expect("json"));
    let (ok, out) = etc.validate(&config, "held");
    assert!(ok, "{}: envoy --mode validate failed:\n{out}", ef.label());
    assert!(
        out.contains("tollgate: configured"),
        "{}: the module did not configure:\n{out}",
        ef.label()
    );
}

// ---------------------------------------------------------------------------
// The Vault / OpenBao agent (vault-agent.yaml)
// ---------------------------------------------------------------------------
//
// The agent's HCL (in the ConfigMap) and the Vault-side setup and WasmPlugin
// switch (in the file's header comment) are checked as text: no HCL parser,
// only exact text and regex assertions on the settings the wiring depends on
// (the API proxy's auto-auth token, the Kubernetes method and its role and
// token path, the listener's port, the Vault role's bindings and token TTL,
// the Vault policy's paths). The one exception is the header's
// `credential_service:` block, which is YAML: it is uncommented, parsed and
// put through `tollgate-harness check`. Whether OpenBao accepts the whole
// agent configuration is not proven here: `bao agent` has no mode that
// validates a configuration without starting.

const VAULT_AGENT_FILE: &str = "mesh-config/istio/vault-agent.yaml";

/// The documents of `vault-agent.yaml` (one of each kind) and its text.
struct VaultAgent<'a> {
    text: String,
    service_account: &'a Doc,
    config_map: &'a Doc,
    deployment: &'a Doc,
    service: &'a Doc,
    policy: &'a Doc,
}

fn the_vault_agent(docs: &[Doc]) -> VaultAgent<'_> {
    let text = std::fs::read_to_string(root().join(VAULT_AGENT_FILE))
        .unwrap_or_else(|e| panic!("{VAULT_AGENT_FILE}: {e}"));
    let one = |kind: &str| {
        let found: Vec<&Doc> = docs
            .iter()
            .filter(|d| d.file == VAULT_AGENT_FILE && d.kind() == kind)
            .collect();
        assert_eq!(found.len(), 1, "{VAULT_AGENT_FILE}: expected one {kind}");
        found[0]
    };
    VaultAgent {
        service_account: one("ServiceAccount"),
        config_map: one("ConfigMap"),
        deployment: one("Deployment"),
        service: one("Service"),
        policy: one("AuthorizationPolicy"),
        text,
    }
}

impl VaultAgent<'_> {
    fn pod_labels(&self) -> &Value {
        &self.deployment.value["spec"]["template"]["metadata"]["labels"]
    }

    fn pod_spec(&self) -> &Value {
        &self.deployment.value["spec"]["template"]["spec"]
    }

    /// The container running `bao agent` / `vault agent`.
    fn container(&self) -> &Value {
        let containers = self.pod_spec()["containers"]
            .as_array()
            .expect("containers");
        let agents: Vec<&Value> = containers
            .iter()
            .filter(|c| {
                let words = command_words(c);
                words.iter().any(|w| w == "agent")
                    && words.iter().any(|w| w.starts_with("-config="))
            })
            .collect();
        assert_eq!(
            agents.len(),
            1,
            "{}: expected one container running `bao agent -config=...`",
            self.deployment.label()
        );
        agents[0]
    }

    /// The agent's HCL: the ConfigMap entry its `-config=` names.
    fn hcl(&self) -> &str {
        let path = config_arg(self.container());
        let (dir, key) = path.rsplit_once('/').expect("-config= is a path");
        let mount = self.mount_at(dir);
        let cm = &self.config_map;
        assert_eq!(
            self.volume(mount)["configMap"]["name"],
            json!(cm.name()),
            "{}: {dir} is not the ConfigMap {}",
            self.deployment.label(),
            cm.name()
        );
        cm.value["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no data.{key}", cm.label()))
    }

    /// The agent container's volumeMount at `dir` (its volume's name).
    fn mount_at(&self, dir: &str) -> &str {
        self.container()["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .find(|m| m["mountPath"] == dir)
            .and_then(|m| m["name"].as_str())
            .unwrap_or_else(|| panic!("{}: nothing mounted at {dir}", self.deployment.label()))
    }

    fn volume(&self, name: &str) -> &Value {
        self.pod_spec()["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{}: no volume {name}", self.deployment.label()))
    }

    /// The Service's single port: (port, targetPort).
    fn service_port(&self) -> (u64, u64) {
        let ports = self.service.value["spec"]["ports"]
            .as_array()
            .expect("ports");
        assert_eq!(ports.len(), 1, "{}", self.service.label());
        let p = &ports[0];
        assert!(
            p["name"].as_str().is_some_and(|n| n.starts_with("http")) && p["appProtocol"] == "http",
            "{}: the port must be declared HTTP for Istio (name http-*, appProtocol http)",
            self.service.label()
        );
        let port = p["port"].as_u64().expect("port");
        let target = p["targetPort"]
            .as_u64()
            .expect("a numeric targetPort (the listener's port)");
        (port, target)
    }

    /// `<name>.<namespace>.svc.cluster.local` of the agent's Service.
    fn fqdn(&self) -> String {
        format!(
            "{}.{}.svc.cluster.local",
            self.service.name(),
            self.service.namespace()
        )
    }
}

fn command_words(container: &Value) -> Vec<String> {
    ["command", "args"]
        .iter()
        .flat_map(|k| container[*k].as_array().cloned().unwrap_or_default())
        .filter_map(|w| w.as_str().map(str::to_string))
        .collect()
}

fn config_arg(container: &Value) -> String {
    command_words(container)
        .iter()
        .find_map(|w| w.strip_prefix("-config=").map(str::to_string))
        .expect("-config=")
}

/// Every label `selector` asks for is on `labels` (and it asks for some).
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The `credential_service:` block the header tells operators to put in the
/// WasmPlugin: the commented lines after `#  credential_service:` that are
/// indented deeper, without their `#`, parsed as YAML.
fn documented_credential_service(text: &str) -> Value {
    let mut lines = text.lines().skip_while(|l| {
        !(l.starts_with('#') && l.trim_start_matches('#').trim() == "credential_service:")
    });
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("{VAULT_AGENT_FILE}: no commented `credential_service:` block"));
    let key_at = head.find('c').expect("key");
    let mut yaml = vec![&head[1..]];
    yaml.extend(
        lines
            .take_while(|l| {
                l.starts_with('#')
                    && l.len() > key_at + 1
                    && l[1..=key_at].trim().is_empty()
                    && !l[key_at + 1..].trim().is_empty()
            })
            .map(|l| &l[1..]),
    );
    let block = parse_yaml(&yaml.join("\n"), "the documented credential_service");
    block["credential_service"].clone()
}

/// The first capture of `re` in `text`, which must match exactly once
/// (after removing duplicates).
fn the_one(re: &str, text: &str, what: &str) -> String {
    let re = regex::Regex::new(re).expect("regex");
    let found: BTreeSet<String> = re.captures_iter(text).map(|c| c[1].to_string()).collect();
    assert_eq!(
        found.len(),
        1,
        "{what}: expected exactly one value for {re}, found {found:?}"
    );
    found.into_iter().next().expect("one")
}

/// Does a Vault/OpenBao ACL path (`+` one segment, a trailing `*` any
/// suffix) grant `path`?
fn vault_acl_grants(acl: &str, path: &str) -> bool {
    let (body, glob) = match acl.strip_suffix('*') {
        Some(b) => (b, ".*"),
        None => (acl, ""),
    };
    let pattern: Vec<String> = body
        .split('/')
        .map(|seg| {
            if seg == "+" {
                "[^/]+".to_string()
            } else {
                regex::escape(seg)
            }
        })
        .collect();
    regex::Regex::new(&format!("^{}{glob}$", pattern.join("/")))
        .expect("acl regex")
        .is_match(path)
}

/// The switch the header documents is a valid policy: its cluster is the
/// agent Service's Istio cluster (`outbound|<port>||<FQDN>`), its authority
/// the Service's name, its protocol `vault_kv2`; the shipped pluginConfig
/// with it passes `tollgate-harness check`; and the Vault policy in the
/// header grants read on every KV path that policy makes Tollgate fetch.
#[test]
fn the_documented_switch_to_the_vault_agent_is_a_valid_policy_on_its_service() {
    let docs = istio_docs();
    let agent = the_vault_agent(&docs);
    let (port, _) = agent.service_port();
    let fqdn = agent.fqdn();

    let cs = documented_credential_service(&agent.text);
    let cluster = format!("outbound|{port}||{fqdn}");
    assert_eq!(cs["cluster"], json!(cluster), "{VAULT_AGENT_FILE}");
    assert_eq!(
        istio_cluster(&cluster),
        Some((
            port,
            agent.service.name().to_string(),
            agent.service.namespace().to_string()
        ))
    );
    assert_eq!(cs["authority"], json!(fqdn), "{VAULT_AGENT_FILE}");
    assert_eq!(cs["protocol"], "vault_kv2", "{VAULT_AGENT_FILE}");
    let mount = cs["vault"]["mount"].as_str().expect("vault.mount");
    assert!(cs["vault"]["field"].is_string(), "{VAULT_AGENT_FILE}");

    // The operator's edit, applied to the shipped policy, is accepted.
    let mut policy = the_wasmplugin(&docs).value["spec"]["pluginConfig"].clone();
    policy["credential_service"] = cs.clone();
    let dir = scratch("vault-agent-policy");
    let (code, out) = harness_check(&policy, &dir, "vault-agent");
    assert_eq!(code, 0, "{VAULT_AGENT_FILE}: the documented switch: {out}");
    assert!(out.contains(": ok"), "{out}");

    // What Tollgate then reads, the header's Vault policy grants: the
    // shared credentials by name, the per-workload ones for a workload of
    // every rule that uses them.
    let acl_re = regex::Regex::new(r#"(?m)^#\s+path "([^"]+)""#).expect("regex");
    let acls: Vec<String> = acl_re
        .captures_iter(&agent.text)
        .map(|c| c[1].to_string())
        .collect();
    assert!(!acls.is_empty(), "{VAULT_AGENT_FILE}: no Vault policy path");
    for acl in &acls {
        assert!(
            acl.starts_with(&format!("{mount}/data/")),
            "{VAULT_AGENT_FILE}: {acl:?} is not a data/ path of mount {mount}"
        );
    }
    let granted = |path: &str| acls.iter().any(|a| vault_acl_grants(a, path));
    for p in policy["providers"].as_array().expect("providers") {
        let cred = &p["credential"];
        let name = cred["name"].as_str().expect("credential name");
        if cred["scope"] != "per_workload" {
            let path = format!("{mount}/data/{name}");
            assert!(granted(&path), "{path} is not granted by {acls:?}");
            continue;
        }
        let rules = policy["rules"].as_array().expect("rules");
        let users = rules.iter().filter(|r| {
            r["providers"]
                .as_array()
                .is_some_and(|a| a.contains(&p["name"]))
        });
        for w in users.flat_map(|r| r["workloads"].as_array().cloned().unwrap_or_default()) {
            let id = w
                .as_str()
                .expect("workload")
                .trim_start_matches("spiffe://");
            // A pattern `.../ns/<ns>/*` stands for any ServiceAccount there.
            let id = match id.strip_suffix("/*") {
                Some(ns) => format!("{ns}/sa/any"),
                None => id.to_string(),
            };
            let path = format!("{mount}/data/{name}/{id}");
            assert!(granted(&path), "{path} is not granted by {acls:?}");
        }
    }
}

/// The AuthorizationPolicy runs on the agent's pods and lets only the
/// egress gateway (the principal the broker's policy names, in the
/// WasmPlugin's namespace and trust domain) read, with GET, under the KV
/// mount's `data/` prefix; and the shipped NetworkPolicies and mTLS that
/// name the credential service apply to the agent's pods and port.
#[test]
fn only_the_egress_gateway_may_call_the_vault_agent_and_only_to_read_kv_data() {
    let docs = istio_docs();
    let agent = the_vault_agent(&docs);
    let wp = the_wasmplugin(&docs);
    let (_, target) = agent.service_port();
    let labels = agent.pod_labels();
    let ns = agent.deployment.namespace();
    for d in [
        agent.service_account,
        agent.config_map,
        agent.service,
        agent.policy,
    ] {
        assert_eq!(d.namespace(), ns, "{}", d.label());
    }
    assert!(selects(
        &agent.deployment.value["spec"]["selector"]["matchLabels"],
        labels
    ));
    assert!(
        selects(&agent.service.value["spec"]["selector"], labels),
        "{}: does not select the agent's pods",
        agent.service.label()
    );

    let ap = &agent.policy.value["spec"];
    let f = agent.policy.label();
    assert!(
        selects(&ap["selector"]["matchLabels"], labels),
        "{f}: does not select the agent's pods"
    );
    assert_eq!(ap["action"], "ALLOW", "{f}");
    let rules = ap["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1, "{f}: one rule");
    let rule = rules[0].as_object().expect("rule");
    let keys: Vec<&String> = rule.keys().collect();
    assert_eq!(keys, ["from", "to"], "{f}: no `when`, nothing else");

    let trust_domain = wp.value["spec"]["pluginConfig"]["trust_domains"][0]
        .as_str()
        .expect("trust domain");
    let broker_policy = docs_of(&docs, "AuthorizationPolicy")
        .into_iter()
        .find(|d| d.file.ends_with("credential-service.yaml"))
        .expect("the broker's AuthorizationPolicy");
    let gateway = &broker_policy.value["spec"]["rules"][0]["from"][0]["source"]["principals"];
    let principal = gateway[0].as_str().expect("principal");
    assert!(
        principal.starts_with(&format!("{trust_domain}/ns/{}/sa/", wp.namespace())),
        "{principal}"
    );
    assert_eq!(
        rule["from"],
        json!([{"source": {"principals": [principal]}}]),
        "{f}: only the egress gateway's identity, as in credential-service.yaml"
    );

    let mount = documented_credential_service(&agent.text)["vault"]["mount"]
        .as_str()
        .expect("mount")
        .to_string();
    assert_eq!(
        rule["to"],
        json!([{"operation": {"methods": ["GET"], "paths": [format!("/v1/{mount}/data/*")]}}]),
        "{f}: only GET on the mount's data/ paths"
    );

    // The shipped NetworkPolicies: the agent admits the gateway on its
    // port, and the gateway may connect to it.
    let nps = docs_of(&docs, "NetworkPolicy");
    let has_port = |rule: &Value| {
        rule["ports"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["port"] == target))
    };
    let inbound = nps
        .iter()
        .filter(|d| {
            d.namespace() == ns && selects(&d.value["spec"]["podSelector"]["matchLabels"], labels)
        })
        .collect::<Vec<_>>();
    assert!(!inbound.is_empty(), "no NetworkPolicy selects the agent");
    for d in &inbound {
        let ingress = d.value["spec"]["ingress"].as_array().expect("ingress");
        assert!(ingress.iter().any(has_port), "{}: port {target}", d.label());
    }
    let to_agent = |peer: &Value| {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == ns
            && selects(&peer["podSelector"]["matchLabels"], labels)
    };
    assert!(
        nps.iter()
            .filter(|d| d.namespace() == wp.namespace())
            .flat_map(|d| d.value["spec"]["egress"]
                .as_array()
                .cloned()
                .unwrap_or_default())
            .any(|r| has_port(&r) && r["to"].as_array().is_some_and(|to| to.iter().any(to_agent))),
        "the gateway's NetworkPolicy does not let it reach the agent on {target}"
    );
    assert!(
        docs_of(&docs, "PeerAuthentication")
            .iter()
            .any(|d| d.namespace() == ns && d.value["spec"]["mtls"]["mode"] == "STRICT"),
        "no STRICT mTLS in {ns}"
    );
}

/// The agent's configuration proxies with its own Kubernetes login: the API
/// proxy uses the auto-auth token; the Kubernetes method's role is the role
/// the header tells Vault to create, bound to the agent's ServiceAccount and
/// namespace and to the audience of the projected token the method reads,
/// with a token TTL of minutes; the listener is on the Service's targetPort,
/// in plain HTTP (Istio mTLS protects the hop). The Deployment runs it from
/// the ConfigMap, as the ServiceAccount, with a sidecar, locked down.
#[test]
fn the_vault_agent_proxies_with_its_own_kubernetes_login_on_the_service_port() {
    let docs = istio_docs();
    let agent = the_vault_agent(&docs);
    let (_, target) = agent.service_port();
    let hcl = agent.hcl();
    let f = agent.config_map.label();
    let has = |re: &str| regex::Regex::new(re).expect("regex").is_match(hcl);

    assert!(
        has(r"(?m)^api_proxy \{\n\s+use_auto_auth_token\s*=\s*true\n\}$"),
        "{f}: api_proxy {{ use_auto_auth_token = true }}"
    );
    let method = the_one(r#"(?m)^\s+method "([a-z_]+)" \{$"#, hcl, &f);
    assert_eq!(method, "kubernetes", "{f}: the auto_auth method");
    let role = the_one(r#"(?m)^\s+role\s*=\s*"([^"]+)"$"#, hcl, &f);
    let token_path = the_one(r#"(?m)^\s+token_path\s*=\s*"([^"]+)"$"#, hcl, &f);
    let listener = the_one(
        r#"(?m)^listener "tcp" \{\n\s+address\s*=\s*"0\.0\.0\.0:(\d+)"\n\s+tls_disable\s*=\s*true\n"#,
        hcl,
        &f,
    );
    assert_eq!(
        listener,
        target.to_string(),
        "{f}: listener port vs targetPort"
    );
    assert!(
        has(r#"(?m)^\s+address\s*=\s*"https://"#),
        "{f}: the server over TLS"
    );

    // The Vault side, as the header documents it.
    let h = VAULT_AGENT_FILE;
    let documented_role = the_one(r"auth/kubernetes/role/([A-Za-z0-9_-]+)", &agent.text, h);
    assert_eq!(role, documented_role, "{f}: the role the header creates");
    let sa = the_one(r"bound_service_account_names=(\S+)", &agent.text, h);
    assert_eq!(
        sa,
        agent.service_account.name(),
        "{h}: the role's ServiceAccount"
    );
    let sa_ns = the_one(r"bound_service_account_namespaces=(\S+)", &agent.text, h);
    assert_eq!(sa_ns, agent.service_account.namespace(), "{h}");
    let audience = the_one(r"audience=(\S+)", &agent.text, h);
    let ttl = the_one(r"token_ttl=(\S+)", &agent.text, h);
    let minutes: u64 = ttl
        .strip_suffix('m')
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("{h}: token_ttl={ttl} is not in minutes"));
    assert!(
        (1..=15).contains(&minutes),
        "{h}: token_ttl={ttl}: keep it short"
    );

    // The Deployment: the agent from the ConfigMap (checked by hcl()), as
    // the ServiceAccount, reading the projected token the role accepts.
    let spec = agent.pod_spec();
    let d = agent.deployment.label();
    assert_eq!(
        spec["serviceAccountName"],
        json!(agent.service_account.name()),
        "{d}"
    );
    let (dir, file) = token_path.rsplit_once('/').expect("token_path");
    let projected = &agent.volume(agent.mount_at(dir))["projected"]["sources"];
    assert_eq!(
        projected,
        &json!([{"serviceAccountToken": {
            "audience": audience, "expirationSeconds": 600, "path": file}}]),
        "{d}: {token_path} is a projected token for audience {audience}"
    );
    assert_eq!(
        agent.pod_labels()["sidecar.istio.io/inject"],
        "true",
        "{d}: a sidecar terminates the gateway's mTLS"
    );

    let c = agent.container();
    let image = c["image"].as_str().expect("image");
    let tag = image.rsplit('/').next().unwrap_or(image);
    assert!(
        image.contains("@sha256:") || (tag.contains(':') && !tag.ends_with(":latest")),
        "{d}: pin the image ({image})"
    );
    assert!(
        c["ports"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["containerPort"] == target)),
        "{d}: container port {target}"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let p = &c[probe];
        let port = p["tcpSocket"]["port"]
            .as_u64()
            .or(p["httpGet"]["port"].as_u64());
        assert_eq!(port, Some(target), "{d}: {probe} on the listener");
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{d}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{d}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{d}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{d}");
    assert!(c["resources"]["requests"]["cpu"].is_string(), "{d}");
    assert!(c["resources"]["requests"]["memory"].is_string(), "{d}");
}

#[test]
fn the_documented_block_and_the_acl_matcher_behave() {
    let text = "# x\n#   credential_service:\n#     protocol: vault_kv2\n#     vault: {mount: m}\n#\n#   (other)\n";
    assert_eq!(
        documented_credential_service(text),
        json!({"protocol": "vault_kv2", "vault": {"mount": "m"}})
    );
    assert!(vault_acl_grants("m/data/a", "m/data/a"));
    assert!(!vault_acl_grants("m/data/a", "m/data/ab"));
    assert!(vault_acl_grants("m/data/a/+/x", "m/data/a/b/x"));
    assert!(!vault_acl_grants("m/data/a/+/x", "m/data/a/b/c/x"));
    assert!(vault_acl_grants("m/data/a/*", "m/data/a/b/c"));
    assert!(!vault_acl_grants("m/data/a.b", "m/data/aXb"));
}
