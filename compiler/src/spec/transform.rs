//! `[transforms.NAME]`: one operation each, chosen by `type`.

use super::reader::Table;
use super::{Literal, Sp, one_of};
use crate::diag::{Diagnostic, Diags};

#[derive(Debug, Clone)]
pub struct TransformDecl {
    pub name: Sp<String>,
    /// The `type` value.
    pub kind: Sp<String>,
    /// The nodes read, in order: `input`, or `left` and `right`, or `inputs`.
    pub inputs: Vec<Sp<String>>,
    pub body: TransformBody,
    /// `checkpoint = true`: the result is written to `[runtime] checkpoint_dir` and reused by
    /// reruns while its inputs are unchanged.
    pub checkpoint: Option<Sp<bool>>,
}

impl TransformDecl {
    /// The first (for most types, the only) input.
    pub fn input(&self) -> &Sp<String> {
        &self.inputs[0]
    }
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
    Window { partition_by: Vec<Sp<String>>, order_by: Vec<Sp<String>>, frame: Option<Sp<String>>, columns: Pairs },
    /// A `window` with `time_column` (SPEC §8): durations as written, checked when lowered.
    EventWindow { time_column: Sp<String>, size: Sp<String>, slide: Option<Sp<String>>, watermark: Option<Sp<String>>, output_mode: Option<Sp<String>>, partition_by: Vec<Sp<String>>, columns: Pairs },
    /// `how` and `strategy` already checked against their allowed values.
    Join { how: Sp<String>, on: Vec<Sp<String>>, strategy: Option<Sp<String>>, salt: Option<SaltDecl> },
    Union { by_name: bool, distinct: bool },
    Sort { order_by: Vec<Sp<String>> },
    Limit { n: Sp<i64> },
    Repartition { partitions: Sp<i64>, by: Vec<Sp<String>> },
    Coalesce { partitions: Sp<i64> },
    Sql { query: Sp<String> },
    Expect { rules: Vec<RuleDecl> },
    /// `features` is a list of columns, or (a single string) one list column.
    Predict { model: Sp<String>, features: Sp<Vec<Sp<String>>>, list: bool, output: Sp<String>, batch_size: Option<Sp<i64>> },
}

/// `salt = { buckets = 16, hot_keys = [...], detect = true, threshold = 0.1 }`.
#[derive(Debug, Clone)]
pub struct SaltDecl {
    pub span: std::ops::Range<usize>,
    pub buckets: Option<Sp<i64>>,
    pub hot_keys: Vec<Sp<Literal>>,
    pub detect: Option<Sp<bool>>,
    pub threshold: Option<Sp<Literal>>,
}

/// `rules.NAME = { KIND = ..., on_fail = "..." }`.
#[derive(Debug, Clone)]
pub struct RuleDecl {
    pub name: Sp<String>,
    /// Checked: warn, drop, quarantine or fail.
    pub on_fail: Option<Sp<String>>,
    pub kind: RuleDeclKind,
    /// The rule's table (for errors about the rule as a whole).
    pub span: std::ops::Range<usize>,
}

#[derive(Debug, Clone)]
pub enum RuleDeclKind {
    Check(Sp<String>),
    NotNull(Vec<Sp<String>>),
    Unique(Vec<Sp<String>>),
    AcceptedValues { column: Sp<String>, values: Vec<Sp<Literal>> },
    Range { column: Sp<String>, min: Option<Sp<Literal>>, max: Option<Sp<Literal>> },
    Regex { column: Sp<String>, pattern: Sp<String> },
    RowCount { min: Option<Sp<i64>>, max: Option<Sp<i64>> },
    ExistsIn { node: Sp<String>, keys: Vec<Sp<String>>, columns: Option<Vec<Sp<String>>> },
}

pub const RULE_KINDS: &[&str] = &["check", "not_null", "unique", "accepted_values", "range", "regex", "row_count", "exists_in"];
pub const ON_FAIL: &[&str] = &["warn", "drop", "quarantine", "fail"];

