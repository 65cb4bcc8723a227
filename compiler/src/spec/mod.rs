//! The raw spec: what a TOML file says, with the span of every value.
//!
//! Parsing checks only what one table can tell on its own (keys, value kinds,
//! names, enumerations); cross-table checks live in [`crate::resolve`] and
//! [`crate::typeck`]. Parsing never stops at the first problem.

pub mod model;
mod pipeline;
mod reader;
mod sink;
mod source;
pub mod tests;
mod transform;
pub mod types;

use std::ops::Range;

use toml::de::{DeTable, DeValue};

pub use model::ModelDecl;
pub use pipeline::{ParamDecl, PipelineDecl, RuntimeDecl};
pub use sink::SinkDecl;
pub use source::{PgDecl, SourceDecl, SourceFormat};
pub use transform::{RuleDecl, RuleDeclKind, SaltDecl, TransformBody, TransformDecl};

use crate::diag::{Diagnostic, Diags};
use reader::Table;

/// A value and where it is in the spec text.
#[derive(Debug, Clone, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    pub span: Range<usize>,
}

impl<T> Sp<T> {
    pub fn new(value: T, span: Range<usize>) -> Self {
        Sp { value, span }
    }
}

impl Default for Sp<String> {
    fn default() -> Self {
        Sp::new(String::new(), 0..0)
    }
}

impl Sp<String> {
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// A literal value written in TOML.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// A whole spec file.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub pipeline: PipelineDecl,
    pub params: Vec<ParamDecl>,
    pub runtime: RuntimeDecl,
    pub sources: Vec<SourceDecl>,
    pub transforms: Vec<TransformDecl>,
    pub sinks: Vec<SinkDecl>,
    pub models: Vec<ModelDecl>,
    pub tests: Vec<tests::TestDecl>,
    /// Sources and transforms whose declaration had errors: their names exist
    /// (so readers get no second error), but they are not planned.
    pub broken: Vec<Sp<String>>,
}

/// Parses a spec's text into the raw model and every problem found on the way.
pub fn parse(text: &str) -> (Spec, Vec<Diagnostic>) {
    let mut d = Diags::default();
    let (root, errors) = DeTable::parse_recoverable(text);
    for e in &errors {
        let span = e.span().unwrap_or(0..0);
        d.push(Diagnostic::error("kiln::toml-syntax", span, format!("invalid TOML: {}", e.message())).label("here"));
    }
    if !errors.is_empty() {
        return (Spec::default(), d.0);
    }
    let root_table = Table::new(root.get_ref(), 0..0, "spec");
    let mut spec = Spec::default();

    match root_table.table("pipeline", &mut d) {
        Some(t) => spec.pipeline = pipeline::parse_pipeline(&t, &mut d),
        None if !root_table.table.contains_key("pipeline") => d.push(
            Diagnostic::error("kiln::missing-key", 0..0, "spec: missing `[pipeline]` table")
                .help("start the spec with:\n[pipeline]\nname = \"my_job\""),
        ),
        None => {}
    }
    if let Some(t) = root_table.table("params", &mut d) {
        spec.params = each_table(&t, &mut d, "param").into_iter().map(|(name, t)| pipeline::parse_param(name, &t, &mut d)).collect();
    }
    if let Some(t) = root_table.table("runtime", &mut d) {
        spec.runtime = pipeline::parse_runtime(&t, &mut d);
    }
    if let Some(t) = root_table.table("sources", &mut d) {
        for (name, t) in each_table(&t, &mut d, "source") {
            match source::parse(name.clone(), &t, &mut d) {
                Some(s) => spec.sources.push(s),
                None => spec.broken.push(name),
            }
        }
    }
    if let Some(t) = root_table.table("transforms", &mut d) {
        for (name, t) in each_table(&t, &mut d, "transform") {
            match transform::parse(name.clone(), &t, &mut d) {
                Some(decl) => spec.transforms.push(decl),
                None => spec.broken.push(name),
            }
        }
    }
    if let Some(t) = root_table.table("sinks", &mut d) {
        spec.sinks = each_table(&t, &mut d, "sink").into_iter().filter_map(|(name, t)| sink::parse(name, &t, &mut d)).collect();
    }
    if let Some(v) = root_table.get("tests") {
        spec.tests = tests::parse(v.get_ref(), v.span(), &mut d);
    }
    if let Some(t) = root_table.table("models", &mut d) {
        spec.models = each_table(&t, &mut d, "model").into_iter().filter_map(|(name, t)| model::parse(name, &t, &mut d)).collect();
    }
    root_table.finish(&mut d);
    (spec, d.0)
}

/// The entries of a table of named tables (`[sources.NAME]`), names validated.
pub(super) fn each_table<'a, 'i>(t: &Table<'a, 'i>, d: &mut Diags, kind: &str) -> Vec<(Sp<String>, Table<'a, 'i>)> {
    let mut out = Vec::new();
    for (k, v) in t.table.iter() {
        let name = Sp::new(k.get_ref().to_string(), k.span());
        match v.get_ref() {
            DeValue::Table(inner) => {
                check_name(&name, kind, d);
                out.push((name.clone(), Table::new(inner, k.span(), format!("{kind} `{}`", name.value))));
            }
            other => d.push(
                Diagnostic::error("kiln::wrong-value-type", v.span(), format!("{kind} `{}` must be a table", name.value))
                    .label(format!("this is {}", reader::type_name(other)))
                    .help(format!("write it as a table: [{}s.{}]", kind, name.value)),
            ),
        }
    }
    out
}

