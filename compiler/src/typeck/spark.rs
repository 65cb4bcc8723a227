//! Spark SQL's scalar functions that DataFusion spells differently
//! (`year(d)`, `datediff(end, start)`, `date_add(d, n)`, `isnull(x)`, …),
//! rewritten at check time into the DataFusion expressions that compute
//! Spark's result. The checker knows them as stand-ins so a call parses and
//! plans; the rewrite replaces every call, so neither the generated code nor a
//! `sql` transform's plan ever names them (no new function at run time).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, cast};

/// (Spark name, number of arguments, result type).
const FUNCTIONS: &[(&str, usize, DataType)] = &[
    ("year", 1, DataType::Int32),
    ("month", 1, DataType::Int32),
    ("day", 1, DataType::Int32),
    ("dayofmonth", 1, DataType::Int32),
    ("dayofweek", 1, DataType::Int32),
    ("dayofyear", 1, DataType::Int32),
    ("weekofyear", 1, DataType::Int32),
    ("quarter", 1, DataType::Int32),
    ("hour", 1, DataType::Int32),
    ("minute", 1, DataType::Int32),
    ("second", 1, DataType::Int32),
    ("datediff", 2, DataType::Int32),
    ("date_add", 2, DataType::Date32),
    ("date_sub", 2, DataType::Date32),
    ("isnull", 1, DataType::Boolean),
    ("isnotnull", 1, DataType::Boolean),
    ("lcase", 1, DataType::Utf8),
    ("ucase", 1, DataType::Utf8),
    ("pmod", 2, DataType::Int64),
    ("unix_timestamp", 1, DataType::Int64),
    ("size", 1, DataType::Int32),
];

/// Stand-ins for the checker's registry (only names DataFusion does not have).
pub fn stubs(has: impl Fn(&str) -> bool) -> Vec<Arc<ScalarUDF>> {
    FUNCTIONS
        .iter()
        .filter(|(name, _, _)| !has(name))
        .map(|(name, arity, ret)| Arc::new(ScalarUDF::new_from_impl(Stub { name, signature: Signature::any(*arity, Volatility::Immutable), ret: ret.clone() })))
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Stub {
    name: &'static str,
    signature: Signature,
    ret: DataType,
}

impl ScalarUDFImpl for Stub {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(match (self.name, args) {
            ("pmod", [a, b]) if a.is_integer() && b.is_integer() => DataType::Int64,
            ("pmod", _) => DataType::Float64,
            _ => self.ret.clone(),
        })
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("`{}` is rewritten by kiln check and never runs", self.name)
    }
}

/// `expr` with every Spark-named call replaced by DataFusion's equivalent.
pub fn rewrite(expr: Expr, schema: &datafusion::common::DFSchema) -> Result<Expr> {
    Ok(expr
        .transform_up(|e| {
            let Expr::ScalarFunction(f) = &e else { return Ok(Transformed::no(e)) };
            if f.func.inner().downcast_ref::<Stub>().is_none() {
                return Ok(Transformed::no(e));
            }
            Ok(Transformed::yes(replacement(f.func.name(), f.args.clone(), schema)?))
        })?
        .data)
}

fn call(name: &str, args: Vec<Expr>) -> Result<Expr> {
    kiln::expr::call(name, args).map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))
}

fn part(unit: &str, x: Expr) -> Result<Expr> {
    Ok(cast(call("date_part", vec![Expr::Literal(ScalarValue::Utf8(Some(unit.into())), None), x])?, DataType::Int32))
}

fn days(x: Expr) -> Expr {
    cast(cast(x, DataType::Date32), DataType::Int32)
}

fn replacement(name: &str, mut args: Vec<Expr>, schema: &datafusion::common::DFSchema) -> Result<Expr> {
    let arg = |args: &mut Vec<Expr>| args.remove(0);
    Ok(match name {
        "year" => part("year", arg(&mut args))?,
        "month" => part("month", arg(&mut args))?,
        "day" | "dayofmonth" => part("day", arg(&mut args))?,
        "dayofyear" => part("doy", arg(&mut args))?,
        "weekofyear" => part("week", arg(&mut args))?,
        "quarter" => part("quarter", arg(&mut args))?,
        "hour" => part("hour", arg(&mut args))?,
        "minute" => part("minute", arg(&mut args))?,
        "second" => part("second", arg(&mut args))?,
        // Spark: 1 = Sunday … 7 = Saturday; DataFusion's dow: 0 = Sunday.
        "dayofweek" => part("dow", arg(&mut args))? + Expr::Literal(ScalarValue::Int32(Some(1)), None),
        // Whole days from `start` to `end`.
        "datediff" => {
            let (end, start) = (arg(&mut args), arg(&mut args));
            days(end) - days(start)
        }
        "date_add" | "date_sub" => {
            let (d, n) = (arg(&mut args), cast(arg(&mut args), DataType::Int32));
            let shifted = if name == "date_add" { days(d) + n } else { days(d) - n };
            cast(shifted, DataType::Date32)
        }
        "isnull" => arg(&mut args).is_null(),
        "isnotnull" => arg(&mut args).is_not_null(),
        "lcase" => call("lower", args)?,
        "ucase" => call("upper", args)?,
        // The non-negative remainder.
        // Spark: r = a % b; if r < 0 then (r + b) % b else r (so pmod(7, -3) = 1, pmod(-7, 3) = 2).
        "pmod" => {
            let (a, b) = (arg(&mut args), arg(&mut args));
            let r = a % b.clone();
            datafusion::logical_expr::when(r.clone().lt(Expr::Literal(ScalarValue::Int64(Some(0)), None)), (r.clone() + b.clone()) % b).otherwise(r)?
        }
        "unix_timestamp" => call("to_unixtime", args)?,
        // Spark: the number of top-level elements; -1 for NULL (spark.sql.legacy.sizeOfNull, the default).
        "size" => {
            let a = arg(&mut args);
            match a.get_type(schema)? {
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
                    let length = call("coalesce", vec![cast(call("array_length", vec![a.clone()])?, DataType::Int32), Expr::Literal(ScalarValue::Int32(Some(0)), None)])?;
                    datafusion::logical_expr::when(a.is_null(), Expr::Literal(ScalarValue::Int32(Some(-1)), None)).otherwise(length)?
                }
                other => return plan_err!("size() takes a list, not {other}"),
            }
        }
        other => return plan_err!("no rewrite for `{other}`"),
    })
}

/// A planned `sql` query with Spark's meaning: every Spark-named call
/// rewritten and Spark's operator semantics applied (as in expressions), in
/// subqueries too; projected and aggregated columns keep the names the query
/// gave them; every schema recomputed.
pub fn rewrite_plan(plan: LogicalPlan) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up_with_subqueries(|node| {
            let keep_names = matches!(node, LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Window(_));
            let schema = match node.inputs().as_slice() {
                [one] => Arc::clone(one.schema()),
                _ => Arc::clone(node.schema()),
            };
            let node = node.map_expressions(|e| {
                let name = e.schema_name().to_string();
                let new = super::expr::spark_semantics(rewrite(e.clone(), &schema)?, &schema)?;
                Ok(if new == e {
                    Transformed::no(e)
                } else if keep_names && !matches!(new, Expr::Alias(_)) {
                    Transformed::yes(new.alias(name))
                } else {
                    Transformed::yes(new)
                })
            })?;
            // A child's schema may have changed: every node's is recomputed.
            Ok(Transformed::yes(node.data.recompute_schema()?))
        })?
        .data)
}
