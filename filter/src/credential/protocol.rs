//! The credential service's wire protocols, as pure functions: build the
//! call, and turn the answer into a credential or a typed failure.
//!
//! `tollgate_v1` (documented in README.md):
//! - `GET /v1/credentials/{name}`; per-workload credentials add
//!   `x-tollgate-workload: <spiffe id>`.
//! - 200 `{"value": "...", "expires_in_s": N, "id": "..."}`; 403 refuses;
//!   anything else is a failure.
//!
//! `vault_kv2`: `GET /v1/{mount}/data/{name}` (per-workload:
//! `{name}/{trust domain}{spiffe path}`) with `X-Vault-Request: true` and no
//! token: the Vault Agent beside the gateway adds it (auto-auth). The value
//! is `data.data.{field}`; the key id is `{name}@v{metadata.version}`.
//!
//! Invariants: a returned [`Fetched::value`] is non-empty, at most 8 KiB, and
//! safe in a header (visible ASCII and inner spaces only), so injecting it can
//! never split a header. Parse errors never include the body text, which may
//! hold a secret.

use serde::Deserialize;
use serde_json::Value;
use std::io::{BufReader, Read};

use super::fingerprint::fingerprint;
use super::service::{CredentialService, Protocol};
use super::CredentialKey;

/// The call to dispatch: pseudo-headers included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchCall {
    pub headers: Vec<(&'static str, String)>,
}

/// A credential as the service handed it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub value: String,
    /// Non-secret key identifier for audit.
    pub id: String,
    /// `sha256:xxxxxxxx` of the value.
    pub fingerprint: String,
    /// How long the value may be used, already capped by the configured ttl.
    pub lifetime_ms: u64,
}

/// Why a fetch produced no credential. Each has a metric
/// `tollgate.fetch.<code>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchFailure {
    /// 403: the service refuses this credential (for this workload).
    Denied,
    /// The call was reset (no response headers).
    Reset,
    /// 504 from the gateway: the call timed out.
    Timeout,
    /// Any other non-200 status (404 from tollgate_v1, 5xx…).
    HttpStatus,
    /// `vault_kv2` answered 404: the secret, or its latest version, was
    /// deleted or destroyed (or never existed). The credential is gone, so a
    /// cached copy is dropped too.
    Gone,
    /// 200, but the body is not what the protocol promises.
    Garbage,
    /// The host refused to dispatch the call (unknown cluster…).
    DispatchFailed,
}

impl FetchFailure {
    pub const ALL: [FetchFailure; 7] = [
        FetchFailure::Denied,
        FetchFailure::Reset,
        FetchFailure::Timeout,
        FetchFailure::HttpStatus,
        FetchFailure::Gone,
        FetchFailure::Garbage,
        FetchFailure::DispatchFailed,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            FetchFailure::Denied => "denied",
            FetchFailure::Reset => "reset",
            FetchFailure::Timeout => "timeout",
            FetchFailure::HttpStatus => "http_error",
            FetchFailure::Gone => "gone",
            FetchFailure::Garbage => "garbage",
            FetchFailure::DispatchFailed => "dispatch_failed",
        }
    }
}

impl CredentialService {
    /// The call that fetches `key`.
    pub fn fetch_call(&self, key: &CredentialKey) -> FetchCall {
        let mut headers = vec![(":method", "GET".to_string())];
        match &self.protocol {
            Protocol::TollgateV1 => {
                headers.push((":path", format!("/v1/credentials/{}", key.name)));
                if let Some(w) = &key.workload {
                    headers.push(("x-tollgate-workload", w.as_str().to_string()));
                }
            }
            Protocol::VaultKv2 { mount, .. } => {
                let mut path = format!("/v1/{mount}/data/{}", key.name);
                if let Some(w) = &key.workload {
                    path.push('/');
                    path.push_str(w.trust_domain());
                    path.push_str(w.path());
                }
                headers.push((":path", path));
                headers.push(("x-vault-request", "true".to_string()));
            }
        }
        headers.push((":authority", self.authority.to_string()));
        headers.push(("accept", "application/json".to_string()));
        headers.push(("user-agent", "tollgate".to_string()));
        FetchCall { headers }
    }

