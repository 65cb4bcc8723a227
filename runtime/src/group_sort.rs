//! A window's input sorted within each PARTITION BY group only.
//!
//! DataFusion sorts a window's input by (partition keys, order keys): a sort of
//! the whole input, each batch sorted on its own then all merged in row format
//! (the windows job: 10M transactions by customer, date and id, ~30% of its
//! CPU in memcmp, comparators and the merge's loser tree). The window needs
//! less: each group's rows together and in order; which group comes first does
//! not matter (it finds groups by comparing adjacent rows). [`GroupSortExec`]
//! gives it that, as DuckDB does (it hash-partitions a window's input, then
//! sorts each partition): it scatters each input batch into 64 buckets by the
//! key hash's top bits, then sorts bucket after bucket — by hash (integers),
//! then each run of one hash by the order columns (keys are compared only to
//! tell two keys sharing a hash apart) — sorts of a few MB in cache, no merge,
//! emitting each bucket's rows as it goes. (Gathering each bucket's rows from the whole
//! input at the end instead was DRAM-bound: memmove and `interleave_bytes`
//! took 37% of the windows job.)
//!
//! Where the window's functions all partition by the sort's keys (one window
//! node, as DataFusion plans them), the node replaces the window as well
//! (`GroupWindowExec` in plans): each sorted bucket comes with its groups' row
//! ranges, and each function is evaluated over each group as DataFusion's
//! `WindowAggExec` evaluates it over each partition of its whole sorted input
//! (`WindowExpr::evaluate`, a whole partition at once: `evaluate_all`).
//! A bucket holds whole groups, so this is exact. `BoundedWindowAggExec`, fed
//! the bucket in 8,192-row batches instead, looks each group up by its key as
//! `ScalarValue`s, buffers and slices it, and calls a streaming function row by
//! row into `ScalarValue`s: ~12% of the windows job's CPU at 10M rows.
//!
//! The output is not sorted by the keys across groups, but the node claims the
//! sort's ordering, which the window's partition search needs to be planned.
//! So [`rewrite`] replaces a window's sort only where nothing can use that
//! claim: the plan is a file sink's (its root a `DataSinkExec` with no sort
//! order: the writer is the last consumer), the window's output reaches that
//! writer through projections, filters, partition merges and repartitioning
//! alone, and the logical plan has no sort at all (a `sort` transform, or
//! SQL's ORDER BY, that the window's ordering made DataFusion drop would
//! otherwise no longer hold). A window read by several sinks (a `SharedExec`)
//! keeps its sort: its other readers were planned separately. So do plans
//! planned for a scan inside another plan (delta-rs' merge source, which a
//! sort-merge join above could read in the claimed order), sinks that stream
//! batches (Avro, ORC, Kafka, Delta), `EXPLAIN` and cluster plans.
//!
//! The batches read are reserved from the memory pool; when it refuses, the
//! node falls back to DataFusion's `SortExec` over what it read and the rest,
//! which spills (and the window node it replaced, over that sort). Not
//! reserved: a bucket's sorted copy while it is emitted (about twice the
//! bucket, plus the window's columns; with one key holding most rows, most of
//! the input).

use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array, make_comparator};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::compute::{concat, concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::Result;
use datafusion::common::hash_utils::create_hashes;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, Partitioning, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, replace_children_if_necessary};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_expr::window::WindowExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties};
use futures::{StreamExt, TryStreamExt};

use crate::key_buckets::evaluate;

/// Sorts each partition of its input within groups of equal keys (the first
/// `keys` expressions of `ordering`); groups come in hash order. With a
/// window, also computes the window's functions over each group (its output
/// is the window's).
#[derive(Debug)]
pub struct GroupSortExec {
    input: Arc<dyn ExecutionPlan>,
    ordering: LexOrdering,
    keys: usize,
    window: Option<Arc<GroupWindow>>,
    /// The replaced sort's (or window's) properties (see the module's doc).
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    fallbacks: Fallbacks,
}

impl GroupSortExec {
    fn new(input: Arc<dyn ExecutionPlan>, ordering: LexOrdering, keys: usize, window: Option<Arc<GroupWindow>>, properties: Arc<PlanProperties>) -> Self {
        GroupSortExec { input, ordering, keys, window, properties, metrics: ExecutionPlanMetricsSet::new(), fallbacks: Fallbacks::default() }
    }
}

/// A window node's functions, computed group by group over each sorted bucket
/// as DataFusion's `WindowAggExec` computes them over each partition of its
/// whole sorted input (`WindowExpr::evaluate` of the partition's rows).
#[derive(Debug)]
pub(crate) struct GroupWindow {
    exprs: Vec<Arc<dyn WindowExpr>>,
    /// The window node's output: its input's columns, then one per function.
    schema: SchemaRef,
    /// The window node itself (over the sort it replaced), run over
    /// `SortExec`'s output when the memory pool refuses the group sort.
    node: Arc<dyn ExecutionPlan>,
}

