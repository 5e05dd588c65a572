//! Mock of the out-of-band credential service the Tollgate filter fetches real
//! LLM API keys from, speaking both protocols the filter supports:
//!
//! - `tollgate_v1`: `GET /v1/credentials/{name}`, optional
//!   `x-tollgate-workload: spiffe://…` for per-workload credentials; 200
//!   `{"value","expires_in_s","id"}`, 403 `{"error":"denied"}`, 404 unknown.
//! - `vault_kv2`: `GET /v1/{mount}/data/{path}` as a Vault Agent with auto-auth
//!   serves it (the client sends `X-Vault-Request: true` and no token);
//!   per-workload secrets live at `{name}/{trust_domain}{spiffe_path}`.
//!
//! Job: hold the mock's state (keys, denials, faults, counters) and answer
//! requests through one pure function, [`MockCredentialService::answer`], used
//! by both the in-process [`MockCredentialService::handler`] and the real
//! server in `served.rs`, so the two modes behave identically.
//!
//! Invariants:
//! - `answer` never panics; malformed requests get 400 (bad path, name,
//!   workload header or missing `X-Vault-Request`), 404 (unknown route or
//!   name) or 405 (not `GET`).
//! - Every call to `answer` counts as one request (any outcome, faults
//!   included) and becomes `last_request`; a request whose path names a
//!   credential also counts towards `requests_for(name)`.
//! - No lookup falls back: a request carrying a workload identity is answered
//!   only from that workload's key (or 404), in both protocols, because Vault
//!   paths for workloads are distinct from the shared path.
//! - A denial wins over a key; an injected fault wins over everything (a
//!   `Delay` delays whatever the answer would have been).
//! - Secret values appear only in 200 response bodies; `Debug` output of the
//!   service, its answers and recorded requests never contains them.
//! - The state lock is never held across an `.await` and recovers from poison.
//! - Every value sent in a 200 (either protocol, shared or per-workload) is
//!   remembered for [`MockCredentialService::has_issued`], across rotations,
//!   removals and `reset_counts`, so an upstream mock can accept exactly the
//!   keys a filter could have fetched.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

use super::time::{rfc3339, MOCK_EPOCH_UNIX_S};
use crate::call::{CallHandler, CallRequest, CallResponse};

/// `expires_in_s` reported by `tollgate_v1` until [`MockCredentialService::set_expires_in`].
pub const DEFAULT_EXPIRES_IN_S: u64 = 3600;
/// The field of a Vault KV v2 secret that holds the credential, by default.
pub const DEFAULT_VAULT_FIELD: &str = "value";
/// Header carrying the workload's SPIFFE ID in `tollgate_v1`.
pub const WORKLOAD_HEADER: &str = "x-tollgate-workload";
/// Header a Vault Agent requires on every proxied request.
pub const VAULT_REQUEST_HEADER: &str = "x-vault-request";

const V1_PREFIX: &str = "/v1/credentials/";
const VAULT_DENIED: &str = "1 error occurred:\n\t* permission denied\n\n";
/// Headers whose values `RecordedRequest`'s `Debug` redacts.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-vault-token",
    "cookie",
    "x-api-key",
    "api-key",
];

/// A failure injected into every answer until cleared.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// The normal answer, late: virtual time in-process, real sleep when served.
    Delay(Duration),
    /// This status with a protocol-shaped error body, whatever the request.
    Status(u16),
    /// 200 with `content-type: application/json` and a body that is not JSON.
    Garbage,
    /// 200 with valid JSON of the wrong shape for the protocol.
    WrongShape,
    /// No response: `CallResponse::reset()` in-process; served, the
    /// connection is dropped with a TCP RST and nothing written.
    Reset,
}

/// A request as the mock received it.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path as sent, query included (lossy UTF-8).
    pub path: String,
    /// Non-pseudo headers in order; names lowercased, values as raw bytes.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RecordedRequest {
    /// First value of a header, by name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }
    /// First value of a header as lossy text.
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let k = String::from_utf8_lossy(k).into_owned();
                let sensitive = SENSITIVE_HEADERS.iter().any(|s| k.eq_ignore_ascii_case(s));
                let v = if sensitive {
                    "<redacted>".to_owned()
                } else {
                    String::from_utf8_lossy(v).into_owned()
                };
                (k, v)
            })
            .collect();
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &headers)
            .finish()
    }
}

