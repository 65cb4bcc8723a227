//! `dedupe`: one row per key.
//!
//! `keep = "first" | "last"` with `order_by` is planned as Spark and DuckDB do
//! it: `row_number() OVER (PARTITION BY keys ORDER BY order_by)` and keep row 1
//! (`"last"` reverses the order). `keep = "any"` is a hash aggregate that takes
//! `first_value` of every other column; without keys it is `DISTINCT`.
//! The choice was measured against the aggregate plan: see ARCHITECTURE.md.

use datafusion::common::Column;
use datafusion::functions_aggregate::first_last::first_value;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, SortExpr, col, lit};

use crate::plan::Keep;
use crate::Result;

/// The dedupe's row number column (`run::fan_out_windows` tells its window from a `window` transform's by it).
pub(crate) const ROW_NUMBER: &str = "__kiln_row_number";

pub(super) fn build(input: LogicalPlan, keys: &[String], keep: Keep, order_by: &[SortExpr]) -> Result<LogicalPlan> {
    let columns: Vec<Column> = input.schema().columns();
    if keys.is_empty() {
        return Ok(LogicalPlanBuilder::from(input).distinct()?.build()?);
    }
    let is_key = |c: &Column| keys.contains(&c.name);
    // Restores the input's column order (and drops helper columns).
    let output: Vec<Expr> = columns.iter().map(|c| Expr::Column(Column::new_unqualified(&c.name))).collect();
    if keep == Keep::Any || order_by.is_empty() {
        let group: Vec<Expr> = columns.iter().filter(|c| is_key(c)).map(|c| Expr::Column(c.clone())).collect();
        let aggregates: Vec<Expr> = columns
            .iter()
            .filter(|c| !is_key(c))
            .map(|c| first_value(Expr::Column(c.clone()), vec![]).alias(&c.name))
            .collect();
        let plan = LogicalPlanBuilder::from(input).aggregate(group, aggregates)?.build()?;
        return Ok(LogicalPlanBuilder::from(plan).project(output)?.build()?);
    }
    let order: Vec<SortExpr> = match keep {
        Keep::Last => order_by.iter().map(|s| s.reverse()).collect(),
        Keep::First | Keep::Any => order_by.to_vec(),
    };
    let partition: Vec<Expr> = columns.iter().filter(|c| is_key(c)).map(|c| Expr::Column(c.clone())).collect();
    let rn = row_number().partition_by(partition).order_by(order).build()?.alias(ROW_NUMBER);
    let plan = LogicalPlanBuilder::from(input)
        .window(vec![rn])?
        .filter(col(ROW_NUMBER).eq(lit(1u64)))?
        .project(output)?
        .build()?;
    Ok(plan)
}
