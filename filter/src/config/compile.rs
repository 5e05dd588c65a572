//! Turns what [`super::read`] reads into a checked, indexed [`Config`].
//!
//! Invariants: every check that can fail is made here, with the path of the
//! value at fault; all problems are collected before returning; nothing
//! invalid is skipped. The semantic problems are reported only for a
//! document without shape problems, so the result is the same as if the
//! whole document had been read before any of it was compiled, although
//! each rule is compiled as soon as it is read (the settings are read
//! first, in a pass of their own, so a rule can be checked against them).

use super::duration::parse_duration_ms;
use super::error::ConfigErrors;
use super::raw::*;
use super::{read, AuditLog, BodyMode, Config, Document, Mode};
use crate::body::dlp_scan::{DlpAction, DlpPolicy};
use crate::budget::baseline::{Guard, GuardAction};
use crate::budget::global;
use crate::budget::price::{parse_micros, Price, PriceTable};
use crate::budget::{
    Budget, BudgetId, Metric, Scope as BudgetScope, Tier, Window, DEFAULT_SLOTS, MAX_SLOTS,
};
use crate::credential::service::{CredentialService, Protocol};
use crate::credential::{validate_credential_name, CredentialRef, Scope};
use crate::dlp::{Detector, DetectorId, DetectorSet, Literal};
use crate::policy::endpoint_pattern::EndpointPattern;
use crate::policy::limits::{
    CapAction, ExchangeLimits, OutputCap, DEFAULT_MAX_BODY_BYTES, MAX_BODY_BYTES, MAX_OUTPUT_TOKENS,
};
use crate::policy::model_pattern::ModelPattern;
use crate::policy::workload_pattern::WorkloadPattern;
use crate::policy::PolicyBuilder;
use crate::provider::{validate_host_pattern, Injection, Provider, ProviderKind, ProviderTable};
use crate::spiffe::TrustDomain;
use crate::strip::StripSet;

const DEFAULT_TIMEOUT: &str = "2s";
const DEFAULT_TTL: &str = "5m";
const MAX_TIMEOUT_MS: u64 = 60_000;

/// Parses and compiles a configuration document held in memory; see
/// [`parse_document`].
pub fn parse(json: &[u8]) -> Result<Config, ConfigErrors> {
    parse_document(&json)
}

/// Parses and compiles a configuration document, reading it twice (see
/// [`read`]) instead of holding it. Shape problems (syntax, types, missing
/// or unknown fields) are reported first, all together; the semantic checks
/// are reported only for a well-formed document.
pub fn parse_document(doc: &dyn Document) -> Result<Config, ConfigErrors> {
    if read::is_blank(doc.open()) {
        let mut e = ConfigErrors::default();
        e.push(
            "",
            "the plugin configuration is empty; Tollgate needs a policy (see README)",
        );
        return Err(e);
    }
    let head = read::read_head(doc)?;
    let mut shape = head.errs;
    let mut meaning = ConfigErrors::default();
    let settings = head.settings.map(|raw| compile_settings(raw, &mut meaning));
    let mut policy = PolicyBuilder::with_capacity(head.rules);
    let mut last = LastSets::default();
    if head.rules_listed {
        read::read_rules(doc, head.checked, &head.dups, &mut shape, |i, rule| {
            if let Some(settings) = &settings {
                compile_rule(i, rule, settings, &mut policy, &mut last, &mut meaning);
            }
        })?;
    }
    let settings = match settings {
        Some(s) if shape.is_empty() => s,
        _ => return Err(shape),
    };
    match settings.credential_service {
        Some(credential_service) if meaning.is_empty() => Ok(Config {
            mode: settings.mode,
            audit_log: settings.audit_log,
            body_mode: settings.body_mode,
            inject_stream_usage: settings.inject_stream_usage,
            trust_domains: settings.trust_domains,
            credential_service,
            providers: settings.providers,
            policy: policy.build(),
            strip: settings.strip,
            budgets: settings.budgets.into_boxed_slice(),
            prices: settings.prices,
            guards: settings.guards.into_boxed_slice(),
            rate_limit_service: settings.rate_limit_service,
            dlp: settings.dlp.into_iter().map(std::rc::Rc::new).collect(),
        }),
        _ => Err(meaning),
    }
}

/// Everything but the policy, compiled; `credential_service` is `None`
/// when it has a problem.
struct Settings {
    mode: Mode,
    audit_log: AuditLog,
    body_mode: BodyMode,
    inject_stream_usage: bool,
    trust_domains: Vec<TrustDomain>,
    credential_service: Option<CredentialService>,
    providers: ProviderTable,
    strip: StripSet,
    budgets: Vec<Budget>,
    prices: PriceTable,
    guards: Vec<Guard>,
    rate_limit_service: Option<global::Service>,
    dlp: Vec<DlpPolicy>,
}

fn compile_settings(raw: RawConfig, errs: &mut ConfigErrors) -> Settings {
    let mode = match raw.mode {
        RawMode::Enforce => Mode::Enforce,
        RawMode::DryRun => Mode::DryRun,
    };
    let audit_log = match raw.audit_log {
        RawAuditLog::FilterState => AuditLog::FilterState,
        RawAuditLog::ProxyLog => AuditLog::ProxyLog,
        RawAuditLog::Both => AuditLog::Both,
    };

    let mut trust_domains = Vec::new();
    if raw.trust_domains.is_empty() {
        errs.push("trust_domains", "at least one trust domain is required");
    }
    for (i, td) in raw.trust_domains.iter().enumerate() {
        match TrustDomain::parse(td) {
            Ok(t)
                if trust_domains
                    .iter()
                    .any(|x: &TrustDomain| x.as_str() == t.as_str()) =>
            {
                errs.push(
                    format!("trust_domains[{i}]"),
                    format!("duplicate trust domain {td:?}"),
                )
            }
            Ok(t) => trust_domains.push(t),
            Err(e) => errs.push(format!("trust_domains[{i}]"), e.to_string()),
        }
    }

    let credential_service = compile_service(&raw.credential_service, errs);

    let mut providers = ProviderTable::new();
    let mut strip = StripSet::default();
    if raw.providers.is_empty() {
        errs.push("providers", "at least one provider is required");
    }
    for (i, p) in raw.providers.iter().enumerate() {
        compile_provider(i, p, &mut providers, &mut strip, errs);
    }
    let mut prices = PriceTable::default();
    for (i, p) in raw.prices.iter().enumerate() {
        if let Some(price) = compile_price(i, p, errs) {
            prices.0.push(price);
        }
    }
    let guards = compile_named(
        &raw.prompt_guards,
        ("prompt_guards", "prompt guard"),
        |g| &g.name,
        errs,
        compile_guard,
    );
    let budgets = compile_named(
        &raw.budgets,
        ("budgets", "budget"),
        |b| &b.name,
        errs,
        compile_budget,
    );
    let rate_limit_service = raw
        .rate_limit_service
        .as_ref()
        .and_then(|s| compile_rate_limit_service(s, errs));
    if raw.rate_limit_service.is_none() {
        for (i, b) in raw.budgets.iter().enumerate() {
            if b.tier.as_deref() == Some("global") {
                errs.push(
                    format!("budgets[{i}].tier"),
                    "a global budget needs rate_limit_service",
                );
            }
        }
    }
    let dlp = compile_named(
        &raw.dlp_policies,
        ("dlp_policies", "DLP policy"),
        |d| &d.name,
        errs,
        compile_dlp,
    );
    Settings {
        dlp,
        rate_limit_service,
        mode,
        audit_log,
        body_mode: match raw.body_mode {
            RawBodyMode::Held => BodyMode::Held,
            RawBodyMode::Streamed => BodyMode::Streamed,
        },
        inject_stream_usage: matches!(raw.stream_usage, RawStreamUsage::Inject),
        trust_domains,
        credential_service,
        providers,
        strip,
        budgets,
        prices,
        guards,
    }
}

