//! Each transform on small inline inputs, planned exactly as the binary plans
//! them, against results worked out by hand.

use kiln_tests::{Cell, f, i, node_rows, pipeline, row, s, sorted};

const PEOPLE: &str = r#"
[pipeline]
name = "t"

[params.min_age]
default = 18

[sources.people]
format = "inline"
schema = { id = "int64", name = "string", age = "int64", city = "string", ts = "int64" }
rows = [
  { id = 1, name = "ada", age = 36, city = "london", ts = 3 },
  { id = 2, name = "bob", age = 17, city = "paris", ts = 1 },
  { id = 3, name = "cy", city = "paris", ts = 2 },
  { id = 1, name = "ada2", age = 37, city = "london", ts = 5 },
  { id = 4, name = "dee", age = 51, ts = 4 },
]
"#;

fn spec(rest: &str) -> kiln::plan::Pipeline {
    pipeline(&format!("{PEOPLE}\n{rest}\n[sinks.out]\ninput = \"x\"\nformat = \"console\"\n"))
}

#[test]
fn filter_with_a_parameter() {
    let p = spec("[transforms.x]\ntype = \"filter\"\ninput = \"people\"\npredicate = \"age >= ${params.min_age}\"");
    let names = |rows: Vec<kiln_tests::Row>| {
        let mut v: Vec<Cell> = rows.into_iter().map(|r| r["name"].clone()).collect();
        v.sort_by_key(|c| format!("{c:?}"));
        v
    };
    assert_eq!(names(node_rows(&p, "x", &[])), [s("ada"), s("ada2"), s("dee")]);
    assert_eq!(names(node_rows(&p, "x", &[("min_age", "40")])), [s("dee")]);
}

#[test]
fn with_columns_sees_earlier_entries_and_replaces_in_place() {
    let p = spec(
        "[transforms.x]\ntype = \"with_columns\"\ninput = \"people\"\ncolumns.age = \"coalesce(age, 0) + 1\"\ncolumns.double_age = \"age * 2\"",
    );
    let rows = node_rows(&p, "x", &[]);
    let cols: Vec<&String> = rows[0].keys().collect();
    assert_eq!(cols.len(), 6);
    let cy = rows.iter().find(|r| r["name"] == s("cy")).unwrap();
    assert_eq!(cy["age"], i(1));
    assert_eq!(cy["double_age"], i(2));
    let ada = rows.iter().find(|r| r["name"] == s("ada")).unwrap();
    assert_eq!((ada["age"].clone(), ada["double_age"].clone()), (i(37), i(74)));
}

#[test]
fn select_drop_rename_cast_fill_null() {
    let p = spec(
        r#"
[transforms.sel]
type = "select"
input = "people"
columns = ["id", "name AS who", "age * 10 AS decades", "city"]

[transforms.dropped]
type = "drop"
input = "sel"
columns = ["decades"]

[transforms.renamed]
type = "rename"
input = "dropped"
columns.who = "person"

[transforms.casted]
type = "cast"
input = "renamed"
columns.id = "string"

[transforms.x]
type = "fill_null"
input = "casted"
values.city = "nowhere"
"#,
    );
    let rows = sorted(node_rows(&p, "x", &[]));
    assert_eq!(
        rows,
        sorted(vec![
            row(&[("id", s("1")), ("person", s("ada")), ("city", s("london"))]),
            row(&[("id", s("2")), ("person", s("bob")), ("city", s("paris"))]),
            row(&[("id", s("3")), ("person", s("cy")), ("city", s("paris"))]),
            row(&[("id", s("1")), ("person", s("ada2")), ("city", s("london"))]),
            row(&[("id", s("4")), ("person", s("dee")), ("city", s("nowhere"))]),
        ])
    );
}

