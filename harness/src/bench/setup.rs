//! Starting everything the benchmark needs, and checking each gateway
//! before anything is measured.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use serde_json::Value;

use crate::envoy::{
    envoy_binary, free_port, AccessLogSink, DevCa, EnvoyOptions, EnvoyProcess, GatewaySpec,
    Upstream, AUDIT_LOG_FORMAT,
};
use crate::mock::{MockCredentialService, MockLlm, ServedLlm, ServedMock};

use super::authz::AuthzService;
use super::cpu::{on_gateway_cpu, pid_running};
use super::gateways::{sidecar_bootstrap, spec_for, tollgate_policy, Variant, NOOP_HELD_FILE};
use super::lua::LUA_NAMESPACE;
use super::noop_wasm::{noop_held_wasm, noop_wasm};
use super::options::{Mode, Options};
use super::probe_wasm::{probe_wasm, HostCall};
use super::ratelimit::RateLimitSide;
use super::signals::check_interrupted;
use super::traffic::{
    Kind, Traffic, JSON_USAGE, MAX_OUTPUT_TOKENS, MODEL, REQUESTED_MAX_TOKENS, STREAM_USAGE,
};
use super::upstream::BodyUpstream;
use super::{
    BODY, CHAT_PATH, CLIENT_KEY, CREDS_CLUSTER, DENIED_PATH, PROVIDER_HOST, REAL_KEY, WORKLOAD,
};

/// Where h2load's request body is written in the work directory: the
/// default mode's, or the body path's 2 KB chat.
pub(crate) const REQUEST_FILE: &str = "body.json";
/// `--dlp`: the 64 KB chat's file.
pub(crate) const LONG_REQUEST_FILE: &str = "body-64k.json";

/// A plain HTTP/1.1 client to the sidecar's entries.
pub(crate) type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// One running gateway.
pub(crate) struct Gateway {
    pub(crate) variant: Variant,
    pub(crate) envoy: EnvoyProcess,
    /// Envoy's pid, for its CPU time.
    pub(crate) pid: u32,
    /// The sidecar listener that leads to this gateway.
    pub(crate) entry: SocketAddr,
    /// Its access log (one JSON line per request, with Tollgate's audit
    /// record or the Lua script's record under `"tollgate"`).
    pub(crate) access_log: PathBuf,
}

/// What answers behind the gateways.
pub(crate) enum LlmSide {
    /// The default mode: the shared mock LLM.
    Mock { llm: MockLlm, served: ServedLlm },
    /// `--body-path` and `--dlp`: fixed answers, and the traffic they answer.
    Body {
        upstream: BodyUpstream,
        traffic: Box<Traffic>,
    },
}

/// Everything that runs during the benchmark. Field order is drop order:
/// Envoys stop before the services they talk to.
pub(crate) struct Bench {
    pub(crate) mode: Mode,
    pub(crate) _sidecar: EnvoyProcess,
    pub(crate) gateways: Vec<Gateway>,
    pub(crate) authz: AuthzService,
    /// The global tier's rate-limit service and Redis (body path only).
    pub(crate) rls: Option<RateLimitSide>,
    pub(crate) llm: LlmSide,
    pub(crate) creds: MockCredentialService,
    pub(crate) _creds_served: ServedMock,
    pub(crate) envoy_bin: PathBuf,
}

