//! VM lifecycle and the rest of the ABI: configuration, traps, ticks, shared
//! data, metrics, queues, properties, logs, WASI, memory safety.

mod common;
use common::*;
use std::time::{Duration, UNIX_EPOCH};
use tollgate_harness::{Gateway, LogLevel, Module, StartError};

#[test]
fn rejected_configuration_fails_the_build_with_logs() {
    match gw("reject").workers(2).build() {
        Err(StartError::ConfigureRejected { logs }) => {
            assert!(
                logs.iter().any(|l| l.message.contains("probe rejects")),
                "{logs:?}"
            );
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("the build should fail"),
    }
    assert!(matches!(
        gw("").vm_config("reject").build(),
        Err(StartError::ConfigureRejected { .. })
    ));
}

#[test]
fn reconfigure_reports_the_guest_verdict() {
    let mut gw = gw("").build().unwrap();
    assert!(!gw.reconfigure(0, "reject"));
    assert!(gw.reconfigure(0, "tick=50"));
    assert_eq!(gw.tick_period(0), Some(Duration::from_millis(50)));
}

#[test]
fn a_trap_kills_the_vm_and_later_requests_get_503() {
    let mut gw = gw("").build().unwrap();
    let id = gw.request(0).header("x-probe", "panic").send();
    let r = gw.outcome(id).expect_reply().clone();
    assert_eq!((r.status, r.details.as_str()), (503, "wasm_fail_stream"));
    let trap = gw.trap().expect("a trap is recorded");
    assert!(trap.contains("probe was asked to panic"), "{trap}");
    let next = gw.request(0).send();
    let r = gw.outcome(next).expect_reply().clone();
    assert_eq!((r.status, r.details.as_str()), (503, "wasm_vm_failed"));
}

#[test]
fn a_runaway_callback_is_interrupted_as_a_trap() {
    let mut gw = gw("")
        .guest_time_limit(Duration::from_millis(300))
        .build()
        .unwrap();
    let id = gw.request(0).header("x-probe", "spin").send();
    assert_eq!(gw.outcome(id).expect_reply().details, "wasm_fail_stream");
    assert!(gw.trap().unwrap().contains("proxy_on_request_headers"));
}

#[test]
fn ticks_follow_the_virtual_clock_on_every_worker() {
    let mut gw = gw("tick=1000").workers(2).build().unwrap();
    assert_eq!(gw.tick_period(1), Some(Duration::from_secs(1)));
    assert_eq!(gw.metric("probe_ticks"), None);
    gw.advance(Duration::from_millis(3500));
    assert_eq!(gw.metric("probe_ticks"), Some(6));
    let start_ms = gw.now().duration_since(UNIX_EPOCH).unwrap().as_millis() - 3500;
    assert_logged(&gw, &format!("probe tick n=3 now_ms={}", start_ms + 3000));
    assert_no_trap(&gw);
}

#[test]
fn tick_period_set_from_an_http_context_applies_to_the_root() {
    let mut gw = gw("").build().unwrap();
    gw.request(0).header("x-probe", "tick:200").send();
    assert_eq!(gw.tick_period(0), Some(Duration::from_millis(200)));
    gw.advance(Duration::from_millis(400));
    assert_eq!(gw.metric("probe_ticks"), Some(2));
}

#[test]
fn a_tick_wakes_parked_requests_through_the_effective_context() {
    let mut gw = gw("tick=100").build().unwrap();
    let id = gw.request(0).header("x-probe", "park-root").send();
    gw.outcome(id).expect_pending();
    gw.advance(Duration::from_millis(100));
    assert_eq!(
        gw.outcome(id)
            .expect_forwarded()
            .header_str("x-woken-by")
            .as_deref(),
        Some("tick")
    );
    assert_no_trap(&gw);
}

#[test]
fn shared_data_is_shared_across_workers_with_cas() {
    let mut gw = gw("").workers(2).build().unwrap();
    gw.request(0).header("x-probe", "sd-set:k=v1").send();
    gw.request(1).header("x-probe", "sd-get:k").send();
    assert_logged(&gw, "probe sd-get k: v1 cas=");
    gw.request(1).header("x-probe", "sd-stale:k=v2").send();
    assert_logged(&gw, "probe sd-stale k: first=Ok second=CasMismatch");
    assert_eq!(gw.shared_data("k").as_deref(), Some(&b"v2"[..]));
    gw.request(0).header("x-probe", "sd-get:missing").send();
    assert_logged(&gw, "probe sd-get missing: NotFound");
    assert_no_trap(&gw);
}

#[test]
fn metrics_are_one_store_across_workers() {
    let mut gw = gw("").workers(2).build().unwrap();
    gw.request(0)
        .header("x-probe", "metric:reqs;gauge:g=5;hist:h=3")
        .send();
    gw.request(1)
        .header("x-probe", "metric:reqs=2;hist:h=4")
        .send();
    assert_eq!(gw.metric("reqs"), Some(3));
    assert_eq!(gw.metric("g"), Some(5));
    assert_eq!(gw.histogram("h"), Some(vec![3, 4]));
    assert_eq!(gw.metrics().get("reqs"), Some(&3));
    assert_no_trap(&gw);
}

#[test]
fn queue_ready_is_delivered_to_the_registrant() {
    let mut gw = gw("queue=q1").build().unwrap();
    gw.request(0).header("x-probe", "enqueue:q1=hello").send();
    gw.settle();
    assert_logged(&gw, "probe queue 1: hello");
}

#[test]
fn properties_come_from_the_stream_and_the_plugin() {
    let mut gw = gw("").build().unwrap();
    gw.request(0)
        .mtls(true)
        .peer_uri_san("spiffe://td/ns/a/sa/b")
        .path("/v1/x?y=1")
        .header("x-probe", "prop:connection.mtls;prop:connection.uri_san_peer_certificate;prop:plugin_vm_id;prop:request.url_path;prop:nope.x")
        .send();
    assert_logged(&gw, "probe prop connection.mtls: \u{1} len=1");
    assert_logged(
        &gw,
        "probe prop connection.uri_san_peer_certificate: spiffe://td/ns/a/sa/b len=21",
    );
    assert_logged(&gw, "probe prop plugin_vm_id: probe-vm len=8");
    assert_logged(&gw, "probe prop request.url_path: /v1/x len=5");
    assert_logged(&gw, "probe prop nope.x: NotFound");
    gw.request(0)
        .header(
            "x-probe",
            "prop:connection.mtls;prop:connection.uri_san_peer_certificate",
        )
        .send();
    assert_logged(&gw, "probe prop connection.mtls: \u{0} len=1");
    assert_logged(
        &gw,
        "probe prop connection.uri_san_peer_certificate: NotFound",
    );
}

#[test]
fn logs_respect_the_level_and_name_worker_and_context() {
    let mut gw = gw("").workers(2).build().unwrap();
    let id = gw
        .request(1)
        .header("x-probe", "log:debug:quiet;log:warn:loud")
        .send();
    assert_not_logged(&gw, "quiet");
    let line = gw.logs().into_iter().find(|l| l.message == "loud").unwrap();
    assert_eq!(
        (line.worker, line.context_id, line.level),
        (1, id.context_id(), LogLevel::Warn)
    );
    let mut verbose = common::gw("").log_level(LogLevel::Debug).build().unwrap();
    verbose
        .request(0)
        .header("x-probe", "log:debug:quiet")
        .send();
    assert_logged(&verbose, "quiet");
}

#[test]
fn wasi_output_and_clocks_are_captured_and_virtual() {
    let mut gw = gw("").build().unwrap();
    gw.request(0)
        .header("x-probe", "stdout:hello-out;stderr:hello-err;time")
        .send();
    let logs = gw.logs();
    assert!(logs
        .iter()
        .any(|l| l.message == "hello-out" && l.level == LogLevel::Info));
    assert!(logs
        .iter()
        .any(|l| l.message == "hello-err" && l.level == LogLevel::Error));
    let ms = gw.now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    assert_logged(&gw, &format!("probe time: host_ms={ms} wasi_ms={ms}"));
}

#[test]
fn out_of_bounds_pointers_get_a_status_not_a_host_panic() {
    let mut gw = gw("").build().unwrap();
    let id = gw.request(0).header("x-probe", "oob;foreign:x").send();
    assert_logged(&gw, "probe oob: InvalidMemoryAccess");
    assert_logged(&gw, "probe foreign x: NotFound");
    gw.outcome(id).expect_forwarded();
    assert_no_trap(&gw);
}

#[test]
fn an_unknown_proxy_import_is_a_clear_instantiation_error() {
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
    wasm.extend_from_slice(&[0x02, 0x13, 0x01, 0x03]);
    wasm.extend_from_slice(b"env");
    wasm.push(0x0b);
    wasm.extend_from_slice(b"proxy_bogus");
    wasm.extend_from_slice(&[0x00, 0x00]);
    let module = Module::from_bytes(&wasm).unwrap();
    match Gateway::builder(module).build() {
        Err(StartError::Instantiate(m)) => assert!(m.contains("env.proxy_bogus"), "{m}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("should not instantiate"),
    }
}

#[test]
fn gateways_are_independent() {
    let mut a = gw("").build().unwrap();
    let b = gw("").build().unwrap();
    a.request(0).header("x-probe", "sd-set:k=1;metric:m").send();
    assert_eq!(b.shared_data("k"), None);
    assert_eq!(b.metric("m"), None);
}
