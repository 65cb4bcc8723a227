//! Reading a PostgreSQL source: [`PgTable`] plans a scan ([`scan_exec`]) with
//! one partition per range of the partition column; each partition runs one
//! binary COPY on its own connection and decodes it into Arrow batches.
//!
//! Pushed down: the projection, filters whose columns are not text (PostgreSQL
//! compares text by its collation, DataFusion by bytes; such filters run in
//! DataFusion only) and which DataFusion can write as PostgreSQL SQL — as
//! `Inexact`, so DataFusion applies them again — and a limit.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListArray, RecordBatch,
    RecordBatchOptions, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileOpenFuture, FileOpener, FileScanConfig, FileScanConfigBuilder, FileSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::{DisplayFormatType, ExecutionPlan};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::{FromSql, Type};

use super::{connect, describe, error_text, quote_ident};

/// What identifies a PostgreSQL source: enough to rebuild it on a scheduler.
/// `url` keeps its `${env.X}` references; each process resolves them from its
/// own environment, so a password never travels in a plan.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct PgTableSpec {
    pub url: String,
    /// SQL for `FROM`: a quoted table name or `(query) AS kiln_query`.
    pub relation: String,
    /// The table's name or "query", for messages.
    pub what: String,
    pub partition_column: Option<String>,
    pub partitions: u32,
    pub lower_bound: Option<i64>,
    pub upper_bound: Option<i64>,
}

impl fmt::Debug for PgTableSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PgTableSpec({}, {} partition(s))", self.what, self.partitions)
    }
}

/// The url with `${env.X}` resolved from this process's environment.
fn resolve(url: &str) -> Result<String> {
    crate::params::interpolate(url, &crate::params::Values::default(), |v| std::env::var(v).ok()).map_err(|e| DataFusionError::External(Box::new(e)))
}

fn fail(spec: &PgTableSpec, message: String) -> DataFusionError {
    DataFusionError::Execution(crate::redact::text(&format!("PostgreSQL {} on {}: {message}", spec.what, describe(&resolve(&spec.url).unwrap_or_default()))))
}

#[derive(Debug)]
pub struct PgTable {
    pub spec: PgTableSpec,
    schema: SchemaRef,
}

impl PgTable {
    pub fn new(spec: PgTableSpec, schema: SchemaRef) -> PgTable {
        PgTable { spec, schema }
    }

    /// A filter as PostgreSQL SQL, when it can be pushed down (see the module docs).
    fn filter_sql(&self, filter: &Expr) -> Option<String> {
        let mut ok = true;
        filter
            .apply(|e| {
                if let Expr::Column(c) = e {
                    match self.schema.field_with_name(&c.name) {
                        Ok(f) if !matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::List(_)) => {}
                        _ => ok = false,
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .ok()?;
        if !ok {
            return None;
        }
        let bare = filter
            .clone()
            .transform(|e| Ok(if let Expr::Column(c) = e { Transformed::yes(Expr::Column(datafusion::common::Column::new_unqualified(c.name))) } else { Transformed::no(e) }))
            .ok()?
            .data;
        let unparser = datafusion::sql::unparser::Unparser::new(&datafusion::sql::unparser::dialect::PostgreSqlDialect {});
        unparser.expr_to_sql(&bare).ok().map(|sql| sql.to_string())
    }
}

#[async_trait]
impl TableProvider for PgTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| if self.filter_sql(f).is_some() { TableProviderFilterPushDown::Inexact } else { TableProviderFilterPushDown::Unsupported })
            .collect())
    }

    async fn scan(&self, _state: &dyn Session, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let wheres: Vec<String> = filters.iter().filter_map(|f| self.filter_sql(f)).collect();
        let mut ranges = vec![None];
        if let (Some(col), n) = (&self.spec.partition_column, self.spec.partitions) {
            if n > 1 {
                ranges = partition_ranges(&self.spec, col, n).await?.into_iter().map(Some).collect();
            }
        }
        // Each column is cast to the type the binary pinned (a declared schema may name
        // `float64` for a numeric column, `string` for a uuid): PostgreSQL converts.
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let q = quote_ident(f.name());
                match super::write::pg_type(f.data_type()) {
                    Some(t) => format!("CAST({q} AS {t}) AS {q}"),
                    None => q,
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let selects = ranges
            .into_iter()
            .map(|range| {
                let mut conds = wheres.clone();
                conds.extend(range);
                let mut sql = format!("SELECT {columns} FROM {}", self.spec.relation);
                if !conds.is_empty() {
                    sql.push_str(&format!(" WHERE {}", conds.iter().map(|c| format!("({c})")).collect::<Vec<_>>().join(" AND ")));
                }
                if let Some(n) = limit {
                    sql.push_str(&format!(" LIMIT {n}"));
                }
                sql
            })
            .collect();
        Ok(scan_exec(self.spec.clone(), schema, selects))
    }
}