impl Bench {
    pub(crate) fn start(opts: &Options, rt: &tokio::runtime::Runtime) -> anyhow::Result<Self> {
        let envoy_bin = envoy_binary(&opts.repo)?;
        let dir = &opts.work_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let traffic = opts.bodies().then(Traffic::build);
        // What h2load sends (load::load_args); the streamed request is for
        // profiling by hand with `--hold`.
        let body = traffic.as_ref().map_or(BODY, |t| t.chat.sent.as_str());
        std::fs::write(dir.join(REQUEST_FILE), body).context("writing the request body")?;
        if let Some(t) = &traffic {
            std::fs::write(dir.join("stream.json"), &t.stream.sent)
                .context("writing the streamed request body")?;
            if opts.mode() == Mode::Dlp {
                std::fs::write(dir.join(LONG_REQUEST_FILE), &t.long_chat.sent)
                    .context("writing the 64 KB request body")?;
            }
        }
        let noop = dir.join("noop.wasm");
        std::fs::write(&noop, noop_wasm()).context("writing the no-op wasm module")?;
        std::fs::write(noop.with_file_name(NOOP_HELD_FILE), noop_held_wasm())
            .context("writing the held no-op wasm module")?;
        if opts.probes {
            for call in HostCall::ALL {
                std::fs::write(noop.with_file_name(call.file_name()), probe_wasm(call))
                    .with_context(|| format!("writing the {} wasm module", call.slug()))?;
            }
        }

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
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let creds_served = rt.block_on(async {
            creds
                .serve(loopback)
                .await
                .context("serving the credential service")
        })?;
        let llm = match traffic {
            Some(traffic) => {
                let gap = Duration::from_micros(u64::from(opts.stream_gap_us));
                let upstream = BodyUpstream::start(&traffic, gap)?;
                LlmSide::Body {
                    upstream,
                    traffic: Box::new(traffic),
                }
            }
            None => {
                let llm = MockLlm::new();
                llm.accept_key(REAL_KEY);
                llm.accept_key(CLIENT_KEY);
                let served = rt.block_on(async {
                    llm.serve(loopback).await.context("serving the mock LLM")
                })?;
                LlmSide::Mock { llm, served }
            }
        };
        let upstream_addr = match &llm {
            LlmSide::Mock { served, .. } => served.addr,
            LlmSide::Body { upstream, .. } => upstream.addr,
        };
        let authz = AuthzService::start()?;
        let rls = if opts.body_path {
            Some(RateLimitSide::start()?)
        } else {
            None
        };

        let mut base = GatewaySpec::tollgate(
            loopback,
            opts.wasm.clone(),
            tollgate_policy().to_string(),
            ca_file.clone(),
            server.cert.clone(),
            server.key.clone(),
            CREDS_CLUSTER.into(),
            creds_served.addr,
            Upstream::Mock(upstream_addr),
        );
        base.concurrency = opts.concurrency;
        let mut gateways = Vec::new();
        let mut routes = Vec::new();
        for v in Variant::all(opts.mode(), opts.probes) {
            check_interrupted()?;
            let mut spec = spec_for(v, &base, &noop, authz.addr, rls.as_ref().map(|r| r.addr));
            if v.is_build_b() {
                match &opts.tollgate_b {
                    Some(wasm) => spec.wasm = wasm.clone(),
                    None => continue,
                }
            }
            spec.listen = free_port(loopback.ip())?;
            let gw_dir = dir.join(v.slug());
            // Every gateway writes the shipped access log (the audit record
            // under "tollgate" for Tollgate, null for the others), as the
            // access log operators already run.
            let access_log = gw_dir.join("access.log");
            spec.access_log = Some(AccessLogSink::File(access_log.clone()));
            let mut eo =
                spec.envoy_options(envoy_bin.clone(), gw_dir.join("envoy.json"), gw_dir.clone());
            // Added to the options `envoy_options` set (the access log's
            // 250 ms flush interval), not in their place.
            eo.extra_args
                .extend(["--component-log-level".into(), v.wasm_log_level().into()]);
            let mut boot = spec.bootstrap(0);
            if v == Variant::Lua {
                // The script's record goes where Tollgate's audit record
                // goes, so both gateways write a record per request.
                replace_access_log_format(&mut boot, &lua_access_log_format()?)?;
            }
            let envoy = on_gateway_cpu(opts.pin, || start_envoy(eo, &boot))
                .with_context(|| format!("starting the {} gateway", v.slug()))?;
            let pid = pid_running(&gw_dir.join("envoy.json"))?;
            let entry = free_port(loopback.ip())?;
            routes.push((v, entry, spec.listen));
            gateways.push(Gateway {
                variant: v,
                envoy,
                pid,
                entry,
                access_log,
            });
        }
        check_interrupted()?;
        let sidecar_dir = dir.join("sidecar");
        let mut eo = EnvoyOptions::new(
            envoy_bin.clone(),
            sidecar_dir.join("envoy.json"),
            sidecar_dir,
        );
        eo.concurrency = 1;
        let sidecar = start_envoy(eo, &sidecar_bootstrap(&routes, &ca_file, &svid))
            .context("starting the client sidecar")?;
        Ok(Self {
            mode: opts.mode(),
            _sidecar: sidecar,
            gateways,
            authz,
            rls,
            llm,
            creds,
            _creds_served: creds_served,
            envoy_bin,
        })
    }

    pub(crate) fn gateway(&self, v: Variant) -> anyhow::Result<&Gateway> {
        self.gateways
            .iter()
            .find(|g| g.variant == v)
            .ok_or_else(|| anyhow!("no {} gateway", v.slug()))
    }

