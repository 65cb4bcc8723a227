//! Writing a PostgreSQL sink: one transaction, opened when the sink starts and
//! committed at the run's commit point ([`PgStaged::commit`]); a failed or
//! killed run never commits it, and the server rolls it back.
//!
//! Rows travel as binary COPY (pgpq encodes the Arrow batches):
//! - `append`: `COPY t (cols) FROM STDIN`.
//! - `overwrite`: `TRUNCATE t`, then the COPY, in the same transaction (readers
//!   see the old rows until the commit, then the new ones; the table keeps its
//!   indexes, constraints and grants).
//! - `upsert`: COPY into a temporary table, then `INSERT INTO t … SELECT … ON
//!   CONFLICT (keys) DO UPDATE SET` every other column.
//! - `error_if_exists` / `ignore`: decided before the run by [`exists`].
//!
//! A missing table is created from the rows' schema (as Spark's JDBC writer
//! does), with the upsert keys as its primary key. Values are cast to the
//! existing columns' types first (an overflow is an error, never a NULL);
//! columns whose binary form differs from what Arrow gives (uuid, jsonb, enums,
//! arrays of other element types) go through the temporary table and a SQL cast.

use std::sync::Arc;

use bytes::BytesMut;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::dataframe::DataFrame;
use futures::{SinkExt, StreamExt};
use tokio_postgres::Client;
use tokio_postgres::types::{Kind, Type};

use super::{arrow_type, connect, describe, error_text, quote_ident, quote_name};
use crate::plan::{Sink, WriteMode};
use crate::{Error, Result};

/// Bytes of COPY data sent per message.
const CHUNK: usize = 1 << 20;

fn sink_error(sink: &Sink, message: String) -> Error {
    Error::Sink { sink: sink.name.clone(), message: crate::redact::text(&format!("table {}: {message}", sink.table)) }
}

/// Whether the sink's table exists (for `error_if_exists` and `ignore`); also
/// proves, before anything runs, that the server is reachable with these credentials.
pub async fn exists(sink: &Sink, url: &str) -> Result<bool> {
    let client = connect(url).await.map_err(|e| sink_error(sink, e))?;
    table_exists(&client, &sink.table).await.map_err(|e| sink_error(sink, e))
}

async fn table_exists(client: &Client, table: &str) -> std::result::Result<bool, String> {
    let row = client.query_one("SELECT to_regclass($1)::text", &[&quote_name(table)]).await.map_err(|e| error_text(&e))?;
    Ok(row.get::<_, Option<String>>(0).is_some())
}

/// A sink's rows, written inside an open transaction.
pub struct PgStaged {
    client: Client,
    pub rows: u64,
}

impl std::fmt::Debug for PgStaged {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "PgStaged({} rows)", self.rows)
    }
}

impl PgStaged {
    pub async fn commit(self, sink: &str, table: &str) -> Result<()> {
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| Error::Sink { sink: sink.to_string(), message: crate::redact::text(&format!("table {table}: committing: {}", error_text(&e))) })
    }

    pub async fn abort(self) {
        let _ = self.client.batch_execute("ROLLBACK").await;
    }
}

/// Whether binary COPY of `arrow` (as pgpq encodes it) is what a column of type `pg` receives.
fn copies_directly(pg: &Type) -> bool {
    match pg.kind() {
        Kind::Array(inner) => matches!(*inner, Type::BOOL | Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC | Type::TEXT | Type::DATE | Type::TIMESTAMP | Type::BYTEA),
        _ => matches!(
            *pg,
            Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::NUMERIC
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::JSON
                | Type::DATE
                | Type::TIMESTAMP
                | Type::TIMESTAMPTZ
                | Type::TIME
                | Type::BYTEA
        ),
    }
}

