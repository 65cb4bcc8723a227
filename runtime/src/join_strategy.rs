//! Per-join strategy hints, carried from the logical plan to the physical one.
//!
//! DataFusion picks a join's partition mode per session (statistics and
//! thresholds), not per join. A spec decides per join, so the join's input that
//! the hint is about is wrapped in a no-op [`JoinHint`] logical node; it is
//! planned as a [`JoinHintExec`], and [`JoinStrategyRule`], running right after
//! DataFusion's `JoinSelection`, sets the hash join's mode from it and removes
//! the marker:
//! - broadcast: `CollectLeft` with the hinted side as the build side, collected
//!   once and shared by all partitions;
//! - shuffle: `Partitioned`, both sides hash-partitioned on the keys, the
//!   hinted side (the right) building the hash tables.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, Result};
use datafusion::config::ConfigOptions;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

/// What the hinted input of a join is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum Hint {
    /// This side is collected once and shared (the hash table's build side).
    Broadcast,
    /// Both sides are hash-partitioned on the join keys.
    Shuffle,
    /// Both sides sorted on the keys and merged: spills instead of holding a
    /// hash table in memory.
    SortMerge,
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Hint::Broadcast => "broadcast",
            Hint::Shuffle => "shuffle",
            Hint::SortMerge => "sort_merge",
        })
    }
}

/// Wraps `input` in a hint marker.
pub fn hint(input: LogicalPlan, hint: Hint) -> LogicalPlan {
    LogicalPlan::Extension(Extension { node: Arc::new(JoinHint { input, hint }) })
}

/// The logical marker: passes its input through unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct JoinHint {
    input: LogicalPlan,
    hint: Hint,
}

impl JoinHint {
    pub fn new(input: LogicalPlan, hint: Hint) -> Self {
        JoinHint { input, hint }
    }

    pub fn hint(&self) -> Hint {
        self.hint
    }
}

impl UserDefinedLogicalNodeCore for JoinHint {
    fn name(&self) -> &str {
        "JoinHint"
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
        write!(f, "JoinHint: {}", self.hint)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(JoinHint { input: inputs.swap_remove(0), hint: self.hint })
    }

    /// A marker does not stop filters from reaching its input.
    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        HashSet::new()
    }

    /// Nor projections.
    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        Some(vec![output_columns.to_vec()])
    }

    fn supports_limit_pushdown(&self) -> bool {
        true
    }
}

/// The physical marker; removed by [`JoinStrategyRule`] before execution.
#[derive(Debug)]
pub struct JoinHintExec {
    input: Arc<dyn ExecutionPlan>,
    hint: Hint,
}

impl DisplayAs for JoinHintExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "JoinHintExec: {}", self.hint)
    }
}

impl ExecutionPlan for JoinHintExec {
    fn name(&self) -> &str {
        "JoinHintExec"
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

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(JoinHintExec { input: children.swap_remove(0), hint: self.hint }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

/// Plans [`JoinHint`], [`crate::split::Split`] and [`crate::shared::Shared`] nodes.
struct HintPlanner;

#[async_trait]
impl ExtensionPlanner for HintPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if let Some(s) = node.as_any().downcast_ref::<crate::split::Split>() {
            return crate::split::plan(s, Arc::clone(&physical_inputs[0]), session).map(Some);
        }
        if let Some(s) = node.as_any().downcast_ref::<crate::shared::Shared>() {
            return Ok(Some(crate::shared::plan(s, Arc::clone(&physical_inputs[0]))));
        }
        if let Some(marked) = crate::node_metrics::plan(node, physical_inputs) {
            return Ok(Some(marked));
        }
        let Some(h) = node.as_any().downcast_ref::<JoinHint>() else {
            return Ok(None);
        };
        Ok(Some(Arc::new(JoinHintExec { input: Arc::clone(&physical_inputs[0]), hint: h.hint })))
    }
}

/// DataFusion's planner plus [`HintPlanner`] and (with the `delta` feature) delta-rs' planner of its
/// own nodes (the metrics of a Delta write, in `sinks::delta`); windows whose output order nothing
/// uses then sort by group only ([`crate::group_sort`]).
#[derive(Debug)]
pub struct KilnQueryPlanner;

#[async_trait]
impl QueryPlanner for KilnQueryPlanner {
    async fn create_physical_plan(&self, logical_plan: &LogicalPlan, session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        #[cfg_attr(not(feature = "delta"), allow(unused_mut))]
        let mut planners: Vec<Arc<dyn ExtensionPlanner + Send + Sync>> = vec![Arc::new(HintPlanner)];
        #[cfg(feature = "delta")]
        planners.push(deltalake_core::delta_datafusion::planner::DeltaExtensionPlanner::new());
        let physical = DefaultPhysicalPlanner::with_extension_planners(planners).create_physical_plan(logical_plan, session).await?;
        crate::group_sort::rewrite(logical_plan, physical)
    }
}

/// Applies hints to hash joins, then removes every marker.
#[derive(Debug, Default)]
pub struct JoinStrategyRule;

impl PhysicalOptimizerRule for JoinStrategyRule {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = plan
            .transform_up(|node| {
                let Some(join) = node.downcast_ref::<HashJoinExec>() else { return Ok(Transformed::no(node)) };
                let (left, right) = (find(join.left()), find(join.right()));
                let Some(hint) = left.or(right) else { return Ok(Transformed::no(node)) };
                let children = vec![strip(join.left())?, strip(join.right())?];
                if hint == Hint::SortMerge {
                    return sort_merge(join, children).map(Transformed::yes);
                }
                let mode = match hint {
                    Hint::Broadcast => PartitionMode::CollectLeft,
                    Hint::Shuffle | Hint::SortMerge => PartitionMode::Partitioned,
                };
                let join = join.builder().with_new_children(children)?.with_partition_mode(mode).build()?;
                // The hinted side is the build (left) side: the one broadcast, or
                // for a shuffle the one hashed into the table (the right, small side
                // by convention, as in Spark's `big.join(small)`).
                let swap = left.is_none();
                Ok(Transformed::yes(if swap { join.swap_inputs(mode)? } else { Arc::new(join) }))
            })?
            .data;
        // Markers whose join was not a hash join (cross, nested loop) have nothing to set.
        Ok(plan
            .transform_up(|node| match node.downcast_ref::<JoinHintExec>() {
                Some(h) => Ok(Transformed::yes(Arc::clone(&h.input))),
                None => Ok(Transformed::no(node)),
            })?
            .data)
    }

