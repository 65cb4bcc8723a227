//! Naming the file and line of a CSV row that failed to parse.
//!
//! DataFusion reads CSV files in parallel byte ranges, so the line numbers in
//! Arrow's parse errors are relative to a range, and the file is not named.
//! When a run fails with such an error, the CSV sources are scanned once more
//! (a cold path: the run has already failed) to find the offending row.

use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::SchemaRef;

use crate::plan::CsvOptions;

/// Where a bad row is, and what was wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    pub file: PathBuf,
    /// 1-based line in the file.
    pub line: u64,
    pub message: String,
}

/// Finds the line of a JSON source that `error` (an Arrow JSON decoding error's
/// text, which names neither file nor line) complains about: each line of each
/// file is decoded alone with the pinned schema until one fails.
pub fn locate_json(error: &str, path: &str, schema: &SchemaRef) -> Option<BadRow> {
    if !error.contains("Json error") {
        return None;
    }
    for file in files(path) {
        let text = std::fs::read_to_string(&file).ok()?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let reader = datafusion::arrow::json::ReaderBuilder::new(schema.clone()).build(std::io::Cursor::new(line.as_bytes()));
            let failed = match reader {
                Err(e) => Some(e.to_string()),
                Ok(mut r) => r.find_map(|b| b.err()).map(|e| e.to_string()),
            };
            if let Some(message) = failed {
                return Some(BadRow { file, line: i as u64 + 1, message });
            }
        }
    }
    None
}

/// Finds the row that `error` (an Arrow CSV error's text) complains about in the
/// files of one CSV source. `None` when the error is not a row error or the row
/// is not found there.
pub fn locate(error: &str, path: &str, schema: &SchemaRef, opts: &CsvOptions) -> Option<BadRow> {
    let parse = parse_error(error);
    let wrong_count = error.contains("incorrect number of fields");
    if parse.is_none() && !wrong_count {
        return None;
    }
    for file in files(path) {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(opts.header)
            .delimiter(opts.delimiter)
            .quote(opts.quote)
            .flexible(true)
            .from_path(&file)
            .ok()?;
        for record in reader.records() {
            let Ok(record) = record else { continue };
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != schema.fields().len() {
                let message = format!("expected {} fields ({}), found {}", schema.fields().len(), names(schema), record.len());
                return Some(BadRow { file, line, message });
            }
            if let Some((value, column, row_data)) = &parse {
                let joined = format!("[{}]", record.iter().collect::<Vec<_>>().join(","));
                if &joined == row_data {
                    let field = schema.fields().get(*column);
                    let message = match field {
                        Some(f) => format!("cannot read `{value}` as {} (column `{}`)", f.data_type(), f.name()),
                        None => format!("cannot read `{value}` (column {column})"),
                    };
                    return Some(BadRow { file, line, message });
                }
            }
        }
    }
    None
}

/// (value, column index, row data) from "Error while parsing value 'V' as type 'T' for column C at line L. Row data: 'R'".
pub(super) fn parse_error(error: &str) -> Option<(String, usize, String)> {
    let rest = &error[error.find("Error while parsing value '")? + "Error while parsing value '".len()..];
    let (value, rest) = rest.split_once("' as type '")?;
    let rest = &rest[rest.find("for column ")? + "for column ".len()..];
    let column: usize = rest.split_whitespace().next()?.parse().ok()?;
    let row = &rest[rest.find("Row data: '")? + "Row data: '".len()..];
    // The row ends at `]'`; more text may follow (Ballista wraps task errors in their Debug form).
    let row = row.find("]'").map_or(row.strip_suffix('\'').unwrap_or(row), |end| &row[..=end]);
    Some((value.to_string(), column, row.to_string()))
}

fn names(schema: &SchemaRef) -> String {
    schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
}

/// The files a source path names (see [`super::files_under`]).
pub(super) fn files(path: &str) -> Vec<PathBuf> {
    super::files_under(Path::new(path), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn finds_the_line_of_a_bad_value_and_of_a_short_row() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.csv");
        std::fs::write(&file, "id,amount\na,1.5\nb,2\n\"c, d\",abc\ne,3\n").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true), Field::new("amount", DataType::Float64, true)]));
        let err = "Arrow error: Parser error: Error while parsing value 'abc' as type 'Float64' for column 1 at line 2. Row data: '[c, d,abc]'";
        let found = locate(err, file.to_str().unwrap(), &schema, &CsvOptions::default()).unwrap();
        assert_eq!((found.file.clone(), found.line), (file.clone(), 4));
        assert!(found.message.contains("`abc`") && found.message.contains("`amount`"), "{}", found.message);

        std::fs::write(&file, "id,amount\na,1.5\nb\n").unwrap();
        let found = locate("Csv error: incorrect number of fields for line 1, expected 2 got 1", dir.path().to_str().unwrap(), &schema, &CsvOptions::default()).unwrap();
        assert_eq!(found.line, 3);
        assert!(locate("some other error", file.to_str().unwrap(), &schema, &CsvOptions::default()).is_none());

        // As a Ballista task error reports it: the message inside a Debug-printed error.
        std::fs::write(&file, "id,amount\na,1.5\nb,x\n").unwrap();
        let err = "Job failed due to stage 1 failed: DataFusionError(Shared(ArrowError(ParseError(\"Error while parsing value 'x' as type 'Float64' for column 1 at line 2. Row data: '[b,x]'\"), Some(\"\"))))";
        assert_eq!(locate(err, file.to_str().unwrap(), &schema, &CsvOptions::default()).unwrap().line, 3);
    }
}