impl GroupWindow {
    /// `sorted` (one bucket, in groups) with the window's columns; `groups`
    /// are its groups' row ranges.
    fn compute(&self, sorted: RecordBatch, groups: &[Range<usize>]) -> Result<RecordBatch> {
        let mut results: Vec<Vec<ArrayRef>> = self.exprs.iter().map(|_| Vec::with_capacity(groups.len())).collect();
        for group in groups {
            let rows = sorted.slice(group.start, group.len());
            for (expr, result) in self.exprs.iter().zip(&mut results) {
                result.push(expr.evaluate(&rows)?);
            }
        }
        let mut columns = sorted.columns().to_vec();
        for arrays in results {
            columns.push(concat(&arrays.iter().map(|a| a.as_ref()).collect::<Vec<_>>())?);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

impl DisplayAs for GroupSortExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let exprs: Vec<String> = self.ordering.iter().map(|s| s.to_string()).collect();
        let (keys, order) = exprs.split_at(self.keys);
        write!(f, "{}: groups=[{}], each by [{}]", self.name(), keys.join(", "), order.join(", "))?;
        if let Some(w) = &self.window {
            let names: Vec<&str> = w.exprs.iter().map(|e| e.name()).collect();
            write!(f, ", window=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for GroupSortExec {
    fn name(&self) -> &str {
        if self.window.is_some() { "GroupWindowExec" } else { "GroupSortExec" }
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(&self, f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        for s in self.ordering.iter() {
            if f(&s.expr)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(with_fallbacks(self.metrics.clone_inner(), &self.fallbacks))
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(GroupSortExec::new(children.swap_remove(0), self.ordering.clone(), self.keys, self.window.clone(), Arc::clone(&self.properties))))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let sorted = group_sorted(input, self.ordering.clone(), self.keys, self.window.clone(), context, baseline, Arc::clone(&self.fallbacks));
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), futures::stream::once(sorted).try_flatten())))
    }
}

/// Buckets rows are scattered into, by their key hash's top bits: at 5M rows
/// per partition, ~80,000 rows (a few MB) each, sorted while in cache.
const BUCKET_BITS: u32 = 6;

/// Reads `input` into buckets by key hash, then yields bucket after bucket,
/// each sorted by (key hash, keys, order) and with `window`'s columns; or, when
/// the memory pool refuses, everything sorted by `SortExec` (and the window
/// node over that).
async fn group_sorted(
    mut input: SendableRecordBatchStream,
    ordering: LexOrdering,
    keys: usize,
    window: Option<Arc<GroupWindow>>,
    context: Arc<TaskContext>,
    baseline: BaselineMetrics,
    fallbacks: Fallbacks,
) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
    let schema = input.schema();
    let reservation = MemoryConsumer::new("GroupSortExec").with_can_spill(true).register(context.memory_pool());
    let key_exprs: Vec<Arc<dyn PhysicalExpr>> = ordering.iter().take(keys).map(|s| Arc::clone(&s.expr)).collect();
    let state = crate::key_buckets::hash_state();
    let mut buckets: Vec<Vec<RecordBatch>> = (0..1 << BUCKET_BITS).map(|_| Vec::new()).collect();
    let mut indices: Vec<Vec<u32>> = (0..1 << BUCKET_BITS).map(|_| Vec::new()).collect();
    // Each bucket's rows' key hashes, in the order of its pieces' rows.
    let mut bucket_hashes: Vec<Vec<u64>> = (0..1 << BUCKET_BITS).map(|_| Vec::new()).collect();
    let (mut hashes, mut bytes, mut rows_read) = (Vec::<u64>::new(), 0usize, 0usize);
    while let Some(batch) = input.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        let _timer = baseline.elapsed_compute().timer();
        // Counted as the batch it was: pieces of string-view columns share its buffers.
        bytes += batch.get_array_memory_size() + batch.num_rows() * std::mem::size_of::<u64>();
        rows_read += batch.num_rows();
        hashes.clear();
        hashes.resize(batch.num_rows(), 0);
        create_hashes(&evaluate(&key_exprs, &batch)?, &state, &mut hashes)?;
        for (row, &hash) in hashes.iter().enumerate() {
            let b = (hash >> (64 - BUCKET_BITS)) as usize;
            indices[b].push(row as u32);
            bucket_hashes[b].push(hash);
        }
        for (bucket, rows) in buckets.iter_mut().zip(indices.iter_mut()) {
            if rows.is_empty() {
                continue;
            }
            bucket.push(take_record_batch(&batch, &UInt32Array::from(std::mem::take(rows)))?);
        }
        if reservation.try_resize(bytes).is_err() {
            reservation.free();
            // One batch per bucket, not its pieces: SortExec sorts and merges one run per batch.
            let read = buckets.into_iter().filter(|b| !b.is_empty()).map(|pieces| concat_batches(&schema, &pieces).map_err(Into::into));
            let all = futures::stream::iter(read.collect::<Vec<_>>()).chain(input);
            let ordering_for_window = ordering.clone();
            let sorted = sort_stream(Box::pin(RecordBatchStreamAdapter::new(schema, all)), ordering, Arc::clone(&context), &fallbacks)?;
            return Ok(match window {
                Some(w) => {
                    let sorted = Arc::new(OnceExec::new(sorted).sorted_by(ordering_for_window));
                    replace_children_if_necessary(Arc::clone(&w.node), vec![sorted])?.execute(0, context)?.boxed()
                }
                None => sorted.boxed(),
            });
        }
    }
    // The order columns in row format (the keys are compared only where two share a hash).
    let order_fields = ordering.iter().skip(keys).map(|s| Ok(SortField::new_with_options(s.expr.data_type(&schema)?, s.options))).collect::<Result<Vec<_>>>()?;
    let converter = if order_fields.is_empty() { None } else { Some(RowConverter::new(order_fields)?) };
    let batch_size = context.session_config().batch_size().max(1);
    let sorted = buckets.into_iter().zip(bucket_hashes).filter(|(b, _)| !b.is_empty()).map(move |(pieces, hashes)| -> Result<Vec<RecordBatch>> {
        let _timer = baseline.elapsed_compute().timer();
        let batch = concat_batches(&schema, &pieces)?;
        drop(pieces);
        // The bucket's share of what was read is released (its sorted copy is the reader's now).
        let share = (bytes as u128 * batch.num_rows() as u128 / rows_read.max(1) as u128) as usize;
        reservation.shrink(share.min(reservation.size()));
        let (sorted, groups) = sort_bucket(&batch, &hashes, &ordering, keys, converter.as_ref())?;
        drop((batch, hashes));
        let sorted = match &window {
            Some(w) => w.compute(sorted, &groups)?,
            None => sorted,
        };
        let n = sorted.num_rows();
        baseline.record_output(n);
        Ok((0..n).step_by(batch_size).map(|start| sorted.slice(start, batch_size.min(n - start))).collect())
    });
    Ok(futures::stream::iter(sorted).map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok))).try_flatten().boxed())
}

