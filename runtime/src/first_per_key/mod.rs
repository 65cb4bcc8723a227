//! `row_number() OVER (PARTITION BY keys ORDER BY …) = 1`, done without the
//! window operator.
//!
//! That pattern is how `dedupe` with `keep = first|last` is planned (as Spark
//! and DuckDB plan it) and how users write "latest row per key". DataFusion runs
//! it as a sort (per hash partition of the keys), a `BoundedWindowAggExec` and a
//! filter; the window operator does bookkeeping per window partition (hashing
//! the key into a ScalarValue, slicing batches, building output batches), which
//! dominates when most keys have one or two rows. Once the input is sorted by the
//! keys, the first row of each key is simply the row whose key differs from the
//! previous row's: [`FirstPerKeyExec`] finds those rows by comparing adjacent
//! keys in Arrow's row format and filters the batch, one pass, no per-key state.
//!
//! When the sort exists only for this window, it is not needed either: the
//! best row per key can be kept in a hash table ([`hashed`]), one lookup per
//! row instead of a sort of the whole input.
//!
//! [`FirstPerKeyRule`] runs after DataFusion has enforced the sort and the hash
//! partitioning, and replaces `FilterExec(rn = 1) ← BoundedWindowAggExec(row_number)
//! [← SortExec]` by `ProjectionExec(…, 1 AS rn) ← FirstPerKeyExec` over the sorted
//! input, or over the sort's input (hash-partitioned on the keys) in hashed mode.

mod hashed;

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::window::StandardWindowExpr;
use datafusion::physical_expr::{Distribution, EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowUDFExpr};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, InputOrderMode, PlanProperties};
use futures::{StreamExt, TryStreamExt};

/// Keeps the first row of every run of equal `keys` in each (sorted) input partition.
#[derive(Debug)]
pub struct FirstPerKeyExec {
    input: Arc<dyn ExecutionPlan>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// `None`: the input is sorted by keys then order. `Some(order)`: it is not;
    /// the best row per key by `order` is kept in a hash table.
    order: Option<Vec<PhysicalSortExpr>>,
    /// Hashed mode: nothing about the input's order survives.
    properties: Option<Arc<PlanProperties>>,
    /// Hashed mode: the sorts it fell back to under a memory limit (their spills are reported as its own).
    fallbacks: crate::group_sort::Fallbacks,
}

impl FirstPerKeyExec {
    /// Keys and (hashed mode) order, for serializing the node.
    pub(crate) fn parts(&self) -> (&[Arc<dyn PhysicalExpr>], Option<&[PhysicalSortExpr]>) {
        (&self.keys, self.order.as_deref())
    }

    pub(crate) fn new(input: Arc<dyn ExecutionPlan>, keys: Vec<Arc<dyn PhysicalExpr>>, order: Option<Vec<PhysicalSortExpr>>) -> Self {
        let properties = order.as_ref().map(|_| {
            Arc::new(PlanProperties::new(
                EquivalenceProperties::new(input.schema()),
                input.output_partitioning().clone(),
                EmissionType::Final,
                Boundedness::Bounded,
            ))
        });
        FirstPerKeyExec { input, keys, order, properties, fallbacks: Default::default() }
    }
}

impl DisplayAs for FirstPerKeyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        match &self.order {
            None => write!(f, "FirstPerKeyExec: keys=[{}], input sorted", keys.join(", ")),
            Some(order) => {
                let order: Vec<String> = order.iter().map(|o| o.to_string()).collect();
                write!(f, "FirstPerKeyExec: keys=[{}], best by [{}], hashed", keys.join(", "), order.join(", "))
            }
        }
    }
}

impl ExecutionPlan for FirstPerKeyExec {
    fn name(&self) -> &str {
        "FirstPerKeyExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.properties.as_ref().unwrap_or_else(|| self.input.properties())
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(&self, f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        let order = self.order.iter().flatten().map(|o| &o.expr);
        for k in self.keys.iter().chain(order) {
            if f(k)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::KeyPartitioned(self.keys.clone())]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![self.order.is_none()]
    }

    fn metrics(&self) -> Option<datafusion::physical_plan::metrics::MetricsSet> {
        Some(crate::group_sort::with_fallbacks(Default::default(), &self.fallbacks))
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(FirstPerKeyExec::new(children.swap_remove(0), self.keys.clone(), self.order.clone())))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let schema = input.schema();
        let keys = self.keys.clone();
        if let Some(order) = &self.order {
            let converter = key_converter(&keys, &schema)?;
            let rows = futures::stream::once(hashed::best_rows(input, keys.clone(), order.clone(), context, Arc::clone(&self.fallbacks)))
                .map(move |outcome| -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
                    Ok(match outcome? {
                        hashed::Outcome::Rows(batches) => futures::stream::iter(batches).boxed(),
                        hashed::Outcome::Sorted(sorted) => first_of_sorted(sorted, keys.clone(), converter.clone()),
                    })
                })
                .try_flatten();
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rows)));
        }
        let converter = key_converter(&keys, &schema)?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, first_of_sorted(input, keys, converter))))
    }
}

