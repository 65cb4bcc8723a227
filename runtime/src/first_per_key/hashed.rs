//! The unsorted path: the best row per key kept in a hash table.
//!
//! Each input batch is encoded once in Arrow's row format (keys, and the
//! ORDER BY columns with their directions, so that comparing bytes compares
//! rows in order); a row replaces its key's current best only when its order
//! bytes are smaller. Batches are retained while they hold a best row and are
//! compacted (the best rows copied into one batch) when mostly dead. Cost: one
//! hash lookup per row, no sort. When keys are nearly unique (a dedupe of
//! mostly distinct ids) a table holds one entry per row and sorting is cheaper
//! in memory, so the first [`PROBE_ROWS`] rows only have their keys' hashes
//! counted (the batches are kept): with more than one key per
//! [`MIN_ROWS_PER_KEY`] rows the stream hands those batches plus the rest of
//! the input to DataFusion's `SortExec` (which spills under a memory limit),
//! then takes the sorted pass; otherwise the table is built from the kept
//! batches and goes on. (Building the table during the probe made a nearly
//! unique dedupe pay two allocations per row for nothing: at 1M rows the probe
//! is half the input.) The table and the batches it retains are
//! reserved from the session's memory pool; when the pool refuses more (a
//! `memory_limit`), the stream falls back to sorting the same way, and the sort
//! spills to disk.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, Partitioning, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// The table: keys are row-format bytes, hashed with aHash (DataFusion's own
/// hash tables' hasher). std's SipHash made the table's inserts and rehashes
/// 11% of the etl job's CPU at 1M rows, where the probe covers half the input.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Rows seen before deciding whether hashing pays.
const PROBE_ROWS: usize = 1 << 18;
/// Hashing is kept when keys repeat at least this often on average.
const MIN_ROWS_PER_KEY: usize = 4;
/// Bytes a table entry takes besides its key and order bytes (two boxed
/// slices, two indices, the hash table's slot and control byte).
const ENTRY_BYTES: usize = 2 * std::mem::size_of::<Box<[u8]>>() + 8 + 16;

/// Best row of each key: its order bytes and where it is.
struct Best {
    order: Box<[u8]>,
    batch: u32,
    row: u32,
}

/// What the stream produces: the best rows (hashed), or a sorted stream to
/// take the first row per key from.
pub(super) enum Outcome {
    Rows(Vec<RecordBatch>),
    Sorted(SendableRecordBatchStream),
}

pub(super) async fn best_rows(
    input: SendableRecordBatchStream,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    order: Vec<PhysicalSortExpr>,
    context: Arc<TaskContext>,
) -> Result<Outcome> {
    best_rows_probing(input, keys, order, context, PROBE_ROWS).await
}

