//! The query planner of a scheduler (and of `--standalone`'s in-process one):
//! plans the nodes Kiln ships to a cluster that DataFusion's planner does not know.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

/// Plans [`DeltaWrite`](crate::sinks::delta_write::DeltaWrite) nodes, and [`crate::sinks::files_write::FilesWrite`] ones.
struct WritePlanner;

#[async_trait]
impl ExtensionPlanner for WritePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if let Some(files) = crate::sinks::files_write::plan(node, physical_inputs) {
            return files.map(Some);
        }
        // Node markers (`--metrics` on a cluster) count on the executors.
        if let Some(marked) = crate::node_metrics::plan(node, physical_inputs) {
            return Ok(Some(marked));
        }
        #[cfg(feature = "delta")]
        if let Some(w) = node.as_any().downcast_ref::<crate::sinks::delta_write::DeltaWrite>() {
            return Ok(Some(Arc::new(crate::sinks::delta_write::DeltaWriteExec::new(Arc::clone(&physical_inputs[0]), w.spec.clone()))));
        }
        Ok(None)
    }
}

/// The query planner of a scheduler (and of `--standalone`'s): DataFusion's,
/// plus Kiln's cluster writes ([`DeltaWrite`](crate::sinks::delta_write::DeltaWrite), [`crate::sinks::files_write::FilesWrite`]) and node markers
/// (`--metrics` on a cluster).
#[derive(Debug)]
pub struct SchedulerPlanner;

#[async_trait]
impl QueryPlanner for SchedulerPlanner {
    async fn create_physical_plan(&self, logical_plan: &LogicalPlan, session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(WritePlanner)]).create_physical_plan(logical_plan, session).await
    }
}
