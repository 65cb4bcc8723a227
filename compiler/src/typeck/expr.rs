//! Expressions: SQL text → DataFusion `Expr`, checked against an input schema
//! through DataFusion's own planner and analyzer (type coercion included), with
//! errors turned into diagnostics that point into the spec.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, SchemaError};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::{Expr, LogicalPlan, SortExpr};

use crate::diag::{Diagnostic, did_you_mean};
use crate::spec::Sp;

/// Parses and checks expressions for one spec.
pub struct ExprChecker<'a> {
    state: SessionState,
    /// Parameter name → type.
    params: HashMap<String, DataType>,
    /// The spec text, to map positions inside expression strings.
    text: &'a str,
}

impl<'a> ExprChecker<'a> {
    pub fn new(text: &'a str, params: HashMap<String, DataType>) -> Self {
        let mut config = kiln::session::config(&Default::default());
        config.options_mut().sql_parser.collect_spans = true;
        let mut state = SessionStateBuilder::new().with_config(config).with_default_features().build();
        kiln::functions::install(&mut state);
        ExprChecker { state, params, text }
    }

    /// Parses `text` against `schema`. Columns come out unqualified; params
    /// become typed placeholders.
    pub fn parse(&self, text: &Sp<String>, schema: &DFSchema) -> Result<Expr, Diagnostic> {
        let sql = self.substitute_params(text)?;
        let expr = self
            .state
            .create_logical_expr(&sql, schema)
            .map_err(|e| self.diagnostic(&e, text, schema, sql != text.value))?;
        let expr = expr
            .transform(|e| {
                Ok(match e {
                    Expr::Placeholder(p) if p.field.is_none() => {
                        let name = p.id.trim_start_matches('$').to_string();
                        let dt = self.params.get(&name).cloned().unwrap_or(DataType::Utf8);
                        Transformed::yes(Expr::Placeholder(Placeholder::new_with_field(p.id, Some(Arc::new(Field::new(name, dt, true))))))
                    }
                    e => Transformed::no(e),
                })
            })
            .map(|t| t.data)
            .map_err(|e| self.diagnostic(&e, text, schema, true))?;
        Ok(unnormalize_col(expr))
    }

    /// Parses `expr [ASC|DESC] [NULLS FIRST|LAST]`. Without NULLS, nulls sort
    /// first ascending and last descending (Spark).
    pub fn parse_sort(&self, text: &Sp<String>, schema: &DFSchema) -> Result<SortExpr, Diagnostic> {
        let mut words: Vec<&str> = text.value.split_whitespace().collect();
        let upper = |w: &str| w.to_ascii_uppercase();
        let mut nulls_first = None;
        if words.len() >= 3 && upper(words[words.len() - 2]) == "NULLS" {
            nulls_first = match upper(words[words.len() - 1]).as_str() {
                "FIRST" => Some(true),
                "LAST" => Some(false),
                _ => None,
            };
            if nulls_first.is_some() {
                words.truncate(words.len() - 2);
            }
        }
        let mut asc = true;
        if let Some(last) = words.last().map(|w| upper(w)) {
            if last == "DESC" || last == "ASC" {
                asc = last == "ASC";
                words.pop();
            }
        }
        let expr_text = words.join(" ");
        // Keep the span pointing at the whole item; positions inside are mapped only when unchanged.
        let item = if expr_text == text.value { text.clone() } else { Sp::new(expr_text, text.span.clone()) };
        let expr = self.parse(&item, schema)?;
        Ok(SortExpr::new(expr, asc, nulls_first.unwrap_or(asc)))
    }

    /// Runs DataFusion's analyzer (type coercion and checks) over a plan.
    pub fn analyze(&self, plan: LogicalPlan) -> Result<LogicalPlan, DataFusionError> {
        self.state.analyzer().execute_and_check(plan, self.state.config_options(), |_, _| {})
    }

