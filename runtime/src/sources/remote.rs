//! The checks a local source gets before a run, for sources on object stores:
//! the path must name something, a prefix must not hold data files the format
//! would skip, and every file's schema must match the pinned one (Parquet
//! footers, Avro headers and CSV headers are read with range requests).

use object_store::ObjectStoreExt;

use crate::plan::{Source, SourceFormat};
use crate::storage;
use crate::{Error, Result};

/// Bytes read from the start of an Avro or CSV object to find its header.
const HEADER_BYTES: u64 = 1 << 20;

pub async fn check(source: &Source, path: &str) -> Result<()> {
    let ext = match &source.format {
        SourceFormat::Csv(_) => "csv",
        SourceFormat::Parquet => "parquet",
        SourceFormat::Json => "json",
        SourceFormat::Avro => "avro",
        SourceFormat::Orc => "orc",
        SourceFormat::Inline(_) | SourceFormat::Postgres(_) | SourceFormat::Delta(_) | SourceFormat::Kafka(_) => return Ok(()),
    };
    let glob = path.contains(['*', '?', '[']);
    let all = storage::files(path, None).await?;
    if all.is_empty() {
        // An existing Kiln target with no rows is a manifest and nothing else.
        let loc = storage::locate(path.split(['*', '?', '[']).next().unwrap_or(path))?;
        if !glob && loc.list_all().await?.is_empty() {
            return Err(Error::Read { path: crate::redact::text(path), message: "no such object or prefix".into() });
        }
    }
    let single = all.len() == 1 && all[0].0.url == path.trim_end_matches('/');
    let (data, skipped): (Vec<_>, Vec<_>) = all.into_iter().partition(|(loc, _)| glob || single || loc.url.ends_with(&format!(".{ext}")));
    if let Some((first, _)) = skipped.first() {
        let first = &first.url;
        return Err(Error::Read {
            path: crate::redact::text(path),
            message: format!(
                "{} object(s) under it do not end in .{ext} and would not be read, e.g. {first}; rename them, or name them with a glob (path = \"{path}/*\")",
                skipped.len()
            ),
        });
    }
    let pinned = super::files::file_schema(source);
    for (loc, meta) in data {
        if matches!(source.format, SourceFormat::Csv(_)) && meta.size == 0 {
            continue;
        }
        let url = loc.url.clone();
        let found = match &source.format {
            SourceFormat::Parquet => parquet_schema(&loc, meta.size).await,
            SourceFormat::Avro => {
                let bytes = head_bytes(&loc, meta.size).await?;
                arrow_avro::reader::ReaderBuilder::new()
                    .build(std::io::Cursor::new(bytes))
                    .map(|r| r.schema().as_ref().clone())
                    .map_err(|e| format!("not an Avro file: {e}"))
            }
            SourceFormat::Orc => orc_schema(&loc, meta.size).await,
            SourceFormat::Csv(opts) if opts.header => {
                let bytes = head_bytes(&loc, meta.size).await?;
                super::drift::csv_header_of(std::io::Cursor::new(bytes), opts)
            }
            _ => continue,
        };
        let found = found.map_err(|message| Error::Read { path: url.clone(), message })?;
        super::drift::compare(&pinned, &found, matches!(source.format, SourceFormat::Csv(_))).map_err(|message| Error::Read { path: url.clone(), message })?;
    }
    Ok(())
}

async fn head_bytes(loc: &storage::Location, size: u64) -> Result<bytes::Bytes> {
    loc.raw.get_range(&loc.path, 0..size.min(HEADER_BYTES)).await.map_err(|e| storage::read_error(&loc.url, e))
}

/// The Arrow schema of a Parquet object, from its footer alone.
// ParquetObjectReader is deprecated in parquet 59 in favour of hand-written readers;
// for one footer read it is still the simplest correct one.
#[allow(deprecated)]
pub async fn parquet_schema(loc: &storage::Location, size: u64) -> std::result::Result<datafusion::arrow::datatypes::Schema, String> {
    use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
    let reader = ParquetObjectReader::new(loc.raw.clone(), loc.path.clone()).with_file_size(size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(|e| format!("not a Parquet file: {e}"))?;
    Ok(builder.schema().as_ref().clone())
}

/// The Arrow schema of an ORC object, from its tail alone (range requests).
pub async fn orc_schema(loc: &storage::Location, size: u64) -> std::result::Result<datafusion::arrow::datatypes::Schema, String> {
    let mut reader = OrcObject { loc: loc.clone(), size };
    let meta = orc_rust::reader::metadata::read_metadata_async(&mut reader).await.map_err(|e| format!("not an ORC file: {e}"))?;
    Ok(meta.root_data_type().create_arrow_schema(&Default::default()))
}

/// Range reads of one object, as orc-rust asks for them.
struct OrcObject {
    loc: storage::Location,
    size: u64,
}

impl orc_rust::reader::AsyncChunkReader for OrcObject {
    fn len(&mut self) -> futures::future::BoxFuture<'_, std::io::Result<u64>> {
        let size = self.size;
        Box::pin(async move { Ok(size) })
    }

    fn get_bytes(&mut self, offset: u64, length: u64) -> futures::future::BoxFuture<'_, std::io::Result<bytes::Bytes>> {
        Box::pin(async move { self.loc.raw.get_range(&self.loc.path, offset..offset + length).await.map_err(std::io::Error::other) })
    }
}

/// The schema of the first `.ext` object at `path` (what `kiln check` pins).
pub async fn first_schema(path: &str, ext: &str) -> std::result::Result<datafusion::arrow::datatypes::Schema, String> {
    let files = storage::files(path, Some(ext)).await.map_err(|e| e.to_string())?;
    let Some((loc, meta)) = files.into_iter().next() else {
        return Err(format!("no .{ext} object at {}", crate::redact::text(path)));
    };
    let url = loc.url.clone();
    match ext {
        "parquet" => parquet_schema(&loc, meta.size).await,
        "orc" => orc_schema(&loc, meta.size).await,
        _ => {
            let bytes = head_bytes(&loc, meta.size).await.map_err(|e| e.to_string())?;
            arrow_avro::reader::ReaderBuilder::new()
                .build(std::io::Cursor::new(bytes))
                .map(|r| r.schema().as_ref().clone())
                .map_err(|e| format!("{url} is not an Avro file: {e}"))
        }
    }
}
