//! Delta Lake sinks (SPEC §6a): one Delta transaction per sink per run.
//!
//! A Delta commit is the table's atomicity: data files written by a run that
//! never commits are not part of the table (`VACUUM` removes them). Kiln stages
//! a Delta sink like any other: delta-rs executes the plan and writes the
//! Parquet files concurrently with the run's other sinks, and then stops at the
//! door of the log. The sink's log store is wrapped in a [`Gate`] whose
//! `write_commit_entry` waits for the run's verdict: when every sink is staged
//! and every `fail` rule passed, the gate opens and delta-rs writes
//! `_delta_log/N.json` (with its usual conflict checks and retries against
//! concurrent writers); otherwise it refuses, and the table is unchanged.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::Expr;
use deltalake_core::kernel::transaction::{CommitProperties, TransactionError};
use deltalake_core::logstore::{CommitOrBytes, LogStore, LogStoreConfig, LogStoreRef};
use deltalake_core::operations::write::SchemaMode;
use deltalake_core::protocol::SaveMode;
use deltalake_core::{DeltaTable, DeltaTableError};
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::plan::{Sink, WriteMode};
use crate::sources::delta as table;
use crate::{Error, Result};

/// Whether a Delta table exists at `location` (its log has a commit).
pub async fn exists(location: &str) -> Result<bool> {
    let t = DeltaTable::new(table::log_store(location)?);
    t.verify_deltatable_existence().await.map_err(|e| table::error(location, e))
}

/// A sink's write, executed and held before its commit.
pub struct Held {
    decide: Option<oneshot::Sender<bool>>,
    task: tokio::task::JoinHandle<std::result::Result<(), DeltaTableError>>,
    location: String,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("location", &crate::redact::text(&self.location)).finish()
    }
}

impl Held {
    /// Opens the gate: delta-rs writes the commit (retrying past concurrent
    /// appends, failing on a real conflict).
    pub async fn commit(mut self, sink: &str) -> Result<()> {
        if let Some(d) = self.decide.take() {
            let _ = d.send(true);
        }
        match (&mut self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(sink_error(sink, &e)),
            Err(e) => Err(Error::Sink { sink: sink.to_string(), message: format!("the Delta write stopped: {e}") }),
        }
    }

    /// Refuses the commit: the table keeps its current version.
    pub async fn abort(mut self) {
        if let Some(d) = self.decide.take() {
            let _ = d.send(false);
        }
        let _ = (&mut self.task).await;
    }
}

fn sink_error(sink: &str, e: &DeltaTableError) -> Error {
    let text = crate::storage::one_line(e);
    // delta-rs' check that every new row satisfies `replace_where`, with its preview of them.
    let message = match text.find("rows failed validation check") {
        Some(_) => format!(
            "some new rows do not satisfy `replace_where` (it replaces the rows it selects, so every new row must satisfy it); nothing was committed. {}",
            text.trim_start_matches("Generic DeltaTable error: External error: ")
        ),
        None => text,
    };
    Error::Sink { sink: sink.to_string(), message: crate::redact::text(&message) }
}

/// The new data must have the table's columns with the table's types; new
/// columns only with `schema_mode = "merge"` (SPEC §6a). Checked before any
/// file is written.
fn same_columns(sink: &Sink, table: &datafusion::arrow::datatypes::Schema, new: &datafusion::arrow::datatypes::Schema) -> Result<()> {
    let fail = |message: String| Err(Error::Sink { sink: sink.name.clone(), message });
    let missing: Vec<&str> = table.fields().iter().filter(|f| new.field_with_name(f.name()).is_err()).map(|f| f.name().as_str()).collect();
    if !missing.is_empty() {
        return fail(format!("the table has column(s) the new data lacks: {}; select them (NULL AS name, cast to the table's type) or write to a new table", missing.join(", ")));
    }
    for f in new.fields() {
        match table.field_with_name(f.name()) {
            Ok(have) if !crate::sources::drift::same_type(have.data_type(), f.data_type()) => {
                return fail(format!("column `{}` is {} in the table but {} in the new data; cast it to the table's type", f.name(), have.data_type(), f.data_type()));
            }
            Ok(_) => {}
            Err(_) if sink.schema_merge => {}
            Err(_) => {
                let added: Vec<String> = new.fields().iter().filter(|f| table.field_with_name(f.name()).is_err()).map(|f| format!("`{}` ({})", f.name(), f.data_type())).collect();
                return fail(format!("the new data has column(s) the table does not: {}; set schema_mode = \"merge\" to add them to the table, or drop them", added.join(", ")));
            }
        }
    }
    Ok(())
}

