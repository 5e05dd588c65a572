//! Reads the configuration document into [`RawConfig`], by hand, over a
//! parsed `serde_json::Value` (no serde derive, which costs tens of KB of
//! wasm).
//!
//! Invariants:
//! - Unknown fields are errors at every level, reported at their own path
//!   (`rules[1].workload: unknown field …`); a typo is never a silently
//!   ignored setting.
//! - Every problem is collected, each with the path of the value at fault
//!   (`rules[2].workloads[0]: expected a string, got a number`); a
//!   [`RawConfig`] is returned only when there is none.
//! - Messages never format input numbers (no float formatting in the
//!   module) and quote input strings escaped, so a log line cannot be split.
//! - A JSON syntax error has an empty path and reads
//!   `line L column C: <serde_json message>`.
//! - Optional settings given as `null` count as absent; fields with a
//!   non-`Option` default (`mode`, `rules`, `scope`, `prefix`) must have
//!   the right type when present.

use serde_json::{Map, Value};

use super::error::ConfigErrors;
use super::raw::*;

type Obj = Map<String, Value>;

/// Parses `json` and reads every field; all problems are returned together.
pub fn read(json: &[u8]) -> Result<RawConfig, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    // Rules are read one at a time while the document is parsed, so a large
    // policy never exists as one `Value` tree (10,000 rules would hold
    // megabytes of VM memory that the VM never gives back).
    let mut rules = RulesRead::Absent;
    let mut rule_errs = ConfigErrors::default();
    let parsed = {
        let mut de = serde_json::Deserializer::from_slice(json);
        serde::de::DeserializeSeed::deserialize(
            RootSeed {
                rules: &mut rules,
                errs: &mut rule_errs,
            },
            &mut de,
        )
        .and_then(|root| de.end().map(|()| root))
    };
    let root = match parsed {
        Ok(v) => v,
        Err(e) => {
            errs.push("", syntax_message(&e));
            return Err(errs);
        }
    };
    // `Value` keeps only the last of duplicate keys; a second pass over the
    // text finds them, so `"mode": "enforce", ..., "mode": "dry_run"` is an
    // error rather than a silent switch to dry run.
    if let Ok(dups) = serde_json::from_slice::<Duplicates>(json) {
        for (path, key) in dups.0 {
            errs.push(path, format!("duplicate field {}", quote(&key)));
        }
    }
    let raw = read_config(&root, rules, &mut errs);
    errs.0.extend(rule_errs.0);
    match raw {
        Some(raw) if errs.is_empty() => Ok(raw),
        _ => Err(errs),
    }
}

/// What the streaming reader found under `rules`.
enum RulesRead {
    Absent,
    /// A list, each element read (`None` when any element had a problem).
    List(Option<Vec<RawRule>>),
    /// Not a list: a value of the same kind, for the type error.
    Wrong(Value),
}

/// The root document: every member is kept as a `Value` except `rules`,
/// which is read element by element into [`RawRule`]s.
struct RootSeed<'a> {
    rules: &'a mut RulesRead,
    errs: &'a mut ConfigErrors,
}

impl<'de> serde::de::DeserializeSeed<'de> for RootSeed<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RootSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Obj::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "rules" {
                // A repeated "rules" is reported by the duplicate pass.
                *self.rules = map.next_value_seed(RulesSeed {
                    errs: &mut *self.errs,
                })?;
            } else {
                let v = map.next_value::<Value>()?;
                out.insert(key, v);
            }
        }
        Ok(Value::Object(out))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Value::Array(Vec::new()))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::String(String::new()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// The `rules` member: a list read one element at a time.
struct RulesSeed<'a> {
    errs: &'a mut ConfigErrors,
}

