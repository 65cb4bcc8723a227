//! `window`: the input plus one column per window function, all over one
//! `PARTITION BY … ORDER BY … frame` (SPEC.md §11).

use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionDefinition};
use datafusion::logical_expr::{Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, SortExpr, WindowFrame};

use crate::functions::registry;
use crate::plan::WindowCall;
use crate::Result;

pub(super) fn build(
    input: LogicalPlan,
    partition_by: &[Expr],
    order_by: &[SortExpr],
    frame: Option<&WindowFrame>,
    columns: &[(String, WindowCall)],
) -> Result<LogicalPlan> {
    let frame = frame.cloned().unwrap_or_else(|| WindowFrame::new((!order_by.is_empty()).then_some(false)));
    let exprs = columns
        .iter()
        .map(|(name, call)| {
            Ok(function(call)?
                .partition_by(partition_by.to_vec())
                .order_by(order_by.to_vec())
                .window_frame(frame.clone())
                .build()
                .map(|e| e.alias(name))?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(LogicalPlanBuilder::from(input).window(exprs)?.build()?)
}

/// The call with an empty OVER clause.
fn function(call: &WindowCall) -> Result<Expr> {
    let fun = if call.aggregate {
        WindowFunctionDefinition::AggregateUDF(registry().udaf(&call.function)?)
    } else {
        WindowFunctionDefinition::WindowUDF(registry().udwf(&call.function)?)
    };
    let mut w = WindowFunction::new(fun, call.args.clone());
    w.params.distinct = call.distinct;
    Ok(Expr::from(w))
}
