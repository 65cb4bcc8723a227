//! Avro sinks: DataFusion reads Avro but does not write it, so each output
//! partition is encoded with arrow-avro into one Object Container File
//! (`part-N.avro`; one file with `single_file`).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use arrow_avro::compression::CompressionCodec;
use arrow_avro::writer::{AvroWriter, WriterBuilder};
use datafusion::dataframe::DataFrame;
use futures::StreamExt;

use crate::{Error, Result};

/// Writes `df` to `dest` (a directory, or the file with `single_file`); returns the row count.
pub(super) async fn write(df: DataFrame, dest: &Path, single_file: bool, compression: Option<&str>) -> Result<u64> {
    let codec = match compression {
        None | Some("none") | Some("uncompressed") => None,
        Some("snappy") => Some(CompressionCodec::Snappy),
        Some("deflate") => Some(CompressionCodec::Deflate),
        Some("zstd") => Some(CompressionCodec::ZStandard),
        Some("bzip2") => Some(CompressionCodec::Bzip2),
        Some("xz") => Some(CompressionCodec::Xz),
        Some(other) => return Err(Error::Usage(format!("unknown avro compression `{other}`"))),
    };
    let schema = df.schema().as_arrow().clone();
    let streams = if single_file { vec![df.execute_stream().await?] } else { df.execute_stream_partitioned().await? };
    // Part names are unique per write (as DataFusion's are), so `append` adds files and
    // never replaces one an earlier run wrote.
    let write_id = format!("{:x}{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()), std::process::id());
    let tasks = streams.into_iter().enumerate().map(|(i, mut stream)| {
        let path = if single_file { dest.to_path_buf() } else { dest.join(format!("part-{write_id}-{i}.avro")) };
        let schema = schema.clone();
        tokio::spawn(async move {
            let file = File::create(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            let avro = |e: arrow_avro::errors::AvroError| Error::Usage(format!("writing {}: {e}", path.display()));
            let mut writer: AvroWriter<BufWriter<File>> =
                WriterBuilder::new(schema).with_compression(codec).build(BufWriter::new(file)).map_err(avro)?;
            let mut rows = 0u64;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(avro)?;
            }
            writer.finish().map_err(avro)?;
            Ok::<u64, Error>(rows)
        })
    });
    let mut total = 0;
    for task in futures::future::join_all(tasks).await {
        total += task.map_err(|e| Error::Usage(format!("avro writer task: {e}")))??;
    }
    Ok(total)
}
