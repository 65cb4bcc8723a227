//! A running total: `sum(x)` over `ROWS BETWEEN UNBOUNDED PRECEDING AND
//! CURRENT ROW`, the guide's most common window (issue 21).
//!
//! DataFusion evaluates that aggregate form row by row: each row sliced into a
//! one-row array, the accumulator updated, its value taken out as a scalar. In
//! the windows job at 10M rows that was a fifth of all CPU samples (perf,
//! `PlainAggregateWindowExpr::get_aggregate_result_inside_range`). This window
//! function keeps one total per window partition and adds each row to it: the
//! same rows added in the same order (so the same doubles; integers wrap as
//! DataFusion's `sum` does), streaming the same way (bounded memory, so it
//! still runs under a memory limit), and `evaluate_all` for the unbounded path.
//!
//! `transforms::window` plans a spec's running `sum` with it when the argument
//! is an integer or a float (cast to Int64, UInt64 or Float64 first, as `sum`
//! coerces them); decimals and every other frame keep DataFusion's `sum`.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ArrowPrimitiveType, AsArray, PrimitiveArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type, UInt64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, TypeSignature, Volatility, WindowUDF, WindowUDFImpl};

/// Its name in plans (and in the registry a scheduler decodes them with).
pub const NAME: &str = "kiln_running_sum";

/// The type a running sum of `input` is computed and returned in, when this
/// function handles it (as DataFusion's `sum`: Int64, UInt64 or Float64).
pub fn accumulates_as(input: &DataType) -> Option<DataType> {
    match input {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => Some(DataType::Int64),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => Some(DataType::UInt64),
        DataType::Float32 | DataType::Float64 => Some(DataType::Float64),
        _ => None,
    }
}

/// The window function.
pub fn udwf() -> Arc<WindowUDF> {
    Arc::new(WindowUDF::new_from_impl(RunningSum::default()))
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RunningSum {
    signature: Signature,
}

impl Default for RunningSum {
    fn default() -> Self {
        let types = vec![DataType::Int64, DataType::UInt64, DataType::Float64];
        RunningSum { signature: Signature::new(TypeSignature::Uniform(1, types), Volatility::Immutable) }
    }
}

impl WindowUDFImpl for RunningSum {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(&self, _args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(Total::default()))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let Some(input) = args.input_fields().first() else { return exec_err!("{NAME} takes one argument") };
        Ok(Arc::new(Field::new(args.name(), input.data_type().clone(), true)))
    }
}

/// One window partition's total so far (None until a non-null value: the sum
/// of no values is NULL).
#[derive(Debug, Default)]
struct Total {
    int: Option<i64>,
    uint: Option<u64>,
    float: Option<f64>,
}

impl Total {
    /// Adds row `i` of `values` and returns the total.
    fn add(&mut self, values: &ArrayRef, i: usize) -> Result<ScalarValue> {
        Ok(match values.data_type() {
            DataType::Int64 => {
                let a = values.as_primitive::<Int64Type>();
                if a.is_valid(i) {
                    self.int = Some(self.int.unwrap_or(0).wrapping_add(a.value(i)));
                }
                ScalarValue::Int64(self.int)
            }
            DataType::UInt64 => {
                let a = values.as_primitive::<UInt64Type>();
                if a.is_valid(i) {
                    self.uint = Some(self.uint.unwrap_or(0).wrapping_add(a.value(i)));
                }
                ScalarValue::UInt64(self.uint)
            }
            DataType::Float64 => {
                let a = values.as_primitive::<Float64Type>();
                if a.is_valid(i) {
                    self.float = Some(self.float.unwrap_or(0.0) + a.value(i));
                }
                ScalarValue::Float64(self.float)
            }
            other => return exec_err!("{NAME} of {other}"),
        })
    }
}

