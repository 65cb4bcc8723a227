//! `[sources.NAME]`.

use toml::de::DeValue;

use super::reader::{Table, literal};
use super::{Literal, Sp, one_of};
use crate::diag::{Diagnostic, Diags};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Csv,
    Parquet,
    Inline,
}

#[derive(Debug, Clone)]
pub struct SourceDecl {
    pub name: Sp<String>,
    pub format: Sp<SourceFormat>,
    pub path: Option<Sp<String>>,
    /// Column name → type name, in file order.
    pub schema: Option<Sp<Vec<(Sp<String>, Sp<String>)>>>,
    pub header: Option<Sp<bool>>,
    pub delimiter: Option<Sp<String>>,
    pub quote: Option<Sp<String>>,
    pub null_value: Option<Sp<String>>,
    /// Inline rows: column → literal, in the order written.
    pub rows: Vec<Sp<Vec<(Sp<String>, Sp<Literal>)>>>,
}

const FORMATS: &[&str] = &["csv", "parquet", "inline"];
const LATER_FORMATS: &[&str] = &["json", "avro", "orc", "delta", "postgres", "kafka"];

pub(super) fn parse(name: Sp<String>, t: &Table, d: &mut Diags) -> Option<SourceDecl> {
    let format_text = t.req_str("format", d, Some("sources need a format: csv, parquet or inline"))?;
    let format = match format_text.as_str() {
        "csv" => SourceFormat::Csv,
        "parquet" => SourceFormat::Parquet,
        "inline" => SourceFormat::Inline,
        other if LATER_FORMATS.contains(&other) => {
            d.push(
                Diagnostic::error("kiln::unsupported", format_text.span.clone(), format!("source format `{other}` is not supported by this version of kiln yet"))
                    .label("not supported yet")
                    .help(format!("supported now: {}", FORMATS.join(", "))),
            );
            return None;
        }
        _ => {
            one_of(&format_text, FORMATS, "source format", d);
            return None;
        }
    };
    let mut decl = SourceDecl {
        name,
        format: Sp::new(format, format_text.span.clone()),
        path: None,
        schema: t.str_map("schema", d),
        header: None,
        delimiter: None,
        quote: None,
        null_value: None,
        rows: Vec::new(),
    };
    match format {
        SourceFormat::Csv | SourceFormat::Parquet => {
            decl.path = t.req_str("path", d, Some("a file, a directory of files, or a glob"));
        }
        SourceFormat::Inline => {
            match t.get("rows") {
                Some(v) => match v.get_ref() {
                    DeValue::Array(items) => {
                        for item in items {
                            match item.get_ref() {
                                DeValue::Table(row) => {
                                    let cells = row
                                        .iter()
                                        .filter_map(|(k, v)| {
                                            literal(v, &t.what, k.get_ref(), d).map(|l| (Sp::new(k.get_ref().to_string(), k.span()), l))
                                        })
                                        .collect();
                                    decl.rows.push(Sp::new(cells, item.span()));
                                }
                                _ => d.push(
                                    Diagnostic::error("kiln::wrong-value-type", item.span(), format!("{}: each row must be a table", t.what))
                                        .label("write rows as { column = value, ... }"),
                                ),
                            }
                        }
                    }
                    _ => d.push(
                        Diagnostic::error("kiln::wrong-value-type", v.span(), format!("{}: `rows` must be an array of tables", t.what))
                            .label("expected rows = [ { ... }, ... ]"),
                    ),
                },
                None => {
                    t.req_str("rows", d, Some("rows = [ { id = 1, name = \"a\" } ]"));
                }
            }
        }
    }
    if format == SourceFormat::Csv {
        decl.header = t.bool("header", d);
        decl.delimiter = single_byte(t.str("delimiter", d), "delimiter", d);
        decl.quote = single_byte(t.str("quote", d), "quote", d);
        decl.null_value = t.str("null_value", d);
        t.unsupported(&["infer_schema", "on_error"], d);
    }
    t.unsupported(&["partitions", "size"], d);
    if format != SourceFormat::Inline {
        // `rows` is a statistics hint for file sources (used by the join planner, issue 4).
        t.unsupported(&["rows"], d);
    }
    t.finish(d);
    Some(decl)
}

fn single_byte(v: Option<Sp<String>>, key: &str, d: &mut Diags) -> Option<Sp<String>> {
    let v = v?;
    let text = match v.as_str() {
        "\\t" => "\t",
        s => s,
    };
    if text.len() != 1 {
        d.push(
            Diagnostic::error("kiln::bad-value", v.span.clone(), format!("`{key}` must be one ASCII character"))
                .label(format!("this is {} bytes", text.len())),
        );
        return None;
    }
    Some(Sp::new(text.to_string(), v.span))
}