/// `batch` (whose rows' key hashes are `hashes`) in groups of equal keys, the
/// groups in hash order, each group's rows by the order columns; and the
/// groups' row ranges. Sorted by hash first (integers, in cache), then each run
/// of equal hashes by the order columns' rows; a run's keys are compared only
/// to check that they are one key (two keys sharing a 64-bit hash are sorted by
/// key first).
fn sort_bucket(batch: &RecordBatch, hashes: &[u64], ordering: &LexOrdering, keys: usize, converter: Option<&RowConverter>) -> Result<(RecordBatch, Vec<Range<usize>>)> {
    let n = batch.num_rows();
    let mut by_hash: Vec<(u64, u32)> = hashes.iter().zip(0u32..).map(|(&h, i)| (h, i)).collect();
    by_hash.sort_unstable_by_key(|&(h, _)| h);
    let columns = evaluate(&ordering.iter().map(|s| Arc::clone(&s.expr)).collect::<Vec<_>>(), batch)?;
    let (key_columns, order_columns) = columns.split_at(keys);
    let rows = converter.map(|c| c.convert_columns(order_columns)).transpose()?;
    let by_order = |a: &(u64, u32), b: &(u64, u32)| rows.as_ref().map_or(Ordering::Equal, |r| r.row(a.1 as usize).cmp(&r.row(b.1 as usize)));
    let comparators = key_columns.iter().map(|c| make_comparator(c.as_ref(), c.as_ref(), SortOptions::default())).collect::<std::result::Result<Vec<_>, _>>()?;
    let by_key = |a: usize, b: usize| comparators.iter().map(|c| c(a, b)).find(|o| o.is_ne()).unwrap_or(Ordering::Equal);
    let (mut start, mut groups) = (0, Vec::new());
    while start < n {
        let hash = by_hash[start].0;
        let end = start + by_hash[start..].iter().position(|&(h, _)| h != hash).unwrap_or(n - start);
        let run = &mut by_hash[start..end];
        let first = run[0].1 as usize;
        // A run of one row (nearly unique keys: most runs) is its own group, with nothing to compare.
        if run.len() == 1 || run.iter().all(|&(_, i)| by_key(first, i as usize).is_eq()) {
            run.sort_unstable_by(by_order);
            groups.push(start..end);
        } else {
            run.sort_unstable_by(|a, b| by_key(a.1 as usize, b.1 as usize).then_with(|| by_order(a, b)));
            let mut group = start;
            for i in start + 1..end {
                if by_key(by_hash[i - 1].1 as usize, by_hash[i].1 as usize).is_ne() {
                    groups.push(group..i);
                    group = i;
                }
            }
            groups.push(group..end);
        }
        start = end;
    }
    let sorted = take_record_batch(batch, &UInt32Array::from_iter_values(by_hash.iter().map(|&(_, i)| i)))?;
    Ok((sorted, groups))
}