/// The mock's answer to one request, before it is turned into a
/// `CallResponse` or an HTTP response.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct MockAnswer {
    pub status: u16,
    /// Response headers (lowercase names), `:status` excluded.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub delay: Duration,
    /// No response at all (connection reset).
    pub reset: bool,
}

impl MockAnswer {
    fn json(status: u16, body: &Value) -> Self {
        MockAnswer {
            status,
            headers: vec![(b"content-type".to_vec(), b"application/json".to_vec())],
            body: body.to_string().into_bytes(),
            ..Default::default()
        }
    }
    fn reset() -> Self {
        MockAnswer {
            reset: true,
            ..Default::default()
        }
    }
    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
    /// The equivalent in-process call response.
    pub fn into_call_response(self) -> CallResponse {
        if self.reset {
            return CallResponse::reset().with_delay(self.delay);
        }
        CallResponse {
            status: self.status,
            headers: self.headers,
            body: self.body,
            delay: self.delay,
            reset: false,
        }
    }
}

impl From<MockAnswer> for CallResponse {
    fn from(a: MockAnswer) -> Self {
        a.into_call_response()
    }
}

impl fmt::Debug for MockAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body of a 200 carries a secret: show only its size.
        f.debug_struct("MockAnswer")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .field("delay", &self.delay)
            .field("reset", &self.reset)
            .finish_non_exhaustive()
    }
}

/// One stored credential.
#[derive(Clone)]
pub(crate) struct Secret {
    pub(crate) value: String,
    pub(crate) id: String,
    pub(crate) version: u64,
    /// Mock-clock tick at which this version was written.
    pub(crate) written_at: u64,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("value", &"<redacted>")
            .field("id", &self.id)
            .field("version", &self.version)
            .finish()
    }
}

/// Credential values handed out in a 200 answer; `Debug` shows only how many.
#[derive(Default)]
pub(crate) struct Issued(HashSet<Vec<u8>>);

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Issued({} values)", self.0.len())
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) shared: BTreeMap<String, Secret>,
    /// Keyed by (name, SPIFFE ID).
    pub(crate) workload: BTreeMap<(String, String), Secret>,
    /// Keys from `TOLLGATE_KEY_<NAME>` env vars, keyed by the env form of the
    /// name; consulted only when no exact shared key exists.
    pub(crate) env_aliases: BTreeMap<String, Secret>,
    /// (name, None) denies everyone; (name, Some(spiffe)) one workload.
    denied: BTreeSet<(String, Option<String>)>,
    expires_in_s: u64,
    vault_field: String,
    fault: Fault,
    /// `Some(n)`: the fault applies to the next `n` requests only.
    fault_remaining: Option<usize>,
    total: usize,
    per_name: HashMap<String, usize>,
    per_workload: HashMap<(String, String), usize>,
    last: Option<RecordedRequest>,
    /// Mock clock: ticks once per key write.
    pub(crate) clock: u64,
    request_seq: u64,
    issued: Issued,
}

impl Default for State {
    fn default() -> Self {
        State {
            shared: BTreeMap::new(),
            workload: BTreeMap::new(),
            env_aliases: BTreeMap::new(),
            denied: BTreeSet::new(),
            expires_in_s: DEFAULT_EXPIRES_IN_S,
            vault_field: DEFAULT_VAULT_FIELD.to_owned(),
            fault: Fault::None,
            fault_remaining: None,
            total: 0,
            per_name: HashMap::new(),
            per_workload: HashMap::new(),
            last: None,
            clock: 0,
            request_seq: 0,
            issued: Issued::default(),
        }
    }
}

impl State {
    pub(crate) fn new_secret(&mut self, value: &str, id: &str, version: u64) -> Secret {
        self.clock += 1;
        Secret {
            value: value.to_owned(),
            id: id.to_owned(),
            version,
            written_at: self.clock,
        }
    }

