//! Lowering `window`: one `partition_by`/`order_by`/`frame` per node, one window
//! function call per column. Each call is parsed as `CALL OVER (ORDER BY … frame)`
//! by DataFusion's SQL planner, which checks the function, its arguments and the
//! frame against the order keys; partitioning and ordering are parsed on their own
//! so their errors point at their own strings.

use std::collections::HashSet;

use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionDefinition};
use datafusion::logical_expr::{Expr, LogicalPlan, WindowFrame};
use kiln::plan::{Op, WindowCall};

use super::expr::ExprChecker;
use super::lower::{duplicate_output, schema_names};
use crate::diag::{Diagnostic, Diags};
use crate::spec::{Sp, TransformDecl};

#[allow(clippy::too_many_arguments)]
pub(super) fn lower(
    t: &TransformDecl,
    input: &LogicalPlan,
    partition_by: &[Sp<String>],
    order_by: &[Sp<String>],
    frame: Option<&Sp<String>>,
    items: &[(Sp<String>, Sp<String>)],
    checker: &ExprChecker,
    d: &mut Diags,
) -> Option<Op> {
    let schema = input.schema().as_ref();
    let partition: Vec<Expr> = partition_by.iter().filter_map(|p| checker.parse(p, schema).map_err(|e| d.push(e)).ok()).collect();
    let order = order_by.iter().filter_map(|o| checker.parse_sort(o, schema).map_err(|e| d.push(e)).ok()).collect::<Vec<_>>();
    let order_clause = match order_by.is_empty() {
        true => String::new(),
        false => format!("ORDER BY {}", order_by.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", ")),
    };
    // The frame, checked once against the order keys.
    let mut window_frame: Option<WindowFrame> = None;
    if let Some(f) = frame {
        let probe = Sp::new(format!("count(*) OVER ({order_clause} {})", f.value), f.span.clone());
        match checker.parse(&probe, schema) {
            Ok(e) => window_frame = window_function(&e).map(|w| w.params.window_frame.clone()),
            Err(mut diag) => {
                diag.message = format!("invalid frame `{}`: {}", f.value, diag.message);
                diag.label = match order_by.is_empty() {
                    true => "with no order_by".to_string(),
                    false => format!("with order_by = [{}]", order_by.iter().map(|o| format!("\"{}\"", o.value)).collect::<Vec<_>>().join(", ")),
                };
                d.push(diag);
                return None;
            }
        }
    }
    let frame_text = frame.map_or(String::new(), |f| format!(" {}", f.value));
    let existing = schema_names(input.schema().inner());
    let mut seen = HashSet::new();
    let mut columns = Vec::new();
    for (name, text) in items {
        if existing.contains(&name.value) || !seen.insert(name.value.clone()) {
            d.push(duplicate_output(&name.value, &name.span).note("a window's output is its input plus the new columns"));
            continue;
        }
        let over = Sp::new(format!("{} OVER ({order_clause}{frame_text})", text.value), checker.span_of(text));
        let e = match checker.parse(&over, schema) {
            Ok(e) => e,
            Err(diag) => {
                d.push(diag);
                continue;
            }
        };
        let Some(w) = window_function(&e) else {
            d.push(
                Diagnostic::error("kiln::not-a-window-function", checker.span_of(text), format!("`{}` is not one window function call", text.value))
                    .label("expected e.g. row_number(), lag(x, 1), sum(x)")
                    .help("compute expressions of window results in a following with_columns transform"),
            );
            continue;
        };
        if w.params.filter.is_some() || w.params.null_treatment.is_some() {
            d.push(Diagnostic::error("kiln::unsupported", checker.span_of(text), "FILTER and IGNORE NULLS in window calls are not supported by this version of kiln yet").label("here"));
            continue;
        }
        // Arguments DataFusion checks only when the window is planned (lag() without one, say):
        // plan this column alone, so a mistake is reported at its own string.
        let planned = datafusion::logical_expr::LogicalPlanBuilder::from(input.clone())
            .window(vec![Expr::WindowFunction(Box::new(w.clone())).alias(name.value.as_str())])
            .and_then(|b| b.build())
            .and_then(|p| checker.analyze(p));
        if let Err(e) = planned {
            d.push(checker.diagnostic(&e, &over, schema, true));
            continue;
        }
        let (function, aggregate) = match &w.fun {
            WindowFunctionDefinition::AggregateUDF(f) => (f.name().to_string(), true),
            WindowFunctionDefinition::WindowUDF(f) => (f.name().to_string(), false),
        };
        columns.push((name.value.clone(), WindowCall { function, aggregate, args: w.params.args.clone(), distinct: w.params.distinct }));
    }
    Some(Op::Window { input: t.input().value.clone(), partition_by: partition, order_by: order, frame: window_frame, columns })
}

fn window_function(e: &Expr) -> Option<&WindowFunction> {
    match e {
        Expr::WindowFunction(w) => Some(w),
        Expr::Alias(a) => window_function(&a.expr),
        _ => None,
    }
}
