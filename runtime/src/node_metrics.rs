//! Per-node metrics (`--metrics`, `--report`; SPEC §10): rows, bytes, time,
//! spill and partition sizes for every node of the spec.
//!
//! DataFusion's optimizer fuses and moves operators, so a node's operators are
//! found by a *marker* around each node's plan, inserted only when a run asks
//! for metrics ([`enable`]): a logical extension ([`NodeMark`]) that lets
//! filters, projections and limits through, planned as a pass-through operator
//! ([`NodeMetricsExec`]) that counts the rows and bytes leaving the node per
//! output partition. After the run, the operators between a marker and the
//! markers below it are the node's: their compute time and spill are summed
//! ([`collect`]). A subtree several plans share is counted once.
//!
//! What the figures mean, as in Spark's SQL tab: `rows_out` counts the rows
//! that left the node in the executed plan. Later nodes' filters are not
//! pushed into it logically (the marker stops them), but a limit is, and a
//! Parquet source counts only the row groups a later filter did not prune.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchemaRef, Result, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::filter_pushdown::{ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricValue, MetricsSet};
use datafusion::physical_plan::projection::{ProjectionExec, make_with_child};
use datafusion::physical_plan::{ChildStats, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, StatisticsArgs};
use datafusion::prelude::SessionContext;
use futures::{Stream, StreamExt};

/// The markers a run executed; a session config extension, present only when
/// the run collects metrics.
#[derive(Debug, Default)]
pub struct Registry {
    /// Whether every node is marked (`--metrics`/`--report`), or only each sink's
    /// top (progress).
    pub nodes: bool,
    /// Whether each source is marked too (progress's estimate of what remains). Only
    /// when every source is local Parquet, which prunes physically: a marker stops a
    /// later filter from reaching a PostgreSQL source's `WHERE` or an ORC scan.
    pub sources: bool,
    /// With `sources`: only these (a stream's sources: static ones keep their pushdown).
    pub only: Option<std::collections::HashSet<String>>,
    /// Each join's strategy and why, as the planning that built the executed plans chose it.
    joins: Mutex<BTreeMap<String, String>>,
    markers: Mutex<Vec<Registered>>,
}

/// A marker that ran. The registry holds no plan: a finished sink's plan (a
/// broadcast join's hash table, say) is freed while other sinks still run. The
/// marker's own counters stay (`metrics`); its segment's figures are read from
/// the plan while it lives and from the snapshot its streams leave when they end.
#[derive(Debug, Clone)]
struct Registered {
    node: String,
    sink: Option<String>,
    partitions: usize,
    metrics: ExecutionPlanMetricsSet,
    input: std::sync::Weak<dyn ExecutionPlan>,
    snapshot: Arc<Mutex<Option<Segment>>>,
}

/// A segment's operators, as one stream's end saw them.
#[derive(Debug, Clone, Default)]
struct Segment {
    operators: Vec<Operator>,
    /// With per-node metrics, a sink's executed plan with its operators' metrics.
    plan: Option<String>,
}

#[derive(Debug, Clone)]
struct Operator {
    /// Identity within the run (address and name), to count a shared operator once.
    id: (usize, String),
    nanos: u64,
    spill_count: u64,
    spill_bytes: u64,
    spill_rows: u64,
    peak: u64,
}

