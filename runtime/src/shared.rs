//! A node read by several others is computed once (SPEC §1).
//!
//! Each sink (and each `expect` summary) is its own DataFusion plan, so a node
//! that feeds two of them would be planned, and computed, twice. A run wraps
//! every such node in a [`Shared`] logical node (one id per node). Planned, it
//! is a [`SharedExec`]: the first consumer to execute a partition starts the
//! node's partition once and fans its batches out to one queue per consumer;
//! the others attach to their queues. The consumers run concurrently (sinks are
//! staged together) or one after another (an `expect` summary before the
//! sinks), so the producer never waits on a consumer: a queue holds what its
//! consumer has not taken yet, in memory while the memory pool grants it and
//! in an Arrow IPC file in the spill directory beyond that — memory stays
//! within `memory_limit` whatever the consumers' pace.
//!
//! Every partition is computed from one plan instance, the first reader's: two
//! readers' instances of the same plan may split rows across partitions
//! differently (a round-robin repartition serves whichever partition asks).
//!
//! Correctness never depends on the count: a consumer that never comes leaves
//! its queue to be dropped with the run ([`release`]); one more than expected,
//! or a consumer whose input was planned differently, computes the node itself.
//! Plans sent to Ballista get the plain input back ([`unwrap`]).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchemaRef, DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Partitions started by the producer of each shared node, for tests and
/// metrics: (id → number of partition executions of its input).
static STARTS: Mutex<Option<HashMap<u64, u64>>> = Mutex::new(None);

/// Batches written to spill files by readers' queues, since the process started.
static SPILLED: AtomicU64 = AtomicU64::new(0);

/// How many batches readers' queues have spilled (for tests and metrics).
pub fn spilled_batches() -> u64 {
    SPILLED.load(Ordering::Relaxed)
}

/// `input`, computed once for `consumers` readers. Returns the plan and its id.
pub fn share(input: LogicalPlan, node: &str, consumers: usize) -> (LogicalPlan, u64) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    (LogicalPlan::Extension(Extension { node: Arc::new(Shared { input, node: node.to_string(), id, consumers }) }), id)
}

/// How many times the input of shared node `id` was started, per partition summed.
pub fn starts(id: u64) -> u64 {
    STARTS.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|m| m.get(&id).copied()).unwrap_or(0)
}

/// Drops what the run's shared nodes still hold (queues of consumers that never came).
pub fn release(ids: &[u64]) {
    let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    slots.retain(|(id, _), _| !ids.contains(id));
    drop(slots);
    INPUTS.lock().unwrap_or_else(|e| e.into_inner()).retain(|id, _| !ids.contains(id));
}

/// The logical node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct Shared {
    input: LogicalPlan,
    node: String,
    id: u64,
    consumers: usize,
}

impl UserDefinedLogicalNodeCore for Shared {
    fn name(&self) -> &str {
        "Shared"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Shared #{}: `{}` for {} readers", self.id, self.node, self.consumers)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(Shared { input: inputs.swap_remove(0), node: self.node.clone(), id: self.id, consumers: self.consumers })
    }

    // Every reader sees the same rows: no filter or projection of one reader
    // may reach the shared input (the defaults: all columns needed, none pushed).
}

/// `plan` with every shared node replaced by its input (each reader computes it).
pub fn unwrap(plan: LogicalPlan) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up(|node| match &node {
            LogicalPlan::Extension(e) => match e.node.as_any().downcast_ref::<Shared>() {
                Some(s) => Ok(Transformed::yes(s.input.clone())),
                None => Ok(Transformed::no(node)),
            },
            _ => Ok(Transformed::no(node)),
        })?
        .data)
}

/// Plans a [`Shared`] node.
pub(crate) fn plan(shared: &Shared, input: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    Arc::new(SharedExec { plan_text: shown(&input), input, node: shared.node.clone(), id: shared.id, consumers: shared.consumers })
}

/// The input's plan as text, taken when the plan is built (before execution
/// changes what dynamic filters show): readers attach only to an identical input.
fn shown(input: &Arc<dyn ExecutionPlan>) -> String {
    datafusion::physical_plan::displayable(input.as_ref()).indent(true).to_string()
}

/// The physical node: one consumer's view of the shared input.
#[derive(Debug)]
pub struct SharedExec {
    input: Arc<dyn ExecutionPlan>,
    plan_text: String,
    node: String,
    id: u64,
    consumers: usize,
}

impl DisplayAs for SharedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SharedExec: #{} `{}` computed once for {} readers", self.id, self.node, self.consumers)
    }
}

