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
use datafusion::arrow::datatypes::Schema;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, PROTOCOL, TableReference, TransactionError};
use deltalake_core::kernel::{Action, Add, EagerSnapshot, MetadataExt, StructType, normalize_for_delta};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::operations::write::WriterStatsConfig;
use deltalake_core::protocol::DeltaOperation;
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
    state: HeldState,
    location: String,
}

enum HeldState {
    /// delta-rs wrote the files; its commit waits at the gate.
    Gated { decide: Option<oneshot::Sender<bool>>, task: tokio::task::JoinHandle<std::result::Result<(), DeltaTableError>> },
    /// The cluster's executors wrote the files; the commit is Kiln's to make.
    Written(Box<Written>),
    /// Nothing to commit.
    Nothing,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("location", &crate::redact::text(&self.location)).finish()
    }
}

impl Held {
    /// Commits the write: opens the gate (delta-rs writes the commit, retrying
    /// past concurrent appends, failing on a real conflict), or commits the
    /// files the executors wrote the same way.
    pub async fn commit(self, sink: &str) -> Result<()> {
        match self.state {
            HeldState::Gated { mut decide, mut task } => {
                if let Some(d) = decide.take() {
                    let _ = d.send(true);
                }
                match (&mut task).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(sink_error(sink, &e)),
                    Err(e) => Err(Error::Sink { sink: sink.to_string(), message: format!("the Delta write stopped: {e}") }),
                }
            }
            HeldState::Written(w) => w.commit().await.map_err(|e| sink_error(sink, &e)),
            HeldState::Nothing => Ok(()),
        }
    }

    /// Refuses the commit: the table keeps its current version.
    pub async fn abort(self) {
        match self.state {
            HeldState::Gated { mut decide, mut task } => {
                if let Some(d) = decide.take() {
                    let _ = d.send(false);
                }
                let _ = (&mut task).await;
            }
            HeldState::Written(w) => w.abort().await,
            HeldState::Nothing => {}
        }
    }
}

/// Data files a cluster wrote into a table, and the commit that adds them.
struct Written {
    log_store: LogStoreRef,
    /// The table as this write found it; `None`: the commit creates the table.
    snapshot: Option<EagerSnapshot>,
    /// The table's schema after the write, and its partition columns.
    schema: StructType,
    partition_by: Vec<String>,
    mode: SaveMode,
    /// Schema changes and (overwrite) the removal of every current file.
    actions: Vec<Action>,
    adds: Vec<Add>,
    rows: u64,
    /// What the commit records, when it is not a plain write in `mode`: a merge or
    /// a `replace_where`, whose conflict checks must see what they read.
    operation: Option<DeltaOperation>,
}

impl Written {
    async fn commit(self) -> std::result::Result<(), DeltaTableError> {
        let removed = self.actions.iter().filter(|a| matches!(a, Action::Remove(_))).count();
        // What delta-rs records for its own writes (and `rows_in_commit` reads).
        let metrics = serde_json::json!({
            "num_added_rows": self.rows,
            "num_source_rows": self.rows,
            "num_added_files": self.adds.len(),
            "num_removed_files": removed,
        });
        let properties = CommitProperties::default().with_metadata([("operationMetrics".to_string(), metrics)]);
        let adds = self.adds.into_iter().map(Action::Add);
        match self.snapshot {
            // Created with its first files in one commit (fails if another writer created it meanwhile).
            None => {
                CreateBuilder::new()
                    .with_log_store(self.log_store)
                    .with_columns(self.schema.fields().cloned())
                    .with_partition_columns(self.partition_by)
                    .with_actions(adds)
                    .with_commit_properties(properties)
                    .await?;
            }
            Some(snapshot) => {
                let operation = self.operation.unwrap_or(DeltaOperation::Write {
                    mode: self.mode,
                    partition_by: (!self.partition_by.is_empty()).then_some(self.partition_by),
                    predicate: None,
                });
                let actions = self.actions.into_iter().chain(adds).collect();
                CommitBuilder::from(properties)
                    .with_actions(actions)
                    .build(Some(&snapshot as &dyn TableReference), self.log_store, operation)
                    .await?;
            }
        }
        Ok(())
    }

