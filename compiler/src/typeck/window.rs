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

/// Lowering a `window` with `time_column` (SPEC §8): the time column must be a
/// timestamp, durations positive (`slide` at most `size`, as Spark's), keys are
/// expressions of the input, each column one aggregate (or an expression of
/// aggregates), checked as an `aggregate` transform's.
#[allow(clippy::too_many_arguments)]
pub(super) fn lower_event(
    t: &TransformDecl,
    input: &LogicalPlan,
    time_column: &Sp<String>,
    (size, slide, watermark): (&Sp<String>, Option<&Sp<String>>, Option<&Sp<String>>),
    output_mode: Option<&Sp<String>>,
    partition_by: &[Sp<String>],
    items: &[(Sp<String>, Sp<String>)],
    checker: &ExprChecker,
    d: &mut Diags,
) -> Option<kiln::plan::EventWindow> {
    use datafusion::arrow::datatypes::DataType;
    let schema = input.schema().as_ref();
    let columns = schema_names(input.schema().inner());
    let before = d.0.len();
    match schema.field_with_unqualified_name(&time_column.value).map(|f| f.data_type().clone()) {
        Err(_) => d.push(super::lower::unknown_column(&time_column.value, &time_column.span, &columns)),
        Ok(DataType::Timestamp(_, _)) => {}
        Ok(other) => d.push(
            Diagnostic::error("kiln::type-mismatch", time_column.span.clone(), format!("`time_column` `{}` is {}, not a timestamp", time_column.value, crate::spec::types::display(&other)))
                .label("event time must be a timestamp")
                .help("cast it first, e.g. a with_columns transform with `to_timestamp(ts)`"),
        ),
    }
    let duration = |text: &Sp<String>, what: &str, zero_ok: bool, d: &mut Diags| -> Option<i64> {
        match kiln::plan::parse_duration_us(&text.value) {
            Some(us) if us > 0 || (zero_ok && us == 0) => Some(us),
            _ => {
                d.push(
                    Diagnostic::error("kiln::bad-value", text.span.clone(), format!("{}: `{what}` = \"{}\" is not a {}duration", t.name.value, text.value, if zero_ok { "" } else { "positive " }))
                        .label("not a duration")
                        .help("a number and a unit: \"500ms\", \"10s\", \"5m\", \"1h\", \"1d\""),
                );
                None
            }
        }
    };
    let size_us = duration(size, if slide.is_some() { "hop.size" } else { "tumble" }, false, d);
    let slide_us = match slide {
        Some(s) => duration(s, "hop.slide", false, d),
        None => size_us,
    };
    if let (Some(size_us), Some(slide_us), Some(s)) = (size_us, slide_us, slide) {
        if slide_us > size_us {
            d.push(
                Diagnostic::error("kiln::bad-value", s.span.clone(), format!("{}: the slide ({}) is longer than the window ({})", t.name.value, s.value, size.value))
                    .label("rows between windows would belong to none")
                    .help("a slide at most the size; equal to it is a tumbling window"),
            );
        }
    }
    let watermark_us = match watermark {
        Some(w) => duration(w, "watermark", true, d),
        None => Some(0),
    };
    let mut outputs: HashSet<String> = ["window_start".to_string(), "window_end".to_string()].into();
    let mut keys = Vec::new();
    for k in partition_by {
        let Ok(e) = checker.parse(k, schema).map_err(|e| d.push(e)) else { continue };
        let out = match &e {
            Expr::Column(c) => c.name.clone(),
            Expr::Alias(a) => a.name.clone(),
            _ => k.value.clone(),
        };
        if !outputs.insert(out.clone()) {
            d.push(duplicate_output(&out, &k.span));
        }
        keys.push(match e {
            Expr::Alias(_) => e,
            Expr::Column(c) => Expr::Column(c),
            e => e.alias(out),
        });
    }
    let mut aggregates = Vec::new();
    for (out, text) in items {
        if !outputs.insert(out.value.clone()) {
            d.push(duplicate_output(&out.value, &out.span).note("a window's output is window_start, window_end, the partition_by columns and the columns"));
            continue;
        }
        let help = "an event-time window aggregates the rows of each window; compute row expressions before it";
        if let Some(e) = super::lower::aggregate_column(&t.name.value, out, text, input, &keys, checker, help, d) {
            aggregates.push(e);
        }
    }
    if d.0.iter().skip(before).any(|x| x.is_error()) {
        return None;
    }
    Some(kiln::plan::EventWindow {
        time_column: time_column.value.clone(),
        size_us: size_us?,
        slide_us: slide_us?,
        watermark_us: watermark_us?,
        keys,
        aggregates,
        output_mode: match output_mode.map(|m| m.as_str()) {
            Some("update") => kiln::plan::OutputMode::Update,
            _ => kiln::plan::OutputMode::Append,
        },
    })
}
