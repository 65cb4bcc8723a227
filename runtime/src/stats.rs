//! Size estimates per node, for choosing join strategies (SPEC.md §4.1).
//!
//! Computed where the data is: by the binary when it starts (from the files it
//! is about to read), and by `kiln check`/`kiln explain` from the files the
//! spec's defaults name. Sources: Parquet footers (row counts and uncompressed
//! sizes of every file), file sizes for CSV/JSON/Avro (rows from the average
//! line length of the first 64 KB), inline row counts, and the spec's
//! `rows`/`size` hints, which win.
//! Transforms propagate them with fixed rules (a filter keeps half, an
//! aggregate a tenth, a projection scales bytes by its share of the columns …):
//! rough, but the choice they feed only needs orders of magnitude.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::params::{Values, interpolate};
use crate::plan::{JoinHow, Op, Pipeline, SourceFormat};

/// What a node is expected to hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub rows: f64,
    pub bytes: f64,
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "~{} rows, ~{}", scaled(self.rows, 1000.0, ["", "k", "M", "G"]), bytes(self.bytes))
    }
}

/// Bytes as the spec writes sizes (`MB` = 2^20, as `memory_limit` and `broadcast_threshold` read them).
pub fn bytes(b: f64) -> String {
    scaled(b, 1024.0, ["B", "KB", "MB", "GB"])
}

fn scaled(x: f64, step: f64, units: [&str; 4]) -> String {
    let mut v = x;
    let mut i = 0;
    while v >= step && i < 3 {
        v /= step;
        i += 1;
    }
    let unit = units[i];
    let sep = if unit.is_empty() { "" } else { " " };
    if i == 0 || v >= 100.0 { format!("{v:.0}{sep}{unit}") } else { format!("{v:.1}{sep}{unit}") }
}

/// Default share of rows a filter keeps, and an aggregate or dedupe leaves.
const FILTER: f64 = 0.5;
const GROUPS: f64 = 0.1;

/// Estimates for every node (by name) and where the source figures came from
/// (empty for transforms). Relative paths are read from `base`. Unknown
/// sizes are NaN.
pub fn estimate(pipeline: &Pipeline, values: &Values, base: &Path) -> HashMap<String, (Estimate, String)> {
    let mut out: HashMap<String, (Estimate, String)> = HashMap::new();
    for node in &pipeline.nodes {
        let columns = |name: &str| out.get(name).map(|(e, _)| *e).filter(|e| !e.rows.is_nan());
        let e = match &node.op {
            Op::Source(source) => {
                let hint_rows = source.hints.rows.map(|r| r as f64);
                let hint_bytes = source.hints.bytes.map(|b| b as f64);
                let row_width = source_row_width(&source.schema);
                let from_files = match &source.format {
                    SourceFormat::Inline(rows) => Some((Estimate { rows: rows.len() as f64, bytes: rows.len() as f64 * row_width }, "inline rows".to_string())),
                    format => {
                        let env = |v: &str| std::env::var(v).ok();
                        interpolate(&source.path, values, env).ok().and_then(|path| file_estimate(&base.join(path), format, row_width))
                    }
                };
                match (hint_rows, hint_bytes, from_files) {
                    (Some(r), Some(b), _) => (Estimate { rows: r, bytes: b }, "rows and size hints".into()),
                    (Some(r), None, _) => (Estimate { rows: r, bytes: r * row_width }, "rows hint".into()),
                    (None, Some(b), _) => (Estimate { rows: b / row_width, bytes: b }, "size hint".into()),
                    (None, None, Some(found)) => found,
                    (None, None, None) => {
                        out.insert(node.name.clone(), (Estimate { rows: f64::NAN, bytes: f64::NAN }, "unknown: no metadata and no rows/size hint".into()));
                        continue;
                    }
                }
            }
            op => {
                let inputs: Vec<Estimate> = op.inputs().iter().filter_map(|i| columns(i)).collect();
                let Some(first) = inputs.first().copied() else { continue };
                let e = match op {
                    Op::Filter { .. } => Estimate { rows: first.rows * FILTER, bytes: first.bytes * FILTER },
                    Op::Aggregate { group_by, .. } if group_by.is_empty() => Estimate { rows: 1.0, bytes: 64.0 },
                    Op::Aggregate { .. } | Op::Dedupe { .. } => Estimate { rows: first.rows * GROUPS, bytes: first.bytes * GROUPS },
                    Op::Limit { n, .. } => {
                        let rows = first.rows.min(*n as f64);
                        Estimate { rows, bytes: first.bytes * (rows / first.rows.max(1.0)) }
                    }
                    Op::Union { .. } => Estimate { rows: inputs.iter().map(|e| e.rows).sum(), bytes: inputs.iter().map(|e| e.bytes).sum() },
                    Op::Join { how, .. } => {
                        let second = inputs.get(1).copied().unwrap_or(first);
                        match how {
                            JoinHow::Semi | JoinHow::Anti => Estimate { rows: first.rows * FILTER, bytes: first.bytes * FILTER },
                            JoinHow::Cross => Estimate { rows: first.rows * second.rows, bytes: first.bytes * second.rows + second.bytes * first.rows },
                            _ => {
                                let rows = first.rows.max(second.rows);
                                let per_row = first.bytes / first.rows.max(1.0) + second.bytes / second.rows.max(1.0);
                                Estimate { rows, bytes: rows * per_row }
                            }
                        }
                    }
                    _ => first,
                };
                (e, String::new())
            }
        };
        out.insert(node.name.clone(), e);
    }
    out
}

