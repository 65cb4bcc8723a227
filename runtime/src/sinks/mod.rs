//! Sinks: writing a node's rows, atomically.
//!
//! Every sink is written in two steps. [`stage`] executes the plan into a
//! hidden staging path beside the target (`.NAME.kiln-staging-ID`); only when
//! every sink of the run has been staged does [`Staged::commit`] move the
//! results into place. A run that fails or is killed before that leaves the
//! previous output untouched, and nothing half-written inside the target.

mod avro;
mod commit;
#[cfg(feature = "delta")]
pub mod delta;
#[cfg(not(feature = "delta"))]
use crate::unbuilt::delta_sink as delta;
#[cfg(feature = "delta")]
pub mod delta_write;
pub mod files_write;
pub mod kafka;
mod orc;
pub mod journal;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::config::{CsvOptions, JsonOptions, TableParquetOptions};
use datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::arrow::datatypes::DataType;

use crate::expr::{call, col};
use crate::storage::{self, Location, remote};
use crate::plan::{Sink, SinkFormat, WriteMode};
use crate::{Error, Result};

pub use commit::{TargetLock, clean_stale_staging, lock, staging_path};
pub use orc::orc_schema;
#[cfg(feature = "kafka")]
pub(crate) use orc::conform;

/// Spark writes a null partition value as this directory name; so does Kiln.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// What a sink must do this run, decided before anything executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Write,
    /// `mode = "ignore"` and the target exists.
    Skip,
}

/// Where a sink writes: a local path (committed by rename) or an object-store
/// target (committed by manifest, see [`crate::storage::remote`]).
#[derive(Debug, Clone)]
pub enum Target {
    Local(PathBuf),
    Remote(remote::Target),
    /// A PostgreSQL table: the url (resolved) it is written through.
    Postgres(String),
    /// A Delta table's root (local or object store), committed by a Delta transaction;
    /// `cluster`: the run's plans execute on a Ballista cluster; `txn`: a streaming
    /// batch's application transaction (app id, batch), which makes its commit idempotent.
    Delta { location: String, cluster: bool, txn: Option<(String, i64)> },
    /// A Kafka topic: records are sent at the commit, at least once (see [`kafka`]).
    Kafka(kafka::KafkaTarget),
}

impl Target {
    /// Where `sink` writes, its path, topic and options substituted by `interpolate`
    /// (parameters and `${env.X}`).
    pub fn for_sink(sink: &Sink, interpolate: impl Fn(&str) -> Result<String>) -> Result<Target> {
        if sink.format == SinkFormat::Kafka {
            let options = sink.kafka.as_ref().map_or(Ok(Vec::new()), |k| k.options.iter().map(|(key, v)| Ok((key.clone(), interpolate(v)?))).collect::<Result<Vec<_>>>())?;
            let target = kafka::KafkaTarget { sink: sink.name.clone(), brokers: interpolate(&sink.path)?, topic: interpolate(&sink.table)?, options, tag: String::new(), staging: None, producer: Default::default() };
            if cfg!(not(feature = "kafka")) {
                return Err(crate::unbuilt::missing("kafka", &crate::redact::text(&target.describe())));
            }
            return Ok(Target::Kafka(target));
        }
        Target::resolve(sink, &interpolate(&sink.path)?)
    }

    /// The target `path` (already substituted) names for `sink`.
    pub fn resolve(sink: &Sink, path: &str) -> Result<Target> {
        if sink.format == SinkFormat::Postgres {
            return Ok(Target::Postgres(path.to_string()));
        }
        if sink.format == SinkFormat::Delta {
            return Ok(Target::Delta { location: path.to_string(), cluster: false, txn: None });
        }
        if storage::is_remote(path) {
            let loc = storage::locate(path).map_err(|e| Error::Sink { sink: sink.name.clone(), message: e.to_string() })?;
            Ok(Target::Remote(remote::Target::new(loc, sink.single_file)))
        } else {
            Ok(Target::Local(PathBuf::from(path)))
        }
    }