impl Registry {
    /// Rows and bytes (their Arrow size) each running sink has received so far
    /// (its top marker's counts), by sink.
    pub fn sink_rows(&self) -> Vec<(String, u64, u64)> {
        let markers = self.markers.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, u64, u64)> = Vec::new();
        for m in markers.iter() {
            if let Some(sink) = &m.sink {
                let metrics = m.metrics.clone_inner();
                let rows = metrics.output_rows().unwrap_or(0) as u64;
                let bytes = metrics.sum_by_name("output_bytes").map_or(0, |v| v.as_usize() as u64);
                match out.iter_mut().find(|(s, _, _)| s == sink) {
                    Some((_, r, b)) => {
                        *r += rows;
                        *b += bytes;
                    }
                    None => out.push((sink.clone(), rows, bytes)),
                }
            }
        }
        out
    }

    /// Rows node `node`'s markers have passed so far (not a sink's top marker).
    pub fn node_rows(&self, node: &str) -> u64 {
        let markers = self.markers.lock().unwrap_or_else(|e| e.into_inner());
        markers.iter().filter(|m| m.sink.is_none() && m.node == node).map(|m| m.metrics.clone_inner().output_rows().unwrap_or(0) as u64).sum()
    }

    /// Records the join strategies a planning chose (`explain`'s lines, without the prefix).
    pub fn set_join_strategies(&self, notes: &[(String, String)]) {
        let mut joins = self.joins.lock().unwrap_or_else(|e| e.into_inner());
        for (node, note) in notes {
            if let Some(why) = note.strip_prefix("join strategy: ") {
                joins.insert(node.clone(), why.to_string());
            }
        }
    }

    /// The strategy recorded for join `node`.
    pub fn join_strategy(&self, node: &str) -> Option<String> {
        self.joins.lock().unwrap_or_else(|e| e.into_inner()).get(node).cloned()
    }

    /// Whether source `name` gets a marker.
    pub fn marks_source(&self, name: &str) -> bool {
        self.sources && self.only.as_ref().is_none_or(|only| only.contains(name))
    }

    /// Rows one complete read of node `node` produced. Per output partition, the most
    /// any of its markers passed, summed: a node read by several plans (a streaming
    /// batch's window step and its sinks) counts once, and a shared node, whose
    /// partitions each run under one reader's marker, counts every partition.
    pub fn node_rows_once(&self, node: &str) -> u64 {
        let markers = self.markers.lock().unwrap_or_else(|e| e.into_inner());
        let mut per_partition: std::collections::BTreeMap<usize, u64> = std::collections::BTreeMap::new();
        for m in markers.iter().filter(|m| m.sink.is_none() && m.node == node) {
            for metric in m.metrics.clone_inner().iter() {
                if let (datafusion::physical_plan::metrics::MetricValue::OutputRows(count), Some(p)) = (metric.value(), metric.partition()) {
                    let at = per_partition.entry(p).or_default();
                    *at = (*at).max(count.value() as u64);
                }
            }
        }
        per_partition.values().sum()
    }

    fn register(&self, exec: &NodeMetricsExec) {
        let mut markers = self.markers.lock().unwrap_or_else(|e| e.into_inner());
        if !markers.iter().any(|m| Arc::ptr_eq(&m.snapshot, &exec.snapshot)) {
            markers.push(Registered {
                node: exec.node.clone(),
                sink: exec.sink.clone(),
                partitions: exec.input.properties().partitioning.partition_count(),
                metrics: exec.metrics.clone(),
                input: Arc::downgrade(&exec.input),
                snapshot: exec.snapshot.clone(),
            });
        }
    }

    /// Forgets what ran so far (planning-time passes: hot keys, checkpoints, skew report).
    pub fn clear(&self) {
        self.markers.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The session's registry, when the run collects metrics.
pub fn registry(ctx: &SessionContext) -> Option<Arc<Registry>> {
    ctx.state().config().get_extension::<Registry>()
}

/// Makes the session count rows into each sink (progress) and, with `nodes`,
/// collect per-node metrics.
pub fn enable(config: datafusion::prelude::SessionConfig, nodes: bool, sources: bool) -> datafusion::prelude::SessionConfig {
    config.with_extension(Arc::new(Registry { nodes, sources, ..Registry::default() }))
}

/// A registry that marks the named sources (a streaming batch counts its streams'
/// rows) and, with `nodes` (`--metrics`, `--report`), every other node.
pub fn enable_for_sources(config: datafusion::prelude::SessionConfig, names: std::collections::HashSet<String>, nodes: bool) -> datafusion::prelude::SessionConfig {
    config.with_extension(Arc::new(Registry { nodes, sources: true, only: Some(names), ..Registry::default() }))
}

/// Adds one run's (a stream's batch's) figures for a node to those of earlier
/// ones: counts, bytes, times and spills add up, partitions add up one by one,
/// peak memory is the largest; [`NodeMetrics::finish`] then summarises them.
pub fn accumulate(total: &mut NodeMetrics, more: &NodeMetrics) {
    if let Some(r) = more.rows_in {
        total.rows_in = Some(total.rows_in.unwrap_or(0) + r);
    }
    total.rows_out += more.rows_out;
    total.bytes_out += more.bytes_out;
    total.elapsed_ms += more.elapsed_ms;
    total.wall_ms += more.wall_ms;
    total.spill_count += more.spill_count;
    total.spill_bytes += more.spill_bytes;
    total.spill_rows += more.spill_rows;
    total.peak_memory_bytes = total.peak_memory_bytes.max(more.peak_memory_bytes);
    if total.partition_rows.len() < more.partition_rows.len() {
        total.partition_rows.resize(more.partition_rows.len(), 0);
    }
    for (t, m) in total.partition_rows.iter_mut().zip(&more.partition_rows) {
        *t += m;
    }
    for op in &more.operators {
        if !total.operators.contains(op) {
            total.operators.push(op.clone());
        }
    }
    if more.join_strategy.is_some() {
        total.join_strategy.clone_from(&more.join_strategy);
    }
    total.finish();
}

/// `plan` without its markers (what a run without metrics plans).
pub fn unmark(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    Ok(plan
        .transform_up(|p| match &p {
            LogicalPlan::Extension(e) => match e.node.as_any().downcast_ref::<NodeMark>() {
                Some(m) => Ok(Transformed::yes(m.input.clone())),
                None => Ok(Transformed::no(p)),
            },
            _ => Ok(Transformed::no(p)),
        })?
        .data)
}

/// `plan` inside a marker for `node`.
pub fn mark(node: &str, plan: LogicalPlan) -> LogicalPlan {
    LogicalPlan::Extension(Extension { node: Arc::new(NodeMark { input: plan, node: node.to_string(), sink: None }) })
}

/// `plan` (node `node`'s, as sink `sink` reads it) inside a sink's top marker:
/// it counts the rows reaching the sink (progress), not as the node's; the
/// operators the optimizer moved above the node's own marker (a sort floats up
/// to the sink that needs the order) are still the node's.
pub fn mark_top(node: &str, sink: &str, plan: LogicalPlan) -> LogicalPlan {
    LogicalPlan::Extension(Extension { node: Arc::new(NodeMark { input: plan, node: node.to_string(), sink: Some(sink.to_string()) }) })
}

/// The marker of `node` (and `sink`, for a sink's top marker) around `input`, as the cluster codec rebuilds it.
pub fn marker(input: LogicalPlan, node: String, sink: Option<String>) -> Extension {
    Extension { node: Arc::new(NodeMark { input, node, sink }) }
}

/// Plans a [`NodeMark`] (for the local and the scheduler's query planners); `None` for any other node.
pub(crate) fn plan(node: &dyn datafusion::logical_expr::UserDefinedLogicalNode, physical_inputs: &[Arc<dyn ExecutionPlan>]) -> Option<Arc<dyn ExecutionPlan>> {
    let m = node.as_any().downcast_ref::<NodeMark>()?;
    Some(Arc::new(NodeMetricsExec::new(Arc::clone(&physical_inputs[0]), m.node.clone(), m.sink.clone())))
}

/// The logical marker: no expressions, the input's schema, transparent to
/// projection and limit pushdown. Filters stop here, so a node's rows are its
/// own (a source's are the rows it read, not those a later filter kept); the
/// physical marker lets them through again, so a Parquet scan still prunes
/// row groups with them, and hash joins' dynamic filters still reach scans.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct NodeMark {
    input: LogicalPlan,
    pub node: String,
    /// The sink, for a sink's top marker ([`mark_top`]).
    pub sink: Option<String>,
}

