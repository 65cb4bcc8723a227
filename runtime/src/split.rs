//! One input read once, its rows split by a predicate between two consumers.
//!
//! A salted join handles a side's hot-key rows and its other rows by two
//! different joins. In a plan tree each join would read the side again (a
//! second scan of 10M rows costs as much as the join saves). Instead each
//! consumer reads a [`Split`] of the same input: `keep = true` gives the rows
//! where the predicate is true, `keep = false` the others (false or NULL).
//!
//! Planned alone, a split is a filter ([`SplitExec`] without a tee). After the
//! physical optimizer, [`ShareSplits`] finds the two halves of each split
//! (same id), checks that their inputs were planned identically, and gives
//! both one input and one [`Tee`]: the first half executed for a partition
//! runs the input's partition and sends each batch's two parts to the two
//! halves. Whatever cannot be paired (a half optimized away, inputs planned
//! differently, a plan sent to Ballista, which gets plain filters: see
//! [`to_filters`]) stays a correct filter that reads its input itself.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, not, prep_null_mask_filter};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, DataFusionError, Result};
use datafusion::config::ConfigOptions;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, LogicalPlanBuilder, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::Partitioning;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The two halves of `input` split by `predicate`: (rows where it is true, the
/// others). With `spread`, the first half's batches are dealt round robin over
/// that many partitions (at least `target_partitions`) when the input has
/// fewer partitions than `target_partitions`.
pub fn split(input: LogicalPlan, predicate: Expr, spread: Option<usize>) -> (LogicalPlan, LogicalPlan) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let half = |keep, spread| LogicalPlan::Extension(Extension { node: Arc::new(Split { input: input.clone(), predicate: predicate.clone(), keep, id, spread }) });
    (half(true, spread), half(false, None))
}

/// The logical half of a split.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct Split {
    input: LogicalPlan,
    predicate: Expr,
    keep: bool,
    id: u64,
    spread: Option<usize>,
}

impl Split {
    /// The same rows as a plain filter (for plans that leave this process).
    fn to_filter(&self) -> Result<LogicalPlan> {
        let predicate = if self.keep { self.predicate.clone().is_true() } else { self.predicate.clone().is_not_true() };
        LogicalPlanBuilder::from(self.input.clone()).filter(predicate)?.build()
    }
}

impl UserDefinedLogicalNodeCore for Split {
    fn name(&self) -> &str {
        "Split"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![self.predicate.clone()]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Split #{}: {}{}", self.id, if self.keep { "" } else { "NOT " }, self.predicate)
    }

    fn with_exprs_and_inputs(&self, mut exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(Split { input: inputs.swap_remove(0), predicate: exprs.swap_remove(0), keep: self.keep, id: self.id, spread: self.spread })
    }

    /// A filter above commutes with the split.
    fn prevent_predicate_push_down_columns(&self) -> std::collections::HashSet<String> {
        Default::default()
    }

    /// The input needs the columns asked for (the predicate's are added by DataFusion).
    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        Some(vec![output_columns.to_vec()])
    }
}

/// `plan` with every split as a plain filter.
pub fn to_filters(plan: LogicalPlan) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up(|node| match &node {
            LogicalPlan::Extension(e) => match e.node.as_any().downcast_ref::<Split>() {
                Some(s) => Ok(Transformed::yes(s.to_filter()?)),
                None => Ok(Transformed::no(node)),
            },
            _ => Ok(Transformed::no(node)),
        })?
        .data)
}

/// Plans a [`Split`] as a [`SplitExec`] (a filter until [`ShareSplits`] pairs it).
pub(crate) fn plan(split: &Split, input: Arc<dyn ExecutionPlan>, session: &dyn datafusion::catalog::Session) -> Result<Arc<dyn ExecutionPlan>> {
    let predicate = session.create_physical_expr(split.predicate.clone(), split.input.schema())?;
    Ok(Arc::new(SplitExec { input, predicate, keep: split.keep, id: split.id, spread: split.spread, tee: None }))
}