    fn shared_secret(&self, name: &str) -> Option<&Secret> {
        self.shared
            .get(name)
            .or_else(|| self.env_aliases.get(&env_form(name)))
    }

    fn is_known_name(&self, name: &str) -> bool {
        self.shared_secret(name).is_some()
            || self.workload.keys().any(|(n, _)| n == name)
            || self.denied.iter().any(|(n, _)| n == name)
    }

    fn is_denied(&self, name: &str, workload: Option<&str>) -> bool {
        self.denied.contains(&(name.to_owned(), None))
            || workload
                .is_some_and(|w| self.denied.contains(&(name.to_owned(), Some(w.to_owned()))))
    }

    fn lookup(&self, name: &str, workload: Option<&str>) -> Lookup {
        if self.is_denied(name, workload) {
            return Lookup::Denied;
        }
        let secret = match workload {
            Some(w) => self.workload.get(&(name.to_owned(), w.to_owned())),
            None => self.shared_secret(name),
        };
        match secret {
            Some(s) => Lookup::Found(s.clone()),
            None => Lookup::Missing,
        }
    }

    /// Maps a Vault secret path to (credential name, workload): an exact known
    /// name is the shared secret; otherwise the longest known name followed by
    /// `/` leaves `{trust_domain}{spiffe_path}`.
    fn resolve_vault_path(&self, path: &str) -> (String, Option<String>) {
        if self.is_known_name(path) {
            return (path.to_owned(), None);
        }
        let mut names: Vec<&str> = self
            .shared
            .keys()
            .map(String::as_str)
            .chain(self.workload.keys().map(|(n, _)| n.as_str()))
            .chain(self.denied.iter().map(|(n, _)| n.as_str()))
            .collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        for name in names {
            if let Some(rest) = path.strip_prefix(name).and_then(|r| r.strip_prefix('/')) {
                if !rest.is_empty() {
                    return (name.to_owned(), Some(format!("spiffe://{rest}")));
                }
            }
        }
        (path.to_owned(), None)
    }

    fn count(&mut self, name: &str, workload: Option<&str>) {
        *self.per_name.entry(name.to_owned()).or_default() += 1;
        if let Some(w) = workload {
            *self
                .per_workload
                .entry((name.to_owned(), w.to_owned()))
                .or_default() += 1;
        }
    }

    /// The fault for this request, consuming one use of a limited fault.
    fn take_fault(&mut self) -> Fault {
        let fault = self.fault.clone();
        if let Some(n) = self.fault_remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.fault = Fault::None;
                self.fault_remaining = None;
            }
        }
        fault
    }
}

enum Lookup {
    Found(Secret),
    Missing,
    Denied,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    TollgateV1,
    VaultKv2,
}

/// What the request path and headers ask for.
enum Route {
    V1 {
        name: String,
        workload: Option<String>,
    },
    Vault {
        path: String,
    },
    /// Recognised protocol, bad request: status and error message.
    Reject(Protocol, u16, &'static str),
    /// Neither protocol.
    NotFound,
}

/// The mock credential service. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct MockCredentialService {
    pub(crate) state: Arc<Mutex<State>>,
}

impl fmt::Debug for MockCredentialService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // State's Debug goes through Secret's, which redacts values.
        let st = self.lock();
        f.debug_struct("MockCredentialService")
            .field("state", &*st)
            .finish()
    }
}

impl MockCredentialService {
    /// An empty service: every name is unknown (404).
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the shared (gateway-wide) credential `name`, at Vault version 1.
    ///
    /// # Panics
    /// If `name` is not a valid credential name (`[A-Za-z0-9._/-]`, no empty,
    /// `.` or `..` segments): such a key could never be requested.
    pub fn set_key(&self, name: &str, value: &str, id: &str) {
        assert_valid_name(name);
        let mut st = self.lock();
        let secret = st.new_secret(value, id, 1);
        st.shared.insert(name.to_owned(), secret);
    }

