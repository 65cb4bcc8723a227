//! `on_error = "skip" | "quarantine"` for CSV sources.
//!
//! Arrow's CSV reader stops at the first row that does not fit the schema, so a
//! source that tolerates bad rows is read in two steps: every file is split into
//! records (the `csv` crate, which knows quoting), records are parsed by Arrow in
//! chunks of [`CHUNK`] (one parse per chunk when all is well; a failing chunk is
//! parsed record by record to find the bad ones), the good records are copied to
//! a clean file in a work directory (keeping `k=v/` partition directories), and
//! DataFusion reads the clean files. Bad records keep their file, line, reason
//! and raw text, for the quarantine file.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::csv::ReaderBuilder;
use datafusion::arrow::datatypes::Schema;

use super::bad_rows;
use crate::plan::CsvOptions;
use crate::{Error, Result};

/// Records parsed at once on the fast path.
const CHUNK: usize = 8192;

/// A record that did not fit the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    pub file: PathBuf,
    /// 1-based line where the record starts.
    pub line: u64,
    pub reason: String,
    /// The record as written, without its line ending.
    pub raw: String,
}

/// Copies the good records of the files at `path` under `work`; returns the
/// path to read instead (a file for a file, a directory for a directory) and the bad records.
pub fn clean(path: &str, schema: &Schema, opts: &CsvOptions, work: &Path) -> Result<(PathBuf, Vec<BadLine>)> {
    let source = Path::new(path);
    if !source.exists() {
        return Err(Error::Read { path: path.to_string(), message: "no such file or directory".into() });
    }
    let files = bad_rows::files(path);
    let mut bad = Vec::new();
    for file in &files {
        let relative = if source.is_file() { PathBuf::from(file.file_name().unwrap_or_default()) } else { file.strip_prefix(source).unwrap_or(file).to_path_buf() };
        let out = work.join(&relative);
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        clean_file(file, &out, schema, opts, &mut bad)?;
    }
    let read_from = if source.is_file() { work.join(source.file_name().unwrap_or_default()) } else { work.to_path_buf() };
    Ok((read_from, bad))
}

/// Streams `file` into `out`: the `csv` crate splits records from a buffered
/// reader, and each chunk's bytes (contiguous in the file) are read back with
/// one positioned read, so memory holds one chunk, never the whole file.
fn clean_file(file: &Path, out: &Path, schema: &Schema, opts: &CsvOptions, bad: &mut Vec<BadLine>) -> Result<()> {
    let open = || std::fs::File::open(file).map_err(|e| Error::io(format!("reading {}", file.display()), e));
    let raw = open()?;
    let mut writer = std::io::BufWriter::new(std::fs::File::create(out).map_err(|e| Error::io(format!("creating {}", out.display()), e))?);
    let write_err = |e| Error::io(format!("writing {}", out.display()), e);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(opts.delimiter)
        .quote(opts.quote)
        .flexible(true)
        .from_reader(std::io::BufReader::with_capacity(1 << 20, open()?));
    let mut record = csv::ByteRecord::new();
    // (start byte, end byte, line) of each record of the current chunk.
    let mut chunk: Vec<(usize, usize, u64)> = Vec::with_capacity(CHUNK);
    let mut first = true;
    loop {
        let start = reader.position().byte() as usize;
        let more = reader.read_byte_record(&mut record).map_err(|e| Error::Read { path: file.display().to_string(), message: e.to_string() })?;
        if !more {
            break;
        }
        let end = reader.position().byte() as usize;
        let line = record.position().map_or(0, |p| p.line());
        if first && opts.header {
            first = false;
            let header = read_range(&raw, file, start, end)?;
            writer.write_all(with_newline(&header).as_ref()).map_err(write_err)?;
            continue;
        }
        first = false;
        chunk.push((start, end, line));
        if chunk.len() == CHUNK {
            flush_chunk(&raw, &chunk, file, schema, opts, &mut writer, bad)?;
            chunk.clear();
        }
    }
    flush_chunk(&raw, &chunk, file, schema, opts, &mut writer, bad)?;
    writer.flush().map_err(write_err)
}

/// Bytes `start..end` of `file`.
fn read_range(raw: &std::fs::File, file: &Path, start: usize, end: usize) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; end - start];
    raw.read_exact_at(&mut buf, start as u64).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    Ok(buf)
}

/// [`flush`] for records located in the file: their bytes are read in one go.
fn flush_chunk(
    raw: &std::fs::File,
    chunk: &[(usize, usize, u64)],
    file: &Path,
    schema: &Schema,
    opts: &CsvOptions,
    out: &mut impl Write,
    bad: &mut Vec<BadLine>,
) -> Result<()> {
    let (Some(&(base, _, _)), Some(&(_, end, _))) = (chunk.first(), chunk.last()) else { return Ok(()) };
    let data = read_range(raw, file, base, end)?;
    let relative: Vec<(usize, usize, u64)> = chunk.iter().map(|&(s, e, line)| (s - base, e - base, line)).collect();
    flush(&data, &relative, file, schema, opts, out, bad)
}

