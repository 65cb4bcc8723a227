//! `expect`: data-quality rules over a node's rows.
//!
//! Every row rule becomes a boolean "failed" column on the input (the
//! annotated plan); `unique` counts rows per key with a window, `exists_in`
//! looks the keys up in the other node's distinct keys. From the annotated plan:
//! - the node's own rows: those that fail no `drop` or `quarantine` rule;
//! - `NAME.quarantine`: those that fail a `quarantine` rule, with
//!   `_failed_rules` (every rule the row broke);
//! - the summary ([`summary_plan`]): rows checked and failures per rule, which
//!   the run computes before any sink writes (a `fail` rule that trips stops it).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, JoinType};
use datafusion::execution::FunctionRegistry;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionDefinition};
use datafusion::logical_expr::{Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, cast, col, lit, when};

use crate::expr::{aggregate, call};
use crate::functions::registry;
use crate::plan::{ExpectOutput, OnFail, Rule, RuleKind};
use crate::Result;

/// The name of the failed-flag column of rule `i`.
fn failed(i: usize) -> String {
    format!("__kiln_failed_{i}")
}

/// The input with one boolean `__kiln_failed_i` column per row rule `i`.
/// `others` are the plans of the nodes `exists_in` rules read, in rule order.
fn annotate(input: LogicalPlan, rules: &[Rule], others: &[LogicalPlan]) -> Result<LogicalPlan> {
    let mut plan = input;
    let mut other = others.iter();
    for (i, rule) in rules.iter().enumerate() {
        let mut exprs: Vec<Expr> = plan.schema().columns().into_iter().map(Expr::Column).collect();
        match &rule.kind {
            RuleKind::Check(e) => {
                // CASE rather than IS NOT TRUE: DataFusion 55's physical IS NOT TRUE
                // claims to be nullable where the logical one does not.
                exprs.push(when(e.clone(), lit(false)).otherwise(lit(true))?.alias(failed(i)));
                plan = LogicalPlanBuilder::from(plan).project(exprs)?.build()?;
            }
            RuleKind::Unique(keys) => {
                let count = format!("__kiln_count_{i}");
                let keys: Vec<Expr> = keys.iter().map(|k| Expr::Column(Column::from_name(k))).collect();
                let count_fn = WindowFunctionDefinition::AggregateUDF(registry().udaf("count")?);
                let w = Expr::from(WindowFunction::new(count_fn, vec![lit(1)])).partition_by(keys).build()?.alias(&count);
                plan = LogicalPlanBuilder::from(plan).window(vec![w])?.build()?;
                exprs.push(col(&count).gt(lit(1i64)).alias(failed(i)));
                plan = LogicalPlanBuilder::from(plan).project(exprs)?.build()?;
            }
            RuleKind::ExistsIn { keys, columns: theirs, .. } => {
                let Some(other) = other.next() else {
                    return Err(crate::Error::Usage(format!("rule `{}`: the node it looks keys up in is not planned", rule.name)));
                };
                let found = format!("__kiln_found_{i}");
                let alias = format!("__kiln_lookup_{i}");
                let lookup: Vec<Expr> = theirs.iter().enumerate().map(|(j, c)| Expr::Column(Column::from_name(c)).alias(format!("__kiln_key_{i}_{j}"))).collect();
                let lookup = LogicalPlanBuilder::from(other.clone())
                    .project(lookup)?
                    .distinct()?
                    .project(
                        (0..theirs.len()).map(|j| col(format!("__kiln_key_{i}_{j}"))).chain([lit(true).alias(&found)]).collect::<Vec<_>>(),
                    )?
                    .alias(alias.as_str())?
                    .build()?;
                let left: Vec<Column> = keys.iter().map(|k| Column::from_name(k)).collect();
                let right: Vec<Column> = (0..theirs.len()).map(|j| Column::new(Some(alias.as_str()), format!("__kiln_key_{i}_{j}"))).collect();
                plan = LogicalPlanBuilder::from(plan).join(lookup, JoinType::Left, (left, right), None)?.build()?;
                let all_keys_set = keys.iter().map(|k| Expr::Column(Column::from_name(k)).is_not_null()).reduce(Expr::and).unwrap_or(lit(true));
                exprs.push(all_keys_set.and(Expr::Column(Column::new(Some(alias.as_str()), &found)).is_null()).alias(failed(i)));
                plan = LogicalPlanBuilder::from(plan).project(exprs)?.build()?;
            }
            RuleKind::RowCount { .. } => {}
        }
    }
    Ok(plan)
}

fn row_rules(rules: &[Rule]) -> impl Iterator<Item = (usize, &Rule)> {
    rules.iter().enumerate().filter(|(_, r)| !matches!(r.kind, RuleKind::RowCount { .. }))
}

/// Any of the rules (by index) failed.
fn any_failed(indices: impl Iterator<Item = usize>) -> Option<Expr> {
    indices.map(|i| col(failed(i))).reduce(Expr::or)
}

/// The node's rows (`Passed`) or its quarantine (`Quarantined`).
pub(super) fn build(input: LogicalPlan, rules: &[Rule], others: &[LogicalPlan], output: ExpectOutput) -> Result<LogicalPlan> {
    let columns: Vec<Expr> = input.schema().columns().into_iter().map(|c| Expr::Column(c.clone()).alias(c.name)).collect();
    let plan = annotate(input, rules, others)?;
    let removing = |r: &Rule| matches!(r.on_fail, OnFail::Drop | OnFail::Quarantine);
    Ok(match output {
        ExpectOutput::Passed => {
            let builder = LogicalPlanBuilder::from(plan);
            let builder = match any_failed(row_rules(rules).filter(|(_, r)| removing(r)).map(|(i, _)| i)) {
                Some(f) => builder.filter(datafusion::logical_expr::not(f))?,
                None => builder,
            };
            builder.project(columns)?.build()?
        }
        ExpectOutput::Quarantined => {
            let quarantine = any_failed(row_rules(rules).filter(|(_, r)| r.on_fail == OnFail::Quarantine).map(|(i, _)| i)).unwrap_or(lit(false));
            let names: Vec<Expr> = row_rules(rules).map(|(i, r)| when(col(failed(i)), lit(r.name.as_str())).end()).collect::<std::result::Result<_, _>>()?;
            let joined = call("concat_ws", std::iter::once(lit(",")).chain(names).collect())?;
            let failed_rules = call("string_to_array", vec![joined, lit(",")])?.alias("_failed_rules");
            LogicalPlanBuilder::from(plan)
                .filter(quarantine)?
                .project(columns.into_iter().chain([failed_rules]).collect::<Vec<_>>())?
                .build()?
        }
    })
}

/// One row: `rows` checked, then `failed_i` (int64) per row rule `i`.
pub fn summary_plan(input: LogicalPlan, rules: &[Rule], others: &[LogicalPlan]) -> Result<LogicalPlan> {
    let plan = annotate(input, rules, others)?;
    let mut aggs = vec![count(lit(1)).alias("rows")];
    for (i, _) in row_rules(rules) {
        aggs.push(aggregate("sum", vec![cast(col(failed(i)), DataType::Int64)], false)?.alias(format!("failed_{i}")));
    }
    Ok(LogicalPlanBuilder::from(plan).aggregate(Vec::<Expr>::new(), aggs)?.build()?)
}
