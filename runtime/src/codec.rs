//! datafusion-proto for Kiln's own logical plan nodes, so that plans holding
//! them can be shipped (to Ballista executors, issue 6): a `JoinHint` travels
//! as one byte, its input as the proto input.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{Result, TableReference, exec_err};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use crate::join_strategy::{Hint, JoinHint};

#[derive(Debug, Default)]
pub struct KilnLogicalCodec;

impl LogicalExtensionCodec for KilnLogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], _ctx: &TaskContext) -> Result<Extension> {
        let hint = match buf {
            [0] => Hint::Broadcast,
            [1] => Hint::Shuffle,
            [2] => Hint::SortMerge,
            _ => return exec_err!("unknown Kiln plan node in a serialized plan"),
        };
        let [input] = inputs else { return exec_err!("a join hint has one input") };
        Ok(Extension { node: Arc::new(JoinHint::new(input.clone(), hint)) })
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        let Some(h) = node.node.as_any().downcast_ref::<JoinHint>() else {
            return exec_err!("cannot serialize plan node {}", node.node.name());
        };
        buf.push(match h.hint() {
            Hint::Broadcast => 0,
            Hint::Shuffle => 1,
            Hint::SortMerge => 2,
        });
        Ok(())
    }

    fn try_decode_table_provider(&self, _buf: &[u8], table_ref: &TableReference, _schema: SchemaRef, _ctx: &TaskContext) -> Result<Arc<dyn TableProvider>> {
        exec_err!("cannot deserialize table {table_ref}: only file sources travel in serialized plans")
    }

    fn try_encode_table_provider(&self, table_ref: &TableReference, _node: Arc<dyn TableProvider>, _buf: &mut Vec<u8>) -> Result<()> {
        exec_err!("cannot serialize table {table_ref}: only file sources travel in serialized plans")
    }
}