    /// Deletes the files (best effort: a file left behind is named by no commit).
    async fn abort(self) {
        let store = self.log_store.object_store(None);
        for add in &self.adds {
            if let Ok(path) = object_store::path::Path::from_url_path(&add.path) {
                let _ = store.delete(&path).await;
            }
        }
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
    // As Delta stores them (DataFusion's nanosecond timestamps are Delta's microseconds).
    let new = normalize_for_delta(&Arc::new(new.clone()));
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
/// On a cluster (`cluster`), the executors write the files and this process
/// commits them ([`stage_on_cluster`]); where a write needs delta-rs' own writer,
/// the plan runs there and its rows stream back to this process, which writes
/// the files and commits: delta-rs' write and merge nodes are planned by a
/// local session, over the distributed plan as a table.
///
/// `txn` (a streaming batch: the stream's app id and the batch number) goes into
/// the commit as Delta's application transaction (`txn` action, as Spark's Delta
/// sink writes); a table whose log already holds that batch for that app id was
/// written by this batch before a restart, and the write is skipped.
pub async fn stage(df: DataFrame, sink: &Sink, location: &str, cluster: bool, txn: Option<&(String, i64)>) -> Result<(Held, u64)> {
    if cluster && let Some(staged) = stage_on_cluster(df.clone(), sink, location).await? {
        return Ok(staged);
    }
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
        if let Some((app, batch)) = txn {
            let done = t.snapshot().map_err(err)?.transaction_version(gate.inner.as_ref(), app).await.map_err(err)?;
            if done.is_some_and(|v| v >= *batch) {
                tracing::info!(sink = %sink.name, batch, "this batch is already in the table (committed before a restart)");
                return Ok((Held { state: HeldState::Nothing, location: location.to_string() }, 0));
            }
        }
    }
    let commit_properties = || match txn {
        Some((app, batch)) => CommitProperties::default().with_application_transaction(deltalake_core::kernel::Transaction::new(app, *batch)),
        None => CommitProperties::default(),
    };
    let df = if cluster { planned(df, &sink.name).await? } else { df };
    let df = if exists { df } else { without_deleted(df, sink)? };
    let (state, plan) = df.clone().into_parts();
    let state = Arc::new(state);
    let properties = writer_properties(sink.compression.as_deref()).map_err(|message| Error::Sink { sink: sink.name.clone(), message })?;
    let task: futures::future::BoxFuture<'static, std::result::Result<(), DeltaTableError>> = if sink.mode == WriteMode::Merge && exists {
        let on = sink
            .keys
            .iter()
            .map(|k| qualified("target", k).eq(qualified("source", k)))
            .reduce(Expr::and)
            .ok_or_else(|| Error::Sink { sink: sink.name.clone(), message: "mode = \"merge\" needs keys".into() })?;
        let columns: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
        // delta-rs plans a merge with its own planner, which knows none of Kiln's
        // nodes (join hints, shared nodes, metrics): the source is planned by
        // Kiln's, and handed over as a table.
        let ctx = datafusion::prelude::SessionContext::new_with_state(state.as_ref().clone());
        let source = ctx.read_table(Arc::new(Planned::new(df.clone()))).map_err(|e| Error::Sink { sink: sink.name.clone(), message: e.to_string() })?;
        let mut builder = t
            .merge(source, on)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_merge_schema(sink.schema_merge)
            .with_session_state(state)
            .with_writer_properties(properties)
            .with_commit_properties(CommitProperties::default());
        // `delete_where` (Spark's whenMatchedDelete, then whenNotMatchedInsert on its
        // negation): clauses apply in order, the first that holds wins.
        let delete = sink.delete_where.clone().map(of_source).transpose().map_err(|e| Error::Sink { sink: sink.name.clone(), message: e.to_string() })?;
        if let Some(p) = &delete {
            builder = builder.when_matched_delete(|d| d.predicate(p.clone())).map_err(err)?;
        }
        let keep = delete.map(|p| datafusion::logical_expr::not(datafusion::functions::expr_fn::coalesce(vec![p, datafusion::logical_expr::lit(false)])));
        let builder = builder
            .when_matched_update(|u| columns.iter().fold(u, |u, c| u.update(unqualified(c), qualified("source", c))))
            .map_err(err)?
            .when_not_matched_insert(|i| {
                let i = columns.iter().fold(i, |i, c| i.set(unqualified(c), qualified("source", c)));
                match keep {
                    Some(p) => i.predicate(p),
                    None => i,
                }
            })
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
            .with_writer_properties(properties)
            .with_commit_properties(commit_properties());
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
            Ok((Held { state: HeldState::Gated { decide: Some(decide_tx), task }, location: location.to_string() }, rows))
        }
        done = &mut task => match done {
            // Finished without committing anything (nothing to do).
            Ok(Ok(())) => Ok((Held { state: HeldState::Nothing, location: location.to_string() }, 0)),
            Ok(Err(e)) => Err(err(e)),
            Err(e) => Err(Error::Sink { sink: sink.name.clone(), message: format!("the Delta write stopped: {e}") }),
        },
    }
}

