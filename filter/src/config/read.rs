//! Reads the configuration document into [`RawConfig`] and its rules, by
//! hand, over `serde_json::Value`s (no serde derive, which costs tens of KB
//! of wasm).
//!
//! The document is read from a reader, in two passes, and never held whole:
//! a large policy's text (1.4 MB for 10,000 rules) would otherwise take VM
//! memory that the VM never gives back.
//! 1. [`read_head`] reads every setting but the rules, finds every duplicate
//!    key in the whole document, and counts the rules;
//! 2. [`read_rules`] reads the rules one at a time and hands each to the
//!    caller as soon as it is read, so no list of rules is ever built.
//!
//! Invariants:
//! - Unknown fields are errors at every level, reported at their own path
//!   (`rules[1].workload: unknown field …`); a typo is never a silently
//!   ignored setting.
//! - Every problem is collected, each with the path of the value at fault
//!   (`rules[2].workloads[0]: expected a string, got a number`): the
//!   duplicate keys, then the settings' problems ([`Head::errs`]), then the
//!   rules' ([`read_rules`]).
//! - Messages never format input numbers (no float formatting in the
//!   module) and quote input strings escaped, so a log line cannot be split.
//! - A JSON syntax (or read) error has an empty path and reads
//!   `line L column C: <serde_json message>`; it is the only problem
//!   reported, and the first pass finds it.
//! - Optional settings given as `null` count as absent; fields with a
//!   non-`Option` default (`mode`, `rules`, `scope`, `prefix`) must have
//!   the right type when present.

use std::io::{self, Read};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::ConfigErrors;
use super::raw::*;

type Obj = Map<String, Value>;

/// How many bytes of the document are read from its source at a time.
const CHUNK: usize = 64 * 1024;

fn deserializer<R: Read>(
    doc: R,
) -> serde_json::Deserializer<serde_json::de::IoRead<io::BufReader<R>>> {
    serde_json::Deserializer::from_reader(io::BufReader::with_capacity(CHUNK, doc))
}

/// Whether the document holds only whitespace (a read error counts as
/// content, for [`read_head`] to report).
pub fn is_blank(doc: impl Read) -> bool {
    io::BufReader::with_capacity(CHUNK, doc)
        .bytes()
        .all(|b| matches!(b, Ok(b) if b.is_ascii_whitespace()))
}

/// What the first pass found.
#[derive(Debug)]
pub struct Head {
    /// Every setting but the rules; `None` when one has a problem.
    pub settings: Option<RawConfig>,
    /// Whether some `rules` member is a list, for [`read_rules`] to read.
    pub rules_listed: bool,
    /// How many rules the `rules` lists hold.
    pub rules: usize,
    /// Every duplicate key in the document, then the settings' problems.
    pub errs: ConfigErrors,
}

/// The first pass: settings, duplicate keys and the number of rules. Only
/// a syntax (or read) error is an `Err`.
pub fn read_head(doc: impl Read) -> Result<Head, ConfigErrors> {
    let mut dups = Vec::new();
    let mut rules = RulesFound::Absent;
    let mut rules_count = 0;
    let mut de = deserializer(doc);
    let root = HeadSeed {
        rules: &mut rules,
        rules_count: &mut rules_count,
        dups: &mut dups,
    }
    .deserialize(&mut de)
    .and_then(|root| de.end().map(|()| root))
    .map_err(syntax_error)?;
    let mut errs = ConfigErrors::default();
    // `Value` keeps only the last of duplicate keys, so they are found while
    // reading: `"mode": "enforce", ..., "mode": "dry_run"` is an error
    // rather than a silent switch to dry run.
    for (path, key) in dups {
        errs.push(path, format!("duplicate field {}", quote(&key)));
    }
    let rules_listed = rules_count > 0 || matches!(rules, RulesFound::List);
    let settings = read_config(&root, rules, &mut errs);
    Ok(Head {
        settings,
        rules_listed,
        rules: rules_count,
        errs,
    })
}

/// The second pass: hands each well-formed rule to `each` with its index,
/// in order, as soon as it is read; the others' problems go to `errs`.
pub fn read_rules(
    doc: impl Read,
    errs: &mut ConfigErrors,
    mut each: impl FnMut(usize, RawRule),
) -> Result<(), ConfigErrors> {
    let mut de = deserializer(doc);
    RulesPass {
        root: true,
        errs,
        each: &mut each,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .map_err(syntax_error)
}

fn syntax_error(e: serde_json::Error) -> ConfigErrors {
    let mut errs = ConfigErrors::default();
    errs.push("", syntax_message(&e));
    errs
}

/// Where a value sits in the document; rendered only for a message.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Index(&'a Path<'a>, usize),
    Key(&'a Path<'a>, &'a str),
}

impl Path<'_> {
    /// `rules[2].workloads`, with keys that are not plainly printable quoted.
    fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Index(parent, i) => format!("{}[{i}]", parent.render()),
            Path::Key(parent, key) => at(&parent.render(), &step(key)),
        }
    }
}