/// Replaces the sorts of windows whose output order nothing uses (see the
/// module's doc) in a file sink's plan. `logical` is the plan `physical` was planned from.
pub fn rewrite(logical: &LogicalPlan, physical: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let mut sorts = false;
    logical.apply(|p| {
        sorts |= matches!(p, LogicalPlan::Sort(_));
        Ok(if sorts { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    })?;
    // Only a file sink's plan, whose writer is the final consumer: a plan planned
    // for a scan inside another (delta-rs' merge source) may be optimized again
    // above, where a sort-merge join could take the claimed order at its word.
    let to_file = physical.downcast_ref::<DataSinkExec>().is_some_and(|w| w.sort_order().is_none());
    if sorts || !to_file {
        return Ok(physical);
    }
    order_free(physical)
}

/// `node`'s output order is used by nothing above it.
fn order_free(node: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(new) = window_without_sort(&node)? {
        return Ok(new);
    }
    let passes = node.downcast_ref::<ProjectionExec>().is_some()
        || node.downcast_ref::<FilterExec>().is_some()
        || node.downcast_ref::<CoalescePartitionsExec>().is_some()
        || node.downcast_ref::<crate::node_metrics::NodeMetricsExec>().is_some()
        || node.downcast_ref::<RepartitionExec>().is_some_and(|r| !r.preserve_order())
        || node.downcast_ref::<DataSinkExec>().is_some_and(|w| w.sort_order().is_none());
    if !passes {
        return Ok(node);
    }
    let children: Vec<Arc<dyn ExecutionPlan>> = node.children().into_iter().cloned().map(order_free).collect::<Result<_>>()?;
    replace_children_if_necessary(node, children)
}

/// A window over a sort by (its partition keys, its order): the same window
/// over a [`GroupSortExec`].
fn window_without_sort(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let (input, window_exprs) = if let Some(w) = node.downcast_ref::<BoundedWindowAggExec>() {
        (w.input(), w.window_expr())
    } else if let Some(w) = node.downcast_ref::<WindowAggExec>() {
        (w.input(), w.window_expr())
    } else {
        return Ok(None);
    };
    let Some(sort) = input.downcast_ref::<SortExec>() else { return Ok(None) };
    let Some(partition_by) = window_exprs.first().map(|w| w.partition_by()) else { return Ok(None) };
    let keys = partition_by.len();
    let one_partition = sort.input().output_partitioning().partition_count() == 1;
    let exprs = sort.expr();
    let leading_keys = exprs.len() >= keys && exprs.iter().take(keys).all(|s| partition_by.iter().any(|p| p.eq(&s.expr)));
    if keys == 0 || !leading_keys || sort.fetch().is_some() || !(sort.preserve_partitioning() || one_partition) {
        return Ok(None);
    }
    // Every function partitioned by the same keys (as DataFusion plans one window node).
    let same_keys = window_exprs.iter().all(|w| w.partition_by().len() == keys && w.partition_by().iter().all(|p| partition_by.iter().any(|q| q.eq(p))));
    if !same_keys {
        let group_sort = GroupSortExec::new(Arc::clone(sort.input()), exprs.clone(), keys, None, Arc::clone(sort.properties()));
        return Ok(Some(replace_children_if_necessary(Arc::clone(node), vec![Arc::new(group_sort)])?));
    }
    let window = GroupWindow { exprs: window_exprs.to_vec(), schema: node.schema(), node: Arc::clone(node) };
    let group_window = GroupSortExec::new(Arc::clone(sort.input()), exprs.clone(), keys, Some(Arc::new(window)), Arc::clone(node.properties()));
    Ok(Some(Arc::new(group_window)))
}

/// The sorts a node fell back to: their metrics (spills) are reported as the node's.
pub(crate) type Fallbacks = Arc<Mutex<Vec<Arc<dyn ExecutionPlan>>>>;

/// `set` plus the metrics of the sorts in `fallbacks`.
pub(crate) fn with_fallbacks(mut set: MetricsSet, fallbacks: &Fallbacks) -> MetricsSet {
    for sort in fallbacks.lock().map(|f| f.clone()).unwrap_or_default() {
        for metric in sort.metrics().iter().flat_map(|m| m.iter().cloned().collect::<Vec<_>>()) {
            set.push(metric);
        }
    }
    set
}

/// `input` sorted by `ordering`, by DataFusion's `SortExec` (which spills),
/// recorded in `fallbacks`.
pub(crate) fn sort_stream(input: SendableRecordBatchStream, ordering: LexOrdering, context: Arc<TaskContext>, fallbacks: &Fallbacks) -> Result<SendableRecordBatchStream> {
    let source = Arc::new(OnceExec::new(input));
    let sort: Arc<dyn ExecutionPlan> = Arc::new(SortExec::new(ordering, source));
    if let Ok(mut f) = fallbacks.lock() {
        f.push(Arc::clone(&sort));
    }
    sort.execute(0, context)
}

/// A plan node that yields one given stream, once (to run `SortExec` over it).
struct OnceExec {
    stream: Mutex<Option<SendableRecordBatchStream>>,
    properties: Arc<PlanProperties>,
}

impl OnceExec {
    fn new(stream: SendableRecordBatchStream) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(stream.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        OnceExec { stream: Mutex::new(Some(stream)), properties }
    }

    /// Declares the stream sorted by `ordering` (for a window node over it).
    fn sorted_by(self, ordering: LexOrdering) -> Self {
        let properties = PlanProperties::clone(&self.properties);
        let equivalences = EquivalenceProperties::new_with_orderings(self.properties.eq_properties.schema().clone(), [ordering]);
        OnceExec { properties: Arc::new(properties.with_eq_properties(equivalences)), ..self }
    }
}

impl fmt::Debug for OnceExec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("OnceExec")
    }
}