    /// Interprets the answer. `status` is `None` when the call was reset.
    pub fn parse_answer(
        &self,
        key: &CredentialKey,
        status: Option<u16>,
        body: &[u8],
    ) -> Result<Fetched, FetchFailure> {
        match status {
            None => return Err(FetchFailure::Reset),
            Some(200) => {}
            Some(403) => return Err(FetchFailure::Denied),
            Some(404) if matches!(self.protocol, Protocol::VaultKv2 { .. }) => {
                return Err(FetchFailure::Gone)
            }
            Some(504) => return Err(FetchFailure::Timeout),
            Some(_) => return Err(FetchFailure::HttpStatus),
        }
        let answer = parse(body).ok_or(FetchFailure::Garbage)?;
        let (value, id, lifetime_ms) = match &self.protocol {
            Protocol::TollgateV1 => {
                let value = string_member(&answer, "value")?;
                let life = u64_member(&answer, "expires_in_s")?.saturating_mul(1000);
                let id = string_member(&answer, "id")?;
                (value, id, life)
            }
            Protocol::VaultKv2 { field, .. } => {
                let data = member(&answer, "data")?;
                let value = string_member(member(data, "data")?, field)?;
                let version = u64_member(member(data, "metadata")?, "version")?;
                let id = format!("{}@v{version}", vault_path(key));
                (value, id, self.ttl_ms)
            }
        };
        if !header_safe(&value) || !id_safe(&id) || lifetime_ms == 0 {
            return Err(FetchFailure::Garbage);
        }
        let fingerprint = fingerprint(value.as_bytes());
        Ok(Fetched {
            value,
            id,
            fingerprint,
            lifetime_ms: lifetime_ms.min(self.ttl_ms),
        })
    }
}

fn vault_path(key: &CredentialKey) -> String {
    match &key.workload {
        None => key.name.to_string(),
        Some(w) => format!("{}/{}{}", key.name, w.trust_domain(), w.path()),
    }
}

/// A member of a JSON object, when the value is an object.
fn member<'a>(v: &'a Value, name: &str) -> Result<&'a Value, FetchFailure> {
    v.as_object()
        .and_then(|m| m.get(name))
        .ok_or(FetchFailure::Garbage)
}

fn string_member(v: &Value, name: &str) -> Result<String, FetchFailure> {
    member(v, name)?
        .as_str()
        .map(str::to_string)
        .ok_or(FetchFailure::Garbage)
}

/// A non-negative integer member (floats and negatives are garbage).
fn u64_member(v: &Value, name: &str) -> Result<u64, FetchFailure> {
    member(v, name)?.as_u64().ok_or(FetchFailure::Garbage)
}

/// Visible ASCII with inner spaces; no leading/trailing space, no controls.
fn header_safe(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 8192
        && v.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !v.starts_with(' ')
        && !v.ends_with(' ')
}

