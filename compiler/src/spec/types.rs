//! Column type names (SPEC.md §2): `string`, `int64`, `decimal(10,2)`,
//! `timestamp(ms, UTC)`, `list<float32>`, each optionally followed by `not null`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};

/// The names a user may write, for "did you mean".
pub const TYPE_NAMES: &[&str] = &[
    "string", "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32",
    "float64", "double", "decimal(p,s)", "date", "timestamp", "binary", "list<T>",
];

/// A parsed column type.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    pub data_type: DataType,
    pub nullable: bool,
}

/// Parses a type name; the error says what was wrong.
pub fn parse(text: &str) -> Result<ColumnType, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let (body, nullable) = match lower.strip_suffix("not null") {
        Some(rest) if rest.ends_with(char::is_whitespace) => (rest.trim_end(), false),
        _ => (lower.as_str(), true),
    };
    // Type names are case-insensitive; a timezone keeps its case.
    Ok(ColumnType { data_type: parse_data_type(body, &t[..body.len()])?, nullable })
}

/// How deeply `list<…>` may nest (Spark and Arrow have no limit; a spec that
/// needs more than this is surely a mistake, and the parser recurses).
const MAX_NESTING: usize = 32;

fn parse_data_type(t: &str, original: &str) -> Result<DataType, String> {
    let (t, original) = (t.trim(), original.trim());
    if t.matches('<').count() > MAX_NESTING {
        return Err(format!("types may nest at most {MAX_NESTING} deep"));
    }
    let simple = match t {
        "string" | "utf8" | "text" | "varchar" => Some(DataType::Utf8),
        "bool" | "boolean" => Some(DataType::Boolean),
        "int8" => Some(DataType::Int8),
        "int16" => Some(DataType::Int16),
        "int32" | "int" => Some(DataType::Int32),
        "int64" | "bigint" | "long" => Some(DataType::Int64),
        "uint8" => Some(DataType::UInt8),
        "uint16" => Some(DataType::UInt16),
        "uint32" => Some(DataType::UInt32),
        "uint64" => Some(DataType::UInt64),
        "float32" | "float" => Some(DataType::Float32),
        "float64" | "double" => Some(DataType::Float64),
        "date" => Some(DataType::Date32),
        "timestamp" => Some(DataType::Timestamp(TimeUnit::Microsecond, None)),
        "binary" => Some(DataType::Binary),
        _ => None,
    };
    if let Some(dt) = simple {
        return Ok(dt);
    }
    if let Some(args) = t.strip_prefix("decimal").map(str::trim).and_then(|r| r.strip_prefix('(')).and_then(|r| r.strip_suffix(')')) {
        let parts: Vec<&str> = args.split(',').map(str::trim).collect();
        let (p, s) = match parts.as_slice() {
            [p, s] => (p.parse::<u8>().ok(), s.parse::<i8>().ok()),
            [p] => (p.parse::<u8>().ok(), Some(0)),
            _ => (None, None),
        };
        return match (p, s) {
            (Some(p @ 1..=38), Some(s)) if s >= 0 && (s as u8) <= p => Ok(DataType::Decimal128(p, s)),
            _ => Err(format!("`decimal({args})` needs a precision 1..=38 and a scale 0..=precision, e.g. decimal(10,2)")),
        };
    }
    if let Some(args) = original.get(9..).filter(|_| t.starts_with("timestamp")).map(str::trim).and_then(|r| r.strip_prefix('(')).and_then(|r| r.strip_suffix(')')) {
        let mut parts = args.splitn(2, ',').map(str::trim);
        let unit = match parts.next().unwrap_or("").to_ascii_lowercase().as_str() {
            "s" => TimeUnit::Second,
            "ms" => TimeUnit::Millisecond,
            "us" | "µs" => TimeUnit::Microsecond,
            "ns" => TimeUnit::Nanosecond,
            other => return Err(format!("unknown timestamp unit `{other}` (expected s, ms, us or ns)")),
        };
        let tz = parts.next().filter(|z| !z.is_empty()).map(Arc::from);
        return Ok(DataType::Timestamp(unit, tz));
    }
    if let (Some(inner), Some(inner_original)) = (t.strip_prefix("list<").and_then(|r| r.strip_suffix('>')), original.get(5..original.len().saturating_sub(1))) {
        let item = parse_data_type(inner, inner_original)?;
        return Ok(DataType::List(Arc::new(Field::new("item", item, true))));
    }
    Err(format!("unknown type `{t}`"))
}

/// The spec's name of a type, for messages.
pub fn display(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Date32 => "date".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Binary => "binary".into(),
        DataType::Timestamp(TimeUnit::Microsecond, None) => "timestamp".into(),
        DataType::List(f) => format!("list<{}>", display(f.data_type())),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse("string").unwrap(), ColumnType { data_type: DataType::Utf8, nullable: true });
        assert_eq!(parse("int64 not null").unwrap(), ColumnType { data_type: DataType::Int64, nullable: false });
        assert_eq!(parse("decimal(10, 2)").unwrap().data_type, DataType::Decimal128(10, 2));
        assert_eq!(parse("timestamp(ms, UTC)").unwrap().data_type, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())));
        assert_eq!(
            parse("list<float32>").unwrap().data_type,
            DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
        );
        assert!(parse("strng").is_err());
        assert!(parse("decimal(50,2)").is_err());
        assert_eq!(display(&parse("list<decimal(5,1)>").unwrap().data_type), "list<decimal(5,1)>");
    }
}