async fn best_rows_probing(
    mut input: SendableRecordBatchStream,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    order: Vec<PhysicalSortExpr>,
    context: Arc<TaskContext>,
    probe_rows: usize,
) -> Result<Outcome> {
    let batch_size = context.session_config().batch_size();
    let schema = input.schema();
    let key_fields = keys.iter().map(|k| Ok(SortField::new(k.data_type(&schema)?))).collect::<Result<Vec<_>>>()?;
    let order_fields = order.iter().map(|o| Ok(SortField::new_with_options(o.expr.data_type(&schema)?, o.options))).collect::<Result<Vec<_>>>()?;
    let (key_conv, order_conv) = (RowConverter::new(key_fields)?, RowConverter::new(order_fields)?);
    let mut table: HashMap<Box<[u8]>, Best> = HashMap::default();
    let mut batches: Vec<RecordBatch> = Vec::new();
    let (mut retained, mut seen) = (0usize, 0usize);
    let reservation = MemoryConsumer::new("FirstPerKeyExec[hashed]").with_can_spill(true).register(context.memory_pool());
    let (mut table_bytes, mut batch_bytes) = (0usize, 0usize);
    // While probing, only the keys' hashes are counted (no table, no allocation
    // per row): nearly unique keys then go to the sort having cost one hash per
    // row, and repeating keys get their table built from the retained batches.
    let hashes = ahash::RandomState::new();
    let mut probe: Option<std::collections::HashSet<u64, ahash::RandomState>> = Some(Default::default());
    loop {
        let batch = match input.next().await {
            Some(batch) => Some(batch?),
            None => None,
        };
        if let (Some(distinct), Some(batch)) = (probe.as_mut(), &batch) {
            let n = batch.num_rows();
            let key_rows = key_conv.convert_columns(&evaluate(&keys, batch)?)?;
            for i in 0..n {
                distinct.insert(hashes.hash_one(key_rows.row(i).as_ref()));
            }
            batch_bytes += batch.get_array_memory_size();
            batches.push(batch.clone());
            seen += n;
        }
        if let Some(distinct) = &probe {
            // The pool refusing what is held is a reason to sort too: the sort spills.
            let refused = reservation.try_resize(distinct.len() * 16 + batch_bytes).is_err();
            let decided = refused || batch.is_none() || seen >= probe_rows;
            if !decided {
                continue;
            }
            if refused || distinct.len() * MIN_ROWS_PER_KEY > seen {
                // Nearly unique keys: sort instead (what was read, then the rest).
                reservation.free();
                return sort_all(std::mem::take(&mut batches), input, &keys, &order, context);
            }
            probe = None;
            for (b, held) in batches.iter().enumerate() {
                insert(&mut table, &mut table_bytes, held, b as u32, &keys, &order, &key_conv, &order_conv)?;
            }
            retained = seen;
        } else if let Some(batch) = &batch {
            let n = batch.num_rows();
            if n == 0 {
                continue;
            }
            insert(&mut table, &mut table_bytes, batch, batches.len() as u32, &keys, &order, &key_conv, &order_conv)?;
            batch_bytes += batch.get_array_memory_size();
            batches.push(batch.clone());
            retained += n;
            if reservation.try_resize(table_bytes + batch_bytes).is_err() {
                // The pool refuses the table: sort the winners so far and the rest (the sort spills).
                let winners = compact(&schema, &batches, &mut table)?;
                drop(table);
                drop(batches);
                reservation.free();
                return sort_all(vec![winners], input, &keys, &order, context);
            }
        }
        if batch.is_none() {
            break;
        }
        if retained > 2 * table.len() + 4 * batch_size {
            batches = vec![compact(&schema, &batches, &mut table)?];
            batch_bytes = batches[0].get_array_memory_size();
            retained = table.len();
        }
    }
    let winners = compact(&schema, &batches, &mut table)?;
    Ok(Outcome::Rows(split(winners, batch_size)))
}

/// Offers every row of `batch` (retained as batch `b`) to the table, counting its bytes in `table_bytes`.
#[allow(clippy::too_many_arguments)]
fn insert(
    table: &mut HashMap<Box<[u8]>, Best>,
    table_bytes: &mut usize,
    batch: &RecordBatch,
    b: u32,
    keys: &[Arc<dyn PhysicalExpr>],
    order: &[PhysicalSortExpr],
    key_conv: &RowConverter,
    order_conv: &RowConverter,
) -> Result<()> {
    let n = batch.num_rows();
    let key_rows = key_conv.convert_columns(&evaluate(keys, batch)?)?;
    let order_rows = order_conv.convert_columns(&order.iter().map(|o| o.expr.evaluate(batch)?.into_array(n)).collect::<Result<Vec<_>>>()?)?;
    for i in 0..n {
        let (k, o) = (key_rows.row(i), order_rows.row(i));
        match table.get_mut(k.as_ref()) {
            Some(best) if o.as_ref() < &*best.order => {
                *table_bytes = *table_bytes + o.as_ref().len() - best.order.len();
                *best = Best { order: o.as_ref().into(), batch: b, row: i as u32 };
            }
            Some(_) => {}
            None => {
                *table_bytes += k.as_ref().len() + o.as_ref().len() + ENTRY_BYTES;
                table.insert(k.as_ref().into(), Best { order: o.as_ref().into(), batch: b, row: i as u32 });
            }
        }
    }
    Ok(())
}

fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<datafusion::arrow::array::ArrayRef>> {
    exprs.iter().map(|e| e.evaluate(batch)?.into_array(batch.num_rows())).collect()
}

/// The best rows as one batch; the table then points into it.
fn compact(schema: &SchemaRef, batches: &[RecordBatch], table: &mut HashMap<Box<[u8]>, Best>) -> Result<RecordBatch> {
    if table.is_empty() {
        return Ok(RecordBatch::new_empty(Arc::clone(schema)));
    }
    let indices: Vec<(usize, usize)> = table.values().map(|b| (b.batch as usize, b.row as usize)).collect();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let out = interleave_record_batch(&refs, &indices)?;
    for (i, best) in table.values_mut().enumerate() {
        best.batch = 0;
        best.row = i as u32;
    }
    Ok(out)
}

/// `held` then the rest of `input`, sorted ([`sorted`]).
fn sort_all(held: Vec<RecordBatch>, input: SendableRecordBatchStream, keys: &[Arc<dyn PhysicalExpr>], order: &[PhysicalSortExpr], context: Arc<TaskContext>) -> Result<Outcome> {
    let schema = input.schema();
    let all = futures::stream::iter(held.into_iter().map(Ok)).chain(input);
    sorted(Box::pin(RecordBatchStreamAdapter::new(schema, all)), keys, order, context).map(Outcome::Sorted)
}