    /// The path or URL, for messages.
    pub fn describe(&self) -> String {
        match self {
            Target::Local(p) => p.display().to_string(),
            Target::Remote(t) => t.loc.url.clone(),
            Target::Postgres(url) => crate::postgres::describe(url),
            Target::Delta { location, .. } => crate::redact::text(location),
            Target::Kafka(k) => crate::redact::text(&k.describe()),
        }
    }

    /// Whether the target holds output.
    pub async fn exists(&self) -> Result<bool> {
        match self {
            Target::Local(p) => Ok(p.exists()),
            Target::Remote(t) => t.exists().await,
            Target::Postgres(_) => Ok(false),
            Target::Delta { location, .. } => delta::exists(location).await,
            // A topic is appended to; whether it "exists" decides nothing.
            Target::Kafka(_) => Ok(false),
        }
    }

    /// Clears what a killed run left (staging; on an object store, files the
    /// manifest does not name).
    pub async fn clean_leftovers(&self) -> Result<()> {
        match self {
            Target::Local(p) => {
                clean_stale_staging(p);
                Ok(())
            }
            Target::Remote(t) => t.recover().await,
            // A killed run's data files are in no commit: not part of the table.
            Target::Kafka(k) => {
                k.clean_leftovers();
                Ok(())
            }
            Target::Postgres(_) | Target::Delta { .. } => Ok(()),
        }
    }
}

/// Checks the target against the sink's mode before the run starts.
pub async fn precheck(sink: &Sink, target: &Target) -> Result<Plan> {
    if sink.format == SinkFormat::Console {
        return Ok(Plan::Write);
    }
    let exists = match target {
        Target::Postgres(url) => crate::postgres::write::exists(sink, url).await?,
        _ => target.exists().await?,
    };
    match sink.mode {
        WriteMode::ErrorIfExists if exists => {
            Err(Error::SinkExists { sink: sink.name.clone(), path: PathBuf::from(target.describe()) })
        }
        WriteMode::Ignore if exists => Ok(Plan::Skip),
        _ => Ok(Plan::Write),
    }
}

/// A sink's output, written and waiting to be moved into place.
#[derive(Debug)]
pub struct Staged {
    pub sink: String,
    pub mode: WriteMode,
    kind: StagedKind,
    /// Rows written.
    pub rows: u64,
}

#[derive(Debug)]
enum StagedKind {
    Files { staging: PathBuf, target: PathBuf },
    /// `attempts`: staged per task attempt by a cluster; only these are committed.
    Remote { staging: Location, target: remote::Target, run: String, depth: usize, attempts: Option<Vec<String>> },
    /// An open transaction holding the rows.
    Postgres { staged: crate::postgres::write::PgStaged, table: String },
    /// Data files written, the Delta commit held at its gate.
    Delta(delta::Held),
    /// Rows kept in a local file, sent to the topic at the commit.
    Kafka(kafka::Held),
    Console(Vec<RecordBatch>),
}

/// A name for this run's staged output on an object store: unique per process and moment.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", std::process::id())
}