fn flush(
    data: &[u8],
    chunk: &[(usize, usize, u64)],
    file: &Path,
    schema: &Schema,
    opts: &CsvOptions,
    out: &mut impl Write,
    bad: &mut Vec<BadLine>,
) -> Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    let write_err = |e| Error::io("writing a cleaned CSV file", e);
    let bytes: Vec<u8> = chunk.iter().flat_map(|&(s, e, _)| with_newline(&data[s..e]).into_owned()).collect();
    if parse(&bytes, schema, opts).is_ok() {
        return out.write_all(&bytes).map_err(write_err);
    }
    for &(s, e, line) in chunk {
        let raw = with_newline(&data[s..e]);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match parse(&raw, schema, opts) {
            Ok(()) => out.write_all(&raw).map_err(write_err)?,
            Err(message) => {
                let text = String::from_utf8_lossy(&raw).trim_end_matches(['\r', '\n']).to_string();
                bad.push(BadLine { file: file.to_path_buf(), line, reason: reason(&message, schema), raw: text });
            }
        }
    }
    Ok(())
}

/// Parses CSV bytes (no header) with Arrow, as DataFusion will.
fn parse(bytes: &[u8], schema: &Schema, opts: &CsvOptions) -> std::result::Result<(), String> {
    let mut builder = ReaderBuilder::new(Arc::new(schema.clone()))
        .with_header(false)
        .with_delimiter(opts.delimiter)
        .with_quote(opts.quote);
    if let Some(text) = &opts.null_value {
        // As the read (`files.rs`): the marker or an empty field is NULL.
        let regex = regex::Regex::new(&format!("^(?:{})?$", regex::escape(text))).map_err(|e| e.to_string())?;
        builder = builder.with_null_regex(regex);
    }
    let reader = builder.build(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    for batch in reader {
        batch.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Arrow's message for one record, in Kiln's words.
fn reason(message: &str, schema: &Schema) -> String {
    if message.contains("incorrect number of fields") {
        let found = message.rsplit("got ").next().and_then(|n| n.trim().parse::<usize>().ok());
        return match found {
            Some(n) => format!("expected {} fields, found {n}", schema.fields().len()),
            None => format!("expected {} fields", schema.fields().len()),
        };
    }
    match bad_rows::parse_error(message) {
        Some((value, column, _)) => match schema.fields().get(column) {
            Some(f) => format!("cannot read `{value}` as {} (column `{}`)", f.data_type(), f.name()),
            None => format!("cannot read `{value}`"),
        },
        None => message.to_string(),
    }
}

fn with_newline(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if raw.ends_with(b"\n") {
        std::borrow::Cow::Borrowed(raw)
    } else {
        let mut v = raw.to_vec();
        v.push(b'\n');
        std::borrow::Cow::Owned(v)
    }
}

/// Writes the quarantine CSV: `file,line,error,raw_line`.
pub fn write_quarantine(path: &Path, bad: &[BadLine]) -> Result<()> {
    let mut w = csv::Writer::from_path(path).map_err(|e| Error::Usage(format!("writing {}: {e}", path.display())))?;
    let err = |e: csv::Error| Error::Usage(format!("writing {}: {e}", path.display()));
    w.write_record(["file", "line", "error", "raw_line"]).map_err(err)?;
    for b in bad {
        w.write_record([b.file.display().to_string(), b.line.to_string(), b.reason.clone(), b.raw.clone()]).map_err(err)?;
    }
    w.flush().map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};

    #[test]
    fn keeps_good_records_and_names_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.csv");
        std::fs::write(&file, "id,amount\na,1.5\n\"b\nb\",2\nc,abc\nd\ne,3\n").unwrap();
        let schema = Schema::new(vec![Field::new("id", DataType::Utf8, true), Field::new("amount", DataType::Float64, true)]);
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let (path, bad) = clean(file.to_str().unwrap(), &schema, &CsvOptions::default(), &work).unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), "id,amount\na,1.5\n\"b\nb\",2\ne,3\n");
        let lines: Vec<(u64, &str, &str)> = bad.iter().map(|b| (b.line, b.reason.as_str(), b.raw.as_str())).collect();
        assert_eq!(
            lines,
            [(5, "cannot read `abc` as Float64 (column `amount`)", "c,abc"), (6, "expected 2 fields, found 1", "d")]
        );
    }
}
