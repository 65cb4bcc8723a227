//! SPEC §1: "any transform may feed several others (computed once)". A node
//! read by two sinks, an `expect` node, its quarantine and the expect's
//! summary is computed once per run — shown by a function in it that counts
//! the rows it is evaluated on — also when the readers' queues must spill
//! under a small memory limit.

use std::sync::atomic::{AtomicUsize, Ordering};


static EVALUATED: AtomicUsize = AtomicUsize::new(0);

fn register_counter() {
    kiln_tests::register_counting_udf(&EVALUATED);
}

const ROWS: usize = 400_000;

fn spec(data: &std::path::Path, out: &std::path::Path, runtime: &str) -> String {
    format!(
        r#"
[pipeline]
name = "shared"

[runtime]
{runtime}

[sources.t]
format = "csv"
path = "{data}"
schema = {{ a = "int64", g = "string" }}

[transforms.x]
type = "with_columns"
input = "t"
columns.y = "counted(a) * 2"

[transforms.large]
type = "filter"
input = "x"
predicate = "y >= 100"

[transforms.checked]
type = "expect"
input = "x"
rules.even = {{ check = "a % 2 = 0", on_fail = "quarantine" }}

[sinks.all]
input = "x"
format = "csv"
path = "{out}/all"

[sinks.big]
input = "large"
format = "csv"
path = "{out}/big"

[sinks.good]
input = "checked"
format = "csv"
path = "{out}/good"

[sinks.odd]
input = "checked.quarantine"
format = "json"
path = "{out}/odd"
"#,
        data = data.display(),
        out = out.display()
    )
}

fn run(runtime: &str) -> (usize, Vec<(String, Option<u64>)>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t.csv");
    let mut text = String::from("a,g\n");
    for i in 0..ROWS {
        text.push_str(&format!("{i},{}\n", ["p", "q", "r"][i % 3]));
    }
    std::fs::write(&data, text).unwrap();
    let pipeline = kiln_tests::pipeline(&spec(&data, &dir.path().join("out"), runtime));
    let before = EVALUATED.load(Ordering::SeqCst);
    let report = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(kiln::run::run(&pipeline, &Default::default()))
        .unwrap();
    let evaluated = EVALUATED.load(Ordering::SeqCst) - before;
    let mut sinks: Vec<(String, Option<u64>)> = report.sinks.iter().map(|s| (s.name.clone(), s.rows)).collect();
    sinks.sort();
    // What was written, counted independently of the run's report.
    let lines: usize = kiln_tests::part_files(&dir.path().join("out/all")).iter().map(|(f, _)| std::fs::read_to_string(f).unwrap().lines().count() - 1).sum();
    assert_eq!(lines, ROWS);
    (evaluated, sinks)
}

fn expected_sinks() -> Vec<(String, Option<u64>)> {
    let big = (0..ROWS).filter(|i| i * 2 >= 100).count() as u64;
    let even = (0..ROWS).filter(|i| i % 2 == 0).count() as u64;
    let mut v = vec![
        ("all".to_string(), Some(ROWS as u64)),
        ("big".to_string(), Some(big)),
        ("good".to_string(), Some(even)),
        ("odd".to_string(), Some(ROWS as u64 - even)),
    ];
    v.sort();
    v
}

#[test]
fn a_node_read_by_many_is_computed_once() {
    register_counter();
    // Five readers of `x` (two sinks through `x`/`big`, the expect node, its
    // quarantine, the summary): without sharing, `counted` would see 5 × ROWS.
    let (evaluated, sinks) = run("target_partitions = 2");
    assert_eq!(sinks, expected_sinks());
    assert_eq!(evaluated, ROWS, "x was computed {} times", evaluated as f64 / ROWS as f64);

    // Under a memory limit far below the node's size, lagging readers spill and
    // read back; the result and the count are the same.
    // A queue spills when its reader lags past the producer's patience (20 ms) with the
    // queue full, which depends on the machine's timing: each run must be right, and
    // some run of up to five must spill (one did not, once, in CI).
    let mut spilled_once = false;
    for _ in 0..5 {
        let spilled = kiln::shared::spilled_batches();
        let (evaluated, sinks) = run("target_partitions = 2\nbatch_size = 4096\nmemory_limit = \"48MB\"");
        assert_eq!(sinks, expected_sinks());
        assert_eq!(evaluated, ROWS, "x was computed {} times under the memory limit", evaluated as f64 / ROWS as f64);
        if kiln::shared::spilled_batches() > spilled {
            spilled_once = true;
            break;
        }
    }
    assert!(spilled_once, "no reader's queue spilled in five runs");
}

/// A shared node inside another (source `t` read by `x` and `y`, `x` read by
/// two sinks), on one partition: the inner node is started while the outer one
/// starts its input — neither waits on the other.
#[test]
fn nested_shared_nodes_on_one_partition_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t.csv");
    std::fs::write(&data, "a,g\n1,p\n2,q\n3,r\n").unwrap();
    let out = dir.path().join("out");
    let p = kiln_tests::pipeline(&format!(
        r#"
[pipeline]
name = "nested"

[runtime]
target_partitions = 1

[sources.t]
format = "csv"
path = "{data}"
schema = {{ a = "int64", g = "string" }}

[transforms.x]
type = "with_columns"
input = "t"
columns.b = "a * 10"

[transforms.y]
type = "filter"
input = "t"
predicate = "a > 1"

[sinks.x1]
input = "x"
format = "csv"
path = "{out}/x1"

[sinks.x2]
input = "x"
format = "csv"
path = "{out}/x2"

[sinks.y1]
input = "y"
format = "csv"
path = "{out}/y1"
"#,
        data = data.display(),
        out = out.display()
    ));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let report = rt
        .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(60), kiln::run::run(&p, &Default::default())).await })
        .expect("the run deadlocked")
        .unwrap();
    let mut rows: Vec<(String, Option<u64>)> = report.sinks.iter().map(|s| (s.name.clone(), s.rows)).collect();
    rows.sort();
    assert_eq!(rows, [("x1".to_string(), Some(3)), ("x2".to_string(), Some(3)), ("y1".to_string(), Some(2))]);
}
