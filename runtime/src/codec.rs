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
#[cfg(feature = "delta")]
use crate::sinks::delta_write::{DeltaWrite, DeltaWriteExec};
use crate::sinks::files_write::{FilesWrite, FilesWriteExec};
use crate::sources::orc::{OrcTable, OrcTableSpec};
use datafusion::common::DataFusionError;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;

/// Prefix of an ORC table in a serialized logical plan (then its spec, as JSON).
const ORC_TABLE: &[u8] = b"KILN-ORC-TABLE:";
/// Prefix of an ORC scan in a serialized physical plan (then its `FileScanExecConf`).
const ORC_SCAN: &[u8] = b"KILN-ORC-SCAN:";
/// Prefix of a PostgreSQL table (then its spec, as JSON; the url keeps its `${env.X}`).
const PG_TABLE: &[u8] = b"KILN-PG-TABLE:";
/// Prefix of a Delta source (then its data files, as JSON: see `sources::delta`).
const DELTA_FILES: &[u8] = b"KILN-DELTA-FILES:";
/// Prefix of a Delta write, logical or physical (then its `WriteSpec`, as JSON).
const DELTA_WRITE: &[u8] = b"KILN-DELTA-WRITE:";
const FILES_WRITE: &[u8] = b"KILN-FILES-WRITE";
/// Prefix of a PostgreSQL scan (then its spec and SELECTs as JSON, and its `FileScanExecConf`).
const PG_SCAN: &[u8] = b"KILN-PG-SCAN:";
/// A node marker (`--metrics` on a cluster): JSON `[node, sink]`.
const NODE_MARK: &[u8] = b"KILN-NODE:";

fn internal(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(e.to_string())
}

/// A Delta node sent to a process built without Delta support (a cluster running another
/// build of the pipeline than the client's).
#[cfg(not(feature = "delta"))]
fn without_delta(_: impl Sized, _: &[u8]) -> DataFusionError {
    DataFusionError::External(Box::new(crate::unbuilt::missing("delta", "a Delta table in the plan")))
}