/// The PostgreSQL column type Kiln creates for an Arrow type; `None` for one it cannot write.
pub fn pg_type(dt: &DataType) -> Option<String> {
    Some(match dt {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric(20,0)".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(p, s) if *s >= 0 => format!("numeric({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Time64(_) | DataType::Time32(_) => "time".into(),
        DataType::List(item) | DataType::LargeList(item) => match pg_type(item.data_type())? {
            t if t.ends_with("[]") => return None,
            t => format!("{t}[]"),
        },
        DataType::Dictionary(_, v) => return pg_type(v),
        _ => return None,
    })
}

/// The Arrow type Kiln sends for a column it creates (what pgpq encodes as `pg_type`).
fn send_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Int8 | DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 => DataType::Int64,
        DataType::UInt64 => DataType::Decimal128(20, 0),
        DataType::Float16 => DataType::Float32,
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        DataType::Time32(_) | DataType::Time64(_) => DataType::Time64(TimeUnit::Microsecond),
        DataType::List(item) | DataType::LargeList(item) => DataType::List(Arc::new(Field::new("item", send_type(item.data_type()), true))),
        DataType::Dictionary(_, v) => send_type(v),
        other => other.clone(),
    }
}

/// How the rows reach the table.
struct Plan {
    /// The Arrow schema the COPY carries.
    schema: SchemaRef,
    /// `Some(casts)`: through a temporary table, with one SQL expression per column.
    staged: Option<Vec<String>>,
}

/// Executes `df` into the sink's table inside a transaction left open.
pub async fn stage(df: DataFrame, sink: &Sink, url: &str) -> Result<PgStaged> {
    let err = |m: String| sink_error(sink, m);
    let client = connect(url).await.map_err(err)?;
    client.batch_execute("BEGIN").await.map_err(|e| err(error_text(&e)))?;
    let input = df.schema().as_arrow().clone();
    let table = quote_name(&sink.table);
    let columns: Vec<String> = input.fields().iter().map(|f| quote_ident(f.name())).collect();
    let plan = if table_exists(&client, &sink.table).await.map_err(err)? {
        plan_for_existing(&client, &table, &input, sink.mode == WriteMode::Upsert).await.map_err(err)?
    } else {
        create(&client, &table, &input, &sink.keys).await.map_err(err)?;
        Plan { schema: Arc::new(Schema::new(input.fields().iter().map(|f| Field::new(f.name(), send_type(f.data_type()), true)).collect::<Vec<_>>())), staged: None }
    };
    let staged = if sink.mode == WriteMode::Upsert && plan.staged.is_none() { Some(columns.clone()) } else { plan.staged.clone() };
    if sink.mode == WriteMode::Overwrite {
        client.batch_execute(&format!("TRUNCATE {table}")).await.map_err(|e| err(error_text(&e)))?;
    }
    let into = if staged.is_some() {
        let ddl: Vec<String> = plan.schema.fields().iter().map(|f| format!("{} {}", quote_ident(f.name()), pg_type(f.data_type()).unwrap_or_else(|| "text".into()))).collect();
        client.batch_execute(&format!("CREATE TEMP TABLE kiln_stage ({}) ON COMMIT DROP", ddl.join(", "))).await.map_err(|e| err(error_text(&e)))?;
        "kiln_stage".to_string()
    } else {
        table.clone()
    };
    let rows = copy_in(&client, &into, &columns, &plan.schema, df).await.map_err(err)?;
    if let Some(casts) = staged {
        let mut sql = format!("INSERT INTO {table} ({}) SELECT {} FROM kiln_stage", columns.join(", "), casts.join(", "));
        if sink.mode == WriteMode::Upsert {
            let keys: Vec<String> = sink.keys.iter().map(|k| quote_ident(k)).collect();
            let set: Vec<String> = columns.iter().filter(|c| !keys.contains(c)).map(|c| format!("{c} = EXCLUDED.{c}")).collect();
            let action = if set.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", set.join(", ")) };
            sql.push_str(&format!(" ON CONFLICT ({}) DO {action}", keys.join(", ")));
        }
        client.batch_execute(&sql).await.map_err(|e| err(error_text(&e)))?;
    }
    Ok(PgStaged { client, rows })
}