/// What the first pass found under the last `rules` member.
enum RulesFound {
    Absent,
    List,
    /// Not a list: a value of the same kind, for the type error.
    Wrong(Value),
}

/// Reads one value at `path`, recording each repeated object key (path and
/// key, in document order) in `dups`. The value is built only when `keep`;
/// otherwise strings come back as `Null` and lists and objects empty.
struct Walk<'p, 'd> {
    path: Path<'p>,
    dups: &'d mut Vec<(String, String)>,
    keep: bool,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("any JSON value")
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
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(match self.keep {
            true => Value::String(v.to_owned()),
            false => Value::Null,
        })
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        let mut i = 0usize;
        while let Some(v) = seq.next_element_seed(Walk {
            path: Path::Index(&self.path, i),
            dups: &mut *self.dups,
            keep: self.keep,
        })? {
            if self.keep {
                out.push(v);
            }
            i += 1;
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // The keys so far: in `out` when the value is kept, else in `seen`.
        let mut out = Obj::new();
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = Path::Key(&self.path, &key);
            let repeated = match self.keep {
                true => out.contains_key(&key),
                false => seen.contains(&key),
            };
            if repeated {
                self.dups.push((path.render(), key.clone()));
            }
            let v = map.next_value_seed(Walk {
                path,
                dups: &mut *self.dups,
                keep: self.keep,
            })?;
            if self.keep {
                out.insert(key, v);
            } else if !repeated {
                seen.push(key);
            }
        }
        Ok(Value::Object(out))
    }
}

/// The root in the first pass: every member is kept as a `Value` except
/// `rules`, which is only walked and counted ([`RulesCount`]).
struct HeadSeed<'a> {
    rules: &'a mut RulesFound,
    rules_count: &'a mut usize,
    dups: &'a mut Vec<(String, String)>,
}

impl<'a> HeadSeed<'a> {
    /// How a root that is not an object is read: for its kind, and its
    /// duplicate keys.
    fn walk(self, keep: bool) -> Walk<'static, 'a> {
        Walk {
            path: Path::Root,
            dups: self.dups,
            keep,
        }
    }
}

impl<'de> DeserializeSeed<'de> for HeadSeed<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeadSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Obj::new();
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = Path::Key(&Path::Root, &key);
            if seen.contains(&key) {
                self.dups.push((path.render(), key.clone()));
            } else {
                seen.push(key.clone());
            }
            if key == "rules" {
                *self.rules = map.next_value_seed(RulesCount {
                    path,
                    count: &mut *self.rules_count,
                    dups: &mut *self.dups,
                })?;
            } else {
                let v = map.next_value_seed(Walk {
                    path,
                    dups: &mut *self.dups,
                    keep: true,
                })?;
                out.insert(key, v);
            }
        }
        Ok(Value::Object(out))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        self.walk(false).visit_seq(seq)
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.walk(true).visit_bool(v)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.walk(true).visit_i64(v)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.walk(true).visit_u64(v)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.walk(true).visit_f64(v)
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::String(String::new()))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.walk(true).visit_unit()
    }
}

/// The `rules` member in the first pass: its elements are walked for
/// duplicate keys and counted into `count`, never kept.
struct RulesCount<'p, 'd> {
    path: Path<'p>,
    count: &'d mut usize,
    dups: &'d mut Vec<(String, String)>,
}

impl<'p, 'd> RulesCount<'p, 'd> {
    /// How a `rules` member that is not a list is read: for its kind.
    fn walk(self) -> Walk<'p, 'd> {
        Walk {
            path: self.path,
            dups: self.dups,
            keep: true,
        }
    }
}

