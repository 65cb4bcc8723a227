//! Parquet sources, read with the schema pinned at compile time.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::{Error, Result};

pub(super) async fn scan(ctx: &SessionContext, path: &str, schema: &SchemaRef) -> Result<LogicalPlan> {
    let read = ParquetReadOptions::default()
        .schema(schema.as_ref())
        .file_extension(super::listing_extension(path, ".parquet"));
    let df = ctx
        .read_parquet(path, read)
        .await
        .map_err(|e| Error::Read { path: path.to_string(), message: e.to_string() })?;
    Ok(df.into_unoptimized_plan())
}
