//! Parquet, CSV and JSON sinks written by a cluster (to an object store, or to a
//! directory every process shares).
//!
//! Ballista reruns a task whose executor died, and the attempt that died may
//! already have put some of its part files on the store (an object appears
//! whole, but an attempt's set of parts does not). DataFusion names a write's
//! parts with a fresh id per execution, so the parts of a lost attempt and of
//! its rerun would both sit under the run's staging prefix, and a commit of
//! everything staged would hold some rows twice.
//!
//! So the write is Spark's task-commit protocol in miniature: the sink's plan
//! (DataFusion's `COPY TO` the run's staging prefix) is wrapped in a
//! [`FilesWrite`] node, which the scheduler plans as a [`FilesWriteExec`]. Each
//! execution of it picks an attempt id, writes its parts under
//! `STAGING/RUN/ATTEMPT/` with DataFusion's own sink, and returns one row:
//! the rows it wrote and its attempt id. Only attempts that succeeded return
//! rows to the client, and the client commits only their parts
//! ([`crate::storage::remote::Target::commit`]; on a shared disk,
//! `commit::keep_attempts` lifts them out of their attempt directories before
//! the usual rename); the rest of the staging prefix (lost attempts, and any a
//! lost executor finishes later) is deleted with it, or by the next run's
//! recovery.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef, Result, exec_err};
use datafusion::datasource::file_format::csv::CsvSink;
use datafusion::datasource::file_format::json::JsonSink;
use datafusion::datasource::file_format::parquet::ParquetSink;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::physical_plan::{FileSink, FileSinkConfig};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// What a write returns: one row per successful attempt.
pub fn result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("rows", DataType::UInt64, false), Field::new("attempt", DataType::Utf8, false)]))
}

/// The logical write: `input` is DataFusion's `COPY TO` the run's staging prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesWrite {
    input: LogicalPlan,
    schema: DFSchemaRef,
}

impl FilesWrite {
    pub fn new(input: LogicalPlan) -> Result<Self> {
        let schema = Arc::new(DFSchema::try_from(result_schema())?);
        Ok(FilesWrite { input, schema })
    }
}

impl PartialOrd for FilesWrite {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.input.partial_cmp(&other.input)
    }
}

impl Hash for FilesWrite {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.input.hash(state);
    }
}

impl UserDefinedLogicalNodeCore for FilesWrite {
    fn name(&self) -> &str {
        "FilesWrite"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FilesWrite")
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(FilesWrite { input: inputs.swap_remove(0), schema: self.schema.clone() })
    }
}

/// The physical write: its child is DataFusion's `DataSinkExec`, re-aimed at an
/// attempt directory each time it executes.
#[derive(Debug)]
pub struct FilesWriteExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl FilesWriteExec {
    pub fn try_new(input: Arc<dyn ExecutionPlan>) -> Result<Self> {
        if input.downcast_ref::<DataSinkExec>().is_none() {
            return exec_err!("a files write wraps a DataSinkExec, not {}", input.name());
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(result_schema()),
            datafusion::physical_expr::Partitioning::UnknownPartitioning(input.properties().partitioning.partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(FilesWriteExec { input, properties })
    }
}

impl DisplayAs for FilesWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FilesWriteExec")
    }
}

/// How an attempt's directory name starts.
pub const ATTEMPT_PREFIX: &str = "attempt-";

/// An id no other execution of any task picks.
fn attempt_id() -> String {
    format!("{ATTEMPT_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

/// `config` writing under `ATTEMPT/` of its directory.
fn under_attempt(config: &FileSinkConfig, attempt: &str) -> Result<FileSinkConfig> {
    let [base] = config.table_paths.as_slice() else { return exec_err!("a files write has one output path") };
    let base = base.as_str().trim_end_matches('/');
    let mut moved = config.clone();
    moved.original_url = format!("{base}/{attempt}/");
    moved.table_paths = vec![ListingTableUrl::parse(&moved.original_url)?];
    Ok(moved)
}

/// The same sink as `sink`, writing under `ATTEMPT/`.
fn reaimed(sink: &dyn DataSink, attempt: &str) -> Result<Arc<dyn DataSink>> {
    if let Some(s) = sink.downcast_ref::<ParquetSink>() {
        return Ok(Arc::new(ParquetSink::new(under_attempt(s.config(), attempt)?, s.parquet_options().clone())));
    }
    if let Some(s) = sink.downcast_ref::<CsvSink>() {
        return Ok(Arc::new(CsvSink::new(under_attempt(s.config(), attempt)?, s.writer_options().clone())));
    }
    if let Some(s) = sink.downcast_ref::<JsonSink>() {
        return Ok(Arc::new(JsonSink::new(under_attempt(s.config(), attempt)?, s.writer_options().clone())));
    }
    exec_err!("a files write of a sink Kiln does not stage by attempt")
}

impl ExecutionPlan for FilesWriteExec {
    fn name(&self) -> &str {
        "FilesWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(FilesWriteExec::try_new(children.swap_remove(0))?))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let Some(write) = self.input.downcast_ref::<DataSinkExec>() else { return exec_err!("a files write wraps a DataSinkExec") };
        let attempt = attempt_id();
        tracing::info!(partition, attempt = %attempt, "writing staged parts");
        let sink = reaimed(write.sink(), &attempt)?;
        let exec = DataSinkExec::new(write.input().clone(), sink, write.sort_order().clone());
        let counts = exec.execute(partition, context)?;
        let done = async move {
            let batches: Vec<RecordBatch> = counts.collect::<Vec<_>>().await.into_iter().collect::<Result<_>>()?;
            let rows: u64 = batches.iter().filter_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>()).flat_map(|a| a.iter().flatten()).sum();
            tracing::info!(partition, attempt = %attempt, rows, "wrote staged parts");
            Ok(RecordBatch::try_new(result_schema(), vec![Arc::new(UInt64Array::from(vec![rows])), Arc::new(StringArray::from(vec![attempt]))])?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(result_schema(), futures::stream::once(done))))
    }
}

/// The rows written and the attempts that wrote them, from a write's result batches.
pub fn attempts(batches: &[RecordBatch]) -> std::result::Result<(u64, Vec<String>), String> {
    let (mut rows, mut attempts) = (0, Vec::new());
    for b in batches {
        let (Some(r), Some(a)) = (b.column(0).as_any().downcast_ref::<UInt64Array>(), b.column(1).as_any().downcast_ref::<StringArray>()) else {
            return Err("the cluster's write returned no attempts".into());
        };
        for i in 0..b.num_rows() {
            if r.is_null(i) || a.is_null(i) {
                return Err("the cluster's write returned a null attempt".into());
            }
            rows += r.value(i);
            attempts.push(a.value(i).to_string());
        }
    }
    Ok((rows, attempts))
}

/// Plans [`FilesWrite`] nodes (its input, the `COPY TO`, is planned already).
pub(crate) fn plan(node: &dyn datafusion::logical_expr::UserDefinedLogicalNode, physical_inputs: &[Arc<dyn ExecutionPlan>]) -> Option<Result<Arc<dyn ExecutionPlan>>> {
    node.as_any().downcast_ref::<FilesWrite>().map(|_| FilesWriteExec::try_new(Arc::clone(&physical_inputs[0])).map(|e| Arc::new(e) as _))
}