    /// Sets the credential `name` for one workload, at Vault version 1.
    ///
    /// # Panics
    /// If `name` is invalid or `spiffe_id` is not a valid SPIFFE ID.
    pub fn set_workload_key(&self, name: &str, spiffe_id: &str, value: &str, id: &str) {
        assert_valid_name(name);
        assert_valid_spiffe(spiffe_id);
        let mut st = self.lock();
        let secret = st.new_secret(value, id, 1);
        st.workload
            .insert((name.to_owned(), spiffe_id.to_owned()), secret);
    }

    /// Removes the shared credential `name` (requests get 404).
    pub fn remove_key(&self, name: &str) {
        self.lock().shared.remove(name);
    }

    /// Refuses `name` (403) to one workload, or to everyone (gateway and all
    /// workloads) with `None`.
    ///
    /// # Panics
    /// If `name` or `spiffe_id` is invalid.
    pub fn deny(&self, name: &str, spiffe_id: Option<&str>) {
        assert_valid_name(name);
        if let Some(s) = spiffe_id {
            assert_valid_spiffe(s);
        }
        self.lock()
            .denied
            .insert((name.to_owned(), spiffe_id.map(str::to_owned)));
    }

    /// Undoes one [`deny`](Self::deny) with the same arguments.
    pub fn allow(&self, name: &str, spiffe_id: Option<&str>) {
        self.lock()
            .denied
            .remove(&(name.to_owned(), spiffe_id.map(str::to_owned)));
    }

    /// Replaces the shared credential `name`, bumping its Vault version (a
    /// name not yet set starts at version 1).
    ///
    /// # Panics
    /// If `name` is invalid.
    pub fn rotate(&self, name: &str, new_value: &str, new_id: &str) {
        assert_valid_name(name);
        let mut st = self.lock();
        let version = st.shared_secret(name).map_or(1, |s| s.version + 1);
        let secret = st.new_secret(new_value, new_id, version);
        st.shared.insert(name.to_owned(), secret);
    }

    /// Replaces one workload's credential `name`, bumping its Vault version.
    ///
    /// # Panics
    /// If `name` or `spiffe_id` is invalid.
    pub fn rotate_workload_key(&self, name: &str, spiffe_id: &str, new_value: &str, new_id: &str) {
        assert_valid_name(name);
        assert_valid_spiffe(spiffe_id);
        let mut st = self.lock();
        let key = (name.to_owned(), spiffe_id.to_owned());
        let version = st.workload.get(&key).map_or(1, |s| s.version + 1);
        let secret = st.new_secret(new_value, new_id, version);
        st.workload.insert(key, secret);
    }

    /// The Vault version of the shared credential `name`, if set.
    pub fn version(&self, name: &str) -> Option<u64> {
        self.lock().shared_secret(name).map(|s| s.version)
    }

    /// Names with a shared credential (exact keys only, not env aliases).
    /// Every shared key as `(name, value)`: to seed another credential
    /// store with the same keys (`make run CREDENTIALS=openbao`).
    pub fn shared_keys(&self) -> Vec<(String, String)> {
        let st = self.lock();
        let mut keys: Vec<(String, String)> = st
            .shared
            .iter()
            .map(|(name, secret)| (name.clone(), secret.value.clone()))
            .collect();
        keys.sort();
        keys
    }

    pub fn names(&self) -> Vec<String> {
        self.lock().shared.keys().cloned().collect()
    }

    /// `expires_in_s` reported by `tollgate_v1` (default 3600).
    pub fn set_expires_in(&self, secs: u64) {
        self.lock().expires_in_s = secs;
    }

    /// The KV v2 field that holds the credential (default `value`).
    pub fn set_vault_field(&self, field: &str) {
        self.lock().vault_field = field.to_owned();
    }

    /// Injects `f` into every answer until [`clear_fault`](Self::clear_fault).
    pub fn set_fault(&self, f: Fault) {
        let mut st = self.lock();
        st.fault = f;
        st.fault_remaining = None;
    }