/// Executes `df` into the Delta table at `location` and holds the commit.
/// Returns the held write and the rows it commits (the source rows of a merge).
///
/// On a cluster (`cluster`), the plan runs there and its rows stream back to
/// this process, which writes the files and commits: delta-rs' write and merge
/// nodes are planned by a local session, over the distributed plan as a table.
pub async fn stage(df: DataFrame, sink: &Sink, location: &str, cluster: bool) -> Result<(Held, u64)> {
    let err = |e: DeltaTableError| sink_error(&sink.name, &e);
    let (reached_tx, reached_rx) = oneshot::channel::<u64>();
    let (decide_tx, decide_rx) = oneshot::channel::<bool>();
    let gate = Arc::new(Gate {
        inner: table::log_store(location)?,
        reached: Mutex::new(Some(reached_tx)),
        decision: tokio::sync::Mutex::new(Decision::Waiting(decide_rx)),
    });
    let mut t = DeltaTable::new(gate.clone() as LogStoreRef);
    let exists = t.verify_deltatable_existence().await.map_err(err)?;
    if exists {
        t.load().await.map_err(err)?;
        let have = t.snapshot().map_err(err)?.snapshot().arrow_schema();
        same_columns(sink, &have, df.schema().as_arrow())?;
    }
    let df = if cluster { planned(df, &sink.name).await? } else { df };
    let (state, plan) = df.clone().into_parts();
    let state = Arc::new(state);
    let properties = writer_properties(sink).map_err(|message| Error::Sink { sink: sink.name.clone(), message })?;
    let task: futures::future::BoxFuture<'static, std::result::Result<(), DeltaTableError>> = if sink.mode == WriteMode::Merge && exists {
        let on = sink
            .keys
            .iter()
            .map(|k| qualified("target", k).eq(qualified("source", k)))
            .reduce(Expr::and)
            .ok_or_else(|| Error::Sink { sink: sink.name.clone(), message: "mode = \"merge\" needs keys".into() })?;
        let columns: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
        // delta-rs plans a merge with its own planner, which knows none of Kiln's
        // nodes (join hints, shared nodes, metrics): the source is planned here,
        // by Kiln's, and handed over as a table.
        let physical = df.clone().create_physical_plan().await.map_err(|e| Error::Sink { sink: sink.name.clone(), message: e.to_string() })?;
        let ctx = datafusion::prelude::SessionContext::new_with_state(state.as_ref().clone());
        let source = ctx.read_table(Arc::new(Planned(physical))).map_err(|e| Error::Sink { sink: sink.name.clone(), message: e.to_string() })?;
        let builder = t
            .merge(source, on)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_merge_schema(sink.schema_merge)
            .with_session_state(state)
            .with_writer_properties(properties)
            .with_commit_properties(CommitProperties::default())
            .when_matched_update(|u| columns.iter().fold(u, |u, c| u.update(unqualified(c), qualified("source", c))))
            .map_err(err)?
            .when_not_matched_insert(|i| columns.iter().fold(i, |i, c| i.set(unqualified(c), qualified("source", c))))
            .map_err(err)?;
        Box::pin(async move { builder.await.map(|_| ()) })
    } else {
        let mode = match sink.mode {
            WriteMode::Append | WriteMode::Merge => SaveMode::Append,
            WriteMode::ErrorIfExists => SaveMode::ErrorIfExists,
            WriteMode::Ignore => SaveMode::Ignore,
            _ => SaveMode::Overwrite,
        };
        let mut builder = t
            .write(Vec::new())
            .with_input_plan(plan)
            .with_session_state(state)
            .with_save_mode(mode)
            .with_writer_properties(properties);
        if !sink.partition_by.is_empty() {
            builder = builder.with_partition_columns(sink.partition_by.clone());
        }
        if sink.schema_merge {
            builder = builder.with_schema_mode(SchemaMode::Merge);
        }
        if let Some(predicate) = &sink.replace_where {
            builder = builder.with_replace_where(predicate.clone());
        }
        Box::pin(async move { builder.await.map(|_| ()) })
    };
    let mut task = tokio::spawn(task);
    tokio::select! {
        rows = reached_rx => {
            // The data files are written; the commit waits at the gate.
            let rows = rows.unwrap_or(0);
            Ok((Held { decide: Some(decide_tx), task, location: location.to_string() }, rows))
        }
        done = &mut task => match done {
            // Finished without committing anything (nothing to do).
            Ok(Ok(())) => Ok((Held { decide: Some(decide_tx), task: tokio::spawn(async { Ok(()) }), location: location.to_string() }, 0)),
            Ok(Err(e)) => Err(err(e)),
            Err(e) => Err(Error::Sink { sink: sink.name.clone(), message: format!("the Delta write stopped: {e}") }),
        },
    }
}

/// `df` planned by its (cluster) session, read by a local one.
async fn planned(df: DataFrame, sink: &str) -> Result<DataFrame> {
    let failed = |e: datafusion::error::DataFusionError| Error::Sink { sink: sink.to_string(), message: crate::redact::text(&e.to_string()) };
    let physical = df.create_physical_plan().await.map_err(failed)?;
    let local = crate::session::context(&Default::default())?;
    local.read_table(Arc::new(Planned(physical))).map_err(failed)
}

/// A physical plan, planned already, read as a table.
#[derive(Debug)]
struct Planned(Arc<dyn datafusion::physical_plan::ExecutionPlan>);