    /// One allowed and one refused request per gateway, before measuring.
    /// For Tollgate the allowed one also fills the credential cache.
    pub(crate) async fn verify(&self) -> anyhow::Result<()> {
        match &self.llm {
            LlmSide::Mock { llm, .. } => self.verify_header_mode(llm).await,
            LlmSide::Body { upstream, traffic } if self.mode == Mode::Dlp => {
                self.verify_dlp(upstream, traffic).await
            }
            LlmSide::Body { upstream, traffic } => self.verify_body_path(upstream, traffic).await,
        }
    }

    async fn verify_header_mode(&self, llm: &MockLlm) -> anyhow::Result<()> {
        let client = http_client();
        for g in &self.gateways {
            let v = g.variant;
            llm.clear();
            let status = post(&client, g.entry, CHAT_PATH).await?;
            ensure!(
                status == 200,
                "{}: the allowed request got {status}",
                v.slug()
            );
            self.check_upstream(v, Kind::Chat)?;
            let seen = llm.counts().total;
            let status = post(&client, g.entry, DENIED_PATH).await?;
            let reached = llm.counts().total > seen;
            ensure_refusal(v, v.enforces(), DENIED_PATH, status, reached)?;
        }
        println!("checked: each gateway forwards the allowed request with the expected key; the policy gateways refuse {DENIED_PATH} with 403\n");
        Ok(())
    }

    /// Body path: per gateway, the JSON and the streamed exchange reach the
    /// client unchanged, the upstream receives the expected body (clamped
    /// or not) and key, a model off the list and an endpoint off the rule
    /// are refused where the gateway enforces them, and the gateway's
    /// record shows the body was (or, header-only, was not) read and the
    /// usage of both answers was.
    async fn verify_body_path(
        &self,
        upstream: &BodyUpstream,
        traffic: &Traffic,
    ) -> anyhow::Result<()> {
        let client = http_client();
        let sse = traffic.sse_answer();
        for g in &self.gateways {
            let v = g.variant;
            let log_start = file_len(&g.access_log);
            for (kind, answer) in [
                (Kind::Chat, traffic.json_answer.as_str()),
                (Kind::Stream, sse.as_str()),
            ] {
                let body = traffic.request(kind).sent.clone();
                let (status, got) = send(&client, g.entry, CHAT_PATH, body).await?;
                ensure!(
                    status == 200,
                    "{}: the allowed {kind:?} request got {status}",
                    v.slug()
                );
                ensure!(
                    got == answer.as_bytes(),
                    "{}: the {kind:?} answer reached the client changed ({} bytes, expected {})",
                    v.slug(),
                    got.len(),
                    answer.len()
                );
                self.check_upstream(v, kind)?;
            }
            let seen = upstream.requests();
            let (status, _) =
                send(&client, g.entry, CHAT_PATH, traffic.denied_model.clone()).await?;
            let reached = upstream.requests() > seen;
            ensure_refusal(v, v.checks_body(), "another model", status, reached)?;
            let seen = upstream.requests();
            let (status, _) =
                send(&client, g.entry, DENIED_PATH, traffic.chat.sent.clone()).await?;
            let reached = upstream.requests() > seen;
            ensure_refusal(v, v.enforces(), DENIED_PATH, status, reached)?;
            if v.records() {
                check_records(g, log_start).await?;
            }
        }
        println!(
            "checked: every gateway passes the JSON answer and the stream unchanged; the body-rule gateways forward \"max_tokens\":{MAX_OUTPUT_TOKENS} (the others {REQUESTED_MAX_TOKENS}) with the expected key and refuse another model; the policy gateways refuse {DENIED_PATH}; the records show usage read from both answers\n"
        );
        Ok(())
    }

    /// The upstream's last request carried the credential `v` must send
    /// and, on the body path, the body it must forward for `kind`.
    pub(crate) fn check_upstream(&self, v: Variant, kind: Kind) -> anyhow::Result<()> {
        let (key, body): (Option<Vec<u8>>, Option<(Bytes, &String)>) = match &self.llm {
            LlmSide::Mock { llm, .. } => {
                let last = llm
                    .last_request()
                    .ok_or_else(|| anyhow!("{}: nothing reached the mock LLM", v.slug()))?;
                (last.key, None)
            }
            LlmSide::Body { upstream, traffic } => {
                let last = upstream
                    .last_request()
                    .ok_or_else(|| anyhow!("{}: nothing reached the upstream", v.slug()))?;
                ensure!(
                    last.path == CHAT_PATH,
                    "{}: the upstream's last request was for {}",
                    v.slug(),
                    last.path
                );
                let key = last
                    .authorization
                    .as_deref()
                    .and_then(|a| a.strip_prefix(b"Bearer "))
                    .map(<[u8]>::to_vec);
                let r = traffic.request(kind);
                let expected = if v.checks_body() { &r.clamped } else { &r.sent };
                (key, Some((last.body, expected)))
            }
        };
        ensure!(
            key.as_deref() == Some(v.upstream_key().as_bytes()),
            "{}: the upstream did not receive the expected credential",
            v.slug()
        );
        if v == Variant::Lua {
            self.check_lua_errors()?;
        }
        if let Some((got, expected)) = body {
            ensure!(
                got.as_ref() == expected.as_bytes(),
                "{}: the upstream received a different {kind:?} body than expected:\n  got      {}\n  expected {}",
                v.slug(),
                String::from_utf8_lossy(&got),
                expected
            );
        }
        Ok(())
    }