impl ExecutionPlan for SharedExec {
    fn name(&self) -> &str {
        "SharedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    /// `false`: a reader's sort must stay above the shared node (pushed below,
    /// it would make that reader's input differ from the others').
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// The input's statistics pass through (join selection sees the shared node's size).
    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<datafusion::physical_plan::statistics::ChildStats> {
        vec![datafusion::physical_plan::statistics::ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<datafusion::common::Statistics>],
        _args: &datafusion::physical_plan::statistics::StatisticsArgs,
    ) -> Result<Arc<datafusion::common::Statistics>> {
        Ok(Arc::clone(&input_stats[0]))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        Ok(Arc::new(SharedExec { plan_text: shown(&input), input, node: self.node.clone(), id: self.id, consumers: self.consumers }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let schema = self.input.schema();
        let key = (self.id, partition);
        // The registry is only looked at and updated under its lock; the input is
        // started by the producer task, outside it (a shared node inside another
        // one reaches this lock again while the outer node starts its input).
        let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(&key) {
            if slot.plan_text == self.plan_text {
                if let Some(queue) = slot.waiting.pop() {
                    let producer = Arc::clone(&slot.producer);
                    if slot.waiting.is_empty() {
                        slots.remove(&key);
                    }
                    return Ok(stream(schema, queue, producer));
                }
            }
        }
        // The first reader of this partition registers the others' queues; one that
        // cannot attach (planned differently, or one reader too many) computes alone.
        let register = !slots.contains_key(&key);
        // All of this node's queues (every partition, every reader) share one budget.
        let queues_of_node = self.consumers.max(1) * self.input.properties().partitioning.partition_count().max(1);
        let queues: Vec<Arc<Queue>> = (0..if register { self.consumers.max(1) } else { 1 })
            .map(|i| Queue::new(&context, &format!("SharedExec[{}#{partition}.{i}]", self.node), queues_of_node))
            .collect();
        *STARTS.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).entry(self.id).or_default() += 1;
        // Every partition of the node is computed from one plan instance: the first
        // reader's. Readers' instances of an identical plan are not interchangeable per
        // partition: a round-robin repartition hands batches to whichever of its
        // partitions asks, so partition 0 of one instance and partition 1 of another
        // could both hold a batch (every row came out twice under load, once in CI).
        // A reader that cannot attach (planned differently, or one too many after the
        // partition was handed out) computes from its own instance.
        let input = {
            let mut inputs = INPUTS.lock().unwrap_or_else(|e| e.into_inner());
            let shared = inputs.entry(self.id).or_insert_with(|| Source { plan_text: self.plan_text.clone(), input: Arc::clone(&self.input), started: Default::default() });
            if register && shared.plan_text == self.plan_text && shared.started.insert(partition) { Arc::clone(&shared.input) } else { Arc::clone(&self.input) }
        };
        let readers = queues.clone();
        let producer = Arc::new(Producer(tokio::spawn(async move {
            match input.execute(partition, context) {
                Ok(stream) => guarded(stream, readers).await,
                Err(e) => {
                    let e = Arc::new(e);
                    for q in &readers {
                        q.finish(Err(Arc::clone(&e)));
                    }
                }
            }
        })));
        let mut waiting = queues;
        let mine = waiting.remove(0);
        if register && !waiting.is_empty() {
            slots.insert(key, Slot { plan_text: self.plan_text.clone(), waiting, producer: Arc::clone(&producer) });
        }
        Ok(stream(schema, mine, producer))
    }
}

/// Queues of a started partition not yet taken by their readers.
struct Slot {
    plan_text: String,
    waiting: Vec<Arc<Queue>>,
    producer: Arc<Producer>,
}

/// What one reader's queue keeps in memory at most (less when the node's budget,
/// divided among its queues, is smaller; 1 MB at least): a reader that lags
/// further reads the rest back from the spill file.
const MAX_QUEUE_BYTES: usize = 64 << 20;

/// What all the queues of one shared node keep in memory at most, without a memory limit.
const NODE_BUDGET: usize = 512 << 20;

/// How long the producer waits for a full queue's reader to take a batch before spilling.
const PATIENCE: std::time::Duration = std::time::Duration::from_millis(20);

static SLOTS: std::sync::LazyLock<Mutex<HashMap<(u64, usize), Slot>>> = std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));

/// The plan instance each shared node's partitions are computed from.
static INPUTS: std::sync::LazyLock<Mutex<HashMap<u64, Source>>> = std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));

/// A shared node's input as its first reader planned it, and the partitions started from it.
struct Source {
    plan_text: String,
    input: Arc<dyn ExecutionPlan>,
    started: std::collections::HashSet<usize>,
}

/// The task computing a partition; stopped when every reader is gone.
struct Producer(tokio::task::JoinHandle<()>);

