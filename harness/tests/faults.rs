//! Host-call fault injection: any import answers with a chosen status,
//! does nothing, and the test can see that the fault was reached.

mod common;
use common::*;
use tollgate_harness::{HostFault, Status};

#[test]
fn a_faulted_call_returns_the_status_and_has_no_effect() {
    let mut gw = gw("").build().unwrap();
    gw.fault(
        "proxy_set_shared_data",
        HostFault::new(Status::InternalFailure),
    );
    let id = gw.request(0).header("x-probe", "sd-set:k=v").send();
    gw.outcome(id).expect_forwarded();
    assert_logged(&gw, "probe sd-set k: InternalFailure");
    assert_eq!(gw.shared_data("k"), None);
    assert_eq!(gw.fault_fired("proxy_set_shared_data"), 1);
    assert_no_trap(&gw);
}

#[test]
fn a_faulted_call_writes_no_out_pointer() {
    let mut gw = gw("").build().unwrap();
    gw.fault(
        "proxy_get_current_time_nanoseconds",
        HostFault::new(Status::BadArgument).once(),
    );
    gw.request(0).header("x-probe", "time-raw").send();
    assert_logged(&gw, "probe time-raw: BadArgument value=12345");
    // Once: the next call works again.
    gw.request(0).header("x-probe", "time-raw").send();
    assert_logged(&gw, "probe time-raw: Ok value=1767225600000000000");
    assert_eq!(gw.fault_fired("proxy_get_current_time_nanoseconds"), 1);
}

#[test]
fn skip_lets_the_first_calls_through_and_times_bounds_the_faults() {
    let mut gw = gw("").build().unwrap();
    gw.fault(
        "proxy_replace_header_map_value",
        HostFault::code(10).skip(1).times(1),
    );
    let id = gw
        .request(0)
        .header("x-probe", "replace:x-a=1;replace:x-b=2;replace:x-c=3")
        .send();
    let out = gw.outcome(id);
    let f = out.expect_forwarded();
    assert_eq!(f.header_str("x-a").as_deref(), Some("1"));
    assert_eq!(f.header("x-b"), None);
    assert_eq!(f.header_str("x-c").as_deref(), Some("3"));
    assert_logged(&gw, "probe replace x-b: InternalFailure");
    assert_eq!(
        gw.faults_fired(),
        vec![("proxy_replace_header_map_value".to_string(), 1)]
    );
}

#[test]
fn a_fault_can_be_restricted_to_one_worker_and_cleared() {
    let mut gw = gw("").workers(2).build().unwrap();
    gw.fault(
        "proxy_set_shared_data",
        HostFault::new(Status::CasMismatch).on_worker(1),
    );
    gw.request(0).header("x-probe", "sd-set:a=1").send();
    gw.request(1).header("x-probe", "sd-set:b=1").send();
    assert_eq!(gw.shared_data("a").as_deref(), Some(&b"1"[..]));
    assert_eq!(gw.shared_data("b"), None);
    assert_logged(&gw, "probe sd-set b: CasMismatch");
    gw.clear_faults();
    gw.request(1).header("x-probe", "sd-set:b=2").send();
    assert_eq!(gw.shared_data("b").as_deref(), Some(&b"2"[..]));
    assert_eq!(gw.fault_fired("proxy_set_shared_data"), 0);
}

#[test]
fn a_faulted_local_reply_is_not_sent() {
    let mut gw = gw("").build().unwrap();
    gw.fault(
        "proxy_send_local_response",
        HostFault::new(Status::InternalFailure),
    );
    let id = gw.request(0).header("x-probe", "reply:403").send();
    assert_logged(&gw, "probe reply 403: InternalFailure");
    gw.outcome(id).expect_forwarded();
}

#[test]
fn builder_faults_apply_from_the_start_and_expose_sdk_panics() {
    // The SDK's define_metric panics on a status it does not expect: the
    // fault reaches on_configure and the VM traps, so the gateway refuses
    // to start, as Envoy would.
    let err = gw("metric=probe_m")
        .fault("proxy_define_metric", HostFault::new(Status::BadArgument))
        .build()
        .err()
        .expect("the start must fail");
    assert!(
        err.to_string().contains("unexpected status: 2"),
        "unexpected error: {err}"
    );
    // Unfaulted, the same configuration starts.
    let gw = gw("metric=probe_m").build().unwrap();
    assert_eq!(gw.metric("probe_m"), Some(0));
}

#[test]
fn a_faulted_dispatch_dispatches_nothing() {
    let mut gw = gw("")
        .cluster_handler("vault", ok_with("t"))
        .build()
        .unwrap();
    gw.fault("proxy_http_call", HostFault::new(Status::InternalFailure));
    let id = gw.request(0).header("x-probe", "call:vault").send();
    assert_logged(&gw, "probe call vault: InternalFailure");
    assert!(gw.calls().is_empty());
    gw.outcome(id).expect_forwarded();
}