    /// The Lua filter fails open (a script error lets the request through
    /// unchanged), so its error counter must exist and stay at zero.
    fn check_lua_errors(&self) -> anyhow::Result<()> {
        const ERRORS: &str = "http.egress.lua.errors";
        let g = self.gateway(Variant::Lua)?;
        let stats = g
            .envoy
            .stats(ERRORS)
            .with_context(|| format!("reading {ERRORS}"))?;
        let errors = stats
            .iter()
            .find(|(name, _)| name == ERRORS)
            .map(|(_, n)| *n)
            .ok_or_else(|| anyhow!("lua: the gateway has no {ERRORS} counter"))?;
        ensure!(
            errors == 0,
            "lua: the script failed {errors} times (see {})",
            g.envoy.log_path().display()
        );
        Ok(())
    }
}

/// `enforced`: the gateway must answer 403 itself; otherwise the request
/// must reach the upstream.
pub(crate) fn ensure_refusal(
    v: Variant,
    enforced: bool,
    what: &str,
    status: u16,
    reached: bool,
) -> anyhow::Result<()> {
    if !enforced {
        ensure!(
            reached,
            "{}: {what} did not reach the upstream ({status})",
            v.slug()
        );
    } else {
        ensure!(
            status == 403 && !reached,
            "{}: {what} got {status} and {} the upstream; expected a 403 from the gateway",
            v.slug(),
            if reached { "reached" } else { "did not reach" }
        );
    }
    Ok(())
}

/// The gateway's access log since `start` (bytes) holds, within 5 s (the
/// log is flushed every 250 ms), a record of the JSON exchange and one of
/// the stream with the answers' usage; with the body rule they say the
/// cap was clamped, and without it that the body was not read (no model).
async fn check_records(g: &Gateway, start: u64) -> anyhow::Result<()> {
    let v = g.variant;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = read_records(&g.access_log, start)?;
        let views: Vec<RecordView> = records.iter().map(|r| RecordView::of(v, r)).collect();
        let json = views.iter().find(|r| r.usage == json_usage());
        let stream = views.iter().find(|r| r.usage == stream_usage());
        if let (Some(json), Some(stream)) = (json, stream) {
            ensure!(
                json.cached_input == Some(JSON_USAGE.2),
                "{}: the JSON exchange's record lacks the cached input tokens: {json:?}",
                v.slug()
            );
            for (what, r) in [("JSON", json), ("stream", stream)] {
                if v.checks_body() {
                    ensure!(
                        r.model.as_deref() == Some(MODEL)
                            && r.clamped
                            && r.max_tokens_effective == Some(MAX_OUTPUT_TOKENS)
                            && r.max_tokens_requested == Some(REQUESTED_MAX_TOKENS),
                        "{}: the {what} exchange's record does not show the clamp: {r:?}",
                        v.slug()
                    );
                } else {
                    ensure!(
                        r.model.is_none() && r.max_tokens_requested.is_none(),
                        "{}: the {what} exchange's record shows the body was read: {r:?}",
                        v.slug()
                    );
                }
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{}: no record with the JSON answer's usage {:?} and the stream's {:?} in {} within 5 s; records seen: {views:?}",
                v.slug(),
                json_usage(),
                stream_usage(),
                g.access_log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Input, output and total tokens of the JSON answer.
fn json_usage() -> [Option<u64>; 3] {
    let (input, output, _, total) = JSON_USAGE;
    [Some(input), Some(output), Some(total)]
}

/// Input, output and total tokens of the streamed answer.
fn stream_usage() -> [Option<u64>; 3] {
    let (input, output, total) = STREAM_USAGE;
    [Some(input), Some(output), Some(total)]
}

/// What the checks read from one record, Tollgate's audit record or the
/// Lua script's (`request` and `response` objects).
#[derive(Debug, Default)]
struct RecordView {
    model: Option<String>,
    max_tokens_requested: Option<u64>,
    max_tokens_effective: Option<u64>,
    clamped: bool,
    /// Input, output and total tokens.
    usage: [Option<u64>; 3],
    cached_input: Option<u64>,
}

impl RecordView {
    fn of(v: Variant, record: &Value) -> Self {
        let (request, response) = if v == Variant::Lua {
            (&record["request"], &record["response"])
        } else {
            (record, record)
        };
        let usage = &response["usage"];
        RecordView {
            model: request["model"].as_str().map(str::to_string),
            max_tokens_requested: whole(&request["max_tokens_requested"]),
            max_tokens_effective: whole(&request["max_tokens_effective"]),
            clamped: request["clamped"].as_bool() == Some(true),
            usage: ["input", "output", "total"].map(|k| whole(&usage[k])),
            cached_input: whole(&usage["cached_input"]),
        }
    }
}

/// A JSON number that is a whole non-negative number (metadata numbers
/// are doubles).
fn whole(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15)
            .map(|f| f as u64)
    })
}