impl UserDefinedLogicalNodeCore for NodeMark {
    fn name(&self) -> &str {
        "KilnNode"
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
        write!(f, "KilnNode: {}", self.node)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(NodeMark { input: inputs.swap_remove(0), node: self.node.clone(), sink: self.sink.clone() })
    }

    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        Some(vec![output_columns.to_vec()])
    }

    fn supports_limit_pushdown(&self) -> bool {
        true
    }
}

/// The physical marker: passes batches through, counting them.
#[derive(Debug, Clone)]
pub struct NodeMetricsExec {
    input: Arc<dyn ExecutionPlan>,
    node: String,
    sink: Option<String>,
    metrics: ExecutionPlanMetricsSet,
    snapshot: Arc<Mutex<Option<Segment>>>,
}

impl NodeMetricsExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, node: String, sink: Option<String>) -> Self {
        NodeMetricsExec { input, node, sink, metrics: ExecutionPlanMetricsSet::new(), snapshot: Arc::default() }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The sink, for a sink's top marker.
    pub fn sink(&self) -> Option<&str> {
        self.sink.as_deref()
    }

    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    fn rewrap(&self, input: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        Arc::new(NodeMetricsExec::new(input, self.node.clone(), self.sink.clone()))
    }
}

impl DisplayAs for NodeMetricsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.sink {
            None => write!(f, "KilnNodeExec: {}", self.node),
            Some(sink) => write!(f, "KilnNodeExec: {} (into sink {sink})", self.node),
        }
    }
}

