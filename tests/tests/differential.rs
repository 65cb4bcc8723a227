//! Differential test of expressions: hundreds of generated expressions
//! (arithmetic, comparisons with NULLs, CASE, string and date functions, casts,
//! aggregates) over a table with nulls and edge values, evaluated through
//! Kiln's whole path (check → plan → run) and compared with DuckDB's results.
//!
//! `tests/differential/make_cases.py` (seeded) writes the table and, per
//! expression, DuckDB's value for every row (or group). Where Kiln deliberately
//! follows Spark and DuckDB differs (SPEC §11), the generator computes Spark's
//! answer with DuckDB and the case carries a note saying so.

use std::collections::BTreeMap;

use serde_json::Value;

struct Case {
    kind: String,
    kiln: String,
    duckdb: String,
    note: String,
    rows: BTreeMap<String, Value>,
}

fn cases() -> Vec<Case> {
    let path = kiln_tests::repo_root().join("tests/differential/cases.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Case {
                kind: v["kind"].as_str().unwrap().to_string(),
                kiln: v["kiln"].as_str().unwrap().to_string(),
                duckdb: v["duckdb"].as_str().unwrap().to_string(),
                note: v["note"].as_str().unwrap().to_string(),
                rows: v["rows"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            }
        })
        .collect()
}

/// A TOML basic string holding `text`.
fn toml_str(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

fn spec(body: &str) -> String {
    let table = kiln_tests::repo_root().join("tests/differential/table.parquet");
    format!(
        "[pipeline]\nname = \"diff\"\n\n[sources.t]\nformat = \"parquet\"\npath = {}\n\n{body}\n[sinks.out]\ninput = \"e\"\nformat = \"console\"\n",
        toml_str(&table.display().to_string())
    )
}

/// Kiln's value of every expression of `kind`, per row id (or group).
fn kiln_values(cases: &[&Case], key: &str) -> Vec<BTreeMap<String, Value>> {
    let body = if key == "id" {
        let columns: Vec<String> = std::iter::once(toml_str("id")).chain(cases.iter().enumerate().map(|(n, c)| toml_str(&format!("{} AS e{n}", c.kiln)))).collect();
        format!("[transforms.e]\ntype = \"select\"\ninput = \"t\"\ncolumns = [{}]\n", columns.join(", "))
    } else {
        let aggs: Vec<String> = cases.iter().enumerate().map(|(n, c)| format!("aggregates.e{n} = {}", toml_str(&c.kiln))).collect();
        format!("[transforms.k]\ntype = \"with_columns\"\ninput = \"t\"\ncolumns.g = \"coalesce(g, '<null>')\"\n\n[transforms.e]\ntype = \"aggregate\"\ninput = \"k\"\ngroup_by = [\"g\"]\n{}\n", aggs.join("\n"))
    };
    let pipeline = kiln_tests::pipeline(&spec(&body));
    let rows = node_json(&pipeline);
    (0..cases.len())
        .map(|n| {
            rows.iter()
                .map(|r| {
                    let k = match &r[key] {
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    };
                    (k, r[&format!("e{n}")].clone())
                })
                .collect()
        })
        .collect()
}

fn node_json(pipeline: &kiln::plan::Pipeline) -> Vec<Value> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let batches = rt.block_on(async {
        let values = kiln::params::resolve(&pipeline.params, &[], |_| None).unwrap();
        let ctx = kiln::session::context(&Default::default()).unwrap();
        let plans = kiln::run::node_plans(pipeline, &ctx, &values).await.unwrap();
        datafusion::dataframe::DataFrame::new(ctx.state(), plans["e"].clone()).collect().await.unwrap()
    });
    let mut buf = Vec::new();
    let mut w = arrow::json::WriterBuilder::new().with_explicit_nulls(true).build::<_, arrow::json::writer::LineDelimited>(&mut buf);
    for b in &batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    String::from_utf8(buf).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Equal as values: numbers within 1e-9 relative (or 1e-6 absolute for
/// aggregates of doubles), lists element-wise; anything else exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) + 1e-9
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        _ => a == b,
    }
}

fn check(kind: &str, key: &str) {
    let all = cases();
    let mine: Vec<&Case> = all.iter().filter(|c| c.kind == kind).collect();
    assert!(mine.len() >= 50, "the generator wrote {} {kind} cases", mine.len());
    let got = kiln_values(&mine, key);
    let mut failures = Vec::new();
    for (case, values) in mine.iter().zip(&got) {
        assert_eq!(values.len(), case.rows.len(), "{}: row count", case.kiln);
        for (k, want) in &case.rows {
            let have = values.get(k).unwrap_or(&Value::Null);
            if !same(have, want) {
                let note = if case.note.is_empty() { String::new() } else { format!(" ({})", case.note) };
                failures.push(format!("{}  [DuckDB: {}]{note}\n    row {k}: Kiln {have}, DuckDB {want}", case.kiln, case.duckdb));
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} expressions differ:\n{}", failures.len(), mine.len(), failures.join("\n"));
}

#[test]
fn row_expressions_match_duckdb() {
    check("row", "id");
}

#[test]
fn aggregates_match_duckdb() {
    check("agg", "g");
}
