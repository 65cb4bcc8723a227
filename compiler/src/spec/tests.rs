//! `[[tests]]` (SPEC.md §7): inputs replace sources with inline rows or fixture
//! files; expectations give a node's rows (or a fixture), its row count, and
//! whether order matters.

use toml::de::DeValue;

use super::reader::Table;
use super::{Literal, Sp};
use crate::diag::{Diagnostic, Diags};

pub type Rows = Vec<Sp<Vec<(Sp<String>, Sp<Literal>)>>>;

#[derive(Debug, Clone)]
pub struct TestDecl {
    pub name: Sp<String>,
    pub inputs: Vec<(Sp<String>, DataDecl)>,
    pub expect: Vec<(Sp<String>, ExpectDecl)>,
}

#[derive(Debug, Clone)]
pub enum DataDecl {
    Rows(Rows),
    /// A fixture file: csv (with header), json (one object per line) or parquet, by extension.
    Path(Sp<String>),
}

#[derive(Debug, Clone)]
pub struct ExpectDecl {
    pub data: Option<DataDecl>,
    pub count: Option<Sp<i64>>,
    pub ordered: bool,
}

pub(super) fn parse(v: &toml::de::DeValue, span: std::ops::Range<usize>, d: &mut Diags) -> Vec<TestDecl> {
    let DeValue::Array(items) = v else {
        d.push(Diagnostic::error("kiln::wrong-value-type", span, "`tests` must be an array of tables").label("write each test as [[tests]]"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let DeValue::Table(table) = item.get_ref() else {
            d.push(Diagnostic::error("kiln::wrong-value-type", item.span(), "each test must be a table").label("write it as [[tests]]"));
            continue;
        };
        let t = Table::new(table, item.span(), "test");
        let Some(name) = t.req_str("name", d, Some("name = \"drops non-positive amounts\"")) else { continue };
        let t = Table::new(table, item.span(), format!("test \"{}\"", name.value));
        let _ = t.get("name");
        let mut test = TestDecl { name, inputs: Vec::new(), expect: Vec::new() };
        if let Some(inputs) = t.table("inputs", d) {
            for (node, nt) in super::each_table(&inputs, d, "input") {
                if let Some(data) = data(&nt, d, true) {
                    test.inputs.push((node, data));
                }
                nt.finish(d);
            }
        }
        match t.table("expect", d) {
            Some(expect) => {
                for (node, et) in each_node(&expect, d) {
                    let count = et.int("count", d);
                    let ordered = et.bool("ordered", d).is_some_and(|b| b.value);
                    let data = data(&et, d, false);
                    if data.is_none() && count.is_none() {
                        d.push(
                            Diagnostic::error("kiln::missing-key", node.span.clone(), format!("test \"{}\": expect.{} says nothing", test.name.value, node.value))
                                .label("give `rows`, `path` or `count`"),
                        );
                    }
                    et.finish(d);
                    test.expect.push((node, ExpectDecl { data, count, ordered }));
                }
            }
            None => {
                if t.get("expect").is_none() {
                    t.req_str("expect", d, Some("expect.NODE.rows = [ { ... } ]"));
                }
            }
        }
        t.finish(d);
        out.push(test);
    }
    out
}

/// `expect.NODE` entries; node names may be `NAME.quarantine`, written quoted:
/// `expect."checked.quarantine".rows`.
fn each_node<'a, 'i>(t: &Table<'a, 'i>, d: &mut Diags) -> Vec<(Sp<String>, Table<'a, 'i>)> {
    let mut out = Vec::new();
    for (k, v) in t.table.iter() {
        let name = Sp::new(k.get_ref().to_string(), k.span());
        match v.get_ref() {
            DeValue::Table(inner) => out.push((name.clone(), Table::new(inner, k.span(), format!("expect.{}", name.value)))),
            _ => d.push(Diagnostic::error("kiln::wrong-value-type", v.span(), format!("expect.{} must be a table", name.value)).label("e.g. expect.valid.rows = [ ... ]")),
        }
    }
    out
}

fn data(t: &Table, d: &mut Diags, required: bool) -> Option<DataDecl> {
    let rows = super::source::rows(t, d);
    let path = t.str("path", d);
    match (rows, path) {
        (Some(_), Some(p)) => {
            d.push(Diagnostic::error("kiln::conflict", p.span, format!("{}: `rows` and `path` exclude each other", t.what)).label("choose one"));
            None
        }
        (Some(r), None) => Some(DataDecl::Rows(r)),
        (None, Some(p)) => Some(DataDecl::Path(p)),
        (None, None) => {
            if required {
                t.req_str("rows", d, Some("rows = [ { column = value, ... } ], or path = \"fixtures/x.csv\""));
            }
            None
        }
    }
}
