//! `window`: every function of SPEC.md's table, ROWS and RANGE frames, several
//! columns per node. Expected values are worked out by hand in the comments.

use kiln_tests::{Cell, Row, f, i, node_rows, pipeline};

const DATA: &str = r#"
[pipeline]
name = "w"

[sources.scores]
format = "inline"
schema = { g = "string", t = "int64", v = "int64" }
rows = [
  { g = "x", t = 1, v = 10 },
  { g = "x", t = 2, v = 20 },
  { g = "x", t = 3, v = 20 },
  { g = "x", t = 4 },
  { g = "y", t = 1, v = 5 },
  { g = "y", t = 2, v = 7 },
]
"#;

/// `column` of node `x` for every (g, t), in (g, t) order.
fn column(window: &str, name: &str) -> Vec<Cell> {
    let p = pipeline(&format!(
        "{DATA}\n[transforms.x]\ntype = \"window\"\ninput = \"scores\"\npartition_by = [\"g\"]\n{window}\n[sinks.out]\ninput = \"x\"\nformat = \"console\"\n"
    ));
    let mut rows: Vec<Row> = node_rows(&p, "x", &[]);
    rows.sort_by_key(|r| (format!("{:?}", r["g"]), format!("{:?}", r["t"])));
    assert!(rows.iter().all(|r| r.contains_key("v")), "the input's columns are kept");
    rows.into_iter().map(|r| r[name].clone()).collect()
}

const N: Cell = Cell::Null;

#[test]
fn ranking_functions() {
    // x ordered by v DESC (nulls last): 20 (t2), 20 (t3), 10 (t1), NULL (t4); y: 7 (t2), 5 (t1).
    let w = "order_by = [\"v DESC\"]\ncolumns.rank = \"rank()\"\ncolumns.dense = \"dense_rank()\"\ncolumns.pct = \"percent_rank()\"\ncolumns.rn = \"row_number()\"";
    //                      x: t1 t2 t3 t4   y: t1 t2
    assert_eq!(column(w, "rank"), [i(3), i(1), i(1), i(4), i(2), i(1)]);
    assert_eq!(column(w, "dense"), [i(2), i(1), i(1), i(3), i(2), i(1)]);
    // (rank - 1) / (rows - 1)
    assert_eq!(column(w, "pct"), [f(2.0 / 3.0), f(0.0), f(0.0), f(1.0), f(1.0), f(0.0)]);
    let rn = column(w, "rn");
    assert_eq!(rn[0], i(3));
    assert_eq!(rn[3], i(4));
    assert!(matches!((&rn[1], &rn[2]), (Cell::Int(1), Cell::Int(2)) | (Cell::Int(2), Cell::Int(1))));
}

#[test]
fn ntile_gives_the_first_buckets_the_extra_rows() {
    // 4 rows in 3 buckets: sizes 2, 1, 1. 2 rows: 1, 2.
    let w = "order_by = [\"t\"]\ncolumns.bucket = \"ntile(3)\"";
    assert_eq!(column(w, "bucket"), [i(1), i(1), i(2), i(3), i(1), i(2)]);
}

#[test]
fn lag_lead_with_offset_and_default() {
    let w = "order_by = [\"t\"]\ncolumns.lag2 = \"lag(v, 2, 0)\"\ncolumns.next = \"lead(v)\"";
    assert_eq!(column(w, "lag2"), [i(0), i(0), i(10), i(20), i(0), i(0)]);
    assert_eq!(column(w, "next"), [i(20), i(20), N, N, i(7), N]);
}

#[test]
fn first_and_last_value_over_the_default_frame() {
    // Default frame with ORDER BY: start of the partition up to the current row (and its peers).
    let w = "order_by = [\"t\"]\ncolumns.first = \"first_value(v)\"\ncolumns.last = \"last_value(v)\"";
    assert_eq!(column(w, "first"), [i(10), i(10), i(10), i(10), i(5), i(5)]);
    assert_eq!(column(w, "last"), [i(10), i(20), i(20), N, i(5), i(7)]);
}

#[test]
fn aggregates_over_rows_and_range_frames() {
    // ROWS 1 PRECEDING .. 1 FOLLOWING: x: 10+20, 10+20+20, 20+20(+NULL), 20(+NULL); y: 5+7 twice.
    let w = "order_by = [\"t\"]\nframe = \"ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING\"\ncolumns.s = \"sum(v)\"\ncolumns.n = \"count(v)\"";
    assert_eq!(column(w, "s"), [i(30), i(50), i(40), i(20), i(12), i(12)]);
    assert_eq!(column(w, "n"), [i(2), i(3), i(2), i(1), i(2), i(2)]);
    // RANGE 1 PRECEDING .. CURRENT ROW over t: the rows whose t is within 1 below.
    let w = "order_by = [\"t\"]\nframe = \"RANGE BETWEEN 1 PRECEDING AND CURRENT ROW\"\ncolumns.s = \"sum(v)\"\ncolumns.rows = \"count(*)\"";
    assert_eq!(column(w, "s"), [i(10), i(30), i(40), i(20), i(5), i(12)]);
    assert_eq!(column(w, "rows"), [i(1), i(2), i(2), i(2), i(1), i(2)]);
    // Running total: NULLs skipped, the total carried through them.
    let w = "order_by = [\"t\"]\nframe = \"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW\"\ncolumns.run = \"sum(v)\"";
    assert_eq!(column(w, "run"), [i(10), i(30), i(50), i(50), i(5), i(12)]);
}

#[test]
fn without_order_by_the_frame_is_the_whole_partition() {
    let w = "columns.n = \"count(*)\"\ncolumns.top = \"max(v)\"\ncolumns.avg = \"avg(v)\"";
    assert_eq!(column(w, "n"), [i(4), i(4), i(4), i(4), i(2), i(2)]);
    assert_eq!(column(w, "top"), [i(20), i(20), i(20), i(20), i(7), i(7)]);
    assert_eq!(column(w, "avg"), [f(50.0 / 3.0), f(50.0 / 3.0), f(50.0 / 3.0), f(50.0 / 3.0), f(6.0), f(6.0)]);
}
