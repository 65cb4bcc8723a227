//! union, sort, limit, repartition, coalesce and sql, against hand-computed rows.

use kiln_tests::{Cell, Row, i, node_rows, pipeline, row, s, sorted};

const DATA: &str = r#"
[pipeline]
name = "u"

[sources.a]
format = "inline"
schema = { id = "int64", name = "string" }
rows = [{ id = 1, name = "ada" }, { id = 2, name = "bob" }]

[sources.b]
format = "inline"
schema = { name = "string", id = "int64" }
rows = [{ name = "cy", id = 3 }, { name = "bob", id = 2 }]

[sources.c]
format = "inline"
schema = { id = "int64", city = "string" }
rows = [{ id = 1, city = "london" }, { id = 3, city = "paris" }, { id = 4, city = "rome" }]
"#;

fn rows(transform: &str) -> Vec<Row> {
    let p = pipeline(&format!("{DATA}\n[transforms.x]\n{transform}\n[sinks.out]\ninput = \"x\"\nformat = \"console\"\n"));
    node_rows(&p, "x", &[])
}

fn p(id: i64, name: &str) -> Row {
    row(&[("id", i(id)), ("name", s(name))])
}

#[test]
fn union_matches_columns_by_name_and_keeps_duplicates() {
    let got = sorted(rows("type = \"union\"\ninputs = [\"a\", \"b\"]"));
    assert_eq!(got, sorted(vec![p(1, "ada"), p(2, "bob"), p(3, "cy"), p(2, "bob")]));
    let got = sorted(rows("type = \"union\"\ninputs = [\"a\", \"b\"]\ndistinct = true"));
    assert_eq!(got, sorted(vec![p(1, "ada"), p(2, "bob"), p(3, "cy")]));
}

#[test]
fn union_by_name_fills_missing_columns_with_null() {
    let got = sorted(rows("type = \"union\"\ninputs = [\"a\", \"c\"]"));
    let r = |id, name: Cell, city: Cell| row(&[("id", i(id)), ("name", name), ("city", city)]);
    assert_eq!(
        got,
        sorted(vec![
            r(1, s("ada"), Cell::Null),
            r(2, s("bob"), Cell::Null),
            r(1, Cell::Null, s("london")),
            r(3, Cell::Null, s("paris")),
            r(4, Cell::Null, s("rome")),
        ])
    );
}

#[test]
fn sort_then_limit() {
    let p = pipeline(&format!(
        "{DATA}\n[transforms.all]\ntype = \"union\"\ninputs = [\"a\", \"b\"]\n[transforms.sorted]\ntype = \"sort\"\ninput = \"all\"\norder_by = [\"id DESC\", \"name\"]\n[transforms.x]\ntype = \"limit\"\ninput = \"sorted\"\nn = 3\n[sinks.out]\ninput = \"x\"\nformat = \"console\"\n"
    ));
    // Limit after sort keeps the order: 3 cy, 2 bob, 2 bob.
    let got: Vec<Cell> = node_rows(&p, "x", &[]).into_iter().map(|r| r["id"].clone()).collect();
    assert_eq!(got, [i(3), i(2), i(2)]);
    let got: Vec<Cell> = node_rows(&p, "sorted", &[]).into_iter().map(|r| r["name"].clone()).collect();
    assert_eq!(got, [s("cy"), s("bob"), s("bob"), s("ada")]);
}

#[test]
fn repartition_and_coalesce_keep_every_row() {
    let got = sorted(rows("type = \"repartition\"\ninput = \"c\"\npartitions = 3\nby = [\"id\"]"));
    assert_eq!(got.len(), 3);
    let got = sorted(rows("type = \"coalesce\"\ninput = \"c\"\npartitions = 1"));
    assert_eq!(got.iter().map(|r| r["city"].clone()).collect::<Vec<_>>(), [s("london"), s("paris"), s("rome")]);
}

#[test]
fn sql_over_several_inputs() {
    let got = sorted(rows(
        "type = \"sql\"\ninputs = [\"a\", \"c\"]\nquery = \"SELECT a.name, c.city FROM a JOIN c ON a.id = c.id WHERE c.city <> 'rome'\"",
    ));
    assert_eq!(got, vec![row(&[("city", s("london")), ("name", s("ada"))])]);
    let got = sorted(rows("type = \"sql\"\ninputs = [\"c\"]\nquery = \"SELECT count(*) AS n, max(id) AS top FROM c\""));
    assert_eq!(got, vec![row(&[("n", i(3)), ("top", i(4))])]);
}