    /// Injects `f` into the next `n` answers only, then clears it.
    pub fn set_fault_for(&self, f: Fault, n: usize) {
        let mut st = self.lock();
        if n == 0 {
            st.fault = Fault::None;
            st.fault_remaining = None;
        } else {
            st.fault = f;
            st.fault_remaining = Some(n);
        }
    }

    pub fn clear_fault(&self) {
        self.set_fault(Fault::None);
    }

    /// Total requests answered, any outcome (faults, 4xx included).
    pub fn requests(&self) -> usize {
        self.lock().total
    }

    /// Requests whose path named credential `name` (any outcome, any
    /// workload; Vault per-workload paths count towards their name).
    pub fn requests_for(&self, name: &str) -> usize {
        self.lock().per_name.get(name).copied().unwrap_or(0)
    }

    /// Requests for `name` on behalf of one workload.
    pub fn requests_for_workload(&self, name: &str, spiffe_id: &str) -> usize {
        self.lock()
            .per_workload
            .get(&(name.to_owned(), spiffe_id.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Zeroes all request counters and forgets the last request.
    pub fn reset_counts(&self) {
        let mut st = self.lock();
        st.total = 0;
        st.per_name.clear();
        st.per_workload.clear();
        st.last = None;
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.lock().last.clone()
    }

    /// Whether `value` was ever handed out in a 200 answer (in-process or
    /// served, either protocol, shared or per-workload key).
    pub fn has_issued(&self, value: &[u8]) -> bool {
        self.lock().issued.0.contains(value)
    }

    /// An in-process handler for the credential cluster. Pseudo-headers
    /// `:method` and `:path` select the request; other pseudo-headers are not
    /// recorded. A `Delay` fault becomes `CallResponse::delay` (virtual time).
    pub fn handler(&self) -> CallHandler {
        let this = self.clone();
        Arc::new(move |req: &CallRequest| this.answer_call(req).into_call_response())
    }

    /// Answers a dispatched call (see [`handler`](Self::handler)).
    pub fn answer_call(&self, req: &CallRequest) -> MockAnswer {
        let method = req.header(":method").unwrap_or_default();
        let path = req.header(":path").unwrap_or_default();
        let headers: Vec<(Vec<u8>, Vec<u8>)> = req
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with(b":"))
            .cloned()
            .collect();
        self.answer(method, path, &headers)
    }

    /// The protocol logic, shared by in-process and served modes. Counts and
    /// records the request, then answers it. Never panics.
    pub fn answer(&self, method: &[u8], path: &[u8], headers: &[(Vec<u8>, Vec<u8>)]) -> MockAnswer {
        let mut st = self.lock();
        st.total += 1;
        st.request_seq += 1;
        st.last = Some(RecordedRequest {
            method: String::from_utf8_lossy(method).into_owned(),
            path: String::from_utf8_lossy(path).into_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
        });
        let fault = st.take_fault();

        let (protocol, target, reject) = match route(path, headers) {
            Route::V1 { name, workload } => (Protocol::TollgateV1, Some((name, workload)), None),
            Route::Vault { path } => (Protocol::VaultKv2, Some(st.resolve_vault_path(&path)), None),
            Route::Reject(p, status, msg) => (p, None, Some((status, msg))),
            Route::NotFound => (Protocol::TollgateV1, None, Some((404, "not found"))),
        };
        if let Some((name, workload)) = &target {
            st.count(name, workload.as_deref());
        }

        let mut answer = match (&fault, protocol) {
            (Fault::Reset, _) => return MockAnswer::reset(),
            (Fault::Status(code), p) => error_answer(p, *code, "injected fault"),
            (Fault::Garbage, _) => garbage(),
            (Fault::WrongShape, p) => wrong_shape(p, st.request_seq),
            (Fault::None | Fault::Delay(_), _) => {
                st_answer(&mut st, method, protocol, target, reject)
            }
        };
        if let Fault::Delay(d) = fault {
            answer.delay = d;
        }
        answer
    }
}

fn st_answer(
    st: &mut State,
    method: &[u8],
    protocol: Protocol,
    target: Option<(String, Option<String>)>,
    reject: Option<(u16, &'static str)>,
) -> MockAnswer {
    if let Some((status, msg)) = reject {
        return error_answer(protocol, status, msg);
    }
    if method != b"GET" {
        return error_answer(protocol, 405, "method not allowed");
    }
    let Some((name, workload)) = target else {
        return error_answer(protocol, 404, "not found");
    };
    let lookup = st.lookup(&name, workload.as_deref());
    if let Lookup::Found(s) = &lookup {
        st.issued.0.insert(s.value.as_bytes().to_vec());
    }
    match (lookup, protocol) {
        (Lookup::Denied, p) => error_answer(p, 403, "denied"),
        (Lookup::Missing, Protocol::TollgateV1) => error_answer(protocol, 404, "not found"),
        (Lookup::Missing, Protocol::VaultKv2) => MockAnswer::json(404, &json!({ "errors": [] })),
        (Lookup::Found(s), Protocol::TollgateV1) => MockAnswer::json(
            200,
            &json!({ "value": s.value, "expires_in_s": st.expires_in_s, "id": s.id }),
        ),
        (Lookup::Found(s), Protocol::VaultKv2) => {
            let mut data = serde_json::Map::new();
            data.insert(st.vault_field.clone(), Value::String(s.value));
            MockAnswer::json(
                200,
                &json!({
                    "request_id": request_id(st.request_seq),
                    "lease_id": "",
                    "renewable": false,
                    "lease_duration": 0,
                    "data": {
                        "data": data,
                        "metadata": {
                            "created_time": rfc3339(MOCK_EPOCH_UNIX_S + s.written_at),
                            "custom_metadata": null,
                            "deletion_time": "",
                            "destroyed": false,
                            "version": s.version,
                        }
                    },
                    "wrap_info": null,
                    "warnings": null,
                    "auth": null,
                }),
            )
        }
    }
}

/// A protocol-shaped error. Vault's 403 carries its exact multi-error text.
fn error_answer(protocol: Protocol, status: u16, msg: &str) -> MockAnswer {
    match protocol {
        Protocol::TollgateV1 => MockAnswer::json(status, &json!({ "error": msg })),
        Protocol::VaultKv2 if status == 403 => {
            MockAnswer::json(403, &json!({ "errors": [VAULT_DENIED] }))
        }
        Protocol::VaultKv2 if status == 404 => MockAnswer::json(404, &json!({ "errors": [] })),
        Protocol::VaultKv2 => MockAnswer::json(status, &json!({ "errors": [msg] })),
    }
}

fn garbage() -> MockAnswer {
    MockAnswer {
        status: 200,
        headers: vec![(b"content-type".to_vec(), b"application/json".to_vec())],
        body: b"<html><body>upstream connect error</body></html>".to_vec(),
        ..Default::default()
    }
}

fn wrong_shape(protocol: Protocol, seq: u64) -> MockAnswer {
    match protocol {
        Protocol::TollgateV1 => MockAnswer::json(
            200,
            &json!({ "value": 12345, "expires_in_s": "soon", "id": null }),
        ),
        Protocol::VaultKv2 => MockAnswer::json(
            200,
            &json!({
                "request_id": request_id(seq),
                "data": { "metadata": { "version": "one" } },
                "warnings": null,
            }),
        ),
    }
}

fn request_id(seq: u64) -> String {
    format!("00000000-0000-4000-8000-{:012x}", seq & 0xffff_ffff_ffff)
}

/// Parses the path (query ignored) and the protocol headers.
fn route(path: &[u8], headers: &[(Vec<u8>, Vec<u8>)]) -> Route {
    let path = match path.iter().position(|&b| b == b'?') {
        Some(i) => &path[..i],
        None => path,
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return Route::NotFound;
    };
    let vault_header: Vec<&[u8]> = header_values(headers, VAULT_REQUEST_HEADER);
    let v1_name = path.strip_prefix(V1_PREFIX);
    let vault = parse_vault_path(path);
    let use_vault = match (v1_name, &vault) {
        (Some(_), Some(_)) => !vault_header.is_empty(),
        (Some(_), None) => false,
        (None, Some(_)) => true,
        (None, None) => return Route::NotFound,
    };

    if use_vault {
        let Some(vault) = vault else {
            return Route::NotFound;
        };
        let ok_header = matches!(vault_header.as_slice(),
            [v] if v.trim_ascii().eq_ignore_ascii_case(b"true"));
        if !ok_header {
            return Route::Reject(Protocol::VaultKv2, 400, "missing 'X-Vault-Request' header");
        }
        return match vault {
            Ok(path) => Route::Vault { path },
            Err(msg) => Route::Reject(Protocol::VaultKv2, 400, msg),
        };
    }

    let name = v1_name.unwrap_or_default();
    if !is_valid_name(name) {
        return Route::Reject(Protocol::TollgateV1, 400, "invalid credential name");
    }
    let workload = match header_values(headers, WORKLOAD_HEADER).as_slice() {
        [] => None,
        [v] => match std::str::from_utf8(v) {
            Ok(s) if is_valid_spiffe(s) => Some(s.to_owned()),
            _ => return Route::Reject(Protocol::TollgateV1, 400, "invalid workload identity"),
        },
        _ => return Route::Reject(Protocol::TollgateV1, 400, "duplicate workload identity"),
    };
    Route::V1 {
        name: name.to_owned(),
        workload,
    }
}

/// `/v1/{mount}/data/{path}` → `Some(Ok(path))`; a vault-shaped path with a
/// bad mount or secret path → `Some(Err(_))`; otherwise `None`.
fn parse_vault_path(path: &str) -> Option<Result<String, &'static str>> {
    let rest = path.strip_prefix("/v1/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    // The first `data` segment after a non-empty mount splits mount from path.
    let i = segments
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, s)| **s == "data")
        .map(|(i, _)| i)?;
    let mount = segments[..i].join("/");
    let secret = segments[i + 1..].join("/");
    if !is_valid_name(&mount) {
        return Some(Err("invalid mount"));
    }
    if !is_valid_name(&secret) {
        return Some(Err("invalid secret path"));
    }
    Some(Ok(secret))
}

fn header_values<'a>(headers: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// `[A-Za-z0-9._/-]+`, without empty, `.` or `..` segments.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// `spiffe://{trust_domain}{path}`: trust domain `[a-z0-9._-]+`, path made of
/// `/`-prefixed non-empty `[A-Za-z0-9._-]` segments other than `.` and `..`.
pub(crate) fn is_valid_spiffe(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return false;
    };
    let (td, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    !td.is_empty()
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && (path.is_empty() && !rest.ends_with('/') || is_valid_name(path))
}

fn assert_valid_name(name: &str) {
    assert!(is_valid_name(name), "invalid credential name {name:?}");
}

fn assert_valid_spiffe(id: &str) {
    assert!(is_valid_spiffe(id), "invalid SPIFFE ID {id:?}");
}

/// The env-var form of a credential name: upper-cased, non-alphanumerics → `_`.
pub(crate) fn env_form(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_spiffe_ids() {
        assert!(is_valid_name("openai"));
        assert!(is_valid_name("tollgate/azure-openai.v2_x"));
        for bad in ["", "/a", "a/", "a//b", "a/../b", ".", "a b", "a%2f", "ä"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        assert!(is_valid_spiffe("spiffe://cluster.local/ns/a/sa/b"));
        assert!(is_valid_spiffe("spiffe://td"));
        for bad in [
            "spiffe://",
            "spiffe:///ns",
            "spiffe://TD/ns",
            "spiffe://td/",
            "spiffe://td/ns//a",
            "spiffe://td/ns/../a",
            "http://td/a",
        ] {
            assert!(!is_valid_spiffe(bad), "{bad:?}");
        }
    }

    #[test]
    fn env_forms() {
        assert_eq!(env_form("azure-openai"), "AZURE_OPENAI");
        assert_eq!(env_form("tollgate/openai.v1"), "TOLLGATE_OPENAI_V1");
    }
}
