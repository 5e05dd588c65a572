//! Reads the configuration document into [`RawConfig`] and its rules, by
//! hand (no serde derive, which costs tens of KB of wasm): the settings
//! through `serde_json::Value`s, each rule straight into a reused
//! [`RawRule`].
//!
//! The document is read from a [`Document`], in windows, by the
//! [`super::scan`] pull reader, in two passes, and never held whole: a
//! large policy's text (1.4 MB for 10,000 rules) would otherwise take VM
//! memory that the VM never gives back.
//! 1. [`read_head`] reads every setting but the rules and finds their
//!    duplicate keys; of the rules it only counts the elements (looking at
//!    nothing but brackets, commas and string bounds, most of the document
//!    passes at the speed of a string search);
//! 2. [`read_rules`] reads the rules one at a time, strictly, finds their
//!    duplicate keys, and hands each rule to the caller as soon as it is
//!    read, so no list of rules is ever built.
//!
//! When the scanner stops (a syntax or read error, or a number, which it
//! leaves to serde_json), serde_json reads the whole document and reports
//! its first syntax error exactly as before; if it finds none, the pass
//! runs again with the scanner skipping numbers (the second pass resumes
//! at the rule it stopped in).
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
//!   reported (the first pass finds it, or the second when it is inside
//!   a list of rules).
//! - Optional settings given as `null` count as absent; fields with a
//!   non-`Option` default (`mode`, `rules`, `scope`, `prefix`) must have
//!   the right type when present.

use std::io::{self, Read};

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::{ConfigError, ConfigErrors};
use super::raw::*;
use super::scan::{Kind, Scanner, Stop};
use super::Document;

type Obj = Map<String, Value>;

/// How many bytes of the document are read from its source at a time.
const CHUNK: usize = 64 * 1024;

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
    /// Every duplicate key outside the rules, then the settings' problems
    /// ([`read_rules`] inserts the rules' duplicate keys among the first).
    pub errs: ConfigErrors,
    /// Where each duplicate key in `errs` is ([`Scanner::offset`]).
    pub dups: Vec<usize>,
    /// Whether serde_json had to check the syntax (see [`super::scan`]);
    /// [`read_rules`] then reads leniently.
    pub checked: bool,
}

/// The first pass: settings, duplicate keys and the number of rules. Only
/// a syntax (or read) error is an `Err`.
pub fn read_head(doc: &dyn Document) -> Result<Head, ConfigErrors> {
    match head_pass(doc, false) {
        Ok(head) => Ok(head),
        Err(Stop) => {
            check(doc)?;
            head_pass(doc, true).map_err(|Stop| unreadable())
        }
    }
}

fn head_pass(doc: &dyn Document, checked: bool) -> Result<Head, Stop> {
    let mut sc = Scanner::new(doc.open(), CHUNK, checked);
    let mut w = Walker::new(&mut sc, String::new());
    let mut rules = RulesFound::Absent;
    let mut rules_count = 0;
    let root = w.head(&mut rules, &mut rules_count)?;
    let found = core::mem::take(&mut w.dups);
    sc.finish()?;
    let mut errs = ConfigErrors::default();
    // A map keeps only the last of duplicate keys, so they are found while
    // reading: `"mode": "enforce", ..., "mode": "dry_run"` is an error
    // rather than a silent switch to dry run.
    let mut dups = Vec::with_capacity(found.len());
    for (offset, path, key) in found {
        dups.push(offset);
        errs.push(path, duplicate(&key));
    }
    let rules_listed = rules_count > 0 || matches!(rules, RulesFound::List);
    let settings = read_config(&root, rules, &mut errs);
    Ok(Head {
        settings,
        rules_listed,
        rules: rules_count,
        errs,
        dups,
        checked,
    })
}

fn duplicate(key: &str) -> String {
    format!("duplicate field {}", quote(key))
}

/// The second pass: hands each well-formed rule to `each` with its index,
/// in order, as soon as it is read; the others' problems go to `errs`,
/// which holds the first pass's ([`Head::errs`]): the rules' duplicate keys
/// go among its duplicate keys (at [`Head::dups`]), in document order.
/// `checked` is [`Head::checked`].
///
/// The first pass only counted the rules, so this pass is the first to
/// read them strictly: when the scanner stops here, serde_json judges the
/// document, and if it finds nothing wrong the rules not yet read are read
/// again, leniently.
pub fn read_rules(
    doc: &dyn Document,
    checked: bool,
    dups: &[usize],
    errs: &mut ConfigErrors,
    mut each: impl FnMut(usize, &RawRule),
) -> Result<(), ConfigErrors> {
    let mut progress = Progress {
        dups,
        inserted: 0,
        done: 0,
    };
    let mut lenient = checked;
    loop {
        let mut sc = Scanner::new(doc.open(), CHUNK, lenient);
        match rules_pass(&mut sc, &mut progress, errs, &mut each) {
            Ok(()) => return Ok(()),
            Err(Stop) => {
                check(doc)?;
                if lenient {
                    return Err(unreadable());
                }
                lenient = true;
            }
        }
    }
}

/// How far [`read_rules`] got, kept across a second, lenient reading.
struct Progress<'d> {
    /// [`Head::dups`].
    dups: &'d [usize],
    /// How many of the rules' duplicate keys are in the errors.
    inserted: usize,
    /// How many rules (over every `rules` list) were read and reported.
    done: usize,
}

impl Progress<'_> {
    /// Puts each of a rule's duplicate keys among the others, in document
    /// order.
    fn insert_dups(&mut self, found: &mut Vec<Dup>, errs: &mut ConfigErrors) {
        for (offset, path, key) in found.drain(..) {
            let at = self.dups.partition_point(|&d| d < offset) + self.inserted;
            let e = ConfigError {
                path,
                message: duplicate(&key),
            };
            errs.0.insert(at.min(errs.0.len()), e);
            self.inserted += 1;
        }
    }
}