#[async_trait::async_trait]
impl datafusion::catalog::TableProvider for Planned {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
        let Some(columns) = projection else { return Ok(self.0.clone()) };
        let schema = self.0.schema();
        let exprs = columns
            .iter()
            .map(|&i| {
                let name = schema.field(i).name().clone();
                ProjectionExpr::new(Arc::new(datafusion::physical_expr::expressions::Column::new(&name, i)), name)
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(ProjectionExec::try_new(exprs, self.0.clone())?))
    }
}

fn qualified(relation: &str, column: &str) -> Expr {
    Expr::Column(datafusion::common::Column::new(Some(relation), column))
}

fn unqualified(column: &str) -> datafusion::common::Column {
    datafusion::common::Column::new_unqualified(column)
}

/// The Parquet writer's settings: the sink's `compression` (Spark's names;
/// snappy by default, as Spark and delta-rs write).
fn writer_properties(sink: &Sink) -> std::result::Result<parquet::file::properties::WriterProperties, String> {
    use std::str::FromStr;
    let codec = match sink.compression.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => "snappy".to_string(),
        Some("gzip") => "gzip(6)".into(),
        Some("zstd") => "zstd(3)".into(),
        Some("brotli") => "brotli(1)".into(),
        Some(c) => c.to_string(),
    };
    let compression = parquet::basic::Compression::from_str(&codec).map_err(|e| format!("compression `{codec}`: {e}"))?;
    Ok(parquet::file::properties::WriterProperties::builder().set_compression(compression).build())
}

/// The verdict a gate waits for.
enum Decision {
    Waiting(oneshot::Receiver<bool>),
    Decided(bool),
}

/// A log store that holds a transaction's commit until the run decides.
struct Gate {
    inner: LogStoreRef,
    /// Told once, when the commit first reaches the gate, with the rows it writes.
    reached: Mutex<Option<oneshot::Sender<u64>>>,
    decision: tokio::sync::Mutex<Decision>,
}

impl Gate {
    async fn verdict(&self) -> bool {
        let mut d = self.decision.lock().await;
        let go = match &mut *d {
            Decision::Decided(go) => return *go,
            // A dropped sender (the run gave up) is a refusal.
            Decision::Waiting(rx) => rx.await.unwrap_or(false),
        };
        *d = Decision::Decided(go);
        go
    }

    /// Rows the commit writes, from the operation metrics delta-rs puts in its
    /// `commitInfo` (`num_added_rows` of a write, `num_source_rows` of a merge).
    async fn rows(&self, commit: &CommitOrBytes) -> u64 {
        let bytes: Bytes = match commit {
            CommitOrBytes::LogBytes(b) => b.clone(),
            CommitOrBytes::TmpCommit(path) => match self.inner.object_store(None).get(path).await {
                Ok(got) => got.bytes().await.unwrap_or_default(),
                Err(_) => return 0,
            },
        };
        rows_in_commit(&bytes)
    }
}

/// The row count in a commit's `commitInfo.operationMetrics`.
pub fn rows_in_commit(bytes: &[u8]) -> u64 {
    for line in bytes.split(|&b| b == b'\n') {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
        let Some(metrics) = v.get("commitInfo").and_then(|c| c.get("operationMetrics")) else { continue };
        for key in ["num_source_rows", "num_added_rows"] {
            if let Some(n) = metrics.get(key).and_then(|n| n.as_u64().or_else(|| n.as_str().and_then(|s| s.parse().ok()))) {
                return n;
            }
        }
    }
    0
}

#[async_trait::async_trait]
impl LogStore for Gate {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn refresh(&self) -> deltalake_core::DeltaResult<()> {
        self.inner.refresh().await
    }

    async fn read_commit_entry(&self, version: deltalake_core::kernel::Version) -> deltalake_core::DeltaResult<Option<Bytes>> {
        self.inner.read_commit_entry(version).await
    }

    async fn write_commit_entry(&self, version: deltalake_core::kernel::Version, commit: CommitOrBytes, operation: Uuid) -> std::result::Result<(), TransactionError> {
        let reached = self.reached.lock().expect("gate lock").take();
        if let Some(tx) = reached {
            let _ = tx.send(self.rows(&commit).await);
        }
        if !self.verdict().await {
            return Err(TransactionError::LogStoreError {
                msg: "the run failed before its commit point; nothing was committed".into(),
                source: "run aborted".into(),
            });
        }
        self.inner.write_commit_entry(version, commit, operation).await
    }

    async fn abort_commit_entry(&self, version: deltalake_core::kernel::Version, commit: CommitOrBytes, operation: Uuid) -> std::result::Result<(), TransactionError> {
        self.inner.abort_commit_entry(version, commit, operation).await
    }

    async fn get_latest_version(&self, start: deltalake_core::kernel::Version) -> deltalake_core::DeltaResult<deltalake_core::kernel::Version> {
        self.inner.get_latest_version(start).await
    }

    fn object_store(&self, operation: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.object_store(operation)
    }

    fn root_object_store(&self, operation: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.root_object_store(operation)
    }

    fn config(&self) -> &LogStoreConfig {
        self.inner.config()
    }
}