impl ExecutionPlan for NodeMetricsExec {
    fn name(&self) -> &str {
        "KilnNodeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self.rewrap(children.swap_remove(0)))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let registry = context.session_config().get_extension::<Registry>();
        if let Some(registry) = &registry {
            registry.register(self);
        }
        // With per-node metrics, each stream's end records the segment's figures.
        let snapshot = registry.filter(|r| r.nodes).map(|_| (Arc::clone(&self.input), self.snapshot.clone(), self.sink.is_some()));
        let input = self.input.execute(partition, context)?;
        let rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let bytes = MetricBuilder::new(&self.metrics).counter("output_bytes", partition);
        let start = MetricBuilder::new(&self.metrics).start_timestamp(partition);
        let end = MetricBuilder::new(&self.metrics).end_timestamp(partition);
        Ok(Box::pin(CountingStream { input, rows, bytes, start: Some(start), end, snapshot }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(&self, input_stats: &[Arc<Statistics>], _args: &StatisticsArgs) -> Result<Arc<Statistics>> {
        Ok(Arc::clone(&input_stats[0]))
    }

    fn supports_limit_pushdown(&self) -> bool {
        true
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }

    /// P(M(x)) → M(P(x)): the projection goes under the marker (never handed to
    /// the input's own swap, which assumes the projection sits right on it).
    fn try_swapping_with_projection(&self, projection: &ProjectionExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(Some(self.rewrap(make_with_child(projection, &self.input)?)))
    }

    fn gather_filters_for_pushdown(&self, _phase: FilterPushdownPhase, parent_filters: Vec<Arc<dyn PhysicalExpr>>, _config: &ConfigOptions) -> Result<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::if_all(child_pushdown_result))
    }
}

struct CountingStream {
    input: SendableRecordBatchStream,
    rows: datafusion::physical_plan::metrics::Count,
    bytes: datafusion::physical_plan::metrics::Count,
    start: Option<datafusion::physical_plan::metrics::Timestamp>,
    end: datafusion::physical_plan::metrics::Timestamp,
    /// The segment to record when this stream ends, where to, and whether with the plan's text.
    snapshot: Option<(Arc<dyn ExecutionPlan>, Arc<Mutex<Option<Segment>>>, bool)>,
}

impl Stream for CountingStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(start) = self.start.take() {
            start.record();
        }
        let poll = self.input.poll_next_unpin(cx);
        match &poll {
            Poll::Ready(Some(Ok(batch))) => {
                self.rows.add(batch.num_rows());
                self.bytes.add(batch.get_array_memory_size());
            }
            Poll::Ready(None) => {
                self.end.record();
                if let Some((plan, slot, with_text)) = &self.snapshot {
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot(plan, *with_text));
                }
            }
            _ => {}
        }
        poll
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.input.size_hint()
    }
}

