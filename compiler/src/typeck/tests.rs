//! Lowering `[[tests]]`: input rows are typed with the source's schema and
//! expected rows with the node's output schema (a key left out is null; an
//! unknown column or a value of the wrong type is an error at that value).

use std::collections::HashMap;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use kiln::plan::{Node, Op, TestCase, TestData, TestExpect};

use super::lower::{schema_names, unknown_column};
use super::literal_value;
use crate::diag::{Diagnostic, Diags, did_you_mean};
use crate::spec::Spec;
use crate::spec::tests::{DataDecl, Rows};

pub(super) fn lower(spec: &Spec, nodes: &[Node], plans: &HashMap<String, LogicalPlan>, d: &mut Diags) -> Vec<TestCase> {
    let mut out = Vec::new();
    let node_names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    for t in &spec.tests {
        let before = d.0.len();
        let mut case = TestCase { name: t.name.value.clone(), inputs: Vec::new(), expect: Vec::new() };
        for (node, data) in &t.inputs {
            match nodes.iter().find(|n| n.name == node.value) {
                Some(Node { op: Op::Source(source), .. }) => {
                    if let Some(data) = lower_data(data, &source.schema, d) {
                        case.inputs.push((node.value.clone(), data));
                    }
                }
                Some(_) => d.push(
                    Diagnostic::error("kiln::bad-test", node.span.clone(), format!("test \"{}\": `{}` is a transform; test inputs replace sources", t.name.value, node.value))
                        .label("not a source")
                        .help("give rows for the sources it reads"),
                ),
                None => d.push(unknown_node(&node.value, &node.span, &node_names)),
            }
        }
        for (node, e) in &t.expect {
            let Some(plan) = plans.get(&node.value) else {
                d.push(unknown_node(&node.value, &node.span, &node_names));
                continue;
            };
            let schema = plan.schema().as_arrow().clone();
            let rows = e.data.as_ref().and_then(|data| lower_data(data, &schema, d));
            if let Some(c) = &e.count {
                if c.value < 0 {
                    d.push(Diagnostic::error("kiln::bad-value", c.span.clone(), "a row count cannot be negative").label("here"));
                }
            }
            case.expect.push(TestExpect { node: node.value.clone(), rows, count: e.count.as_ref().map(|c| c.value.max(0) as u64), ordered: e.ordered });
        }
        if d.0.len() == before {
            out.push(case);
        }
    }
    out
}

fn unknown_node(name: &str, span: &std::ops::Range<usize>, names: &[&str]) -> Diagnostic {
    let mut diag = Diagnostic::error("kiln::unknown-input", span.clone(), format!("unknown node `{name}`")).label("no source or transform has this name");
    if let Some(h) = did_you_mean(name, names.iter().copied()) {
        diag = diag.help(h);
    }
    diag
}

fn lower_data(data: &DataDecl, schema: &Schema, d: &mut Diags) -> Option<TestData> {
    match data {
        DataDecl::Path(p) => Some(TestData::File(p.value.clone())),
        DataDecl::Rows(rows) => typed_rows(rows, schema, d).map(TestData::Rows),
    }
}

/// Rows as values of `schema`'s columns, in schema order; keys left out are null.
fn typed_rows(rows: &Rows, schema: &Schema, d: &mut Diags) -> Option<Vec<Vec<ScalarValue>>> {
    let names = schema_names(schema);
    let mut ok = true;
    let mut out = Vec::new();
    for row in rows {
        for (c, _) in &row.value {
            if !names.contains(&c.value) {
                d.push(unknown_column(&c.value, &c.span, &names));
                ok = false;
            }
        }
        let mut values = Vec::new();
        for field in schema.fields() {
            let v = match row.value.iter().find(|(c, _)| &c.value == field.name()) {
                Some((_, v)) => match literal_value(&v.value, field.data_type()) {
                    Ok(x) => x,
                    Err(msg) => {
                        d.push(Diagnostic::error("kiln::type-mismatch", v.span.clone(), format!("column `{}`: {msg}", field.name())).label("wrong type for this column"));
                        ok = false;
                        continue;
                    }
                },
                None => ScalarValue::try_from(field.data_type()).unwrap_or(ScalarValue::Null),
            };
            values.push(v);
        }
        out.push(values);
    }
    ok.then_some(out)
}