/// Names are `[a-z][a-z0-9_]*` (SPEC.md §1).
pub fn check_name(name: &Sp<String>, kind: &str, d: &mut Diags) -> bool {
    let n = name.as_str();
    let ok = n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        let suggestion: String = n
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .collect();
        d.push(
            Diagnostic::error("kiln::bad-name", name.span.clone(), format!("{kind} name `{n}` is not a valid name"))
                .label("names are lowercase letters, digits and `_`, starting with a letter")
                .help(format!("try `{suggestion}`")),
        );
    }
    ok
}

/// Checks that `value` is one of `allowed`.
/// `storage_options = { endpoint = "…", allow_http = true }` (SPEC §6a): options
/// of the object store an `s3://`/`gs://`/`az://` path names, as text; each key
/// must be one that store knows.
pub fn storage_options(t: &reader::Table, path: Option<&Sp<String>>, d: &mut Diags) -> Vec<(Sp<String>, Sp<String>)> {
    let Some(map) = t.literal_map("storage_options", d) else { return Vec::new() };
    // A path that starts with `${...}` is known at run time only: its keys must be
    // options of some store (the run checks them against the one it names).
    let templated = path.is_some_and(|p| p.value.starts_with("${"));
    let scheme = path.and_then(|p| p.value.split_once("://").map(|(s, _)| s.to_string())).filter(|s| s != "file");
    if scheme.is_none() && !templated {
        d.push(
            Diagnostic::error("kiln::conflict", map.span.clone(), format!("{}: `storage_options` apply to object-store paths (s3://, gs://, az://)", t.what))
                .label("the path is local"),
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (k, v) in map.value {
        let known = match &scheme {
            Some(scheme) => kiln::storage::check_option(scheme, &k.value),
            None => ["s3", "gs", "az"].iter().map(|s| kiln::storage::check_option(s, &k.value)).find(Result::is_ok).unwrap_or_else(|| {
                Err(format!("`{}` is not an option of any object store (e.g. endpoint, region, allow_http)", k.value))
            }),
        };
        if let Err(message) = known {
            d.push(Diagnostic::error("kiln::unknown-key", k.span.clone(), format!("{}: {message}", t.what)).label("unknown storage option"));
            continue;
        }
        // A literal credential is compiled into the binary and sits in the spec's
        // repository: say so where it is written.
        let secret = ["secret", "key", "token", "password", "sas"].iter().any(|w| k.value.to_ascii_lowercase().contains(w)) && !k.value.eq_ignore_ascii_case("access_key_id");
        if secret && matches!(&v.value, Literal::Str(text) if !text.contains("${env.")) {
            d.push(
                Diagnostic::warning("kiln::literal-secret", v.span.clone(), format!("{}: `{}` is written as a literal: it is compiled into the binary", t.what, k.value))
                    .label("a credential in the spec")
                    .help(format!("read it from the environment: {} = \"${{env.{}}}\"", k.value, k.value.to_ascii_uppercase())),
            );
        }
        let text = match &v.value {
            Literal::Str(s) => s.clone(),
            Literal::Int(i) => i.to_string(),
            Literal::Float(f) => f.to_string(),
            Literal::Bool(b) => b.to_string(),
        };
        out.push((k, Sp::new(text, v.span)));
    }
    out
}

pub fn one_of(value: &Sp<String>, allowed: &[&str], what: &str, d: &mut Diags) -> bool {
    if allowed.contains(&value.as_str()) {
        return true;
    }
    let mut diag = Diagnostic::error("kiln::bad-value", value.span.clone(), format!("unknown {what} `{}`", value.value))
        .label(format!("expected one of: {}", allowed.join(", ")));
    if let Some(h) = crate::diag::did_you_mean(&value.value, allowed.iter().copied()) {
        diag = diag.help(h);
    }
    d.push(diag);
    false
}

/// A PostgreSQL url with a literal password (`postgres://u:secret@h/db` or
/// `?password=secret`) is a warning: the password is compiled into the binary.
pub(crate) fn literal_password(url: &Sp<String>, what: &str, d: &mut Diags) {
    let text = url.value.as_str();
    let userinfo = text.split_once("://").and_then(|(_, rest)| rest.split_once('@')).map(|(u, _)| u);
    let in_userinfo = userinfo.and_then(|u| u.split_once(':')).map(|(_, p)| p.to_string());
    let in_query = text.split_once('?').and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("password=")).map(String::from));
    if in_userinfo.or(in_query).is_some_and(|p| !p.is_empty() && !p.contains("${env.")) {
        d.push(
            Diagnostic::warning("kiln::literal-secret", url.span.clone(), format!("{what}: the url holds a literal password: it is compiled into the binary"))
                .label("a credential in the spec")
                .help("read it from the environment: url = \"postgres://user:${env.PGPASSWORD}@host:5432/db\""),
        );
    }
}
