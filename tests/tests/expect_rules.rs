//! `expect`: every rule kind and action, the quarantine node, the summary, and
//! a `fail` rule stopping the run before any sink writes. Expected rows are
//! worked out by hand from the five orders below.

use std::path::Path;

use kiln_tests::{Cell, i, node_rows, pipeline, read_parquet_rows, s, sorted};

const ORDERS: &str = r#"
[pipeline]
name = "q"

[params.out]
default = "out"

[sources.orders]
format = "inline"
schema = { id = "int64", cust = "string", amount = "float64", status = "string", code = "string" }
rows = [
  { id = 1, cust = "a", amount = 10.0, status = "new", code = "X1" },
  { id = 2, cust = "b", amount = -5.0, status = "new", code = "X2" },
  { id = 3, cust = "zz", amount = 7.0, status = "weird", code = "X3" },
  { id = 3, cust = "a", amount = 2000.0, status = "done", code = "bad" },
  { id = 5, amount = 1.0, status = "done", code = "X5" },
]

[sources.customers]
format = "inline"
rows = [{ cust = "a" }, { cust = "b" }]
"#;

const RULES: &str = r#"
[transforms.checked]
type = "expect"
input = "orders"
rules.positive = { check = "amount > 0", on_fail = "drop" }
rules.known_status = { accepted_values = ["new", "done"], column = "status", on_fail = "quarantine" }
rules.small = { range = { max = 1000 }, column = "amount", on_fail = "quarantine" }
rules.code_format = { regex = "^X[0-9]$", column = "code", on_fail = "warn" }
rules.has_customer = { not_null = ["cust"], on_fail = "warn" }
rules.unique_id = { unique = ["id"], on_fail = "warn" }
rules.customer_exists = { exists_in = "customers", keys = ["cust"], on_fail = "warn" }
"#;

fn spec(extra_rule: &str) -> kiln::plan::Pipeline {
    pipeline(&format!(
        "{ORDERS}{RULES}{extra_rule}\n[sinks.good]\ninput = \"checked\"\nformat = \"parquet\"\npath = \"${{params.out}}/good\"\n[sinks.bad]\ninput = \"checked.quarantine\"\nformat = \"parquet\"\npath = \"${{params.out}}/bad\"\n"
    ))
}

fn ids(rows: Vec<kiln_tests::Row>) -> Vec<Cell> {
    sorted(rows).into_iter().map(|r| r["id"].clone()).collect()
}

fn run(p: &kiln::plan::Pipeline, out: &Path) -> kiln::Result<kiln::run::Report> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let opts = kiln::run::RunOptions { params: vec![("out".into(), out.display().to_string())], ..Default::default() };
    rt.block_on(kiln::run::run(p, &opts))
}

#[test]
fn drop_and_quarantine_remove_rows_warn_keeps_them() {
    let p = spec("");
    // Dropped: 2 (negative). Quarantined: 3 (unknown status), 3' (2000 > 1000). Warnings keep 5 (no customer).
    assert_eq!(ids(node_rows(&p, "checked", &[])), [i(1), i(5)]);
    let quarantined = node_rows(&p, "checked.quarantine", &[]);
    assert_eq!(quarantined.len(), 2);
    let rules_of = |amount: f64| -> String {
        let r = quarantined.iter().find(|r| r["amount"] == kiln_tests::f(amount)).unwrap();
        match &r["_failed_rules"] {
            Cell::Str(s) => s.clone(),
            other => panic!("{other:?}"),
        }
    };
    // Every rule the row broke, warnings included.
    assert_eq!(rules_of(7.0), "[known_status, unique_id, customer_exists]");
    assert_eq!(rules_of(2000.0), "[small, code_format, unique_id]");
}

#[test]
fn the_summary_counts_failures_per_rule_and_sinks_get_exactly_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(&spec(""), dir.path()).unwrap();
    let q = &report.quality[0];
    assert_eq!((q.node.as_str(), q.rows), ("checked", 5));
    let failed: Vec<(&str, u64)> = q.rules.iter().map(|r| (r.rule.as_str(), r.failed)).collect();
    assert_eq!(
        failed,
        [("positive", 1), ("known_status", 1), ("small", 1), ("code_format", 1), ("has_customer", 1), ("unique_id", 2), ("customer_exists", 1)]
    );
    assert_eq!(ids(read_parquet_rows(&dir.path().join("good"))), [i(1), i(5)]);
    let mut bad: Vec<(Cell, Cell)> = read_parquet_rows(&dir.path().join("bad")).iter().map(|r| (r["id"].clone(), r["status"].clone())).collect();
    bad.sort_by_key(|(_, status)| format!("{status:?}"));
    assert_eq!(bad, [(i(3), s("done")), (i(3), s("weird"))]);
}

#[test]
fn a_fail_rule_stops_the_run_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = spec("rules.enough = { row_count = { min = 10 }, on_fail = \"fail\" }\nrules.ids = { not_null = [\"id\"], on_fail = \"fail\" }\n");
    let err = run(&p, dir.path()).unwrap_err();
    assert!(matches!(err, kiln::Error::Expectation(_)), "{err}");
    assert!(err.to_string().contains("rule `enough`") && err.to_string().contains("5 rows, expected 10.."), "{err}");
    assert!(!dir.path().join("good").exists() && !dir.path().join("bad").exists());
    // The same rule within bounds lets the run through.
    let p = spec("rules.enough = { row_count = { min = 1, max = 5 }, on_fail = \"fail\" }\n");
    run(&p, dir.path()).unwrap();
}
