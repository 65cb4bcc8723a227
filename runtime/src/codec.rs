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

/// Ballista's physical codec plus Kiln's physical nodes (`FirstPerKeyExec`), so
/// a scheduler that plans with Kiln's rules can ship them to executors. Kiln's
/// buffers start with `KILN`; everything else goes to Ballista's codec.
#[derive(Debug, Default)]
pub struct KilnPhysicalCodec {
    ballista: ballista_core::serde::BallistaPhysicalExtensionCodec,
}

const MAGIC: &[u8] = b"KILN";

fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn take<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8]> {
    let bad = || datafusion::common::DataFusionError::Internal("truncated Kiln plan node".into());
    let (len, rest) = buf.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(bad());
    }
    let (item, rest) = rest.split_at(len);
    *buf = rest;
    Ok(item)
}

impl datafusion_proto::physical_plan::PhysicalExtensionCodec for KilnPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn datafusion::physical_plan::ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn datafusion_proto::physical_plan::PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::physical_expr::PhysicalSortExpr;
        use prost::Message;
        let Some(mut rest) = buf.strip_prefix(MAGIC) else {
            return self.ballista.try_decode(buf, inputs, ctx, converter);
        };
        let [input] = inputs else { return exec_err!("a first-per-key node has one input") };
        let schema = input.schema();
        let decode_ctx = datafusion_proto::physical_plan::PhysicalPlanDecodeContext::new(ctx, self);
        let expr = |bytes: &[u8]| -> Result<Arc<dyn datafusion::physical_expr::PhysicalExpr>> {
            let node = datafusion_proto::protobuf::PhysicalExprNode::decode(bytes).map_err(|e| datafusion::common::DataFusionError::Internal(e.to_string()))?;
            converter.proto_to_physical_expr(&node, &schema, &decode_ctx)
        };
        let n_keys = take(&mut rest)?.len();
        let keys = (0..n_keys).map(|_| expr(take(&mut rest)?)).collect::<Result<Vec<_>>>()?;
        let order = match take(&mut rest)? {
            [0] => None,
            [1] => {
                let n = take(&mut rest)?.len();
                Some(
                    (0..n)
                        .map(|_| {
                            let e = expr(take(&mut rest)?)?;
                            let opts = take(&mut rest)?;
                            let options = datafusion::arrow::compute::SortOptions { descending: opts.first() == Some(&1), nulls_first: opts.get(1) == Some(&1) };
                            Ok(PhysicalSortExpr { expr: e, options })
                        })
                        .collect::<Result<Vec<_>>>()?,
                )
            }
            _ => return exec_err!("bad first-per-key order"),
        };
        if !rest.is_empty() {
            return exec_err!("trailing bytes after a first-per-key node");
        }
        Ok(Arc::new(crate::first_per_key::FirstPerKeyExec::new(input.clone(), keys, order)))
    }

    fn try_encode(
        &self,
        node: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn datafusion_proto::physical_plan::PhysicalProtoConverterExtension,
    ) -> Result<()> {
        use prost::Message;
        let Some(f) = node.downcast_ref::<crate::first_per_key::FirstPerKeyExec>() else {
            return self.ballista.try_encode(node, buf, converter);
        };
        let (keys, order) = f.parts();
        buf.extend_from_slice(MAGIC);
        // The key count as a run of that many bytes keeps the format length-prefixed throughout.
        put(buf, &vec![0u8; keys.len()]);
        for k in keys {
            put(buf, &converter.physical_expr_to_proto(k, self)?.encode_to_vec());
        }
        put(buf, &[u8::from(order.is_some())]);
        if let Some(order) = order {
            // The count as a run of that many bytes, like the keys'.
            put(buf, &vec![0u8; order.len()]);
            for s in order {
                put(buf, &converter.physical_expr_to_proto(&s.expr, self)?.encode_to_vec());
                put(buf, &[u8::from(s.options.descending), u8::from(s.options.nulls_first)]);
            }
        }
        Ok(())
    }
}