/// Kiln's logical nodes and tables (join hints, Delta writes; ORC, PostgreSQL and Delta tables) on
/// top of Ballista's codec, which handles the rest (file formats of sinks, its
/// own nodes): the client encodes with it, the scheduler decodes with it.
#[derive(Debug, Default)]
pub struct KilnLogicalCodec {
    ballista: ballista_core::serde::BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for KilnLogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        let hint = match buf {
            [0] => Hint::Broadcast,
            [1] => Hint::Shuffle,
            [2] => Hint::SortMerge,
            _ => {
                if let Some(spec) = buf.strip_prefix(DELTA_WRITE) {
                    let [input] = inputs else { return exec_err!("a Delta write has one input") };
                    #[cfg(feature = "delta")]
                    return Ok(Extension { node: Arc::new(DeltaWrite::new(input.clone(), serde_json::from_slice(spec).map_err(internal)?)?) });
                    #[cfg(not(feature = "delta"))]
                    return Err(without_delta(input, spec));
                }
                if buf == FILES_WRITE {
                    let [input] = inputs else { return exec_err!("a files write has one input") };
                    return Ok(Extension { node: Arc::new(FilesWrite::new(input.clone())?) });
                }
                if let Some(json) = buf.strip_prefix(NODE_MARK) {
                    let [input] = inputs else { return exec_err!("a node marker has one input") };
                    let (node, sink): (String, Option<String>) = serde_json::from_slice(json).map_err(internal)?;
                    return Ok(crate::node_metrics::marker(input.clone(), node, sink));
                }
                return self.ballista.try_decode(buf, inputs, ctx);
            }
        };
        let [input] = inputs else { return exec_err!("a join hint has one input") };
        Ok(Extension { node: Arc::new(JoinHint::new(input.clone(), hint)) })
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(m) = node.node.as_any().downcast_ref::<crate::node_metrics::NodeMark>() {
            buf.extend_from_slice(NODE_MARK);
            buf.extend_from_slice(&serde_json::to_vec(&(&m.node, &m.sink)).map_err(internal)?);
            return Ok(());
        }
        if node.node.as_any().is::<FilesWrite>() {
            buf.extend_from_slice(FILES_WRITE);
            return Ok(());
        }
        #[cfg(feature = "delta")]
        if let Some(w) = node.node.as_any().downcast_ref::<DeltaWrite>() {
            buf.extend_from_slice(DELTA_WRITE);
            buf.extend_from_slice(&serde_json::to_vec(&w.spec).map_err(internal)?);
            return Ok(());
        }
        let Some(h) = node.node.as_any().downcast_ref::<JoinHint>() else {
            return self.ballista.try_encode(node, buf);
        };
        buf.push(match h.hint() {
            Hint::Broadcast => 0,
            Hint::Shuffle => 1,
            Hint::SortMerge => 2,
        });
        Ok(())
    }

    fn try_decode_table_provider(&self, buf: &[u8], table_ref: &TableReference, schema: SchemaRef, ctx: &TaskContext) -> Result<Arc<dyn TableProvider>> {
        if let Some(spec) = buf.strip_prefix(ORC_TABLE) {
            let spec: OrcTableSpec = serde_json::from_slice(spec).map_err(|e| DataFusionError::Internal(format!("bad ORC table {table_ref}: {e}")))?;
            return Ok(Arc::new(OrcTable::new(spec, schema)?));
        }
        if let Some(spec) = buf.strip_prefix(PG_TABLE) {
            let spec: crate::postgres::read::PgTableSpec = serde_json::from_slice(spec).map_err(internal)?;
            return Ok(Arc::new(crate::postgres::read::PgTable::new(spec, schema)));
        }
        if let Some(spec) = buf.strip_prefix(DELTA_FILES) {
            #[cfg(feature = "delta")]
            return Ok(Arc::new(crate::sources::delta::DeltaFilesTable::new(serde_json::from_slice(spec).map_err(internal)?, schema)));
            #[cfg(not(feature = "delta"))]
            return Err(without_delta(table_ref, spec));
        }
        self.ballista.try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(&self, table_ref: &TableReference, node: Arc<dyn TableProvider>, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(orc) = node.downcast_ref::<OrcTable>() {
            buf.extend_from_slice(ORC_TABLE);
            buf.extend_from_slice(&serde_json::to_vec(&orc.spec).map_err(|e| DataFusionError::Internal(e.to_string()))?);
            return Ok(());
        }
        if let Some(pg) = node.downcast_ref::<crate::postgres::read::PgTable>() {
            buf.extend_from_slice(PG_TABLE);
            buf.extend_from_slice(&serde_json::to_vec(&pg.spec).map_err(internal)?);
            return Ok(());
        }
        #[cfg(feature = "delta")]
        if let Some(delta) = node.downcast_ref::<crate::sources::delta::DeltaSourceTable>() {
            let files = delta.files().map_err(|e| DataFusionError::External(Box::new(e)))?;
            buf.extend_from_slice(DELTA_FILES);
            buf.extend_from_slice(&serde_json::to_vec(&files).map_err(internal)?);
            return Ok(());
        }
        #[cfg(feature = "delta")]
        if let Some(files) = node.downcast_ref::<crate::sources::delta::DeltaFilesTable>() {
            buf.extend_from_slice(DELTA_FILES);
            buf.extend_from_slice(&serde_json::to_vec(&files.spec).map_err(internal)?);
            return Ok(());
        }
        self.ballista.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> Result<Arc<dyn datafusion::datasource::file_format::FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn datafusion::datasource::file_format::FileFormatFactory>) -> Result<()> {
        use datafusion::common::parsers::CsvQuoteStyle;
        use datafusion::datasource::file_format::csv::CsvFormatFactory;
        // DataFusion 55 encodes a CSV format's `quote_style` as the Rust enum's
        // discriminant (`as i32`), ordered Always, Necessary, …, while the proto is
        // ordered Necessary, Always, …: the scheduler decoded Necessary (the default)
        // as Always and a cluster's CSV files quoted every field. Encoding the swapped
        // style makes it decode as the sink's own. (NonNumeric and Never agree.)
        if let Some(csv) = node.downcast_ref::<CsvFormatFactory>() {
            let mut options = csv.options.clone().unwrap_or_default();
            options.quote_style = match options.quote_style {
                CsvQuoteStyle::Always => CsvQuoteStyle::Necessary,
                CsvQuoteStyle::Necessary => CsvQuoteStyle::Always,
                other => other,
            };
            return self.ballista.try_encode_file_format(buf, Arc::new(CsvFormatFactory::new_with_options(options)));
        }
        self.ballista.try_encode_file_format(buf, node)
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
        if let Some(conf) = buf.strip_prefix(ORC_SCAN) {
            let proto = datafusion_proto::protobuf::FileScanExecConf::decode(conf).map_err(|e| DataFusionError::Internal(e.to_string()))?;
            let table_schema = datafusion_proto::physical_plan::from_proto::parse_table_schema_from_proto(&proto)?;
            let decode_ctx = datafusion_proto::physical_plan::PhysicalPlanDecodeContext::new(ctx, self);
            let source = Arc::new(datafusion_orc::OrcSource::new(table_schema));
            let conf = datafusion_proto::physical_plan::from_proto::parse_protobuf_file_scan_config(&proto, &decode_ctx, converter, source)?;
            return Ok(DataSourceExec::from_data_source(conf));
        }
        if let Some(mut rest) = buf.strip_prefix(PG_SCAN) {
            let (spec, selects): (crate::postgres::read::PgTableSpec, Vec<String>) = serde_json::from_slice(take(&mut rest)?).map_err(internal)?;
            let proto = datafusion_proto::protobuf::FileScanExecConf::decode(take(&mut rest)?).map_err(internal)?;
            let table_schema = datafusion_proto::physical_plan::from_proto::parse_table_schema_from_proto(&proto)?;
            let decode_ctx = datafusion_proto::physical_plan::PhysicalPlanDecodeContext::new(ctx, self);
            let source = Arc::new(crate::postgres::read::PgRangeSource::new(spec, selects, table_schema));
            let conf = datafusion_proto::physical_plan::from_proto::parse_protobuf_file_scan_config(&proto, &decode_ctx, converter, source)?;
            return Ok(DataSourceExec::from_data_source(conf));
        }
        if let Some(spec) = buf.strip_prefix(DELTA_WRITE) {
            let [input] = inputs else { return exec_err!("a Delta write has one input") };
            #[cfg(feature = "delta")]
            return Ok(Arc::new(DeltaWriteExec::new(input.clone(), serde_json::from_slice(spec).map_err(internal)?)));
            #[cfg(not(feature = "delta"))]
            return Err(without_delta(input, spec));
        }
        if buf == FILES_WRITE {
            let [input] = inputs else { return exec_err!("a files write has one input") };
            return Ok(Arc::new(FilesWriteExec::try_new(input.clone())?));
        }
        if let Some(json) = buf.strip_prefix(NODE_MARK) {
            let [input] = inputs else { return exec_err!("a node marker has one input") };
            let (node, sink): (String, Option<String>) = serde_json::from_slice(json).map_err(internal)?;
            return Ok(Arc::new(crate::node_metrics::NodeMetricsExec::new(input.clone(), node, sink)));
        }
        let Some(mut rest) = buf.strip_prefix(MAGIC) else {
            return one_location_per_map_task(self.ballista.try_decode(buf, inputs, ctx, converter)?);
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
        if let Some(conf) = orc_scan(&node) {
            buf.extend_from_slice(ORC_SCAN);
            buf.extend_from_slice(&datafusion_proto::physical_plan::to_proto::serialize_file_scan_config(conf, self, converter)?.encode_to_vec());
            return Ok(());
        }
        if let Some((conf, pg)) = pg_scan(&node) {
            // The ranges travel as file groups, so Ballista hands each task its own.
            buf.extend_from_slice(PG_SCAN);
            put(buf, &serde_json::to_vec(&(&pg.spec, &pg.selects)).map_err(internal)?);
            put(buf, &datafusion_proto::physical_plan::to_proto::serialize_file_scan_config(conf, self, converter)?.encode_to_vec());
            return Ok(());
        }
        if node.downcast_ref::<FilesWriteExec>().is_some() {
            buf.extend_from_slice(FILES_WRITE);
            return Ok(());
        }
        if let Some(m) = node.downcast_ref::<crate::node_metrics::NodeMetricsExec>() {
            buf.extend_from_slice(NODE_MARK);
            buf.extend_from_slice(&serde_json::to_vec(&(m.node(), m.sink())).map_err(internal)?);
            return Ok(());
        }
        #[cfg(feature = "delta")]
        if let Some(w) = node.downcast_ref::<DeltaWriteExec>() {
            buf.extend_from_slice(DELTA_WRITE);
            buf.extend_from_slice(&serde_json::to_vec(&w.spec).map_err(internal)?);
            return Ok(());
        }
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

/// A shuffle reader that reads each map task's output once.
///
/// When an executor is lost, Ballista 55 rolls back the stages that read its
/// shuffle files and reruns the stage that wrote them, including tasks that had
/// succeeded on a live executor; `StageOutput::add_partition` then appends the
/// rerun task's location beside the one its consumer already held, and the
/// consumer reads that map output twice (a job that lost an executor during its
/// last stage committed ~1.5x its rows). Every location of one (output
/// partition, map task) holds the same rows, so the latest is kept: the
/// scheduler appends in the order tasks finish.
fn one_location_per_map_task(plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    use ballista_core::execution_plans::ShuffleReaderExec;
    use ballista_core::serde::scheduler::PartitionLocation;
    let Some(reader) = plan.downcast_ref::<ShuffleReaderExec>() else { return Ok(plan) };
    let dedup = |locations: &Vec<PartitionLocation>| -> Vec<PartitionLocation> {
        let key = |l: &PartitionLocation| (l.partition_id.stage_id, l.partition_id.partition_id, l.map_partition_id);
        let last: std::collections::HashMap<_, usize> = locations.iter().enumerate().map(|(i, l)| (key(l), i)).collect();
        locations.iter().enumerate().filter(|(i, l)| last[&key(l)] == *i).map(|(_, l)| l.clone()).collect()
    };
    let partition: Vec<Vec<PartitionLocation>> = reader.partition.iter().map(dedup).collect();
    if partition.iter().zip(&reader.partition).all(|(a, b)| a.len() == b.len()) {
        return Ok(plan);
    }
    tracing::warn!(stage = reader.stage_id, "a shuffle read named a map task's output twice (a rerun after a lost executor); reading it once");
    let (schema, partitioning) = (plan.schema(), plan.properties().partitioning.clone());
    let rebuilt = match (&reader.coalesce, reader.broadcast) {
        (_, true) => ShuffleReaderExec::try_new_broadcast(reader.stage_id, partition.into_iter().flatten().collect(), schema, reader.upstream_partition_count)?,
        (Some(c), false) => ShuffleReaderExec::try_new_coalesced(reader.stage_id, partition, c.clone(), schema, partitioning)?,
        (None, false) => ShuffleReaderExec::try_new(reader.stage_id, partition, schema, partitioning)?,
    };
    Ok(Arc::new(rebuilt))
}

/// The file scan of an ORC `DataSourceExec`.
fn orc_scan(node: &Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> Option<&FileScanConfig> {
    let conf = node.downcast_ref::<DataSourceExec>()?.data_source().downcast_ref::<FileScanConfig>()?;
    conf.file_source().downcast_ref::<datafusion_orc::OrcSource>().map(|_| conf)
}

/// The file scan of a PostgreSQL `DataSourceExec` and its range source.
fn pg_scan(node: &Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> Option<(&FileScanConfig, &crate::postgres::read::PgRangeSource)> {
    let conf = node.downcast_ref::<DataSourceExec>()?.data_source().downcast_ref::<FileScanConfig>()?;
    conf.file_source().downcast_ref::<crate::postgres::read::PgRangeSource>().map(|pg| (conf, pg))
}
