//! Per-node metrics (`--metrics`, SPEC §10's `nodes` object; issue 19). Row
//! counts equal counts made by pyarrow from the same files and the rows the
//! sinks wrote; a forced spill shows spill > 0; a skewed shuffle join shows
//! max/median > 10; a run with metrics writes what a run without them writes.

use std::path::Path;

use kiln::run::{Report, RunOptions};
use kiln_tests::{parquet_outputs, pipeline, repo_root};

fn run(p: &kiln::plan::Pipeline, opts: &RunOptions) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(kiln::run::run(p, opts)).unwrap()
}

fn with_metrics() -> RunOptions {
    RunOptions { node_metrics: true, ..Default::default() }
}

/// A spec of `specs/` reading `specs/data` and writing under `out`.
fn spec_text(file: &str, out: &Path) -> String {
    let data = repo_root().join("specs/data");
    std::fs::read_to_string(repo_root().join(file))
        .unwrap()
        .replace("default = \"data/transactions.csv\"", &format!("default = \"{}/transactions.csv\"", data.display()))
        .replace("default = \"data\"", &format!("default = \"{}\"", data.display()))
        .replace("default = \"out/", &format!("default = \"{}/", out.display()))
}

/// A number pyarrow computes (the expression `expr` over `t`, the table read from `file`).
fn pyarrow(file: &str, expr: &str) -> u64 {
    let script = format!(
        "import pyarrow.csv as pc, pyarrow.parquet as pq, pyarrow.compute as c\n\
         f = '{}'\n\
         t = pc.read_csv(f, convert_options=pc.ConvertOptions(strings_can_be_null=True)) if f.endswith('.csv') else pq.read_table(f)\n\
         print({expr})",
        repo_root().join(file).display()
    );
    let out = std::process::Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn row_counts_are_the_rows_each_node_produced() {
    let out = tempfile::tempdir().unwrap();
    let p = pipeline(&spec_text("specs/etl.toml", out.path()));
    let report = run(&p, &with_metrics());
    let n = &report.nodes;
    let csv = "specs/data/transactions.csv";
    assert_eq!(n["transactions"].rows_out, pyarrow(csv, "t.num_rows"));
    let valid = "t.filter(c.and_(c.greater(t['amount'], 0), c.is_valid(t['customer_id'])))";
    assert_eq!(n["valid"].rows_out, pyarrow(csv, &format!("{valid}.num_rows")));
    assert_eq!(n["cleaned"].rows_out, n["valid"].rows_out);
    // rows_in: what the inputs passed on (a source has none).
    assert_eq!((n["transactions"].rows_in, n["valid"].rows_in, n["cleaned"].rows_in), (None, Some(n["transactions"].rows_out), Some(n["valid"].rows_out)));
    assert_eq!(n["deduped"].rows_out, pyarrow(csv, &format!("len(c.unique({valid}['transaction_id']))")));
    // Dedupe keeps each transaction's smallest amount (ties: earliest date), then groups.
    let groups = pyarrow(
        csv,
        &format!(
            "len({{(r['customer_id'], r['category']) for r in {{r['transaction_id']: r for r in sorted({valid}.to_pylist(), key=lambda r: (r['transaction_id'], r['amount'], r['date']), reverse=True)}}.values()}})"
        ),
    );
    assert_eq!(n["customer_category"].rows_out, groups);
    // The sink wrote those rows.
    let written: usize = parquet_outputs(&out.path().join("etl")).iter().map(|(_, rows)| rows.len()).sum();
    assert_eq!((report.sinks[0].rows, written as u64), (Some(groups), groups));
    for (name, m) in n {
        assert_eq!(m.partition_rows.iter().sum::<u64>(), m.rows_out, "{name}");
        assert_eq!(m.partitions, m.partition_rows.len(), "{name}");
        assert!(m.partition_rows_max >= m.partition_rows_median, "{name}");
        assert!(m.wall_ms >= 0.0 && m.elapsed_ms >= 0.0, "{name}");
    }
    assert!(n["transactions"].bytes_out > 0 && n["transactions"].elapsed_ms > 0.0);
    assert!(n["transactions"].operators.contains(&"DataSourceExec".to_string()), "{:?}", n["transactions"].operators);
    // Without `--metrics` there are none (and nothing is marked).
    assert!(run(&p, &RunOptions::default()).nodes.is_empty());
}

/// 400,000 rows of (id, key) as Parquet: about 12 MB in memory.
fn write_many_rows(path: &Path) {
    use arrow::array::{Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    let ids: Vec<i64> = (0..400_000).collect();
    let keys: Vec<String> = ids.iter().map(|i| format!("key-{:08}", (i * 7919) % 400_000)).collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("id", std::sync::Arc::new(Int64Array::from(ids)) as arrow::array::ArrayRef),
        ("key", std::sync::Arc::new(StringArray::from(keys)) as arrow::array::ArrayRef),
    ])
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn a_forced_spill_shows_in_the_sorting_node() {
    let data = tempfile::tempdir().unwrap();
    let input = data.path().join("many.parquet");
    write_many_rows(&input);
    let text = |out: &Path| {
        format!(
            "[pipeline]\nname = \"spill\"\n[sources.many]\nformat = \"parquet\"\npath = \"{}\"\n\
             [transforms.by_key]\ntype = \"sort\"\ninput = \"many\"\norder_by = [\"key DESC\"]\n\
             [sinks.out]\ninput = \"by_key\"\nformat = \"parquet\"\npath = \"{}/sorted.parquet\"\nsingle_file = true\n",
            input.display(),
            out.display()
        )
    };
    let (small, free) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // 10 MB of the pool is the merge's reservation (DataFusion's sort_spill_reservation_bytes):
    // with the Parquet writers' buffers, a few MB are left to sort about 12 MB in.
    // One partition: no merge of sorted partitions competing for the pool.
    let mut opts = with_metrics();
    opts.session.memory_limit = Some(20 << 20);
    opts.session.target_partitions = Some(1);
    let report = run(&pipeline(&text(small.path())), &opts);
    // DataFusion sorts as early as it can: the sort may run in the source's part of the
    // plan (it reads the file in reverse row-group order for it). The spill shows in the
    // node whose operators hold the SortExec, and nowhere else.
    let sorting: Vec<(&String, &kiln::node_metrics::NodeMetrics)> = report.nodes.iter().filter(|(_, m)| m.operators.iter().any(|o| o == "SortExec")).collect();
    assert_eq!(sorting.len(), 1, "{:?}", report.nodes);
    let (_, sort) = sorting[0];
    assert!(sort.spill_count > 0 && sort.spill_bytes > 0 && sort.spill_rows > 0, "{sort:?}");
    let spilled: u64 = report.nodes.values().map(|m| m.spill_bytes).sum();
    assert_eq!(spilled, sort.spill_bytes);
    assert_eq!(report.nodes["by_key"].rows_out, 400_000);
    let mut one_partition = with_metrics();
    one_partition.session.target_partitions = Some(1);
    let unlimited = run(&pipeline(&text(free.path())), &one_partition);
    assert_eq!(unlimited.nodes.values().map(|m| m.spill_bytes).sum::<u64>(), 0);
    // The rows in file order: sorted alike with and without metrics (the markers keep order).
    let plain_dir = tempfile::tempdir().unwrap();
    let mut plain = RunOptions::default();
    plain.session.target_partitions = Some(1);
    run(&pipeline(&text(plain_dir.path())), &plain);
    let in_order = |d: &Path| kiln_tests::read_parquet_rows(&d.join("sorted.parquet"));
    let keys = |rows: Vec<kiln_tests::Row>| rows.into_iter().map(|r| r["key"].clone()).collect::<Vec<_>>();
    let expected = keys(in_order(plain_dir.path()));
    assert_eq!(expected.len(), 400_000);
    assert!(expected.windows(2).all(|w| match (&w[0], &w[1]) { (kiln_tests::Cell::Str(a), kiln_tests::Cell::Str(b)) => a >= b, _ => false }), "not sorted descending");
    assert_eq!(keys(in_order(free.path())), expected);
    assert_eq!(keys(in_order(small.path())), expected);
    // Spilling changed nothing in the output.
    assert_eq!(parquet_outputs(small.path()), parquet_outputs(free.path()));
}

#[test]
fn a_skewed_shuffle_join_shows_max_far_above_median() {
    let out = tempfile::tempdir().unwrap();
    // specs/skew_join.toml's data (90% of orders carry `WHALE`), joined by hash partitions.
    let text = spec_text("specs/skew_join.toml", out.path()).replace("on = [\"customer_id\"]\n", "on = [\"customer_id\"]\nstrategy = \"shuffle\"\n");
    let mut opts = with_metrics();
    opts.session.target_partitions = Some(4);
    let report = run(&pipeline(&text), &opts);
    let join = &report.nodes["orders_customers"];
    assert_eq!(join.partitions, 4, "{join:?}");
    assert!(join.partition_rows_max > 10 * join.partition_rows_median.max(1), "{join:?}");
    let whale = pyarrow("specs/data/orders_skewed.parquet", "c.sum(c.equal(t['customer_id'], 'WHALE')).as_py()");
    assert!(join.partition_rows_max >= whale, "{join:?}: the WHALE rows share one partition");
    assert_eq!(report.nodes["orders"].rows_out, 1000);
    assert_eq!(join.join_strategy.as_deref(), Some("shuffle (hint)"), "the strategy and its reason");
    assert_eq!(report.nodes["orders"].join_strategy, None);
}

#[test]
fn metrics_change_no_output() {
    for file in ["specs/etl.toml", "specs/skew_join.toml", "specs/broadcast_join.toml", "specs/windows.toml", "specs/quality.toml"] {
        let (plain, measured) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Every sink under one directory, whatever the spec's `output` parameter names.
        let opts = |dir: &Path, metrics: bool| {
            let output = if file.ends_with("etl.toml") { dir.join("customer_category") } else { dir.to_path_buf() };
            RunOptions { node_metrics: metrics, params: vec![("output".into(), output.display().to_string())], ..Default::default() }
        };
        let a = run(&pipeline(&spec_text(file, plain.path())), &opts(plain.path(), false));
        let b = run(&pipeline(&spec_text(file, measured.path())), &opts(measured.path(), true));
        assert_eq!(parquet_outputs(plain.path()), parquet_outputs(measured.path()), "{file}");
        assert!(!parquet_outputs(plain.path()).is_empty(), "{file}");
        assert_eq!(a.sinks.iter().map(|s| s.rows).collect::<Vec<_>>(), b.sinks.iter().map(|s| s.rows).collect::<Vec<_>>(), "{file}");
        // Every sink's input node counted the rows the sink wrote.
        for (sink, report) in p_sinks(file).iter().zip(&b.sinks) {
            assert_eq!(Some(b.nodes[sink].rows_out), report.rows, "{file}: sink input `{sink}`");
        }
    }
}

/// The input node of each sink of `file`, in order.
fn p_sinks(file: &str) -> Vec<String> {
    let p = pipeline(&spec_text(file, Path::new("/tmp")));
    p.sinks.iter().map(|s| s.input.clone()).collect()
}
