//! Delta Lake tables (SPEC §3, §6a), read and written through delta-rs
//! (`deltalake-core`) and its DataFusion integration.
//!
//! Kiln builds each table's log store itself from the store Kiln's registry
//! would use for the path (the same credentials and `storage_options`), rather
//! than through delta-rs' global URL factories: one place decides how a URL
//! reaches storage, and a sink can wrap the log store to hold its commit (see
//! `sinks::delta`).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use url::Url;

use crate::plan::DeltaSource;
use crate::storage;
use crate::{Error, Result};

/// A time-travel `timestamp`: RFC 3339 (`2024-05-01T12:00:00Z`, any offset),
/// `2024-05-01 12:00:00` (UTC), or a date (`2024-05-01`, midnight UTC).
pub fn parse_timestamp(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(format!("`{text}` is not a time (RFC 3339, `YYYY-MM-DD HH:MM:SS` in UTC, or `YYYY-MM-DD`)"))
}

/// The table's root as a URL: object-store URLs as written, local paths made
/// absolute (`file:///…/`).
pub fn table_url(location: &str) -> Result<Url> {
    if storage::is_remote(location) {
        return Url::parse(&format!("{}/", location.trim_end_matches('/'))).map_err(|e| Error::Usage(format!("`{}` is not a URL: {e}", crate::redact::text(location))));
    }
    let path = location.strip_prefix("file://").unwrap_or(location);
    // `a/../b` as `b`: object-store paths have no `..` (the directory may not exist yet).
    let mut abs = std::path::PathBuf::new();
    for part in std::path::absolute(path).map_err(|e| Error::io(format!("resolving {path}"), e))?.components() {
        match part {
            std::path::Component::ParentDir => {
                abs.pop();
            }
            std::path::Component::CurDir => {}
            other => abs.push(other),
        }
    }
    Url::from_directory_path(&abs).map_err(|()| Error::Usage(format!("`{}` is not a path Delta can use", abs.display())))
}

/// The log store of the table at `location`, on the store Kiln resolves that
/// location with.
pub fn log_store(location: &str) -> Result<LogStoreRef> {
    let url = table_url(location)?;
    let (root, prefix): (Arc<dyn ObjectStore>, object_store::path::Path) = if storage::is_remote(location) {
        let loc = storage::locate(location)?;
        (loc.raw, loc.path)
    } else {
        let path = object_store::path::Path::from_url_path(url.path()).map_err(|e| Error::Usage(format!("`{location}`: {e}")))?;
        (Arc::new(object_store::local::LocalFileSystem::new()), path)
    };
    let prefixed: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(root.clone(), prefix));
    Ok(default_logstore(prefixed, root, &url, &StorageConfig::default()))
}

/// An error of delta-rs about the table at `location`, on one line, redacted.
pub fn error(location: &str, e: impl std::error::Error) -> Error {
    Error::Read { path: crate::redact::text(location), message: crate::redact::text(&storage::one_line(&e)) }
}

/// The table at `location`, loaded at the version or time `travel` names.
pub async fn open(location: &str, travel: &DeltaSource) -> Result<DeltaTable> {
    let mut table = DeltaTable::new(log_store(location)?);
    if !table.verify_deltatable_existence().await.map_err(|e| error(location, e))? {
        return Err(Error::Read { path: crate::redact::text(location), message: "not a Delta table (no _delta_log/ commits under it)".into() });
    }
    let loaded = match (&travel.version, &travel.timestamp) {
        (Some(v), _) => table.load_version(*v as _).await,
        (None, Some(ts)) => {
            let at = parse_timestamp(ts).map_err(Error::Usage)?;
            table.load_with_datetime(at).await
        }
        (None, None) => table.load().await,
    };
    loaded.map_err(|e| {
        let what = match (&travel.version, &travel.timestamp) {
            (Some(v), _) => format!("version {v}: "),
            (None, Some(ts)) => format!("timestamp {ts}: "),
            _ => String::new(),
        };
        Error::Read { path: crate::redact::text(location), message: crate::redact::text(&format!("{what}{}", storage::one_line(&e))) }
    })?;
    Ok(table)
}

/// The columns a scan of the table yields (data columns, then partition
/// columns), with partition values as their plain type (delta-rs hands them
/// out dictionary-encoded; Kiln's source casts them back).
pub async fn schema(location: &str, travel: &DeltaSource) -> Result<Schema> {
    let table = open(location, travel).await?;
    let provider = table.table_provider().await.map_err(|e| error(location, e))?;
    Ok(plain(provider.schema().as_ref()))
}