/// Price `i`: a model pattern and amounts in USD per million tokens.
fn compile_price(i: usize, p: &RawPrice, errs: &mut ConfigErrors) -> Option<(ModelPattern, Price)> {
    let before = errs.0.len();
    let model =
        ModelPattern::parse(&p.model).map_err(|e| errs.push(format!("prices[{i}].model"), e));
    let mut money = |f: &str, text: &str| {
        let n = parse_micros(text);
        if n.is_none() {
            errs.push(
                format!("prices[{i}].{f}"),
                format!("expected USD per million tokens with at most six decimals, such as \"0.15\", got {text:?}"),
            );
        }
        n.unwrap_or(0)
    };
    let input = money("input", &p.input);
    let output = money("output", &p.output);
    let cached_input = match &p.cached_input {
        Some(c) => money("cached_input", c),
        None => input,
    };
    let model = model.ok()?;
    (errs.0.len() == before).then_some((
        model,
        Price {
            input,
            cached_input,
            output,
        },
    ))
}

/// Compiles each entry of a list whose entries rules name (`budgets`,
/// `prompt_guards`); a name used again is reported at the later entry,
/// which is left out. `(section, what)` name the list in messages.
fn compile_named<R, T>(
    list: &[R],
    (section, what): (&str, &str),
    name: impl Fn(&R) -> &String,
    errs: &mut ConfigErrors,
    compile: impl Fn(usize, &R, &mut ConfigErrors) -> Option<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let compiled = compile(i, r, errs);
        if list.iter().take(i).any(|x| name(x) == name(r)) {
            errs.push(
                format!("{section}[{i}].name"),
                format!("duplicate {what} name {:?}", name(r)),
            );
        } else if let Some(c) = compiled {
            out.push(c);
        }
    }
    out
}

/// Prompt guard `i`: defaults factor 20, min_bytes 16,384, warmup 20,
/// action `deny`, slots 64.
fn compile_guard(i: usize, g: &RawGuard, errs: &mut ConfigErrors) -> Option<Guard> {
    let before = errs.0.len();
    let path = |f: &str| format!("prompt_guards[{i}].{f}");
    if !budget_name_ok(&g.name) {
        errs.push(path("name"), "1 to 64 letters, digits, '-', '_' or '.'");
    }
    let factor = g.factor.unwrap_or(20);
    if !(2..=1_000_000).contains(&factor) {
        errs.push(path("factor"), "must be between 2 and 1000000");
    }
    let warmup = g.warmup.unwrap_or(20);
    if !(1..=1_000_000).contains(&warmup) {
        errs.push(path("warmup"), "must be between 1 and 1000000");
    }
    let slots = g.slots.unwrap_or(u64::from(DEFAULT_SLOTS));
    if slots == 0 || slots > u64::from(MAX_SLOTS) {
        errs.push(path("slots"), format!("must be between 1 and {MAX_SLOTS}"));
    }
    let action = match g.action.as_deref() {
        None | Some("deny") => GuardAction::Deny,
        Some("record") => GuardAction::Record,
        Some(other) => {
            errs.push(
                path("action"),
                format!("expected \"deny\" or \"record\", got {other:?}"),
            );
            GuardAction::Deny
        }
    };
    (errs.0.len() == before).then(|| Guard {
        name: g.name.as_str().into(),
        factor,
        min_bytes: g.min_bytes.unwrap_or(16_384),
        warmup,
        action,
        slots: slots as u32,
    })
}

/// A budget's or guard's name: it is part of shared-data keys.
fn budget_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The most budgets one configuration may define (ids are u16).
const MAX_BUDGETS: usize = 1024;

/// Budget `i`: a name of letters, digits, `-`, `_` and `.` (it is part of
/// shared-data keys), exactly one of `requests` and `tokens` (at least 1),
/// a window, and `slots` only for `per_workload`.
fn compile_budget(i: usize, b: &RawBudget, errs: &mut ConfigErrors) -> Option<Budget> {
    let before = errs.0.len();
    let path = |f: &str| format!("budgets[{i}].{f}");
    if i >= MAX_BUDGETS {
        errs.push(
            format!("budgets[{i}]"),
            format!("at most {MAX_BUDGETS} budgets"),
        );
    }
    let name_ok = budget_name_ok(&b.name);
    if !name_ok {
        errs.push(path("name"), "1 to 64 letters, digits, '-', '_' or '.'");
    }
    let cost = b.cost.as_deref().map(|c| match parse_micros(c) {
        Some(n) => n,
        None => {
            errs.push(
                path("cost"),
                format!("expected USD with at most six decimals, such as \"25.00\", got {c:?}"),
            );
            1
        }
    });
    let (metric, limit, field) = match (b.requests, b.tokens, cost) {
        (Some(n), None, None) => (Metric::Requests, n, "requests"),
        (None, Some(n), None) => (Metric::Tokens, n, "tokens"),
        (None, None, Some(n)) => (Metric::Cost, n, "cost"),
        _ => {
            errs.push(
                format!("budgets[{i}]"),
                "set exactly one of requests, tokens and cost",
            );
            (Metric::Requests, 1, "requests")
        }
    };
    if limit == 0 {
        errs.push(path(field), "must be more than 0");
    }
    let window = Window::parse(&b.window);
    if window.is_none() {
        errs.push(
            path("window"),
            format!(
                "expected \"minute\", \"hour\", \"day\" or \"month\", got {:?}",
                b.window
            ),
        );
    }
    let scope = match (b.scope, b.slots) {
        (RawScope::Shared, Some(_)) => {
            errs.push(path("slots"), "only a per_workload budget has slots");
            BudgetScope::Shared
        }
        (RawScope::Shared, None) => BudgetScope::Shared,
        (RawScope::PerWorkload, slots) => {
            let slots = slots.unwrap_or(u64::from(DEFAULT_SLOTS));
            if slots == 0 || slots > u64::from(MAX_SLOTS) {
                errs.push(path("slots"), format!("must be between 1 and {MAX_SLOTS}"));
            }
            BudgetScope::PerWorkload {
                slots: slots.clamp(1, u64::from(MAX_SLOTS)) as u32,
            }
        }
    };
    let tier = match b.tier.as_deref() {
        None | Some("local") => Tier::Local,
        Some("global") => Tier::Global,
        Some(other) => {
            errs.push(
                path("tier"),
                format!("expected \"local\" or \"global\", got {other:?}"),
            );
            Tier::Local
        }
    };
    let budget = Budget {
        name: b.name.as_str().into(),
        metric,
        limit,
        window: window.unwrap_or(Window::Minute),
        scope,
        tier,
    };
    if tier == Tier::Global {
        if b.slots.is_some() {
            errs.push(
                path("slots"),
                "slots apply to the local tier; the rate-limit service keeps one account per workload",
            );
        }
        if limit > 0 && global::limit_units(&budget).is_none() {
            errs.push(
                path(field),
                match metric {
                    Metric::Cost => "a global cost budget must be between 0.001 and 4294967.295 USD (the protocol carries tenths of a cent in 32 bits)",
                    _ => "a global budget's limit must fit the protocol's 32 bits (at most 4294967295)",
                },
            );
        }
    }
    (errs.0.len() == before).then_some(budget)
}