/// Executes `df` into the sink's staging location. `cluster`: `df` runs on a
/// Ballista cluster, and multi-part file output is staged per task attempt
/// ([`files_write`]).
pub async fn stage(df: DataFrame, sink: &Sink, target: &Target, cluster: bool) -> Result<Staged> {
    let ctx = |e: datafusion::error::DataFusionError| Error::Sink { sink: sink.name.clone(), message: e.to_string() };
    if sink.format == SinkFormat::Console {
        let batches = df.collect().await.map_err(ctx)?;
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        return Ok(Staged { sink: sink.name.clone(), mode: sink.mode, kind: StagedKind::Console(batches), rows });
    }
    let target = match target {
        Target::Local(p) => p.as_path(),
        Target::Remote(t) => return stage_remote(df, sink, t, cluster).await,
        Target::Postgres(url) => {
            let staged = crate::postgres::write::stage(df, sink, url).await?;
            return Ok(Staged { sink: sink.name.clone(), mode: sink.mode, rows: staged.rows, kind: StagedKind::Postgres { staged, table: sink.table.clone() } });
        }
        Target::Delta { location, cluster, txn } => {
            let (held, rows) = delta::stage(df, sink, location, *cluster, txn.as_ref()).await?;
            return Ok(Staged { sink: sink.name.clone(), mode: sink.mode, rows, kind: StagedKind::Delta(held) });
        }
        Target::Kafka(k) => {
            let (held, rows) = kafka::stage(df, sink, k).await?;
            return Ok(Staged { sink: sink.name.clone(), mode: sink.mode, rows, kind: StagedKind::Kafka(held) });
        }
    };
    let staging = commit::staging_path(target)?;
    let df = null_partitions_as_default(df, &sink.partition_by).map_err(ctx)?;
    let options = DataFrameWriteOptions::new()
        .with_partition_by(sink.partition_by.clone())
        .with_single_file_output(sink.single_file);
    // DataFusion treats a path ending in `/` as a directory of part files.
    let dest = if sink.single_file {
        staging.to_string_lossy().into_owned()
    } else {
        std::fs::create_dir_all(&staging).map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
        format!("{}/", staging.display())
    };
    let result: Result<u64> = match sink.format {
        // The executors write into this run's staging (a shared volume); only the
        // attempts that succeeded are kept.
        SinkFormat::Parquet | SinkFormat::Csv | SinkFormat::Json if cluster && !sink.single_file => {
            stage_attempts(df, sink, &dest).await.and_then(|(rows, attempts)| commit::keep_attempts(&staging, &attempts).map(|()| rows))
        }
        SinkFormat::Parquet | SinkFormat::Csv | SinkFormat::Json => write_files(df, sink, &dest, options).await,
        // `staging` is the file itself with single_file, else the directory made above.
        SinkFormat::Avro => avro::write(df, &staging, sink.single_file, sink.compression.as_deref()).await.map_err(|e| Error::Sink { sink: sink.name.clone(), message: e.to_string() }),
        SinkFormat::Orc => orc::write(df, &staging, sink.single_file, sink.compression.as_deref()).await.map_err(|e| Error::Sink { sink: sink.name.clone(), message: e.to_string() }),
        SinkFormat::Console | SinkFormat::Postgres | SinkFormat::Delta | SinkFormat::Kafka => unreachable!("handled above"),
    };
    match result {
        Ok(rows) => {
            // Dynamic partition overwrite: the partitions the new data does not touch
            // are linked into the staged output, which then replaces the target whole.
            let mode = if sink.mode == WriteMode::OverwritePartitions {
                if let Err(e) = commit::keep_other_partitions(target, &staging, sink.partition_by.len()) {
                    commit::remove(&staging);
                    return Err(e);
                }
                WriteMode::Overwrite
            } else {
                sink.mode
            };
            Ok(Staged { sink: sink.name.clone(), mode, kind: StagedKind::Files { staging, target: target.to_path_buf() }, rows })
        }
        Err(e) => {
            commit::remove(&staging);
            Err(e)
        }
    }
}

/// Rows a DataFusion write reports (its one `count` value).
fn written(counts: &[RecordBatch]) -> u64 {
    counts
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<datafusion::arrow::array::UInt64Array>())
        .map(|a| a.value(0))
        .unwrap_or(0)
}