/// Bytes per row in memory, from the column types (strings count 16).
fn source_row_width(schema: &datafusion::arrow::datatypes::Schema) -> f64 {
    schema.fields().iter().map(|f| f.data_type().primitive_width().unwrap_or(16) as f64).sum::<f64>().max(1.0)
}

fn file_estimate(path: &Path, format: &SourceFormat, row_width: f64) -> Option<(Estimate, String)> {
    let ext = match format {
        // A Delta table's Parquet files (of every version kept: an upper bound).
        SourceFormat::Parquet | SourceFormat::Delta(_) => "parquet",
        SourceFormat::Csv(_) => "csv",
        SourceFormat::Json => "json",
        SourceFormat::Avro => "avro",
        SourceFormat::Orc => "orc",
        SourceFormat::Inline(_) | SourceFormat::Postgres(_) | SourceFormat::Kafka(_) => return None,
    };
    let files = crate::sources::files_under(path, Some(ext));
    if files.is_empty() {
        return None;
    }
    if let SourceFormat::Parquet | SourceFormat::Delta(_) = format {
        let (mut rows, mut bytes) = (0f64, 0f64);
        for f in &files {
            let reader = SerializedFileReader::new(std::fs::File::open(f).ok()?).ok()?;
            let meta = reader.metadata();
            rows += meta.file_metadata().num_rows() as f64;
            bytes += meta.row_groups().iter().map(|rg| rg.total_byte_size() as f64).sum::<f64>();
        }
        return Some((Estimate { rows, bytes }, format!("Parquet footers of {} file(s)", files.len())));
    }
    if let SourceFormat::Orc = format {
        let rows: f64 = files.iter().map(|f| crate::sources::orc::row_count(f).map(|r| r as f64)).sum::<Option<f64>>()?;
        return Some((Estimate { rows, bytes: rows * row_width }, format!("ORC footers of {} file(s)", files.len())));
    }
    let total: f64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len() as f64).sum();
    // Rows from the average line length of the first 64 KB of the first file.
    let mut sample = vec![0u8; 64 * 1024];
    let n = std::fs::File::open(&files[0]).ok()?.read(&mut sample).ok()?;
    let lines = sample[..n].iter().filter(|b| **b == b'\n').count().max(1);
    let rows = total / (n as f64 / lines as f64).max(1.0);
    Some((Estimate { rows, bytes: rows * row_width }, format!("{} of {} file(s), rows from line lengths", bytes(total), files.len())))
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_the_spec_writes_them() {
        assert_eq!(bytes(10.0 * 1024.0 * 1024.0), "10.0 MB");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(Estimate { rows: 12_345.0, bytes: 3.5 * 1024.0 * 1024.0 * 1024.0 }.to_string(), "~12.3 k rows, ~3.5 GB");
    }
}