/// The default per-call timeout of the rate-limit service.
const RATE_LIMIT_TIMEOUT: &str = "250ms";

fn compile_rate_limit_service(
    s: &RawRateLimitService,
    errs: &mut ConfigErrors,
) -> Option<global::Service> {
    let at = "rate_limit_service";
    let before = errs.0.len();
    if s.cluster.trim().is_empty() {
        errs.push(
            format!("{at}.cluster"),
            "the gateway cluster of the rate-limit service is required",
        );
    }
    let domain = s.domain.as_deref().unwrap_or("tollgate");
    if domain.is_empty() || domain.len() > 128 {
        errs.push(format!("{at}.domain"), "1 to 128 characters");
    }
    let timeout = duration_field(
        s.timeout.as_deref(),
        RATE_LIMIT_TIMEOUT,
        &format!("{at}.timeout"),
        errs,
    );
    if let Some(t) = timeout {
        if t == 0 || t > MAX_TIMEOUT_MS {
            errs.push(format!("{at}.timeout"), "must be between 1ms and 60s");
        }
    }
    let fail_open = match s.failure_mode.as_deref() {
        None | Some("fail_closed") => false,
        Some("fail_open") => true,
        Some(other) => {
            errs.push(
                format!("{at}.failure_mode"),
                format!("expected \"fail_closed\" or \"fail_open\", got {other:?}"),
            );
            false
        }
    };
    (errs.0.len() == before).then(|| global::Service {
        cluster: s.cluster.as_str().into(),
        domain: domain.into(),
        timeout_ms: timeout.unwrap_or(250) as u32,
        fail_open,
    })
}

/// The provider and endpoint lists of the last rule whose lists had no
/// problem, with their set numbers: a policy's rules usually repeat them,
/// and a list equal to the last one is not checked and parsed again.
#[derive(Default)]
struct LastSets {
    providers: Option<(Vec<String>, u32)>,
    endpoints: Option<(Vec<String>, u32)>,
    /// The workload patterns of the rule being compiled (a buffer reused).
    workloads: Vec<WorkloadPattern>,
}

/// The set number of `list` when it equals the cached one.
fn cached(cache: &Option<(Vec<String>, u32)>, list: &[String]) -> Option<u32> {
    cache.as_ref().filter(|(l, _)| l == list).map(|&(_, n)| n)
}

/// Caches `list` (its problems counted from `before`) as set `n`.
fn remember(
    cache: &mut Option<(Vec<String>, u32)>,
    list: &[String],
    n: u32,
    before: usize,
    errs: &ConfigErrors,
) {
    if errs.0.len() == before {
        *cache = Some((list.to_vec(), n));
    }
}

/// Checks rule `i` against the settings and adds it to `policy` (also when
/// it has a problem, so a later rule with the same name is reported).
fn compile_rule(
    i: usize,
    r: &RawRule,
    settings: &Settings,
    policy: &mut PolicyBuilder,
    last: &mut LastSets,
    errs: &mut ConfigErrors,
) {
    if r.name.is_empty() {
        errs.push(format!("rules[{i}].name"), "a rule needs a name");
    } else if policy.has_rule_named(&r.name) {
        errs.push(
            format!("rules[{i}].name"),
            format!("duplicate rule name {:?}", r.name),
        );
    }
    if r.workloads.is_empty() {
        errs.push(
            format!("rules[{i}].workloads"),
            "list at least one workload",
        );
    }
    let trust_domains = &settings.trust_domains;
    let pats = &mut last.workloads;
    pats.clear();
    for (j, w) in r.workloads.iter().enumerate() {
        match WorkloadPattern::parse(w) {
            Ok(p) => {
                let td = match &p {
                    WorkloadPattern::Exact(id) | WorkloadPattern::Prefix { parent: id } => {
                        id.trust_domain()
                    }
                };
                if !trust_domains.is_empty() && !trust_domains.iter().any(|t| t.as_str() == td) {
                    errs.push(
                        format!("rules[{i}].workloads[{j}]"),
                        format!(
                            "trust domain {td:?} is not in trust_domains, so this can never match"
                        ),
                    );
                }
                pats.push(p)
            }
            Err(e) => errs.push(format!("rules[{i}].workloads[{j}]"), e.to_string()),
        }
    }
    let providers = match cached(&last.providers, &r.providers) {
        Some(n) => n,
        None => {
            let before = errs.0.len();
            if r.providers.is_empty() {
                errs.push(
                    format!("rules[{i}].providers"),
                    "list at least one provider",
                );
            }
            let mut pids = Vec::with_capacity(r.providers.len());
            for (j, name) in r.providers.iter().enumerate() {
                match settings.providers.find_by_name(name) {
                    Some(id) => pids.push(id),
                    None => errs.push(
                        format!("rules[{i}].providers[{j}]"),
                        format!("no provider is named {name:?}"),
                    ),
                }
            }
            let n = policy.provider_set(pids);
            remember(&mut last.providers, &r.providers, n, before, errs);
            n
        }
    };
    let endpoints = match cached(&last.endpoints, &r.endpoints) {
        Some(n) => n,
        None => {
            let before = errs.0.len();
            if r.endpoints.is_empty() {
                errs.push(
                    format!("rules[{i}].endpoints"),
                    "list at least one endpoint, e.g. \"POST /v1/chat/completions\"",
                );
            }
            let mut eps = Vec::with_capacity(r.endpoints.len());
            for (j, e) in r.endpoints.iter().enumerate() {
                match EndpointPattern::parse(e) {
                    Ok(p) => eps.push(p),
                    Err(err) => errs.push(format!("rules[{i}].endpoints[{j}]"), err.to_string()),
                }
            }
            let n = policy.endpoint_set(eps);
            remember(&mut last.endpoints, &r.endpoints, n, before, errs);
            n
        }
    };
    let id = policy.push_sets(&r.name, &mut last.workloads, providers, endpoints);
    let limits = compile_limits(i, r, errs);
    if let Some(names) = &r.budgets {
        let mut ids = Vec::with_capacity(names.len());
        for (j, name) in names.iter().enumerate() {
            match settings.budgets.iter().position(|b| *b.name == **name) {
                Some(b) if ids.contains(&(b as BudgetId)) => errs.push(
                    format!("rules[{i}].budgets[{j}]"),
                    format!("budget {name:?} is listed twice"),
                ),
                Some(b) => {
                    let bounded = settings
                        .budgets
                        .get(b)
                        .is_some_and(|b| b.metric.needs_bound());
                    if bounded && r.max_output_tokens.is_none() {
                        errs.push(
                            format!("rules[{i}].budgets[{j}]"),
                            format!(
                                "budget {name:?} needs max_output_tokens on the rule: without an output cap a request's tokens cannot be reserved"
                            ),
                        );
                    }
                    ids.push(b as BudgetId);
                }
                None => errs.push(
                    format!("rules[{i}].budgets[{j}]"),
                    format!("no budget is named {name:?}"),
                ),
            }
        }
        policy.set_budgets(id, ids.into_boxed_slice());
    }
    if let Some(name) = &r.prompt_guard {
        match settings.guards.iter().position(|g| *g.name == **name) {
            Some(g) => policy.set_guard(id, g as u16),
            None => errs.push(
                format!("rules[{i}].prompt_guard"),
                format!("no prompt guard is named {name:?}"),
            ),
        }
    }
    if let Some(name) = &r.dlp {
        match settings.dlp.iter().position(|d| *d.name == **name) {
            Some(d) => policy.set_dlp(id, d as u16),
            None => errs.push(
                format!("rules[{i}].dlp"),
                format!("no DLP policy is named {name:?}"),
            ),
        }
    }
    if let Some(limits) = limits {
        policy.set_limits(id, limits);
    }
}