/// Stages a sink on an object store: DataFusion writes the parts under the
/// target's staging prefix (on a cluster, each executor writes its own);
/// Avro, which DataFusion cannot write, is written locally and uploaded.
async fn stage_remote(df: DataFrame, sink: &Sink, target: &remote::Target, cluster: bool) -> Result<Staged> {
    let ctx = |e: datafusion::error::DataFusionError| Error::Sink { sink: sink.name.clone(), message: crate::redact::text(&e.to_string()) };
    let run = run_id();
    let staging = target.staging(&run);
    let df = null_partitions_as_default(df, &sink.partition_by).map_err(ctx)?;
    let options = DataFrameWriteOptions::new().with_partition_by(sink.partition_by.clone()).with_single_file_output(sink.single_file);
    let dest = if sink.single_file { staging.url.clone() } else { format!("{}/", staging.url) };
    let mut attempts = None;
    let result = match sink.format {
        // On a cluster, a multi-part write stages per task attempt (see `files_write`). One
        // file is one object, which a rerun task's PUT replaces whole.
        SinkFormat::Parquet | SinkFormat::Csv | SinkFormat::Json if cluster && !sink.single_file => {
            stage_attempts(df, sink, &dest).await.map(|(rows, written)| {
                attempts = Some(written);
                rows
            })
        }
        SinkFormat::Parquet | SinkFormat::Csv | SinkFormat::Json => write_files(df, sink, &dest, options).await,
        SinkFormat::Avro | SinkFormat::Orc => {
            let local = tempfile_dir()?;
            let file = local.join("out");
            let path = if sink.single_file { file.clone() } else { local.join("parts") };
            if !sink.single_file {
                std::fs::create_dir_all(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            }
            let rows = if sink.format == SinkFormat::Avro {
                avro::write(df, &path, sink.single_file, sink.compression.as_deref()).await
            } else {
                orc::write(df, &path, sink.single_file, sink.compression.as_deref()).await
            };
            let uploaded = match rows {
                Ok(rows) => upload(&path, &staging).await.map(|_| rows),
                Err(e) => Err(Error::Sink { sink: sink.name.clone(), message: e.to_string() }),
            };
            let _ = std::fs::remove_dir_all(&local);
            uploaded
        }
        SinkFormat::Console | SinkFormat::Postgres | SinkFormat::Delta | SinkFormat::Kafka => unreachable!("handled by stage"),
    };
    match result {
        Ok(rows) => Ok(Staged {
            sink: sink.name.clone(),
            mode: sink.mode,
            kind: StagedKind::Remote { staging, target: target.clone(), run, depth: sink.partition_by.len(), attempts },
            rows,
        }),
        Err(e) => {
            let _ = target.abort(&staging).await;
            Err(e)
        }
    }
}

/// Writes `df` as Parquet, CSV or JSON under `dest` (a file, or a directory of
/// parts when it ends in `/`) with DataFusion's writers: the rows written.
async fn write_files(df: DataFrame, sink: &Sink, dest: &str, options: DataFrameWriteOptions) -> Result<u64> {
    let ctx = |e: datafusion::error::DataFusionError| Error::Sink { sink: sink.name.clone(), message: crate::redact::text(&e.to_string()) };
    let counts = match sink.format {
        SinkFormat::Parquet => df.write_parquet(dest, options, Some(parquet_options(sink))).await,
        SinkFormat::Csv => df.write_csv(dest, options, Some(csv_options(sink).map_err(ctx)?)).await,
        _ => df.write_json(dest, options, Some(json_options(sink).map_err(ctx)?)).await,
    };
    counts.map(|c| written(&c)).map_err(ctx)
}

/// Writes `df` on the cluster as DataFusion's `COPY TO dest` wrapped in a
/// [`files_write::FilesWrite`]: the rows written and the attempts that wrote them.
async fn stage_attempts(df: DataFrame, sink: &Sink, dest: &str) -> Result<(u64, Vec<String>)> {
    use datafusion::common::file_options::file_type::FileType;
    use datafusion::datasource::file_format::{csv::CsvFormatFactory, format_as_file_type, json::JsonFormatFactory, parquet::ParquetFormatFactory};
    let ctx = |e: datafusion::error::DataFusionError| Error::Sink { sink: sink.name.clone(), message: crate::redact::text(&e.to_string()) };
    let file_type: Arc<dyn FileType> = match sink.format {
        SinkFormat::Parquet => format_as_file_type(Arc::new(ParquetFormatFactory::new_with_options(parquet_options(sink)))),
        SinkFormat::Csv => format_as_file_type(Arc::new(CsvFormatFactory::new_with_options(csv_options(sink).map_err(ctx)?))),
        _ => format_as_file_type(Arc::new(JsonFormatFactory::new_with_options(json_options(sink).map_err(ctx)?))),
    };
    let (state, plan) = df.into_parts();
    let copy = datafusion::logical_expr::LogicalPlanBuilder::copy_to(plan, dest.to_string(), file_type, [("single_file_output".to_string(), "false".to_string())].into(), sink.partition_by.clone())
        .and_then(|b| b.build())
        .map_err(ctx)?;
    let node = files_write::FilesWrite::new(copy).map_err(ctx)?;
    let write = DataFrame::new(state, datafusion::logical_expr::LogicalPlan::Extension(datafusion::logical_expr::Extension { node: Arc::new(node) }));
    let batches = write.collect().await.map_err(ctx)?;
    files_write::attempts(&batches).map_err(|message| Error::Sink { sink: sink.name.clone(), message })
}

/// A private local directory for output that is uploaded afterwards.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kiln-upload-{}", run_id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

/// Uploads a local file (or every file under a local directory) to `to`.
async fn upload(from: &Path, to: &Location) -> Result<()> {
    use object_store::ObjectStoreExt;
    let files = if from.is_dir() { crate::sources::files_under(from, None) } else { vec![from.to_path_buf()] };
    for f in files {
        let rel = f.strip_prefix(from).map(|r| r.to_string_lossy().into_owned()).unwrap_or_default();
        let dest = if rel.is_empty() { to.clone() } else { to.join(&rel) };
        let bytes = std::fs::read(&f).map_err(|e| Error::io(format!("reading {}", f.display()), e))?;
        dest.raw.put(&dest.path, bytes.into()).await.map_err(|e| crate::storage::read_error(&dest.url, e))?;
    }
    Ok(())
}

fn parquet_options(sink: &Sink) -> TableParquetOptions {
    let mut opts = TableParquetOptions::default();
    // Spark's names (`gzip`, `zstd`) carry no level; Parquet's writer wants one.
    opts.global.compression = Some(match sink.compression.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => "snappy".into(),
        Some("gzip") => "gzip(6)".into(),
        Some("zstd") => "zstd(3)".into(),
        Some("brotli") => "brotli(1)".into(),
        Some(c) => c.to_string(),
    });
    opts
}