fn key_converter(keys: &[Arc<dyn PhysicalExpr>], schema: &datafusion::arrow::datatypes::Schema) -> Result<Arc<RowConverter>> {
    let fields = keys.iter().map(|k| Ok(SortField::new(k.data_type(schema)?))).collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(RowConverter::new(fields)?))
}

/// The first row of each key run of a sorted stream.
fn first_of_sorted(
    input: SendableRecordBatchStream,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    converter: Arc<RowConverter>,
) -> futures::stream::BoxStream<'static, Result<RecordBatch>> {
    let mut last: Option<OwnedRow> = None;
    input
        .map(move |batch| {
            let batch = batch?;
            first_rows(&batch, &keys, &converter, &mut last)
        })
        .boxed()
}

/// The rows of `batch` whose key differs from the previous row's (across batches).
fn first_rows(batch: &RecordBatch, keys: &[Arc<dyn PhysicalExpr>], converter: &RowConverter, last: &mut Option<OwnedRow>) -> Result<RecordBatch> {
    let n = batch.num_rows();
    if n == 0 {
        return Ok(batch.clone());
    }
    let columns = keys.iter().map(|k| k.evaluate(batch)?.into_array(n)).collect::<Result<Vec<_>>>()?;
    let rows = converter.convert_columns(&columns)?;
    let first_is_new = last.as_ref().is_none_or(|l| l.row() != rows.row(0));
    let mask = BooleanBuffer::collect_bool(n, |i| if i == 0 { first_is_new } else { rows.row(i) != rows.row(i - 1) });
    *last = Some(rows.row(n - 1).owned());
    Ok(filter_record_batch(batch, &BooleanArray::new(mask, None))?)
}

/// Replaces `FilterExec(rn = 1) ← BoundedWindowAggExec(row_number() PARTITION BY keys …)`.
#[derive(Debug, Default)]
pub struct FirstPerKeyRule;

