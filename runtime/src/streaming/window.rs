//! One micro-batch of an event-time window (SPEC §8).
//!
//! The state is the input rows of the windows still open, kept whole, so any
//! aggregate — `count_distinct` and `median` included — is computed exactly
//! as a batch run would compute it over the same rows. Spark's timing (3.4 and
//! later): batch N closes the windows that end at or before the watermark as it
//! stood when batch N began (computed from batches before N), and drops as late
//! the rows whose every window was closed by an earlier batch. A batch:
//!
//! 1. drops the new rows whose every window ends at or before `closed_us` (the
//!    watermark the previous batch closed windows at; late rows, counted);
//! 2. groups the state and the kept rows by window and keys, over the windows
//!    still open (ending after `closed_us`);
//! 3. writes, in `append` mode, the windows ending at or before `watermark_us`
//!    (the watermark as this batch began); in `update` mode, the windows the
//!    kept rows fall in, with their values so far;
//! 4. keeps as state the rows of windows ending after `watermark_us`;
//! 5. closes at `watermark_us`, and advances the watermark to the largest event
//!    time seen minus the delay (never lower).
//!
//! After its last data batch a stream runs one batch with no data (Spark's no-data
//! batch) when the watermark moved, so the windows it passed are written.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Column, JoinType, NullEquality};
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col, lit};
use datafusion::prelude::{DataFrame, SessionContext};

use crate::plan::{EventWindow, OutputMode};
use crate::transforms::event_window::{self, END, at};
use crate::{Error, Result};

/// What a window carries from one batch to the next.
#[derive(Debug, Default)]
pub struct State {
    /// Largest event time seen minus the delay, microseconds (none before the first row).
    pub watermark_us: Option<i64>,
    /// The watermark the last batch closed windows at: windows ending at or before it
    /// are written (append) and gone; rows only they hold are late.
    pub closed_us: Option<i64>,
    /// Input rows of the windows still open.
    pub rows: Vec<RecordBatch>,
}

/// One batch's result.
pub struct Step {
    pub output: Vec<RecordBatch>,
    pub output_schema: SchemaRef,
    pub state: State,
    pub rows_in: u64,
    pub late_rows: u64,
    pub rows_out: u64,
    pub state_rows: u64,
}

fn rows(batches: &[RecordBatch]) -> u64 {
    batches.iter().map(|b| b.num_rows() as u64).sum()
}

async fn collect(ctx: &SessionContext, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
    Ok(DataFrame::new(ctx.state(), plan).collect().await?)
}

/// Runs window `node` over `new` (rows of its input `input`, whose schema is
/// `schema`), from `state`.
pub async fn step(ctx: &SessionContext, node: &str, input: &str, w: &EventWindow, schema: SchemaRef, new: Vec<RecordBatch>, state: State) -> Result<Step> {
    let table = |batches: Vec<RecordBatch>| -> Result<LogicalPlan> {
        let mem = MemTable::try_new(schema.clone(), vec![batches])?;
        Ok(LogicalPlanBuilder::scan(input, provider_as_source(Arc::new(mem)), None)?.build()?)
    };
    let rows_in = rows(&new);
    let new_plan = table(new.clone())?;
    let time = event_window::time(new_plan.schema(), w);
    let last_end = event_window::last_end(new_plan.schema(), w);

    // 1. Late rows: every window they fall in closed before this batch. (Rows with
    // no time fall in no window; they are not late, and not kept either.)
    let kept = match state.closed_us {
        Some(wm) => collect(ctx, LogicalPlanBuilder::from(new_plan.clone()).filter(time.clone().is_null().or(last_end.clone().gt(at(wm))))?.build()?).await?,
        None => new,
    };
    let late_rows = rows_in - rows(&kept);

    // 5 (computed now, used from the next batch on). The watermark: the largest event
    // time of this batch (late rows included, as Spark's) minus the delay, never lower.
    let max = collect(ctx, LogicalPlanBuilder::from(new_plan).aggregate(Vec::<Expr>::new(), vec![datafusion::functions_aggregate::expr_fn::max(time.clone()).alias("m")])?.build()?).await?;
    let max_us = max.first().and_then(|b| {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::datatypes::TimestampMicrosecondType;
        let a = b.column(0).as_primitive_opt::<TimestampMicrosecondType>()?;
        (a.len() == 1 && a.is_valid(0)).then(|| a.value(0))
    });
    let watermark_us = match (state.watermark_us, max_us) {
        (prev, Some(m)) => Some(prev.unwrap_or(i64::MIN).max(m.saturating_sub(w.watermark_us))),
        (prev, None) => prev,
    };

    // 2. Every open window's rows, grouped.
    let mut all = state.rows;
    all.extend(kept.iter().cloned());
    let all_plan = table(all)?;
    let open_since = |plan: LogicalPlan| -> Result<LogicalPlan> {
        Ok(match state.closed_us {
            Some(wm) => LogicalPlanBuilder::from(plan).filter(col(END).gt(at(wm)))?.build()?,
            None => plan,
        })
    };
    let grouped = event_window::aggregate(node, open_since(event_window::expand(all_plan.clone(), w)?)?, w)?;

    // 3. What this batch writes: it closes windows at the watermark it began with.
    let closes_at = state.watermark_us;
    let output_plan = match w.output_mode {
        OutputMode::Append => {
            let closed = match closes_at {
                Some(wm) => col(END).lt_eq(at(wm)),
                None => lit(false),
            };
            LogicalPlanBuilder::from(grouped).filter(closed)?.build()?
        }
        OutputMode::Update => {
            // The windows (and keys) the kept rows fall in: a group-by without aggregates.
            let keys_only = EventWindow { aggregates: Vec::new(), ..w.clone() };
            let touched = event_window::aggregate(node, open_since(event_window::expand(table(kept)?, w)?)?, &keys_only)?;
            let names: Vec<String> = touched.schema().fields().iter().map(|f| f.name().clone()).collect();
            let on = |side: &str| names.iter().map(|n| Column::new(Some(side), n)).collect::<Vec<_>>();
            let grouped = LogicalPlanBuilder::from(grouped).alias("grouped")?.build()?;
            let touched = LogicalPlanBuilder::from(touched).alias("touched")?.build()?;
            LogicalPlanBuilder::from(grouped)
                .join_detailed(touched, JoinType::LeftSemi, (on("grouped"), on("touched")), None, NullEquality::NullEqualsNull)?
                .build()?
        }
    };
    let output_schema = Arc::new(output_plan.schema().as_arrow().clone());
    let output = collect(ctx, output_plan).await?;

    // 4. Rows some window still open after this batch holds.
    let state_rows = match closes_at {
        Some(wm) => collect(ctx, LogicalPlanBuilder::from(all_plan).filter(last_end.gt(at(wm)))?.build()?).await?,
        None => collect(ctx, LogicalPlanBuilder::from(all_plan).filter(time.is_not_null())?.build()?).await?,
    };
    let rows_out = rows(&output);
    let n_state = rows(&state_rows);
    if output.iter().any(|b| b.schema().fields().len() != output_schema.fields().len()) {
        return Err(Error::Usage(format!("window `{node}`: output batches disagree with the plan's schema")));
    }
    let closed_us = closes_at.or(state.closed_us);
    Ok(Step { output, output_schema, state: State { watermark_us, closed_us, rows: state_rows }, rows_in, late_rows, rows_out, state_rows: n_state })
}
