//! Schemas that live in data files, read once at compile time and pinned into
//! the binary: Parquet footers, Avro headers, ORC footers, and CSV/JSON data when a source
//! asks for `infer_schema`. The only pass input that touches the disk.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::spec::{SourceFormat, Spec};

/// Per source name: the schema found in its files, or why none could be read.
pub type FileSchemas = HashMap<String, Result<SchemaRef, String>>;

/// Reads the footer schema of every Parquet source. Relative paths are taken
/// from `base` (the spec's directory); `${params.X}` uses the param's default.
pub fn read(spec: &Spec, base: &Path) -> FileSchemas {
    let mut out = HashMap::new();
    for s in &spec.sources {
        if let Some(pg) = &s.pg {
            out.insert(s.name.value.clone(), postgres_schema(spec, pg));
            continue;
        }
        if s.format.value == SourceFormat::Delta {
            let Some(path) = &s.path else { continue };
            let text = substitute_defaults(spec, path.as_str());
            out.insert(s.name.value.clone(), delta_schema(&text, base, s));
            continue;
        }
        let infer = s.infer_schema.as_ref().is_some_and(|b| b.value);
        let (ext, read): (&str, fn(&Path, &crate::spec::SourceDecl) -> Result<SchemaRef, String>) = match s.format.value {
            SourceFormat::Parquet => ("parquet", parquet_schema),
            SourceFormat::Avro => ("avro", avro_schema),
            SourceFormat::Orc => ("orc", orc_schema),
            SourceFormat::Csv if infer => ("csv", csv_schema),
            SourceFormat::Json if infer => ("json", json_schema),
            _ => continue,
        };
        let Some(path) = &s.path else { continue };
        let text = substitute_defaults(spec, path.as_str());
        if kiln::storage::is_remote(&text) {
            out.insert(s.name.value.clone(), remote_schema(&text, ext, s));
            continue;
        }
        let full = base.join(&text);
        let schema = first_file(&full, ext).and_then(|f| read(&f, s));
        out.insert(s.name.value.clone(), schema.map_err(|e| e.replace(&full.display().to_string(), &text)));
    }
    out
}

/// A Delta table's schema from its log, at the version or time the source reads.
fn delta_schema(text: &str, base: &Path, s: &crate::spec::SourceDecl) -> Result<SchemaRef, String> {
    let location = if kiln::storage::is_remote(text) {
        configure_store(text, s)?;
        text.to_string()
    } else {
        base.join(text).display().to_string()
    };
    let travel = kiln::plan::DeltaSource {
        version: s.version.as_ref().map(|v| v.value.max(0) as u64),
        timestamp: s.timestamp.as_ref().map(|t| t.value.clone()),
    };
    kiln::storage::block_on(async move { kiln::sources::delta::schema(&location, &travel).await })
        .map(std::sync::Arc::new)
        .map_err(|e| kiln::redact::text(&e.to_string()).replace(&base.display().to_string(), "."))
}

/// The schema of the first `.ext` object at an object-store URL: Parquet
/// footers and Avro headers are read with range requests; CSV and JSON
/// inference reads local files only. `${env.X}` in `storage_options` takes the
/// compiler's environment.
fn remote_schema(url: &str, ext: &str, s: &crate::spec::SourceDecl) -> Result<SchemaRef, String> {
    if !matches!(ext, "parquet" | "avro" | "orc") {
        return Err(format!("infer_schema reads local files; declare `schema` for {url}"));
    }
    configure_store(url, s)?;
    let ext = ext.to_string();
    kiln::storage::block_on(async move { kiln::sources::remote::first_schema(url, &ext).await }).map(std::sync::Arc::new)
}

/// Registers the source's `storage_options` for `url`'s bucket (`${env.X}` from
/// the compiler's environment).
fn configure_store(url: &str, s: &crate::spec::SourceDecl) -> Result<(), String> {
    configure_options(url, &s.storage_options)
}

/// Registers `storage_options` for `url`'s bucket (`${env.X}` from the compiler's environment).
pub fn configure_options(url: &str, options: &[(crate::spec::Sp<String>, crate::spec::Sp<String>)]) -> Result<(), String> {
    let env = |v: &str| std::env::var(v).ok();
    let values = kiln::params::Values::default();
    let opts: Vec<(String, String)> = options
        .iter()
        .filter_map(|(k, v)| Some((k.value.clone(), kiln::params::interpolate(&v.value, &values, env).ok()?)))
        .collect();
    kiln::storage::configure(url, &opts).map_err(|e| e.to_string())
}

