//! Inline sources: rows written in the spec.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_empty_array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::datasource::provider_as_source;

use crate::Result;

/// The rows as one record batch (`rows[i][j]` is column `j` of row `i`).
pub fn batch(schema: &SchemaRef, rows: &[Vec<ScalarValue>]) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(j, field)| -> Result<ArrayRef> {
            if rows.is_empty() {
                return Ok(new_empty_array(field.data_type()));
            }
            let values = rows.iter().map(|row| row[j].clone());
            Ok(ScalarValue::iter_to_array(values)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

pub(super) fn scan(schema: &SchemaRef, rows: &[Vec<ScalarValue>]) -> Result<LogicalPlan> {
    let table = MemTable::try_new(schema.clone(), vec![vec![batch(schema, rows)?]])?;
    Ok(LogicalPlanBuilder::scan("inline", provider_as_source(Arc::new(table)), None)?.build()?)
}
