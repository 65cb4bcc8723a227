//! ORC sources, read by datafusion-orc. DataFusion's proto knows only its own
//! file formats, so an ORC listing table is wrapped in [`OrcTable`], which
//! [`crate::codec::KilnLogicalCodec`] can ship to a Ballista scheduler (its
//! paths, extension and partition columns; the schema travels beside it), and
//! the scan it plans (a `DataSourceExec` over `OrcSource`) is shipped by
//! [`crate::codec::KilnPhysicalCodec`].

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use serde::{Deserialize, Serialize};

/// orc-rust itself, for readers of ORC files outside the runtime (the tests).
pub use ::orc_rust;

/// What identifies an ORC table: enough to rebuild it on a scheduler.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrcTableSpec {
    pub paths: Vec<String>,
    /// `orc` for a directory, empty for named files.
    pub extension: String,
    /// Partition column names; their types come from the table schema.
    pub partitions: Vec<String>,
}

/// An ORC listing table that knows how it was made.
#[derive(Debug)]
pub struct OrcTable {
    pub spec: OrcTableSpec,
    inner: ListingTable,
}

impl OrcTable {
    /// `schema` is the whole table's: the files' columns, then the partition columns.
    pub fn new(spec: OrcTableSpec, schema: SchemaRef) -> datafusion::error::Result<OrcTable> {
        let partition_cols: Vec<(String, DataType)> = spec
            .partitions
            .iter()
            .map(|p| Ok((p.clone(), schema.field_with_name(p)?.data_type().clone())))
            .collect::<datafusion::error::Result<_>>()?;
        let file_schema = Schema::new(schema.fields().iter().filter(|f| !spec.partitions.contains(f.name())).cloned().collect::<Vec<_>>());
        let urls = spec.paths.iter().map(ListingTableUrl::parse).collect::<datafusion::error::Result<Vec<_>>>()?;
        let options = ListingOptions::new(Arc::new(datafusion_orc::OrcFormat))
            .with_file_extension(spec.extension.clone())
            .with_table_partition_cols(partition_cols);
        let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(Arc::new(file_schema));
        Ok(OrcTable { inner: ListingTable::try_new(config)?, spec })
    }
}

#[async_trait]
impl TableProvider for OrcTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Filters on partition columns prune directories; the rest run above the scan.
        self.inner.supports_filters_pushdown(filters)
    }
}

/// The Arrow schema an ORC file declares (its footer).
pub fn file_schema(file: &Path) -> std::result::Result<Schema, String> {
    let mut f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    schema_of(&mut f)
}

/// The schema of ORC bytes held in memory (a whole object, or its tail).
pub fn schema_of<R: orc_rust::reader::ChunkReader>(reader: &mut R) -> std::result::Result<Schema, String> {
    let meta = orc_rust::reader::metadata::read_metadata(reader).map_err(|e| format!("not an ORC file: {e}"))?;
    Ok(meta.root_data_type().create_arrow_schema(&Default::default()))
}

/// Rows an ORC file holds, from its footer.
pub fn row_count(file: &Path) -> Option<u64> {
    let mut f = std::fs::File::open(file).ok()?;
    orc_rust::reader::metadata::read_metadata(&mut f).ok().map(|m| m.number_of_rows())
}

/// Arrow types orc-rust 0.9 writes (others reach an `unimplemented!` in its
/// writer, so the compiler rejects them in an ORC sink).
pub fn writable(dt: &DataType) -> bool {
    match dt {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => true,
        DataType::Float32 | DataType::Float64 | DataType::Boolean => true,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary => true,
        DataType::Date32 => true,
        DataType::Timestamp(_, None) => true,
        DataType::Timestamp(_, Some(tz)) => tz.as_ref() == "UTC",
        _ => false,
    }
}

/// Keeps computed expressions out of ORC scans: DataFusion's projection pushdown
/// moves `price * qty AS value` into the scan, and datafusion-orc 0.10 evaluates
/// it correctly in process but not after the scan is shipped to a Ballista
/// executor (the computed column arrives empty). This rule, last among the
/// physical rules, puts such projections back above a scan of the columns they use.
#[derive(Debug)]
pub struct OrcColumnsOnly;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for OrcColumnsOnly {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &datafusion::config::ConfigOptions,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        plan.transform_up(|node| Ok(match columns_only(&node)? {
            Some(split) => Transformed::yes(split),
            None => Transformed::no(node),
        }))
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "kiln_orc_columns_only"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `node` as ProjectionExec over a column-only ORC scan, when it is an ORC scan
/// that computes something.
fn columns_only(node: &Arc<dyn ExecutionPlan>) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder, FileSource};
    use datafusion::datasource::source::DataSourceExec;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_expr::projection::{ProjectionExpr, ProjectionExprs};
    let Some(conf) = node.downcast_ref::<DataSourceExec>().and_then(|d| d.data_source().downcast_ref::<FileScanConfig>()) else { return Ok(None) };
    let Some(orc) = conf.file_source().downcast_ref::<datafusion_orc::OrcSource>() else { return Ok(None) };
    let Some(projection) = orc.projection() else { return Ok(None) };
    if projection.iter().all(|p| p.expr.downcast_ref::<Column>().is_some()) {
        return Ok(None);
    }
    let mut used: Vec<usize> = projection.iter().flat_map(|p| datafusion::physical_expr::utils::collect_columns(&p.expr)).map(|c| c.index()).collect();
    used.sort_unstable();
    used.dedup();
    let table_schema = orc.table_schema().clone();
    let base = ProjectionExprs::from_indices(&used, table_schema.table_schema());
    let source = datafusion_orc::OrcSource::new(table_schema);
    let source: Arc<dyn FileSource> = match source.try_pushdown_projection(&base)? {
        Some(s) => s,
        None => return Ok(None),
    };
    let scan = DataSourceExec::from_data_source(FileScanConfigBuilder::from(conf.clone()).with_source(source).build());
    let exprs = projection
        .iter()
        .map(|p| {
            let expr = Arc::clone(&p.expr)
                .transform(|e| {
                    Ok(match e.downcast_ref::<Column>() {
                        Some(c) => Transformed::yes(Arc::new(Column::new(c.name(), used.binary_search(&c.index()).unwrap_or(0))) as Arc<dyn datafusion::physical_expr::PhysicalExpr>),
                        None => Transformed::no(e),
                    })
                })?
                .data;
            Ok(ProjectionExpr::new(expr, p.alias.clone()))
        })
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    Ok(Some(Arc::new(datafusion::physical_plan::projection::ProjectionExec::try_new(exprs, scan)?)))
}