/// Key ids appear in logs: printable ASCII, short.
fn id_safe(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// The answer as one JSON value, nothing after it. Read through the same
/// reader type as the configuration's syntax check, so the module holds
/// one copy of serde_json's parser, not two (about 4 KB).
fn parse(body: &[u8]) -> Option<Value> {
    let reader: Box<dyn Read + '_> = Box::new(body);
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(4096, reader));
    let v = Value::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spiffe::SpiffeId;

    fn svc(protocol: Protocol) -> CredentialService {
        CredentialService {
            cluster: "creds".into(),
            authority: "creds.local".into(),
            protocol,
            timeout_ms: 2000,
            ttl_ms: 300_000,
            refresh_ahead_ms: 60_000,
        }
    }

    fn vault() -> Protocol {
        Protocol::VaultKv2 {
            mount: "secret".into(),
            field: "api_key".into(),
        }
    }

    fn key(per_workload: bool) -> CredentialKey {
        CredentialKey {
            name: "tollgate/openai".into(),
            workload: per_workload
                .then(|| SpiffeId::parse(b"spiffe://cluster.local/ns/a/sa/b").unwrap()),
        }
    }

    fn header<'a>(c: &'a FetchCall, name: &str) -> Option<&'a str> {
        c.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn tollgate_v1_sends_workload_only_when_per_workload() {
        let s = svc(Protocol::TollgateV1);
        let c = s.fetch_call(&key(false));
        assert_eq!(header(&c, ":path"), Some("/v1/credentials/tollgate/openai"));
        assert_eq!(header(&c, ":authority"), Some("creds.local"));
        assert_eq!(header(&c, "x-tollgate-workload"), None);
        let c = s.fetch_call(&key(true));
        assert_eq!(
            header(&c, "x-tollgate-workload"),
            Some("spiffe://cluster.local/ns/a/sa/b")
        );
    }

    #[test]
    fn vault_paths_nest_the_workload() {
        let s = svc(vault());
        assert_eq!(
            header(&s.fetch_call(&key(false)), ":path"),
            Some("/v1/secret/data/tollgate/openai")
        );
        let c = s.fetch_call(&key(true));
        assert_eq!(
            header(&c, ":path"),
            Some("/v1/secret/data/tollgate/openai/cluster.local/ns/a/sa/b")
        );
        assert_eq!(header(&c, "x-vault-request"), Some("true"));
        assert_eq!(header(&c, "authorization"), None);
        assert_eq!(header(&c, "x-vault-token"), None);
    }

    #[test]
    fn tollgate_v1_answer_is_capped_by_ttl() {
        let s = svc(Protocol::TollgateV1);
        let f = s
            .parse_answer(
                &key(false),
                Some(200),
                br#"{"value":"sk-real","expires_in_s":99999,"id":"k1"}"#,
            )
            .unwrap();
        assert_eq!(f.value, "sk-real");
        assert_eq!(f.id, "k1");
        assert_eq!(f.lifetime_ms, 300_000);
        let f = s
            .parse_answer(
                &key(false),
                Some(200),
                br#"{"value":"sk-real","expires_in_s":30,"id":"k1","extra":1}"#,
            )
            .unwrap();
        assert_eq!(f.lifetime_ms, 30_000);
    }

    #[test]
    fn vault_answer_reads_field_and_version() {
        let s = svc(vault());
        let body = br#"{"data":{"data":{"api_key":"sk-v"},"metadata":{"version":7,"created_time":"x"}},"lease_duration":0}"#;
        let f = s.parse_answer(&key(true), Some(200), body).unwrap();
        assert_eq!(f.value, "sk-v");
        assert_eq!(f.id, "tollgate/openai/cluster.local/ns/a/sa/b@v7");
        assert_eq!(f.lifetime_ms, 300_000);
    }

    #[test]
    fn a_vault_404_is_a_deleted_credential() {
        // OpenBao's answer for a deleted or destroyed latest version.
        let body = br#"{"data":{"data":null,"metadata":{"version":2,"deletion_time":"2026-11-30T00:00:00Z","destroyed":false}}}"#;
        assert_eq!(
            svc(vault()).parse_answer(&key(false), Some(404), body),
            Err(FetchFailure::Gone)
        );
        assert_eq!(
            svc(vault()).parse_answer(&key(false), Some(404), b""),
            Err(FetchFailure::Gone)
        );
    }

    #[test]
    fn failures_are_classified() {
        let s = svc(Protocol::TollgateV1);
        let k = key(false);
        assert_eq!(s.parse_answer(&k, None, b""), Err(FetchFailure::Reset));
        assert_eq!(
            s.parse_answer(&k, Some(403), b""),
            Err(FetchFailure::Denied)
        );
        assert_eq!(
            s.parse_answer(&k, Some(504), b""),
            Err(FetchFailure::Timeout)
        );
        assert_eq!(
            s.parse_answer(&k, Some(500), b""),
            Err(FetchFailure::HttpStatus)
        );
        assert_eq!(
            s.parse_answer(&k, Some(404), b""),
            Err(FetchFailure::HttpStatus)
        );
        for garbage in [
            &b"not json"[..],
            br#"{"value":"","expires_in_s":10,"id":"k"}"#,
            br#"{"value":"a\r\nx-evil: 1","expires_in_s":10,"id":"k"}"#,
            br#"{"value":"sk","expires_in_s":0,"id":"k"}"#,
            br#"{"value":"sk","expires_in_s":-1,"id":"k"}"#,
            br#"{"value":"sk","id":"k"}"#,
            br#"{"value":"sk","expires_in_s":10,"id":""}"#,
            br#"{"value":" sk","expires_in_s":10,"id":"k"}"#,
        ] {
            assert_eq!(
                s.parse_answer(&k, Some(200), garbage),
                Err(FetchFailure::Garbage)
            );
        }
        let v = svc(vault());
        assert_eq!(
            v.parse_answer(
                &k,
                Some(200),
                br#"{"data":{"data":{"other":"x"},"metadata":{"version":1}}}"#
            ),
            Err(FetchFailure::Garbage)
        );
        assert_eq!(
            v.parse_answer(
                &k,
                Some(200),
                br#"{"data":{"data":{"api_key":5},"metadata":{"version":1}}}"#
            ),
            Err(FetchFailure::Garbage)
        );
    }
}