impl RecordBatchStream for CountingStream {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}

/// One node's figures (`--metrics` JSON, `nodes.NAME`; schema in the README).
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct NodeMetrics {
    /// Rows its inputs passed it: the sum of their `rows_out` (absent for a source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_in: Option<u64>,
    /// Rows that left the node in the executed plan.
    pub rows_out: u64,
    /// Their in-memory size (Arrow buffers).
    pub bytes_out: u64,
    /// Time the node's operators computed, summed over partitions (CPU time, as
    /// Spark's operator times): decoding for sources, hashing for joins, ….
    pub elapsed_ms: f64,
    /// From the first batch asked of the node to its last partition's end.
    pub wall_ms: f64,
    pub spill_count: u64,
    pub spill_bytes: u64,
    pub spill_rows: u64,
    /// Peak memory its operators reserved (hash tables, sort buffers), summed over partitions.
    pub peak_memory_bytes: u64,
    /// Output partitions and their rows: skew shows as max ≫ median.
    pub partitions: usize,
    pub partition_rows_max: u64,
    pub partition_rows_median: u64,
    pub partition_rows: Vec<u64>,
    /// DataFusion operators attributed to the node, outermost first.
    pub operators: Vec<String>,
    /// A join: the strategy Kiln chose and why (the `explain` line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_strategy: Option<String>,
}

impl NodeMetrics {
    /// The partition counts' summary (count, max, lower median) and the compute
    /// time rounded to microseconds, once `partition_rows` and `elapsed_ms` are summed.
    pub(crate) fn finish(&mut self) {
        self.partitions = self.partition_rows.len();
        let mut sorted = self.partition_rows.clone();
        sorted.sort_unstable();
        self.partition_rows_max = sorted.last().copied().unwrap_or(0);
        self.partition_rows_median = if sorted.is_empty() { 0 } else { sorted[(sorted.len() - 1) / 2] };
        self.elapsed_ms = (self.elapsed_ms * 1000.0).round() / 1000.0;
    }
}

/// The segment under a marker as it is now (its operators' metrics so far).
fn snapshot(plan: &Arc<dyn ExecutionPlan>, with_text: bool) -> Segment {
    let mut operators = Vec::new();
    segment(plan, &mut operators);
    let plan = with_text.then(|| datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan.as_ref()).indent(true).to_string());
    Segment { operators, plan }
}

/// A marker's segment: from its plan if that still lives, else its last snapshot.
fn current(m: &Registered, with_text: bool) -> Segment {
    match m.input.upgrade() {
        Some(plan) => snapshot(&plan, with_text),
        None => m.snapshot.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default(),
    }
}

/// The executed plan (with every operator's metrics) each sink ran, by sink.
pub fn plans(registry: &Registry) -> BTreeMap<String, String> {
    let markers = registry.markers.lock().unwrap_or_else(|e| e.into_inner()).clone();
    markers.iter().filter_map(|m| Some((m.sink.clone()?, current(m, true).plan?))).collect()
}

