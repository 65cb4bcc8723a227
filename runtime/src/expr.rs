//! Small constructors that generated code uses to build DataFusion expressions.
//!
//! Functions are looked up by name in [`crate::functions::registry`], the one
//! registry that `kiln check`, local runs and (later) cluster executors share.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Column;
use datafusion::logical_expr::expr::{AggregateFunction, Placeholder, ScalarFunction};
use datafusion::logical_expr::{Expr, SortExpr};

pub use datafusion::logical_expr::{
    Operator, binary_expr, case, cast, in_list, lit, not, try_cast, when,
};

use datafusion::execution::FunctionRegistry;

use crate::functions::registry;
use crate::Result;

/// An unqualified column reference (no parsing of dots, unlike DataFusion's `col`).
pub fn col(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// A column of a named node, as in `l.customer_id`.
pub fn qcol(relation: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(relation), name))
}

/// A call of the scalar function `name` from the shared registry.
pub fn call(name: &str, args: Vec<Expr>) -> Result<Expr> {
    let udf = registry().udf(name)?;
    Ok(Expr::ScalarFunction(ScalarFunction::new_udf(udf, args)))
}

/// A call of the aggregate function `name` from the shared registry.
pub fn aggregate(name: &str, args: Vec<Expr>, distinct: bool) -> Result<Expr> {
    let udaf = registry().udaf(name)?;
    Ok(Expr::AggregateFunction(AggregateFunction::new_udf(udaf, args, distinct, None, vec![], None)))
}

/// A run-time parameter (`${params.NAME}` in the spec) of a known type.
pub fn param(name: &str, data_type: DataType) -> Expr {
    let field = Arc::new(Field::new(name, data_type, true));
    Expr::Placeholder(Placeholder::new_with_field(format!("${name}"), Some(field)))
}

/// A negation, `-expr`.
pub fn negative(expr: Expr) -> Expr {
    Expr::Negative(Box::new(expr))
}

/// One ORDER BY item.
pub fn sort(expr: Expr, asc: bool, nulls_first: bool) -> SortExpr {
    SortExpr::new(expr, asc, nulls_first)
}

/// A nullable or non-nullable field.
pub fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

/// A schema from fields, in order.
pub fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}
