//! Spark SQL's names for functions DataFusion has under other names (SPEC §4:
//! "count, sum, avg, min, max, count_distinct, approx_distinct, stddev,
//! percentile/median, first/last, collect_list…"), with Spark's meaning.
//!
//! Most are aliases of a DataFusion function (`first` is `first_value`), so a
//! plan holds the DataFusion function and nothing new is shipped. The rest wrap
//! one with a fixed variant: `count_distinct(x)` is `count(DISTINCT x)`,
//! `collect_list(x)` is `array_agg(x)` without nulls (Spark drops them).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, ReversedUDAF, SetMonotonicity, Signature, Volatility};

/// Spark name → the DataFusion aggregate it is another name for.
const AGGREGATE_ALIASES: &[(&str, &str)] = &[
    ("first", "first_value"),
    ("last", "last_value"),
    ("approx_count_distinct", "approx_distinct"),
    ("std", "stddev"),
    ("variance", "var_samp"),
    ("percentile", "percentile_cont"),
    ("percentile_approx", "approx_percentile_cont"),
    ("approx_percentile", "approx_percentile_cont"),
    ("every", "bool_and"),
];

/// Spark name, the DataFusion aggregate, DISTINCT, IGNORE NULLS.
const AGGREGATE_VARIANTS: &[(&str, &str, bool, bool)] = &[
    ("count_distinct", "count", true, false),
    ("sum_distinct", "sum", true, false),
    ("collect_list", "array_agg", false, true),
    ("collect_set", "array_agg", true, true),
];

/// Registers the Spark names on a session state.
pub fn install(state: &mut SessionState) {
    for (alias, target) in AGGREGATE_ALIASES {
        if state.udaf(alias).is_ok() {
            continue;
        }
        if let Ok(udaf) = state.udaf(target) {
            let _ = state.register_udaf(Arc::new(udaf.as_ref().clone().with_aliases([*alias])));
        }
    }
    for udaf in extra_aggregates() {
        if state.udaf(udaf.name()).is_err() {
            let _ = state.register_udaf(Arc::new(udaf));
        }
    }
    for (name, target, distinct, ignore_nulls) in AGGREGATE_VARIANTS {
        if let Ok(inner) = state.udaf(target) {
            let _ = state.register_udaf(Arc::new(AggregateUDF::new_from_impl(Variant { name, inner, distinct: *distinct, ignore_nulls: *ignore_nulls })));
        }
    }
}

/// An aggregate with DISTINCT and/or IGNORE NULLS fixed, under its own name.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Variant {
    name: &'static str,
    inner: Arc<AggregateUDF>,
    distinct: bool,
    ignore_nulls: bool,
}

impl Variant {
    fn args<'a>(&self, args: AccumulatorArgs<'a>) -> AccumulatorArgs<'a> {
        AccumulatorArgs { is_distinct: args.is_distinct || self.distinct, ignore_nulls: args.ignore_nulls || self.ignore_nulls, ..args }
    }
}

impl AggregateUDFImpl for Variant {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner.return_field(arg_fields)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let item = args.return_field.data_type().clone();
        let inner = self.inner.accumulator(self.args(args))?;
        Ok(if self.ignore_nulls { Box::new(EmptyNotNull { inner, item }) } else { inner })
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(StateFieldsArgs { is_distinct: args.is_distinct || self.distinct, ..args })
    }
    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        // collect_list/collect_set go through `accumulator` (their empty result is `[]`).
        !self.ignore_nulls && self.inner.groups_accumulator_supported(self.args(args))
    }
    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner.create_groups_accumulator(self.args(args))
    }
    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.create_sliding_accumulator(self.args(args))
    }
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.inner().order_sensitivity()
    }
    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::NotSupported
    }
    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        match (self.ignore_nulls, data_type) {
            (true, DataType::List(f)) => Ok(ScalarValue::List(ScalarValue::new_list_nullable(&[], f.data_type()))),
            _ => self.inner.default_value(data_type),
        }
    }
    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.inner().set_monotonicity(data_type)
    }
}

/// An accumulator whose NULL result is an empty list (Spark's collect_list of
/// no non-null value is `[]`).
#[derive(Debug)]
struct EmptyNotNull {
    inner: Box<dyn Accumulator>,
    item: DataType,
}

impl Accumulator for EmptyNotNull {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(values)
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        let v = self.inner.evaluate()?;
        Ok(match (&self.item, v.is_null()) {
            (DataType::List(f), true) => ScalarValue::List(ScalarValue::new_list_nullable(&[], f.data_type())),
            _ => v,
        })
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
}

/// Spark aggregates DataFusion lacks: `count_if(cond)`, `max_by(x, ord)`, `min_by(x, ord)`.
pub fn extra_aggregates() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::new_from_impl(CountIf { signature: Signature::exact(vec![DataType::Boolean], Volatility::Immutable) }),
        AggregateUDF::new_from_impl(ExtremeBy { name: "max_by", max: true, signature: Signature::any(2, Volatility::Immutable) }),
        AggregateUDF::new_from_impl(ExtremeBy { name: "min_by", max: false, signature: Signature::any(2, Volatility::Immutable) }),
    ]
}

/// `count_if(cond)`: rows where `cond` is true (NULL counts as not true); 0 for no rows.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CountIf {
    signature: Signature,
}

impl AggregateUDFImpl for CountIf {
    fn name(&self) -> &str {
        "count_if"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn is_nullable(&self) -> bool {
        false
    }
    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(CountIfAcc(0)))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(format!("{}_count", args.name), DataType::Int64, false))])
    }
    fn default_value(&self, _: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(0)))
    }
}

#[derive(Debug)]
struct CountIfAcc(i64);

impl Accumulator for CountIfAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.0 += values[0].as_boolean().true_count() as i64;
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.0 += states[0].as_primitive::<Int64Type>().iter().flatten().sum::<i64>();
        Ok(())
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(Some(self.0))])
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.0)))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

/// `max_by(x, ord)` / `min_by(x, ord)`: the `x` of the row with the largest
/// (smallest) non-NULL `ord`; NULL when every `ord` is NULL. Ties keep the
/// first row seen (Spark leaves ties unspecified).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExtremeBy {
    name: &'static str,
    max: bool,
    signature: Signature,
}

impl AggregateUDFImpl for ExtremeBy {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let types: Vec<DataType> = args.expr_fields.iter().map(|f| f.data_type().clone()).collect();
        Ok(Box::new(ExtremeByAcc { max: self.max, value: ScalarValue::try_from(&types[0])?, key: ScalarValue::try_from(&types[1])? }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(format!("{}_value", args.name), args.input_fields[0].data_type().clone(), true)),
            Arc::new(Field::new(format!("{}_key", args.name), args.input_fields[1].data_type().clone(), true)),
        ])
    }
}

#[derive(Debug)]
struct ExtremeByAcc {
    max: bool,
    value: ScalarValue,
    key: ScalarValue,
}

impl Accumulator for ExtremeByAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (x, keys) = (&values[0], &values[1]);
        for i in 0..keys.len() {
            if keys.is_null(i) {
                continue;
            }
            let key = ScalarValue::try_from_array(keys, i)?;
            let better = self.key.is_null()
                || match key.partial_cmp(&self.key) {
                    Some(std::cmp::Ordering::Greater) => self.max,
                    Some(std::cmp::Ordering::Less) => !self.max,
                    _ => false,
                };
            if better {
                self.key = key;
                self.value = ScalarValue::try_from_array(x, i)?;
            }
        }
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.value.clone(), self.key.clone()])
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size() + self.key.size()
    }
}
