//! `[[tests]]`: each test replaces the pipeline's sources with its rows (or
//! fixture files; unlisted sources are empty), plans the nodes exactly as a run
//! does ([`crate::run::node_plans`]), and compares the expected nodes' rows.
//! `kiln test` calls this in-process (no cargo build); `NAME test` calls it in
//! the binary.
//!
//! A failure is a row-level diff: rows missing, rows extra, and rows that
//! differ in some columns (paired by their other columns), with the columns
//! named.

use std::fmt::Write;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;

use crate::plan::{CsvOptions, Op, Pipeline, Source, SourceFormat, TestCase, TestData};
use crate::{Error, Result};

/// What one test found: nothing (passed) or one message per failed expectation.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every test of `pipeline`.
pub async fn run_all(pipeline: &Pipeline) -> Vec<Outcome> {
    let mut out = Vec::new();
    for test in &pipeline.tests {
        let failures = match run_one(pipeline, test).await {
            Ok(f) => f,
            Err(e) => vec![format!("error: {e}")],
        };
        out.push(Outcome { name: test.name.clone(), failures });
    }
    out
}

/// Prints each outcome and a total; returns whether all passed.
pub fn report(outcomes: &[Outcome], to: &mut impl std::io::Write) -> bool {
    let mut failed = 0;
    for o in outcomes {
        if o.passed() {
            let _ = writeln!(to, "test {} ... ok", o.name);
        } else {
            failed += 1;
            let _ = writeln!(to, "test {} ... FAILED", o.name);
            for f in &o.failures {
                for line in f.lines() {
                    let _ = writeln!(to, "    {line}");
                }
            }
        }
    }
    let _ = writeln!(to, "{} passed, {failed} failed", outcomes.len() - failed);
    failed == 0
}

/// The pipeline as this test sees it: sources replaced by the test's data.
fn with_inputs(pipeline: &Pipeline, test: &TestCase) -> Pipeline {
    let mut p = pipeline.clone();
    for node in &mut p.nodes {
        let Op::Source(source) = &mut node.op else { continue };
        let data = test.inputs.iter().find(|(n, _)| *n == node.name).map(|(_, d)| d);
        *source = match data {
            None => Source { format: SourceFormat::Inline(Vec::new()), path: String::new(), schema: source.schema.clone(), partitions: Vec::new(), hints: Default::default() },
            Some(TestData::Rows(rows)) => Source { format: SourceFormat::Inline(rows.clone()), path: String::new(), schema: source.schema.clone(), partitions: Vec::new(), hints: Default::default() },
            Some(TestData::File(path)) => Source { format: fixture_format(path), path: path.clone(), schema: source.schema.clone(), partitions: Vec::new(), hints: Default::default() },
        };
    }
    p
}

fn fixture_format(path: &str) -> SourceFormat {
    if path.ends_with(".parquet") {
        SourceFormat::Parquet
    } else if path.ends_with(".json") || path.ends_with(".jsonl") || path.ends_with(".ndjson") {
        SourceFormat::Json
    } else {
        SourceFormat::Csv(CsvOptions::default())
    }
}

async fn run_one(pipeline: &Pipeline, test: &TestCase) -> Result<Vec<String>> {
    let p = with_inputs(pipeline, test);
    let values = crate::params::resolve(&p.params, &[], |_| None)?;
    let ctx = crate::session::context(&crate::session::SessionOptions { target_partitions: Some(2), ..Default::default() })?;
    let plans = crate::run::node_plans(&p, &ctx, &values).await?;
    let mut failures = Vec::new();
    for e in &test.expect {
        let Some(plan) = plans.get(&e.node) else {
            failures.push(format!("node `{}` does not exist", e.node));
            continue;
        };
        let batches = DataFrame::new(ctx.state(), plan.clone()).collect().await?;
        let columns: Vec<String> = plan.schema().fields().iter().map(|f| f.name().clone()).collect();
        let got = rows_of(&batches);
        if let Some(n) = e.count {
            if got.len() as u64 != n {
                failures.push(format!("node `{}`: expected {n} rows, got {}", e.node, got.len()));
            }
        }
        let expected = match &e.rows {
            None => continue,
            Some(TestData::Rows(rows)) => rows.clone(),
            Some(TestData::File(path)) => read_fixture(&ctx, path, plan).await?,
        };
        if let Some(diff) = diff(&columns, &expected, &got, e.ordered) {
            failures.push(format!("node `{}`: {diff}", e.node));
        }
    }
    Ok(failures)
}