impl<'de> serde::de::DeserializeSeed<'de> for RulesSeed<'_> {
    type Value = RulesRead;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<RulesRead, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RulesSeed<'_> {
    type Value = RulesRead;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a list of rules")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RulesRead, A::Error> {
        let mut rules = Some(Vec::new());
        let mut i = 0usize;
        while let Some(v) = seq.next_element::<Value>()? {
            let rule = read_rule(&v, &format!("rules[{i}]"), self.errs);
            match (&mut rules, rule) {
                (Some(list), Some(rule)) => list.push(rule),
                _ => rules = None,
            }
            i += 1;
        }
        Ok(RulesRead::List(rules))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RulesRead, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(RulesRead::Wrong(Value::Object(Obj::new())))
    }
    fn visit_bool<E>(self, v: bool) -> Result<RulesRead, E> {
        Ok(RulesRead::Wrong(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RulesRead, E> {
        Ok(RulesRead::Wrong(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RulesRead, E> {
        Ok(RulesRead::Wrong(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RulesRead, E> {
        Ok(RulesRead::Wrong(Value::from(v)))
    }
    fn visit_str<E>(self, _: &str) -> Result<RulesRead, E> {
        Ok(RulesRead::Wrong(Value::String(String::new())))
    }
    fn visit_unit<E>(self) -> Result<RulesRead, E> {
        Ok(RulesRead::Wrong(Value::Null))
    }
}

/// Every `(path, key)` where an object repeats a key, found without
/// building values.
struct Duplicates(Vec<(String, String)>);

impl<'de> serde::Deserialize<'de> for Duplicates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::DeserializeSeed::deserialize(DupSeed(String::new()), d).map(Duplicates)
    }
}

/// Walks one JSON value whose path is `.0`.
struct DupSeed(String);

impl<'de> serde::de::DeserializeSeed<'de> for DupSeed {
    type Value = Vec<(String, String)>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DupSeed {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut i = 0usize;
        while let Some(found) = seq.next_element_seed(DupSeed(format!("{}[{i}]", self.0)))? {
            out.extend(found);
            i += 1;
        }
        Ok(out)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let step = if plain(&key) {
                key.clone()
            } else {
                format!("{key:?}")
            };
            let child = at(&self.0, &step);
            let found = map.next_value_seed(DupSeed(child.clone()))?;
            if seen.contains(&key) {
                out.push((child, key));
            } else {
                seen.push(key);
            }
            out.extend(found);
        }
        Ok(out)
    }
}

/// `line L column C: message`, from serde_json's `message at line L column C`.
fn syntax_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    if e.line() == 0 {
        msg.to_string()
    } else {
        format!("line {} column {}: {msg}", e.line(), e.column())
    }
}

fn read_config(v: &Value, rules: RulesRead, errs: &mut ConfigErrors) -> Option<RawConfig> {
    let m = obj(v, "", errs)?;
    let path = "";
    known(
        m,
        path,
        &[
            "mode",
            "audit_log",
            "trust_domains",
            "credential_service",
            "providers",
            "rules",
        ],
        errs,
    );
    let mode = match m.get("mode") {
        None => Some(RawMode::default()),
        Some(v) => enum_of(
            v,
            "mode",
            &[("enforce", RawMode::Enforce), ("dry_run", RawMode::DryRun)],
            errs,
        ),
    };
    let audit_log = match m.get("audit_log") {
        None => Some(RawAuditLog::default()),
        Some(v) => enum_of(
            v,
            "audit_log",
            &[
                ("filter_state", RawAuditLog::FilterState),
                ("proxy_log", RawAuditLog::ProxyLog),
                ("both", RawAuditLog::Both),
            ],
            errs,
        ),
    };
    let trust_domains = str_list(req(m, path, "trust_domains", errs), "trust_domains", errs);
    let credential_service = req(m, path, "credential_service", errs)
        .and_then(|v| read_service(v, "credential_service", errs));
    let providers = list(
        req(m, path, "providers", errs),
        "providers",
        errs,
        read_provider,
    );
    let rules = match rules {
        RulesRead::Absent => Some(Vec::new()),
        RulesRead::List(list) => list,
        RulesRead::Wrong(v) => {
            wrong_type(&v, "rules", "a list", errs);
            None
        }
    };
    Some(RawConfig {
        mode: mode?,
        audit_log: audit_log?,
        trust_domains: trust_domains?,
        credential_service: credential_service?,
        providers: providers?,
        rules: rules?,
    })
}

fn read_service(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<RawCredentialService> {
    let m = obj(v, path, errs)?;
    known(
        m,
        path,
        &[
            "cluster",
            "authority",
            "protocol",
            "timeout",
            "ttl",
            "refresh_ahead",
            "vault",
        ],
        errs,
    );
    let cluster = req_str(m, path, "cluster", errs);
    let authority = req_str(m, path, "authority", errs);
    let protocol = req(m, path, "protocol", errs).and_then(|v| {
        enum_of(
            v,
            &at(path, "protocol"),
            &[
                ("tollgate_v1", RawProtocol::TollgateV1),
                ("vault_kv2", RawProtocol::VaultKv2),
            ],
            errs,
        )
    });
    let timeout = opt_str(m, path, "timeout", errs);
    let ttl = opt_str(m, path, "ttl", errs);
    let refresh_ahead = opt_str(m, path, "refresh_ahead", errs);
    let vault = match present(m, "vault") {
        None => Some(None),
        Some(v) => read_vault(v, &at(path, "vault"), errs).map(Some),
    };
    Some(RawCredentialService {
        cluster: cluster?,
        authority: authority?,
        protocol: protocol?,
        timeout: timeout?,
        ttl: ttl?,
        refresh_ahead: refresh_ahead?,
        vault: vault?,
    })
}

fn read_vault(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<RawVault> {
    let m = obj(v, path, errs)?;
    known(m, path, &["mount", "field"], errs);
    let mount = opt_str(m, path, "mount", errs);
    let field = opt_str(m, path, "field", errs);
    Some(RawVault {
        mount: mount?,
        field: field?,
    })
}

fn read_provider(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<RawProvider> {
    let m = obj(v, path, errs)?;
    known(
        m,
        path,
        &["name", "kind", "hosts", "credential", "header"],
        errs,
    );
    let name = req_str(m, path, "name", errs);
    let kind = req(m, path, "kind", errs).and_then(|v| {
        enum_of(
            v,
            &at(path, "kind"),
            &[
                ("openai", RawProviderKind::Openai),
                ("anthropic", RawProviderKind::Anthropic),
                ("gemini", RawProviderKind::Gemini),
                ("azure_openai", RawProviderKind::AzureOpenai),
                ("generic", RawProviderKind::Generic),
            ],
            errs,
        )
    });
    let hosts = str_list(req(m, path, "hosts", errs), &at(path, "hosts"), errs);
    let credential = req(m, path, "credential", errs)
        .and_then(|v| read_credential(v, &at(path, "credential"), errs));
    let header = match present(m, "header") {
        None => Some(None),
        Some(v) => read_header(v, &at(path, "header"), errs).map(Some),
    };
    Some(RawProvider {
        name: name?,
        kind: kind?,
        hosts: hosts?,
        credential: credential?,
        header: header?,
    })
}

fn read_credential(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<RawCredentialRef> {
    let m = obj(v, path, errs)?;
    known(m, path, &["name", "scope"], errs);
    let name = req_str(m, path, "name", errs);
    let scope = match m.get("scope") {
        None => Some(RawScope::default()),
        Some(v) => enum_of(
            v,
            &at(path, "scope"),
            &[
                ("shared", RawScope::Shared),
                ("per_workload", RawScope::PerWorkload),
            ],
            errs,
        ),
    };
    Some(RawCredentialRef {
        name: name?,
        scope: scope?,
    })
}

fn read_header(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<RawHeader> {
    let m = obj(v, path, errs)?;
    known(m, path, &["name", "prefix"], errs);
    let name = req_str(m, path, "name", errs);
    let prefix = match m.get("prefix") {
        None => Some(String::new()),
        Some(v) => string(v, &at(path, "prefix"), errs),
    };
    Some(RawHeader {
        name: name?,
        prefix: prefix?,
    })
}

fn read_rule(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<RawRule> {
    let m = obj(v, path, errs)?;
    known(
        m,
        path,
        &["name", "workloads", "providers", "endpoints"],
        errs,
    );
    let name = req_str(m, path, "name", errs);
    let workloads = str_list(
        req(m, path, "workloads", errs),
        &at(path, "workloads"),
        errs,
    );
    let providers = str_list(
        req(m, path, "providers", errs),
        &at(path, "providers"),
        errs,
    );
    let endpoints = str_list(
        req(m, path, "endpoints", errs),
        &at(path, "endpoints"),
        errs,
    );
    Some(RawRule {
        name: name?,
        workloads: workloads?,
        providers: providers?,
        endpoints: endpoints?,
    })
}

// ---- helpers: each reports its own problem and returns `None` on error ----

/// `path.field`, or just `field` at the top level.
fn at(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// What a value is, for "expected X, got Y". Never its content.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Printable ASCII without backticks: safe to show as is.
fn plain(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'`')
}

/// Input text in a message: in backticks when plainly printable, else
/// escaped and double-quoted.
fn quote(s: &str) -> String {
    if plain(s) {
        format!("`{s}`")
    } else {
        format!("{s:?}")
    }
}

fn wrong_type(v: &Value, path: &str, expected: &str, errs: &mut ConfigErrors) {
    errs.push(path, format!("expected {expected}, got {}", kind(v)));
}

fn obj<'a>(v: &'a Value, path: &str, errs: &mut ConfigErrors) -> Option<&'a Obj> {
    match v {
        Value::Object(m) => Some(m),
        _ => {
            wrong_type(v, path, "an object", errs);
            None
        }
    }
}

/// Reports every member of `m` not in `fields`.
fn known(m: &Obj, path: &str, fields: &[&str], errs: &mut ConfigErrors) {
    for key in m.keys() {
        if !fields.contains(&key.as_str()) {
            let step = if plain(key) {
                key.clone()
            } else {
                format!("{key:?}")
            };
            errs.push(
                at(path, &step),
                format!(
                    "unknown field {}; expected one of {}",
                    quote(key),
                    fields.join(", ")
                ),
            );
        }
    }
}

/// A required member; its absence is reported.
fn req<'a>(m: &'a Obj, path: &str, field: &str, errs: &mut ConfigErrors) -> Option<&'a Value> {
    let v = m.get(field);
    if v.is_none() {
        errs.push(at(path, field), "missing required field");
    }
    v
}

/// An optional member; `null` counts as absent.
fn present<'a>(m: &'a Obj, field: &str) -> Option<&'a Value> {
    m.get(field).filter(|v| !v.is_null())
}

fn string(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        _ => {
            wrong_type(v, path, "a string", errs);
            None
        }
    }
}

fn req_str(m: &Obj, path: &str, field: &str, errs: &mut ConfigErrors) -> Option<String> {
    string(req(m, path, field, errs)?, &at(path, field), errs)
}

/// `Some(None)` when absent or `null`; `None` on a type error.
fn opt_str(m: &Obj, path: &str, field: &str, errs: &mut ConfigErrors) -> Option<Option<String>> {
    match present(m, field) {
        None => Some(None),
        Some(v) => string(v, &at(path, field), errs).map(Some),
    }
}

/// One of the `choices`, by its JSON spelling.
fn enum_of<T: Copy>(
    v: &Value,
    path: &str,
    choices: &[(&str, T)],
    errs: &mut ConfigErrors,
) -> Option<T> {
    let s = match v {
        Value::String(s) => s,
        _ => {
            wrong_type(v, path, "a string", errs);
            return None;
        }
    };
    let found = choices.iter().find(|(name, _)| name == s).map(|(_, t)| *t);
    if found.is_none() {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        errs.push(
            path,
            format!(
                "unknown value {}; expected one of {}",
                quote(s),
                names.join(", ")
            ),
        );
    }
    found
}

/// A list whose items are read by `item`, each at `path[i]`; every item is
/// read even after a bad one.
fn list<T>(
    v: Option<&Value>,
    path: &str,
    errs: &mut ConfigErrors,
    item: impl Fn(&Value, &str, &mut ConfigErrors) -> Option<T>,
) -> Option<Vec<T>> {
    let items = match v? {
        Value::Array(a) => a,
        other => {
            wrong_type(other, path, "a list", errs);
            return None;
        }
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, v) in items.iter().enumerate() {
        match item(v, &format!("{path}[{i}]"), errs) {
            Some(t) => out.push(t),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn str_list(v: Option<&Value>, path: &str, errs: &mut ConfigErrors) -> Option<Vec<String>> {
    list(v, path, errs, string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{
      "trust_domains": ["cluster.local"],
      "credential_service": {"cluster": "c", "authority": "a", "protocol": "tollgate_v1"},
      "providers": [{"name": "openai", "kind": "openai", "hosts": ["api.openai.com"], "credential": {"name": "openai"}}],
      "rules": [{"name": "r", "workloads": ["spiffe://cluster.local/x"], "providers": ["openai"], "endpoints": ["GET /"]}]
    }"#;

    fn errors(json: &str) -> Vec<String> {
        match read(json.as_bytes()) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn duplicate_keys_are_errors_not_a_silent_last_wins() {
        let json = MINIMAL.replacen(
            "{\n",
            "{\n      \"mode\": \"enforce\", \"mode\": \"dry_run\",\n",
            1,
        );
        assert_eq!(
            errors(&json),
            vec!["mode: duplicate field `mode`".to_string()]
        );
        let json = MINIMAL.replace(r#""name": "r","#, r#""name": "r", "name": "s","#);
        assert_eq!(
            errors(&json),
            vec!["rules[0].name: duplicate field `name`".to_string()]
        );
    }

    #[test]
    fn a_minimal_document_reads_with_defaults() {
        let r = read(MINIMAL.as_bytes()).unwrap();
        assert!(matches!(r.mode, RawMode::Enforce));
        assert_eq!(r.trust_domains, ["cluster.local"]);
        assert_eq!(r.credential_service.protocol, RawProtocol::TollgateV1);
        assert!(r.credential_service.timeout.is_none());
        assert!(r.credential_service.vault.is_none());
        assert_eq!(r.providers[0].kind, RawProviderKind::Openai);
        assert_eq!(r.providers[0].credential.scope, RawScope::Shared);
        assert!(r.providers[0].header.is_none());
        assert_eq!(r.rules[0].endpoints, ["GET /"]);
        let no_rules = MINIMAL.replace(r#""rules": [{"name": "r", "workloads": ["spiffe://cluster.local/x"], "providers": ["openai"], "endpoints": ["GET /"]}]"#, r#""mode": "dry_run""#);
        let r = read(no_rules.as_bytes()).unwrap();
        assert!(r.rules.is_empty());
        assert!(matches!(r.mode, RawMode::DryRun));
    }

    #[test]
    fn optional_settings_given_as_null_are_absent() {
        let json = MINIMAL.replace(
            r#""protocol": "tollgate_v1""#,
            r#""protocol": "vault_kv2", "ttl": null, "vault": {"mount": null}"#,
        );
        let r = read(json.as_bytes()).unwrap();
        assert!(r.credential_service.ttl.is_none());
        assert!(r.credential_service.vault.unwrap().mount.is_none());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let json = MINIMAL
            .replace(r#""cluster": "c", "#, r#""vault": {"mount": 1.5}, "#)
            .replace(r#""hosts": ["api.openai.com"], "#, "")
            .replace(r#""kind": "openai""#, r#""kind": "mistral""#)
            .replace(r#""name": "r", "#, r#""name": "r", "workload": 1, "#)
            .replace(
                r#"["spiffe://cluster.local/x"]"#,
                r#"["spiffe://cluster.local/x", 2e300]"#,
            )
            .replace(r#""endpoints": ["GET /"]"#, r#""endpoints": {}"#);
        let e = errors(&json);
        for want in [
            "credential_service.cluster: missing required field",
            "credential_service.vault.mount: expected a string, got a number",
            "providers[0].hosts: missing required field",
            "providers[0].kind: unknown value `mistral`; expected one of openai, anthropic, gemini, azure_openai, generic",
            "rules[0].workload: unknown field `workload`; expected one of name, workloads, providers, endpoints",
            "rules[0].workloads[1]: expected a string, got a number",
            "rules[0].endpoints: expected a list, got an object",
        ] {
            assert!(e.iter().any(|x| x == want), "missing {want:?} in {e:#?}");
        }
        assert_eq!(e.len(), 7, "{e:#?}");
    }

    #[test]
    fn numbers_are_never_formatted() {
        let e = errors(&MINIMAL.replace(
            r#""trust_domains": ["cluster.local"]"#,
            r#""trust_domains": 0.1, "mode": 1e10"#,
        ));
        assert_eq!(
            e,
            [
                "mode: expected a string, got a number",
                "trust_domains: expected a list, got a number"
            ]
        );
    }

    #[test]
    fn unknown_top_level_fields_and_odd_keys_are_quoted() {
        let e = errors(&MINIMAL.replacen('{', "{\"mo\\nde\": 1, \"x\": null,", 1));
        assert_eq!(
            e,
            [
                "\"mo\\nde\": unknown field \"mo\\nde\"; expected one of mode, audit_log, trust_domains, credential_service, providers, rules",
                "x: unknown field `x`; expected one of mode, audit_log, trust_domains, credential_service, providers, rules"
            ]
        );
    }

    #[test]
    fn syntax_errors_have_a_position_and_no_path() {
        let e = read(b"{\n  \"mode\": }").unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].path, "");
        assert!(
            e.0[0]
                .message
                .starts_with("line 2 column 11: expected value"),
            "{e}"
        );
        assert_eq!(errors("[]"), ["expected an object, got a list"]);
        assert!(errors("{")
            .iter()
            .all(|m| m.starts_with("line 1 column 1: ")));
    }
}