/// Spark's JDBC ranges: a stride of (upper - lower) / n; the first range also takes
/// NULLs and everything below, the last everything above. Without bounds in the
/// spec, the column's min and max are asked for.
async fn partition_ranges(spec: &PgTableSpec, col: &str, n: u32) -> Result<Vec<String>> {
    let (lower, upper) = match (spec.lower_bound, spec.upper_bound) {
        (Some(l), Some(u)) => (l, u),
        _ => {
            let client = connect(&resolve(&spec.url)?).await.map_err(|e| fail(spec, e))?;
            let c = quote_ident(col);
            let row = client
                .query_one(&format!("SELECT min({c})::int8, max({c})::int8 FROM {}", spec.relation), &[])
                .await
                .map_err(|e| fail(spec, error_text(&e)))?;
            let (min, max): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
            (spec.lower_bound.or(min).unwrap_or(0), spec.upper_bound.or(max).unwrap_or(0))
        }
    };
    Ok(ranges(&quote_ident(col), lower, upper, n))
}

/// The predicates of `n` disjoint ranges that cover every row.
pub fn ranges(col: &str, lower: i64, upper: i64, n: u32) -> Vec<String> {
    let span = (upper as i128 - lower as i128).max(0);
    let n = (n as i128).min(span.max(1)) as i64;
    if n <= 1 {
        return vec!["TRUE".into()];
    }
    let stride = ((span / n as i128) as i64).max(1);
    (0..n)
        .map(|i| {
            let lo = lower + i * stride;
            let hi = lo + stride;
            match i {
                0 => format!("{col} < {hi} OR {col} IS NULL"),
                i if i == n - 1 => format!("{col} >= {lo}"),
                _ => format!("{col} >= {lo} AND {col} < {hi}"),
            }
        })
        .collect()
}

/// Before anything runs: the server is reachable and the relation still has the
/// pinned columns with the pinned types (a drifted table fails the run, naming it).
pub async fn check(pg: &crate::plan::PgSource, pinned: &SchemaRef, values: &crate::params::Values) -> crate::Result<()> {
    let url = crate::params::interpolate(&pg.url, values, |v| std::env::var(v).ok())?;
    let what = pg.table.as_ref().map_or("query".to_string(), |t| format!("table {t}"));
    let read = |message: String| crate::Error::Read { path: crate::redact::text(&format!("PostgreSQL {what} on {}", describe(&url))), message: crate::redact::text(&message) };
    let client = connect(&url).await.map_err(read)?;
    let (found, _) = super::describe_relation(&client, &super::relation(pg.table.as_deref(), pg.query.as_deref())).await.map_err(read)?;
    for f in pinned.fields() {
        match found.field_with_name(f.name()) {
            Ok(now) if family(now.data_type()) == family(f.data_type()) => {}
            Ok(now) => return Err(read(format!("column `{}`: expected {}, found {} (the binary pinned the schema at build time; rebuild, or cast in a `query`)", f.name(), f.data_type(), now.data_type()))),
            Err(_) => return Err(read(format!("column `{}` is missing (the binary pinned the schema at build time)", f.name()))),
        }
    }
    Ok(())
}