impl<'de> DeserializeSeed<'de> for RulesCount<'_, '_> {
    type Value = RulesFound;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<RulesFound, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RulesCount<'_, '_> {
    type Value = RulesFound;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a list of rules")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RulesFound, A::Error> {
        let mut i = 0usize;
        while seq
            .next_element_seed(Walk {
                path: Path::Index(&self.path, i),
                dups: &mut *self.dups,
                keep: false,
            })?
            .is_some()
        {
            i += 1;
        }
        *self.count += i;
        Ok(RulesFound::List)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RulesFound, A::Error> {
        self.walk().visit_map(map).map(RulesFound::Wrong)
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RulesFound, E> {
        self.walk().visit_bool(v).map(RulesFound::Wrong)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RulesFound, E> {
        self.walk().visit_i64(v).map(RulesFound::Wrong)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RulesFound, E> {
        self.walk().visit_u64(v).map(RulesFound::Wrong)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RulesFound, E> {
        self.walk().visit_f64(v).map(RulesFound::Wrong)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RulesFound, E> {
        self.walk().visit_str(v).map(RulesFound::Wrong)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<RulesFound, E> {
        self.walk().visit_unit().map(RulesFound::Wrong)
    }
}

/// The second pass. At the root (`root`), reads the `rules` members; in a
/// `rules` member, reads the list one element at a time. Anything else was
/// read by the first pass and is skipped here (every kind of value is
/// accepted, so no message ever formats an input number).
struct RulesPass<'a, F> {
    root: bool,
    errs: &'a mut ConfigErrors,
    each: &'a mut F,
}

impl<'de, F: FnMut(usize, RawRule)> DeserializeSeed<'de> for RulesPass<'_, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(usize, RawRule)> Visitor<'de> for RulesPass<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if self.root && key == "rules" {
                map.next_value_seed(RulesPass {
                    root: false,
                    errs: &mut *self.errs,
                    each: &mut *self.each,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.root {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        let mut i = 0usize;
        while let Some(v) = seq.next_element::<Value>()? {
            if let Some(rule) = read_rule(&v, &format!("rules[{i}]"), self.errs) {
                (self.each)(i, rule);
            }
            i += 1;
        }
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
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

fn read_config(v: &Value, rules: RulesFound, errs: &mut ConfigErrors) -> Option<RawConfig> {
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
    if let RulesFound::Wrong(v) = rules {
        wrong_type(&v, "rules", "a list", errs);
        return None;
    }
    Some(RawConfig {
        mode: mode?,
        audit_log: audit_log?,
        trust_domains: trust_domains?,
        credential_service: credential_service?,
        providers: providers?,
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

/// An object key as a step of a path: as is when plainly printable, else
/// escaped and double-quoted.
fn step(key: &str) -> String {
    if plain(key) {
        key.to_string()
    } else {
        format!("{key:?}")
    }
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
            errs.push(
                at(path, &step(key)),
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

    /// Both passes, as `compile::parse_document` runs them.
    fn read(json: &[u8]) -> Result<(RawConfig, Vec<RawRule>), ConfigErrors> {
        let head = read_head(json)?;
        let mut errs = head.errs;
        let mut rules = Vec::new();
        if head.rules_listed {
            read_rules(json, &mut errs, |i, r| {
                assert_eq!(i, rules.len());
                rules.push(r)
            })?;
        }
        match head.settings {
            Some(s) if errs.is_empty() => Ok((s, rules)),
            _ => Err(errs),
        }
    }

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
        let (r, rules) = read(MINIMAL.as_bytes()).unwrap();
        assert!(matches!(r.mode, RawMode::Enforce));
        assert_eq!(r.trust_domains, ["cluster.local"]);
        assert_eq!(r.credential_service.protocol, RawProtocol::TollgateV1);
        assert!(r.credential_service.timeout.is_none());
        assert!(r.credential_service.vault.is_none());
        assert_eq!(r.providers[0].kind, RawProviderKind::Openai);
        assert_eq!(r.providers[0].credential.scope, RawScope::Shared);
        assert!(r.providers[0].header.is_none());
        assert_eq!(rules[0].endpoints, ["GET /"]);
        let no_rules = MINIMAL.replace(r#""rules": [{"name": "r", "workloads": ["spiffe://cluster.local/x"], "providers": ["openai"], "endpoints": ["GET /"]}]"#, r#""mode": "dry_run""#);
        let (r, rules) = read(no_rules.as_bytes()).unwrap();
        assert!(rules.is_empty());
        assert!(matches!(r.mode, RawMode::DryRun));
    }

    #[test]
    fn optional_settings_given_as_null_are_absent() {
        let json = MINIMAL.replace(
            r#""protocol": "tollgate_v1""#,
            r#""protocol": "vault_kv2", "ttl": null, "vault": {"mount": null}"#,
        );
        let (r, _) = read(json.as_bytes()).unwrap();
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
