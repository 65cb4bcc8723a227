//! `[transforms.NAME]`: one operation each, chosen by `type`.

use super::reader::Table;
use super::{Literal, Sp, one_of};
use crate::diag::{Diagnostic, Diags};

#[derive(Debug, Clone)]
pub struct TransformDecl {
    pub name: Sp<String>,
    /// The `type` value.
    pub kind: Sp<String>,
    pub input: Sp<String>,
    pub body: TransformBody,
}

type Pairs = Vec<(Sp<String>, Sp<String>)>;

#[derive(Debug, Clone)]
pub enum TransformBody {
    Filter { predicate: Sp<String> },
    Select { columns: Vec<Sp<String>> },
    WithColumns { columns: Pairs },
    Drop { columns: Vec<Sp<String>> },
    Rename { columns: Pairs },
    /// Column → type name.
    Cast { columns: Pairs },
    FillNull { values: Vec<(Sp<String>, Sp<Literal>)> },
    Dedupe { keys: Option<Vec<Sp<String>>>, keep: Option<Sp<String>>, order_by: Vec<Sp<String>> },
    Aggregate { group_by: Vec<Sp<String>>, aggregates: Pairs, having: Option<Sp<String>> },
}

const TYPES: &[&str] = &["filter", "select", "with_columns", "drop", "rename", "cast", "fill_null", "dedupe", "aggregate"];
const LATER_TYPES: &[&str] =
    &["window", "join", "union", "sort", "limit", "repartition", "coalesce", "sql", "expect", "predict"];

pub(super) fn parse(name: Sp<String>, t: &Table, d: &mut Diags) -> Option<TransformDecl> {
    let kind = t.req_str("type", d, Some(&format!("one of: {}", TYPES.join(", "))))?;
    if LATER_TYPES.contains(&kind.as_str()) {
        d.push(
            Diagnostic::error("kiln::unsupported", kind.span.clone(), format!("transform type `{}` is not supported by this version of kiln yet", kind.value))
                .label("not supported yet"),
        );
        return None;
    }
    if !one_of(&kind, TYPES, "transform type", d) {
        return None;
    }
    let input = t.req_str("input", d, Some("the name of the source or transform this one reads"));
    let missing = |key: &'static str, d: &mut Diags| {
        t.req_str(key, d, None);
    };
    let body = match kind.as_str() {
        "filter" => t.req_str("predicate", d, Some("a SQL expression, e.g. predicate = \"amount > 0\"")).map(|predicate| TransformBody::Filter { predicate }),
        "select" => non_empty(t.str_list("columns", d), t, "columns", d).map(|columns| TransformBody::Select { columns }),
        "with_columns" => map_or_missing(t.str_map("columns", d), t, "columns", d).map(|columns| TransformBody::WithColumns { columns }),
        "drop" => non_empty(t.str_list("columns", d), t, "columns", d).map(|columns| TransformBody::Drop { columns }),
        "rename" => map_or_missing(t.str_map("columns", d), t, "columns", d).map(|columns| TransformBody::Rename { columns }),
        "cast" => map_or_missing(t.str_map("columns", d), t, "columns", d).map(|columns| TransformBody::Cast { columns }),
        "fill_null" => match t.literal_map("values", d) {
            Some(v) => Some(TransformBody::FillNull { values: v.value }),
            None => {
                missing("values", d);
                None
            }
        },
        "dedupe" => {
            let keys = t.str_list("keys", d).map(|k| k.value);
            let keep = t.str("keep", d).filter(|k| one_of(k, &["any", "first", "last"], "`keep`", d));
            let order_by = t.str_list("order_by", d).map(|o| o.value).unwrap_or_default();
            if let Some(k) = &keep {
                if k.as_str() != "any" && order_by.is_empty() {
                    d.push(
                        Diagnostic::error("kiln::missing-key", k.span.clone(), format!("{}: keep = \"{}\" needs `order_by`", t.what, k.value))
                            .label("first or last in which order?")
                            .help("add order_by = [\"ts DESC\"], or use keep = \"any\""),
                    );
                }
            }
            Some(TransformBody::Dedupe { keys, keep, order_by })
        }
        "aggregate" => {
            let group_by = t.str_list("group_by", d).map(|g| g.value).unwrap_or_default();
            let aggregates = map_or_missing(t.str_map("aggregates", d), t, "aggregates", d);
            let having = t.str("having", d);
            aggregates.map(|aggregates| TransformBody::Aggregate { group_by, aggregates, having })
        }
        _ => None,
    };
    t.unsupported(&["checkpoint"], d);
    t.finish(d);
    Some(TransformDecl { name, kind, input: input?, body: body? })
}

fn non_empty(v: Option<Sp<Vec<Sp<String>>>>, t: &Table, key: &'static str, d: &mut Diags) -> Option<Vec<Sp<String>>> {
    match v {
        Some(list) if list.value.is_empty() => {
            d.push(Diagnostic::error("kiln::bad-value", list.span, format!("{}: `{key}` is empty", t.what)).label("name at least one column"));
            None
        }
        Some(list) => Some(list.value),
        None => {
            t.req_str(key, d, None);
            None
        }
    }
}

fn map_or_missing(v: Option<Sp<Pairs>>, t: &Table, key: &'static str, d: &mut Diags) -> Option<Pairs> {
    match v {
        Some(m) if m.value.is_empty() => {
            d.push(Diagnostic::error("kiln::bad-value", m.span, format!("{}: `{key}` is empty", t.what)).label("give at least one entry"));
            None
        }
        Some(m) => Some(m.value),
        None => {
            if t.table.contains_key(key) {
                return None; // wrong kind of value, already reported
            }
            t.req_str(key, d, Some(&format!("{key}.NAME = \"...\"")));
            None
        }
    }
}