/// serde_json's judgement of the whole document: the first syntax (or
/// read) error, exactly as it words it.
#[inline(never)]
fn check(doc: &dyn Document) -> Result<(), ConfigErrors> {
    let mut de =
        serde_json::Deserializer::from_reader(io::BufReader::with_capacity(CHUNK, doc.open()));
    Check
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(syntax_error)
}

/// When the scanner and serde_json disagree (never expected).
fn unreadable() -> ConfigErrors {
    let mut errs = ConfigErrors::default();
    errs.push("", "the document could not be read as JSON");
    errs
}

fn syntax_error(e: serde_json::Error) -> ConfigErrors {
    let mut errs = ConfigErrors::default();
    errs.push("", syntax_message(&e));
    errs
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

/// Reads any value with serde_json and keeps nothing.
struct Check;

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<String>()?.is_some() {
            map.next_value_seed(Check)?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Check)?.is_some() {}
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

/// What the first pass found under the last `rules` member.
enum RulesFound {
    Absent,
    List,
    /// Not a list: a value of the same kind, for the type error.
    Wrong(Value),
}

/// One step of the path to the value being read.
#[derive(Clone, Copy)]
enum Step {
    Index(usize),
    /// A key, by its number in [`Walker::keys`].
    Key(usize),
}

/// A repeated object key: where it is ([`Scanner::offset`]), its path,
/// and the key.
type Dup = (usize, String, String);

/// Reads values, recording each repeated object key (in document order) in
/// `dups`: the first pass, and the second where a rule holds something
/// other than what it is read for.
struct Walker<'s, 'r> {
    sc: &'s mut Scanner<'r>,
    /// The path of the value read first.
    prefix: String,
    /// The keys of the objects being read, end to end.
    arena: String,
    /// Each key's span in `arena`.
    keys: Vec<(usize, usize)>,
    path: Vec<Step>,
    dups: Vec<Dup>,
}

impl<'s, 'r> Walker<'s, 'r> {
    fn new(sc: &'s mut Scanner<'r>, prefix: String) -> Self {
        Walker {
            sc,
            prefix,
            arena: String::new(),
            keys: Vec::new(),
            path: Vec::new(),
            dups: Vec::new(),
        }
    }

    fn key_text(&self, k: usize) -> &str {
        self.keys
            .get(k)
            .and_then(|&(s, e)| self.arena.get(s..e))
            .unwrap_or("")
    }

    /// `rules[2].workloads`, with keys that are not plainly printable quoted.
    #[inline(never)]
    fn render(&self) -> String {
        let mut out = self.prefix.clone();
        for s in &self.path {
            match *s {
                Step::Index(i) => out = format!("{out}[{i}]"),
                Step::Key(k) => out = at(&out, &step(self.key_text(k))),
            }
        }
        out
    }

    /// The next key of the object whose first key is number `base`: added
    /// to the path (the caller pops it) and checked for repeats.
    fn next_key(&mut self, first: &mut bool, base: usize) -> Result<Option<usize>, Stop> {
        let Some(key) = self.sc.next_key(first)? else {
            return Ok(None);
        };
        let start = self.arena.len();
        self.arena.push_str(key);
        let end = self.arena.len();
        let text = self.arena.get(start..end).unwrap_or("");
        let earlier = self.keys.get(base..).unwrap_or(&[]);
        let repeated = earlier
            .iter()
            .any(|&(s, e)| self.arena.get(s..e) == Some(text));
        let k = self.keys.len();
        self.keys.push((start, end));
        self.path.push(Step::Key(k));
        if repeated {
            let path = self.render();
            let offset = self.sc.offset();
            self.dups.push((offset, path, self.key_text(k).to_string()));
        }
        Ok(Some(k))
    }

    /// Forgets the keys from number `base` on (an object was read).
    fn end_object(&mut self, base: usize) {
        if let Some(&(start, _)) = self.keys.get(base) {
            self.arena.truncate(start);
        }
        self.keys.truncate(base);
    }

    /// Reads one value. It is built only when `keep`; otherwise strings come
    /// back as `Null` and lists and objects empty. Of a number only a
    /// non-negative integer is kept (any other number reads as -1, which no
    /// setting accepts); of a boolean only its kind.
    fn walk(&mut self, keep: bool) -> Result<Value, Stop> {
        Ok(match self.sc.kind()? {
            Kind::Object => {
                self.sc.open_object()?;
                let mut out = Obj::new();
                let base = self.keys.len();
                let mut first = true;
                while let Some(k) = self.next_key(&mut first, base)? {
                    let v = self.walk(keep)?;
                    self.path.pop();
                    if keep {
                        out.insert(self.key_text(k).to_string(), v);
                    }
                }
                self.end_object(base);
                Value::Object(out)
            }
            Kind::List => {
                self.sc.open_list()?;
                let mut out = Vec::new();
                let mut first = true;
                let mut i = 0usize;
                while self.sc.next_element(&mut first)? {
                    self.path.push(Step::Index(i));
                    let v = self.walk(keep)?;
                    self.path.pop();
                    if keep {
                        out.push(v);
                    }
                    i += 1;
                }
                Value::Array(out)
            }
            Kind::String => {
                let s = self.sc.string()?;
                match keep {
                    true => Value::String(s.to_owned()),
                    false => Value::Null,
                }
            }
            Kind::Number => match self.sc.uint()? {
                Some(n) if keep => Value::from(n),
                Some(_) => Value::from(0),
                None => Value::from(-1),
            },
            kind => {
                let is_true = self.sc.scalar()?;
                match kind {
                    Kind::Bool => Value::Bool(is_true),
                    _ => Value::Null,
                }
            }
        })
    }

    /// The root: every member is kept as a `Value` except `rules`, which is
    /// only walked and counted.
    fn head(&mut self, rules: &mut RulesFound, count: &mut usize) -> Result<Value, Stop> {
        match self.sc.kind()? {
            Kind::Object => {}
            Kind::List => return self.walk(false),
            Kind::String => {
                self.sc.string()?;
                return Ok(Value::String(String::new()));
            }
            _ => return self.walk(true),
        }
        self.sc.open_object()?;
        let mut out = Obj::new();
        let mut first = true;
        while let Some(k) = self.next_key(&mut first, 0)? {
            if self.key_text(k) == "rules" {
                *rules = self.rules_count(count)?;
            } else {
                let v = self.walk(true)?;
                out.insert(self.key_text(k).to_string(), v);
            }
            self.path.pop();
        }
        self.end_object(0);
        Ok(Value::Object(out))
    }

    /// A `rules` member: a list's elements are only counted into `count`
    /// ([`read_rules`] reads them, strictly, and finds their duplicate keys).
    fn rules_count(&mut self, count: &mut usize) -> Result<RulesFound, Stop> {
        if self.sc.kind()? != Kind::List {
            return self.walk(true).map(RulesFound::Wrong);
        }
        *count += self.sc.count_list()?;
        Ok(RulesFound::List)
    }
}

/// The second pass: at the root, reads the `rules` members that are lists,
/// one element at a time; anything else was read by the first pass and is
/// skipped here.
fn rules_pass(
    sc: &mut Scanner<'_>,
    progress: &mut Progress<'_>,
    errs: &mut ConfigErrors,
    each: &mut impl FnMut(usize, &RawRule),
) -> Result<(), Stop> {
    if sc.kind()? != Kind::Object {
        sc.skip()?;
        return sc.finish();
    }
    let mut rule = RuleReader::default();
    sc.open_object()?;
    let mut first = true;
    let mut n = 0usize;
    while let Some(key) = sc.next_key(&mut first)? {
        if key != "rules" || sc.kind()? != Kind::List {
            sc.skip()?;
            continue;
        }
        sc.open_list()?;
        let mut first = true;
        let mut i = 0usize;
        while sc.next_element(&mut first)? {
            if n < progress.done {
                sc.skip()?;
            } else {
                let ok = rule.read(sc, i, errs)?;
                progress.insert_dups(&mut rule.dups, errs);
                progress.done = n + 1;
                if ok {
                    each(i, &rule.rule);
                }
            }
            i += 1;
            n += 1;
        }
    }
    sc.finish()
}

/// Why a list of strings was not read.
enum ListProblem {
    NotList(Kind),
    /// The items that are not strings, with their kinds.
    Items(Vec<(usize, Kind)>),
}

/// What was read of one member of a rule: `None` when absent.
type Slot<P> = Option<Result<(), P>>;

/// Reads rules one at a time, reusing the buffers of the last one.
#[derive(Default)]
struct RuleReader {
    rule: RawRule,
    unknown: Vec<String>,
    /// The last rule's repeated keys, at any depth, in document order.
    dups: Vec<Dup>,
}

const RULE_FIELDS: [&str; 11] = [
    "name",
    "workloads",
    "providers",
    "endpoints",
    "models",
    "max_output_tokens",
    "max_output_tokens_action",
    "max_body_bytes",
    "budgets",
    "prompt_guard",
    "dlp",
];

/// The number of a rule member in [`RULE_FIELDS`] (its length when unknown).
fn rule_field(key: &str) -> usize {
    match key {
        "name" => 0,
        "workloads" => 1,
        "providers" => 2,
        "endpoints" => 3,
        "models" => 4,
        "max_output_tokens" => 5,
        "max_output_tokens_action" => 6,
        "max_body_bytes" => 7,
        "budgets" => 8,
        "prompt_guard" => 9,
        "dlp" => 10,
        _ => RULE_FIELDS.len(),
    }
}

/// Where in rule `i` a value is.
#[derive(Clone, Copy)]
enum At<'a> {
    /// The rule itself.
    Rule(usize),
    /// A member, by its key.
    Member(usize, &'a str),
    /// An element of a member.
    Item(usize, &'a str, usize),
}

impl At<'_> {
    fn path(self) -> String {
        match self {
            At::Rule(i) => format!("rules[{i}]"),
            At::Member(i, key) => at(&format!("rules[{i}]"), &step(key)),
            At::Item(i, key, j) => format!("{}[{j}]", At::Member(i, key).path()),
        }
    }
}

/// Skips a value that is not read, recording its repeated keys in `dups`.
#[inline(never)]
fn skip_value(sc: &mut Scanner<'_>, dups: &mut Vec<Dup>, at: At<'_>) -> Result<Kind, Stop> {
    let kind = sc.kind()?;
    if !matches!(kind, Kind::List | Kind::Object) {
        return sc.skip();
    }
    let mut w = Walker::new(sc, at.path());
    w.walk(false)?;
    dups.append(&mut w.dups);
    Ok(kind)
}

impl RuleReader {
    /// Reads rule `i` into `self.rule`; true when it is well-formed, else
    /// its problems go to `errs`, in the order the settings' readers use
    /// (and a map of the members would give): unknown fields by name, then
    /// each field in turn; of repeated keys the last counts. The repeated
    /// keys themselves are left in `self.dups`.
    fn read(
        &mut self,
        sc: &mut Scanner<'_>,
        i: usize,
        errs: &mut ConfigErrors,
    ) -> Result<bool, Stop> {
        self.dups.clear();
        let kind = sc.kind()?;
        if kind != Kind::Object {
            skip_value(sc, &mut self.dups, At::Rule(i))?;
            errs.push(
                format!("rules[{i}]"),
                format!("expected an object, got {}", kind.name()),
            );
            return Ok(false);
        }
        self.unknown.clear();
        self.rule.models = None;
        self.rule.max_output_tokens = None;
        self.rule.max_output_tokens_action = None;
        self.rule.max_body_bytes = None;
        self.rule.budgets = None;
        self.rule.prompt_guard = None;
        self.rule.dlp = None;
        let mut name: Slot<Kind> = None;
        let mut lists: [Slot<ListProblem>; 3] = [None, None, None];
        // Problems of optional members: (member, path below the rule,
        // problem), in the order read; a repeated member replaces its own.
        let mut optional: Vec<(&'static str, String, String)> = Vec::new();
        // The known members read so far, by their bit.
        let mut seen = 0u16;
        sc.open_object()?;
        let mut first = true;
        while let Some(key) = sc.next_key(&mut first)? {
            let n = rule_field(key);
            let repeated = if n < RULE_FIELDS.len() {
                let repeated = seen & (1 << n) != 0;
                seen |= 1 << n;
                repeated.then(|| key.to_string())
            } else {
                let repeated = self.unknown.iter().any(|u| u == key);
                self.unknown.push(key.to_string());
                repeated.then(|| key.to_string())
            };
            if let Some(key) = repeated {
                let path = At::Member(i, &key).path();
                self.dups.push((sc.offset(), path, key));
            }
            let field = RULE_FIELDS.get(n).copied().unwrap_or("");
            let dups = &mut self.dups;
            let member = At::Member(i, field);
            match n {
                0 => {
                    name = Some(match sc.kind()? {
                        Kind::String => {
                            let s = sc.string()?;
                            self.rule.name.clear();
                            self.rule.name.push_str(s);
                            Ok(())
                        }
                        _ => Err(skip_value(sc, dups, member)?),
                    });
                }
                1..=3 => {
                    let list = match n {
                        1 => &mut self.rule.workloads,
                        2 => &mut self.rule.providers,
                        _ => &mut self.rule.endpoints,
                    };
                    let read = str_list_into(sc, list, dups, member)?;
                    if let Some(slot) = lists.get_mut(n - 1) {
                        *slot = Some(read);
                    }
                }
                4 | 8 => {
                    optional.retain(|(f, _, _)| *f != field);
                    let slot = if n == 4 {
                        &mut self.rule.models
                    } else {
                        &mut self.rule.budgets
                    };
                    let mut items = slot.take().unwrap_or_default();
                    match str_list_into(sc, &mut items, dups, member)? {
                        Ok(()) => *slot = Some(items),
                        Err(ListProblem::NotList(k)) => optional.push((
                            field,
                            field.into(),
                            format!("expected a list, got {}", k.name()),
                        )),
                        Err(ListProblem::Items(bad)) => {
                            for (j, k) in bad {
                                optional.push((
                                    field,
                                    format!("{field}[{j}]"),
                                    format!("expected a string, got {}", k.name()),
                                ));
                            }
                        }
                    }
                }
                5 | 7 => {
                    optional.retain(|(f, _, _)| *f != field);
                    let value = match sc.kind()? {
                        Kind::Number => match sc.uint()? {
                            Some(n) => Some(n),
                            None => {
                                optional.push((
                                    field,
                                    field.into(),
                                    "expected a non-negative integer".into(),
                                ));
                                None
                            }
                        },
                        Kind::Null => {
                            sc.scalar()?;
                            None
                        }
                        k => {
                            skip_value(sc, dups, member)?;
                            optional.push((
                                field,
                                field.into(),
                                format!("expected an integer, got {}", k.name()),
                            ));
                            None
                        }
                    };
                    if n == 7 {
                        self.rule.max_body_bytes = value;
                    } else {
                        self.rule.max_output_tokens = value;
                    }
                }
                6 | 9 | 10 => {
                    let slot = match n {
                        9 => &mut self.rule.prompt_guard,
                        10 => &mut self.rule.dlp,
                        _ => &mut self.rule.max_output_tokens_action,
                    };
                    optional.retain(|(f, _, _)| *f != field);
                    *slot = match sc.kind()? {
                        Kind::String => Some(sc.string()?.to_owned()),
                        Kind::Null => {
                            sc.scalar()?;
                            None
                        }
                        k => {
                            skip_value(sc, dups, member)?;
                            optional.push((
                                field,
                                field.into(),
                                format!("expected a string, got {}", k.name()),
                            ));
                            None
                        }
                    };
                }
                _ => {
                    let key = self.unknown.last().map_or("", |k| k.as_str());
                    skip_value(sc, dups, At::Member(i, key))?;
                }
            }
        }
        if name.as_ref().is_some_and(|n| n.is_ok())
            && self.unknown.is_empty()
            && optional.is_empty()
            && lists.iter().all(|l| l.as_ref().is_some_and(|l| l.is_ok()))
        {
            return Ok(true);
        }
        let path = format!("rules[{i}]");
        crate::sort::sort(&mut self.unknown);
        self.unknown.dedup();
        for key in &self.unknown {
            errs.push(
                at(&path, &step(key)),
                format!(
                    "unknown field {}; expected one of {}",
                    quote(key),
                    RULE_FIELDS.join(", ")
                ),
            );
        }
        let missing = |field: &str, errs: &mut ConfigErrors| {
            errs.push(at(&path, field), "missing required field")
        };
        match name {
            None => missing("name", errs),
            Some(Err(k)) => errs.push(
                at(&path, "name"),
                format!("expected a string, got {}", k.name()),
            ),
            Some(Ok(())) => {}
        }
        for (_, below, problem) in &optional {
            errs.push(format!("{path}.{below}"), problem.clone());
        }
        for (slot, field) in lists.iter().zip(RULE_FIELDS.get(1..4).unwrap_or(&[])) {
            let at = at(&path, field);
            match slot {
                None => missing(field, errs),
                Some(Err(ListProblem::NotList(k))) => {
                    errs.push(at, format!("expected a list, got {}", k.name()))
                }
                Some(Err(ListProblem::Items(items))) => {
                    for (j, k) in items {
                        errs.push(
                            format!("{at}[{j}]"),
                            format!("expected a string, got {}", k.name()),
                        );
                    }
                }
                Some(Ok(())) => {}
            }
        }
        Ok(false)
    }
}

/// Reads a list of strings (member `at` of a rule) into `out`, reusing its
/// strings; what is not a string is skipped, its repeated keys going to
/// `dups`.
fn str_list_into(
    sc: &mut Scanner<'_>,
    out: &mut Vec<String>,
    dups: &mut Vec<Dup>,
    at: At<'_>,
) -> Result<Result<(), ListProblem>, Stop> {
    let kind = sc.kind()?;
    if kind != Kind::List {
        skip_value(sc, dups, at)?;
        return Ok(Err(ListProblem::NotList(kind)));
    }
    sc.open_list()?;
    let mut wrong = Vec::new();
    let mut first = true;
    let mut n = 0usize;
    while sc.next_element(&mut first)? {
        match sc.kind()? {
            Kind::String => {
                let s = sc.string()?;
                match out.get_mut(n) {
                    Some(slot) => {
                        slot.clear();
                        slot.push_str(s);
                    }
                    None => out.push(s.to_owned()),
                }
            }
            _ => {
                let item = match at {
                    At::Member(i, key) => At::Item(i, key, n),
                    other => other,
                };
                wrong.push((n, skip_value(sc, dups, item)?))
            }
        }
        n += 1;
    }
    out.truncate(n);
    Ok(match wrong.is_empty() {
        true => Ok(()),
        false => Err(ListProblem::Items(wrong)),
    })
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
            "body_mode",
            "stream_usage",
            "trust_domains",
            "credential_service",
            "providers",
            "budgets",
            "prices",
            "prompt_guards",
            "rate_limit_service",
            "dlp_policies",
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
    let body_mode = match m.get("body_mode") {
        None => Some(RawBodyMode::default()),
        Some(v) => enum_of(
            v,
            "body_mode",
            &[
                ("held", RawBodyMode::Held),
                ("streamed", RawBodyMode::Streamed),
            ],
            errs,
        ),
    };
    let stream_usage = match m.get("stream_usage") {
        None => Some(RawStreamUsage::default()),
        Some(v) => enum_of(
            v,
            "stream_usage",
            &[
                ("inject", RawStreamUsage::Inject),
                ("leave", RawStreamUsage::Leave),
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
    let budgets = match present(m, "budgets") {
        None => Some(Vec::new()),
        Some(v) => list(Some(v), "budgets", errs, read_budget),
    };
    let prices = match present(m, "prices") {
        None => Some(Vec::new()),
        Some(v) => list(Some(v), "prices", errs, read_price),
    };
    let prompt_guards = match present(m, "prompt_guards") {
        None => Some(Vec::new()),
        Some(v) => list(Some(v), "prompt_guards", errs, read_guard),
    };
    let dlp_policies = match present(m, "dlp_policies") {
        None => Some(Vec::new()),
        Some(v) => list(Some(v), "dlp_policies", errs, read_dlp_policy),
    };
    let rate_limit_service = match present(m, "rate_limit_service") {
        None => Some(None),
        Some(v) => read_rate_limit_service(v, "rate_limit_service", errs).map(Some),
    };
    if let RulesFound::Wrong(v) = rules {
        wrong_type(&v, "rules", "a list", errs);
        return None;
    }
    Some(RawConfig {
        dlp_policies: dlp_policies?,
        rate_limit_service: rate_limit_service?,
        budgets: budgets?,
        prices: prices?,
        prompt_guards: prompt_guards?,
        mode: mode?,
        audit_log: audit_log?,
        body_mode: body_mode?,
        stream_usage: stream_usage?,
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

fn read_dlp_policy(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<RawDlpPolicy> {
    let m = obj(v, path, errs)?;
    known(
        m,
        path,
        &[
            "name",
            "block",
            "redact",
            "audit",
            "literals",
            "responses",
            "response_holdback",
        ],
        errs,
    );
    let name = req_str(m, path, "name", errs);
    let mut names = |field: &str| match present(m, field) {
        None => Some(Vec::new()),
        Some(v) => str_list(Some(v), &at(path, field), errs),
    };
    let block = names("block");
    let redact = names("redact");
    let audit = names("audit");
    let literals = match present(m, "literals") {
        None => Some(Vec::new()),
        Some(v) => list(Some(v), &at(path, "literals"), errs, read_literal),
    };
    let responses = match present(m, "responses") {
        None => Some(false),
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => {
            wrong_type(v, &at(path, "responses"), "true or false", errs);
            None
        }
    };
    let response_holdback = opt_uint(m, path, "response_holdback", errs);
    Some(RawDlpPolicy {
        name: name?,
        block: block?,
        redact: redact?,
        audit: audit?,
        literals: literals?,
        responses: responses?,
        response_holdback: response_holdback?,
    })
}

fn read_literal(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<RawLiteral> {
    let m = obj(v, path, errs)?;
    known(m, path, &["name", "text", "pattern", "ignore_case"], errs);
    let name = req_str(m, path, "name", errs);
    let text = match (
        opt_str(m, path, "text", errs),
        opt_str(m, path, "pattern", errs),
    ) {
        (Some(Some(t)), Some(None)) => Some((t, false)),
        (Some(None), Some(Some(p))) => Some((p, true)),
        (Some(_), Some(_)) => {
            errs.push(path.to_string(), "give either \"text\" or \"pattern\"");
            None
        }
        _ => None,
    };
    let ignore_case = match present(m, "ignore_case") {
        None => Some(None),
        Some(Value::Bool(b)) => Some(Some(*b)),
        Some(other) => {
            wrong_type(other, &at(path, "ignore_case"), "true or false", errs);
            None
        }
    };
    let (text, pattern) = text?;
    Some(RawLiteral {
        name: name?,
        text,
        pattern,
        ignore_case: ignore_case?,
    })
}

fn read_rate_limit_service(
    v: &Value,
    path: &str,
    errs: &mut ConfigErrors,
) -> Option<RawRateLimitService> {
    let m = obj(v, path, errs)?;
    known(
        m,
        path,
        &["cluster", "domain", "timeout", "failure_mode"],
        errs,
    );
    let cluster = req_str(m, path, "cluster", errs);
    let domain = opt_str(m, path, "domain", errs);
    let timeout = opt_str(m, path, "timeout", errs);
    let failure_mode = opt_str(m, path, "failure_mode", errs);
    Some(RawRateLimitService {
        cluster: cluster?,
        domain: domain?,
        timeout: timeout?,
        failure_mode: failure_mode?,
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

fn read_budget(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<RawBudget> {
    let m = obj(v, path, errs)?;
    known(
        m,
        path,
        &[
            "name", "requests", "tokens", "cost", "window", "scope", "slots", "tier",
        ],
        errs,
    );
    let name = req_str(m, path, "name", errs);
    let window = req_str(m, path, "window", errs);
    let mut count = |field: &str| opt_uint(m, path, field, errs);
    let requests = count("requests");
    let tokens = count("tokens");
    let slots = count("slots");
    let cost = match present(m, "cost") {
        None => Some(None),
        Some(v) => amount(v, &at(path, "cost"), errs).map(Some),
    };
    let tier = opt_str(m, path, "tier", errs);
    let scope = match m.get("scope") {
        None => Some(RawScope::PerWorkload),
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
    Some(RawBudget {
        name: name?,
        requests: requests?,
        tokens: tokens?,
        cost: cost?,
        window: window?,
        scope: scope?,
        slots: slots?,
        tier: tier?,
    })
}

fn read_guard(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<RawGuard> {
    let m = obj(v, path, errs)?;
    known(
        m,
        path,
        &["name", "factor", "min_bytes", "warmup", "action", "slots"],
        errs,
    );
    let name = req_str(m, path, "name", errs);
    let mut count = |field: &str| opt_uint(m, path, field, errs);
    let factor = count("factor");
    let min_bytes = count("min_bytes");
    let warmup = count("warmup");
    let slots = count("slots");
    let action = match present(m, "action") {
        None => Some(None),
        Some(v) => string(v, &at(path, "action"), errs).map(Some),
    };
    Some(RawGuard {
        name: name?,
        factor: factor?,
        min_bytes: min_bytes?,
        warmup: warmup?,
        action: action?,
        slots: slots?,
    })
}

fn read_price(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<RawPrice> {
    let m = obj(v, path, errs)?;
    known(m, path, &["model", "input", "cached_input", "output"], errs);
    let model = req_str(m, path, "model", errs);
    let input = req(m, path, "input", errs).and_then(|v| amount(v, &at(path, "input"), errs));
    let output = req(m, path, "output", errs).and_then(|v| amount(v, &at(path, "output"), errs));
    let cached_input = match present(m, "cached_input") {
        None => Some(None),
        Some(v) => amount(v, &at(path, "cached_input"), errs).map(Some),
    };
    Some(RawPrice {
        model: model?,
        input: input?,
        cached_input: cached_input?,
        output: output?,
    })
}

/// An optional non-negative integer member: `Some(None)` when absent (or
/// null), `None` (reported) when it is anything else.
fn opt_uint(m: &Obj, path: &str, field: &str, errs: &mut ConfigErrors) -> Option<Option<u64>> {
    match present(m, field) {
        None => Some(None),
        Some(v) => match v.as_u64() {
            Some(n) => Some(Some(n)),
            None => {
                errs.push(at(path, field), "expected a non-negative integer");
                None
            }
        },
    }
}

/// An amount of money: a decimal string (`"0.15"`) or a non-negative
/// integer, kept as text for `compile` to read exactly.
fn amount(v: &Value, path: &str, errs: &mut ConfigErrors) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        // Through `u64`, not `Number`'s Display, which brings float printing.
        Value::Number(n) if n.as_u64().is_some() => n.as_u64().map(|u| u.to_string()),
        _ => {
            errs.push(
                path,
                format!(
                    "expected a decimal string such as \"0.15\" or a non-negative integer, got {}",
                    kind(v)
                ),
            );
            None
        }
    }
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
    let i = enum_index(v, path, &mut choices.iter().map(|(n, _)| *n), errs)?;
    choices.get(i).map(|(_, t)| *t)
}

/// [`enum_of`]'s work, once for every choice type: the position of `v`'s
/// spelling among `names`.
#[inline(never)]
fn enum_index(
    v: &Value,
    path: &str,
    names: &mut dyn Iterator<Item = &str>,
    errs: &mut ConfigErrors,
) -> Option<usize> {
    let s = match v {
        Value::String(s) => s,
        _ => {
            wrong_type(v, path, "a string", errs);
            return None;
        }
    };
    let names: Vec<&str> = names.collect();
    let found = names.iter().position(|n| n == s);
    if found.is_none() {
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
    let mut out = Vec::new();
    let ok = each_item(v, path, errs, &mut |v, p, errs| match item(v, p, errs) {
        Some(t) => {
            out.push(t);
            true
        }
        None => false,
    })?;
    ok.then_some(out)
}

/// The loop of [`list`], once for every item type: `None` when `v` is not
/// a list, else whether every item was read.
#[inline(never)]
fn each_item(
    v: Option<&Value>,
    path: &str,
    errs: &mut ConfigErrors,
    item: &mut dyn FnMut(&Value, &str, &mut ConfigErrors) -> bool,
) -> Option<bool> {
    let items = match v? {
        Value::Array(a) => a,
        other => {
            wrong_type(other, path, "a list", errs);
            return None;
        }
    };
    let mut ok = true;
    for (i, v) in items.iter().enumerate() {
        ok &= item(v, &format!("{path}[{i}]"), errs);
    }
    Some(ok)
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
        read_doc(&json)
    }

    fn read_doc(doc: &dyn Document) -> Result<(RawConfig, Vec<RawRule>), ConfigErrors> {
        let head = read_head(doc)?;
        let mut errs = head.errs;
        let mut rules = Vec::new();
        if head.rules_listed {
            read_rules(doc, head.checked, &head.dups, &mut errs, |i, r| {
                assert!(i >= rules.len());
                rules.push(r.clone())
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
            "rules[0].workload: unknown field `workload`; expected one of name, workloads, providers, endpoints, models, max_output_tokens, max_output_tokens_action, max_body_bytes, budgets, prompt_guard, dlp",
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
                "\"mo\\nde\": unknown field \"mo\\nde\"; expected one of mode, audit_log, body_mode, stream_usage, trust_domains, credential_service, providers, budgets, prices, prompt_guards, rate_limit_service, dlp_policies, rules",
                "x: unknown field `x`; expected one of mode, audit_log, body_mode, stream_usage, trust_domains, credential_service, providers, budgets, prices, prompt_guards, rate_limit_service, dlp_policies, rules"
            ]
        );
    }

    /// What serde_json alone says of `json`, read as the configuration
    /// was read before the scanner (from a reader, as a `Value`).
    fn serde_json_says(json: &str) -> String {
        match serde_json::from_reader::<_, Value>(json.as_bytes()) {
            Ok(_) => String::new(),
            Err(e) => syntax_message(&e),
        }
    }

    #[test]
    fn the_scanner_refuses_what_serde_json_refuses_with_its_words() {
        let rule = |workload: &str| MINIMAL.replace(r#""spiffe://cluster.local/x""#, workload);
        let deep = format!("{}{}", "[".repeat(130), "]".repeat(130));
        for bad in [
            rule(r#""spiffe://cluster.local/\x""#),
            rule(r#""spiffe://cluster.local/\ud800""#),
            rule(r#""spiffe://cluster.local/\udc00x""#),
            rule(r#""spiffe://cluster.local/\ud800\u0041""#),
            rule(r#""spiffe://cluster.local/\u12""#),
            rule("\"spiffe://cluster.local/\u{1}\""),
            rule(r#""x",]"#),
            rule("1e400"),
            rule("-"),
            rule("01"),
            rule("tru"),
            MINIMAL.replacen('{', r#"{"a": 1,}"#, 1),
            MINIMAL.replacen('{', "{,", 1),
            format!("{MINIMAL} x"),
            format!("{MINIMAL}}}"),
            MINIMAL.replacen('{', &format!(r#"{{"deep": {deep},"#), 1),
            "[1,]".to_string(),
            "\u{feff}{}".to_string(),
        ] {
            let want = serde_json_says(&bad);
            assert!(want.starts_with("line "), "{bad}: {want}");
            assert_eq!(errors(&bad), [want], "{bad}");
        }
    }

    #[test]
    fn escapes_and_non_ascii_text_read_as_serde_json_reads_them() {
        let json = MINIMAL
            .replace(
                r#""name": "r""#,
                r#""n\u0061me": "r\u00e9\ud83d\ude00\"\\\/\b\f\n\r\t é""#,
            )
            .replace(r#""mode""#, r#""m\u006fde""#);
        let (_, rules) = read(json.as_bytes()).unwrap();
        let want: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(rules[0].name, want["rules"][0]["name"].as_str().unwrap());
        assert_eq!(rules[0].name, "ré😀\"\\/\u{8}\u{c}\n\r\t é");
        // Numbers and booleans are type errors; serde_json judged the syntax.
        let e =
            errors(&MINIMAL.replace(r#""GET /""#, r#"-1.5e3, true, null, 12345678901234567890"#));
        assert_eq!(
            e,
            [
                "rules[0].endpoints[0]: expected a string, got a number",
                "rules[0].endpoints[1]: expected a string, got a boolean",
                "rules[0].endpoints[2]: expected a string, got null",
                "rules[0].endpoints[3]: expected a string, got a number",
            ]
        );
    }

    #[test]
    fn a_rule_reports_unknown_fields_by_name_then_each_field_and_the_last_repeat_counts() {
        let e = errors(&MINIMAL.replace(
            r#"{"name": "r", "workloads": ["spiffe://cluster.local/x"], "providers": ["openai"], "endpoints": ["GET /"]}"#,
            r#"{"zz": 1, "endpoints": 1, "b": 2, "zz": 3, "providers": ["openai"], "endpoints": [1, "x", {}], "name": 2}, 7, {}"#,
        ));
        assert_eq!(
            e,
            [
                "rules[0].zz: duplicate field `zz`",
                "rules[0].endpoints: duplicate field `endpoints`",
                "rules[0].b: unknown field `b`; expected one of name, workloads, providers, endpoints, models, max_output_tokens, max_output_tokens_action, max_body_bytes, budgets, prompt_guard, dlp",
                "rules[0].zz: unknown field `zz`; expected one of name, workloads, providers, endpoints, models, max_output_tokens, max_output_tokens_action, max_body_bytes, budgets, prompt_guard, dlp",
                "rules[0].name: expected a string, got a number",
                "rules[0].workloads: missing required field",
                "rules[0].endpoints[0]: expected a string, got a number",
                "rules[0].endpoints[2]: expected a string, got an object",
                "rules[1]: expected an object, got a number",
                "rules[2].name: missing required field",
                "rules[2].workloads: missing required field",
                "rules[2].providers: missing required field",
                "rules[2].endpoints: missing required field",
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

    #[test]
    fn duplicate_keys_in_rules_are_reported_in_document_order() {
        let json = MINIMAL
            .replacen('{', r#"{"mode": "enforce", "mode": "enforce","#, 1)
            .replace(
                r#""name": "r","#,
                r#""name": "r", "x": {"a": 1, "b": [{"a": 2, "a": 3}], "a": 4}, "workloads": [{"k": 1, "k": 2}], "models": {"m": 1, "m": 2},"#,
            )
            .replace(r#""endpoints": ["GET /"]}]"#, r#""endpoints": ["GET /"]}, [{"z": 1, "z": 2}]], "audit_log": "both", "audit_log": "both""#);
        assert_eq!(
            errors(&json),
            [
                "mode: duplicate field `mode`",
                "rules[0].x.b[0].a: duplicate field `a`",
                "rules[0].x.a: duplicate field `a`",
                "rules[0].workloads[0].k: duplicate field `k`",
                "rules[0].models.m: duplicate field `m`",
                "rules[0].workloads: duplicate field `workloads`",
                "rules[1][0].z: duplicate field `z`",
                "audit_log: duplicate field `audit_log`",
                "rules[0].x: unknown field `x`; expected one of name, workloads, providers, endpoints, models, max_output_tokens, max_output_tokens_action, max_body_bytes, budgets, prompt_guard, dlp",
                "rules[0].models: expected a list, got an object",
                "rules[1]: expected an object, got a list",
            ]
        );
    }

    #[test]
    fn a_number_only_serde_json_can_judge_in_a_rule_loses_and_repeats_nothing() {
        let rule = |extra: &str| {
            format!(
                r#"{{"name": "r", {extra} "workloads": ["spiffe://cluster.local/x"], "providers": ["openai"], "endpoints": ["GET /"]}}"#
            )
        };
        let rules = [
            rule(r#""y": 1, "y": 2,"#),
            rule(r#""max_output_tokens": 1.5, "models": [2e3], "max_body_bytes": 01,"#),
            rule(r#""z": -1,"#),
        ]
        .join(", ");
        let json = MINIMAL.replace(
            r#"[{"name": "r", "workloads": ["spiffe://cluster.local/x"], "providers": ["openai"], "endpoints": ["GET /"]}]"#,
            &format!("[{rules}]"),
        );
        let want_syntax = serde_json_says(&json);
        assert!(want_syntax.starts_with("line "), "{want_syntax}");
        assert_eq!(errors(&json), [want_syntax]);
        let json = json.replace(r#""max_body_bytes": 01,"#, "");
        assert_eq!(
            errors(&json),
            [
                "rules[0].y: duplicate field `y`",
                "rules[0].y: unknown field `y`; expected one of name, workloads, providers, endpoints, models, max_output_tokens, max_output_tokens_action, max_body_bytes, budgets, prompt_guard, dlp",
                "rules[1].max_output_tokens: expected a non-negative integer",
                "rules[1].models[0]: expected a string, got a number",
                "rules[2].z: unknown field `z`; expected one of name, workloads, providers, endpoints, models, max_output_tokens, max_output_tokens_action, max_body_bytes, budgets, prompt_guard, dlp",
            ]
        );
    }

    /// A document whose reader hands out a few bytes at a time, so every
    /// token and string lies across windows somewhere.
    struct Trickle<'a>(&'a [u8], usize);

    struct TrickleReader<'a> {
        rest: &'a [u8],
        step: usize,
        reads: usize,
    }

    impl io::Read for TrickleReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let n = (1 + self.reads % self.step)
                .min(buf.len())
                .min(self.rest.len());
            let (now, later) = self.rest.split_at(n);
            buf[..n].copy_from_slice(now);
            self.rest = later;
            Ok(n)
        }
    }

    impl Document for Trickle<'_> {
        fn open(&self) -> Box<dyn Read + '_> {
            Box::new(TrickleReader {
                rest: self.0,
                step: self.1,
                reads: 0,
            })
        }
    }

    #[test]
    fn a_document_read_a_few_bytes_at_a_time_reads_the_same() {
        let docs = [
            MINIMAL.to_string(),
            MINIMAL.replace(
                r#""name": "r""#,
                r#""n\u0061me": "r\u00e9\ud83d\ude00\"\\\/ é", "x": {"a": [1.5, {"a": 1, "a": 2}]}"#,
            ),
            MINIMAL.replace(r#""GET /""#, r#""GET /", 1e3, {"b": 1, "b": 1}"#),
            MINIMAL.replace(r#""GET /""#, r#""GET /",]"#),
            MINIMAL.replacen('{', r#"{"mode": 1, "mode": 2,"#, 1),
        ];
        for json in &docs {
            let whole = read(json.as_bytes());
            for step in 1..=7 {
                let split = read_doc(&Trickle(json.as_bytes(), step));
                match (&whole, &split) {
                    (Ok((_, a)), Ok((_, b))) => {
                        let names =
                            |r: &[RawRule]| r.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
                        assert_eq!(names(a), names(b), "{json} in pieces of up to {step}");
                    }
                    (Err(a), Err(b)) => assert_eq!(a, b, "{json} in pieces of up to {step}"),
                    _ => panic!("{json} in pieces of up to {step}: {whole:?} / {split:?}"),
                }
            }
        }
    }
}