/// Stages a write whose data files the cluster's executors write
/// ([`super::delta_write`]), to be committed by this process. `None` when the
/// write needs delta-rs' own writer here: a column-mapped table, a merge that
/// adds columns to an existing table.
///
/// A merge into an existing table rewrites it ([`merged_rows`]).
///
/// `replace_where` into an existing table: the files whose rows the predicate
/// may select are replaced. When it names partition columns only, those are the
/// files whose partition values satisfy it, and they hold no other row; else
/// every file is, and the rows of them that it does not select are written
/// again beside the new ones (the executors read them with the new rows). New
/// rows must all satisfy it (checked first, on the cluster).
async fn stage_on_cluster(mut df: DataFrame, sink: &Sink, location: &str) -> Result<Option<(Held, u64)>> {
    use deltalake_core::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
    let err = |e: DeltaTableError| sink_error(&sink.name, &e);
    let fail = |message: String| Error::Sink { sink: sink.name.clone(), message };
    let failed = |e: datafusion::error::DataFusionError| fail(crate::redact::text(&e.to_string()));
    // replace_where: the new rows, counted (the sink's rows, as delta-rs counts them)
    // with those the predicate does not select, which fail the run.
    let mut new_rows = None;
    if let Some(predicate) = &sink.replace_where {
        let (rows, outside) = count_outside(&df, predicate).await.map_err(failed)?;
        if outside > 0 {
            return Err(fail(format!("some new rows do not satisfy `replace_where` (it replaces the rows it selects, so every new row must satisfy it); nothing was committed. {outside} row(s) fail `{predicate}`")));
        }
        new_rows = Some(rows);
    }
    let log_store = table::log_store(location)?;
    let mut t = DeltaTable::new(log_store.clone());
    let input = df.schema().as_arrow().clone();
    let overwrite = !matches!(sink.mode, WriteMode::Append | WriteMode::Merge);
    let mut actions = Vec::new();
    // A merge into an existing table reports its source rows, as delta-rs' does.
    let mut merge_rows = None;
    let mut operation = None;
    let (snapshot, schema, partition_by, stats) = if t.verify_deltatable_existence().await.map_err(err)? {
        match sink.mode {
            WriteMode::Ignore => return Ok(Some((Held { state: HeldState::Nothing, location: location.to_string() }, 0))),
            WriteMode::ErrorIfExists => return Err(fail(format!("the Delta table {} exists (mode = \"error_if_exists\")", crate::redact::text(location)))),
            _ => {}
        }
        t.load().await.map_err(err)?;
        let snapshot = t.snapshot().map_err(err)?.snapshot().clone();
        let config = snapshot.table_configuration();
        if config.column_mapping_mode() != delta_kernel::table_features::ColumnMappingMode::None {
            return Ok(None);
        }
        // Table rules the executors' writer does not apply, and files it cannot rewrite:
        // delta-rs' own writer, here.
        if let Some(why) = needs_delta_rs(&snapshot, sink.mode == WriteMode::Merge || sink.replace_where.is_some()) {
            tracing::info!(sink = %sink.name, why, "the Delta table is written by this process");
            return Ok(None);
        }
        PROTOCOL.can_write_to(&snapshot).map_err(|e| err(e.into()))?;
        if overwrite {
            PROTOCOL.check_append_only(&snapshot).map_err(|e| err(e.into()))?;
        }
        same_columns(sink, &snapshot.arrow_schema(), &input)?;
        let have = snapshot.schema();
        let added: Vec<_> = input.fields().iter().filter(|f| have.field(f.name()).is_none()).cloned().collect();
        let schema = if added.is_empty() {
            have.as_ref().clone()
        } else if sink.mode == WriteMode::Merge {
            // The table's rows would need the new columns too: delta-rs' merge, here.
            return Ok(None);
        } else {
            let added: StructType = normalize_for_delta(&Arc::new(Schema::new(added))).as_ref().try_into_kernel().map_err(|e| err(e.into()))?;
            let merged = StructType::try_new(have.fields().cloned().chain(added.fields().cloned())).map_err(|e| err(e.into()))?;
            PROTOCOL.check_can_write_timestamp_ntz(&snapshot, &merged).map_err(|e| err(e.into()))?;
            actions.push(Action::Metadata(snapshot.metadata().clone().with_schema(&merged).map_err(|e| fail(e.to_string()))?));
            merged
        };
        let partition_by = snapshot.metadata().partition_columns().to_vec();
        if !sink.partition_by.is_empty() && sink.partition_by != partition_by {
            return Err(fail(format!("the table is partitioned by [{}], the sink by [{}]", partition_by.join(", "), sink.partition_by.join(", "))));
        }
        let stats = WriterStatsConfig::from_config(config);
        match (&sink.replace_where, overwrite) {
            (Some(predicate), true) => {
                let target: Schema = (&schema).try_into_arrow().map_err(|e| fail(e.to_string()))?;
                let (replaced, kept) = replaced_files(&snapshot, location, &target, &partition_by, predicate).await?;
                let sql = deltalake_core::delta_datafusion::expr::fmt_expr_to_sql(predicate).map_err(err)?;
                operation = Some(DeltaOperation::Write { mode: SaveMode::Overwrite, partition_by: (!partition_by.is_empty()).then(|| partition_by.clone()), predicate: Some(sql) });
                actions.extend(snapshot.log_data().iter().filter(|f| replaced.contains(&f.path().to_string())).map(|f| Action::Remove(f.remove_action(true))));
                if let Some(files) = kept {
                    // Their rows the predicate does not select, written again with the new ones.
                    let scan = datafusion::logical_expr::LogicalPlanBuilder::scan("kept", datafusion::datasource::provider_as_source(Arc::new(table::DeltaFilesTable::new(files, Arc::new(target.clone())))), None)
                        .and_then(|b| b.build())
                        .map_err(failed)?;
                    let kept = DataFrame::new(df.clone().into_parts().0, scan).filter(not_selected(predicate)).map_err(failed)?;
                    let names: Vec<Expr> = input.fields().iter().map(|f| Expr::Column(unqualified(f.name()))).collect();
                    df = df.union(kept.select(names).map_err(failed)?).map_err(failed)?;
                }
            }
            (None, true) => actions.extend(snapshot.log_data().iter().map(|f| Action::Remove(f.remove_action(true)))),
            _ if sink.mode == WriteMode::Merge => {
                let target: Schema = (&schema).try_into_arrow().map_err(|e| fail(e.to_string()))?;
                let (merged, source_rows) = merged_rows(df, sink, &snapshot, location, target).await?;
                df = merged;
                merge_rows = Some(source_rows);
                // The whole table was read (no predicate): any concurrent change conflicts.
                operation = Some(DeltaOperation::Merge {
                    predicate: None,
                    merge_predicate: Some(sink.keys.iter().map(|k| format!("target.{k} = source.{k}")).collect::<Vec<_>>().join(" AND ")),
                    matched_predicates: Vec::new(),
                    not_matched_predicates: Vec::new(),
                    not_matched_by_source_predicates: Vec::new(),
                });
                // Every current file is rewritten: its rows the merge keeps are in `df`.
                actions.extend(snapshot.log_data().iter().map(|f| Action::Remove(f.remove_action(true))));
            }
            _ => {}
        }
        (Some(snapshot), schema, partition_by, stats)
    } else {
        df = without_deleted(df, sink)?;
        let schema: StructType = normalize_for_delta(&Arc::new(input.clone())).as_ref().try_into_kernel().map_err(|e| err(e.into()))?;
        (None, schema, sink.partition_by.clone(), WriterStatsConfig::new(delta_kernel::table_properties::DataSkippingNumIndexedCols::NumColumns(32), None))
    };
    // The rows in the table's types (the writer writes what it is given).
    let target: Schema = (&schema).try_into_arrow().map_err(|e| fail(e.to_string()))?;
    let columns = target
        .fields()
        .iter()
        .map(|f| {
            let column = Expr::Column(unqualified(f.name()));
            match input.field_with_name(f.name()) {
                Ok(have) if have.data_type() == f.data_type() => column,
                _ => datafusion::logical_expr::cast(column, f.data_type().clone()).alias(f.name()),
            }
        })
        .collect::<Vec<_>>();
    let (state, plan) = df.select(columns).map_err(failed)?.into_parts();
    let spec = super::delta_write::WriteSpec {
        table: table::table_url(location)?.to_string(),
        partition_by: partition_by.clone(),
        compression: sink.compression.clone(),
        stats_first: match stats.num_indexed_cols {
            delta_kernel::table_properties::DataSkippingNumIndexedCols::AllColumns => None,
            delta_kernel::table_properties::DataSkippingNumIndexedCols::NumColumns(n) => Some(n),
        },
        stats_columns: stats.stats_columns,
    };
    let node = super::delta_write::DeltaWrite::new(plan, spec).map_err(failed)?;
    let write = DataFrame::new(state, datafusion::logical_expr::LogicalPlan::Extension(datafusion::logical_expr::Extension { node: Arc::new(node) }));
    let mut adds = Vec::new();
    for batch in write.collect().await.map_err(failed)? {
        let Some(json) = batch.column(0).as_any().downcast_ref::<datafusion::arrow::array::StringArray>() else {
            return Err(fail("the cluster's write returned no actions".into()));
        };
        for a in json.iter().flatten() {
            adds.push(serde_json::from_str::<Add>(a).map_err(|e| fail(format!("a written file's action: {e}")))?);
        }
    }
    let written_rows = adds.iter().map(|a| a.stats.as_deref().map_or(0, records)).sum();
    let rows = merge_rows.or(new_rows).unwrap_or(written_rows);
    // A merge rewrote the whole table (its removes name every file it read).
    let mode = if overwrite || merge_rows.is_some() { SaveMode::Overwrite } else { SaveMode::Append };
    let written = Written { log_store, snapshot, schema, partition_by, mode, actions, adds, rows, operation };
    Ok(Some((Held { state: HeldState::Written(Box::new(written)), location: location.to_string() }, rows)))
}