fn csv_options(sink: &Sink) -> datafusion::error::Result<CsvOptions> {
    let mut opts = CsvOptions::default().with_has_header(true);
    if let Some(c) = &sink.compression {
        opts = opts.with_file_compression_type(c.parse()?);
    }
    Ok(opts)
}

fn json_options(sink: &Sink) -> datafusion::error::Result<JsonOptions> {
    let mut opts = JsonOptions::default();
    if let Some(c) = &sink.compression {
        opts.compression = c.parse()?;
    }
    Ok(opts)
}

/// Stages a file that `write` produces at the path it is given (used for
/// quarantine files, committed with the sinks).
pub fn stage_with(target: &Path, name: &str, rows: u64, write: impl FnOnce(&Path) -> Result<()>) -> Result<Staged> {
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    clean_stale_staging(target);
    let staging = commit::staging_path(target)?;
    if let Err(e) = write(&staging) {
        commit::remove(&staging);
        return Err(e);
    }
    Ok(Staged { sink: name.to_string(), mode: WriteMode::Overwrite, kind: StagedKind::Files { staging, target: target.to_path_buf() }, rows })
}

impl Staged {
    /// Moves the staged output into place (or prints it, for the console).
    pub fn commit(self) -> Result<()> {
        match self.kind {
            StagedKind::Console(batches) => {
                let table = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?;
                println!("{}: {} rows\n{table}", self.sink, self.rows);
                Ok(())
            }
            StagedKind::Files { staging, target } => commit::commit(&staging, &target, self.mode),
            StagedKind::Remote { .. } | StagedKind::Postgres { .. } | StagedKind::Delta(_) | StagedKind::Kafka(_) => {
                Err(Error::Usage("an object-store, PostgreSQL, Delta or Kafka sink commits with commit_remote".into()))
            }
        }
    }