/// The columns a PostgreSQL source reads, asked of the server. `${env.X}` in
/// the url takes the compiler's environment; nothing of the url is printed.
fn postgres_schema(spec: &Spec, pg: &crate::spec::PgDecl) -> Result<SchemaRef, String> {
    let text = substitute_defaults(spec, &pg.url.value);
    let url = kiln::params::interpolate(&text, &kiln::params::Values::default(), |v| std::env::var(v).ok()).map_err(|e| kiln::redact::text(&e.to_string()))?;
    let (table, query) = (pg.table.as_ref().map(|t| t.value.clone()), pg.query.as_ref().map(|q| q.value.clone()));
    kiln::storage::block_on(async move { kiln::postgres::source_schema(&url, table.as_deref(), query.as_deref()).await })
        .map(std::sync::Arc::new)
        .map_err(|e| kiln::redact::text(&e))
}

/// `text` with every `${params.X}` replaced by the param's default.
pub fn substitute_defaults(spec: &Spec, text: &str) -> String {
    let mut out = text.to_string();
    for p in &spec.params {
        if let Some(default) = &p.default {
            let value = match &default.value {
                crate::spec::Literal::Str(s) => s.clone(),
                crate::spec::Literal::Int(i) => i.to_string(),
                crate::spec::Literal::Float(f) => f.to_string(),
                crate::spec::Literal::Bool(b) => b.to_string(),
            };
            out = out.replace(&format!("${{params.{}}}", p.name.value), &value);
        }
    }
    out
}

fn open(file: &Path) -> Result<File, String> {
    File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))
}

fn parquet_schema(file: &Path, _: &crate::spec::SourceDecl) -> Result<SchemaRef, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(open(file)?).map_err(|e| format!("{} is not a Parquet file: {e}", file.display()))?;
    Ok(builder.schema().clone())
}

fn orc_schema(file: &Path, _: &crate::spec::SourceDecl) -> Result<SchemaRef, String> {
    kiln::sources::orc::file_schema(file).map(std::sync::Arc::new).map_err(|e| format!("{}: {e}", file.display()))
}

fn avro_schema(file: &Path, _: &crate::spec::SourceDecl) -> Result<SchemaRef, String> {
    let reader = arrow_avro::reader::ReaderBuilder::new()
        .build(std::io::BufReader::new(open(file)?))
        .map_err(|e| format!("{} is not an Avro file: {e}", file.display()))?;
    Ok(reader.schema())
}

/// Rows read to infer a CSV or JSON schema.
const INFER_ROWS: usize = 10_000;

fn csv_schema(file: &Path, s: &crate::spec::SourceDecl) -> Result<SchemaRef, String> {
    let mut format = arrow::csv::reader::Format::default().with_header(s.header.as_ref().is_none_or(|h| h.value));
    if let Some(d) = &s.delimiter {
        format = format.with_delimiter(d.value.as_bytes()[0]);
    }
    if let Some(q) = &s.quote {
        format = format.with_quote(q.value.as_bytes()[0]);
    }
    let (schema, _) = format
        .infer_schema(std::io::BufReader::new(open(file)?), Some(INFER_ROWS))
        .map_err(|e| format!("cannot infer a schema from {}: {e}", file.display()))?;
    Ok(std::sync::Arc::new(all_nullable(schema)))
}

fn json_schema(file: &Path, _: &crate::spec::SourceDecl) -> Result<SchemaRef, String> {
    let (schema, _) = arrow::json::reader::infer_json_schema(std::io::BufReader::new(open(file)?), Some(INFER_ROWS))
        .map_err(|e| format!("cannot infer a schema from {}: {e}", file.display()))?;
    Ok(std::sync::Arc::new(all_nullable(schema)))
}

/// Inferred columns may hold nulls in rows the inference did not read.
fn all_nullable(schema: datafusion::arrow::datatypes::Schema) -> datafusion::arrow::datatypes::Schema {
    let fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    datafusion::arrow::datatypes::Schema::new(fields)
}

/// The file itself, or the first `.parquet` file (in name order) under a directory.
/// `path` itself, or the first `.ext` file under it (partition directories included).
fn first_file(path: &Path, ext: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        let mut files = Vec::new();
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == ext) {
                    files.push(p);
                }
            }
        }
        files.sort();
        return files.into_iter().next().ok_or_else(|| format!("no .{ext} file under {}", path.display()));
    }
    let text = path.to_string_lossy();
    if let Some(i) = text.find(['*', '?', '[']) {
        // A glob: the first matching file under its fixed prefix, in name order.
        let dir = text[..i].rsplit_once('/').map_or(".", |(d, _)| if d.is_empty() { "/" } else { d });
        let files = kiln::sources::files_under(Path::new(dir), None);
        return files.into_iter().find(|f| kiln::sources::glob_match(&text, &f.to_string_lossy())).ok_or_else(|| format!("no file matches {text}"));
    }
    Err(format!("{} does not exist", path.display()))
}

