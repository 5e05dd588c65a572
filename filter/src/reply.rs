//! The local reply sent for every denial.
//!
//! Invariants: the body has the providers' own error shape, so the official
//! SDKs surface it (`{"error":{"type":"tollgate_denied","code":…,"message":…}}`);
//! it holds only the reason's static text and code (and for DLP the names of
//! the detectors that blocked, which come from the policy), never request
//! data; the
//! reason code is also in the `x-tollgate-reason` header, and it ends the
//! message, because some SDKs (openai) show only `message` in their errors.

use crate::json_out::Obj;
use crate::reason::DenyReason;

/// A reply ready to hand to `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyReply {
    pub status: u32,
    pub headers: [(&'static str, &'static str); 3],
    pub body: String,
    /// Envoy's response-code details (shows in access logs as %RESPONSE_CODE_DETAILS%).
    pub details: String,
}

pub fn deny_reply(reason: DenyReason) -> DenyReply {
    deny_reply_with(reason, None)
}

/// [`deny_reply`], the message naming more (`detail`: policy words such as
/// DLP's detector names, never request data).
pub fn deny_reply_with(reason: DenyReason, detail: Option<&str>) -> DenyReply {
    let message = match detail {
        Some(d) => format!("{} ({d}) (reason: {})", reason.message(), reason.code()),
        None => format!("{} (reason: {})", reason.message(), reason.code()),
    };
    let mut body = Obj::new();
    body.obj("error", |e| {
        e.str("type", "tollgate_denied");
        e.str("code", reason.code());
        e.str("message", &message);
    });
    let body = body.finish();
    DenyReply {
        status: reason.status(),
        headers: [
            ("x-tollgate-reason", reason.code()),
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
        ],
        body,
        details: format!("tollgate_{}", reason.code()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_reason_has_an_sdk_shaped_body_and_header() {
        for r in DenyReason::ALL {
            let reply = deny_reply(r);
            let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(v["error"]["type"], "tollgate_denied");
            assert_eq!(v["error"]["code"], r.code());
            assert!(v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Tollgate: "));
            assert!(v["error"]["message"]
                .as_str()
                .unwrap()
                .ends_with(&format!("(reason: {})", r.code())));
            assert_eq!(reply.headers[0], ("x-tollgate-reason", r.code()));
            assert!(reply.status >= 400);
        }
    }
}