/// A merge into an existing table as rows to write over it (copy on write):
/// the table's rows whose keys no new row has, and the new rows `delete_where`
/// does not select — what delta-rs' merge leaves (matched rows updated to the new
/// row or deleted, new rows inserted). The table's current files are read by the
/// executors (a Parquet scan of exactly those files). Like Spark's MERGE, a key
/// of the table that two new rows carry fails the run before anything is written.
/// Returns the rows and the number of new rows.
async fn merged_rows(df: DataFrame, sink: &Sink, snapshot: &EagerSnapshot, location: &str, target: Schema) -> Result<(DataFrame, u64)> {
    use datafusion::functions_aggregate::expr_fn::count;
    use datafusion::logical_expr::{JoinType, col, lit};
    let failed = |e: datafusion::error::DataFusionError| Error::Sink { sink: sink.name.clone(), message: crate::redact::text(&e.to_string()) };
    let keys = &sink.keys;
    if keys.is_empty() {
        return Err(Error::Sink { sink: sink.name.clone(), message: "mode = \"merge\" needs keys".into() });
    }
    let source_rows = df.clone().count().await.map_err(failed)? as u64;
    let new = match &sink.delete_where {
        Some(d) => df.clone().filter(not_selected(d)).map_err(failed)?,
        None => df.clone(),
    };
    if snapshot.log_data().iter().next().is_none() {
        // An empty table: the new rows are all there is.
        return Ok((new, source_rows));
    }
    let state = df.clone().into_parts().0;
    let files = table::files_of(snapshot, location)?;
    let scan = datafusion::logical_expr::LogicalPlanBuilder::scan("target", datafusion::datasource::provider_as_source(Arc::new(table::DeltaFilesTable::new(files, Arc::new(target)))), None)
        .and_then(|b| b.build())
        .map_err(failed)?;
    let existing = DataFrame::new(state, scan);
    let source = df.clone().alias("source").map_err(failed)?;
    let on = |left: &str, right: &str| keys.iter().map(|k| qualified(left, k).eq(qualified(right, k))).collect::<Vec<_>>();
    let source_keys = source.clone().select(keys.iter().map(|k| qualified("source", k)).collect::<Vec<_>>()).map_err(failed)?;
    let target_keys = existing.clone().select(keys.iter().map(|k| qualified("target", k)).collect::<Vec<_>>()).map_err(failed)?.alias("t").map_err(failed)?;
    // New rows matching a row of the table, counted per key.
    let repeated = source_keys
        .clone()
        .join_on(target_keys, JoinType::LeftSemi, on("source", "t"))
        .and_then(|d| d.aggregate(keys.iter().map(|k| qualified("source", k)).collect(), vec![count(lit(1)).alias("__kiln_n")]))
        .and_then(|d| d.filter(col("__kiln_n").gt(lit(1i64))))
        .map_err(failed)?
        .count()
        .await
        .map_err(failed)?;
    if repeated > 0 {
        return Err(Error::Sink {
            sink: sink.name.clone(),
            message: format!("MERGE matched a target row with multiple source rows ({repeated} key(s) of the table carried by two or more new rows, as Spark's MERGE refuses); nothing was committed"),
        });
    }
    let names: Vec<Expr> = df.schema().fields().iter().map(|f| qualified("target", f.name()).alias(f.name())).collect();
    let kept = existing.join_on(source_keys.alias("s").map_err(failed)?, JoinType::LeftAnti, on("target", "s")).and_then(|d| d.select(names)).map_err(failed)?;
    Ok((new.union(kept).map_err(failed)?, source_rows))
}