/// The physical half of a split.
#[derive(Debug)]
pub struct SplitExec {
    input: Arc<dyn ExecutionPlan>,
    predicate: Arc<dyn PhysicalExpr>,
    keep: bool,
    id: u64,
    spread: Option<usize>,
    tee: Option<Arc<Tee>>,
}

impl DisplayAs for SplitExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let shared = if self.tee.is_some() { ", input shared" } else { "" };
        write!(f, "SplitExec: #{} {}{}{shared}", self.id, if self.keep { "" } else { "NOT " }, self.predicate)
    }
}

impl ExecutionPlan for SplitExec {
    fn name(&self) -> &str {
        "SplitExec"
    }

    /// A filter's: the input's partitioning and order.
    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(&self, f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        f(&self.predicate)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        // A new input is no longer the one the tee reads.
        let tee = self.tee.clone().filter(|t| Arc::ptr_eq(&t.input, &input));
        Ok(Arc::new(SplitExec { input, predicate: Arc::clone(&self.predicate), keep: self.keep, id: self.id, spread: self.spread, tee }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        match &self.tee {
            Some(tee) => tee.open(partition, self.keep, context),
            None => {
                let (predicate, keep) = (Arc::clone(&self.predicate), self.keep);
                let input = self.input.execute(partition, context)?;
                let schema = input.schema();
                let rows = futures::StreamExt::map(input, move |batch| {
                    let batch = batch?;
                    let mask = mask(&batch, predicate.as_ref())?;
                    Ok(filter_record_batch(&batch, &if keep { mask } else { not(&mask)? })?)
                });
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rows)))
            }
        }
    }
}

/// A batch's rows where `predicate` is true, and the others.
fn halves(batch: &RecordBatch, predicate: &dyn PhysicalExpr) -> Result<(RecordBatch, RecordBatch)> {
    let mask = mask(batch, predicate)?;
    Ok((filter_record_batch(batch, &mask)?, filter_record_batch(batch, &not(&mask)?)?))
}

/// Where `predicate` is true (NULL read as false).
fn mask(batch: &RecordBatch, predicate: &dyn PhysicalExpr) -> Result<datafusion::arrow::array::BooleanArray> {
    let mask = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
    Ok(match mask.as_boolean() {
        m if m.null_count() > 0 => prep_null_mask_filter(m),
        m => m.clone(),
    })
}

use crate::shared::Queue;

/// One input partition read once for both halves of a split.
#[derive(Debug)]
pub struct Tee {
    input: Arc<dyn ExecutionPlan>,
    predicate: Arc<dyn PhysicalExpr>,
    /// Per partition: the half (`keep`) that has not opened it yet, and its rows.
    waiting: Mutex<HashMap<usize, (bool, Arc<Queue>, Arc<Reader>)>>,
}

impl Tee {
    /// The `keep` half of `partition`: the first half to ask starts reading the
    /// input partition; the other gets what was put aside for it. The reader
    /// never waits long on one half while the other waits on it: a half's queue
    /// keeps what its consumer has not taken yet in memory within the pool (the
    /// shared-node budget), and spills the rest to disk (`crate::shared`).
    fn open(&self, partition: usize, keep: bool, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let schema = self.input.schema();
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((half, _, _)) = waiting.get(&partition) {
            if *half == keep {
                if let Some((_, queue, task)) = waiting.remove(&partition) {
                    return Ok(crate::shared::stream(schema, queue, task));
                }
            }
            // The same half again: a new execution of the plan; start over.
        }
        let share = 2 * self.input.properties().partitioning.partition_count().max(1);
        let (true_q, false_q) = (Queue::new(&context, &format!("SplitExec[{partition}].true"), share), Queue::new(&context, &format!("SplitExec[{partition}].false"), share));
        let input = self.input.execute(partition, context)?;
        let task = Arc::new(Reader(tokio::spawn(guarded(input, Arc::clone(&self.predicate), Arc::clone(&true_q), Arc::clone(&false_q)))));
        let (mine, theirs) = if keep { (true_q, false_q) } else { (false_q, true_q) };
        waiting.insert(partition, (!keep, theirs, Arc::clone(&task)));
        Ok(crate::shared::stream(schema, mine, task))
    }
}