/// The `"tollgate"` member of each access-log line written after `start`
/// bytes (lines that are not JSON objects are skipped: a request refused
/// by rbac leaves no Lua record).
pub(crate) fn read_records(path: &Path, start: u64) -> anyhow::Result<Vec<Value>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let from = usize::try_from(start).unwrap_or(usize::MAX).min(text.len());
    Ok(text[from..]
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .map(|mut line| line["tollgate"].take())
        .filter(Value::is_object)
        .collect())
}

pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The Lua gateway's access-log format: the shipped one with the Lua
/// filter's dynamic metadata where Tollgate's audit record goes.
fn lua_access_log_format() -> anyhow::Result<String> {
    let (head, _) = AUDIT_LOG_FORMAT
        .split_once(r#""tollgate":"#)
        .ok_or_else(|| anyhow!("the audit log format has no \"tollgate\" member"))?;
    Ok(format!(
        "{head}\"tollgate\":%DYNAMIC_METADATA({LUA_NAMESPACE})%}}\n"
    ))
}

/// Replaces the one access-log format in `boot` (the string equal to
/// [`AUDIT_LOG_FORMAT`]) with `format`.
fn replace_access_log_format(boot: &mut Value, format: &str) -> anyhow::Result<()> {
    fn walk(v: &mut Value, format: &str, n: &mut usize) {
        match v {
            Value::String(s) if s == AUDIT_LOG_FORMAT => {
                *s = format.to_string();
                *n += 1;
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, format, n)),
            Value::Object(map) => map.values_mut().for_each(|i| walk(i, format, n)),
            _ => {}
        }
    }
    let mut n = 0;
    walk(boot, format, &mut n);
    ensure!(
        n == 1,
        "expected one access-log format in the bootstrap, found {n}"
    );
    Ok(())
}

/// Writes `boot` to the options' config file and starts Envoy on it, at
/// log level `warning` (plus the options' extra arguments).
fn start_envoy(mut eo: EnvoyOptions, boot: &Value) -> anyhow::Result<EnvoyProcess> {
    let dir = &eo.work_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&eo.config, serde_json::to_vec_pretty(boot)?)
        .with_context(|| format!("writing {}", eo.config.display()))?;
    eo.log_level = "warning".into();
    Ok(EnvoyProcess::start(&eo)?)
}

pub(crate) fn http_client() -> HttpClient {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}

/// The default mode's request ([`BODY`]) to `path`; its status.
async fn post(client: &HttpClient, entry: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let (status, _) = send(client, entry, path, BODY.to_string()).await?;
    Ok(status)
}

/// POSTs `body` to `path` through `entry` as the client does (JSON, the
/// client's placeholder key); the status and the whole answer.
pub(crate) async fn send(
    client: &HttpClient,
    entry: SocketAddr,
    path: &str,
    body: String,
) -> anyhow::Result<(u16, Bytes)> {
    let req = Request::post(format!("http://{entry}{path}"))
        .header(HOST, PROVIDER_HOST)
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, format!("Bearer {CLIENT_KEY}"))
        .body(Full::new(Bytes::from(body)))?;
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .with_context(|| format!("POST {path} via {entry}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("POST {path} via {entry}: reading the answer"))?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| anyhow!("POST {path} via {entry}: no answer within 10s"))?
}