    fn substitute_params(&self, text: &Sp<String>) -> Result<String, Diagnostic> {
        let mut out = String::new();
        let mut rest = text.value.as_str();
        let mut offset = 0;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(Diagnostic::error("kiln::bad-reference", self.inner_span(text, offset + start..text.value.len()), "unclosed `${`")
                    .label("expected `${params.NAME}`"));
            };
            let reference = &after[..end];
            let span = self.inner_span(text, offset + start..offset + start + end + 3);
            match reference.split_once('.') {
                Some(("params", name)) if self.params.contains_key(name) => out.push_str(&format!("${name}")),
                Some(("params", name)) => {
                    let mut d = Diagnostic::error("kiln::unknown-param", span, format!("unknown parameter `{name}`"))
                        .label("not declared in [params]");
                    d = match did_you_mean(name, self.params.keys().map(String::as_str)) {
                        Some(h) => d.help(h),
                        None => d.help(format!("declare it:\n[params.{name}]\ndefault = ...")),
                    };
                    return Err(d);
                }
                Some(("env", name)) => {
                    return Err(Diagnostic::error("kiln::env-in-expression", span, format!("`${{env.{name}}}` cannot be used inside an expression"))
                        .label("environment variables are for strings such as paths")
                        .help(format!("declare a parameter that reads it:\n[params.{}]\nenv = \"{name}\"\nand write ${{params.{}}}", name.to_ascii_lowercase(), name.to_ascii_lowercase())));
                }
                _ => {
                    return Err(Diagnostic::error("kiln::bad-reference", span, format!("`${{{reference}}}` is not a reference"))
                        .label("expected `${params.NAME}` or `${env.NAME}`"));
                }
            }
            let consumed = start + 2 + end + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The span of `range` (bytes of the expression text) in the spec, when the
    /// string is written without escapes; else the whole string's span.
    fn inner_span(&self, text: &Sp<String>, range: Range<usize>) -> Range<usize> {
        for quote in [1usize, 3] {
            let (s, e) = (text.span.start + quote, text.span.end.saturating_sub(quote));
            if s <= e && self.text.get(s..e) == Some(text.value.as_str()) {
                return s + range.start..s + range.end.min(text.value.len());
            }
        }
        text.span.clone()
    }

    /// A DataFusion error about expression `text` as a diagnostic.
    pub fn diagnostic(&self, err: &DataFusionError, text: &Sp<String>, schema: &DFSchema, rewritten: bool) -> Diagnostic {
        let span = match err.diagnostic().and_then(|d| d.span) {
            Some(s) if !rewritten && s.start.line > 0 => {
                let start = offset_of(&text.value, s.start.line as usize, s.start.column as usize);
                let end = offset_of(&text.value, s.end.line as usize, s.end.column as usize);
                match (start, end) {
                    (Some(a), Some(b)) if a < b => self.inner_span(text, a..b),
                    _ => text.span.clone(),
                }
            }
            _ => text.span.clone(),
        };
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        if let Some(SchemaError::FieldNotFound { field, .. }) = find_schema_error(err) {
            let mut d = Diagnostic::error("kiln::unknown-column", span, format!("unknown column `{}`", field.name))
                .label("not a column of the input");
            if let Some(h) = did_you_mean(&field.name, columns.iter().map(String::as_str)) {
                d = d.help(h);
            }
            return d.note(format!("the input's columns: {}", columns.join(", ")));
        }
        let message = clean_message(err);
        Diagnostic::error("kiln::invalid-expression", span, message).label(format!("in `{}`", text.value))
    }
}

fn find_schema_error(err: &DataFusionError) -> Option<&SchemaError> {
    match err {
        DataFusionError::SchemaError(e, _) => Some(e),
        DataFusionError::Context(_, inner) => find_schema_error(inner),
        DataFusionError::Diagnostic(_, inner) => find_schema_error(inner),
        DataFusionError::Shared(inner) => find_schema_error(inner),
        _ => None,
    }
}

/// DataFusion's message without its category prefixes and backtrace.
pub fn clean_message(err: &DataFusionError) -> String {
    let mut text = err.strip_backtrace();
    for prefix in ["Error during planning: ", "Schema error: ", "SQL error: ", "Optimizer rule 'type_coercion' failed\ncaused by\n", "type_coercion\ncaused by\n", "Internal error: ", "This feature is not implemented: ", "Arrow error: "] {
        while let Some(pos) = text.find(prefix) {
            text.replace_range(pos..pos + prefix.len(), "");
        }
    }
    text.trim().to_string()
}

/// Byte offset of a 1-based line/column (in characters) inside `text`.
fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    let mut offset = 0;
    for (i, l) in text.split('\n').enumerate() {
        if i + 1 == line {
            let byte = l.char_indices().nth(column.saturating_sub(1)).map_or(l.len(), |(b, _)| b);
            return Some(offset + byte);
        }
        offset += l.len() + 1;
    }
    None
}