    /// Whether this sink commits on its own (an object store's manifest, a
    /// PostgreSQL transaction), by [`Staged::commit_remote`].
    pub fn is_remote(&self) -> bool {
        matches!(self.kind, StagedKind::Remote { .. } | StagedKind::Postgres { .. } | StagedKind::Delta(_) | StagedKind::Kafka(_))
    }

    /// Where a sink whose commit can be refused commits among them (see
    /// `run::commit_staged`): Delta, then PostgreSQL, then Kafka, whose records
    /// cannot be taken back.
    pub fn commit_order(&self) -> u8 {
        match self.kind {
            StagedKind::Delta(_) => 0,
            StagedKind::Postgres { .. } => 1,
            StagedKind::Kafka(_) => 2,
            _ => 3,
        }
    }

    /// An object-store sink of plain files (not Delta, PostgreSQL or Kafka).
    pub fn is_object_store(&self) -> bool {
        matches!(self.kind, StagedKind::Remote { .. })
    }

    /// Step 1 of an object-store sink's commit: its parts copied into place, not yet
    /// its output ([`crate::storage::remote::Target::prepare`]).
    pub async fn prepare_remote(self) -> Result<crate::storage::remote::Prepared> {
        match self.kind {
            StagedKind::Remote { staging, target, run, depth, attempts } => target.prepare(&staging, self.mode, self.rows, &run, depth, attempts.as_deref()).await,
            _ => Err(Error::Usage("not an object-store sink".into())),
        }
    }

    /// Commits an object-store sink (see [`crate::storage::remote`]) or a PostgreSQL one.
    pub async fn commit_remote(self) -> Result<()> {
        match self.kind {
            StagedKind::Remote { staging, target, run, depth, attempts } => target.commit(&staging, self.mode, self.rows, &run, depth, attempts.as_deref()).await,
            StagedKind::Postgres { staged, table } => staged.commit(&self.sink, &table).await,
            StagedKind::Delta(held) => held.commit(&self.sink).await,
            StagedKind::Kafka(held) => held.send(&self.sink).await,
            _ => Err(Error::Usage("not an object-store sink".into())),
        }
    }

    /// A file sink's move (staging, target, mode); a console sink is given back.
    pub fn into_move(self) -> std::result::Result<(std::path::PathBuf, std::path::PathBuf, WriteMode), Staged> {
        match self.kind {
            StagedKind::Files { staging, target } => Ok((staging, target, self.mode)),
            kind => Err(Staged { kind, ..self }),
        }
    }

    /// Throws the staged output away.
    pub async fn abort(self) {
        match self.kind {
            StagedKind::Files { staging, .. } => commit::remove(&staging),
            // Left behind if this fails: the next run that writes the target removes it.
            StagedKind::Remote { staging, target, .. } => drop(target.abort(&staging).await),
            StagedKind::Postgres { staged, .. } => staged.abort().await,
            StagedKind::Delta(held) => held.abort().await,
            StagedKind::Kafka(held) => held.abort(),
            StagedKind::Console(_) => {}
        }
    }
}

/// Removes a local staged output that will not be committed.
pub fn discard(staging: &Path) {
    commit::remove(staging);
}

/// Partition columns as strings, with nulls named as Spark names them.
fn null_partitions_as_default(df: DataFrame, partition_by: &[String]) -> datafusion::error::Result<DataFrame> {
    if partition_by.is_empty() {
        return Ok(df);
    }
    let exprs: Vec<Expr> = df
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let name = f.name();
            if partition_by.contains(name) {
                let text = cast(col(name), DataType::Utf8);
                call("coalesce", vec![text, lit(NULL_PARTITION)])
                    .map(|e| e.alias(name))
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
            } else {
                Ok(col(name))
            }
        })
        .collect::<datafusion::error::Result<_>>()?;
    df.select(exprs)
}