/// The task reading a partition for both halves; stopped when both are dropped.
#[derive(Debug)]
struct Reader(tokio::task::JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// [`read`], with its end (or a panic, as an error: a half whose rows stopped
/// coming must not look like a half that had no more rows) given to both halves.
async fn guarded(input: SendableRecordBatchStream, predicate: Arc<dyn PhysicalExpr>, true_q: Arc<Queue>, false_q: Arc<Queue>) {
    use futures::FutureExt;
    let end = match std::panic::AssertUnwindSafe(read(input, predicate, &true_q, &false_q)).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Arc::new(e)),
        Err(panic) => {
            let what = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            Err(Arc::new(DataFusionError::Execution(format!("split: reading the input panicked: {what}"))))
        }
    };
    true_q.finish(end.clone());
    false_q.finish(end);
}

/// Reads `input` to the end (or until both halves are gone), giving each batch's halves.
async fn read(mut input: SendableRecordBatchStream, predicate: Arc<dyn PhysicalExpr>, true_q: &Queue, false_q: &Queue) -> Result<()> {
    while let Some(batch) = futures::StreamExt::next(&mut input).await {
        let (t, f) = halves(&batch?, predicate.as_ref())?;
        if t.num_rows() > 0 {
            true_q.offer(&t).await?;
        }
        if f.num_rows() > 0 {
            false_q.offer(&f).await?;
        }
        if true_q.is_closed() && false_q.is_closed() {
            return Ok(());
        }
    }
    Ok(())
}

/// Pairs the two halves of each split whose inputs were planned identically:
/// both read one input through one [`Tee`]; then spreads halves that ask for
/// it. Runs last, after every rule that could still rewrite the inputs (or
/// remove a round-robin repartition that no operator requires).
#[derive(Debug, Default)]
pub struct ShareSplits;

impl PhysicalOptimizerRule for ShareSplits {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        let cores = config.execution.target_partitions;
        let mut halves: HashMap<u64, Vec<&SplitExec>> = HashMap::new();
        plan.apply(|node| {
            if let Some(s) = node.downcast_ref::<SplitExec>() {
                halves.entry(s.id).or_default().push(s);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let shown = |p: &Arc<dyn ExecutionPlan>| datafusion::physical_plan::displayable(p.as_ref()).indent(true).to_string();
        let mut tees: HashMap<u64, Arc<Tee>> = HashMap::new();
        for (id, found) in halves {
            if let [a, b] = found.as_slice() {
                if a.keep != b.keep && shown(&a.input) == shown(&b.input) {
                    tees.insert(id, Arc::new(Tee { input: Arc::clone(&a.input), predicate: Arc::clone(&a.predicate), waiting: Mutex::default() }));
                }
            }
        }
        Ok(plan
            .transform_up(|node| {
                let Some(s) = node.downcast_ref::<SplitExec>() else { return Ok(Transformed::no(node)) };
                let mut out: Arc<dyn ExecutionPlan> = match tees.get(&s.id) {
                    Some(tee) => Arc::new(SplitExec { input: Arc::clone(&tee.input), tee: Some(Arc::clone(tee)), predicate: Arc::clone(&s.predicate), ..*s }),
                    None => Arc::clone(&node),
                };
                // Spread only where the half would leave partitions idle: dealing
                // batches costs a hop through a channel and more buffered rows.
                match s.spread {
                    Some(n) if out.properties().partitioning.partition_count() < cores => {
                        out = Arc::new(RepartitionExec::try_new(out, Partitioning::RoundRobinBatch(n.max(cores)))?);
                    }
                    _ if tees.is_empty() => return Ok(Transformed::no(node)),
                    _ => {}
                }
                Ok(Transformed::yes(out))
            })?
            .data)
    }

    fn name(&self) -> &str {
        "kiln_share_splits"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