/// A fixture's rows, read with the node's schema.
async fn read_fixture(ctx: &SessionContext, path: &str, plan: &datafusion::logical_expr::LogicalPlan) -> Result<Vec<Vec<ScalarValue>>> {
    let schema = std::sync::Arc::new(plan.schema().as_arrow().clone());
    let source = Source { format: fixture_format(path), path: path.to_string(), schema, partitions: Vec::new(), hints: Default::default() };
    let plan = crate::sources::scan(ctx, "fixture", &source, &Default::default(), None).await?;
    let batches = DataFrame::new(ctx.state(), plan).collect().await?;
    Ok(rows_of(&batches))
}

fn rows_of(batches: &[RecordBatch]) -> Vec<Vec<ScalarValue>> {
    let mut rows = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            rows.push(b.columns().iter().map(|c| ScalarValue::try_from_array(c, i).unwrap_or(ScalarValue::Null)).collect());
        }
    }
    rows
}

/// Equal values; floats within 1e-9 relative; strings of any encoding alike.
fn same(a: &ScalarValue, b: &ScalarValue) -> bool {
    if a.is_null() || b.is_null() {
        return a.is_null() && b.is_null();
    }
    let float = |v: &ScalarValue| match v {
        ScalarValue::Float64(Some(x)) => Some(*x),
        ScalarValue::Float32(Some(x)) => Some(f64::from(*x)),
        _ => None,
    };
    if let (Some(x), Some(y)) = (float(a), float(b)) {
        return x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs());
    }
    if a == b {
        return true;
    }
    // Utf8 vs Utf8View, Int32 vs Int64 …: compare as text.
    a.to_string() == b.to_string()
}

fn same_row(a: &[ScalarValue], b: &[ScalarValue]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}

fn show(columns: &[String], row: &[ScalarValue]) -> String {
    let cells: Vec<String> = columns.iter().zip(row).map(|(c, v)| format!("{c}: {}", value(v))).collect();
    format!("{{{}}}", cells.join(", "))
}

fn value(v: &ScalarValue) -> String {
    if v.is_null() {
        return "null".into();
    }
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => format!("{s:?}"),
        v => v.to_string(),
    }
}

