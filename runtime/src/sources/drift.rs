//! Run-time schema drift: before anything runs, every file of a Parquet, Avro
//! or CSV (with header) source is compared with the schema pinned at compile
//! time. A file that lacks a column, or holds it with another type, fails the
//! run naming the file, the column, and both types. Extra columns are allowed
//! (they are not read). JSON is schema-on-read: its values are checked as read,
//! and a field absent from a file reads as NULL (as in Spark) — unless the file
//! holds fields the schema does not know instead, the mark of a renamed field:
//! that fails naming the file, the missing field and the unknown ones.

use std::path::Path;

use datafusion::arrow::datatypes::{DataType, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::plan::{Source, SourceFormat};
use crate::{Error, Result};

/// Checks every file of `source` at `path` (local paths and globs).
pub fn check(source: &Source, path: &str) -> Result<()> {
    if matches!(source.format, SourceFormat::Json) {
        return check_json(source, path);
    }
    let (ext, read): (&str, fn(&Path, &Source) -> std::result::Result<Schema, String>) = match &source.format {
        SourceFormat::Parquet => ("parquet", parquet_schema),
        SourceFormat::Avro => ("avro", avro_schema),
        SourceFormat::Orc => ("orc", |file, _| super::orc::file_schema(file)),
        SourceFormat::Csv(opts) if opts.header => ("csv", csv_header),
        _ => return Ok(()),
    };
    let p = Path::new(path);
    let glob = path.contains(['*', '?', '[']);
    if !p.exists() && !glob {
        return Ok(()); // a remote path: DataFusion reports what it cannot find
    }
    let pinned = super::files::file_schema(source);
    for file in super::bad_rows::files(path) {
        if p.is_dir() && file.extension().is_none_or(|e| e != ext) {
            continue;
        }
        // An empty CSV file holds no rows and no header (Spark skips it); other formats
        // have a footer or header to check, and an empty file fails as not a file of them.
        if matches!(source.format, SourceFormat::Csv(_)) && std::fs::metadata(&file).is_ok_and(|m| m.len() == 0) {
            continue;
        }
        let found = read(&file, source).map_err(|message| Error::Read { path: file.display().to_string(), message })?;
        compare(&pinned, &found, matches!(source.format, SourceFormat::Csv(_))).map_err(|message| Error::Read { path: file.display().to_string(), message })?;
    }
    Ok(())
}

/// Records of each JSON file looked at for renamed fields.
const JSON_SAMPLE: usize = 1000;

fn check_json(source: &Source, path: &str) -> Result<()> {
    let p = Path::new(path);
    if !p.exists() && !path.contains(['*', '?', '[']) {
        return Ok(());
    }
    let pinned = super::files::file_schema(source);
    for file in super::bad_rows::files(path) {
        if p.is_dir() && file.extension().is_none_or(|e| e != "json" && e != "jsonl" && e != "ndjson") {
            continue;
        }
        renamed_fields(&file, &pinned).map_err(|message| Error::Read { path: file.display().to_string(), message })?;
    }
    Ok(())
}

/// Fails when a schema field is in none of the first [`JSON_SAMPLE`] records
/// while those records hold fields the schema lacks.
fn renamed_fields(file: &Path, pinned: &Schema) -> std::result::Result<(), String> {
    use std::collections::BTreeSet;
    let reader = std::io::BufReader::new(std::fs::File::open(file).map_err(|e| e.to_string())?);
    let (mut seen, mut records) = (BTreeSet::new(), 0usize);
    for value in serde_json::Deserializer::from_reader(reader).into_iter::<serde_json::Value>().take(JSON_SAMPLE) {
        // A malformed record is reported by the reader, with its line, when read.
        let Ok(serde_json::Value::Object(record)) = value else { break };
        seen.extend(record.keys().cloned());
        records += 1;
    }
    if records == 0 {
        return Ok(());
    }
    let known: BTreeSet<&str> = pinned.fields().iter().map(|f| f.name().as_str()).collect();
    let missing: Vec<&str> = known.iter().copied().filter(|k| !seen.contains(*k)).collect();
    let unknown: Vec<&str> = seen.iter().map(String::as_str).filter(|k| !known.contains(k)).collect();
    if missing.is_empty() || unknown.is_empty() {
        return Ok(());
    }
    Err(format!(
        "schema drift: field{} {} in none of the first {records} records, which have field{} the schema lacks: {} (renamed? a field a file never has reads as NULL; one replaced by another is an error)",
        if missing.len() > 1 { "s" } else { "" },
        missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
        if unknown.len() > 1 { "s" } else { "" },
        unknown.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
    ))
}

pub(super) fn compare(pinned: &Schema, found: &Schema, names_only: bool) -> std::result::Result<(), String> {
    for want in pinned.fields() {
        match found.field_with_name(want.name()) {
            Err(_) => {
                return Err(format!(
                    "schema drift: column `{}` ({}) is missing; found: {}",
                    want.name(),
                    want.data_type(),
                    found.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            Ok(f) if !names_only && !same_type(f.data_type(), want.data_type()) => {
                return Err(format!(
                    "schema drift: column `{}` is {} here, but the schema pinned at compile time says {}",
                    want.name(),
                    f.data_type(),
                    want.data_type()
                ));
            }
            Ok(_) => {}
        }
    }
    if names_only {
        // CSV columns are matched by position: the header must list the schema's columns in order.
        let names: Vec<&str> = found.fields().iter().map(|f| f.name().as_str()).collect();
        let want: Vec<&str> = pinned.fields().iter().map(|f| f.name().as_str()).collect();
        if names != want {
            return Err(format!("schema drift: the header is ({}), the schema says ({})", names.join(", "), want.join(", ")));
        }
    }
    Ok(())
}

/// String and binary encodings are interchangeable; everything else must match.
pub(crate) fn same_type(a: &DataType, b: &DataType) -> bool {
    use DataType::*;
    let family = |t: &DataType| match t {
        Utf8 | LargeUtf8 | Utf8View => Some(0),
        Binary | LargeBinary | BinaryView => Some(1),
        _ => None,
    };
    match (family(a), family(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn parquet_schema(file: &Path, _: &Source) -> std::result::Result<Schema, String> {
    let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| format!("not a Parquet file: {e}"))?;
    Ok(builder.schema().as_ref().clone())
}

fn avro_schema(file: &Path, _: &Source) -> std::result::Result<Schema, String> {
    let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let reader = arrow_avro::reader::ReaderBuilder::new().build(std::io::BufReader::new(f)).map_err(|e| format!("not an Avro file: {e}"))?;
    Ok(reader.schema().as_ref().clone())
}

fn csv_header(file: &Path, source: &Source) -> std::result::Result<Schema, String> {
    let SourceFormat::Csv(opts) = &source.format else { unreachable!("csv only") };
    csv_header_of(std::fs::File::open(file).map_err(|e| e.to_string())?, opts)
}

/// The column names of a CSV header, as a schema of strings.
pub(super) fn csv_header_of(data: impl std::io::Read, opts: &crate::plan::CsvOptions) -> std::result::Result<Schema, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).delimiter(opts.delimiter).quote(opts.quote).from_reader(data);
    let header = reader.headers().map_err(|e| e.to_string())?;
    // A UTF-8 byte-order mark (files saved by spreadsheet programs) is not part of the first name.
    Ok(Schema::new(header.iter().map(|h| datafusion::arrow::datatypes::Field::new(h.trim_start_matches('\u{feff}').trim(), DataType::Utf8, true)).collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;

    #[test]
    fn names_the_column_and_both_types() {
        let pinned = Schema::new(vec![Field::new("id", DataType::Utf8, true), Field::new("amount", DataType::Float64, true)]);
        let same = Schema::new(vec![Field::new("id", DataType::Utf8View, false), Field::new("amount", DataType::Float64, true), Field::new("extra", DataType::Int8, true)]);
        assert_eq!(compare(&pinned, &same, false), Ok(()));
        let retyped = Schema::new(vec![Field::new("id", DataType::Utf8, true), Field::new("amount", DataType::Int64, true)]);
        let err = compare(&pinned, &retyped, false).unwrap_err();
        assert!(err.contains("`amount` is Int64") && err.contains("says Float64"), "{err}");
        let missing = Schema::new(vec![Field::new("id", DataType::Utf8, true)]);
        assert!(compare(&pinned, &missing, false).unwrap_err().contains("`amount` (Float64) is missing"));
        let reordered = Schema::new(vec![Field::new("amount", DataType::Utf8, true), Field::new("id", DataType::Utf8, true)]);
        assert!(compare(&pinned, &reordered, true).unwrap_err().contains("the header is (amount, id)"));
    }

    #[test]
    fn a_renamed_json_field_is_named_an_absent_one_is_not() {
        use datafusion::arrow::datatypes::Field;
        let dir = tempfile::tempdir().unwrap();
        let schema = Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("amount", DataType::Float64, true), Field::new("note", DataType::Utf8, true)]);
        let renamed = dir.path().join("renamed.json");
        std::fs::write(&renamed, "{\"id\": 1, \"amt\": 2.5}\n{\"id\": 2, \"amt\": 3.5, \"note\": \"x\"}\n").unwrap();
        let err = renamed_fields(&renamed, &schema).unwrap_err();
        assert!(err.contains("field `amount` in none of the first 2 records") && err.contains("`amt`"), "{err}");
        let optional = dir.path().join("optional.json");
        std::fs::write(&optional, "{\"id\": 1, \"amount\": 2.5}\n").unwrap();
        assert_eq!(renamed_fields(&optional, &schema), Ok(()), "a field no record has, with nothing in its place, reads as NULL");
        let later = dir.path().join("later.json");
        std::fs::write(&later, "{\"id\": 1}\n{\"id\": 2, \"amount\": 1.0, \"note\": null, \"extra\": true}\n").unwrap();
        assert_eq!(renamed_fields(&later, &schema), Ok(()), "every field appears somewhere");
        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, "").unwrap();
        assert_eq!(renamed_fields(&empty, &schema), Ok(()));
    }
}
