//! What `#[kiln::udf]` expands to: Rust types ↔ Arrow columns.
//!
//! For `#[kiln::udf] fn risk(amount: f64, category: Option<&str>) -> f64`, the
//! macro keeps `risk` and adds `risk_udf()`, a DataFusion scalar function whose
//! `invoke` downcasts each argument column once ([`Arg::column`]), loops over
//! the rows reading values straight from the Arrow buffers ([`Arg::get`]: no
//! allocation for numbers, bools, dates or `&str`), and appends each result to
//! an Arrow builder ([`Ret`]). A null argument makes the result null unless the
//! parameter is an `Option`, which then receives `None`.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Date32Builder, PrimitiveArray, PrimitiveBuilder, StringArray,
    StringBuilder,
};
use datafusion::arrow::datatypes::*;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// A Rust type a `#[kiln::udf]` parameter may have.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a #[kiln::udf] parameter",
    note = "parameters may be i8..i64, u8..u64, f32, f64, bool, &str, String, chrono::NaiveDate, or an Option of one of them"
)]
pub trait Arg<'a>: Sized {
    /// The downcast column the values are read from.
    type Column;
    fn data_type() -> DataType;
    fn column(array: &'a ArrayRef) -> Result<Self::Column>;
    /// The value of row `i`; `None` for a null (an `Option` parameter gets `Some(None)`).
    fn get(column: &Self::Column, i: usize) -> Option<Self>;
}

/// A Rust type a `#[kiln::udf]` may return.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by a #[kiln::udf]",
    note = "results may be i8..i64, u8..u64, f32, f64, bool, String, &'static str, chrono::NaiveDate, or an Option of one of them"
)]
pub trait Ret: Sized {
    type Builder: ArrayBuilder;
    fn data_type() -> DataType;
    fn builder(rows: usize) -> Self::Builder;
    fn push(builder: &mut Self::Builder, value: Self);
    fn push_null(builder: &mut Self::Builder);
}

fn downcast<'a, T: ArrowPrimitiveType>(array: &'a ArrayRef) -> Result<&'a PrimitiveArray<T>> {
    match array.as_primitive_opt::<T>() {
        Some(a) => Ok(a),
        None => exec_err!("expected a {} column, got {}", T::DATA_TYPE, array.data_type()),
    }
}

macro_rules! primitive {
    ($($rust:ty => $arrow:ty),* $(,)?) => {$(
        impl<'a> Arg<'a> for $rust {
            type Column = &'a PrimitiveArray<$arrow>;
            fn data_type() -> DataType {
                <$arrow>::DATA_TYPE
            }
            fn column(array: &'a ArrayRef) -> Result<Self::Column> {
                downcast::<$arrow>(array)
            }
            #[inline]
            fn get(column: &Self::Column, i: usize) -> Option<Self> {
                if column.is_null(i) { None } else { Some(column.value(i)) }
            }
        }
        impl Ret for $rust {
            type Builder = PrimitiveBuilder<$arrow>;
            fn data_type() -> DataType {
                <$arrow>::DATA_TYPE
            }
            fn builder(rows: usize) -> Self::Builder {
                PrimitiveBuilder::with_capacity(rows)
            }
            #[inline]
            fn push(builder: &mut Self::Builder, value: Self) {
                builder.append_value(value)
            }
            fn push_null(builder: &mut Self::Builder) {
                builder.append_null()
            }
        }
    )*};
}

primitive!(
    i8 => Int8Type, i16 => Int16Type, i32 => Int32Type, i64 => Int64Type,
    u8 => UInt8Type, u16 => UInt16Type, u32 => UInt32Type, u64 => UInt64Type,
    f32 => Float32Type, f64 => Float64Type,
);

impl<'a> Arg<'a> for bool {
    type Column = &'a BooleanArray;
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn column(array: &'a ArrayRef) -> Result<Self::Column> {
        match array.as_boolean_opt() {
            Some(a) => Ok(a),
            None => exec_err!("expected a boolean column, got {}", array.data_type()),
        }
    }
    #[inline]
    fn get(column: &Self::Column, i: usize) -> Option<Self> {
        if column.is_null(i) { None } else { Some(column.value(i)) }
    }
}

impl Ret for bool {
    type Builder = BooleanBuilder;
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn builder(rows: usize) -> Self::Builder {
        BooleanBuilder::with_capacity(rows)
    }
    fn push(builder: &mut Self::Builder, value: Self) {
        builder.append_value(value)
    }
    fn push_null(builder: &mut Self::Builder) {
        builder.append_null()
    }
}

impl<'a> Arg<'a> for &'a str {
    type Column = &'a StringArray;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn column(array: &'a ArrayRef) -> Result<Self::Column> {
        match array.as_string_opt::<i32>() {
            Some(a) => Ok(a),
            None => exec_err!("expected a string column, got {}", array.data_type()),
        }
    }
    #[inline]
    fn get(column: &Self::Column, i: usize) -> Option<Self> {
        if column.is_null(i) { None } else { Some(column.value(i)) }
    }
}