/// The differences between expected and actual rows, or `None` when they match.
fn diff(columns: &[String], expected: &[Vec<ScalarValue>], got: &[Vec<ScalarValue>], ordered: bool) -> Option<String> {
    let mut out = String::new();
    if ordered {
        let n = expected.len().max(got.len());
        for i in 0..n {
            match (expected.get(i), got.get(i)) {
                (Some(e), Some(g)) if same_row(e, g) => {}
                (Some(e), Some(g)) => {
                    let _ = writeln!(out, "row {}: {}", i + 1, changed(columns, e, g));
                }
                (Some(e), None) => {
                    let _ = writeln!(out, "row {}: missing {}", i + 1, show(columns, e));
                }
                (None, Some(g)) => {
                    let _ = writeln!(out, "row {}: extra {}", i + 1, show(columns, g));
                }
                (None, None) => {}
            }
        }
        return (!out.is_empty()).then(|| format!("rows differ (in order)\n{}", out.trim_end()));
    }
    // Multisets: match equal rows, then pair what is left by the columns they share.
    let mut unmatched: Vec<&Vec<ScalarValue>> = got.iter().collect();
    let mut missing: Vec<&Vec<ScalarValue>> = Vec::new();
    for e in expected {
        match unmatched.iter().position(|g| same_row(e, g)) {
            Some(i) => {
                unmatched.swap_remove(i);
            }
            None => missing.push(e),
        }
    }
    if missing.is_empty() && unmatched.is_empty() {
        return None;
    }
    let mut changed_rows = Vec::new();
    missing.retain(|e| {
        let best = unmatched
            .iter()
            .enumerate()
            .map(|(i, g)| (i, e.iter().zip(g.iter()).filter(|(x, y)| same(x, y)).count()))
            .max_by_key(|(_, n)| *n);
        match best {
            Some((i, n)) if n * 2 >= columns.len() && n > 0 => {
                changed_rows.push(changed(columns, e, unmatched.swap_remove(i)));
                false
            }
            _ => true,
        }
    });
    let _ = writeln!(out, "{} row(s) missing, {} extra, {} changed", missing.len(), unmatched.len(), changed_rows.len());
    for e in &missing {
        let _ = writeln!(out, "missing: {}", show(columns, e));
    }
    for g in &unmatched {
        let _ = writeln!(out, "extra:   {}", show(columns, g));
    }
    for c in &changed_rows {
        let _ = writeln!(out, "changed: {c}");
    }
    Some(out.trim_end().to_string())
}

/// `{key columns} col: expected X, got Y; …`
fn changed(columns: &[String], e: &[ScalarValue], g: &[ScalarValue]) -> String {
    let same_cols: Vec<String> = columns.iter().zip(e.iter().zip(g)).filter(|(_, (x, y))| same(x, y)).map(|(c, (x, _))| format!("{c}: {}", value(x))).collect();
    let diffs: Vec<String> = columns
        .iter()
        .zip(e.iter().zip(g))
        .filter(|(_, (x, y))| !same(x, y))
        .map(|(c, (x, y))| format!("{c}: expected {}, got {}", value(x), value(y)))
        .collect();
    format!("{{{}}} {}", same_cols.join(", "), diffs.join("; "))
}

/// Runs the tests of a pipeline and prints the report; `Err` if any failed.
pub async fn run_and_report(pipeline: &Pipeline) -> Result<()> {
    let outcomes = run_all(pipeline).await;
    if report(&outcomes, &mut std::io::stdout()) {
        Ok(())
    } else {
        Err(Error::TestsFailed(outcomes.iter().filter(|o| !o.passed()).count()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> ScalarValue {
        ScalarValue::Utf8(Some(v.into()))
    }
    fn f(v: f64) -> ScalarValue {
        ScalarValue::Float64(Some(v))
    }

    #[test]
    fn diffs_name_missing_extra_and_changed_rows() {
        let cols = vec!["id".to_string(), "amount".to_string(), "city".to_string()];
        let expected = vec![vec![s("t1"), f(5.0), s("paris")], vec![s("t2"), f(1.0), s("rome")], vec![s("t3"), f(2.0), s("oslo")]];
        let got = vec![vec![s("t2"), f(1.0), s("rome")], vec![s("t1"), f(4.0), s("paris")], vec![s("t9"), f(9.0), ScalarValue::Utf8(None)]];
        let d = diff(&cols, &expected, &got, false).unwrap();
        assert!(d.starts_with("1 row(s) missing, 1 extra, 1 changed"), "{d}");
        assert!(d.contains("missing: {id: \"t3\", amount: 2, city: \"oslo\"}"), "{d}");
        assert!(d.contains("extra:   {id: \"t9\", amount: 9, city: null}"), "{d}");
        assert!(d.contains("changed: {id: \"t1\", city: \"paris\"} amount: expected 5, got 4"), "{d}");
        assert_eq!(diff(&cols, &expected, &[expected[2].clone(), expected[0].clone(), expected[1].clone()], false), None);
        assert!(diff(&cols, &expected, &[expected[2].clone(), expected[0].clone(), expected[1].clone()], true).is_some());
    }
}
