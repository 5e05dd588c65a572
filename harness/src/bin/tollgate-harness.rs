//! `tollgate-harness`: try a Tollgate policy without Envoy.
//!
//! ```text
//! tollgate-harness check  [--wasm FILE] POLICY.json...
//! tollgate-harness decide [--wasm FILE] --config POLICY.json --spiffe ID
//!                         [--method M] --url https://host/path [-H 'name: value']... [-d BODY|@FILE] [--no-mtls]
//! tollgate-harness demo   [--wasm FILE] POLICY.json [REQUESTS.json]
//! tollgate-harness gateway [--wasm FILE] [--listen ADDR] [--upstream mock|providers] [--credentials mock|openbao]
//!                         [--concurrency N] [--state-dir DIR] POLICY.json
//! tollgate-harness spend  [--window minute|hour|day|month] [--at PREFIX] ACCESS.log
//! tollgate-harness ratelimit [--listen ADDR] [--redis URL] [--hold-ttl 900s] [--timeout 250ms]
//! ```
//!
//! `spend` reports each workload's spend in one UTC window (by default the
//! day of the log's latest line) from Envoy's access log: see
//! `tollgate_harness::spend`.
//!
//! `gateway` is `make run`: the real Envoy from the project venv with
//! Tollgate, an mTLS listener, the mock credential service and (unless
//! `--upstream providers`) the mock LLM; see `tollgate_harness::envoy`.
//!
//! The real `tollgate.wasm` runs in the harness; the credential service is
//! the in-process mock (keys from `TOLLGATE_KEY_<NAME>`, `TOLLGATE_KEYS_FILE`,
//! or demo keys). Output never shows a credential: credential headers are
//! masked.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;
use tollgate_harness::mock::{MockCredentialService, MockRateLimit};
use tollgate_harness::{Gateway, Module, Outcome, StartError};

const DEFAULT_WASM: &str = "target/wasm32-wasip1/release/tollgate.wasm";
const ALWAYS_MASKED: [&str; 4] = ["authorization", "x-api-key", "x-goog-api-key", "api-key"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("check") => check(&args[1..]),
        Some("decide") => decide(&args[1..]),
        Some("demo") => demo(&args[1..]),
        Some("gateway") => gateway(&args[1..]),
        Some("spend") => spend(&args[1..]),
        Some("ratelimit") => ratelimit(&args[1..]),
        _ => Err(usage()),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::from(2)
        }
    }
}

fn usage() -> String {
    "usage:\n  tollgate-harness check  [--wasm FILE] POLICY.json...\n  tollgate-harness decide [--wasm FILE] --config POLICY.json --spiffe ID [--method M] --url URL [-H 'name: value']... [-d BODY|@FILE] [--no-mtls]\n  tollgate-harness demo   [--wasm FILE] POLICY.json [REQUESTS.json]\n  tollgate-harness gateway [--wasm FILE] [--listen ADDR] [--upstream mock|providers] [--credentials mock|openbao] [--concurrency N] [--state-dir DIR] POLICY.json\n  tollgate-harness spend  [--window minute|hour|day|month] [--at PREFIX] ACCESS.log\n  tollgate-harness ratelimit [--listen ADDR] [--redis URL] [--hold-ttl 900s] [--timeout 250ms]".into()
}