impl<'a> Arg<'a> for String {
    type Column = &'a StringArray;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn column(array: &'a ArrayRef) -> Result<Self::Column> {
        <&str as Arg>::column(array)
    }
    fn get(column: &Self::Column, i: usize) -> Option<Self> {
        <&str as Arg>::get(column, i).map(str::to_string)
    }
}

macro_rules! string_ret {
    ($($t:ty),*) => {$(
        impl Ret for $t {
            type Builder = StringBuilder;
            fn data_type() -> DataType {
                DataType::Utf8
            }
            fn builder(rows: usize) -> Self::Builder {
                StringBuilder::with_capacity(rows, rows * 8)
            }
            fn push(builder: &mut Self::Builder, value: Self) {
                builder.append_value(value)
            }
            fn push_null(builder: &mut Self::Builder) {
                builder.append_null()
            }
        }
    )*};
}

string_ret!(String, &'static str);

const EPOCH_DAYS_FROM_CE: i32 = 719_163;

impl<'a> Arg<'a> for NaiveDate {
    type Column = &'a PrimitiveArray<Date32Type>;
    fn data_type() -> DataType {
        DataType::Date32
    }
    fn column(array: &'a ArrayRef) -> Result<Self::Column> {
        downcast::<Date32Type>(array)
    }
    fn get(column: &Self::Column, i: usize) -> Option<Self> {
        // Dates beyond chrono's range (±262,000 years) read as null.
        if column.is_null(i) { None } else { NaiveDate::from_num_days_from_ce_opt(column.value(i).checked_add(EPOCH_DAYS_FROM_CE)?) }
    }
}

impl Ret for NaiveDate {
    type Builder = Date32Builder;
    fn data_type() -> DataType {
        DataType::Date32
    }
    fn builder(rows: usize) -> Self::Builder {
        Date32Builder::with_capacity(rows)
    }
    fn push(builder: &mut Self::Builder, value: Self) {
        use chrono::Datelike;
        builder.append_value(value.num_days_from_ce() - EPOCH_DAYS_FROM_CE)
    }
    fn push_null(builder: &mut Self::Builder) {
        builder.append_null()
    }
}

impl<'a, T: Arg<'a>> Arg<'a> for Option<T> {
    type Column = T::Column;
    fn data_type() -> DataType {
        T::data_type()
    }
    fn column(array: &'a ArrayRef) -> Result<Self::Column> {
        T::column(array)
    }
    #[inline]
    fn get(column: &Self::Column, i: usize) -> Option<Self> {
        Some(T::get(column, i))
    }
}

impl<T: Ret> Ret for Option<T> {
    type Builder = T::Builder;
    fn data_type() -> DataType {
        T::data_type()
    }
    fn builder(rows: usize) -> Self::Builder {
        T::builder(rows)
    }
    #[inline]
    fn push(builder: &mut Self::Builder, value: Self) {
        match value {
            Some(v) => T::push(builder, v),
            None => T::push_null(builder),
        }
    }
    fn push_null(builder: &mut Self::Builder) {
        T::push_null(builder)
    }
}

/// The body of a generated `invoke`: arguments as arrays of `rows` rows.
pub fn arrays(args: &[ColumnarValue], rows: usize) -> Result<Vec<ArrayRef>> {
    args.iter().map(|a| a.to_array(rows)).collect()
}

/// Finishes a builder into a column.
pub fn finish<B: ArrayBuilder>(mut builder: B) -> ColumnarValue {
    ColumnarValue::Array(builder.finish())
}

/// A `#[kiln::udf]` as a DataFusion scalar function: a name, the parameter
/// types, the result type, and the generated loop.
pub struct RustUdf {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    invoke: fn(&[ColumnarValue], usize) -> Result<ColumnarValue>,
}

impl RustUdf {
    pub fn new(name: &'static str, params: Vec<DataType>, returns: DataType, invoke: fn(&[ColumnarValue], usize) -> Result<ColumnarValue>) -> Arc<ScalarUDF> {
        let signature = Signature::exact(params, Volatility::Immutable);
        Arc::new(ScalarUDF::new_from_impl(RustUdf { name, signature, returns, invoke }))
    }
}

impl std::fmt::Debug for RustUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustUdf").field("name", &self.name).field("returns", &self.returns).finish()
    }
}

impl PartialEq for RustUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.signature == other.signature && self.returns == other.returns
    }
}
impl Eq for RustUdf {}
impl std::hash::Hash for RustUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.returns.hash(state);
    }
}

impl ScalarUDFImpl for RustUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    /// A panic in the function's body fails the run with the function's name
    /// (exit 1), instead of aborting the process with a backtrace.
    fn invoke_with_args(&self, args: datafusion::logical_expr::ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (invoke, rows) = (self.invoke, args.number_rows);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| invoke(&args.args, rows))) {
            Ok(result) => result,
            Err(panic) => {
                let what = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                datafusion::common::exec_err!("#[kiln::udf] `{}` panicked on a batch of {rows} rows: {what}", self.name)
            }
        }
    }
}