impl DisplayAs for OnceExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "OnceExec")
    }
}

impl ExecutionPlan for OnceExec {
    fn name(&self) -> &str {
        "OnceExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let taken = self.stream.lock().map_err(|_| datafusion::error::DataFusionError::Internal("poisoned".into()))?.take();
        taken.ok_or_else(|| datafusion::error::DataFusionError::Internal("OnceExec executed twice".into()))
    }
}



#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::compute::SortOptions;
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::physical_expr::PhysicalSortExpr;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::prelude::SessionContext;

    type Row = (Option<String>, Option<i64>, i64);

    /// (key, v, id) rows through `group_sorted` by key, then v DESC NULLS LAST, then id;
    /// `pool_bytes` limits the memory pool. Returns the rows in output order.
    fn group_sort(rows: &[Row], batch: usize, pool_bytes: Option<usize>) -> Vec<Row> {
        group_sort_in(rows, batch, pool_bytes).0
    }

    /// Also the metrics of the `SortExec` it fell back to, if it did.
    fn group_sort_in(rows: &[Row], batch: usize, pool_bytes: Option<usize>) -> (Vec<Row>, Option<MetricsSet>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
            Field::new("id", DataType::Int64, false),
        ]));
        let batches: Vec<Result<RecordBatch>> = rows
            .chunks(batch)
            .map(|c| {
                let k = StringArray::from(c.iter().map(|r| r.0.clone()).collect::<Vec<_>>());
                let v = Int64Array::from(c.iter().map(|r| r.1).collect::<Vec<_>>());
                let id = Int64Array::from(c.iter().map(|r| r.2).collect::<Vec<_>>());
                Ok(RecordBatch::try_new(schema.clone(), vec![Arc::new(k), Arc::new(v), Arc::new(id)]).unwrap())
            })
            .collect();
        let input: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(schema.clone(), futures::stream::iter(batches)));
        let ordering = LexOrdering::new(vec![
            PhysicalSortExpr::new_default(Arc::new(Column::new("k", 0))),
            PhysicalSortExpr::new(Arc::new(Column::new("v", 1)), SortOptions { descending: true, nulls_first: false }),
            PhysicalSortExpr::new_default(Arc::new(Column::new("id", 2))),
        ])
        .unwrap();
        let mut config = datafusion::prelude::SessionConfig::new().with_batch_size(4);
        config.options_mut().execution.sort_spill_reservation_bytes = 64 * 1024;
        let mut context = TaskContext::default().with_session_config(config);
        if let Some(bytes) = pool_bytes {
            let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new().with_memory_limit(bytes, 1.0).build_arc().unwrap();
            context = context.with_runtime(runtime);
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let fallbacks = Fallbacks::default();
        let out: Vec<RecordBatch> = rt.block_on(async {
            let baseline = BaselineMetrics::new(&ExecutionPlanMetricsSet::new(), 0);
            let stream = group_sorted(input, ordering, 1, None, Arc::new(context), baseline, Arc::clone(&fallbacks)).await.unwrap();
            stream.map(|b| b.unwrap()).collect().await
        });
        let fell_back = !fallbacks.lock().unwrap().is_empty();
        let got = out
            .iter()
            .flat_map(|b| {
                let k = b.column(0).as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect::<Vec<_>>();
                let v = b.column(1).as_primitive::<Int64Type>().iter().collect::<Vec<_>>();
                let id = b.column(2).as_primitive::<Int64Type>().values().to_vec();
                k.into_iter().zip(v).zip(id).map(|((k, v), id)| (k, v, id))
            })
            .collect();
        (got, fell_back.then(|| with_fallbacks(MetricsSet::new(), &fallbacks)))
    }

    /// Each key's rows are together and in window order (v DESC NULLS LAST, id), and no row is lost.
    fn assert_grouped(rows: &[Row], got: &[Row]) {
        let mut all = got.to_vec();
        let mut expected = rows.to_vec();
        all.sort();
        expected.sort();
        assert_eq!(all, expected, "the same rows");
        let mut seen: Vec<&Option<String>> = Vec::new();
        for (i, row) in got.iter().enumerate() {
            if i == 0 || got[i - 1].0 != row.0 {
                assert!(!seen.contains(&&row.0), "key {:?} comes back after another key", row.0);
                seen.push(&row.0);
                continue;
            }
            let prev = &got[i - 1];
            let in_order = match (prev.1, row.1) {
                (Some(a), Some(b)) => a > b || (a == b && prev.2 < row.2),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => prev.2 < row.2,
            };
            assert!(in_order, "{prev:?} before {row:?}");
        }
    }

    fn rows(n: i64, keys: i64) -> Vec<Row> {
        (0..n)
            .map(|i| {
                let key = if i % 13 == 0 { None } else { Some(format!("key-{}", (i * 7) % keys)) };
                let v = if i % 11 == 0 { None } else { Some((i * 37) % 17) };
                (key, v, i)
            })
            .collect()
    }

    #[test]
    fn groups_come_whole_and_in_window_order() {
        // Few keys (several buckets' worth of rows each), then many (buckets joined into chunks).
        for (n, keys, batch) in [(500, 3, 7), (5000, 2000, 64), (20, 20, 1)] {
            let input = rows(n, keys);
            assert_grouped(&input, &group_sort(&input, batch, None));
        }
        assert!(group_sort(&[], 3, None).is_empty());
    }

    /// Two keys whose 64-bit hashes collide (forced here) are still two groups.
    #[test]
    fn keys_sharing_a_hash_are_kept_apart() {
        let k = StringArray::from(vec![Some("a"), Some("b"), Some("a"), None, Some("b"), Some("a"), None]);
        let v = Int64Array::from(vec![Some(3), Some(1), Some(1), Some(5), None, Some(2), Some(4)]);
        let id = Int64Array::from(vec![0, 1, 2, 3, 4, 5, 6]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
            Field::new("id", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(k), Arc::new(v), Arc::new(id)]).unwrap();
        let ordering = LexOrdering::new(vec![
            PhysicalSortExpr::new_default(Arc::new(Column::new("k", 0))),
            PhysicalSortExpr::new(Arc::new(Column::new("v", 1)), SortOptions { descending: true, nulls_first: false }),
        ])
        .unwrap();
        let converter = RowConverter::new(vec![SortField::new_with_options(DataType::Int64, SortOptions { descending: true, nulls_first: false })]).unwrap();
        // Every row the same hash: keys a, b and NULL in one run.
        let (sorted, groups) = sort_bucket(&batch, &[7; 7], &ordering, 1, Some(&converter)).unwrap();
        let ids = sorted.column(2).as_primitive::<Int64Type>().values().to_vec();
        // By key (NULL first, as SortOptions::default() compares), then v DESC NULLS LAST.
        assert_eq!(ids, [3, 6, 0, 5, 2, 1, 4]);
        assert_eq!(groups, [0..2, 2..5, 5..7]);
        // Without order columns: only grouped.
        let keys_only = LexOrdering::new(vec![PhysicalSortExpr::new_default(Arc::new(Column::new("k", 0)))]).unwrap();
        let (grouped, groups) = sort_bucket(&batch, &[1, 2, 1, 3, 2, 1, 3], &keys_only, 1, None).unwrap();
        let k: Vec<Option<&str>> = grouped.column(0).as_string::<i32>().iter().collect();
        assert_eq!(k, [Some("a"), Some("a"), Some("a"), Some("b"), Some("b"), None, None]);
        assert_eq!(groups, [0..3, 3..5, 5..7]);
    }

    #[test]
    fn over_the_memory_limit_the_input_is_sorted_by_sort_exec() {
        let input = rows(20_000, 500);
        let (got, fallback) = group_sort_in(&input, 1000, Some(256 * 1024));
        assert_grouped(&input, &got);
        // The sort's spills are reported as the node's.
        let spilled = fallback.expect("fell back").spill_count().unwrap_or(0);
        assert!(spilled > 0, "a 256 KB pool spills 20,000 rows");
        // SortExec's output is sorted by key across groups as well (nulls first).
        let keys: Vec<&Option<String>> = got.iter().map(|r| &r.0).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]));
    }

    /// Through Kiln's planner: a window's sort becomes a group sort unless the
    /// plan sorts its output, or something above the window needs its order.
    #[test]
    fn the_planner_replaces_a_windows_sort_only_where_no_order_is_used() {
        let ctx = crate::session::context(&crate::session::SessionOptions { target_partitions: Some(2), ..Default::default() }).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let plan = |ctx: &SessionContext, sql: &str| -> String {
            rt.block_on(async {
                let physical = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
                datafusion::physical_plan::displayable(physical.as_ref()).indent(false).to_string()
            })
        };
        rt.block_on(ctx.sql("CREATE TABLE t (k VARCHAR, v BIGINT) AS VALUES ('a', 1), ('b', 2), ('a', 3)")).unwrap();
        let running = "SELECT k, v, sum(v) OVER (PARTITION BY k ORDER BY v ROWS UNBOUNDED PRECEDING) AS s FROM t";
        let file = std::env::temp_dir().join("kiln-group-sort.parquet");
        let to_file = |sql: &str| format!("COPY ({sql}) TO '{}' STORED AS PARQUET", file.display());
        // Written to a file (a sink's DataSinkExec), as a run writes it.
        let p = plan(&ctx, &to_file(running));
        assert!(p.contains("DataSinkExec") && p.contains("GroupWindowExec: groups=[k@0 ") && p.contains("each by [v@1 ASC]") && !p.contains(" SortExec:"), "{p}");
        let group_sorted = |p: &str| p.contains("GroupSortExec") || p.contains("GroupWindowExec");
        // A plan whose consumer is not known (a scan inside another plan, such as delta-rs' merge source): left alone.
        let scanned = plan(&ctx, running);
        assert!(!group_sorted(&scanned), "{scanned}");
        let sorted = plan(&ctx, &to_file(&format!("{running} ORDER BY k, v")));
        assert!(!group_sorted(&sorted), "{sorted}");
        // A window over the window: the outer one relies on the inner one's order (its sort was dropped).
        let nested = plan(&ctx, &to_file(&format!("SELECT k, s, row_number() OVER (PARTITION BY k ORDER BY v) AS rn FROM ({running})")));
        assert!(!group_sorted(&nested), "{nested}");
        // An aggregate above the window streams by its order (ordering_mode=Sorted): left alone.
        let grouped = plan(&ctx, &to_file(&format!("SELECT k, max(s) FROM ({running}) GROUP BY k")));
        assert!(!group_sorted(&grouped), "{grouped}");
        // And the file holds the window's results.
        rt.block_on(async { ctx.sql(&to_file(running)).await.unwrap().collect().await.unwrap() });
        let rows = rt.block_on(async {
            let written = ctx.read_parquet(file.to_str().unwrap(), Default::default()).await.unwrap();
            written.select_columns(&["k", "v", "s"]).unwrap().collect().await.unwrap()
        });
        let mut got: Vec<(String, i64, i64)> = rows
            .iter()
            .flat_map(|b| {
                let k = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
                let k: Vec<String> = k.as_string::<i32>().iter().map(|s| s.unwrap().to_string()).collect();
                let v = b.column(1).as_primitive::<Int64Type>().values().to_vec();
                let s: Vec<i64> = b.column(2).as_primitive::<Int64Type>().values().to_vec();
                k.into_iter().zip(v).zip(s).map(|((k, v), s)| (k, v, s))
            })
            .collect();
        got.sort();
        assert_eq!(got, [("a".to_string(), 1, 1), ("a".to_string(), 3, 4), ("b".to_string(), 2, 2)]);
    }

    /// Window functions computed group by group (`GroupWindowExec`) give what
    /// DataFusion's own window operators give for the same query, with and
    /// without a memory limit (under which the node falls back to `SortExec`
    /// and the window node). 20,000 rows, 300 keys and NULL keys, several
    /// batches per partition; each query one window node.
    #[test]
    fn windows_over_groups_match_datafusions_windows() {
        let table = "CREATE TABLE t AS SELECT \
            CASE WHEN value % 13 = 0 THEN NULL ELSE 'k' || CAST((value * 7) % 300 AS VARCHAR) END AS k, \
            CAST(value % 2 AS INT) AS k2, \
            CASE WHEN value % 11 = 0 THEN NULL ELSE (value * 37) % 17 END AS v, \
            CAST(value AS DOUBLE) / 8 AS x, value AS id FROM generate_series(1, 20000)";
        let queries = [
            // Bounded functions (BoundedWindowAggExec) under a total order, keyed by two columns.
            "SELECT k, k2, v, id, row_number() OVER w AS rn, lag(v) OVER w AS prev, lead(v, 2, -1) OVER w AS next2, \
             first_value(v) OVER w AS first, min(v) OVER w AS lowest \
             FROM t WINDOW w AS (PARTITION BY k, k2 ORDER BY v DESC NULLS LAST, id)",
            // Aggregates over ROWS frames. (Not `OVER (w ROWS ...)`: DataFusion 55's SQL planner drops
            // a named window's PARTITION BY and ORDER BY there.)
            "SELECT k, v, id, sum(x) OVER (PARTITION BY k ORDER BY v, id ROWS UNBOUNDED PRECEDING) AS running, \
             avg(x) OVER (PARTITION BY k ORDER BY v, id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS ma3, \
             count(v) OVER (PARTITION BY k ORDER BY v, id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS near FROM t",
            // Peers (ORDER BY v alone) and functions that read the whole group (WindowAggExec).
            "SELECT k, v, id, rank() OVER w AS rk, dense_rank() OVER w AS drk, percent_rank() OVER w AS pr, \
             cume_dist() OVER w AS cd, sum(x) OVER w AS upto_peers FROM t WINDOW w AS (PARTITION BY k ORDER BY v)",
            "SELECT k, v, id, ntile(3) OVER (PARTITION BY k ORDER BY v, id) AS tile, \
             last_value(id) OVER (PARTITION BY k ORDER BY v, id ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS last_id FROM t",
            "SELECT k, v, id, max(x) OVER (PARTITION BY k) AS group_max, count(*) OVER (PARTITION BY k) AS n FROM t",
        ];
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let text = |b: &[RecordBatch]| datafusion::arrow::util::pretty::pretty_format_batches(b).unwrap().to_string();
        let context = |memory_limit: Option<u64>| {
            let options = crate::session::SessionOptions { target_partitions: Some(2), batch_size: Some(1000), memory_limit, ..Default::default() };
            let ctx = crate::session::context(&options).unwrap();
            rt.block_on(async {
                ctx.sql("SET datafusion.execution.sort_spill_reservation_bytes = 65536").await.unwrap();
                ctx.sql(table).await.unwrap().collect().await.unwrap();
            });
            ctx
        };
        // The plan of `query` written to a file, and what its group window node spilled.
        let planned = |ctx: &SessionContext, query: &str, file: &std::path::Path| {
            let copy = format!("COPY ({query}) TO '{}' STORED AS PARQUET", file.display());
            let physical = rt.block_on(async { ctx.sql(&copy).await.unwrap().create_physical_plan().await.unwrap() });
            let plan = datafusion::physical_plan::displayable(physical.as_ref()).indent(false).to_string();
            assert!(plan.contains("GroupWindowExec"), "{plan}");
            physical
        };
        let spills = |physical: &Arc<dyn ExecutionPlan>| {
            let mut spills = 0;
            physical
                .apply(|node| {
                    if node.name() == "GroupWindowExec" {
                        spills += node.metrics().and_then(|m| m.spill_count()).unwrap_or(0);
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
                .unwrap();
            spills
        };
        for (i, query) in queries.iter().enumerate() {
            let ctx = context(None);
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join(format!("window-{i}.parquet"));
            // Not a file sink's plan: DataFusion's sort and window operators.
            let expected = rt.block_on(async { ctx.sql(&format!("SELECT * FROM ({query}) ORDER BY id")).await.unwrap().collect().await.unwrap() });
            let expected = text(&expected);
            assert_eq!(expected.lines().count(), 20_000 + 4, "query {i}");
            // Written to a file and read back.
            let physical = planned(&ctx, query, &file);
            let written = rt.block_on(async {
                datafusion::physical_plan::collect(Arc::clone(&physical), ctx.task_ctx()).await.unwrap();
                let read = ctx.read_parquet(file.to_str().unwrap(), Default::default()).await.unwrap();
                ctx.register_table("written", read.into_view()).unwrap();
                ctx.sql("SELECT * FROM written ORDER BY id").await.unwrap().collect().await.unwrap()
            });
            assert_eq!(spills(&physical), 0);
            assert!(text(&written) == expected, "query {i}: the file differs from DataFusion's result");
            // Under a memory limit the 20,000 rows do not fit in: the node falls back to SortExec and the
            // window node. The writer's input is read (the writer's buffers would not fit either).
            let limited = context(Some(2 << 20));
            let physical = planned(&limited, query, &file);
            let rows = rt.block_on(async { datafusion::physical_plan::collect(Arc::clone(&physical.children()[0]), limited.task_ctx()).await.unwrap() });
            assert!(spills(&physical) > 0, "query {i}: a 2 MB pool spills");
            let rows = rt.block_on(async {
                ctx.register_batch("limited", datafusion::arrow::compute::concat_batches(&rows[0].schema(), &rows).unwrap()).unwrap();
                ctx.sql("SELECT * FROM limited ORDER BY id").await.unwrap().collect().await.unwrap()
            });
            assert!(text(&rows) == expected, "query {i}: under a memory limit, the rows differ from DataFusion's result");
        }
    }
}