impl Drop for Producer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One reader's batches not yet taken: in memory while the pool grants it,
/// then in a spill file (the deque keeps memory and disk items in order).
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    ready: tokio::sync::Notify,
    /// Signalled when the reader takes a batch from memory.
    drained: tokio::sync::Notify,
    /// The last wait for room ran out: the reader is not reading now.
    stalled: AtomicBool,
    /// The reader dropped its stream: nothing more needs to be kept for it.
    closed: AtomicBool,
    disk: Arc<datafusion::execution::disk_manager::DiskManager>,
    /// Bytes this queue keeps in memory at most.
    cap: usize,
}

struct QueueState {
    items: VecDeque<Item>,
    reservation: MemoryReservation,
    spill: Option<Spill>,
    /// Set once the input is exhausted (`Ok`) or failed.
    end: Option<std::result::Result<(), Arc<DataFusionError>>>,
}

enum Item {
    Memory(RecordBatch, usize),
    /// The next batch of the spill file.
    Disk,
}

struct Spill {
    _file: Arc<dyn datafusion::execution::SpillFile>,
    writer: StreamWriter<std::io::BufWriter<std::fs::File>>,
    path: std::path::PathBuf,
    reader: Option<StreamReader<std::io::BufReader<std::fs::File>>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Queue").field("cap", &self.cap).field("closed", &self.is_closed()).finish()
    }
}

impl Queue {
    /// `share`: how many queues the node has in all (its budget is divided among them).
    pub(crate) fn new(context: &Arc<TaskContext>, name: &str, share: usize) -> Arc<Queue> {
        let reservation = MemoryConsumer::new(name).with_can_spill(true).register(context.memory_pool());
        // Under a memory limit, buffered rows leave most of the pool to the operators
        // (a writer or a hash table cannot spill; a queue can): a node's queues keep at
        // most a quarter of it; without a limit, NODE_BUDGET.
        let budget = match context.memory_pool().memory_limit() {
            datafusion::execution::memory_pool::MemoryLimit::Finite(n) => n / 4,
            _ => NODE_BUDGET,
        };
        let cap = MAX_QUEUE_BYTES.min(budget / share.max(1)).max(1 << 20);
        Arc::new(Queue {
            cap,
            state: Mutex::new(QueueState { items: VecDeque::new(), reservation, spill: None, end: None }),
            ready: tokio::sync::Notify::new(),
            drained: tokio::sync::Notify::new(),
            stalled: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            disk: Arc::clone(&context.runtime_env().disk_manager),
        })
    }

    /// Whether `size` more bytes would not fit in memory (and the queue is not spilling already).
    fn full(&self, size: usize) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        !self.closed.load(Ordering::Relaxed) && state.reservation.size() + size > self.cap
    }

    /// Adds a batch for the reader. A reader that is taking batches drains its
    /// queue soon: wait a moment for room (pacing the input to its readers)
    /// before spilling. One that is not reading yet (the probe side of a join
    /// whose build side reads the same input) must not hold the others up:
    /// past the wait, spill.
    /// A reader found not reading (the wait ran out) is not waited for again
    /// until it takes a batch: its batches go straight to disk meanwhile.
    pub(crate) async fn offer(&self, batch: &RecordBatch) -> Result<()> {
        if !self.stalled.load(Ordering::Relaxed) {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while self.full(batch.get_array_memory_size()) {
                if tokio::time::timeout_at(deadline, self.drained.notified()).await.is_err() {
                    self.stalled.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        self.push(batch)
    }

    /// Whether the reader has gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn push(&self, batch: &RecordBatch) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock: a reader that has gone has freed its memory for good.
        if self.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let size = batch.get_array_memory_size();
        let room = state.reservation.size() + size <= self.cap;
        // Memory and disk items keep their order in the deque, so a queue that spilled
        // once goes back to memory as soon as its reader catches up.
        if room && state.reservation.try_grow(size).is_ok() {
            state.items.push_back(Item::Memory(batch.clone(), size));
        } else {
            if state.spill.is_none() {
                let file = self.disk.create_tmp_file("SharedExec: rows a reader has not taken yet")?;
                let path = file.path().map(|p| p.to_path_buf()).ok_or_else(|| DataFusionError::Execution("spilling a shared node needs a local spill directory".into()))?;
                let writer = StreamWriter::try_new(std::io::BufWriter::new(std::fs::File::create(&path)?), &batch.schema())?;
                state.spill = Some(Spill { _file: file, writer, path, reader: None });
            }
            let Some(spill) = state.spill.as_mut() else { return Err(DataFusionError::Internal("SharedExec: no spill file".into())) };
            spill.writer.write(batch)?;
            spill.writer.flush()?;
            SPILLED.fetch_add(1, Ordering::Relaxed);
            state.items.push_back(Item::Disk);
        }
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    pub(crate) fn finish(&self, end: std::result::Result<(), Arc<DataFusionError>>) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).end.get_or_insert(end);
        self.ready.notify_one();
    }

    /// The next batch; `None` at the end.
    async fn next(&self) -> Option<Result<RecordBatch>> {
        loop {
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                match state.items.pop_front() {
                    Some(Item::Memory(batch, size)) => {
                        state.reservation.shrink(size);
                        drop(state);
                        self.stalled.store(false, Ordering::Relaxed);
                        self.drained.notify_one();
                        return Some(Ok(batch));
                    }
                    Some(Item::Disk) => {
                        self.stalled.store(false, Ordering::Relaxed);
                        return Some(match state.spill.as_mut() {
                            Some(spill) => read_spilled(spill),
                            None => Err(DataFusionError::Internal("SharedExec: a spilled batch without a spill file".into())),
                        });
                    }
                    None => match &state.end {
                        Some(Ok(())) => return None,
                        Some(Err(e)) => return Some(Err(DataFusionError::Shared(Arc::clone(e)))),
                        None => {}
                    },
                }
            }
            self.ready.notified().await;
        }
    }
}