/// `input` sorted by keys then order, by DataFusion's `SortExec`.
fn sorted(input: SendableRecordBatchStream, keys: &[Arc<dyn PhysicalExpr>], order: &[PhysicalSortExpr], context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
    let ordering: Vec<PhysicalSortExpr> = keys.iter().map(|k| PhysicalSortExpr::new_default(Arc::clone(k))).chain(order.iter().cloned()).collect();
    let Some(ordering) = LexOrdering::new(ordering) else { return Ok(input) };
    let source = Arc::new(OnceExec::new(input));
    SortExec::new(ordering, source).execute(0, context)
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

fn split(batch: RecordBatch, size: usize) -> Vec<RecordBatch> {
    let n = batch.num_rows();
    (0..n).step_by(size.max(1)).map(|start| batch.slice(start, size.min(n - start))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::compute::SortOptions;
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::physical_expr::expressions::Column;

    /// (key, value) rows; the best row per key is the one with the largest value.
    fn run(rows: &[(Option<&str>, i64)], batch: usize, probe_rows: usize) -> Vec<(Option<String>, i64)> {
        run_in(rows, batch, probe_rows, None).0
    }

    /// Also says whether the stream fell back to sorting; `pool_bytes` limits the memory pool.
    fn run_in(rows: &[(Option<&str>, i64)], batch: usize, probe_rows: usize, pool_bytes: Option<usize>) -> (Vec<(Option<String>, i64)>, bool) {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true), Field::new("v", DataType::Int64, false)]));
        let batches: Vec<Result<RecordBatch>> = rows
            .chunks(batch)
            .map(|c| {
                let k = StringArray::from(c.iter().map(|r| r.0).collect::<Vec<_>>());
                let v = Int64Array::from(c.iter().map(|r| r.1).collect::<Vec<_>>());
                Ok(RecordBatch::try_new(schema.clone(), vec![Arc::new(k), Arc::new(v)]).unwrap())
            })
            .collect();
        let input: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(schema.clone(), futures::stream::iter(batches)));
        let keys: Vec<Arc<dyn PhysicalExpr>> = vec![Arc::new(Column::new("k", 0))];
        let order = vec![PhysicalSortExpr::new(Arc::new(Column::new("v", 1)), SortOptions { descending: true, nulls_first: false })];
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut config = datafusion::prelude::SessionConfig::new().with_batch_size(3);
        // The sort it may fall back to: a merge reservation that fits a small pool.
        config.options_mut().execution.sort_spill_reservation_bytes = 64 * 1024;
        let mut context = TaskContext::default().with_session_config(config);
        if let Some(bytes) = pool_bytes {
            let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new().with_memory_limit(bytes, 1.0).build_arc().unwrap();
            context = context.with_runtime(runtime);
        }
        let context = Arc::new(context);
        let mut fell_back = false;
        let out = rt.block_on(async {
            match best_rows_probing(input, keys.clone(), order, context, probe_rows).await.unwrap() {
                Outcome::Rows(rows) => rows,
                Outcome::Sorted(stream) => {
                    fell_back = true;
                    let converter = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
                    let mut last = None;
                    let sorted: Vec<RecordBatch> = stream.map(|b| b.unwrap()).collect().await;
                    sorted.iter().map(|b| super::super::first_rows(b, &keys, &converter, &mut last).unwrap()).collect()
                }
            }
        });
        let mut got: Vec<(Option<String>, i64)> = out
            .iter()
            .flat_map(|b| {
                let k = b.column(0).as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect::<Vec<_>>();
                let v = b.column(1).as_primitive::<Int64Type>().values().to_vec();
                k.into_iter().zip(v)
            })
            .collect();
        got.sort();
        (got, fell_back)
    }

    #[test]
    fn keeps_the_best_row_per_key_hashed_and_after_falling_back_to_sorting() {
        let mut rows: Vec<(Option<&str>, i64)> = Vec::new();
        let names = ["a", "b", "c", "d"];
        for i in 0..200i64 {
            let key = if i % 7 == 0 { None } else { Some(names[(i % 4) as usize]) };
            rows.push((key, (i * 37) % 101));
        }
        let mut expected: Vec<(Option<String>, i64)> = Vec::new();
        for key in [None, Some("a"), Some("b"), Some("c"), Some("d")] {
            let best = rows.iter().filter(|r| r.0 == key).map(|r| r.1).max().unwrap();
            expected.push((key.map(str::to_string), best));
        }
        expected.sort();
        // Few keys: stays hashed (with compactions along the way).
        assert_eq!(run(&rows, 7, 1 << 20), expected);
        // A probe that finds "too many keys" early switches to sorting mid-stream.
        let distinct: Vec<(Option<String>, i64)> = (0..50).map(|i| (Some(format!("k{i:02}")), i)).collect();
        let owned: Vec<(Option<&str>, i64)> = distinct.iter().map(|(k, v)| (k.as_deref(), *v)).chain(rows.iter().cloned()).collect();
        let mut expected_all = expected.clone();
        expected_all.extend(distinct.iter().cloned());
        expected_all.sort();
        assert_eq!(run(&owned, 5, 10), expected_all);
    }

    /// Keys that repeat (hashing pays) but a table larger than the memory pool:
    /// the stream gives up hashing when the pool refuses and sorts (which spills).
    #[test]
    fn a_table_over_the_memory_limit_falls_back_to_sorting() {
        let names: Vec<String> = (0..5000).map(|i| format!("key-{i:05}-{}", "x".repeat(40))).collect();
        let rows: Vec<(Option<&str>, i64)> = (0..40_000i64).map(|i| (Some(names[(i % 5000) as usize].as_str()), (i * 7919) % 10_007)).collect();
        let mut expected: Vec<(Option<String>, i64)> = names
            .iter()
            .enumerate()
            .map(|(k, name)| (Some(name.clone()), rows.iter().skip(k).step_by(5000).map(|r| r.1).max().unwrap()))
            .collect();
        expected.sort();
        let (got, fell_back) = run_in(&rows, 1000, 1 << 20, None);
        assert!(!fell_back, "8 rows per key and no limit: hashed");
        assert_eq!(got, expected);
        let (got, fell_back) = run_in(&rows, 1000, 1 << 20, Some(512 * 1024));
        assert!(fell_back, "a 512 KB pool cannot hold 5,000 keys of 50 bytes and their batches");
        assert_eq!(got, expected);
    }
}