/// The rows of `df`, and those of them `predicate` does not select, in one pass.
async fn count_outside(df: &DataFrame, predicate: &Expr) -> datafusion::error::Result<(u64, u64)> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::functions_aggregate::expr_fn::{count, sum};
    use datafusion::logical_expr::{cast, lit, when};
    let outside = when(not_selected(predicate), lit(1i64)).otherwise(lit(0i64))?;
    let batches = df.clone().aggregate(vec![], vec![count(lit(1)).alias("rows"), sum(cast(outside, datafusion::arrow::datatypes::DataType::Int64)).alias("outside")])?.collect().await?;
    let value = |i: usize| batches.iter().find(|b| b.num_rows() > 0).map_or(0, |b| {
        let column = b.column(i);
        if column.is_null(0) { 0 } else { column.as_primitive::<Int64Type>().value(0).max(0) as u64 }
    });
    Ok((value(0), value(1)))
}

/// Why a write to this table must go through delta-rs' own writer (in the submitting
/// process) rather than the executors': rules the executors' writer does not apply
/// (CHECK constraints, invariants, generated or identity columns, the change data
/// feed), and, for a `replace_where` or a merge (`rewrites`), deletion vectors, whose
/// rows the executors' scan of the files would not leave out.
fn needs_delta_rs(snapshot: &EagerSnapshot, rewrites: bool) -> Option<&'static str> {
    let config = snapshot.metadata().configuration();
    if config.keys().any(|k| k.starts_with("delta.constraints.")) {
        return Some("CHECK constraints");
    }
    if config.get("delta.enableChangeDataFeed").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Some("the change data feed");
    }
    let rules = ["delta.invariants", "delta.generationExpression", "delta.identity.start", "delta.identity.step", "delta.identity.highWaterMark", "delta.identity.allowExplicitInsert"];
    if snapshot.schema().fields().any(|f| rules.iter().any(|r| f.metadata().contains_key(*r))) {
        return Some("invariants, generated or identity columns");
    }
    if rewrites && snapshot.log_data().iter().any(|f| f.deletion_vector_descriptor().is_some()) {
        return Some("deletion vectors");
    }
    None
}

