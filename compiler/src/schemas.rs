//! Schemas that live in data files (Parquet footers), read once at compile
//! time and pinned into the binary. The only pass input that touches the disk.

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
        if s.format.value != SourceFormat::Parquet {
            continue;
        }
        let Some(path) = &s.path else { continue };
        let text = substitute_defaults(spec, path.as_str());
        out.insert(s.name.value.clone(), parquet_schema(&base.join(&text)).map_err(|e| e.replace(&base.join(&text).display().to_string(), &text)));
    }
    out
}

fn substitute_defaults(spec: &Spec, text: &str) -> String {
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

fn parquet_schema(path: &Path) -> Result<SchemaRef, String> {
    let file = first_file(path)?;
    let f = File::open(&file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| format!("{} is not a Parquet file: {e}", file.display()))?;
    Ok(builder.schema().clone())
}

/// The file itself, or the first `.parquet` file (in name order) under a directory.
fn first_file(path: &Path) -> Result<PathBuf, String> {
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
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    files.push(p);
                }
            }
        }
        files.sort();
        return files.into_iter().next().ok_or_else(|| format!("no .parquet file under {}", path.display()));
    }
    Err(format!("{} does not exist", path.display()))
}