const TYPES: &[&str] = &[
    "filter", "select", "with_columns", "drop", "rename", "cast", "fill_null", "dedupe", "aggregate", "window", "join",
    "union", "sort", "limit", "repartition", "coalesce", "sql", "expect", "predict",
];
pub const JOIN_HOWS: &[&str] = &["inner", "left", "right", "full", "semi", "anti", "cross"];
pub const JOIN_STRATEGIES: &[&str] = &["auto", "broadcast", "shuffle", "salted"];

pub(super) fn parse(name: Sp<String>, t: &Table, d: &mut Diags) -> Option<TransformDecl> {
    let kind = t.req_str("type", d, Some(&format!("one of: {}", TYPES.join(", "))))?;
    if !one_of(&kind, TYPES, "transform type", d) {
        return None;
    }
    let inputs: Option<Vec<Sp<String>>> = match kind.as_str() {
        "join" => {
            let left = t.req_str("left", d, Some("the node on the left side of the join"));
            let right = t.req_str("right", d, Some("the node on the right side of the join"));
            Some(vec![left?, right?])
        }
        "union" | "sql" => match t.str_list("inputs", d) {
            Some(list) if kind.as_str() == "union" && list.value.len() < 2 => {
                d.push(Diagnostic::error("kiln::bad-value", list.span, format!("{}: a union needs at least two `inputs`", t.what)).label("name two or more nodes"));
                None
            }
            Some(list) if list.value.is_empty() => {
                d.push(Diagnostic::error("kiln::bad-value", list.span, format!("{}: `inputs` is empty", t.what)).label("name the nodes the query reads"));
                None
            }
            Some(list) => Some(list.value),
            None => {
                t.req_str("inputs", d, Some("inputs = [\"a\", \"b\"]"));
                None
            }
        },
        _ => t.req_str("input", d, Some("the name of the source or transform this one reads")).map(|i| vec![i]),
    };
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
        "window" if t.get("time_column").is_some() => {
            let time_column = t.str("time_column", d)?;
            let partition_by = t.str_list("partition_by", d).map(|g| g.value).unwrap_or_default();
            let watermark = t.str("watermark", d);
            let output_mode = t.str("output_mode", d);
            if let Some(m) = &output_mode {
                one_of(m, &["append", "update"], "output mode", d);
            }
            let (size, slide) = match (t.str("tumble", d), t.table("hop", d)) {
                (Some(size), None) => (size, None),
                (None, Some(hop)) => {
                    let (size, slide) = (hop.req_str("size", d, Some("hop = { size = \"10m\", slide = \"5m\" }")), hop.req_str("slide", d, Some("hop = { size = \"10m\", slide = \"5m\" }")));
                    hop.finish(d);
                    (size?, Some(slide?))
                }
                (Some(_), Some(_)) => {
                    d.push(Diagnostic::error("kiln::bad-value", t.key_span("hop").unwrap_or(kind.span.clone()), format!("{}: a window is either `tumble` or `hop`", t.what)).label("one or the other"));
                    return None;
                }
                (None, None) => {
                    d.push(
                        Diagnostic::error("kiln::missing-key", kind.span.clone(), format!("{}: a window with `time_column` needs `tumble` or `hop`", t.what))
                            .label("which windows?")
                            .help("tumble = \"5m\", or hop = { size = \"10m\", slide = \"5m\" }"),
                    );
                    return None;
                }
            };
            for key in ["order_by", "frame"] {
                if let Some(span) = t.get(key).and_then(|_| t.key_span(key)) {
                    d.push(
                        Diagnostic::error("kiln::bad-value", span, format!("{}: an event-time window (with `time_column`) takes no `{key}`", t.what))
                            .label("not with time_column")
                            .help("rows are grouped by the windows their time falls in; order_by and frame belong to analytic windows"),
                    );
                }
            }
            map_or_missing(t.str_map("columns", d), t, "columns", d)
                .map(|columns| TransformBody::EventWindow { time_column, size, slide, watermark, output_mode, partition_by, columns })
        }
        "window" => {
            let partition_by = t.str_list("partition_by", d).map(|g| g.value).unwrap_or_default();
            let order_by = t.str_list("order_by", d).map(|g| g.value).unwrap_or_default();
            let frame = t.str("frame", d);
            map_or_missing(t.str_map("columns", d), t, "columns", d)
                .map(|columns| TransformBody::Window { partition_by, order_by, frame, columns })
        }
        "join" => {
            let how = t.str("how", d).unwrap_or_else(|| Sp::new("inner".to_string(), kind.span.clone()));
            let how_ok = one_of(&how, JOIN_HOWS, "join type", d);
            let strategy = t.str("strategy", d);
            let strategy_ok = strategy.as_ref().is_none_or(|s| one_of(s, JOIN_STRATEGIES, "join strategy", d));
            let on = t.str_list("on", d);
            let on = match (how.as_str(), on) {
                ("cross", Some(list)) => {
                    d.push(Diagnostic::error("kiln::bad-value", list.span, format!("{}: a cross join has no `on`", t.what)).label("remove this, or choose another `how`"));
                    None
                }
                ("cross", None) => Some(Vec::new()),
                (_, Some(list)) if list.value.is_empty() => {
                    d.push(Diagnostic::error("kiln::bad-value", list.span, format!("{}: `on` is empty", t.what)).label("name the key columns").help("for every pair of rows, use how = \"cross\""));
                    None
                }
                (_, Some(list)) => Some(list.value),
                (_, None) => {
                    t.req_str("on", d, Some("on = [\"customer_id\"] or on = [\"orders.cust = customers.id\"]"));
                    None
                }
            };
            let salt = t.table("salt", d).map(|st| {
                let buckets = st.int("buckets", d);
                if let Some(b) = buckets.as_ref().filter(|b| b.value > MAX_PARTITIONS) {
                    d.push(Diagnostic::error("kiln::bad-value", b.span.clone(), format!("{}: `salt.buckets` must be at most {MAX_PARTITIONS}", t.what)).label("too large"));
                }
                if let Some(b) = buckets.as_ref().filter(|b| b.value < 1) {
                    d.push(Diagnostic::error("kiln::bad-value", b.span.clone(), format!("{}: `salt.buckets` must be at least 1", t.what)).label("no bucket to spread hot keys over"));
                }
                let hot_keys = match st.get("hot_keys").map(|v| (v, v.get_ref())) {
                    Some((_, toml::de::DeValue::Array(items))) => items.iter().filter_map(|i| super::reader::literal(i, &st.what, "hot_keys", d)).collect(),
                    Some((v, _)) => {
                        d.push(Diagnostic::error("kiln::wrong-value-type", v.span(), format!("{}: `hot_keys` must be a list of key values", st.what)).label("expected [ ... ]"));
                        Vec::new()
                    }
                    None => Vec::new(),
                };
                let detect = st.bool("detect", d);
                let threshold = st.get("threshold").and_then(|v| super::reader::literal(v, &st.what, "threshold", d));
                st.finish(d);
                SaltDecl { span: st.span.clone(), buckets, hot_keys, detect, threshold }
            });
            match (how_ok && strategy_ok, on) {
                (true, Some(on)) => Some(TransformBody::Join { how, on, strategy, salt }),
                _ => None,
            }
        }
        "union" => {
            let by_name = t.bool("by_name", d).is_none_or(|b| b.value);
            let distinct = t.bool("distinct", d).is_some_and(|b| b.value);
            Some(TransformBody::Union { by_name, distinct })
        }
        "sort" => non_empty(t.str_list("order_by", d), t, "order_by", d).map(|order_by| TransformBody::Sort { order_by }),
        "limit" => count(t, "n", 0, d).map(|n| TransformBody::Limit { n }),
        "repartition" => {
            let by = t.str_list("by", d).map(|b| b.value).unwrap_or_default();
            // `by` alone (PySpark's repartition("col")): the session's target_partitions, written 0.
            if !by.is_empty() && !t.table.contains_key("partitions") {
                Some(TransformBody::Repartition { partitions: Sp::new(0, t.span.clone()), by })
            } else {
                count(t, "partitions", 1, d).map(|partitions| TransformBody::Repartition { partitions, by })
            }
        }
        "coalesce" => count(t, "partitions", 1, d).map(|partitions| TransformBody::Coalesce { partitions }),
        "sql" => t.req_str("query", d, Some("query = \"SELECT ... FROM input_name\"")).map(|query| TransformBody::Sql { query }),
        "expect" => match t.table("rules", d) {
            Some(rules) => {
                let rules: Vec<RuleDecl> = super::each_table(&rules, d, "rule").into_iter().filter_map(|(name, rt)| rule(name, &rt, d)).collect();
                Some(TransformBody::Expect { rules })
            }
            None => {
                t.req_str("rules", d, Some("rules.positive = { check = \"amount > 0\", on_fail = \"drop\" }"));
                None
            }
        },
        "predict" => {
            let model = t.req_str("model", d, Some("the name of a [models.NAME] table"));
            let list = t.table.get("features").is_some_and(|v| matches!(v.get_ref(), toml::de::DeValue::String(_)));
            let features = match t.str_list("features", d) {
                Some(f) if f.value.is_empty() => {
                    d.push(Diagnostic::error("kiln::bad-value", f.span, format!("{}: `features` is empty", t.what)).label("name the feature columns, in the model's input order"));
                    None
                }
                Some(f) => Some(f),
                None => {
                    t.req_str("features", d, Some("features = [\"age\", \"income\"], or one list<float32> column: features = \"embedding\""));
                    None
                }
            };
            let output = t.str("output", d).unwrap_or_else(|| Sp::new("prediction".to_string(), kind.span.clone()));
            let batch_size = t.int("batch_size", d).filter(|b| {
                let ok = b.value >= 1;
                if !ok {
                    d.push(Diagnostic::error("kiln::bad-value", b.span.clone(), format!("{}: `batch_size` must be at least 1", t.what)).label("rows per model call"));
                }
                ok
            });
            match (model, features) {
                (Some(model), Some(features)) => Some(TransformBody::Predict { model, features, list, output, batch_size }),
                _ => None,
            }
        }
        _ => None,
    };
    let checkpoint = t.bool("checkpoint", d);
    t.finish(d);
    let mut inputs = inputs?;
    let body = body?;
    // Nodes that rules look keys up in are inputs too (dependency order, planning).
    if let TransformBody::Expect { rules } = &body {
        for r in rules {
            if let RuleDeclKind::ExistsIn { node, .. } = &r.kind {
                if !inputs.iter().any(|i| i.value == node.value) {
                    inputs.push(node.clone());
                }
            }
        }
    }
    Some(TransformDecl { name, kind, inputs, body, checkpoint })
}

