//! Lowering `expect`: every rule kind becomes a `kiln::plan::Rule`. Column
//! rules (`not_null`, `accepted_values`, `range`, `regex`) become `Check`
//! expressions here, typed against the column (a value of the wrong type is an
//! error at the value); `check` expressions are parsed and type-checked like
//! any filter predicate.

use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, in_list, lit};
use kiln::plan::{ExpectOutput, OnFail, Op, Rule, RuleKind};

use super::expr::ExprChecker;
use super::lower::{require_column, schema_names};
use super::literal_value;
use crate::diag::{Diagnostic, Diags};
use crate::spec::types::display;
use crate::spec::{RuleDecl, RuleDeclKind, Sp, TransformDecl};

pub(super) fn lower(t: &TransformDecl, inputs: &[LogicalPlan], rules: &[RuleDecl], checker: &ExprChecker, d: &mut Diags) -> Option<Op> {
    let before = d.0.len();
    let input = &inputs[0];
    let schema = input.schema();
    let columns = schema_names(schema.inner());
    let col = |c: &Sp<String>| Expr::Column(datafusion::common::Column::from_name(&c.value));
    let mut out = Vec::new();
    for r in rules {
        let on_fail = match r.on_fail.as_ref().map(|o| o.as_str()) {
            Some("warn") => OnFail::Warn,
            Some("drop") => OnFail::Drop,
            Some("quarantine") => OnFail::Quarantine,
            _ => OnFail::Fail,
        };
        let kind = match &r.kind {
            RuleDeclKind::Check(text) => {
                let Ok(e) = checker.parse(text, schema).map_err(|e| d.push(e)) else { continue };
                match e.get_type(schema) {
                    Ok(datafusion::arrow::datatypes::DataType::Boolean) => RuleKind::Check(e),
                    Ok(other) => {
                        d.push(
                            Diagnostic::error("kiln::not-a-condition", checker.span_of(text), format!("`{}` is {}, not a condition (bool)", text.value, display(&other)))
                                .label("a rule's check must be true or false"),
                        );
                        continue;
                    }
                    Err(err) => {
                        d.push(checker.diagnostic(&err, text, schema, false));
                        continue;
                    }
                }
            }
            RuleDeclKind::NotNull(cs) => {
                if !cs.iter().all(|c| require_column(c, &columns, d)) || cs.is_empty() {
                    continue;
                }
                RuleKind::Check(cs.iter().map(|c| col(c).is_not_null()).reduce(Expr::and)?)
            }
            RuleDeclKind::Unique(cs) => {
                if !cs.iter().all(|c| require_column(c, &columns, d)) || cs.is_empty() {
                    continue;
                }
                RuleKind::Unique(cs.iter().map(|c| c.value.clone()).collect())
            }
            RuleDeclKind::AcceptedValues { column, values } => {
                let Some(dt) = column_type(column, input, &columns, d) else { continue };
                let mut lits = Vec::new();
                for v in values {
                    match literal_value(&v.value, &dt) {
                        Ok(s) => lits.push(lit(s)),
                        Err(msg) => d.push(Diagnostic::error("kiln::type-mismatch", v.span.clone(), format!("`{}` is a {} column: {msg}", column.value, display(&dt))).label("wrong type for this column")),
                    }
                }
                RuleKind::Check(col(column).is_null().or(in_list(col(column), lits, false)))
            }
            RuleDeclKind::Range { column, min, max } => {
                let Some(dt) = column_type(column, input, &columns, d) else { continue };
                let mut bound = |b: &Option<Sp<crate::spec::Literal>>| -> Option<Expr> {
                    let b = b.as_ref()?;
                    match literal_value(&b.value, &dt) {
                        Ok(s) => Some(lit(s)),
                        Err(msg) => {
                            d.push(Diagnostic::error("kiln::type-mismatch", b.span.clone(), format!("`{}` is a {} column: {msg}", column.value, display(&dt))).label("wrong type for this column"));
                            None
                        }
                    }
                };
                let (lo, hi) = (bound(min), bound(max));
                let within = match (lo, hi) {
                    (Some(lo), Some(hi)) => col(column).gt_eq(lo).and(col(column).lt_eq(hi)),
                    (Some(lo), None) => col(column).gt_eq(lo),
                    (None, Some(hi)) => col(column).lt_eq(hi),
                    (None, None) => continue,
                };
                RuleKind::Check(col(column).is_null().or(within))
            }
            RuleDeclKind::Regex { column, pattern } => {
                let Some(dt) = column_type(column, input, &columns, d) else { continue };
                if !matches!(dt, datafusion::arrow::datatypes::DataType::Utf8 | datafusion::arrow::datatypes::DataType::LargeUtf8 | datafusion::arrow::datatypes::DataType::Utf8View) {
                    d.push(Diagnostic::error("kiln::type-mismatch", column.span.clone(), format!("`{}` is {}; a regex rule checks strings", column.value, display(&dt))).label("not a string column"));
                    continue;
                }
                if let Err(e) = regex::Regex::new(&pattern.value) {
                    d.push(Diagnostic::error("kiln::bad-regex", pattern.span.clone(), "invalid regular expression").label(e.to_string().lines().last().unwrap_or("").to_string()));
                    continue;
                }
                let Ok(matches) = kiln::expr::call("regexp_like", vec![col(column), lit(pattern.value.as_str())]) else { continue };
                RuleKind::Check(col(column).is_null().or(matches))
            }
            RuleDeclKind::RowCount { min, max } => {
                if matches!(on_fail, OnFail::Drop | OnFail::Quarantine) {
                    let span = r.on_fail.as_ref().map_or(r.name.span.clone(), |o| o.span.clone());
                    d.push(
                        Diagnostic::error("kiln::bad-rule", span, format!("rule `{}`: a row count is about the whole input; it can only warn or fail", r.name.value))
                            .label("no single row to drop")
                            .help("on_fail = \"warn\" or \"fail\""),
                    );
                    continue;
                }
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo.value > hi.value {
                        d.push(Diagnostic::error("kiln::bad-rule", hi.span.clone(), format!("rule `{}`: max is below min", r.name.value)).label("empty range"));
                        continue;
                    }
                }
                RuleKind::RowCount { min: min.as_ref().map(|m| m.value.max(0) as u64), max: max.as_ref().map(|m| m.value.max(0) as u64) }
            }
            RuleDeclKind::ExistsIn { node, keys, columns: theirs } => {
                if !keys.iter().all(|k| require_column(k, &columns, d)) {
                    continue;
                }
                let Some(pos) = t.inputs.iter().position(|i| i.value == node.value) else { continue };
                let other = &inputs[pos];
                let other_columns = schema_names(other.schema().inner());
                let theirs = theirs.clone().unwrap_or_else(|| keys.clone());
                if theirs.len() != keys.len() {
                    d.push(Diagnostic::error("kiln::bad-rule", r.name.span.clone(), format!("rule `{}`: {} keys but {} columns to look them up in", r.name.value, keys.len(), theirs.len())).label("one column per key"));
                    continue;
                }
                let mut ok = true;
                for c in &theirs {
                    if !other_columns.contains(&c.value) {
                        d.push(Diagnostic::error("kiln::unknown-column", c.span.clone(), format!("`{}` is not a column of `{}`", c.value, node.value)).note(format!("`{}` has: {}", node.value, other_columns.join(", "))));
                        ok = false;
                    }
                }
                if !ok {
                    continue;
                }
                RuleKind::ExistsIn { node: node.value.clone(), keys: keys.iter().map(|k| k.value.clone()).collect(), columns: theirs.iter().map(|c| c.value.clone()).collect() }
            }
        };
        out.push(Rule { name: r.name.value.clone(), on_fail, kind });
    }
    if d.0.len() > before {
        return None;
    }
    Some(Op::Expect { input: t.input().value.clone(), rules: out, output: ExpectOutput::Passed })
}

fn column_type(c: &Sp<String>, input: &LogicalPlan, columns: &[String], d: &mut Diags) -> Option<datafusion::arrow::datatypes::DataType> {
    if !require_column(c, columns, d) {
        return None;
    }
    input.schema().field_with_unqualified_name(&c.value).ok().map(|f| f.data_type().clone())
}