pub(crate) fn plain(schema: &Schema) -> Schema {
    use datafusion::arrow::datatypes::{DataType, Field};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, value) => f.as_ref().clone().with_data_type(value.as_ref().clone()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new(fields)
}

/// A DataFusion table over the table's files at the pinned version, its
/// schema checked against the one pinned at compile time.
pub async fn provider(ctx: &SessionContext, location: &str, travel: &DeltaSource, pinned: &Schema) -> Result<Arc<dyn TableProvider>> {
    let table = open(location, travel).await?;
    table.update_datafusion_session(&ctx.state()).map_err(|e| error(location, e))?;
    let inner = table.table_provider().await.map_err(|e| error(location, e))?;
    let provider = Arc::new(DeltaSourceTable { location: location.to_string(), table, inner });
    let found = plain(provider.schema().as_ref());
    super::drift::compare(pinned, &found, false).map_err(|message| Error::Read {
        path: crate::redact::text(location),
        message: format!("the table's schema changed since `kiln check` pinned it: {message}; check and build the spec again"),
    })?;
    Ok(provider)
}

/// A Delta source as Kiln registers it: delta-rs' scan in a local run; on a
/// cluster, [`crate::codec::KilnLogicalCodec`] ships it as the list of the
/// version's data files ([`DeltaFiles`]), which the scheduler turns into a
/// plain Parquet scan that datafusion-proto sends to executors (delta-rs' own
/// scan node has no codec).
#[derive(Debug)]
pub struct DeltaSourceTable {
    location: String,
    table: DeltaTable,
    inner: Arc<dyn TableProvider>,
}

impl DeltaSourceTable {
    /// The data files of the loaded version, their partition values as the log
    /// writes them. Tables whose rows need more than their files to be read
    /// (deletion vectors, column mapping) are refused.
    pub fn files(&self) -> Result<DeltaFiles> {
        let state = self.table.snapshot().map_err(|e| error(&self.location, e))?;
        files_of(state.snapshot(), &self.location)
    }
}

/// The data files of a table version, their partition values as the log writes
/// them. Tables whose rows need more than their files to be read (deletion
/// vectors, column mapping) are refused.
pub fn files_of(snapshot: &deltalake_core::kernel::EagerSnapshot, location: &str) -> Result<DeltaFiles> {
    let mapping = format!("{:?}", snapshot.table_configuration().column_mapping_mode());
    if mapping != "None" {
        return Err(Error::Read { path: crate::redact::text(location), message: format!("a table with column mapping ({mapping}) is read in one process only: run it without --cluster") });
    }
    let partitions = snapshot.metadata().partition_columns().to_vec();
    let root = snapshot.table_configuration().table_root().clone();
    let store = root[..url::Position::BeforePath].to_string();
    let prefix = object_store::path::Path::from_url_path(root.path()).map_err(|e| Error::Usage(e.to_string()))?;
    let mut files = Vec::new();
    for f in snapshot.log_data().iter() {
        if f.deletion_vector_descriptor().is_some() {
            return Err(Error::Read {
                path: crate::redact::text(location),
                message: format!("{} has a deletion vector: a table with deleted rows is read in one process only (run it without --cluster, or OPTIMIZE/purge the table)", f.path()),
            });
        }
        let values = f.partition_values_map();
        files.push(DeltaFile {
            path: prefix.parts().chain(f.object_store_path().parts()).collect::<object_store::path::Path>().to_string(),
            size: f.size().max(0) as u64,
            partition_values: partitions.iter().map(|c| values.get(c).cloned().flatten()).collect(),
        });
    }
    Ok(DeltaFiles { store, partitions, files })
}

#[async_trait::async_trait]
impl TableProvider for DeltaSourceTable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&datafusion::logical_expr::Expr]) -> datafusion::error::Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        use datafusion::logical_expr::TableProviderFilterPushDown::{Inexact, Unsupported};
        // Inexact at most: the plan keeps every filter, so the file list shipped to a
        // cluster (which prunes nothing) gives the same rows.
        Ok(self.inner.supports_filters_pushdown(filters)?.into_iter().map(|p| if p == Unsupported { Unsupported } else { Inexact }).collect())
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }
}