async fn create(client: &Client, table: &str, input: &Schema, keys: &[String]) -> std::result::Result<(), String> {
    let mut cols = Vec::new();
    for f in input.fields() {
        let t = pg_type(f.data_type()).ok_or_else(|| format!("column `{}` has type {}, which Kiln cannot write to PostgreSQL", f.name(), f.data_type()))?;
        cols.push(format!("{} {t}", quote_ident(f.name())));
    }
    if !keys.is_empty() {
        cols.push(format!("PRIMARY KEY ({})", keys.iter().map(|k| quote_ident(k)).collect::<Vec<_>>().join(", ")));
    }
    client.batch_execute(&format!("CREATE TABLE {table} ({})", cols.join(", "))).await.map_err(|e| error_text(&e))
}

/// Matches the rows' columns to the table's by name and picks the Arrow type to send each as.
async fn plan_for_existing(client: &Client, table: &str, input: &Schema, upsert: bool) -> std::result::Result<Plan, String> {
    let stmt = client.prepare(&format!("SELECT * FROM {table} LIMIT 0")).await.map_err(|e| error_text(&e))?;
    let mut fields = Vec::new();
    let mut casts = Vec::new();
    let mut direct = true;
    for f in input.fields() {
        let Some(c) = stmt.columns().iter().find(|c| c.name() == f.name()) else {
            let have: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
            return Err(format!("has no column `{}` (it has: {})", f.name(), have.join(", ")));
        };
        let name = quote_ident(f.name());
        match arrow_type(c.type_(), c.type_modifier()).filter(|_| copies_directly(c.type_())) {
            Some(dt) => {
                fields.push(Field::new(f.name(), dt, true));
                casts.push(name);
            }
            None => {
                // Sent as Kiln would create it, cast by PostgreSQL on the way in.
                direct = false;
                fields.push(Field::new(f.name(), send_type(f.data_type()), true));
                casts.push(format!("{name}::{}.{}", quote_ident(c.type_().schema()), quote_ident(c.type_().name())));
            }
        }
    }
    Ok(Plan { schema: Arc::new(Schema::new(fields)), staged: if direct && !upsert { None } else { Some(casts) } })
}

/// Streams `df` into `into` as binary COPY; returns the rows sent.
async fn copy_in(client: &Client, into: &str, columns: &[String], schema: &SchemaRef, df: DataFrame) -> std::result::Result<u64, String> {
    let mut encoder = pgpq::ArrowToPostgresBinaryEncoder::try_new(schema).map_err(|e| format!("cannot encode the rows for PostgreSQL: {e}"))?;
    let sink = client
        .copy_in::<_, bytes::Bytes>(&format!("COPY {into} ({}) FROM STDIN (FORMAT binary)", columns.join(", ")))
        .await
        .map_err(|e| error_text(&e))?;
    futures::pin_mut!(sink);
    let mut buf = BytesMut::with_capacity(CHUNK * 2);
    encoder.write_header(&mut buf).map_err(|e| e.to_string())?;
    let mut stream = df.execute_stream().await.map_err(|e| e.to_string())?;
    let strict = CastOptions { safe: false, ..Default::default() };
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| e.to_string())?;
        let cols = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    cast_with_options(c, f.data_type(), &strict).map_err(|e| format!("column `{}`: {e}", f.name()))
                }
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())?;
        rows += batch.num_rows() as u64;
        encoder.write_batch(&batch, &mut buf).map_err(|e| format!("cannot encode the rows for PostgreSQL: {e}"))?;
        if buf.len() >= CHUNK {
            sink.send(buf.split().freeze()).await.map_err(|e| error_text(&e))?;
        }
    }
    encoder.write_footer(&mut buf).map_err(|e| e.to_string())?;
    sink.send(buf.split().freeze()).await.map_err(|e| error_text(&e))?;
    sink.as_mut().finish().await.map_err(|e| error_text(&e))?;
    Ok(rows)
}

/// For messages: where a sink writes.
pub fn target(sink: &Sink, url: &str) -> String {
    format!("{} on {}", sink.table, describe(url))
}