#[test]
fn dedupe_keeps_first_or_last_in_order() {
    let first = spec("[transforms.x]\ntype = \"dedupe\"\ninput = \"people\"\nkeys = [\"id\"]\nkeep = \"first\"\norder_by = [\"ts DESC\"]");
    let by_id = |rows: Vec<kiln_tests::Row>| {
        let mut v: Vec<(Cell, Cell)> = rows.into_iter().map(|r| (r["id"].clone(), r["name"].clone())).collect();
        v.sort_by_key(|(id, _)| format!("{id:?}"));
        v
    };
    // Latest ts per id: id 1 -> ada2 (ts 5).
    assert_eq!(by_id(node_rows(&first, "x", &[])), [(i(1), s("ada2")), (i(2), s("bob")), (i(3), s("cy")), (i(4), s("dee"))]);
    let last = spec("[transforms.x]\ntype = \"dedupe\"\ninput = \"people\"\nkeys = [\"id\"]\nkeep = \"last\"\norder_by = [\"ts DESC\"]");
    assert_eq!(by_id(node_rows(&last, "x", &[]))[0], (i(1), s("ada")));
    // The whole kept row comes from one input row.
    let rows = node_rows(&last, "x", &[]);
    let ada = rows.iter().find(|r| r["id"] == i(1)).unwrap();
    assert_eq!((ada["age"].clone(), ada["ts"].clone()), (i(36), i(3)));
}

#[test]
fn dedupe_orders_nulls_first_ascending_like_spark() {
    // One group (a constant key), so `keep = "first"` picks the first row in order_by order.
    let p = spec(
        "[transforms.k]\ntype = \"with_columns\"\ninput = \"people\"\ncolumns.one = \"1\"\n\n[transforms.x]\ntype = \"dedupe\"\ninput = \"k\"\nkeys = [\"one\"]\nkeep = \"first\"\norder_by = [\"city\"]",
    );
    let rows = node_rows(&p, "x", &[]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], s("dee"), "nulls sort first ascending");
    let p = spec(
        "[transforms.k]\ntype = \"with_columns\"\ninput = \"people\"\ncolumns.one = \"1\"\n\n[transforms.x]\ntype = \"dedupe\"\ninput = \"k\"\nkeys = [\"one\"]\nkeep = \"first\"\norder_by = [\"age DESC\"]",
    );
    assert_eq!(node_rows(&p, "x", &[])[0]["name"], s("dee"), "age 51 first; the null age sorts last descending");
}

#[test]
fn dedupe_without_keys_is_distinct() {
    let p = spec(
        "[transforms.c]\ntype = \"select\"\ninput = \"people\"\ncolumns = [\"city\"]\n\n[transforms.x]\ntype = \"dedupe\"\ninput = \"c\"",
    );
    let rows = sorted(node_rows(&p, "x", &[]));
    assert_eq!(rows, sorted(vec![row(&[("city", s("london"))]), row(&[("city", s("paris"))]), row(&[("city", Cell::Null)])]));
}

#[test]
fn aggregate_with_having_and_global() {
    let p = spec(
        r#"
[transforms.x]
type = "aggregate"
input = "people"
group_by = ["city"]
aggregates.n = "count(*)"
aggregates.total_age = "sum(age)"
aggregates.avg_age = "avg(age)"
having = "n >= 2"
"#,
    );
    assert_eq!(
        sorted(node_rows(&p, "x", &[])),
        sorted(vec![
            row(&[("city", s("london")), ("n", i(2)), ("total_age", i(73)), ("avg_age", f(36.5))]),
            row(&[("city", s("paris")), ("n", i(2)), ("total_age", i(17)), ("avg_age", f(17.0))]),
        ])
    );
    let g = spec("[transforms.x]\ntype = \"aggregate\"\ninput = \"people\"\ngroup_by = []\naggregates.oldest = \"max(age)\"\naggregates.people = \"count(DISTINCT id)\"");
    assert_eq!(node_rows(&g, "x", &[]), vec![row(&[("oldest", i(51)), ("people", i(4))])]);
}