/// The figures of every node the run executed.
pub fn collect(registry: &Registry) -> BTreeMap<String, NodeMetrics> {
    let markers = registry.markers.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut out: BTreeMap<String, NodeMetrics> = BTreeMap::new();
    let mut seen: HashSet<(usize, String)> = HashSet::new();
    let mut spans: HashMap<String, (Option<i64>, Option<i64>)> = HashMap::new();
    for marker in &markers {
        let m = out.entry(marker.node.clone()).or_default();
        for op in current(marker, false).operators {
            if seen.insert(op.id.clone()) {
                m.operators.push(op.id.1.clone());
                m.elapsed_ms += op.nanos as f64 / 1e6;
                m.spill_count += op.spill_count;
                m.spill_bytes += op.spill_bytes;
                m.spill_rows += op.spill_rows;
                m.peak_memory_bytes += op.peak;
            }
        }
        if marker.sink.is_some() {
            // A sink's top marker: its operators are the node's; its rows are the sink's.
            continue;
        }
        let set = marker.metrics.clone_inner();
        let n = marker.partitions;
        let mut per_partition = vec![0u64; n];
        let span = spans.entry(marker.node.clone()).or_default();
        for metric in set.iter() {
            match (metric.value(), metric.partition()) {
                (MetricValue::OutputRows(c), Some(p)) if p < n => per_partition[p] += c.value() as u64,
                (MetricValue::Count { name, count }, _) if name == "output_bytes" => m.bytes_out += count.value() as u64,
                (MetricValue::StartTimestamp(t), _) => {
                    if let Some(ns) = t.value().and_then(|v| v.timestamp_nanos_opt()) {
                        span.0 = Some(span.0.map_or(ns, |s| s.min(ns)));
                    }
                }
                (MetricValue::EndTimestamp(t), _) => {
                    if let Some(ns) = t.value().and_then(|v| v.timestamp_nanos_opt()) {
                        span.1 = Some(span.1.map_or(ns, |e| e.max(ns)));
                    }
                }
                _ => {}
            }
        }
        m.rows_out += per_partition.iter().sum::<u64>();
        if m.partition_rows.len() < per_partition.len() {
            m.partition_rows.resize(per_partition.len(), 0);
        }
        for (i, r) in per_partition.iter().enumerate() {
            m.partition_rows[i] += r;
        }
    }
    for (node, m) in out.iter_mut() {
        if let Some((Some(s), Some(e))) = spans.get(node) {
            m.wall_ms = (e - s).max(0) as f64 / 1e6;
        }
        m.finish();
    }
    out
}

/// Each node's `rows_in`: what its inputs' markers counted leaving them.
pub fn add_rows_in(pipeline: &crate::plan::Pipeline, nodes: &mut BTreeMap<String, NodeMetrics>) {
    for node in &pipeline.nodes {
        let inputs = node.op.inputs();
        if inputs.is_empty() {
            continue;
        }
        let rows: Option<u64> = inputs.iter().map(|i| nodes.get(*i).map(|m| m.rows_out)).sum();
        if let (Some(rows), Some(m)) = (rows, nodes.get_mut(&node.name)) {
            m.rows_in = Some(rows);
        }
    }
}

/// The operators under a marker, down to the next markers.
fn segment(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<Operator>) {
    if plan.downcast_ref::<NodeMetricsExec>().is_some() {
        return;
    }
    let id = (Arc::as_ptr(plan) as *const () as usize, plan.name().to_string());
    if out.iter().any(|o| o.id == id) {
        return;
    }
    let mut op = Operator { id, nanos: 0, spill_count: 0, spill_bytes: 0, spill_rows: 0, peak: 0 };
    if let Some(set) = plan.metrics() {
        let mut nanos = set.elapsed_compute().unwrap_or(0);
        for metric in set.iter() {
            if let MetricValue::Time { name, time } = metric.value() {
                // File scans time their decoding under this name, not elapsed_compute.
                if name == "time_elapsed_processing" {
                    nanos += time.value();
                }
            }
        }
        op.nanos = nanos as u64;
        op.spill_count = set.spill_count().unwrap_or(0) as u64;
        op.spill_bytes = set.spilled_bytes().unwrap_or(0) as u64;
        op.spill_rows = set.spilled_rows().unwrap_or(0) as u64;
        op.peak = set.sum(|x| matches!(x.value(), MetricValue::PeakMemoryUsage { .. })).map_or(0, |v| v.as_usize() as u64);
    }
    out.push(op);
    for child in plan.children() {
        segment(child, out);
    }
}
