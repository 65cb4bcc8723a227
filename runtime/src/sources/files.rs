//! File sources (csv, parquet, json, avro), read with the schema pinned at
//! compile time. Hive-style partition directories (`year=2024/`) become the
//! source's last columns; filters on them prune directories before any file is
//! opened (DataFusion's listing table does the pruning; `explain` shows the
//! files that remain).

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::{AvroReadOptions, CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext, cast, ident, lit, when};

use crate::plan::{CsvOptions, Source, SourceFormat};
use crate::{Error, Result};

/// The files' own columns: the schema without the partition columns.
pub fn file_schema(source: &Source) -> Schema {
    let fields: Vec<_> = source
        .schema
        .fields()
        .iter()
        .filter(|f| !source.partitions.iter().any(|(p, _)| p == f.name()))
        .cloned()
        .collect();
    Schema::new(fields)
}

pub(super) async fn scan(ctx: &SessionContext, path: &str, source: &Source) -> Result<LogicalPlan> {
    // A glob on an object store is expanded here, against the store's listing (which
    // follows Kiln manifests), and the objects it matches read as a list.
    let paths: Vec<String> = if crate::storage::is_remote(path) && path.contains(['*', '?', '[']) {
        let found: Vec<String> = crate::storage::files(path, None).await?.into_iter().map(|(loc, _)| loc.url).collect();
        if found.is_empty() {
            return Err(Error::Read { path: crate::redact::text(path), message: "no object matches the glob".into() });
        }
        found
    } else {
        vec![path.to_string()]
    };
    let schema = file_schema(source);
    let partitions = source.partitions.clone();
    let read = |e: datafusion::error::DataFusionError| Error::Read { path: path.to_string(), message: e.to_string() };
    let df = match &source.format {
        SourceFormat::Csv(opts) => match &opts.null_value {
            None => ctx.read_csv(paths.clone(), csv_options(opts, &schema, path).table_partition_cols(partitions)).await.map_err(read)?,
            Some(marker) => {
                // DataFusion's CSV reader applies `null_regex` only when inferring a schema
                // (55.2), so columns are read as text and the marker turned into NULL here;
                // an empty field is NULL too (as in Spark, and as the reader does without a marker).
                let text = Schema::new(schema.fields().iter().map(|f| Field::new(f.name(), DataType::Utf8, true)).collect::<Vec<_>>());
                let df = ctx.read_csv(paths.clone(), csv_options(opts, &text, path).table_partition_cols(partitions)).await.map_err(read)?;
                let columns: Vec<Expr> = df
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| match schema.field_with_name(f.name()) {
                        Ok(target) => {
                            let c = ident(f.name());
                            let is_null = if target.data_type() == &DataType::Utf8 { c.clone().eq(lit(marker.as_str())) } else { c.clone().eq(lit(marker.as_str())).or(c.clone().eq(lit(""))) };
                            let typed = if target.data_type() == &DataType::Utf8 { c } else { cast(c, target.data_type().clone()) };
                            Ok(when(is_null, lit(ScalarValue::try_from(target.data_type())?)).otherwise(typed)?.alias(f.name()))
                        }
                        Err(_) => Ok(ident(f.name())),
                    })
                    .collect::<datafusion::error::Result<_>>()?;
                df.select(columns).map_err(read)?
            }
        },
        SourceFormat::Parquet => {
            let opts = ParquetReadOptions::default()
                .schema(&schema)
                .file_extension(super::listing_extension(path, ".parquet"))
                .table_partition_cols(partitions);
            ctx.read_parquet(paths.clone(), opts).await.map_err(read)?
        }
        SourceFormat::Json => {
            let opts = JsonReadOptions::default()
                .schema(&schema)
                .file_extension(super::listing_extension(path, ".json"))
                .table_partition_cols(partitions);
            ctx.read_json(paths.clone(), opts).await.map_err(read)?
        }
        SourceFormat::Avro => {
            let opts = AvroReadOptions { schema: Some(&schema), ..Default::default() }
                .table_partition_cols(partitions);
            let opts = AvroReadOptions { file_extension: super::listing_extension(path, ".avro"), ..opts };
            ctx.read_avro(paths.clone(), opts).await.map_err(read)?
        }
        SourceFormat::Orc => {
            let spec = super::orc::OrcTableSpec {
                paths: paths.clone(),
                extension: super::listing_extension(path, ".orc").trim_start_matches('.').to_string(),
                partitions: partitions.iter().map(|(p, _)| p.clone()).collect(),
            };
            let table = super::orc::OrcTable::new(spec, source.schema.clone()).map_err(read)?;
            ctx.read_table(std::sync::Arc::new(table)).map_err(read)?
        }
        SourceFormat::Inline(_) | SourceFormat::Postgres(_) | SourceFormat::Delta(_) | SourceFormat::Kafka(_) => return Err(Error::Usage("this source has no files".into())),
    };
    Ok(df.into_unoptimized_plan())
}

fn csv_options<'a>(opts: &CsvOptions, schema: &'a Schema, path: &str) -> CsvReadOptions<'a> {
    let null_regex = opts.null_value.as_ref().map(|text| format!("^{}$", regex_escape(text)));
    CsvReadOptions::new()
        .has_header(opts.header)
        .delimiter(opts.delimiter)
        .quote(opts.quote)
        .schema(schema)
        .null_regex(null_regex)
        .file_extension(super::listing_extension(path, ".csv"))
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