/// DLP policy `i`: every name in `block`, `redact` and `audit` is a
/// built-in detector, a group (`secrets`, `personal_data`, `all`) or one of
/// its literals, and names one detector once across the three lists.
/// The bounds of `response_holdback`: below 16 bytes a key's prefix could
/// go out before the key is recognisable; 4 KiB covers a PEM private key
/// and keeps the held stream (a few characters of text per event of a
/// hundred-odd bytes) well within `response::dlp::MAX_HELD_BYTES`.
const MIN_HOLDBACK: u64 = 16;
const MAX_HOLDBACK: u64 = 4096;

fn compile_dlp(i: usize, d: &RawDlpPolicy, errs: &mut ConfigErrors) -> Option<DlpPolicy> {
    let before = errs.0.len();
    let path = |f: &str| format!("dlp_policies[{i}].{f}");
    if !budget_name_ok(&d.name) {
        errs.push(path("name"), "1 to 64 letters, digits, '-', '_' or '.'");
    }
    let literals: Vec<Literal> = d
        .literals
        .iter()
        .map(|l| Literal {
            name: l.name.clone(),
            text: l.text.clone(),
            ignore_ascii_case: l.ignore_case.unwrap_or(false),
            pattern: l.pattern,
        })
        .collect();
    let mut actions: Vec<(DetectorId, DlpAction)> = Vec::new();
    for (field, action, names) in [
        ("block", DlpAction::Block, &d.block),
        ("redact", DlpAction::Redact, &d.redact),
        ("audit", DlpAction::Audit, &d.audit),
    ] {
        for (j, name) in names.iter().enumerate() {
            let ids: Vec<DetectorId> = match name.as_str() {
                "all" => Detector::ALL
                    .iter()
                    .map(|x| DetectorId::Builtin(*x))
                    .collect(),
                "secrets" | "personal_data" => Detector::ALL
                    .iter()
                    .filter(|x| x.is_secret() == (name == "secrets"))
                    .map(|x| DetectorId::Builtin(*x))
                    .collect(),
                n => match (
                    Detector::from_name(n),
                    literals.iter().position(|l| l.name == n),
                ) {
                    (Some(x), _) => vec![DetectorId::Builtin(x)],
                    (None, Some(k)) => vec![DetectorId::Literal(k as u16)],
                    (None, None) => {
                        errs.push(
                            format!("dlp_policies[{i}].{field}[{j}]"),
                            format!("no detector, group or literal is named {n:?}"),
                        );
                        continue;
                    }
                },
            };
            for id in ids {
                if actions.iter().any(|(x, _)| *x == id) {
                    errs.push(
                        format!("dlp_policies[{i}].{field}[{j}]"),
                        format!("{name:?} names a detector that already has an action"),
                    );
                    break;
                }
                actions.push((id, action));
            }
        }
    }
    for (k, _) in literals.iter().enumerate() {
        if !actions
            .iter()
            .any(|(x, _)| *x == DetectorId::Literal(k as u16))
        {
            errs.push(
                format!("dlp_policies[{i}].literals[{k}]"),
                "listed in none of block, redact and audit",
            );
        }
    }
    if actions.is_empty() {
        errs.push(
            format!("dlp_policies[{i}]"),
            "enables no detector: list some under block, redact or audit",
        );
    }
    let builtins: Vec<Detector> = actions
        .iter()
        .filter_map(|(x, _)| match x {
            DetectorId::Builtin(b) => Some(*b),
            DetectorId::Literal(_) => None,
        })
        .collect();
    // The block detectors alone, when others could hide their matches.
    let blocking: Vec<Detector> = actions
        .iter()
        .filter_map(|(x, a)| match (x, a) {
            (DetectorId::Builtin(b), DlpAction::Block) => Some(*b),
            _ => None,
        })
        .collect();
    let block_literals: Vec<Literal> = actions
        .iter()
        .filter_map(|(x, a)| match (x, a) {
            (DetectorId::Literal(k), DlpAction::Block) => literals.get(usize::from(*k)).cloned(),
            _ => None,
        })
        .collect();
    let mixed = actions.iter().any(|(_, a)| *a != DlpAction::Block)
        && actions.iter().any(|(_, a)| *a == DlpAction::Block);
    let block_set = if mixed {
        DetectorSet::new(&blocking, block_literals).ok()
    } else {
        None
    };
    let set = match DetectorSet::new(&builtins, literals) {
        Ok(s) => Some(s),
        Err(e) => {
            errs.push(format!("dlp_policies[{i}]"), e.to_string());
            None
        }
    };
    let holdback = d
        .response_holdback
        .unwrap_or(crate::response::dlp::DEFAULT_HOLDBACK as u64);
    if !(MIN_HOLDBACK..=MAX_HOLDBACK).contains(&holdback) {
        errs.push(
            path("response_holdback"),
            format!("{MIN_HOLDBACK} to {MAX_HOLDBACK} bytes of output text"),
        );
    } else if d.response_holdback.is_some() && !d.responses {
        errs.push(
            path("response_holdback"),
            "applies to responses: set \"responses\": true, or remove it",
        );
    }
    let set = set?;
    (errs.0.len() == before).then(|| DlpPolicy {
        name: d.name.as_str().into(),
        set,
        actions,
        block_set,
        responses: d.responses,
        response_holdback: holdback as usize,
    })
}

