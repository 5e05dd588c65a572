//! Starting everything the benchmark needs, and checking each gateway
//! before anything is measured.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use serde_json::Value;

use crate::envoy::{
    envoy_binary, free_port, AccessLogSink, DevCa, EnvoyOptions, EnvoyProcess, GatewaySpec,
    Upstream,
};
use crate::mock::{MockCredentialService, MockLlm, ServedLlm, ServedMock};

use super::authz::AuthzService;
use super::cpu::{on_gateway_cpu, pid_running};
use super::gateways::{sidecar_bootstrap, spec_for, tollgate_policy, Variant};
use super::noop_wasm::noop_wasm;
use super::options::Options;
use super::signals::check_interrupted;
use super::{
    BODY, CHAT_PATH, CLIENT_KEY, CREDS_CLUSTER, DENIED_PATH, PROVIDER_HOST, REAL_KEY, WORKLOAD,
};

/// One running gateway.
pub(crate) struct Gateway {
    pub(crate) variant: Variant,
    pub(crate) envoy: EnvoyProcess,
    /// Envoy's pid, for its CPU time.
    pub(crate) pid: u32,
    /// The sidecar listener that leads to this gateway.
    pub(crate) entry: SocketAddr,
}

/// Everything that runs during the benchmark. Field order is drop order:
/// Envoys stop before the services they talk to.
pub(crate) struct Bench {
    pub(crate) _sidecar: EnvoyProcess,
    pub(crate) gateways: Vec<Gateway>,
    pub(crate) authz: AuthzService,
    pub(crate) llm: MockLlm,
    pub(crate) creds: MockCredentialService,
    pub(crate) _llm_served: ServedLlm,
    pub(crate) _creds_served: ServedMock,
    pub(crate) envoy_bin: PathBuf,
}

impl Bench {
    pub(crate) fn start(opts: &Options, rt: &tokio::runtime::Runtime) -> anyhow::Result<Self> {
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

        let mut base = GatewaySpec::tollgate(
            loopback,
            opts.wasm.clone(),
            tollgate_policy().to_string(),
            ca_file.clone(),
            server.cert.clone(),
            server.key.clone(),
            CREDS_CLUSTER.into(),
            creds_served.addr,
            Upstream::Mock(llm_served.addr),
        );
        base.concurrency = opts.concurrency;
        let mut gateways = Vec::new();
        let mut routes = Vec::new();
        for v in Variant::ALL {
            check_interrupted()?;
            let mut spec = spec_for(v, &base, &noop, authz.addr);
            if v == Variant::TollgateB {
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
            spec.access_log = Some(AccessLogSink::File(gw_dir.join("access.log")));
            let mut eo =
                spec.envoy_options(envoy_bin.clone(), gw_dir.join("envoy.json"), gw_dir.clone());
            eo.extra_args = vec!["--component-log-level".into(), v.wasm_log_level().into()];
            let envoy = on_gateway_cpu(opts.pin, || start_envoy(eo, &spec.bootstrap(0)))
                .with_context(|| format!("starting the {} gateway", v.slug()))?;
            let pid = pid_running(&gw_dir.join("envoy.json"))?;
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

    pub(crate) fn gateway(&self, v: Variant) -> anyhow::Result<&Gateway> {
        self.gateways
            .iter()
            .find(|g| g.variant == v)
            .ok_or_else(|| anyhow!("no {} gateway", v.slug()))
    }

    /// One allowed and one refused request per gateway, before measuring.
    /// For Tollgate the allowed one also fills the credential cache.
    pub(crate) async fn verify(&self) -> anyhow::Result<()> {
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
    pub(crate) fn check_upstream_key(&self, v: Variant) -> anyhow::Result<()> {
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
