//! Sinks: writing a node's rows, atomically.
//!
//! Every sink is written in two steps. [`stage`] executes the plan into a
//! hidden staging path beside the target (`.NAME.kiln-staging-ID`); only when
//! every sink of the run has been staged does [`Staged::commit`] move the
//! results into place. A run that fails or is killed before that leaves the
//! previous output untouched, and nothing half-written inside the target.

mod avro;
mod commit;
pub mod journal;

use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::config::{CsvOptions, JsonOptions, TableParquetOptions};
use datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::arrow::datatypes::DataType;

use crate::expr::{call, col};
use crate::plan::{Sink, SinkFormat, WriteMode};
use crate::{Error, Result};

pub use commit::{TargetLock, clean_stale_staging, lock};

/// Spark writes a null partition value as this directory name; so does Kiln.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// What a sink must do this run, decided before anything executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Write,
    /// `mode = "ignore"` and the target exists.
    Skip,
}

/// Checks the target against the sink's mode before the run starts.
pub fn precheck(sink: &Sink, target: &Path) -> Result<Plan> {
    if sink.format == SinkFormat::Console {
        return Ok(Plan::Write);
    }
    let exists = target.exists();
    match sink.mode {
        WriteMode::ErrorIfExists if exists => {
            Err(Error::SinkExists { sink: sink.name.clone(), path: target.to_path_buf() })
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
    Console(Vec<RecordBatch>),
}

/// Executes `df` into the sink's staging location.
pub async fn stage(df: DataFrame, sink: &Sink, target: &Path) -> Result<Staged> {
    let ctx = |e: datafusion::error::DataFusionError| Error::Sink { sink: sink.name.clone(), message: e.to_string() };
    if sink.format == SinkFormat::Console {
        let batches = df.collect().await.map_err(ctx)?;
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        return Ok(Staged { sink: sink.name.clone(), mode: sink.mode, kind: StagedKind::Console(batches), rows });
    }
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
    let result = match sink.format {
        SinkFormat::Parquet => {
            let mut opts = TableParquetOptions::default();
            // Spark's names (`gzip`, `zstd`) carry no level; Parquet's writer wants one.
            opts.global.compression = Some(match sink.compression.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None => "snappy".into(),
                Some("gzip") => "gzip(6)".into(),
                Some("zstd") => "zstd(3)".into(),
                Some("brotli") => "brotli(1)".into(),
                Some(c) => c.to_string(),
            });
            df.write_parquet(&dest, options, Some(opts)).await
        }
        SinkFormat::Csv => {
            let mut opts = CsvOptions::default().with_has_header(true);
            if let Some(c) = &sink.compression {
                opts = opts.with_file_compression_type(c.parse().map_err(ctx)?);
            }
            df.write_csv(&dest, options, Some(opts)).await
        }
        SinkFormat::Json => {
            let mut opts = JsonOptions::default();
            if let Some(c) = &sink.compression {
                opts.compression = c.parse().map_err(ctx)?;
            }
            df.write_json(&dest, options, Some(opts)).await
        }
        SinkFormat::Avro => {
            // `staging` is the file itself with single_file, else the directory made above.
            match avro::write(df, &staging, sink.single_file, sink.compression.as_deref()).await {
                Ok(rows) => {
                    return Ok(Staged { sink: sink.name.clone(), mode: sink.mode, kind: StagedKind::Files { staging, target: target.to_path_buf() }, rows });
                }
                Err(e) => {
                    commit::remove(&staging);
                    return Err(Error::Sink { sink: sink.name.clone(), message: e.to_string() });
                }
            }
        }
        SinkFormat::Console => unreachable!("handled above"),
    };
    match result {
        Ok(counts) => {
            let rows = counts
                .first()
                .and_then(|b| b.column(0).as_any().downcast_ref::<datafusion::arrow::array::UInt64Array>())
                .map(|a| a.value(0))
                .unwrap_or(0);
            Ok(Staged {
                sink: sink.name.clone(),
                mode: sink.mode,
                kind: StagedKind::Files { staging, target: target.to_path_buf() },
                rows,
            })
        }
        Err(e) => {
            commit::remove(&staging);
            Err(ctx(e))
        }
    }
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
    pub fn abort(self) {
        if let StagedKind::Files { staging, .. } = self.kind {
            commit::remove(&staging);
        }
    }
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