/// Kinds of value a pinned column may be read as from a column of another type
/// of the same kind (PostgreSQL casts): a type change across kinds is drift.
fn family(dt: &DataType) -> u8 {
    match dt {
        DataType::Boolean => 0,
        d if d.is_numeric() => 1,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 2,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => 3,
        DataType::Time32(_) | DataType::Time64(_) => 4,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => 5,
        DataType::List(_) | DataType::LargeList(_) => 6,
        _ => 7,
    }
}

/// The scan of a PostgreSQL source: a `DataSourceExec` over a [`FileScanConfig`]
/// whose "files" are the ranges (`kiln-pg-range/I`, one file group each) and
/// whose [`PgRangeSource`] runs range I's COPY. Ballista gives each task the
/// file groups of its partitions, so each range is read once, by one task.
pub fn scan_exec(spec: PgTableSpec, schema: SchemaRef, selects: Vec<String>) -> Arc<dyn ExecutionPlan> {
    let groups: Vec<FileGroup> = (0..selects.len()).map(|i| FileGroup::new(vec![PartitionedFile::new(format!("{RANGE_PREFIX}{i}"), 0)])).collect();
    let source = Arc::new(PgRangeSource::new(spec, selects, TableSchema::from(schema)));
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source).with_file_groups(groups).build();
    DataSourceExec::from_data_source(config)
}

/// Path of range I's stand-in file.
const RANGE_PREFIX: &str = "kiln-pg-range/";

/// Reads ranges of a PostgreSQL relation: range I runs `selects[I]` through binary COPY.
#[derive(Clone)]
pub struct PgRangeSource {
    pub spec: PgTableSpec,
    pub selects: Vec<String>,
    table_schema: TableSchema,
    metrics: ExecutionPlanMetricsSet,
    batch_size: usize,
}

impl PgRangeSource {
    pub fn new(spec: PgTableSpec, selects: Vec<String>, table_schema: TableSchema) -> PgRangeSource {
        PgRangeSource { spec, selects, table_schema, metrics: ExecutionPlanMetricsSet::new(), batch_size: 8192 }
    }
}

impl FileSource for PgRangeSource {
    fn create_file_opener(&self, _store: Arc<dyn object_store::ObjectStore>, config: &FileScanConfig, _partition: usize) -> Result<Arc<dyn FileOpener>> {
        let batch_size = config.batch_size.unwrap_or(self.batch_size);
        Ok(Arc::new(PgRangeOpener { source: self.clone(), batch_size }))
    }

    fn table_schema(&self) -> &TableSchema {
        &self.table_schema
    }

    fn with_batch_size(&self, batch_size: usize) -> Arc<dyn FileSource> {
        Arc::new(PgRangeSource { batch_size, ..self.clone() })
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        &self.metrics
    }

    fn file_type(&self) -> &str {
        "postgres"
    }

    fn fmt_extra(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, ", {}", self.spec.what)
    }

    /// Each range is one file group: never split or merged by size.
    fn supports_repartitioning(&self) -> bool {
        false
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
}

struct PgRangeOpener {
    source: PgRangeSource,
    batch_size: usize,
}

impl FileOpener for PgRangeOpener {
    fn open(&self, file: PartitionedFile) -> Result<FileOpenFuture> {
        let path = file.object_meta.location.to_string();
        let select = path
            .strip_prefix(RANGE_PREFIX)
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| self.source.selects.get(i).cloned())
            .ok_or_else(|| DataFusionError::Internal(format!("{path} is not a range of {}", self.source.spec.what)))?;
        let (spec, schema, batch_size) = (self.source.spec.clone(), self.source.table_schema.table_schema().clone(), self.batch_size);
        Ok(Box::pin(copy_out(spec, schema, select, batch_size)))
    }
}

/// Any value, as the bytes the server sent.
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