    fn name(&self) -> &str {
        "kiln_join_strategy"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The same join as a sort-merge join (DataFusion adds the sorts and the
/// partitioning it needs), with the hash join's embedded projection kept.
fn sort_merge(join: &HashJoinExec, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::arrow::compute::SortOptions;
    use datafusion::physical_plan::joins::SortMergeJoinExec;
    let [left, right]: [Arc<dyn ExecutionPlan>; 2] = children.try_into().map_err(|_| datafusion::error::DataFusionError::Internal("a join has two inputs".into()))?;
    let options = vec![SortOptions::default(); join.on().len()];
    let smj: Arc<dyn ExecutionPlan> =
        Arc::new(SortMergeJoinExec::try_new(left, right, join.on().to_vec(), join.filter().cloned(), *join.join_type(), options, join.null_equality())?);
    if !join.contains_projection() {
        return Ok(smj);
    }
    let schema = join.schema();
    let full = smj.schema();
    let exprs: Vec<datafusion::physical_plan::projection::ProjectionExpr> = schema
        .fields()
        .iter()
        .map(|f| {
            let i = full.index_of(f.name())?;
            Ok(datafusion::physical_plan::projection::ProjectionExpr {
                expr: Arc::new(datafusion::physical_expr::expressions::Column::new(f.name(), i)),
                alias: f.name().clone(),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Arc::new(ProjectionExec::try_new(exprs, smj)?))
}

/// The hint directly below a join input (projections may sit in between).
fn find(plan: &Arc<dyn ExecutionPlan>) -> Option<Hint> {
    if let Some(h) = plan.downcast_ref::<JoinHintExec>() {
        return Some(h.hint);
    }
    if plan.downcast_ref::<ProjectionExec>().is_some() || plan.downcast_ref::<crate::node_metrics::NodeMetricsExec>().is_some() {
        return plan.children().first().and_then(|c| find(c));
    }
    None
}

/// `plan` without the marker that [`find`] found.
fn strip(plan: &Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(h) = plan.downcast_ref::<JoinHintExec>() {
        return Ok(Arc::clone(&h.input));
    }
    if plan.downcast_ref::<ProjectionExec>().is_some() || plan.downcast_ref::<crate::node_metrics::NodeMetricsExec>().is_some() {
        if let Some(child) = plan.children().first() {
            #[allow(deprecated)]
            return Arc::clone(plan).with_new_children(vec![strip(child)?]);
        }
    }
    Ok(Arc::clone(plan))
}

/// DataFusion's physical optimizer rules with [`JoinStrategyRule`] right after
/// `join_selection`, [`crate::first_per_key::FirstPerKeyRule`] right after
/// `EnsureRequirements`, and [`crate::split::ShareSplits`] at the end.
pub fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
    let at = rules.iter().position(|r| r.name() == "join_selection").map_or(0, |i| i + 1);
    rules.insert(at, Arc::new(JoinStrategyRule));
    // Needs the sort and partitioning that EnsureRequirements adds; before projections are pushed into filters.
    let at = rules.iter().position(|r| r.name() == "EnsureRequirements").map_or(rules.len(), |i| i + 1);
    rules.insert(at, Arc::new(crate::first_per_key::FirstPerKeyRule));
    // Once aggregates have their final modes and before projections move into joins.
    let at = rules.iter().position(|r| r.name() == "CombinePartialFinalAggregate").map_or(rules.len(), |i| i + 1);
    rules.insert(at, Arc::new(crate::eager_aggregate::EagerAggregation));
    // Last: pairs halves of splits once nothing rewrites their inputs any more.
    rules.push(Arc::new(crate::split::ShareSplits));
    rules.push(Arc::new(crate::sources::orc::OrcColumnsOnly));
    rules
}
