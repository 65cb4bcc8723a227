//! The unsorted path: the best row per key, without a sort of the input.
//!
//! The first [`PROBE_ROWS`] rows of a partition are read with only their key
//! hashes kept ([`Slots`]); their count of distinct hashes picks the path:
//!
//! - Nearly unique keys (a dedupe of ids: fewer than [`MIN_ROWS_PER_KEY`] rows
//!   per key) go on the same way ([`by_hash`]): every row's key hash and
//!   position, in 1,024 buckets by the hash's top bits. At the end each bucket
//!   (cache-sized) is sorted by hash; a hash seen once is its key's only row,
//!   and only rows that share a hash have their keys and order values
//!   compared in Arrow's row format. This is how DuckDB runs `DISTINCT ON …
//!   ORDER BY` (a hash aggregate, no sort); before, such keys went to a sort of
//!   the whole input by (key, order), ~30% of the etl job's CPU at 10M rows
//!   (memcmp, the merge's loser tree). One hash table holding every key was
//!   no faster (a DRAM miss per row) and took 1.44x the memory.
//! - Repeating keys go to a table ([`by_table`], [`Table`]): per key, its hash
//!   and where its best row is, the key and order bytes in one arena; a row
//!   replaces its key's best when its order bytes are smaller. Retained
//!   batches are compacted (the best rows copied into one batch) when mostly
//!   dead, so memory follows the keys, not the rows.
//!
//! Either way the retained batches are then filtered down to their best rows.
//! Of rows equal in key and order, the first read is kept. What is held is
//! reserved from the session's memory pool; when the pool refuses more (a
//! `memory_limit`), the stream falls back to DataFusion's `SortExec` over what
//! it holds (the best rows so far, for the table) and the rest of the input,
//! which spills to disk, and takes the sorted pass.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::{interleave, interleave_record_batch};
use datafusion::arrow::compute::BatchCoalescer;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::Result;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::group_sort::{Fallbacks, sort_stream};
use crate::key_buckets::{Slots, evaluate};

/// Where a key's best row is, and its bytes in the arena: the key's
/// `key_len` bytes at `at`, then the order's `order_len` bytes.
struct Entry {
    hash: u64,
    at: usize,
    key_len: u32,
    order_len: u32,
    batch: u32,
    row: u32,
}

/// The best row per key. Keys are row-format bytes hashed with aHash
/// (DataFusion's own hash tables' hasher).
struct Table {
    entries: hashbrown::HashTable<Entry>,
    arena: Vec<u8>,
    /// Arena bytes no entry points to any more (orders replaced by longer ones).
    dead: usize,
    hasher: ahash::RandomState,
}