/// A rule's `models`, `max_output_tokens`, `max_output_tokens_action` and
/// `max_body_bytes`; `None` when it sets none of them (a header-only rule)
/// or has a problem (reported).
fn compile_limits(i: usize, r: &RawRule, errs: &mut ConfigErrors) -> Option<ExchangeLimits> {
    if r.models.is_none()
        && r.max_output_tokens.is_none()
        && r.max_output_tokens_action.is_none()
        && r.max_body_bytes.is_none()
    {
        return None;
    }
    let before = errs.0.len();
    let models = r.models.as_ref().map(|list| {
        if list.is_empty() {
            errs.push(
                format!("rules[{i}].models"),
                "list at least one model (or leave models out to allow any)",
            );
        }
        list.iter()
            .enumerate()
            .filter_map(|(j, m)| match ModelPattern::parse(m) {
                Ok(p) => Some(p),
                Err(e) => {
                    errs.push(format!("rules[{i}].models[{j}]"), e);
                    None
                }
            })
            .collect::<Box<[_]>>()
    });
    let action = match r.max_output_tokens_action.as_deref() {
        None | Some("clamp") => CapAction::Clamp,
        Some("deny") => CapAction::Deny,
        Some(other) => {
            errs.push(
                format!("rules[{i}].max_output_tokens_action"),
                format!("expected \"clamp\" or \"deny\", got {other:?}"),
            );
            CapAction::Clamp
        }
    };
    if r.max_output_tokens_action.is_some() && r.max_output_tokens.is_none() {
        errs.push(
            format!("rules[{i}].max_output_tokens_action"),
            "set max_output_tokens too",
        );
    }
    let max_output_tokens = match r.max_output_tokens {
        Some(n) if n == 0 || n > u64::from(MAX_OUTPUT_TOKENS) => {
            errs.push(
                format!("rules[{i}].max_output_tokens"),
                format!("must be between 1 and {MAX_OUTPUT_TOKENS}"),
            );
            None
        }
        Some(n) => Some(OutputCap {
            limit: n as u32,
            action,
        }),
        None => None,
    };
    let max_body_bytes = match r.max_body_bytes {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(n) if n == 0 || n > u64::from(MAX_BODY_BYTES) => {
            errs.push(
                format!("rules[{i}].max_body_bytes"),
                format!("must be between 1 and {MAX_BODY_BYTES}"),
            );
            DEFAULT_MAX_BODY_BYTES
        }
        Some(n) => n as u32,
    };
    (errs.0.len() == before).then_some(ExchangeLimits {
        models,
        max_output_tokens,
        max_body_bytes,
    })
}

fn duration_field(
    value: Option<&str>,
    default: &str,
    path: &str,
    errs: &mut ConfigErrors,
) -> Option<u64> {
    match parse_duration_ms(value.unwrap_or(default)) {
        Ok(ms) => Some(ms),
        Err(e) => {
            errs.push(path, e);
            None
        }
    }
}

fn compile_service(s: &RawCredentialService, errs: &mut ConfigErrors) -> Option<CredentialService> {
    let at = "credential_service";
    let before = errs.0.len();
    if s.cluster.trim().is_empty() {
        errs.push(
            format!("{at}.cluster"),
            "the gateway cluster of the credential service is required",
        );
    }
    if s.authority.is_empty()
        || !s
            .authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
    {
        errs.push(
            format!("{at}.authority"),
            "must be a host name, optionally with a port",
        );
    }
    let timeout = duration_field(
        s.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        &format!("{at}.timeout"),
        errs,
    );
    let ttl = duration_field(s.ttl.as_deref(), DEFAULT_TTL, &format!("{at}.ttl"), errs);
    let refresh = match (&s.refresh_ahead, ttl) {
        (Some(r), _) => duration_field(Some(r), "", &format!("{at}.refresh_ahead"), errs),
        // Like Envoy's token fetchers: refresh at half the lifetime.
        (None, Some(ttl)) => Some(ttl / 2),
        (None, None) => None,
    };
    if let Some(t) = timeout {
        if t == 0 || t > MAX_TIMEOUT_MS {
            errs.push(format!("{at}.timeout"), "must be between 1ms and 60s");
        }
    }
    if ttl == Some(0) {
        errs.push(format!("{at}.ttl"), "must be greater than zero");
    }
    if let (Some(r), Some(t)) = (refresh, ttl) {
        if r >= t && t > 0 {
            errs.push(format!("{at}.refresh_ahead"), "must be shorter than ttl");
        }
    }
    let protocol = match (s.protocol, &s.vault) {
        (RawProtocol::TollgateV1, None) => Some(Protocol::TollgateV1),
        (RawProtocol::TollgateV1, Some(_)) => {
            errs.push(
                format!("{at}.vault"),
                "only allowed with protocol \"vault_kv2\"",
            );
            None
        }
        (RawProtocol::VaultKv2, v) => {
            let mount = v
                .as_ref()
                .and_then(|v| v.mount.clone())
                .unwrap_or_else(|| "secret".into());
            let field = v
                .as_ref()
                .and_then(|v| v.field.clone())
                .unwrap_or_else(|| "value".into());
            if validate_credential_name(&mount).is_err() {
                errs.push(
                    format!("{at}.vault.mount"),
                    "must be a KV v2 mount path such as \"secret\"",
                );
            }
            if field.is_empty() {
                errs.push(format!("{at}.vault.field"), "must name the secret's field");
            }
            Some(Protocol::VaultKv2 {
                mount: mount.into(),
                field: field.into(),
            })
        }
    };
    if errs.0.len() != before {
        return None;
    }
    Some(CredentialService {
        cluster: s.cluster.as_str().into(),
        authority: s.authority.as_str().into(),
        protocol: protocol?,
        timeout_ms: u32::try_from(timeout?).ok()?,
        ttl_ms: ttl?,
        refresh_ahead_ms: refresh?,
    })
}

