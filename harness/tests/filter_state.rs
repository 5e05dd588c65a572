//! Filter state from `proxy_set_property`: Envoy's `wasm.<path>` keys, kept
//! after the stream ended, and what the HCM access log sees.

mod common;
use common::*;

#[test]
fn set_property_is_filter_state_readable_after_the_stream_ended() {
    let mut gw = gw("").build().unwrap();
    let id = gw
        .request(0)
        .header(
            "x-probe",
            "setprop:tollgate.audit=v1;prop:tollgate.audit;log-setprop:tollgate.audit=v2;done-setprop:tollgate.audit=v3",
        )
        .send();
    gw.outcome(id).expect_forwarded();
    assert_logged(&gw, "probe setprop tollgate.audit: Ok");
    // get_property(["tollgate", "audit"]) looks up filter state "wasm.tollgate"
    // (the first segment), which does not exist, as in Envoy.
    assert_logged(&gw, "probe prop tollgate.audit: NotFound");
    gw.respond(id, 200, &[], b"ok");
    assert!(!gw.is_live(id));
    assert_eq!(
        gw.filter_state(id, "wasm.tollgate.audit").as_deref(),
        Some(&b"v3"[..])
    );
    // The HCM access log runs after proxy_on_log and before proxy_on_done.
    assert_eq!(
        gw.access_log_filter_state(id, "wasm.tollgate.audit")
            .as_deref(),
        Some(&b"v2"[..])
    );
    let writes: Vec<Vec<u8>> = gw
        .filter_states(id)
        .unwrap()
        .writes
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(writes, vec![b"v1".to_vec(), b"v2".to_vec(), b"v3".to_vec()]);
    assert_no_trap(&gw);
}

#[test]
fn a_single_segment_property_reads_back() {
    let mut gw = gw("").build().unwrap();
    let id = gw
        .request(0)
        .header("x-probe", "setprop:tollgate_audit=x;prop:tollgate_audit")
        .send();
    assert_logged(&gw, "probe prop tollgate_audit: x len=1");
    assert_eq!(
        gw.filter_state(id, "wasm.tollgate_audit").as_deref(),
        Some(&b"x"[..])
    );
    // Live stream: no access log yet.
    assert_eq!(gw.access_log_filter_state(id, "wasm.tollgate_audit"), None);
}