async fn copy_out(spec: PgTableSpec, schema: SchemaRef, select: String, batch_size: usize) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
    let client = connect(&resolve(&spec.url)?).await.map_err(|e| fail(&spec, e))?;
    let stmt = client.prepare(&select).await.map_err(|e| fail(&spec, error_text(&e)))?;
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    // What the server sends each column as; [`decode`] casts it to the pinned type.
    let mut sent = Vec::with_capacity(types.len());
    for c in stmt.columns() {
        let dt = super::arrow_type(c.type_(), c.type_modifier()).ok_or_else(|| fail(&spec, format!("column `{}` has PostgreSQL type {}, which Kiln does not read", c.name(), c.type_().name())))?;
        sent.push(Field::new(c.name(), dt, true));
    }
    let sent = Arc::new(Schema::new(sent));
    let copy = client.copy_out(&format!("COPY ({select}) TO STDOUT (FORMAT binary)")).await.map_err(|e| fail(&spec, error_text(&e)))?;
    let rows = BinaryCopyOutStream::new(copy, &types).chunks(batch_size.max(1));
    let stream = rows.map(move |chunk| {
        let _client = &client; // the connection lives as long as the stream
        let rows = chunk.into_iter().collect::<std::result::Result<Vec<_>, _>>().map_err(|e| fail(&spec, error_text(&e)))?;
        decode(&rows, &sent, &types, &schema).map_err(|e| fail(&spec, e))
    });
    Ok(stream.boxed())
}

fn decode(rows: &[tokio_postgres::binary_copy::BinaryCopyOutRow], sent: &SchemaRef, types: &[Type], schema: &SchemaRef) -> std::result::Result<RecordBatch, String> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, ((field, pg), pinned)) in sent.fields().iter().zip(types).zip(schema.fields()).enumerate() {
        let values: Vec<Option<&[u8]>> = rows
            .iter()
            .map(|r| r.try_get::<Option<Raw>>(i).map(|v| v.map(|r| r.0)))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| format!("column `{}`: {e}", field.name()))?;
        let array = decode_column(&values, field.data_type(), pg).map_err(|e| format!("column `{}`: {e}", field.name()))?;
        let array = if array.data_type() == pinned.data_type() {
            array
        } else {
            let strict = datafusion::arrow::compute::CastOptions { safe: false, ..Default::default() };
            datafusion::arrow::compute::cast_with_options(&array, pinned.data_type(), &strict).map_err(|e| format!("column `{}`: {e}", field.name()))?
        };
        columns.push(array);
    }
    RecordBatch::try_new_with_options(schema.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(rows.len()))).map_err(|e| e.to_string())
}

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

fn be<const N: usize>(v: &[u8]) -> std::result::Result<[u8; N], String> {
    v.try_into().map_err(|_| format!("expected {N} bytes, got {}", v.len()))
}

