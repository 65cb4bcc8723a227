//! SPEC §4: "Any transform may set `checkpoint = true`: its result is written
//! to `checkpoint_dir`, and a rerun after a failure resumes from the
//! checkpoints whose inputs did not change." A function in the checkpointed
//! node counts the rows it is evaluated on: a rerun after a failure further
//! down evaluates none, a rerun after the input changed evaluates them all.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};


static EVALUATED: AtomicUsize = AtomicUsize::new(0);

fn register_counter() {
    kiln_tests::register_counting_udf(&EVALUATED);
}

fn spec(dir: &Path, last_step: &str) -> kiln::plan::Pipeline {
    kiln_tests::pipeline(&format!(
        r#"
[pipeline]
name = "ckpt"

[runtime]
checkpoint_dir = "{dir}/checkpoints"

[sources.t]
format = "csv"
path = "{dir}/t.csv"
schema = {{ a = "int64", g = "string" }}

[transforms.x]
type = "with_columns"
input = "t"
checkpoint = true
columns.y = "counted(a) * 2"

[transforms.last]
type = "with_columns"
input = "x"
columns.z = "{last_step}"

[sinks.out]
input = "last"
format = "parquet"
path = "{dir}/out"
"#,
        dir = dir.display()
    ))
}

fn write_data(dir: &Path, rows: usize) {
    let mut text = String::from("a,g\n");
    for i in 0..rows {
        text.push_str(&format!("{i},{}\n", ["p", "q"][i % 2]));
    }
    std::fs::write(dir.join("t.csv"), text).unwrap();
}

/// Runs the pipeline; returns whether it succeeded and how many rows `counted` saw.
fn run(p: &kiln::plan::Pipeline) -> (bool, usize) {
    let before = EVALUATED.load(Ordering::SeqCst);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let ok = rt.block_on(kiln::run::run(p, &Default::default())).is_ok();
    (ok, EVALUATED.load(Ordering::SeqCst) - before)
}

#[test]
fn a_rerun_resumes_from_checkpoints_whose_inputs_did_not_change() {
    register_counter();
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 1000);

    // A step after the checkpoint fails at run time (CAST of 'p' to int): nothing is written,
    // but `x` was computed and kept.
    let (ok, evaluated) = run(&spec(dir.path(), "CAST(g AS INT)"));
    assert!(!ok, "the run should fail");
    assert_eq!(evaluated, 1000);
    assert!(!dir.path().join("out").exists());
    assert!(dir.path().join("checkpoints/x/_KILN_CHECKPOINT").exists());

    // Fixed, the rerun reads `x` back: `counted` sees no row; the output is complete.
    let (ok, evaluated) = run(&spec(dir.path(), "length(g)"));
    assert!(ok);
    assert_eq!(evaluated, 0, "x was computed again although its inputs did not change");
    let rows = kiln_tests::read_parquet_rows(&dir.path().join("out"));
    assert_eq!(rows.len(), 1000);
    assert!(rows.iter().all(|r| r["y"] == kiln_tests::Cell::Int(match &r["a"] { kiln_tests::Cell::Int(a) => 2 * a, _ => -1 })));

    // The input changes: `x` is computed again, from the new rows.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_data(dir.path(), 1001);
    let (ok, evaluated) = run(&spec(dir.path(), "length(g)"));
    assert!(ok);
    assert_eq!(evaluated, 1001);
    assert_eq!(kiln_tests::read_parquet_rows(&dir.path().join("out")).len(), 1001);
    // No staging or lock left beside the checkpoint.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("checkpoints")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["x"]);

    // `--metrics` plans the same checkpoint (its markers are no part of the fingerprint):
    // `x` is read back, and counted as the rows read back.
    let before = EVALUATED.load(Ordering::SeqCst);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let report = rt.block_on(kiln::run::run(&spec(dir.path(), "length(g)"), &kiln::run::RunOptions { node_metrics: true, ..Default::default() })).unwrap();
    assert_eq!(EVALUATED.load(Ordering::SeqCst) - before, 0, "a metrics run recomputed the checkpoint");
    assert_eq!((report.nodes["x"].rows_out, report.nodes["last"].rows_out), (1001, 1001));
    // And a plain run after it still finds it valid.
    let (ok, evaluated) = run(&spec(dir.path(), "length(g)"));
    assert!(ok && evaluated == 0);
}