impl PartitionEvaluator for Total {
    /// Streaming (BoundedWindowAggExec): called once per row, in order, with
    /// that row's range.
    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        self.add(&values[0], range.start)
    }

    /// A whole window partition at once (WindowAggExec, and Kiln's group
    /// window: `group_sort.rs`).
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let v = &values[0];
        if v.len() != num_rows {
            return exec_err!("{NAME}: {} values for {num_rows} rows", v.len());
        }
        Ok(match v.data_type() {
            DataType::Int64 => Arc::new(running(v.as_primitive::<Int64Type>(), &mut self.int, i64::wrapping_add)),
            DataType::UInt64 => Arc::new(running(v.as_primitive::<UInt64Type>(), &mut self.uint, u64::wrapping_add)),
            DataType::Float64 => Arc::new(running(v.as_primitive::<Float64Type>(), &mut self.float, |a, b| a + b)),
            other => return exec_err!("{NAME} of {other}"),
        })
    }

    fn supports_bounded_execution(&self) -> bool {
        true
    }

    fn is_causal(&self) -> bool {
        true
    }
}

/// The running totals of `values`, carrying on from `total` (and leaving the
/// last in it): as [`Total::add`] row by row, NULL until the first value.
fn running<T: ArrowPrimitiveType>(values: &PrimitiveArray<T>, total: &mut Option<T::Native>, add: impl Fn(T::Native, T::Native) -> T::Native) -> PrimitiveArray<T> {
    let mut acc = *total;
    let mut leading_nulls = 0;
    let totals: Vec<T::Native> = (0..values.len())
        .map(|i| {
            if values.is_valid(i) {
                acc = Some(add(acc.unwrap_or_default(), values.value(i)));
            }
            acc.unwrap_or_else(|| {
                leading_nulls += 1;
                T::Native::default()
            })
        })
        .collect();
    *total = acc;
    let nulls = (leading_nulls > 0).then(|| NullBuffer::from_iter((0..values.len()).map(|i| i >= leading_nulls)));
    PrimitiveArray::new(totals.into(), nulls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array, UInt64Array};

    #[test]
    fn a_running_total_skips_nulls_and_is_null_until_the_first_value() {
        let mut t = Total::default();
        let v: ArrayRef = Arc::new(Float64Array::from(vec![None, Some(1.5), None, Some(2.0)]));
        let got: Vec<ScalarValue> = (0..4).map(|i| t.evaluate(std::slice::from_ref(&v), &(i..i + 1)).unwrap()).collect();
        assert_eq!(got, [ScalarValue::Float64(None), ScalarValue::Float64(Some(1.5)), ScalarValue::Float64(Some(1.5)), ScalarValue::Float64(Some(3.5))]);
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![Some(i64::MAX), Some(1), None]));
        let all = Total::default().evaluate_all(&[ints], 3).unwrap();
        // Wrapping, as DataFusion's sum.
        assert_eq!(all.as_primitive::<Int64Type>(), &Int64Array::from(vec![Some(i64::MAX), Some(i64::MIN), Some(i64::MIN)]));
        // A whole partition at once: NULL until the first value, then carried through NULLs;
        // row by row gives the same.
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![None, None, Some(-0.0), None, Some(2.5), Some(1e-300)]));
        let all = Total::default().evaluate_all(std::slice::from_ref(&floats), 6).unwrap();
        let mut t = Total::default();
        let one_by_one: Vec<Option<f64>> = (0..6).map(|i| match t.evaluate(std::slice::from_ref(&floats), &(i..i + 1)).unwrap() { ScalarValue::Float64(x) => x, _ => unreachable!() }).collect();
        assert_eq!(all.as_primitive::<Float64Type>(), &Float64Array::from(vec![None, None, Some(0.0), Some(0.0), Some(2.5), Some(2.5 + 1e-300)]));
        assert_eq!(all.as_primitive::<Float64Type>(), &Float64Array::from(one_by_one));
        let uints: ArrayRef = Arc::new(UInt64Array::from(vec![Some(u64::MAX), Some(2)]));
        assert_eq!(Total::default().evaluate_all(&[uints], 2).unwrap().as_primitive::<UInt64Type>(), &UInt64Array::from(vec![u64::MAX, 1]));
        assert_eq!(accumulates_as(&DataType::Int32), Some(DataType::Int64));
        assert_eq!(accumulates_as(&DataType::Decimal128(10, 2)), None);
    }
}