/// Envoy's rate-limit gRPC service (h2c) on limitador and Redis, until
/// Ctrl-C: see `tollgate_harness::ratelimit`.
fn ratelimit(args: &[String]) -> Result<ExitCode, String> {
    use tollgate_harness::ratelimit::{parse_duration, serve_with_shutdown, RateLimitConfig};
    let mut config = RateLimitConfig::default();
    let mut listen = "127.0.0.1:8081".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |what: &str| it.next().cloned().ok_or(format!("{a} needs {what}"));
        let mut duration = |what: &str| {
            let v = val(what)?;
            parse_duration(&v).ok_or(format!("{a}: {v:?} is not a duration like 250ms or 900s"))
        };
        match a.as_str() {
            "--listen" => listen = val("an address")?,
            "--redis" => config.redis_url = val("a URL like redis://127.0.0.1:6379")?,
            "--hold-ttl" => config.hold_ttl = duration("a duration")?,
            "--timeout" => config.timeout = duration("a duration")?,
            other => return Err(format!("unexpected argument {other:?}\n{}", usage())),
        }
    }
    let listen: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| format!("--listen: {listen:?} is not an address like 127.0.0.1:8081"))?;
    tollgate_harness::ratelimit::TollgateRateLimit::new(&config)
        .map_err(|e| format!("ratelimit: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("--listen {listen}: {e}"))?;
        println!(
            "ratelimit: grpc://{listen} (h2c), redis {}, hold TTL {:?}, timeout {:?}; Ctrl-C stops",
            config.redis_url, config.hold_ttl, config.timeout
        );
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve_with_shutdown(listener, config, ctrl_c)
            .await
            .map_err(|e| format!("ratelimit: {e}"))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Each workload's spend in one window, from an access log.
fn spend(args: &[String]) -> Result<ExitCode, String> {
    let mut window = "day".to_string();
    let mut at = None;
    let mut log = None;
    // `--wasm` is accepted (every command takes it) and not needed.
    let rest = opts(args)?.rest;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--window" => {
                window = it
                    .next()
                    .ok_or("--window needs minute, hour, day or month")?
                    .clone()
            }
            "--at" => {
                at = Some(
                    it.next()
                        .ok_or("--at needs a start_time prefix, e.g. 2026-11-30")?
                        .clone(),
                )
            }
            _ if log.is_none() && !a.starts_with("--") => log = Some(PathBuf::from(a)),
            other => return Err(format!("unexpected argument {other:?}\n{}", usage())),
        }
    }
    let len = tollgate_harness::spend::prefix_len(&window)
        .ok_or_else(|| format!("--window must be minute, hour, day or month, not {window:?}"))?;
    if at.as_ref().is_some_and(|a: &String| a.len() != len) {
        return Err(format!(
            "--at for a {window} window is {len} characters (e.g. {})",
            &"2026-11-30T06:22"[..len]
        ));
    }
    let log = log.ok_or_else(usage)?;
    let file =
        std::fs::File::open(&log).map_err(|e| format!("cannot read {}: {e}", log.display()))?;
    let r = tollgate_harness::spend::report(std::io::BufReader::new(file), len, at.as_deref())
        .map_err(|e| format!("cannot read {}: {e}", log.display()))?;
    print!("{}", tollgate_harness::spend::render(&r, &window));
    Ok(ExitCode::SUCCESS)
}

/// Options common to all commands, plus what is left.
struct Opts {
    wasm: PathBuf,
    rest: Vec<String>,
}

fn opts(args: &[String]) -> Result<Opts, String> {
    let mut wasm = PathBuf::from(DEFAULT_WASM);
    let mut rest = vec![];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--wasm" {
            wasm = it.next().ok_or("--wasm needs a file")?.into();
        } else {
            rest.push(a.clone());
        }
    }
    Ok(Opts { wasm, rest })
}

fn load(path: &PathBuf) -> Result<std::sync::Arc<Module>, String> {
    Module::load(path).map_err(|e| {
        format!(
            "cannot load {} ({e:#}); run `make build` first",
            path.display()
        )
    })
}

fn read_policy(path: &str) -> Result<(String, Value), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok((text, json))
}

/// A gateway running `policy`, with the mock credential service on its cluster.
fn start(
    module: std::sync::Arc<Module>,
    policy_text: &str,
    policy: &Value,
) -> Result<Gateway, StartError> {
    let cluster = policy["credential_service"]["cluster"]
        .as_str()
        .unwrap_or("tollgate-credentials")
        .to_string();
    let creds = MockCredentialService::from_env_or_demo();
    if let Some(field) = policy["credential_service"]["vault"]["field"].as_str() {
        creds.set_vault_field(field);
    }
    // As every configuration we ship: the request is held until its body
    // has passed the policy.
    let mut builder = Gateway::builder(module)
        .allow_on_headers_stop_iteration(true)
        .plugin_config(policy_text.as_bytes().to_vec())
        .cluster_handler(&cluster, creds.handler());
    // Global budgets: an in-memory rate-limit service (no Redis needed here).
    if let Some(rls) = policy["rate_limit_service"]["cluster"].as_str() {
        builder = builder.cluster_grpc_handler(rls, MockRateLimit::new().handler());
    }
    builder.build()
}