impl Table {
    fn new() -> Self {
        Table { entries: hashbrown::HashTable::new(), arena: Vec::new(), dead: 0, hasher: ahash::RandomState::new() }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held: the arena and the table's slots (entry and control byte).
    fn bytes(&self) -> usize {
        self.arena.capacity() + self.entries.capacity() * (std::mem::size_of::<Entry>() + 1)
    }

    /// Offers row `row` of batch `batch`: kept when its key is new or its order bytes are smaller.
    fn offer(&mut self, key: &[u8], order: &[u8], batch: u32, row: u32) {
        let hash = self.hasher.hash_one(key);
        let arena = &mut self.arena;
        let found = self.entries.find_mut(hash, |e| e.hash == hash && &arena[e.at..e.at + e.key_len as usize] == key);
        match found {
            Some(e) => {
                let start = e.at + e.key_len as usize;
                if order >= &arena[start..start + e.order_len as usize] {
                    return;
                }
                if order.len() == e.order_len as usize {
                    arena[start..start + order.len()].copy_from_slice(order);
                } else {
                    // Another length (a string in the order): the key and order move to the end.
                    self.dead += e.key_len as usize + e.order_len as usize;
                    let at = arena.len();
                    arena.extend_from_within(e.at..e.at + e.key_len as usize);
                    arena.extend_from_slice(order);
                    (e.at, e.order_len) = (at, order.len() as u32);
                }
                (e.batch, e.row) = (batch, row);
            }
            None => {
                let at = arena.len();
                arena.extend_from_slice(key);
                arena.extend_from_slice(order);
                let entry = Entry { hash, at, key_len: key.len() as u32, order_len: order.len() as u32, batch, row };
                self.entries.insert_unique(hash, entry, |e| e.hash);
            }
        }
    }

    /// Drops the arena's dead bytes when they are most of it.
    fn compact_arena(&mut self) {
        if self.dead * 2 <= self.arena.len() {
            return;
        }
        let mut arena = Vec::with_capacity(self.arena.len() - self.dead);
        for e in self.entries.iter_mut() {
            let at = arena.len();
            arena.extend_from_slice(&self.arena[e.at..e.at + e.key_len as usize + e.order_len as usize]);
            e.at = at;
        }
        (self.arena, self.dead) = (arena, 0);
    }
}

/// Rows read before choosing the path: keys seen fewer than [`MIN_ROWS_PER_KEY`]
/// times on average take [`by_hash`], keys that repeat more [`by_table`].
const PROBE_ROWS: usize = 1 << 18;
const MIN_ROWS_PER_KEY: usize = 4;

/// What the stream produces: the best rows (hashed), or a sorted stream to
/// take the first row per key from.
pub(super) enum Outcome {
    Rows(Box<dyn Iterator<Item = Result<RecordBatch>> + Send>),
    Sorted(SendableRecordBatchStream),
}

pub(super) async fn best_rows(
    input: SendableRecordBatchStream,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    order: Vec<PhysicalSortExpr>,
    context: Arc<TaskContext>,
    fallbacks: Fallbacks,
) -> Result<Outcome> {
    best_rows_probing(input, keys, order, context, PROBE_ROWS, fallbacks).await
}

/// Reads the first `probe_rows` rows into [`Slots`], then goes on with the
/// path their distinct keys call for.
async fn best_rows_probing(
    mut input: SendableRecordBatchStream,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    order: Vec<PhysicalSortExpr>,
    context: Arc<TaskContext>,
    probe_rows: usize,
    fallbacks: Fallbacks,
) -> Result<Outcome> {
    let mut held = Held::new(&context, fallbacks);
    let mut slots = Slots::new();
    let mut distinct: std::collections::HashSet<u64, ahash::RandomState> = Default::default();
    let mut seen = 0usize;
    while seen < probe_rows {
        let Some(batch) = input.next().await else { break };
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        slots.push(&evaluate(&keys, &batch)?, held.batches.len() as u32)?;
        distinct.extend(slots.hashes.iter().copied());
        seen += batch.num_rows();
        held.push(batch);
        // The pool refusing what is held is a reason to sort: the sort spills.
        if !held.reserve(slots.bytes() + distinct.capacity() * 9) {
            return held.sort_with(input, &keys, &order, context);
        }
    }
    if distinct.len() * MIN_ROWS_PER_KEY > seen {
        drop(distinct);
        return by_hash(held, slots, input, keys, order, context).await;
    }
    drop((distinct, slots));
    by_table(held, input, keys, order, context).await
}

/// Input batches retained, with their bytes reserved from the memory pool.
struct Held {
    batches: Vec<RecordBatch>,
    bytes: usize,
    reservation: MemoryReservation,
    fallbacks: Fallbacks,
}

impl Held {
    fn new(context: &TaskContext, fallbacks: Fallbacks) -> Self {
        let reservation = MemoryConsumer::new("FirstPerKeyExec[hashed]").with_can_spill(true).register(context.memory_pool());
        Held { batches: Vec::new(), bytes: 0, reservation, fallbacks }
    }

    fn push(&mut self, batch: RecordBatch) {
        self.bytes += batch.get_array_memory_size();
        self.batches.push(batch);
    }

    /// Reserves the batches' bytes and `more`; false when the pool refuses.
    fn reserve(&mut self, more: usize) -> bool {
        self.reservation.try_resize(self.bytes + more).is_ok()
    }