impl PhysicalOptimizerRule for FirstPerKeyRule {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(plan.transform_up(|node| Ok(match rewrite(&node)? { Some(new) => Transformed::yes(new), None => Transformed::no(node) }))?.data)
    }

    fn name(&self) -> &str {
        "kiln_first_per_key"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn rewrite(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(filter) = node.downcast_ref::<FilterExec>() else { return Ok(None) };
    // Between the filter and the window there may be a projection of plain columns.
    let (middle, window_plan) = match filter.input().downcast_ref::<ProjectionExec>() {
        Some(p) if p.expr().iter().all(|e| e.expr.downcast_ref::<Column>().is_some()) => (Some(p), p.input()),
        _ => (None, filter.input()),
    };
    let Some(window) = window_plan.downcast_ref::<BoundedWindowAggExec>() else { return Ok(None) };
    // A sort that exists for this window only is dropped: hashed mode needs none.
    let sort = window
        .input()
        .downcast_ref::<SortExec>()
        .filter(|s| (s.preserve_partitioning() || s.input().output_partitioning().partition_count() == 1) && s.fetch().is_none());
    if window.input_order_mode != InputOrderMode::Sorted || window.window_expr().len() != 1 {
        return Ok(None);
    }
    let expr = &window.window_expr()[0];
    let is_row_number = expr
        .as_any()
        .downcast_ref::<StandardWindowExpr>()
        .and_then(|s| s.get_standard_func_expr().as_any().downcast_ref::<WindowUDFExpr>().map(|u| u.fun().name() == "row_number"))
        .unwrap_or(false);
    let keys = expr.partition_by().to_vec();
    // Without ORDER BY any row is the first (SQL's `row_number() OVER (PARTITION BY k)`); the
    // hashed mode compares order values, so such a window keeps DataFusion's plan.
    if !is_row_number || keys.is_empty() || (sort.is_some() && expr.order_by().is_empty()) {
        return Ok(None);
    }
    let (input, order) = match sort {
        Some(sort) => (Arc::clone(sort.input()), Some(expr.order_by().to_vec())),
        None => (Arc::clone(window.input()), None),
    };
    let rn_index = input.schema().fields().len();
    let window_schema = window.schema();
    // The window's output columns as the filter sees them: (expression on the window's output, name).
    let seen: Vec<(usize, String)> = match middle {
        Some(p) => p.expr().iter().map(|e| (e.expr.downcast_ref::<Column>().map_or(usize::MAX, |c| c.index()), e.alias.clone())).collect(),
        None => window_schema.fields().iter().enumerate().map(|(i, f)| (i, f.name().clone())).collect(),
    };
    let Some(rn_seen) = seen.iter().position(|(i, _)| *i == rn_index) else { return Ok(None) };
    if !is_column_eq_one(filter.predicate(), rn_seen) {
        return Ok(None);
    }
    let first: Arc<dyn ExecutionPlan> = Arc::new(FirstPerKeyExec::new(Arc::clone(&input), keys, order));
    // The row number is 1 for every kept row; the other columns are the input's.
    let exprs: Vec<ProjectionExpr> = seen
        .iter()
        .map(|(i, name)| {
            let expr: Arc<dyn PhysicalExpr> = if *i == rn_index {
                Arc::new(Literal::new(ScalarValue::UInt64(Some(1))))
            } else {
                Arc::new(Column::new(input.schema().field(*i).name(), *i))
            };
            ProjectionExpr { expr, alias: name.clone() }
        })
        .collect();
    let projected: Arc<dyn ExecutionPlan> = Arc::new(ProjectionExec::try_new(exprs, first)?);
    Ok(Some(match filter.projection() {
        None => projected,
        Some(indices) => {
            let schema = projected.schema();
            let exprs: Vec<ProjectionExpr> = indices
                .iter()
                .map(|&i| ProjectionExpr { expr: Arc::new(Column::new(schema.field(i).name(), i)), alias: schema.field(i).name().clone() })
                .collect();
            Arc::new(ProjectionExec::try_new(exprs, projected)?)
        }
    }))
}

/// `predicate` is `column[index] = 1`.
fn is_column_eq_one(predicate: &Arc<dyn PhysicalExpr>, index: usize) -> bool {
    let Some(b) = predicate.downcast_ref::<BinaryExpr>() else { return false };
    let (l, r) = (b.left(), b.right());
    let column = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Column>().is_some_and(|c| c.index() == index);
    let one = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Literal>().is_some_and(|l| matches!(l.value(), ScalarValue::UInt64(Some(1)) | ScalarValue::Int64(Some(1))))
    };
    *b.op() == Operator::Eq && ((column(l) && one(r)) || (one(l) && column(r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    /// `row_number() OVER (PARTITION BY k)` with no ORDER BY, from SQL: one row per key (it
    /// panicked in the hashed mode, which compares order values).
    #[test]
    fn a_row_number_without_order_keeps_one_row_per_key() {
        let ctx = crate::session::context(&crate::session::SessionOptions { target_partitions: Some(2), ..Default::default() }).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let keys: Vec<String> = rt.block_on(async {
            ctx.sql("CREATE TABLE t (k VARCHAR, v BIGINT) AS VALUES ('a', 1), ('b', 2), ('a', 3), (NULL, 4), (NULL, 5)").await.unwrap();
            let sql = "SELECT k FROM (SELECT *, row_number() OVER (PARTITION BY k) AS rn FROM t) WHERE rn = 1";
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            batches
                .iter()
                .flat_map(|b| {
                    let k = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
                    k.as_string::<i32>().iter().map(|s| s.unwrap_or("NULL").to_string()).collect::<Vec<_>>()
                })
                .collect()
        });
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, ["NULL", "a", "b"]);
    }

    #[test]
    fn first_row_of_each_key_run_across_batches_with_null_keys() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true), Field::new("v", DataType::Int64, false)]));
        let batch = |k: Vec<Option<&str>>, v: Vec<i64>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(k)), Arc::new(Int64Array::from(v))]).unwrap()
        };
        let keys: Vec<Arc<dyn PhysicalExpr>> = vec![Arc::new(Column::new("k", 0))];
        let converter = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
        let mut last = None;
        // Sorted by k (nulls first), then v: a key run may continue into the next batch.
        let batches = [
            batch(vec![None, None, Some("a")], vec![1, 2, 3]),
            batch(vec![Some("a"), Some("a"), Some("b")], vec![4, 5, 6]),
            batch(vec![], vec![]),
            batch(vec![Some("b"), Some("c")], vec![7, 8]),
        ];
        let kept: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                let out = first_rows(b, &keys, &converter, &mut last).unwrap();
                out.column(1).as_primitive::<Int64Type>().values().to_vec()
            })
            .collect();
        assert_eq!(kept, [1, 3, 6, 8]);
    }
}