/// A Delta version's data files: what a cluster reads of a Delta source.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeltaFiles {
    /// `file://` or `s3://bucket`: the store the paths are in.
    pub store: String,
    /// Partition columns, in the order of `partition_values`.
    pub partitions: Vec<String>,
    pub files: Vec<DeltaFile>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeltaFile {
    /// From the store's root.
    pub path: String,
    pub size: u64,
    /// As the log writes them (`None`: null).
    pub partition_values: Vec<Option<String>>,
}

/// [`DeltaFiles`] as a table: a Parquet scan of exactly those files, partition
/// values from the log (typed as the table's schema says, dictionary-encoded
/// as delta-rs' scan gives them).
#[derive(Debug)]
pub struct DeltaFilesTable {
    pub spec: DeltaFiles,
    schema: datafusion::arrow::datatypes::SchemaRef,
}

impl DeltaFilesTable {
    pub fn new(spec: DeltaFiles, schema: datafusion::arrow::datatypes::SchemaRef) -> Self {
        DeltaFilesTable { spec, schema }
    }
}

#[async_trait::async_trait]
impl TableProvider for DeltaFilesTable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
        use datafusion::common::ScalarValue;
        use datafusion::datasource::listing::PartitionedFile;
        use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
        use datafusion::datasource::source::DataSourceExec;
        use datafusion::datasource::table_schema::TableSchema;
        use datafusion::execution::object_store::ObjectStoreUrl;
        use datafusion::physical_expr::expressions::Column;
        use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
        let spec = &self.spec;
        let is_partition = |f: &Field| spec.partitions.contains(f.name());
        let file_fields: Vec<FieldRef> = self.schema.fields().iter().filter(|f| !is_partition(f)).cloned().collect();
        let partition_fields: Vec<FieldRef> = spec.partitions.iter().map(|p| self.schema.field_with_name(p).map(|f| Arc::new(f.clone()))).collect::<std::result::Result<_, _>>()?;
        let value = |text: &Option<String>, ty: &DataType| -> datafusion::error::Result<ScalarValue> {
            let (inner, dict) = match ty {
                DataType::Dictionary(k, v) => (v.as_ref(), Some(k.as_ref())),
                t => (t, None),
            };
            let v = match text {
                // The log writes an empty string for a null partition value; the Delta
                // kernel (delta-rs' own scan) reads it as NULL whatever the column's type.
                None => ScalarValue::try_from(inner)?,
                Some(s) if s.is_empty() => ScalarValue::try_from(inner)?,
                Some(s) => ScalarValue::try_from_string(s.clone(), inner)?,
            };
            Ok(match dict {
                Some(k) => ScalarValue::Dictionary(Box::new(k.clone()), Box::new(v)),
                None => v,
            })
        };
        let mut files = Vec::with_capacity(spec.files.len());
        for f in &spec.files {
            let mut pf = PartitionedFile::new_from_meta(object_store::ObjectMeta {
                location: object_store::path::Path::parse(&f.path).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?,
                last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                size: f.size,
                e_tag: None,
                version: None,
            });
            pf.partition_values = f.partition_values.iter().zip(&partition_fields).map(|(v, field)| value(v, field.data_type())).collect::<datafusion::error::Result<_>>()?;
            files.push(pf);
        }
        let slots = state.config().target_partitions().max(1);
        let per = files.len().div_ceil(slots).max(1);
        let groups: Vec<FileGroup> = files.chunks(per).map(|c| FileGroup::new(c.to_vec())).collect();
        let table_schema = TableSchema::builder(Arc::new(datafusion::arrow::datatypes::Schema::new(file_fields))).with_table_partition_cols(partition_fields).build();
        let source = Arc::new(ParquetSource::new(table_schema));
        let url = ObjectStoreUrl::parse(&spec.store)?;
        let scan = DataSourceExec::from_data_source(FileScanConfigBuilder::new(url, source).with_file_groups(groups).build());
        // The scan gives files' columns, then partition columns: put them in the table's order (projected).
        let scanned = datafusion::physical_plan::ExecutionPlan::schema(scan.as_ref());
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let exprs = wanted
            .iter()
            .map(|&i| {
                let name = self.schema.field(i).name();
                let at = scanned.index_of(name)?;
                Ok(ProjectionExpr::new(Arc::new(Column::new(name, at)), name.clone()))
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(Arc::new(ProjectionExec::try_new(exprs, scan)?))
    }
}
