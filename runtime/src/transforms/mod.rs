//! Transforms: turning each [`Op`] into a logical plan over its input's plan.
//!
//! This is the one place where a spec's meaning becomes DataFusion plans. The
//! generated binary calls it, and so does `kiln check` (over empty sources), so
//! what was type-checked is exactly what runs.

pub(crate) mod dedupe;
pub mod event_window;
pub mod expect;
mod join;
pub mod sql;
mod window;

use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, Partitioning, cast};

use crate::expr::{call, lit};
use crate::plan::Op;
use crate::{Error, Result};

/// The plan of transform `name` (`op`) over its input plans, in `op.inputs()` order.
pub fn build(name: &str, op: &Op, inputs: &[LogicalPlan]) -> Result<LogicalPlan> {
    build_unaliased(name, op, inputs)
        .and_then(|plan| Ok(LogicalPlanBuilder::from(plan).alias(datafusion::common::TableReference::bare(name))?.build()?))
        .map_err(|e| match e {
            Error::Node { .. } => e,
            e => Error::in_node(name, e),
        })
}

fn build_unaliased(name: &str, op: &Op, inputs: &[LogicalPlan]) -> Result<LogicalPlan> {
    let nth = |i: usize| -> Result<LogicalPlan> {
        inputs.get(i).cloned().ok_or_else(|| Error::Usage(format!("transform without input plan {i}")))
    };
    let input = || -> Result<LogicalPlanBuilder> {
        let plan = inputs
            .first()
            .ok_or_else(|| Error::Usage("transform without an input plan".into()))?;
        Ok(LogicalPlanBuilder::from(plan.clone()))
    };
    let plan = match op {
        Op::Source(_) => return Err(Error::Usage("a source is not a transform".into())),
        Op::Filter { predicate, .. } => input()?.filter(predicate.clone())?.build()?,
        Op::Select { columns, .. } => input()?.project(columns.clone())?.build()?,
        Op::WithColumns { columns, .. } => {
            let mut builder = input()?;
            for (name, expr) in columns {
                let plan = builder.build()?;
                let exprs = replace_or_append(plan.schema(), name, expr.clone().alias(name));
                builder = LogicalPlanBuilder::from(plan).project(exprs)?;
            }
            builder.build()?
        }
        Op::Drop { columns, .. } => {
            let builder = input()?;
            let exprs = column_exprs(builder.schema())
                .into_iter()
                .filter(|(c, _)| !columns.contains(&c.name))
                .map(|(_, e)| e)
                .collect::<Vec<_>>();
            builder.project(exprs)?.build()?
        }
        Op::Rename { columns, .. } => {
            let builder = input()?;
            let exprs = map_columns(builder.schema(), |c, e| {
                columns.iter().find(|(old, _)| old == &c.name).map(|(_, new)| e.alias(new))
            });
            builder.project(exprs)?.build()?
        }
        Op::Cast { columns, .. } => {
            let builder = input()?;
            let exprs = map_columns(builder.schema(), |c, e| {
                columns
                    .iter()
                    .find(|(n, _)| n == &c.name)
                    .map(|(n, t)| cast(e, t.clone()).alias(n))
            });
            builder.project(exprs)?.build()?
        }
        Op::FillNull { values, .. } => {
            let builder = input()?;
            let mut failed = None;
            let exprs = map_columns(builder.schema(), |c, e| {
                let (n, v) = values.iter().find(|(n, _)| n == &c.name)?;
                match call("coalesce", vec![e, lit(v.clone())]) {
                    Ok(f) => Some(f.alias(n)),
                    Err(err) => {
                        failed = Some(err);
                        None
                    }
                }
            });
            if let Some(err) = failed {
                return Err(err);
            }
            builder.project(exprs)?.build()?
        }
        Op::Dedupe { keys, keep, order_by, .. } => dedupe::build(input()?.build()?, keys, *keep, order_by)?,
        Op::Aggregate { group_by, aggregates, having, .. } => {
            // An entry may be an expression over aggregates (`sum(a) / count(*)`, as
            // PySpark's agg(F.sum("a") / F.count("*"))): its calls are computed by the
            // aggregate under internal names, the expression by the projection after it.
            let (calls, outputs) = split_aggregates(aggregates)?;
            let n_calls = calls.len();
            let plan = input()?.aggregate(group_by.clone(), calls)?.build()?;
            // Output columns are the group keys and the aggregates' names, unqualified.
            let keys = plan.schema().fields().len().saturating_sub(n_calls);
            let mut exprs: Vec<Expr> = column_exprs(plan.schema()).into_iter().take(keys).map(|(c, e)| e.alias(c.name)).collect();
            exprs.extend(outputs);
            let builder = LogicalPlanBuilder::from(plan).project(exprs)?;
            let builder = match having {
                Some(predicate) => builder.filter(predicate.clone())?,
                None => builder,
            };
            builder.build()?
        }
        Op::Window { partition_by, order_by, frame, columns, .. } => {
            window::build(input()?.build()?, partition_by, order_by, frame.as_ref(), columns)?
        }
        Op::Join { how, on, strategy, salt, .. } => join::build(nth(0)?, nth(1)?, *how, on, *strategy, salt.as_ref())?,
        Op::Union { by_name, distinct, .. } => {
            let mut builder = LogicalPlanBuilder::from(nth(0)?);
            for plan in &inputs[1..] {
                builder = match (by_name, distinct) {
                    (true, false) => builder.union_by_name(plan.clone())?,
                    (true, true) => builder.union_by_name_distinct(plan.clone())?,
                    (false, false) => builder.union(plan.clone())?,
                    (false, true) => builder.union_distinct(plan.clone())?,
                };
            }
            builder.build()?
        }
        Op::Sort { order_by, .. } => input()?.sort(order_by.clone())?.build()?,
        Op::Limit { n, .. } => input()?.limit(0, Some(*n))?.build()?,
        Op::Repartition { partitions, by, .. } => {
            // 0: the session's target_partitions, set by the run (1 when only the schema matters).
            let partitions = &(*partitions).max(1);
            let scheme = if by.is_empty() {
                Partitioning::RoundRobinBatch(*partitions)
            } else {
                Partitioning::Hash(by.clone(), *partitions)
            };
            input()?.repartition(scheme)?.build()?
        }
        Op::Coalesce { partitions, .. } => input()?.repartition(Partitioning::RoundRobinBatch(*partitions))?.build()?,
        Op::Sql { plan, inputs: names, .. } => sql::build(plan, names, inputs)?,
        Op::Expect { rules, output, .. } => expect::build(nth(0)?, rules, &inputs[1..], *output)?,
        Op::Predict { model, features, output, batch_size, .. } => predict(name, input()?, model, features, output, *batch_size)?,
        Op::EventWindow { window, .. } => event_window::build(name, nth(0)?, window)?,
    };
    Ok(plan)
}

