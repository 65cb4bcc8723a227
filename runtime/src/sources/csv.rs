//! CSV sources: the declared schema in file order, header, delimiter, quote, null text.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{CsvReadOptions, SessionContext};

use crate::plan::CsvOptions;
use crate::{Error, Result};

pub(super) async fn scan(
    ctx: &SessionContext,
    path: &str,
    schema: &SchemaRef,
    opts: &CsvOptions,
) -> Result<LogicalPlan> {
    let null_regex = opts.null_value.as_ref().map(|text| format!("^{}$", regex_escape(text)));
    let read = CsvReadOptions::new()
        .has_header(opts.header)
        .delimiter(opts.delimiter)
        .quote(opts.quote)
        .schema(schema.as_ref())
        .null_regex(null_regex)
        .file_extension(super::listing_extension(path, ".csv"));
    let df = ctx
        .read_csv(path, read)
        .await
        .map_err(|e| Error::Read { path: path.to_string(), message: e.to_string() })?;
    Ok(df.into_unoptimized_plan())
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