    /// Gives up hashing: the batches held, then the rest of `input`, sorted by
    /// keys then order by DataFusion's `SortExec` (which spills).
    fn sort_with(mut self, input: SendableRecordBatchStream, keys: &[Arc<dyn PhysicalExpr>], order: &[PhysicalSortExpr], context: Arc<TaskContext>) -> Result<Outcome> {
        self.reservation.free();
        let schema = input.schema();
        let all = futures::stream::iter(std::mem::take(&mut self.batches).into_iter().map(Ok)).chain(input);
        let all: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(schema, all));
        let ordering: Vec<PhysicalSortExpr> = keys.iter().map(|k| PhysicalSortExpr::new_default(Arc::clone(k))).chain(order.iter().cloned()).collect();
        let Some(ordering) = LexOrdering::new(ordering) else { return Ok(Outcome::Sorted(all)) };
        Ok(Outcome::Sorted(sort_stream(all, ordering, context, &self.fallbacks)?))
    }

    /// The batches filtered down to the rows `marks` keeps ([`filtered`]).
    fn filtered(self, schema: SchemaRef, marks: Vec<Vec<bool>>, batch_size: usize) -> Outcome {
        Outcome::Rows(Box::new(filtered(schema, self.batches, marks, batch_size, self.reservation)))
    }
}

/// Nearly unique keys: every row's key hash and position are kept in
/// [`Slots`], and the best rows found at the end ([`best_of`]).
async fn by_hash(
    mut held: Held,
    mut slots: Slots,
    mut input: SendableRecordBatchStream,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    order: Vec<PhysicalSortExpr>,
    context: Arc<TaskContext>,
) -> Result<Outcome> {
    while let Some(batch) = input.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        slots.push(&evaluate(&keys, &batch)?, held.batches.len() as u32)?;
        held.push(batch);
        if !held.reserve(slots.bytes()) {
            drop(slots);
            return held.sort_with(input, &keys, &order, context);
        }
    }
    let marks = best_of(slots, &held.batches, &keys, &order)?;
    Ok(held.filtered(input.schema(), marks, context.session_config().batch_size()))
}

/// Keys that repeat: the best row per key in a [`Table`], the retained batches
/// compacted as rows lose.
async fn by_table(
    mut held: Held,
    mut input: SendableRecordBatchStream,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    order: Vec<PhysicalSortExpr>,
    context: Arc<TaskContext>,
) -> Result<Outcome> {
    let batch_size = context.session_config().batch_size();
    let schema = input.schema();
    let (key_conv, order_conv) = converters(&keys, &order, &schema)?;
    let mut table = Table::new();
    let offer = |table: &mut Table, batch: &RecordBatch, b: usize| -> Result<()> {
        let key_rows = key_conv.convert_columns(&evaluate(&keys, batch)?)?;
        let order_rows = order_conv.convert_columns(&evaluate_order(&order, batch)?)?;
        for i in 0..batch.num_rows() {
            table.offer(key_rows.row(i).as_ref(), order_rows.row(i).as_ref(), b as u32, i as u32);
        }
        Ok(())
    };
    for (b, batch) in held.batches.iter().enumerate() {
        offer(&mut table, batch, b)?;
    }
    let mut retained: usize = held.batches.iter().map(RecordBatch::num_rows).sum();
    loop {
        if retained > 2 * table.len() + 4 * batch_size {
            let winners = compact(&schema, &held.batches, &mut table)?;
            held.batches.clear();
            held.bytes = 0;
            retained = winners.num_rows();
            held.push(winners);
            table.compact_arena();
        }
        if !held.reserve(table.bytes()) {
            // The pool refuses the table: sort the best rows so far and the rest (the sort spills).
            let winners = compact(&schema, &held.batches, &mut table)?;
            drop(table);
            held.batches = vec![winners];
            return held.sort_with(input, &keys, &order, context);
        }
        let Some(batch) = input.next().await else { break };
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        offer(&mut table, &batch, held.batches.len())?;
        retained += batch.num_rows();
        held.push(batch);
    }
    let mut marks: Vec<Vec<bool>> = held.batches.iter().map(|b| vec![false; b.num_rows()]).collect();
    for e in table.entries.iter() {
        marks[e.batch as usize][e.row as usize] = true;
    }
    drop(table);
    Ok(held.filtered(schema, marks, batch_size))
}

/// Row-format converters for the keys and for the order (with its directions).
fn converters(keys: &[Arc<dyn PhysicalExpr>], order: &[PhysicalSortExpr], schema: &Schema) -> Result<(RowConverter, RowConverter)> {
    let key_fields = keys.iter().map(|k| Ok(SortField::new(k.data_type(schema)?))).collect::<Result<Vec<_>>>()?;
    let order_fields = order.iter().map(|o| Ok(SortField::new_with_options(o.expr.data_type(schema)?, o.options))).collect::<Result<Vec<_>>>()?;
    Ok((RowConverter::new(key_fields)?, RowConverter::new(order_fields)?))
}