/// Decodes one column's binary values into an Arrow array of type `dt`.
pub(crate) fn decode_column(values: &[Option<&[u8]>], dt: &DataType, pg: &Type) -> std::result::Result<ArrayRef, String> {
    macro_rules! fixed {
        ($builder:ty, $conv:expr) => {{
            let mut b = <$builder>::with_capacity(values.len());
            for v in values {
                match v {
                    Some(v) => b.append_value($conv(v)?),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match dt {
        DataType::Boolean => fixed!(BooleanBuilder, |v: &[u8]| Ok::<_, String>(v.first().is_some_and(|b| *b != 0))),
        DataType::Int16 => fixed!(Int16Builder, |v: &[u8]| be::<2>(v).map(i16::from_be_bytes)),
        DataType::Int32 => fixed!(Int32Builder, |v: &[u8]| be::<4>(v).map(i32::from_be_bytes)),
        DataType::Int64 if *pg == Type::OID => fixed!(Int64Builder, |v: &[u8]| be::<4>(v).map(|b| u32::from_be_bytes(b) as i64)),
        DataType::Int64 => fixed!(Int64Builder, |v: &[u8]| be::<8>(v).map(i64::from_be_bytes)),
        DataType::Float32 => fixed!(Float32Builder, |v: &[u8]| be::<4>(v).map(f32::from_be_bytes)),
        DataType::Float64 => fixed!(Float64Builder, |v: &[u8]| be::<8>(v).map(f64::from_be_bytes)),
        DataType::Date32 => fixed!(Date32Builder, |v: &[u8]| be::<4>(v).and_then(|b| finite(i32::from_be_bytes(b) as i64).map(|d| d as i32 + PG_EPOCH_DAYS))),
        DataType::Timestamp(_, tz) => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(values.len());
            for v in values {
                match v {
                    Some(v) => b.append_value(finite(i64::from_be_bytes(be::<8>(v)?))? + PG_EPOCH_US),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish().with_timezone_opt(tz.clone())) as ArrayRef
        }
        DataType::Time64(_) => fixed!(Time64MicrosecondBuilder, |v: &[u8]| be::<8>(v).map(i64::from_be_bytes)),
        DataType::Decimal128(p, s) => {
            let mut b = Decimal128Builder::with_capacity(values.len());
            for v in values {
                match v {
                    Some(v) => b.append_value(numeric(v, *s, *p)?),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish().with_precision_and_scale(*p, *s).map_err(|e| e.to_string())?) as ArrayRef
        }
        DataType::Utf8 => {
            let mut b = StringBuilder::with_capacity(values.len(), values.iter().flatten().map(|v| v.len()).sum());
            for v in values {
                match v {
                    Some(v) if *pg == Type::UUID => b.append_value(uuid(v)?),
                    Some(v) => {
                        // jsonb's binary form is a version byte (1), then the text.
                        let v = if *pg == Type::JSONB { v.get(1..).unwrap_or_default() } else { v };
                        b.append_value(std::str::from_utf8(v).map_err(|e| format!("not UTF-8: {e}"))?)
                    }
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }
        DataType::Binary => {
            let mut b = BinaryBuilder::with_capacity(values.len(), values.iter().flatten().map(|v| v.len()).sum());
            for v in values {
                match v {
                    Some(v) => b.append_value(v),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }
        DataType::List(item) => {
            let tokio_postgres::types::Kind::Array(inner) = pg.kind() else { return Err(format!("{} is not an array type", pg.name())) };
            let mut offsets = vec![0i32];
            let mut elements: Vec<Option<&[u8]>> = Vec::new();
            let mut valid = Vec::with_capacity(values.len());
            for v in values {
                if let Some(v) = v {
                    array_elements(v, &mut elements)?;
                }
                valid.push(v.is_some());
                offsets.push(elements.len() as i32);
            }
            let child = decode_column(&elements, item.data_type(), inner)?;
            Arc::new(
                ListArray::try_new(item.clone(), OffsetBuffer::new(offsets.into()), child, Some(NullBuffer::from(valid))).map_err(|e| e.to_string())?,
            ) as ArrayRef
        }
        other => return Err(format!("Kiln does not read {other} from PostgreSQL")),
    })
}

/// Infinite dates and timestamps have no Arrow value.
fn finite(v: i64) -> std::result::Result<i64, String> {
    if v == i64::MAX || v == i64::MIN || v == i32::MAX as i64 || v == i32::MIN as i64 {
        return Err("an infinite date or timestamp has no Arrow value; filter it out or cast it in a `query`".into());
    }
    Ok(v)
}

fn uuid(v: &[u8]) -> std::result::Result<String, String> {
    let b: [u8; 16] = be::<16>(v)?;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

/// The elements of a one-dimensional PostgreSQL array in binary form.
fn array_elements<'a>(v: &'a [u8], out: &mut Vec<Option<&'a [u8]>>) -> std::result::Result<(), String> {
    let int = |at: usize| be::<4>(v.get(at..at + 4).ok_or("truncated array")?).map(i32::from_be_bytes);
    let ndim = int(0)?;
    if ndim == 0 {
        return Ok(());
    }
    if ndim != 1 {
        return Err(format!("a {ndim}-dimensional array; Kiln reads one-dimensional arrays"));
    }
    let len = int(12)?.max(0) as usize;
    let mut at = 20;
    for _ in 0..len {
        let n = int(at)?;
        at += 4;
        if n < 0 {
            out.push(None);
        } else {
            let end = at + n as usize;
            out.push(Some(v.get(at..end).ok_or("truncated array")?));
            at = end;
        }
    }
    Ok(())
}

/// A binary `numeric` as a decimal with scale `s` (digits past it are rounded half away from zero).
pub(crate) fn numeric(v: &[u8], s: i8, p: u8) -> std::result::Result<i128, String> {
    let word = |i: usize| be::<2>(v.get(i * 2..i * 2 + 2).ok_or("truncated numeric")?).map(i16::from_be_bytes);
    let (ndigits, weight, sign) = (word(0)? as usize, word(1)? as i32, word(2)? as u16);
    if sign == 0xC000 || sign == 0xD000 || sign == 0xF000 {
        return Err("NaN or infinity has no decimal value; filter it out or cast it in a `query`".into());
    }
    let overflow = || format!("a value does not fit decimal({p},{s})");
    let mut value: i128 = 0;
    let mut remainder_digits: Vec<i128> = Vec::new();
    for i in 0..ndigits {
        let d = word(4 + i)? as i128;
        let exp = 4 * (weight - i as i32) + s as i32;
        if exp >= 0 {
            let scaled = d.checked_mul(10i128.checked_pow(exp as u32).ok_or_else(overflow)?).ok_or_else(overflow)?;
            value = value.checked_add(scaled).ok_or_else(overflow)?;
        } else if exp > -4 {
            let div = 10i128.pow((-exp) as u32);
            value += d / div;
            remainder_digits.push((d % div) * 10 / div);
        } else if exp == -4 && remainder_digits.is_empty() {
            remainder_digits.push(d / 1000);
        }
    }
    // Round half away from zero on the first dropped digit.
    if remainder_digits.first().is_some_and(|d| *d >= 5) {
        value += 1;
    }
    if value >= 10i128.pow(p as u32) {
        return Err(overflow());
    }
    Ok(if sign == 0x4000 { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [ndigits, weight, sign as i16, dscale as i16].iter().chain(digits) {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_decode_to_scaled_integers() {
        // 12345.678 = [1, 2345, 6780] weight 1
        assert_eq!(numeric(&numeric_bytes(3, 1, 0, 3, &[1, 2345, 6780]), 3, 10).unwrap(), 12_345_678);
        assert_eq!(numeric(&numeric_bytes(3, 1, 0x4000, 3, &[1, 2345, 6780]), 2, 10).unwrap(), -1_234_568);
        // 0.05 = [500] weight -1
        assert_eq!(numeric(&numeric_bytes(1, -1, 0, 2, &[500]), 2, 5).unwrap(), 5);
        assert_eq!(numeric(&numeric_bytes(0, 0, 0, 0, &[]), 2, 5).unwrap(), 0);
        // 1.5 at scale 0 rounds away from zero
        assert_eq!(numeric(&numeric_bytes(2, 0, 0, 1, &[1, 5000]), 0, 5).unwrap(), 2);
        assert!(numeric(&numeric_bytes(1, 2, 0, 0, &[1]), 2, 5).is_err()); // 10^8 does not fit decimal(5,2)
        assert!(numeric(&numeric_bytes(0, 0, 0xC000, 0, &[]), 2, 5).is_err());
    }

    #[test]
    fn ranges_cover_every_row_once() {
        assert_eq!(ranges("c", 0, 100, 4), vec!["c < 25 OR c IS NULL", "c >= 25 AND c < 50", "c >= 50 AND c < 75", "c >= 75"]);
        assert_eq!(ranges("c", 5, 5, 4), vec!["TRUE"]);
        assert_eq!(ranges("c", 0, 2, 8).len(), 2);
    }
}
