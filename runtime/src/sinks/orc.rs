//! ORC sinks: DataFusion does not write ORC, so each output partition is
//! encoded with orc-rust's writer into one file (`part-ID-N.orc`; one file
//! with `single_file`). Compression defaults to snappy, as Spark's does.
//!
//! orc-rust 0.9 writes flat types only (integers, floats, bool, strings,
//! binary, date, timestamps without a zone or in UTC); the compiler rejects
//! the others at `kiln check`, and [`write`] refuses them rather than reach the
//! writer's `unimplemented!`.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::dataframe::DataFrame;
use futures::StreamExt;
use orc_rust::arrow_writer::ArrowWriterBuilder;
use orc_rust::compression::CompressionType;

use crate::{Error, Result};

/// The type a column is written as: views and dictionaries of strings become plain strings.
fn storable(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, v) => storable(v),
        other => other.clone(),
    }
}

/// The schema the ORC files get, or the first column orc-rust cannot write.
pub fn orc_schema(schema: &Schema) -> std::result::Result<SchemaRef, String> {
    let mut fields = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let dt = storable(f.data_type());
        if !crate::sources::orc::writable(&dt) {
            return Err(format!("column `{}` has type {dt}, which the ORC writer cannot store (it writes integers, floats, bool, string, binary, date and timestamp columns)", f.name()));
        }
        fields.push(Field::new(f.name(), dt, true));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Writes `df` to `dest` (a directory, or the file with `single_file`); returns the row count.
pub(super) async fn write(df: DataFrame, dest: &Path, single_file: bool, compression: Option<&str>) -> Result<u64> {
    let codec = match compression.map(str::to_ascii_lowercase).as_deref() {
        None | Some("snappy") => Some(CompressionType::Snappy),
        Some("none") | Some("uncompressed") => None,
        Some("zlib") => Some(CompressionType::Zlib),
        Some("lz4") => Some(CompressionType::Lz4),
        Some("zstd") => Some(CompressionType::Zstd),
        Some(other) => return Err(Error::Usage(format!("unknown orc compression `{other}`"))),
    };
    let schema = orc_schema(df.schema().as_arrow()).map_err(Error::Usage)?;
    let streams = if single_file { vec![df.execute_stream().await?] } else { df.execute_stream_partitioned().await? };
    // Part names are unique per write, so `append` adds files and never replaces one.
    let write_id = super::run_id();
    // orc-rust's writer is synchronous and not `Send`: each part is written on a
    // blocking thread that the partition's stream feeds through a small channel.
    let tasks = streams.into_iter().enumerate().map(|(i, mut stream)| {
        let path = if single_file { dest.to_path_buf() } else { dest.join(format!("part-{write_id}-{i}.orc")) };
        let schema = schema.clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let feed = tokio::spawn(async move {
            while let Some(batch) = stream.next().await {
                if tx.send(batch.map_err(Error::from)).await.is_err() {
                    break; // the writer stopped on an error
                }
            }
        });
        let write = tokio::task::spawn_blocking(move || {
            let file = File::create(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            let orc = |e: orc_rust::error::OrcError| Error::Usage(format!("writing {}: {e}", path.display()));
            let mut builder = ArrowWriterBuilder::new(BufWriter::new(file), schema.clone());
            if let Some(c) = codec {
                builder = builder.with_compression(c);
            }
            let mut writer = builder.try_build().map_err(orc)?;
            let mut rows = 0u64;
            while let Some(batch) = rx.blocking_recv() {
                let batch = conform(&batch?, &schema)?;
                rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(orc)?;
            }
            writer.close().map_err(orc)?;
            Ok::<u64, Error>(rows)
        });
        async move {
            let rows = write.await;
            feed.abort();
            rows
        }
    });
    let mut total = 0;
    for task in futures::future::join_all(tasks).await {
        total += task.map_err(|e| Error::Usage(format!("orc writer task: {e}")))??;
    }
    Ok(total)
}

/// The batch with the writer's exact schema (the writer compares schemas, names,
/// nullability and metadata included).
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { datafusion::arrow::compute::cast(c, f.data_type()) })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
