//! `dedupe`: one row per key.
//!
//! Planned as a hash aggregate, not a sort: the key columns are the groups and
//! every other column is `first_value(col ORDER BY order_by)` (reversed for
//! `keep = "last"`), so the kept row is whole and the order is honoured without
//! sorting the data. Without `order_by`, any row of the group is kept.

use datafusion::common::Column;
use datafusion::functions_aggregate::first_last::first_value;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, SortExpr};

use crate::plan::Keep;
use crate::Result;

pub(super) fn build(input: LogicalPlan, keys: &[String], keep: Keep, order_by: &[SortExpr]) -> Result<LogicalPlan> {
    let columns: Vec<Column> = input.schema().columns();
    if keys.is_empty() {
        return Ok(LogicalPlanBuilder::from(input).distinct()?.build()?);
    }
    let order: Vec<SortExpr> = match keep {
        Keep::Last => order_by.iter().map(|s| s.reverse()).collect(),
        Keep::First | Keep::Any => order_by.to_vec(),
    };
    let is_key = |c: &Column| keys.contains(&c.name);
    let group: Vec<Expr> = columns.iter().filter(|c| is_key(c)).map(|c| Expr::Column(c.clone())).collect();
    let aggregates: Vec<Expr> = columns
        .iter()
        .filter(|c| !is_key(c))
        .map(|c| first_value(Expr::Column(c.clone()), order.clone()).alias(&c.name))
        .collect();
    let plan = LogicalPlanBuilder::from(input).aggregate(group, aggregates)?.build()?;
    // Restore the input's column order.
    let exprs: Vec<Expr> = columns.iter().map(|c| Expr::Column(Column::new_unqualified(&c.name))).collect();
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}