fn check(args: &[String]) -> Result<ExitCode, String> {
    let o = opts(args)?;
    if o.rest.is_empty() {
        return Err(usage());
    }
    let module = load(&o.wasm)?;
    let mut ok = true;
    for path in &o.rest {
        let (text, json) = read_policy(path)?;
        match start(module.clone(), &text, &json) {
            Ok(_) => println!("{path}: ok"),
            Err(StartError::ConfigureRejected { logs }) => {
                ok = false;
                println!("{path}: rejected");
                for l in logs
                    .iter()
                    .filter(|l| l.message.contains("invalid configuration"))
                {
                    println!(
                        "  {}",
                        l.message
                            .trim_start_matches("tollgate: invalid configuration: ")
                    );
                }
            }
            Err(e) => return Err(format!("{path}: the harness could not start: {e:?}")),
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One request to try.
struct Trial {
    spiffe: Option<String>,
    mtls: bool,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    /// The request body; none: the headers end the request.
    body: Option<Vec<u8>>,
}

fn decide(args: &[String]) -> Result<ExitCode, String> {
    let o = opts(args)?;
    let mut config = None;
    let mut t = Trial {
        spiffe: None,
        mtls: true,
        method: "POST".into(),
        url: String::new(),
        headers: vec![],
        body: None,
    };
    let mut it = o.rest.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--config" => config = Some(val()?),
            "--spiffe" => t.spiffe = Some(val()?),
            "--method" | "-X" => t.method = val()?,
            "--url" => t.url = val()?,
            "-H" | "--header" => {
                let h = val()?;
                let (k, v) = h
                    .split_once(':')
                    .ok_or(format!("header {h:?} must be 'name: value'"))?;
                t.headers
                    .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
            "-d" | "--data" => {
                let d = val()?;
                t.body = Some(match d.strip_prefix('@') {
                    Some(file) => std::fs::read(file).map_err(|e| format!("{file}: {e}"))?,
                    None => d.into_bytes(),
                });
            }
            "--no-mtls" => t.mtls = false,
            other => return Err(format!("unknown option {other}\n{}", usage())),
        }
    }
    let config = config.ok_or("--config is required")?;
    if t.url.is_empty() {
        return Err("--url is required".into());
    }
    let module = load(&o.wasm)?;
    let (text, json) = read_policy(&config)?;
    let mut gw =
        start(module, &text, &json).map_err(|e| format!("{config}: policy rejected: {e:?}"))?;
    let allowed = run_trial(&mut gw, &json, &t)?;
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn demo(args: &[String]) -> Result<ExitCode, String> {
    let o = opts(args)?;
    let policy = o.rest.first().ok_or_else(usage)?;
    let requests = o.rest.get(1).cloned().unwrap_or_else(|| {
        PathBuf::from(policy)
            .with_file_name("demo-requests.json")
            .to_string_lossy()
            .into_owned()
    });
    let module = load(&o.wasm)?;
    let (text, json) = read_policy(policy)?;
    let mut gw =
        start(module, &text, &json).map_err(|e| format!("{policy}: policy rejected: {e:?}"))?;
    let list: Value = serde_json::from_str(
        &std::fs::read_to_string(&requests).map_err(|e| format!("{requests}: {e}"))?,
    )
    .map_err(|e| format!("{requests}: {e}"))?;
    println!("Tollgate demo: policy {policy}, requests {requests}\n");
    for r in list
        .as_array()
        .ok_or(format!("{requests}: expected a JSON array"))?
    {
        let t = Trial {
            spiffe: r["spiffe"].as_str().map(String::from),
            mtls: r["mtls"].as_bool().unwrap_or(true),
            method: r["method"].as_str().unwrap_or("POST").into(),
            url: r["url"].as_str().unwrap_or_default().into(),
            headers: r["headers"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            (
                                k.to_ascii_lowercase(),
                                v.as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            // A JSON body as a value, or any body as a string.
            body: match &r["body"] {
                Value::Null => None,
                Value::String(b) => Some(b.clone().into_bytes()),
                v => Some(v.to_string().into_bytes()),
            },
        };
        if let Some(note) = r["note"].as_str() {
            println!("# {note}");
        }
        run_trial(&mut gw, &json, &t)?;
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one request and prints what happened. True when it was forwarded.
fn run_trial(gw: &mut Gateway, policy: &Value, t: &Trial) -> Result<bool, String> {
    let (scheme, authority, path) = split_url(&t.url)?;
    let before = gw.logs().len();
    let mut rb = gw
        .request(0)
        .method(&t.method)
        .scheme(scheme)
        .authority(&authority)
        .path(&path)
        .mtls(t.mtls);
    if let Some(id) = &t.spiffe {
        rb = rb.peer_uri_san(id);
    }
    for (k, v) in &t.headers {
        rb = rb.header(k, v);
    }
    if let Some(body) = &t.body {
        if !t.headers.iter().any(|(k, _)| k == "content-type") {
            rb = rb.header("content-type", "application/json");
        }
        if !t.headers.iter().any(|(k, _)| k == "content-length") {
            rb = rb.header("content-length", body.len().to_string());
        }
        rb = rb.body(body.clone());
    }
    let id = rb.send();
    gw.settle();
    // Let any cross-worker wait or slow fetch finish.
    for _ in 0..50 {
        if !matches!(gw.outcome(id), Outcome::Pending) {
            break;
        }
        gw.advance(std::time::Duration::from_millis(100));
    }
    // A forwarded request's record is final at its stream's end (the real
    // upstream is not called here): end the stream, as a client closing it.
    let outcome = gw.outcome(id);
    if matches!(outcome, Outcome::Forwarded(_)) {
        gw.cancel(id);
    }
    // The audit record, where Envoy's access log reads it (filter state), or
    // in the log for a policy that sets `audit_log: proxy_log`.
    let audit = gw
        .filter_state(id, "wasm.tollgate.audit")
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .or_else(|| {
            gw.logs()[before..]
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(&l.message).ok())
                .find(|v| v["event"] == "tollgate.request")
        })
        .unwrap_or(Value::Null);
    println!(
        "request:  {} {} as {}",
        t.method,
        mask_query_key(&t.url),
        t.spiffe.as_deref().unwrap_or("(no identity)")
    );
    println!("decision: {}", audit["decision"].as_str().unwrap_or("?"));
    if let Some(r) = audit["reason"].as_str() {
        println!("reason:   {r}");
    }
    if let Some(r) = audit["rule"].as_str() {
        println!("rule:     {r}");
    }
    if let Some(c) = audit["credential_id"].as_str() {
        println!(
            "key id:   {c} ({})",
            audit["credential_fp"].as_str().unwrap_or("")
        );
    }
    // What DLP found: detector names and counts, never the text.
    for d in audit["dlp"].as_array().into_iter().flatten() {
        println!(
            "dlp:      {} x{}",
            d["detector"].as_str().unwrap_or("?"),
            d["count"]
        );
    }
    let masked = masked_headers(policy);
    match outcome {
        Outcome::Forwarded(f) => {
            println!("upstream headers:");
            for (k, v) in &f.headers {
                let k = String::from_utf8_lossy(k);
                let v = if masked.iter().any(|m| m == &k) {
                    mask(v)
                } else {
                    String::from_utf8_lossy(v).into_owned()
                };
                println!("  {k}: {v}");
            }
            if !f.body.is_empty() {
                println!("upstream body: {}", String::from_utf8_lossy(&f.body));
            }
            Ok(true)
        }
        Outcome::LocalReply(r) => {
            println!(
                "reply:    {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            Ok(false)
        }
        Outcome::Pending => {
            println!("reply:    (still pending)");
            Ok(false)
        }
    }
}

fn masked_headers(policy: &Value) -> Vec<String> {
    let mut m: Vec<String> = ALWAYS_MASKED.iter().map(|s| s.to_string()).collect();
    for p in policy["providers"].as_array().into_iter().flatten() {
        if let Some(h) = p["header"]["name"].as_str() {
            m.push(h.to_ascii_lowercase());
        }
    }
    m
}

/// Keeps a scheme word (`Bearer `) and hides the rest.
fn mask(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    match s.split_once(' ') {
        Some((scheme, _)) if scheme.len() <= 10 => format!("{scheme} ****(masked)"),
        _ => "****(masked)".into(),
    }
}

/// Hides the value of any `key=` query parameter (a Gemini API key).
fn mask_query_key(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("key") => format!("{k}=****(masked)"),
            _ => p.to_string(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// `(scheme, authority, path)` of an `http://` or `https://` URL.
fn split_url(url: &str) -> Result<(&'static str, String, String), String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        ("http", rest)
    } else {
        return Err(format!("url {url:?} must start with http:// or https://"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((scheme, authority.to_string(), path.to_string()))
}

/// `make run`: Envoy with Tollgate on an mTLS loopback listener, until Ctrl-C.
fn gateway(args: &[String]) -> Result<ExitCode, String> {
    use tollgate_harness::envoy::local_run::{run, Credentials, RunOptions};
    use tollgate_harness::envoy::UpstreamChoice;
    let o = opts(args)?;
    let mut listen = "127.0.0.1:10443".to_string();
    let mut upstream = UpstreamChoice::Mock;
    let mut concurrency = 2u32;
    let mut state_dir = PathBuf::from(".run");
    let mut credentials = Credentials::Mock;
    let mut policy = None;
    let mut it = o.rest.iter();
    while let Some(a) = it.next() {
        let mut val = |what: &str| it.next().cloned().ok_or(format!("{a} needs {what}"));
        match a.as_str() {
            "--listen" => listen = val("an address")?,
            "--upstream" => {
                upstream = match val("mock or providers")?.as_str() {
                    "mock" => UpstreamChoice::Mock,
                    "providers" => UpstreamChoice::Providers,
                    other => {
                        return Err(format!(
                            "--upstream must be mock or providers, not {other:?}"
                        ))
                    }
                }
            }
            "--concurrency" => {
                concurrency = val("a number")?
                    .parse()
                    .map_err(|_| "--concurrency needs a number")?
            }
            "--state-dir" => state_dir = val("a directory")?.into(),
            "--credentials" => {
                credentials = match val("mock or openbao")?.as_str() {
                    "mock" => Credentials::Mock,
                    "openbao" => Credentials::OpenBao,
                    other => {
                        return Err(format!(
                            "--credentials must be mock or openbao, not {other:?}"
                        ))
                    }
                }
            }
            p if policy.is_none() && !p.starts_with('-') => policy = Some(PathBuf::from(p)),
            other => return Err(format!("unexpected argument {other:?}\n{}", usage())),
        }
    }
    let policy = policy.ok_or_else(usage)?;
    let listen = listen
        .parse()
        .map_err(|_| format!("--listen: {listen:?} is not an address like 127.0.0.1:10443"))?;
    let creds = MockCredentialService::try_from_env_or_demo().map_err(|e| e.to_string())?;
    if upstream == UpstreamChoice::Providers {
        println!(
            "upstream: the real providers (keys from TOLLGATE_KEY_<NAME> / TOLLGATE_KEYS_FILE)"
        );
    }
    let root = std::env::current_dir().map_err(|e| e.to_string())?;
    // Absolute, so the printed snippets work from any directory.
    let state_dir = root.join(state_dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run(
        RunOptions {
            repo_root: root,
            wasm: o.wasm,
            policy,
            listen,
            upstream,
            concurrency,
            state_dir,
            credentials,
        },
        creds,
    ))
    .map_err(|e| format!("gateway: {e:#}"))?;
    Ok(ExitCode::SUCCESS)
}