fn compile_provider(
    i: usize,
    p: &RawProvider,
    table: &mut ProviderTable,
    strip: &mut StripSet,
    errs: &mut ConfigErrors,
) {
    let at = format!("providers[{i}]");
    if p.name.is_empty()
        || !p
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
    {
        errs.push(
            format!("{at}.name"),
            "must be non-empty lowercase letters, digits, '-' or '_'",
        );
    } else if table.find_by_name(&p.name).is_some() {
        errs.push(
            format!("{at}.name"),
            format!("duplicate provider name {:?}", p.name),
        );
    }
    let kind = match p.kind {
        RawProviderKind::Openai => ProviderKind::OpenAi,
        RawProviderKind::Anthropic => ProviderKind::Anthropic,
        RawProviderKind::Gemini => ProviderKind::Gemini,
        RawProviderKind::AzureOpenai => ProviderKind::AzureOpenAi,
        RawProviderKind::Generic => ProviderKind::Generic,
    };
    let injection = match (kind.builtin_injection(), &p.header) {
        (Some((h, prefix)), None) => Some(Injection {
            header: h.into(),
            prefix: prefix.into(),
        }),
        (Some(_), Some(_)) => {
            errs.push(
                format!("{at}.header"),
                "only allowed for kind \"generic\"; built-in kinds use their provider's header",
            );
            None
        }
        (None, None) => {
            errs.push(
                format!("{at}.header"),
                "kind \"generic\" needs header: {name, prefix}",
            );
            None
        }
        (None, Some(h)) => {
            let name_ok = !h.name.is_empty()
                && h.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !name_ok {
                errs.push(
                    format!("{at}.header.name"),
                    "must be a lowercase header name (letters, digits, '-')",
                );
            }
            if matches!(
                h.name.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection" | "te"
            ) {
                errs.push(
                    format!("{at}.header.name"),
                    "must not be a hop-by-hop or framing header",
                );
            }
            if !h.prefix.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                errs.push(format!("{at}.header.prefix"), "must be printable ASCII");
            }
            name_ok.then(|| {
                strip.add(&h.name);
                Injection {
                    header: h.name.as_str().into(),
                    prefix: h.prefix.as_str().into(),
                }
            })
        }
    };
    if let Err(e) = validate_credential_name(&p.credential.name) {
        errs.push(format!("{at}.credential.name"), e);
    }
    let scope = match p.credential.scope {
        RawScope::Shared => Scope::Shared,
        RawScope::PerWorkload => Scope::PerWorkload,
    };
    if p.hosts.is_empty() {
        errs.push(format!("{at}.hosts"), "list at least one host");
    }
    let mut hosts = Vec::new();
    for (j, h) in p.hosts.iter().enumerate() {
        match validate_host_pattern(h) {
            Ok(h) => hosts.push((j, h)),
            Err(e) => errs.push(format!("{at}.hosts[{j}]"), e),
        }
    }
    let Some(injection) = injection else { return };
    let Some(id) = table.push(Provider {
        name: p.name.as_str().into(),
        kind,
        injection,
        credential: CredentialRef {
            name: p.credential.name.as_str().into(),
            scope,
        },
    }) else {
        errs.push(
            at,
            format!(
                "too many providers: at most {} are supported",
                ProviderTable::MAX_PROVIDERS
            ),
        );
        return;
    };
    for (j, h) in hosts {
        if let Err(owner) = table.add_host(&h, id) {
            let owner = table.get(owner).map_or("", |p| &*p.name).to_string();
            errs.push(
                format!("{at}.hosts[{j}]"),
                format!("host {h:?} is already served by provider {owner:?}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = r#"{
      "mode": "enforce",
      "trust_domains": ["cluster.local"],
      "credential_service": {
        "cluster": "tollgate-credentials", "authority": "credentials.local",
        "protocol": "tollgate_v1", "timeout": "2s", "ttl": "5m", "refresh_ahead": "1m"
      },
      "providers": [
        {"name": "openai", "kind": "openai", "hosts": ["api.openai.com"], "credential": {"name": "openai"}},
        {"name": "anthropic", "kind": "anthropic", "hosts": ["api.anthropic.com"], "credential": {"name": "anthropic", "scope": "per_workload"}},
        {"name": "search", "kind": "generic", "hosts": ["search.example.com"], "header": {"name": "x-search-key", "prefix": "Token "}, "credential": {"name": "search"}}
      ],
      "rules": [
        {"name": "support", "workloads": ["spiffe://cluster.local/ns/support/*"], "providers": ["openai", "anthropic"], "endpoints": ["POST /v1/chat/completions", "POST /v1/messages"]}
      ]
    }"#;

    fn errors(json: &str) -> Vec<String> {
        match parse(json.as_bytes()) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn with_rule_fields(fields: &str) -> String {
        EXAMPLE.replace(
            r#""endpoints": ["POST /v1/chat/completions", "POST /v1/messages"]}"#,
            &format!(
                r#""endpoints": ["POST /v1/chat/completions", "POST /v1/messages"], {fields}}}"#
            ),
        )
    }

    fn with_budgets(budgets: &str, rule_fields: &str) -> String {
        with_rule_fields(rule_fields).replacen(
            r#""rules": ["#,
            &format!(r#""budgets": {budgets}, "rules": ["#),
            1,
        )
    }

    #[test]
    fn budgets_compile_and_rules_name_theirs() {
        use crate::policy::RuleId;
        let c = parse(
            with_budgets(
                r#"[{"name": "chat-requests", "requests": 600, "window": "minute"},
                    {"name": "team-tokens", "tokens": 1000000, "window": "month", "scope": "shared"}]"#,
                r#""max_output_tokens": 2000, "budgets": ["team-tokens", "chat-requests"]"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.budgets.len(), 2);
        let b = &c.budgets[0];
        assert_eq!(
            (b.metric, b.limit, b.window, b.scope),
            (
                Metric::Requests,
                600,
                Window::Minute,
                BudgetScope::PerWorkload {
                    slots: DEFAULT_SLOTS
                }
            )
        );
        assert_eq!(c.budgets[1].scope, BudgetScope::Shared);
        assert_eq!(c.policy.budgets(RuleId(0)), &[1, 0]);
        // Numbers elsewhere in the settings still read as before.
        assert!(errors(EXAMPLE).is_empty());
    }

    #[test]
    fn prices_and_cost_budgets_read_money_exactly() {
        let doc = with_budgets(
            r#"[{"name": "spend", "cost": "25.50", "window": "month"}]"#,
            r#""max_output_tokens": 100, "budgets": ["spend"]"#,
        )
        .replacen(
            r#""budgets": ["#,
            r#""prices": [{"model": "gpt-4o-mini", "input": "0.15", "output": 1},
                          {"model": "claude-*", "input": "0.8", "cached_input": "0.08", "output": "4"}],
               "budgets": ["#,
            1,
        );
        let c = parse(doc.as_bytes()).unwrap();
        assert_eq!(
            (c.budgets[0].metric, c.budgets[0].limit),
            (Metric::Cost, 25_500_000)
        );
        let p = c.prices.for_model("gpt-4o-mini").unwrap();
        assert_eq!(
            (p.input, p.cached_input, p.output),
            (150_000, 150_000, 1_000_000)
        );
        let p = c.prices.for_model("claude-3-5-haiku").unwrap();
        assert_eq!(
            (p.input, p.cached_input, p.output),
            (800_000, 80_000, 4_000_000)
        );
        let bad = errors(
            &doc.replace(r#""0.15""#, r#""0.1234567""#)
                .replace(r#""25.50""#, r#""1e3""#),
        );
        assert!(bad.contains(&"prices[0].input: expected USD per million tokens with at most six decimals, such as \"0.15\", got \"0.1234567\"".to_string()), "{bad:#?}");
        assert!(bad.contains(&"budgets[0].cost: expected USD with at most six decimals, such as \"25.00\", got \"1e3\"".to_string()), "{bad:#?}");
    }

    #[test]
    fn prompt_guards_compile_with_defaults_and_report_problems() {
        use crate::policy::RuleId;
        let doc = with_budgets("[]", r#""prompt_guard": "g""#).replacen(
            r#""budgets": ["#,
            r#""prompt_guards": [{"name": "g"}, {"name": "h", "factor": 5, "min_bytes": 1, "warmup": 3, "action": "record", "slots": 2}],
               "budgets": ["#,
            1,
        );
        let c = parse(doc.as_bytes()).unwrap();
        assert_eq!(c.policy.guard(RuleId(0)), Some(0));
        let g = &c.guards[0];
        assert_eq!(
            (g.factor, g.min_bytes, g.warmup, g.action, g.slots),
            (20, 16_384, 20, GuardAction::Deny, DEFAULT_SLOTS)
        );
        assert_eq!(c.guards[1].action, GuardAction::Record);
        let bad = errors(
            &doc.replace(r#""factor": 5"#, r#""factor": 1"#)
                .replace(r#""action": "record""#, r#""action": "block""#)
                .replace(r#""prompt_guard": "g""#, r#""prompt_guard": "nope""#),
        );
        for x in [
            "prompt_guards[1].factor: must be between 2 and 1000000",
            "prompt_guards[1].action: expected \"deny\" or \"record\", got \"block\"",
            "rules[0].prompt_guard: no prompt guard is named \"nope\"",
        ] {
            assert!(bad.iter().any(|e| e == x), "missing {x:?} in {bad:#?}");
        }
    }

    #[test]
    fn bad_budgets_are_reported_with_their_paths() {
        let e = errors(&with_budgets(
            r#"[{"name": "a b", "requests": 1, "tokens": 2, "window": "week"},
                {"name": "t", "tokens": 0, "window": "hour", "scope": "shared", "slots": 4},
                {"name": "p", "requests": 7, "window": "day"},
                {"name": "q", "requests": 5, "window": "day", "slots": 5000},
                {"name": "q", "requests": 5, "window": "day"},
                {"name": "tok", "tokens": 10, "window": "day"}]"#,
            r#""budgets": ["nope", "tok", "tok"]"#,
        ));
        let expected = [
            "budgets[0].name: 1 to 64 letters, digits, '-', '_' or '.'",
            "budgets[0]: set exactly one of requests, tokens and cost",
            "budgets[0].window: expected \"minute\", \"hour\", \"day\" or \"month\", got \"week\"",
            "budgets[1].tokens: must be more than 0",
            "budgets[1].slots: only a per_workload budget has slots",
            "budgets[3].slots: must be between 1 and 4096",
            "budgets[4].name: duplicate budget name \"q\"",
            "rules[0].budgets[0]: no budget is named \"nope\"",
            "rules[0].budgets[1]: budget \"tok\" needs max_output_tokens on the rule: without an output cap a request's tokens cannot be reserved",
            "rules[0].budgets[2]: budget \"tok\" is listed twice",
        ];
        for x in expected {
            assert!(e.iter().any(|got| got == x), "missing {x:?} in {e:#?}");
        }
        // A shape problem is reported alone, before any meaning.
        let e = errors(&with_budgets(
            r#"[{"name": "p", "requests": -1, "window": "day", "extra": 1}]"#,
            r#""budgets": "p""#,
        ));
        assert_eq!(
            e,
            [
                "budgets[0].extra: unknown field `extra`; expected one of name, requests, tokens, cost, window, scope, slots, tier",
                "budgets[0].requests: expected a non-negative integer",
                "rules[0].budgets: expected a list, got a string",
            ]
        );
    }

    #[test]
    fn global_budgets_need_a_rate_limit_service_and_a_32_bit_limit() {
        let budgets = r#"[{"name": "g", "tokens": 5000000000, "window": "day", "tier": "global", "slots": 4},
                {"name": "c", "cost": "0.0005", "window": "day", "tier": "global"},
                {"name": "x", "requests": 5, "window": "day", "tier": "planet"}]"#;
        let e = errors(&with_budgets(
            budgets,
            r#""max_output_tokens": 10, "budgets": ["g"]"#,
        ));
        for x in [
            "budgets[0].slots: slots apply to the local tier; the rate-limit service keeps one account per workload",
            "budgets[0].tokens: a global budget's limit must fit the protocol's 32 bits (at most 4294967295)",
            "budgets[1].cost: a global cost budget must be between 0.001 and 4294967.295 USD (the protocol carries tenths of a cent in 32 bits)",
            "budgets[2].tier: expected \"local\" or \"global\", got \"planet\"",
            "budgets[0].tier: a global budget needs rate_limit_service",
        ] {
            assert!(e.iter().any(|got| got == x), "missing {x:?} in {e:#?}");
        }
        let ok = with_budgets(
            r#"[{"name": "g", "tokens": 20000000, "window": "day", "tier": "global", "scope": "shared"}]"#,
            r#""max_output_tokens": 10, "budgets": ["g"]"#,
        )
        .replacen(
            r#""budgets": ["#,
            r#""rate_limit_service": {"cluster": "rls", "failure_mode": "fail_open"}, "budgets": ["#,
            1,
        );
        let c = parse(ok.as_bytes()).unwrap();
        assert_eq!(c.budgets[0].tier, Tier::Global);
        let svc = c.rate_limit_service.unwrap();
        assert_eq!(
            (&*svc.cluster, &*svc.domain, svc.timeout_ms, svc.fail_open),
            ("rls", "tollgate", 250, true)
        );
        let bad = ok.replace(
            r#""failure_mode": "fail_open""#,
            r#""failure_mode": "open", "timeout": "0s""#,
        );
        let e = errors(&bad);
        assert!(e.contains(&"rate_limit_service.failure_mode: expected \"fail_closed\" or \"fail_open\", got \"open\"".to_string()), "{e:#?}");
        assert!(
            e.contains(&"rate_limit_service.timeout: must be between 1ms and 60s".to_string()),
            "{e:#?}"
        );
    }

    #[test]
    fn rule_limits_compile_with_defaults() {
        use crate::policy::RuleId;
        let c = parse(
            with_rule_fields(r#""models": ["gpt-4o-mini", "claude-*"], "max_output_tokens": 2000"#)
                .as_bytes(),
        )
        .unwrap();
        let l = c.policy.limits(RuleId(0)).unwrap();
        assert!(l.permits_model("claude-3-haiku") && !l.permits_model("gpt-4o"));
        assert_eq!(
            l.max_output_tokens,
            Some(OutputCap {
                limit: 2000,
                action: CapAction::Clamp
            })
        );
        assert_eq!(l.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.body_mode, BodyMode::Held);
        assert!(c.inject_stream_usage);
        let c = parse(EXAMPLE.as_bytes()).unwrap();
        assert!(c.policy.limits(RuleId(0)).is_none(), "a header-only rule");
        let c = parse(
            with_rule_fields(r#""max_output_tokens": 5, "max_output_tokens_action": "deny", "max_body_bytes": 1024"#)
                .replacen('{', r#"{"body_mode": "streamed", "stream_usage": "leave","#, 1)
                .as_bytes(),
        )
        .unwrap();
        let l = c.policy.limits(RuleId(0)).unwrap();
        assert_eq!(l.max_output_tokens.map(|c| c.action), Some(CapAction::Deny));
        assert_eq!(l.max_body_bytes, 1024);
        assert_eq!(
            (c.body_mode, c.inject_stream_usage),
            (BodyMode::Streamed, false)
        );
    }

    #[test]
    fn bad_rule_limits_are_reported_with_their_paths() {
        let e = errors(&with_rule_fields(
            r#""models": ["ok", "bad model", 3], "max_output_tokens": 1.5, "max_body_bytes": "1MB""#,
        ));
        assert_eq!(
            e,
            [
                "rules[0].models[2]: expected a string, got a number",
                "rules[0].max_output_tokens: expected a non-negative integer",
                "rules[0].max_body_bytes: expected an integer, got a string"
            ]
        );
        let e = errors(&with_rule_fields(
            r#""models": [], "max_output_tokens": 0, "max_output_tokens_action": "truncate", "max_body_bytes": 999999999999"#,
        ));
        assert_eq!(
            e,
            [
                "rules[0].models: list at least one model (or leave models out to allow any)",
                "rules[0].max_output_tokens_action: expected \"clamp\" or \"deny\", got \"truncate\"",
                "rules[0].max_output_tokens: must be between 1 and 10000000",
                "rules[0].max_body_bytes: must be between 1 and 67108864"
            ]
        );
        let e = errors(&with_rule_fields(
            r#""models": ["bad model"], "max_output_tokens_action": "deny""#,
        ));
        assert_eq!(
            e,
            [
                "rules[0].models[0]: a model pattern is printable ASCII without spaces",
                "rules[0].max_output_tokens_action: set max_output_tokens too"
            ]
        );
        let e = errors(&EXAMPLE.replacen('{', r#"{"body_mode": "buffered","#, 1));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("body_mode:"), "{e:?}");
    }

    #[test]
    fn the_example_compiles() {
        let c = parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.providers.len(), 3);
        assert_eq!(c.policy.len(), 1);
        assert_eq!(c.credential_service.refresh_ahead_ms, 60_000);
        assert!(c.strip.contains(b"x-search-key"));
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let json = EXAMPLE.replace(
            r#""name": "support","#,
            r#""name": "support", "workload": [],"#,
        );
        let e = errors(&json);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0],
            "rules[0].workload: unknown field `workload`; expected one of name, workloads, providers, endpoints, models, max_output_tokens, max_output_tokens_action, max_body_bytes, budgets, prompt_guard, dlp"
        );
    }

    #[test]
    fn every_semantic_problem_is_reported_with_its_path() {
        let json = EXAMPLE
            .replace(
                r#""spiffe://cluster.local/ns/support/*""#,
                r#""spiffe://cluster.local/ns/support/*", "spiffe://other.td/x", "not-spiffe""#,
            )
            .replace(
                r#""providers": ["openai", "anthropic"]"#,
                r#""providers": ["openai", "nope"]"#,
            )
            .replace(r#""POST /v1/messages""#, r#""POST v1/messages""#)
            .replace(r#""refresh_ahead": "1m""#, r#""refresh_ahead": "10m""#);
        let e = errors(&json);
        let has = |p: &str| e.iter().any(|x| x.starts_with(p));
        assert!(has("rules[0].workloads[1]: "), "{e:?}");
        assert!(has("rules[0].workloads[2]: "), "{e:?}");
        assert!(has("rules[0].providers[1]: "), "{e:?}");
        assert!(has("rules[0].endpoints[1]: "), "{e:?}");
        assert!(has("credential_service.refresh_ahead: "), "{e:?}");
        assert_eq!(e.len(), 5, "{e:?}");
    }

    #[test]
    fn provider_problems_are_reported() {
        let json = EXAMPLE
            .replace(
                r#""hosts": ["api.anthropic.com"]"#,
                r#""hosts": ["api.openai.com", "Bad Host"]"#,
            )
            .replace(
                r#""header": {"name": "x-search-key", "prefix": "Token "}, "#,
                "",
            )
            .replace(
                r#""credential": {"name": "openai"}"#,
                r#""credential": {"name": "../x"}"#,
            );
        let e = errors(&json);
        let has = |p: &str| e.iter().any(|x| x.starts_with(p));
        assert!(has("providers[1].hosts[0]: "), "{e:?}");
        assert!(has("providers[1].hosts[1]: "), "{e:?}");
        assert!(has("providers[2].header: "), "{e:?}");
        assert!(has("providers[0].credential.name: "), "{e:?}");
    }

    #[test]
    fn empty_and_malformed_documents_are_errors() {
        assert!(!errors("").is_empty());
        assert!(!errors("{").is_empty());
        assert!(!errors("[]").is_empty());
        let e = errors(&EXAMPLE.replace(r#""mode": "enforce""#, r#""mode": "audit""#));
        assert!(e[0].starts_with("mode: "), "{e:?}");
        let e = errors(&EXAMPLE.replace(r#""timeout": "2s""#, r#""timeout": 2"#));
        assert!(e[0].starts_with("credential_service.timeout: "), "{e:?}");
    }

    #[test]
    fn rules_are_checked_against_settings_written_after_them() {
        let json = r#"{
          "rules": [
            {"name": "a", "workloads": ["spiffe://cluster.local/x"], "providers": ["openai"], "endpoints": ["GET /"]},
            {"name": "a", "workloads": ["spiffe://other.td/x"], "providers": ["nope"], "endpoints": ["GET /"]}
          ],
          "providers": [{"name": "openai", "kind": "openai", "hosts": ["api.openai.com"], "credential": {"name": "openai"}}],
          "credential_service": {"cluster": "c", "authority": "a", "protocol": "tollgate_v1"},
          "trust_domains": ["cluster.local"]
        }"#;
        assert_eq!(
            errors(json),
            [
                "rules[1].name: duplicate rule name \"a\"",
                "rules[1].workloads[0]: trust domain \"other.td\" is not in trust_domains, so this can never match",
                "rules[1].providers[0]: no provider is named \"nope\"",
            ]
        );
        let ok = json.replace(
            r#""name": "a", "workloads": ["spiffe://other.td/x"], "providers": ["nope"]"#,
            r#""name": "b", "workloads": ["spiffe://cluster.local/y"], "providers": ["openai"]"#,
        );
        assert_eq!(parse(ok.as_bytes()).unwrap().policy.len(), 2);
    }

    #[test]
    fn a_list_repeated_from_the_last_rule_is_reported_again_when_bad() {
        let rule = |name: &str, providers: &str, endpoints: &str| {
            format!(
                r#"{{"name": "{name}", "workloads": ["spiffe://cluster.local/{name}"], "providers": [{providers}], "endpoints": [{endpoints}]}}"#
            )
        };
        let rules = [
            rule("a", r#""openai""#, r#""GET /x""#),
            rule("b", r#""openai""#, r#""GET /x""#),
            rule("c", r#""nope""#, r#""GET x""#),
            rule("d", r#""nope""#, r#""GET x""#),
            rule("e", r#""openai""#, r#""GET /x""#),
        ]
        .join(",");
        let json = EXAMPLE.replace(
            &EXAMPLE[EXAMPLE.find(r#"{"name": "support""#).unwrap()..EXAMPLE.rfind(']').unwrap()],
            &rules,
        );
        let e = errors(&json);
        assert_eq!(
            e,
            [
                "rules[2].providers[0]: no provider is named \"nope\"",
                "rules[2].endpoints[0]: an endpoint pattern path must start with '/'",
                "rules[3].providers[0]: no provider is named \"nope\"",
                "rules[3].endpoints[0]: an endpoint pattern path must start with '/'",
            ]
        );
        let ok = json
            .replace(r#""nope""#, r#""openai""#)
            .replace(r#""GET x""#, r#""GET /y""#);
        let c = parse(ok.as_bytes()).unwrap();
        assert_eq!(c.policy.len(), 5);
    }

    #[test]
    fn vault_settings_only_with_vault_protocol() {
        let e = errors(&EXAMPLE.replace(
            r#""refresh_ahead": "1m""#,
            r#""refresh_ahead": "1m", "vault": {"mount": "kv"}"#,
        ));
        assert!(e[0].starts_with("credential_service.vault: "), "{e:?}");
        let json = EXAMPLE.replace(r#""tollgate_v1""#, r#""vault_kv2""#);
        let c = parse(json.as_bytes()).unwrap();
        assert_eq!(
            c.credential_service.protocol,
            Protocol::VaultKv2 {
                mount: "secret".into(),
                field: "value".into()
            }
        );
    }
}