/// Marks the best row of each key, per batch and row: each bucket (small
/// enough for the CPU's cache) is sorted by hash, a hash seen once is its
/// key's only row, and only the rows that share a hash have their keys and
/// order values compared. Of rows equal in key and order, the first in input
/// order is kept.
fn best_of(slots: Slots, batches: &[RecordBatch], keys: &[Arc<dyn PhysicalExpr>], order: &[PhysicalSortExpr]) -> Result<Vec<Vec<bool>>> {
    let mut marks: Vec<Vec<bool>> = batches.iter().map(|b| vec![false; b.num_rows()]).collect();
    // Rows sharing a hash, run after run; `runs` holds where each run starts.
    let (mut shared, mut runs) = (Vec::<(usize, usize)>::new(), Vec::<usize>::new());
    for mut bucket in slots.buckets {
        bucket.sort_unstable_by_key(|s| s.hash);
        for run in bucket.chunk_by(|a, b| a.hash == b.hash) {
            if let [only] = run {
                marks[only.batch as usize][only.row as usize] = true;
            } else {
                runs.push(shared.len());
                shared.extend(run.iter().map(|s| (s.batch as usize, s.row as usize)));
            }
        }
    }
    if shared.is_empty() {
        return Ok(marks);
    }
    runs.push(shared.len());
    // Their keys and order values side by side, in row format.
    let (key_conv, order_conv) = converters(keys, order, &batches[0].schema())?;
    let gather = |exprs: Vec<Arc<dyn PhysicalExpr>>| -> Result<Vec<ArrayRef>> {
        exprs
            .iter()
            .map(|e| {
                let arrays = batches.iter().map(|b| e.evaluate(b)?.into_array(b.num_rows())).collect::<Result<Vec<_>>>()?;
                let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
                Ok(interleave(&refs, &shared)?)
            })
            .collect()
    };
    let key_rows = key_conv.convert_columns(&gather(keys.to_vec())?)?;
    let order_rows = order_conv.convert_columns(&gather(order.iter().map(|o| Arc::clone(&o.expr)).collect())?)?;
    for run in runs.windows(2) {
        let mut members: Vec<usize> = (run[0]..run[1]).collect();
        members.sort_unstable_by(|&a, &b| key_rows.row(a).cmp(&key_rows.row(b)).then(order_rows.row(a).cmp(&order_rows.row(b))).then(shared[a].cmp(&shared[b])));
        for (i, &m) in members.iter().enumerate() {
            if i == 0 || key_rows.row(m) != key_rows.row(members[i - 1]) {
                let (b, r) = shared[m];
                marks[b][r] = true;
            }
        }
    }
    Ok(marks)
}

fn evaluate_order(order: &[PhysicalSortExpr], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    order.iter().map(|o| o.expr.evaluate(batch)?.into_array(batch.num_rows())).collect()
}

/// The best rows as one batch; the table then points into it.
fn compact(schema: &SchemaRef, batches: &[RecordBatch], table: &mut Table) -> Result<RecordBatch> {
    if table.len() == 0 {
        return Ok(RecordBatch::new_empty(Arc::clone(schema)));
    }
    let indices: Vec<(usize, usize)> = table.entries.iter().map(|e| (e.batch as usize, e.row as usize)).collect();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let out = interleave_record_batch(&refs, &indices)?;
    for (i, e) in table.entries.iter_mut().enumerate() {
        (e.batch, e.row) = (0, i as u32);
    }
    Ok(out)
}