fn rule(name: Sp<String>, t: &Table, d: &mut Diags) -> Option<RuleDecl> {
    let on_fail = t.str("on_fail", d).filter(|o| one_of(o, ON_FAIL, "`on_fail`", d));
    let present: Vec<&str> = RULE_KINDS.iter().copied().filter(|k| t.table.contains_key(*k)).collect();
    if present.len() != 1 {
        let msg = if present.is_empty() { "says nothing to check".to_string() } else { format!("has {} kinds of check ({})", present.len(), present.join(", ")) };
        d.push(
            Diagnostic::error("kiln::bad-rule", name.span.clone(), format!("rule `{}` {msg}; give exactly one of: {}", name.value, RULE_KINDS.join(", ")))
                .label("one kind of check per rule")
                .help("e.g. rules.positive = { check = \"amount > 0\", on_fail = \"drop\" }"),
        );
        // Every key a rule may hold counts as known: only truly unknown keys get a second error.
        for k in RULE_KINDS.iter().chain(&["column", "keys", "columns"]) {
            let _ = t.get(k);
        }
        t.finish(d);
        return None;
    }
    let column = |d: &mut Diags| t.req_str("column", d, Some("the column this rule checks"));
    let literals = |key: &'static str, d: &mut Diags| -> Vec<Sp<Literal>> {
        match t.get(key).map(|v| (v, v.get_ref())) {
            Some((_, toml::de::DeValue::Array(items))) => items.iter().filter_map(|i| super::reader::literal(i, &t.what, key, d)).collect(),
            Some((v, _)) => {
                d.push(Diagnostic::error("kiln::wrong-value-type", v.span(), format!("{}: `{key}` must be a list of values", t.what)).label("expected [ ... ]"));
                Vec::new()
            }
            None => Vec::new(),
        }
    };
    let kind = match present[0] {
        "check" => t.str("check", d).map(RuleDeclKind::Check),
        "not_null" => t.str_list("not_null", d).map(|l| RuleDeclKind::NotNull(l.value)),
        "unique" => t.str_list("unique", d).map(|l| RuleDeclKind::Unique(l.value)),
        "accepted_values" => {
            let values = literals("accepted_values", d);
            column(d).map(|column| RuleDeclKind::AcceptedValues { column, values })
        }
        "range" => {
            let bounds = t.table("range", d);
            let (min, max) = match &bounds {
                Some(b) => {
                    let lit = |k: &'static str, d: &mut Diags| b.get(k).and_then(|v| super::reader::literal(v, &b.what, k, d));
                    let (min, max) = (lit("min", d), lit("max", d));
                    b.finish(d);
                    (min, max)
                }
                None => (None, None),
            };
            if bounds.is_some() && min.is_none() && max.is_none() {
                d.push(Diagnostic::error("kiln::bad-rule", name.span.clone(), format!("rule `{}`: a range needs `min` or `max`", name.value)).label("no bounds").help("range = { min = 0, max = 100 }"));
            }
            column(d).map(|column| RuleDeclKind::Range { column, min, max })
        }
        "regex" => {
            let pattern = t.str("regex", d);
            match (column(d), pattern) {
                (Some(column), Some(pattern)) => Some(RuleDeclKind::Regex { column, pattern }),
                _ => None,
            }
        }
        "row_count" => match t.table("row_count", d) {
            Some(b) => {
                let (min, max) = (b.int("min", d), b.int("max", d));
                b.finish(d);
                Some(RuleDeclKind::RowCount { min, max })
            }
            None => None,
        },
        _ => {
            let node = t.str("exists_in", d);
            let keys = t.str_list("keys", d).map(|k| k.value);
            let columns = t.str_list("columns", d).map(|c| c.value);
            if keys.is_none() {
                t.req_str("keys", d, Some("keys = [\"customer_id\"]: the columns whose values must exist in the other node"));
            }
            match (node, keys) {
                (Some(node), Some(keys)) => Some(RuleDeclKind::ExistsIn { node, keys, columns }),
                _ => None,
            }
        }
    };
    t.finish(d);
    Some(RuleDecl { name, on_fail, kind: kind?, span: t.span.clone() })
}

/// A required integer of at least `min`.
/// The most partitions a node may ask for (tokio and DataFusion allocate per partition).
pub const MAX_PARTITIONS: i64 = 100_000;

fn count(t: &Table, key: &'static str, min: i64, d: &mut Diags) -> Option<Sp<i64>> {
    let Some(n) = t.int(key, d) else {
        if !t.table.contains_key(key) {
            t.req_str(key, d, Some(&format!("{key} = {}", min.max(1))));
        }
        return None;
    };
    if n.value < min {
        d.push(Diagnostic::error("kiln::bad-value", n.span.clone(), format!("{}: `{key}` must be at least {min}", t.what)).label("too small"));
        return None;
    }
    if key == "partitions" && n.value > MAX_PARTITIONS {
        d.push(Diagnostic::error("kiln::bad-value", n.span.clone(), format!("{}: `{key}` must be at most {MAX_PARTITIONS}", t.what)).label("too large"));
        return None;
    }
    Some(n)
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
