//! `make run` as a user runs it: `tollgate-harness gateway` starts Envoy with
//! Tollgate, prints working snippets, and stops everything on Ctrl-C; and
//! the `UPSTREAM=providers` configuration is one Envoy accepts; with
//! `CREDENTIALS=openbao` the keys come through a real `bao agent`, and the
//! printed rotation command really rotates the key the gateway uses.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tollgate_harness::envoy::{envoy_binary, AccessLogSink, GatewaySpec, Upstream};

mod common;
use common::{root, wasm};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a printed curl command line (a `\`-continued block) through sh.
fn run_curl(block: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(block)
        .current_dir(root())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The curl block that follows the line starting with `marker`.
fn curl_after(printed: &str, marker: &str) -> String {
    let mut lines = printed
        .lines()
        .skip_while(|l| !l.starts_with(marker))
        .skip(1);
    let mut block = String::new();
    for l in lines.by_ref() {
        block.push_str(l);
        block.push('\n');
        if !l.ends_with('\\') {
            break;
        }
    }
    block
}

/// `tollgate-harness gateway` as `make run` starts it, with `extra`
/// arguments, until it has printed `ready_marker`: the child, what it
/// printed, its state directory and listener port.
fn start_gateway(
    policy: &str,
    extra: &[&str],
    ready_marker: &str,
) -> (std::process::Child, String, PathBuf, u16) {
    let state = std::env::temp_dir().join(format!(
        "tollgate-run-{}-{}",
        std::process::id(),
        extra.join("-")
    ));
    let _ = std::fs::remove_dir_all(&state);
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-harness"))
        .current_dir(root())
        .args(["gateway", "--wasm"])
        .arg(wasm())
        .args(["--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
        .arg(&state)
        .args(extra)
        .arg(policy)
        .env_remove("TOLLGATE_KEYS_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !printed.contains(ready_marker) {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("gateway did not come up; printed so far:\n{printed}"));
        printed.push_str(&line);
        printed.push('\n');
    }
    (child, printed, state, port)
}

/// Ctrl-C: the gateway and everything it started stop, cleanly, and the
/// listener port is free again.
fn stop_gateway(mut child: std::process::Child, port: u16) {
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "gateway did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit on Ctrl-C: {status}");
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "Envoy released the listener port"
    );
}

#[test]
fn make_run_prints_working_snippets_and_stops_cleanly_on_ctrl_c() {
    let (child, printed, state, port) = start_gateway(
        "mesh-config/local/policy.json",
        &[],
        "Ctrl-C stops everything",
    );

    let allowed = run_curl(&curl_after(&printed, "# curl, as the allowed workload"));
    assert!(
        allowed.contains("Hello from the mock"),
        "allowed curl: {allowed}"
    );
    let denied = run_curl(&curl_after(&printed, "# curl, as the denied workload"));
    assert!(denied.contains("403"), "denied curl: {denied}");
    assert!(
        denied.contains("x-tollgate-reason: workload_not_permitted"),
        "denied curl: {denied}"
    );
    assert!(
        !printed.contains("sk-demo-"),
        "no real (demo) key is ever printed"
    );

    // Ctrl-C: the gateway, Envoy and the mocks stop; the port is free again.
    stop_gateway(child, port);
    let log = std::fs::read_to_string(state.join("gateway/envoy.log")).unwrap_or_default();
    assert!(!log.contains("sk-demo-"), "no key in Envoy's log");
    // The access log (its path is printed) has one JSON line per request,
    // and no key either. Envoy flushed it when it stopped.
    let access = std::fs::read_to_string(state.join("gateway/access.log")).unwrap_or_default();
    assert!(
        printed.contains(&state.join("gateway/access.log").display().to_string()),
        "the access log's path is printed:\n{printed}"
    );
    let lines: Vec<serde_json::Value> = access
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "one line per curl:\n{access}");
    assert!(
        lines.iter().any(|l| l["status"] == 403) && lines.iter().any(|l| l["status"] == 200),
        "{access}"
    );
    assert!(!access.contains("sk-demo-"), "no key in the access log");
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn the_providers_upstream_configuration_passes_envoy_validation() {
    let dir = std::env::temp_dir().join(format!("tollgate-providers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = tollgate_harness::envoy::DevCa::generate("validate").unwrap();
    let server = ca
        .issue_server(&["localhost"], &[])
        .unwrap()
        .write(&dir, "gw")
        .unwrap();
    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
    let mut spec = GatewaySpec::tollgate(
        "127.0.0.1:10443".parse().unwrap(),
        wasm(),
        std::fs::read_to_string(root().join("mesh-config/local/policy.json")).unwrap(),
        dir.join("ca.crt"),
        server.cert,
        server.key,
        "tollgate-credentials".into(),
        "127.0.0.1:8200".parse().unwrap(),
        Upstream::Providers {
            ca_bundle: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        },
    );
    spec.access_log = Some(AccessLogSink::Stdout);
    let cfg = dir.join("providers.json");
    std::fs::write(&cfg, serde_json::to_vec_pretty(&spec.bootstrap(0)).unwrap()).unwrap();
    let out = Command::new(envoy_binary(&root()).unwrap())
        .args(["--mode", "validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "envoy --mode validate:\n{text}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    let hcm =
        &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(
        hcm["common_http_protocol_options"]["headers_with_underscores_action"],
        "REJECT_REQUEST"
    );
    assert_eq!(
        hcm["access_log"][0]["name"], "envoy.access_loggers.stdout",
        "the access log can go to stdout"
    );
    let clusters = v["static_resources"]["clusters"].as_array().unwrap();
    for host in [
        "api.openai.com",
        "api.anthropic.com",
        "generativelanguage.googleapis.com",
    ] {
        let c = clusters
            .iter()
            .find(|c| c["transport_socket"]["typed_config"]["sni"] == host)
            .unwrap_or_else(|| panic!("no TLS-originating cluster for {host}"));
        assert_eq!(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"],
            443
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn make_run_with_openbao_serves_its_keys_and_the_printed_rotation_works() {
    let (child, printed, state, port) = start_gateway(
        "mesh-config/local/policy-openbao.json",
        &["--credentials", "openbao"],
        "kv delete",
    );
    let allowed = run_curl(&curl_after(&printed, "# curl, as the allowed workload"));
    assert!(
        allowed.contains("Hello from the mock"),
        "allowed curl: {allowed}"
    );
    let token = std::fs::read_to_string(state.join("openbao/root-token")).expect("root token file");
    assert!(
        !printed.contains(token.trim()),
        "the root token is never printed"
    );
    assert!(!printed.contains("sk-demo-"), "no key is printed");

    // The printed rotation, as a user would paste it.
    let export = printed
        .lines()
        .find(|l| l.trim_start().starts_with("export BAO_ADDR="))
        .expect("the export line");
    let put = printed
        .lines()
        .find(|l| l.contains(" kv put "))
        .expect("the kv put line");
    let rotated = run_curl(&format!("{export}\n{put}\n"));
    assert!(
        rotated.contains("version") && rotated.contains('2'),
        "kv put: {rotated}"
    );

    // Within refresh_ahead the gateway uses version 2 (the policy's key
    // is refreshed from 10 s of age), with no failed request meanwhile.
    let access = state.join("gateway/access.log");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = run_curl(&curl_after(&printed, "# curl, as the allowed workload"));
        assert!(
            out.contains("Hello from the mock"),
            "during rotation: {out}"
        );
        let log = std::fs::read_to_string(&access).unwrap_or_default();
        if log.contains("\"credential_id\":\"openai@v2\"") {
            break;
        }
        assert!(Instant::now() < deadline, "version 2 never used:\n{log}");
        std::thread::sleep(Duration::from_millis(1000));
    }
    stop_gateway(child, port);
    let log = std::fs::read_to_string(state.join("gateway/envoy.log")).unwrap_or_default();
    assert!(
        !log.contains("sk-demo-") && !log.contains("sk-rotated-"),
        "no key in Envoy's log"
    );
    assert!(!log.contains(token.trim()), "no token in Envoy's log");
    let _ = std::fs::remove_dir_all(&state);
}
