//! `sql`: a query over the node's inputs, exposed as tables named after them.
//!
//! `kiln check` plans the query against empty tables with the inputs' schemas and
//! stores the logical plan as datafusion-proto bytes ([`encode`]); the binary
//! decodes it (no SQL parsing at run time) and puts each input's plan where the
//! query scans the input's table.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{TableReference, exec_err};
use datafusion::datasource::empty::EmptyTable;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, LogicalPlanBuilder};
use datafusion_proto::bytes::{logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use crate::functions::registry;
use crate::{Error, Result};

/// Table scans travel as their name and schema only; the tables are the inputs.
#[derive(Debug)]
struct InputTables;

impl LogicalExtensionCodec for InputTables {
    fn try_decode(&self, _buf: &[u8], _inputs: &[LogicalPlan], _ctx: &TaskContext) -> datafusion::common::Result<Extension> {
        exec_err!("a sql transform's plan holds no extension nodes")
    }

    fn try_encode(&self, _node: &Extension, _buf: &mut Vec<u8>) -> datafusion::common::Result<()> {
        exec_err!("a sql transform's plan holds no extension nodes")
    }

    fn try_decode_table_provider(
        &self,
        _buf: &[u8],
        _table_ref: &TableReference,
        schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        Ok(Arc::new(EmptyTable::new(schema)))
    }

    fn try_encode_table_provider(
        &self,
        _table_ref: &TableReference,
        _node: Arc<dyn TableProvider>,
        _buf: &mut Vec<u8>,
    ) -> datafusion::common::Result<()> {
        Ok(())
    }
}

/// The bytes that [`build`] takes, for a plan whose table scans name inputs.
pub fn encode(plan: &LogicalPlan) -> Result<Vec<u8>> {
    Ok(logical_plan_to_bytes_with_extension_codec(plan, &InputTables)?.to_vec())
}

/// The query's plan with every scan of input `names[i]` replaced by `inputs[i]`.
pub(super) fn build(bytes: &[u8], names: &[String], inputs: &[LogicalPlan]) -> Result<LogicalPlan> {
    let ctx = registry().task_ctx();
    let plan = logical_plan_from_bytes_with_extension_codec(bytes, &ctx, &InputTables)?;
    let mut unknown = None;
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if !names.iter().any(|n| scan.table_name.table() == n) {
                unknown = Some(scan.table_name.to_string());
            }
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    if let Some(t) = unknown {
        return Err(Error::Usage(format!("the query reads `{t}`, which is not one of its inputs")));
    }
    let plan = plan
        .transform_up(|node| {
            let LogicalPlan::TableScan(scan) = &node else { return Ok(Transformed::no(node)) };
            let Some(i) = names.iter().position(|n| scan.table_name.table() == n) else {
                return Ok(Transformed::no(node));
            };
            let input = inputs[i].clone();
            let plan = match &scan.projection {
                None => input,
                Some(indices) => {
                    let columns: Vec<Expr> = indices.iter().map(|&j| Expr::Column(input.schema().columns()[j].clone())).collect();
                    LogicalPlanBuilder::from(input).project(columns)?.build()?
                }
            };
            Ok(Transformed::yes(plan))
        })?
        .data;
    Ok(plan)
}