/// Rows `predicate` does not select (false or NULL).
fn not_selected(predicate: &Expr) -> Expr {
    datafusion::logical_expr::not(datafusion::functions::expr_fn::coalesce(vec![predicate.clone(), datafusion::logical_expr::lit(false)]))
}

/// The files (log paths) of `snapshot` that `replace_where`'s `predicate` replaces,
/// and the files whose other rows must be kept. A predicate over partition columns
/// only is evaluated on each file's partition values: the files it selects are
/// replaced whole and nothing is kept. Any other predicate may select rows of any
/// file: every file is replaced, and returned to be read again for the rows the
/// predicate does not select.
async fn replaced_files(snapshot: &EagerSnapshot, location: &str, schema: &Schema, partition_by: &[String], predicate: &Expr) -> Result<(std::collections::HashSet<String>, Option<table::DeltaFiles>)> {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::common::ScalarValue;
    let fail = |e: String| Error::Read { path: crate::redact::text(location), message: e };
    let files: Vec<_> = snapshot.log_data().iter().collect();
    if files.is_empty() {
        return Ok((std::collections::HashSet::new(), None));
    }
    let columns = predicate.column_refs();
    if columns.iter().all(|c| partition_by.contains(&c.name)) {
        // One row per file: its index and its partition values, typed as the table says.
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values((0..files.len()).map(|i| i.to_string())))];
        let mut fields = vec![datafusion::arrow::datatypes::Field::new("__kiln_file", datafusion::arrow::datatypes::DataType::Utf8, false)];
        for c in partition_by {
            let field = schema.field_with_name(c).map_err(|e| fail(e.to_string()))?;
            let values = files
                .iter()
                .map(|f| match f.partition_values_map().get(c).cloned().flatten() {
                    // The log writes an empty string for a null value of a non-string column.
                    Some(v) if !(v.is_empty() && field.data_type() != &datafusion::arrow::datatypes::DataType::Utf8) => ScalarValue::try_from_string(v, field.data_type()),
                    _ => ScalarValue::try_from(field.data_type()),
                })
                .collect::<datafusion::error::Result<Vec<_>>>()
                .map_err(|e| fail(e.to_string()))?;
            arrays.push(ScalarValue::iter_to_array(values).map_err(|e| fail(e.to_string()))?);
            fields.push(field.clone().with_nullable(true));
        }
        let batch = datafusion::arrow::record_batch::RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| fail(e.to_string()))?;
        let local = datafusion::prelude::SessionContext::new();
        let selected = local
            .read_batch(batch)
            .and_then(|d| d.filter(predicate.clone()))
            .and_then(|d| d.select_columns(&["__kiln_file"]))
            .map_err(|e| fail(e.to_string()))?
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut replaced = std::collections::HashSet::new();
        for b in &selected {
            let ids = b.column(0).as_any().downcast_ref::<StringArray>().ok_or_else(|| fail("file ids".into()))?;
            for id in ids.iter().flatten() {
                let i: usize = id.parse().map_err(|_| fail("file ids".into()))?;
                replaced.insert(files[i].path().to_string());
            }
        }
        return Ok((replaced, None));
    }
    let kept = table::files_of(snapshot, location)?;
    Ok((files.iter().map(|f| f.path().to_string()).collect(), Some(kept)))
}

