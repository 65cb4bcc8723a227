//! Delta sinks on a cluster: the executors write the data files, the client
//! commits them.
//!
//! The sink's plan is wrapped in a [`DeltaWrite`] node. The scheduler plans it
//! as a [`DeltaWriteExec`] ([`SchedulerPlanner`](crate::cluster::planner::SchedulerPlanner)): each task writes its
//! partition's rows as Parquet files under the table's root with delta-rs'
//! writer (Hive partition directories, per-file statistics) and returns one
//! row per file, the file's `add` action as JSON. The client collects those
//! rows (a few hundred bytes per file) and commits them as one Delta
//! transaction once the run has succeeded (`sinks::delta`). A task that fails,
//! or runs twice because its executor died, leaves files no commit names: they
//! are not part of the table, and `VACUUM` removes them.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU64;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use deltalake_core::operations::write::writer::{DeltaWriter, WriterConfig};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// delta-rs' default: a task starts a new file after this many bytes.
const TARGET_FILE_SIZE: u64 = 100 * 1024 * 1024;

/// What a task needs to write its files: shipped to the executors as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub struct WriteSpec {
    /// The table's root as a URL (`file:///…/` or an object-store URL).
    pub table: String,
    pub partition_by: Vec<String>,
    /// The sink's `compression` (Spark's names).
    pub compression: Option<String>,
    /// Columns with statistics: the first N (`None`: all), unless `stats_columns` names them.
    pub stats_first: Option<u64>,
    pub stats_columns: Option<Vec<String>>,
}

/// The one column a write returns: an `add` action per file written.
pub fn action_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("add", DataType::Utf8, false)]))
}

/// The logical write: `input`'s rows into the table `spec` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaWrite {
    input: LogicalPlan,
    pub spec: WriteSpec,
    schema: DFSchemaRef,
}

impl DeltaWrite {
    pub fn new(input: LogicalPlan, spec: WriteSpec) -> Result<Self> {
        let schema = Arc::new(DFSchema::try_from(action_schema())?);
        Ok(DeltaWrite { input, spec, schema })
    }
}

impl Hash for DeltaWrite {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.input.hash(state);
        self.spec.hash(state);
    }
}

impl PartialOrd for DeltaWrite {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        match self.input.partial_cmp(&other.input) {
            Some(std::cmp::Ordering::Equal) => self.spec.partial_cmp(&other.spec),
            order => order,
        }
    }
}

impl UserDefinedLogicalNodeCore for DeltaWrite {
    fn name(&self) -> &str {
        "DeltaWrite"
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
        write!(f, "DeltaWrite: {}", crate::redact::text(&self.spec.table))
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(DeltaWrite { input: inputs.swap_remove(0), spec: self.spec.clone(), schema: self.schema.clone() })
    }
}

/// The physical write: one task per input partition, each writing its own files.
#[derive(Debug)]
pub struct DeltaWriteExec {
    input: Arc<dyn ExecutionPlan>,
    pub spec: WriteSpec,
    properties: Arc<PlanProperties>,
}

impl DeltaWriteExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, spec: WriteSpec) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(action_schema()),
            datafusion::physical_expr::Partitioning::UnknownPartitioning(input.properties().partitioning.partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        DeltaWriteExec { input, spec, properties }
    }
}

impl DisplayAs for DeltaWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DeltaWriteExec: {}", crate::redact::text(&self.spec.table))
    }
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl ExecutionPlan for DeltaWriteExec {
    fn name(&self) -> &str {
        "DeltaWriteExec"
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
        Ok(Arc::new(DeltaWriteExec::new(children.swap_remove(0), self.spec.clone())))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let spec = self.spec.clone();
        let schema = self.input.schema();
        let written = async move {
            let store = crate::sources::delta::log_store(&spec.table).map_err(external)?.object_store(None);
            let properties = super::delta::writer_properties(spec.compression.as_deref()).map_err(DataFusionError::Execution)?;
            let indexed = match spec.stats_first {
                Some(n) => delta_kernel::table_properties::DataSkippingNumIndexedCols::NumColumns(n),
                None => delta_kernel::table_properties::DataSkippingNumIndexedCols::AllColumns,
            };
            let config = WriterConfig::new(
                schema,
                spec.partition_by.clone(),
                Some(properties),
                NonZeroU64::new(TARGET_FILE_SIZE),
                None,
                indexed,
                spec.stats_columns.clone(),
            );
            let mut writer = DeltaWriter::new(store, config);
            let mut input = input;
            while let Some(batch) = input.next().await {
                let written = match batch {
                    Ok(batch) => writer.write(&batch).await.map_err(external),
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    // The files written so far are named by no commit; removed here when possible.
                    let _ = writer.abort().await;
                    return Err(e);
                }
            }
            let adds = writer.close().await.map_err(external)?;
            // No table URL: an executor does not know which of its parts came from the
            // client's environment (`${env.X}`), so it could not redact them.
            tracing::info!(partition, files = adds.len(), "wrote Delta data files");
            let json = adds.iter().map(serde_json::to_string).collect::<std::result::Result<Vec<_>, _>>().map_err(external)?;
            Ok(RecordBatch::try_new(action_schema(), vec![Arc::new(StringArray::from(json))])?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(action_schema(), futures::stream::once(written))))
    }
}
