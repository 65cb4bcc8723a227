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
            let call = running_sum(call, &frame, input.schema()).map_or_else(|| function(call), Ok)?;
            Ok(call
                .partition_by(partition_by.to_vec())
                .order_by(order_by.to_vec())
                .window_frame(frame.clone())
                .build()
                .map(|e| e.alias(name))?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(LogicalPlanBuilder::from(input).window(exprs)?.build()?)
}

/// A running `sum` (ROWS from UNBOUNDED PRECEDING to CURRENT ROW) of an integer
/// or float, as Kiln's [`crate::functions::running_sum`]: DataFusion's aggregate
/// form evaluates each row through a one-row slice.
fn running_sum(call: &WindowCall, frame: &WindowFrame, schema: &datafusion::common::DFSchema) -> Option<Expr> {
    use datafusion::logical_expr::{ExprSchemable, WindowFrameBound, WindowFrameUnits};
    let [arg] = call.args.as_slice() else { return None };
    // `KILN_RUNNING_SUM=off` keeps DataFusion's form (for comparison, as bench/running_sum.sh does).
    if !call.aggregate || call.distinct || !call.function.eq_ignore_ascii_case("sum") || std::env::var("KILN_RUNNING_SUM").is_ok_and(|v| v == "off") {
        return None;
    }
    if frame.units != WindowFrameUnits::Rows || !frame.start_bound.is_unbounded() || frame.end_bound != WindowFrameBound::CurrentRow {
        return None;
    }
    let total = crate::functions::running_sum::accumulates_as(&arg.get_type(schema).ok()?)?;
    let fun = WindowFunctionDefinition::WindowUDF(crate::functions::running_sum::udwf());
    Some(Expr::from(WindowFunction::new(fun, vec![datafusion::logical_expr::cast(arg.clone(), total)])))
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