/// A merge that creates its table inserts the new rows `delete_where` does not delete.
fn without_deleted(df: DataFrame, sink: &Sink) -> Result<DataFrame> {
    match (&sink.delete_where, sink.mode) {
        (Some(p), WriteMode::Merge) => df
            .filter(datafusion::logical_expr::not(datafusion::functions::expr_fn::coalesce(vec![p.clone(), datafusion::logical_expr::lit(false)])))
            .map_err(|e| Error::Sink { sink: sink.name.clone(), message: e.to_string() }),
        _ => Ok(df),
    }
}

/// `numRecords` of a file's statistics.
fn records(stats: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(stats).ok().and_then(|v| v.get("numRecords")?.as_u64()).unwrap_or(0)
}

/// `df` planned by its (cluster) session, read by a local one.
async fn planned(df: DataFrame, sink: &str) -> Result<DataFrame> {
    let failed = |e: datafusion::error::DataFusionError| Error::Sink { sink: sink.to_string(), message: crate::redact::text(&e.to_string()) };
    let local = crate::session::context(&Default::default())?;
    local.read_table(Arc::new(Planned::new(df))).map_err(failed)
}

/// A DataFrame read as a table: planned by its own session (Kiln's planner, or a
/// cluster's) each time it is scanned. delta-rs executes a merge's source twice
/// (first for the range of its keys); one physical plan executed twice gives its
/// rows once, since a `RepartitionExec` hands its input out once (a merge found
/// no new rows and committed nothing).
#[derive(Debug)]
struct Planned {
    state: Box<datafusion::execution::SessionState>,
    plan: datafusion::logical_expr::LogicalPlan,
    schema: datafusion::arrow::datatypes::SchemaRef,
}