/// The input plus the model's output: `output` (a score), or for several
/// outputs `output` (the class) and `output_probability`.
fn predict(node: &str, input: LogicalPlanBuilder, model: &crate::plan::Model, features: &crate::plan::Features, output: &str, batch_size: usize) -> Result<LogicalPlan> {
    use crate::plan::Features;
    use datafusion::arrow::datatypes::DataType;
    let udf = datafusion::logical_expr::ScalarUDF::new_from_impl(crate::models::predict::Predict::new(node, model.clone(), features, batch_size));
    let mut args: Vec<Expr> = vec![lit(model.path.clone())];
    match features {
        Features::Columns(cols) => args.extend(cols.iter().map(|c| cast(crate::expr::col(c), DataType::Float32))),
        Features::List(c) => args.push(crate::expr::col(c)),
    }
    let call = udf.call(args);
    let mut exprs: Vec<Expr> = column_exprs(input.schema()).into_iter().map(|(_, e)| e).collect();
    if model.outputs == 1 {
        exprs.push(call.alias(output));
        return Ok(input.project(exprs)?.build()?);
    }
    const TMP: &str = "__kiln_prediction";
    let plan = input.project(exprs.iter().cloned().chain([call.alias(TMP)]))?.build()?;
    let get = |field: &str| datafusion::functions::core::expr_fn::get_field(crate::expr::col(TMP), field);
    let mut exprs: Vec<Expr> = column_exprs(plan.schema()).into_iter().filter(|(c, _)| c.name != TMP).map(|(_, e)| e).collect();
    exprs.push(get("class").alias(output));
    exprs.push(get("probability").alias(format!("{output}_probability")));
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}

/// Every column of `schema` as (column, expression).
/// An aggregate node's entries (each `expr AS name`) as the calls the aggregate
/// computes and the expressions the projection after it outputs. A bare call
/// keeps its name; calls inside an expression get internal names.
fn split_aggregates(entries: &[Expr]) -> Result<(Vec<Expr>, Vec<Expr>)> {
    use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
    let (mut calls, mut outputs) = (Vec::new(), Vec::new());
    for entry in entries {
        let (name, e) = match entry {
            Expr::Alias(a) => (a.name.clone(), a.expr.as_ref().clone()),
            e => (e.schema_name().to_string(), e.clone()),
        };
        if matches!(e, Expr::AggregateFunction(_)) {
            calls.push(e.alias(&name));
            outputs.push(Expr::Column(Column::from_name(&name)).alias(&name));
            continue;
        }
        let rewritten = e
            .transform_down(|e| {
                Ok(match e {
                    Expr::AggregateFunction(_) => {
                        let internal = format!("__kiln_{name}_{}", calls.len());
                        calls.push(e.alias(&internal));
                        Transformed::new(Expr::Column(Column::from_name(internal)), true, TreeNodeRecursion::Jump)
                    }
                    e => Transformed::no(e),
                })
            })?
            .data;
        outputs.push(rewritten.alias(&name));
    }
    Ok((calls, outputs))
}

fn column_exprs(schema: &DFSchema) -> Vec<(Column, Expr)> {
    schema.columns().into_iter().map(|c| (c.clone(), Expr::Column(c))).collect()
}

/// All columns, with `f` replacing those it returns `Some` for.
fn map_columns(schema: &DFSchema, mut f: impl FnMut(&Column, Expr) -> Option<Expr>) -> Vec<Expr> {
    column_exprs(schema)
        .into_iter()
        .map(|(c, e)| f(&c, e.clone()).unwrap_or(e))
        .collect()
}

/// All columns, with `name` replaced in place by `expr`, or `expr` appended.
fn replace_or_append(schema: &DFSchema, name: &str, expr: Expr) -> Vec<Expr> {
    let mut exprs = Vec::new();
    let mut replaced = false;
    for (c, e) in column_exprs(schema) {
        if c.name == name {
            exprs.push(expr.clone());
            replaced = true;
        } else {
            exprs.push(e);
        }
    }
    if !replaced {
        exprs.push(expr);
    }
    exprs
}
