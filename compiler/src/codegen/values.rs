//! Tokens for Arrow types and scalar values.

use datafusion::arrow::datatypes::{DataType, IntervalUnit, TimeUnit};
use datafusion::common::ScalarValue;
use proc_macro2::TokenStream;
use quote::quote;

use super::Unsupported;

pub fn data_type(dt: &DataType) -> Result<TokenStream, Unsupported> {
    Ok(match dt {
        DataType::Null => quote!(DataType::Null),
        DataType::Boolean => quote!(DataType::Boolean),
        DataType::Int8 => quote!(DataType::Int8),
        DataType::Int16 => quote!(DataType::Int16),
        DataType::Int32 => quote!(DataType::Int32),
        DataType::Int64 => quote!(DataType::Int64),
        DataType::UInt8 => quote!(DataType::UInt8),
        DataType::UInt16 => quote!(DataType::UInt16),
        DataType::UInt32 => quote!(DataType::UInt32),
        DataType::UInt64 => quote!(DataType::UInt64),
        DataType::Float32 => quote!(DataType::Float32),
        DataType::Float64 => quote!(DataType::Float64),
        DataType::Utf8 => quote!(DataType::Utf8),
        DataType::LargeUtf8 => quote!(DataType::LargeUtf8),
        DataType::Utf8View => quote!(DataType::Utf8View),
        DataType::Binary => quote!(DataType::Binary),
        DataType::LargeBinary => quote!(DataType::LargeBinary),
        DataType::BinaryView => quote!(DataType::BinaryView),
        DataType::Date32 => quote!(DataType::Date32),
        DataType::Date64 => quote!(DataType::Date64),
        DataType::Decimal128(p, s) => quote!(DataType::Decimal128(#p, #s)),
        DataType::Timestamp(unit, tz) => {
            let unit = time_unit(unit);
            match tz {
                Some(tz) => {
                    let tz = tz.as_ref();
                    quote!(DataType::Timestamp(#unit, Some(#tz.into())))
                }
                None => quote!(DataType::Timestamp(#unit, None)),
            }
        }
        DataType::List(f) => {
            let inner = data_type(f.data_type())?;
            let name = f.name();
            let nullable = f.is_nullable();
            quote!(DataType::List(std::sync::Arc::new(field(#name, #inner, #nullable))))
        }
        DataType::LargeList(f) => {
            let inner = data_type(f.data_type())?;
            let name = f.name();
            let nullable = f.is_nullable();
            quote!(DataType::LargeList(std::sync::Arc::new(field(#name, #inner, #nullable))))
        }
        DataType::FixedSizeList(f, n) => {
            let inner = data_type(f.data_type())?;
            let name = f.name();
            let nullable = f.is_nullable();
            quote!(DataType::FixedSizeList(std::sync::Arc::new(field(#name, #inner, #nullable)), #n))
        }
        DataType::Struct(fields) => {
            let fields = fields
                .iter()
                .map(|f| {
                    let (name, nullable, inner) = (f.name(), f.is_nullable(), data_type(f.data_type())?);
                    Ok(quote!(field(#name, #inner, #nullable)))
                })
                .collect::<Result<Vec<_>, Unsupported>>()?;
            quote!(DataType::Struct(Vec::from([#(#fields),*]).into()))
        }
        DataType::Time32(unit) => {
            let unit = time_unit(unit);
            quote!(DataType::Time32(#unit))
        }
        DataType::Time64(unit) => {
            let unit = time_unit(unit);
            quote!(DataType::Time64(#unit))
        }
        DataType::Duration(unit) => {
            let unit = time_unit(unit);
            quote!(DataType::Duration(#unit))
        }
        DataType::Interval(unit) => {
            let unit = match unit {
                IntervalUnit::YearMonth => quote!(YearMonth),
                IntervalUnit::DayTime => quote!(DayTime),
                IntervalUnit::MonthDayNano => quote!(MonthDayNano),
            };
            quote!(DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::#unit))
        }
        other => return Err(Unsupported(format!("the type {other}"))),
    })
}

fn time_unit(unit: &TimeUnit) -> TokenStream {
    match unit {
        TimeUnit::Second => quote!(TimeUnit::Second),
        TimeUnit::Millisecond => quote!(TimeUnit::Millisecond),
        TimeUnit::Microsecond => quote!(TimeUnit::Microsecond),
        TimeUnit::Nanosecond => quote!(TimeUnit::Nanosecond),
    }
}

/// A `ScalarValue` expression.
pub fn scalar(v: &ScalarValue) -> Result<TokenStream, Unsupported> {
    macro_rules! opt {
        ($variant:ident, $x:expr) => {
            match $x {
                Some(x) => quote!(ScalarValue::$variant(Some(#x))),
                None => quote!(ScalarValue::$variant(None)),
            }
        };
    }
    Ok(match v {
        ScalarValue::Null => quote!(ScalarValue::Null),
        ScalarValue::Boolean(x) => opt!(Boolean, x),
        ScalarValue::Int8(x) => opt!(Int8, x),
        ScalarValue::Int16(x) => opt!(Int16, x),
        ScalarValue::Int32(x) => opt!(Int32, x),
        ScalarValue::Int64(x) => opt!(Int64, x),
        ScalarValue::UInt8(x) => opt!(UInt8, x),
        ScalarValue::UInt16(x) => opt!(UInt16, x),
        ScalarValue::UInt32(x) => opt!(UInt32, x),
        ScalarValue::UInt64(x) => opt!(UInt64, x),
        ScalarValue::Float32(x) => opt!(Float32, x.map(float32)),
        ScalarValue::Float64(x) => opt!(Float64, x.map(float64)),
        ScalarValue::Date32(x) => opt!(Date32, x),
        ScalarValue::Utf8(x) => opt!(Utf8, x.as_ref().map(|s| quote!(#s.to_string()))),
        ScalarValue::Decimal128(x, p, s) => match x {
            Some(x) => quote!(ScalarValue::Decimal128(Some(#x), #p, #s)),
            None => quote!(ScalarValue::Decimal128(None, #p, #s)),
        },
        ScalarValue::Utf8View(x) => opt!(Utf8View, x.as_ref().map(|s| quote!(#s.to_string()))),
        ScalarValue::LargeUtf8(x) => opt!(LargeUtf8, x.as_ref().map(|s| quote!(#s.to_string()))),
        ScalarValue::Binary(x) => opt!(Binary, x.as_ref().map(|b| quote!(Vec::from([#(#b),*])))),
        ScalarValue::LargeBinary(x) => opt!(LargeBinary, x.as_ref().map(|b| quote!(Vec::from([#(#b),*])))),
        ScalarValue::BinaryView(x) => opt!(BinaryView, x.as_ref().map(|b| quote!(Vec::from([#(#b),*])))),
        ScalarValue::Date64(x) => opt!(Date64, x),
        ScalarValue::Time32Second(x) => opt!(Time32Second, x),
        ScalarValue::Time32Millisecond(x) => opt!(Time32Millisecond, x),
        ScalarValue::Time64Microsecond(x) => opt!(Time64Microsecond, x),
        ScalarValue::Time64Nanosecond(x) => opt!(Time64Nanosecond, x),
        ScalarValue::DurationSecond(x) => opt!(DurationSecond, x),
        ScalarValue::DurationMillisecond(x) => opt!(DurationMillisecond, x),
        ScalarValue::DurationMicrosecond(x) => opt!(DurationMicrosecond, x),
        ScalarValue::DurationNanosecond(x) => opt!(DurationNanosecond, x),
        ScalarValue::IntervalYearMonth(x) => opt!(IntervalYearMonth, x),
        ScalarValue::IntervalDayTime(x) => opt!(
            IntervalDayTime,
            x.map(|v| {
                let (days, ms) = (v.days, v.milliseconds);
                quote!(datafusion::arrow::datatypes::IntervalDayTime::new(#days, #ms))
            })
        ),
        ScalarValue::IntervalMonthDayNano(x) => opt!(
            IntervalMonthDayNano,
            x.map(|v| {
                let (months, days, nanos) = (v.months, v.days, v.nanoseconds);
                quote!(datafusion::arrow::datatypes::IntervalMonthDayNano::new(#months, #days, #nanos))
            })
        ),
        ScalarValue::TimestampSecond(x, tz) => timestamp(quote!(TimestampSecond), x, tz),
        ScalarValue::TimestampMillisecond(x, tz) => timestamp(quote!(TimestampMillisecond), x, tz),
        ScalarValue::TimestampMicrosecond(x, tz) => timestamp(quote!(TimestampMicrosecond), x, tz),
        ScalarValue::TimestampNanosecond(x, tz) => timestamp(quote!(TimestampNanosecond), x, tz),
        other => return Err(Unsupported(format!("the literal {other:?}"))),
    })
}

fn timestamp(variant: TokenStream, x: &Option<i64>, tz: &Option<std::sync::Arc<str>>) -> TokenStream {
    let x = match x {
        Some(x) => quote!(Some(#x)),
        None => quote!(None),
    };
    let tz = match tz {
        Some(tz) => {
            let tz = tz.as_ref();
            quote!(Some(#tz.into()))
        }
        None => quote!(None),
    };
    quote!(ScalarValue::#variant(#x, #tz))
}

fn float64(x: f64) -> TokenStream {
    if x.is_finite() {
        let lit = proc_macro2::Literal::f64_suffixed(x);
        quote!(#lit)
    } else if x.is_nan() {
        quote!(f64::NAN)
    } else if x > 0.0 {
        quote!(f64::INFINITY)
    } else {
        quote!(f64::NEG_INFINITY)
    }
}

fn float32(x: f32) -> TokenStream {
    if x.is_finite() {
        let lit = proc_macro2::Literal::f32_suffixed(x);
        quote!(#lit)
    } else if x.is_nan() {
        quote!(f32::NAN)
    } else if x > 0.0 {
        quote!(f32::INFINITY)
    } else {
        quote!(f32::NEG_INFINITY)
    }
}

/// A window frame: `WindowFrame::new_bounds(units, start, end)`.
pub fn window_frame(f: &datafusion::logical_expr::WindowFrame) -> Result<TokenStream, Unsupported> {
    use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
    let units = match f.units {
        WindowFrameUnits::Rows => quote!(WindowFrameUnits::Rows),
        WindowFrameUnits::Range => quote!(WindowFrameUnits::Range),
        WindowFrameUnits::Groups => quote!(WindowFrameUnits::Groups),
    };
    let bound = |b: &WindowFrameBound| -> Result<TokenStream, Unsupported> {
        Ok(match b {
            WindowFrameBound::CurrentRow => quote!(WindowFrameBound::CurrentRow),
            WindowFrameBound::Preceding(v) => {
                let v = scalar(v)?;
                quote!(WindowFrameBound::Preceding(#v))
            }
            WindowFrameBound::Following(v) => {
                let v = scalar(v)?;
                quote!(WindowFrameBound::Following(#v))
            }
        })
    };
    let (start, end) = (bound(&f.start_bound)?, bound(&f.end_bound)?);
    Ok(quote!(WindowFrame::new_bounds(#units, #start, #end)))
}