impl Planned {
    fn new(df: DataFrame) -> Self {
        let schema = Arc::new(df.schema().as_arrow().clone());
        let (state, plan) = df.into_parts();
        Planned { state: Box::new(state), plan, schema }
    }
}

#[async_trait::async_trait]
impl datafusion::catalog::TableProvider for Planned {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.schema.clone()
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
        let plan = self.state.create_physical_plan(&self.plan).await?;
        let Some(columns) = projection else { return Ok(plan) };
        let schema = plan.schema();
        let exprs = columns
            .iter()
            .map(|&i| {
                let name = schema.field(i).name().clone();
                ProjectionExpr::new(Arc::new(datafusion::physical_expr::expressions::Column::new(&name, i)), name)
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
    }
}

fn qualified(relation: &str, column: &str) -> Expr {
    Expr::Column(datafusion::common::Column::new(Some(relation), column))
}

/// `e` with every column taken from the merge's new rows (`source.c`).
fn of_source(e: Expr) -> datafusion::error::Result<Expr> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    e.transform(|e| match e {
        Expr::Column(c) => Ok(Transformed::yes(qualified("source", &c.name))),
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

fn unqualified(column: &str) -> datafusion::common::Column {
    datafusion::common::Column::new_unqualified(column)
}

/// The Parquet writer's settings: the sink's `compression` (Spark's names;
/// snappy by default, as Spark and delta-rs write).
pub(super) fn writer_properties(compression: Option<&str>) -> std::result::Result<parquet::file::properties::WriterProperties, String> {
    use std::str::FromStr;
    let codec = match compression.map(str::to_ascii_lowercase).as_deref() {
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