fn read_spilled(spill: &mut Spill) -> Result<RecordBatch> {
    if spill.reader.is_none() {
        spill.reader = Some(StreamReader::try_new(std::io::BufReader::new(std::fs::File::open(&spill.path)?), None)?);
    }
    match spill.reader.as_mut().expect("just set").next() {
        Some(batch) => Ok(batch?),
        None => Err(DataFusionError::Internal("SharedExec: a spilled batch is missing".into())),
    }
}

/// [`produce`], with a panic sent to every reader as an error (a reader whose
/// rows stopped coming must not look like one that had all its rows).
async fn guarded(input: SendableRecordBatchStream, queues: Vec<Arc<Queue>>) {
    use futures::FutureExt;
    let outcome = std::panic::AssertUnwindSafe(produce(input, &queues)).catch_unwind().await;
    let end = match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Arc::new(e)),
        Err(panic) => {
            let what = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            Err(Arc::new(DataFusionError::Execution(format!("computing a shared node panicked: {what}"))))
        }
    };
    for q in &queues {
        q.finish(end.clone());
    }
}

async fn produce(mut input: SendableRecordBatchStream, queues: &[Arc<Queue>]) -> Result<()> {
    while let Some(batch) = futures::StreamExt::next(&mut input).await {
        let batch = batch?;
        for q in queues {
            q.offer(&batch).await?;
        }
        if queues.iter().all(|q| q.closed.load(Ordering::Relaxed)) {
            return Ok(());
        }
    }
    Ok(())
}

/// A reader's stream; holding the producer keeps it running until every reader is gone.
pub(crate) fn stream<P: Send + Sync + 'static>(schema: SchemaRef, queue: Arc<Queue>, producer: Arc<P>) -> SendableRecordBatchStream {
    struct Reader<P> {
        queue: Arc<Queue>,
        _producer: Arc<P>,
    }
    impl<P> Drop for Reader<P> {
        fn drop(&mut self) {
            let mut state = self.queue.state.lock().unwrap_or_else(|e| e.into_inner());
            self.queue.closed.store(true, Ordering::Relaxed);
            state.items.clear();
            state.reservation.free();
        }
    }
    let reader = Reader { queue, _producer: producer };
    let rows = futures::stream::unfold(reader, |reader| async move {
        let next = reader.queue.next().await;
        next.map(|b| (b, reader))
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, rows))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::logical_expr::LogicalPlanBuilder;

    use super::*;

    /// One reader's instance of the node's input: two partitions of one row each, `tag`
    /// in every row. Instances with different tags show the same plan text, as two
    /// readers' instances of one plan do while splitting rows differently.
    fn instance(tag: i64) -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![Field::new("tag", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(vec![tag]))]).unwrap();
        MemorySourceConfig::try_new_exec(&[vec![batch.clone()], vec![batch]], schema, None).unwrap()
    }

    #[tokio::test]
    async fn every_partition_is_computed_from_the_first_readers_instance() {
        let LogicalPlan::Extension(e) = share(LogicalPlanBuilder::empty(false).build().unwrap(), "x", 2).0 else { unreachable!() };
        let shared = e.node.as_any().downcast_ref::<Shared>().unwrap();
        let (a, b) = (plan(shared, instance(1)), plan(shared, instance(2)));
        let ctx = Arc::new(TaskContext::default());
        // Reader b reaches partition 1 before reader a does.
        let streams = [a.execute(0, Arc::clone(&ctx)), b.execute(1, Arc::clone(&ctx)), a.execute(1, Arc::clone(&ctx)), b.execute(0, Arc::clone(&ctx))];
        let mut tags = Vec::new();
        for stream in streams {
            for batch in datafusion::physical_plan::common::collect(stream.unwrap()).await.unwrap() {
                tags.extend(batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().iter().copied());
            }
        }
        assert_eq!(tags, vec![1, 1, 1, 1], "each reader gets partitions 0 and 1 of reader a's instance");
        release(&[shared.id]);
    }
}
