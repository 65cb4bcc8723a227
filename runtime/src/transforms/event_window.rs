//! Event-time windows (SPEC §8): each row is placed in the windows its time
//! column falls in — `[start, start + size)`, starts every `slide` from the Unix
//! epoch, as Spark's `window()` — then grouped by window and keys.
//!
//! A batch run groups every row (Spark's batch `window()` ignores watermarks);
//! the streaming driver (`crate::streaming`) uses the same two steps with the
//! watermark's filters between them.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast, col};

use crate::plan::{EventWindow, Op};
use crate::{Error, Result};

/// The window-bound columns each windowed row gets.
pub const START: &str = "window_start";
pub const END: &str = "window_end";

fn interval(us: i64) -> Expr {
    Expr::Literal(ScalarValue::new_interval_mdn(0, 0, us.saturating_mul(1000)), None)
}

/// The time column as a UTC timestamp in microseconds without a time zone (the
/// type of `window_start`/`window_end`): windows are aligned to the epoch in UTC,
/// as Spark's, whatever the column's unit and zone.
pub fn time(schema: &DFSchema, w: &EventWindow) -> Expr {
    let c = col(datafusion::common::Column::from_name(&w.time_column));
    let naive = DataType::Timestamp(TimeUnit::Microsecond, None);
    match schema.field_with_unqualified_name(&w.time_column).map(|f| f.data_type().clone()) {
        Ok(DataType::Timestamp(TimeUnit::Microsecond, None)) => c,
        Ok(DataType::Timestamp(unit, Some(_))) => cast(cast(c, DataType::Timestamp(unit, Some("UTC".into()))), naive),
        _ => cast(c, naive),
    }
}

/// A point in time as a literal of [`time`]'s type.
pub fn at(us: i64) -> Expr {
    Expr::Literal(ScalarValue::TimestampMicrosecond(Some(us), None), None)
}

/// The start of the latest window a row at `t` falls in.
fn latest_start(w: &EventWindow, t: Expr) -> Expr {
    // date_bin computes in nanoseconds; the bounds are microseconds, as the time is.
    cast(datafusion::functions::datetime::expr_fn::date_bin(interval(w.slide_us), t, at(0)), DataType::Timestamp(TimeUnit::Microsecond, None))
}

/// Where the last window holding a row ends: once the watermark reaches it, the
/// row belongs to no open window.
pub fn last_end(schema: &DFSchema, w: &EventWindow) -> Expr {
    latest_start(w, time(schema, w)) + interval(w.size_us)
}

/// `input`'s columns plus `window_start` and `window_end`, one row per window a
/// row falls in (one for tumbling windows, up to ⌈size/slide⌉ for hopping ones).
pub fn expand(input: LogicalPlan, w: &EventWindow) -> Result<LogicalPlan> {
    if w.size_us <= 0 || w.slide_us <= 0 {
        return Err(Error::Usage("a window's size and slide must be positive".into()));
    }
    let t = time(input.schema(), w);
    let base = LogicalPlanBuilder::from(input).filter(t.clone().is_not_null())?.build()?;
    let columns: Vec<Expr> = base.schema().columns().into_iter().map(col).collect();
    let copies = (w.size_us + w.slide_us - 1) / w.slide_us;
    let mut plans = Vec::new();
    for k in 0..copies {
        let start = latest_start(w, t.clone()) - interval(k * w.slide_us);
        let mut exprs = columns.clone();
        exprs.push(start.clone().alias(START));
        exprs.push((start + interval(w.size_us)).alias(END));
        let mut b = LogicalPlanBuilder::from(base.clone()).project(exprs)?;
        if k > 0 {
            // An earlier window holds the row only if it has not ended by then.
            b = b.filter(t.clone().lt(col(END)))?;
        }
        plans.push(b.build()?);
    }
    let mut plans = plans.into_iter();
    let mut b = LogicalPlanBuilder::from(plans.next().expect("at least one window"));
    for p in plans {
        b = b.union(p)?;
    }
    Ok(b.build()?)
}

/// Windowed rows (from [`expand`]) grouped by window and keys: `window_start`,
/// `window_end`, the keys, the aggregates.
pub fn aggregate(name: &str, expanded: LogicalPlan, w: &EventWindow) -> Result<LogicalPlan> {
    let mut group_by = vec![col(START), col(END)];
    group_by.extend(w.keys.iter().cloned());
    let op = Op::Aggregate { input: String::new(), group_by, aggregates: w.aggregates.clone(), having: None };
    super::build_unaliased(name, &op, &[expanded])
}

/// A batch run's event-time window: every row in every window it falls in.
pub fn build(name: &str, input: LogicalPlan, w: &EventWindow) -> Result<LogicalPlan> {
    aggregate(name, expand(input, w)?, w)
}