/// Each retained batch filtered down to its best rows, in input order, in
/// batches of `batch_size`; a batch is released once filtered.
fn filtered(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    marks: Vec<Vec<bool>>,
    batch_size: usize,
    reservation: MemoryReservation,
) -> impl Iterator<Item = Result<RecordBatch>> + Send {
    let mut coalescer = BatchCoalescer::new(schema, batch_size);
    let mut pending = batches.into_iter().zip(marks);
    let mut done = false;
    std::iter::from_fn(move || {
        let _held = &reservation;
        loop {
            if let Some(out) = coalescer.next_completed_batch() {
                return Some(Ok(out));
            }
            if done {
                return None;
            }
            match pending.next() {
                Some((batch, mark)) => {
                    let mask = BooleanArray::new(BooleanBuffer::from(mark), None);
                    if let Err(e) = coalescer.push_batch_with_filter(batch, &mask) {
                        done = true;
                        return Some(Err(e.into()));
                    }
                }
                None => {
                    done = true;
                    if let Err(e) = coalescer.finish_buffered_batch() {
                        return Some(Err(e.into()));
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::compute::SortOptions;
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::physical_expr::expressions::Column;

    /// (key, value) rows; the best row per key is the one with the largest value.
    fn run(rows: &[(Option<&str>, i64)], batch: usize) -> Vec<(Option<String>, i64)> {
        run_in(rows, batch, PROBE_ROWS, None).0
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
        let out: Vec<RecordBatch> = rt.block_on(async {
            match best_rows_probing(input, keys.clone(), order, context, probe_rows, Fallbacks::default()).await.unwrap() {
                Outcome::Rows(rows) => rows.map(|b| b.unwrap()).collect(),
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
    fn keeps_the_best_row_per_key_with_few_keys_and_nearly_unique_ones() {
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
        // Few keys: a table, its retained batches compacted along the way.
        assert_eq!(run(&rows, 7), expected);
        // The same rows when a 10-row probe finds mostly distinct keys: slots by hash.
        assert_eq!(run_in(&rows, 7, 10, None).0, expected);
        // Distinct keys (one row each) then the repeating ones, both ways.
        let distinct: Vec<(Option<String>, i64)> = (0..50).map(|i| (Some(format!("k{i:02}")), i)).collect();
        let owned: Vec<(Option<&str>, i64)> = distinct.iter().map(|(k, v)| (k.as_deref(), *v)).chain(rows.iter().cloned()).collect();
        let mut expected_all = expected.clone();
        expected_all.extend(distinct.iter().cloned());
        expected_all.sort();
        for probe_rows in [10, PROBE_ROWS] {
            let (got, fell_back) = run_in(&owned, 5, probe_rows, None);
            assert!(!fell_back);
            assert_eq!(got, expected_all);
        }
    }

    /// Order bytes of another length (strings in the ORDER BY) move the key's
    /// bytes to the arena's end; compacting the arena keeps every key findable.
    #[test]
    fn orders_of_varying_length_replace_and_survive_arena_compaction() {
        let mut table = Table::new();
        let orders: [&[u8]; 4] = [b"zzzz", b"m", b"mm", b"a"];
        for (round, order) in orders.iter().enumerate() {
            for k in 0..100u32 {
                table.offer(format!("key{k}").as_bytes(), order, round as u32, k);
            }
        }
        assert_eq!(table.len(), 100);
        assert!(table.dead > 0);
        table.compact_arena();
        assert_eq!(table.dead, 0);
        // Every key kept round 3's row ("a" is the smallest order), and is found again after compaction.
        for k in 0..100u32 {
            table.offer(format!("key{k}").as_bytes(), b"b", 9, k);
        }
        assert_eq!(table.len(), 100);
        assert!(table.entries.iter().all(|e| e.batch == 3 && &table.arena[e.at + e.key_len as usize..][..e.order_len as usize] == b"a"));
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
        let (got, fell_back) = run_in(&rows, 1000, PROBE_ROWS, None);
        assert!(!fell_back, "8 rows per key and no limit: hashed");
        assert_eq!(got, expected);
        let (got, fell_back) = run_in(&rows, 1000, PROBE_ROWS, Some(512 * 1024));
        assert!(fell_back, "a 512 KB pool cannot hold 5,000 keys of 50 bytes and their batches");
        assert_eq!(got, expected);
        // Mostly distinct keys (slots by hash) over the limit sort the same way.
        let (got, fell_back) = run_in(&rows, 1000, 3000, Some(512 * 1024));
        assert!(fell_back);
        assert_eq!(got, expected);
        let (got, fell_back) = run_in(&rows, 1000, 3000, None);
        assert!(!fell_back);
        assert_eq!(got, expected);
    }
}
