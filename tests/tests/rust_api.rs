//! The Rust side of a spec: `#[kiln::udf]` functions of every supported type
//! and a `#[kiln::model]` type (tests/fixtures/rust_api/udfs.rs), compiled into
//! the job binary from `[pipeline] udfs` and called from the spec.

use std::process::Command;

use kiln_tests::{Cell, build_job, read_parquet_rows, repo_root};

#[test]
fn udfs_and_a_rust_model_run_in_the_binary() {
    let binary = build_job("tests/fixtures/rust_api/custom.toml");
    let dir = repo_root().join("tests/fixtures/rust_api");
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(&binary)
        .args(["run", "--param"])
        .arg(format!("output={}", out.path().display()))
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let mut rows = read_parquet_rows(&out.path().join("out.parquet"));
    rows.sort_by_key(|r| format!("{:?}", r["id"]));
    let s = |v: &str| Cell::Str(v.into());
    let col = |name: &str| rows.iter().map(|r| r[name].clone()).collect::<Vec<_>>();
    // Strings in and out; a null &str makes the result null, an Option<&str> sees None.
    assert_eq!(col("loud"), [s("ADA"), Cell::Null, s("BO")]);
    assert_eq!(col("named"), [s("ada"), s("none"), s("bo")]);
    // bool result; i64 parameter, null in → null out.
    assert_eq!(col("big"), [s("true"), s("false"), Cell::Null]);
    // NaiveDate in and out (leap day, year end).
    assert_eq!(col("tomorrow"), [s("2024-02-29"), s("2025-01-01"), Cell::Null]);
    // A function named `rows` (a name the generated loop uses too) is still the user's.
    assert_eq!(col("hundred"), [Cell::Int(1100), Cell::Int(1000), Cell::Null]);
    // Option<f32> result: None is null.
    assert_eq!(col("halved"), [Cell::Float(1.5), Cell::Null, Cell::Float(0.5)]);

    // The #[kiln::model]: tanh(x · weightᵀ + bias) with the file's weights, computed here in f64.
    let tensors = kiln::candle::safetensors::load(repo_root().join("specs/models/customer_linear.safetensors"), &kiln::candle::Device::Cpu).unwrap();
    let w: Vec<f32> = tensors["weight"].flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = tensors["bias"].to_vec1().unwrap();
    let features = |r: &kiln_tests::Row| -> Option<Vec<f64>> {
        ["a", "b", "c", "e", "g"].iter().map(|k| if let Cell::Float(v) = r[*k] { Some(v) } else { None }).collect()
    };
    for r in &rows {
        match (features(r), &r["y"]) {
            (Some(x), Cell::Float(y)) => {
                let want = (x.iter().zip(&w).map(|(x, w)| x * f64::from(*w)).sum::<f64>() + f64::from(b[0])).tanh();
                assert!((y - want).abs() < 1e-6, "{r:?}: {y} vs {want}");
            }
            (None, Cell::Null) => {}
            other => panic!("{r:?}: {other:?}"),
        }
    }
}

/// A panic inside a `#[kiln::udf]` body is a run error naming the function
/// (exit 1), not an abort with a backtrace; nothing is written.
#[test]
fn a_panicking_udf_fails_the_run_naming_it() {
    fn boom(args: &[datafusion::logical_expr::ColumnarValue], _rows: usize) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        let _ = args;
        panic!("negative input");
    }
    kiln::functions::register_udfs([kiln::udfs::RustUdf::new("boom", vec![datafusion::arrow::datatypes::DataType::Int64], datafusion::arrow::datatypes::DataType::Int64, boom)]);
    let out = tempfile::tempdir().unwrap();
    let p = kiln_tests::pipeline(&format!(
        "[pipeline]\nname = \"p\"\n[sources.t]\nformat = \"inline\"\nrows = [ {{ x = 1 }} ]\n[transforms.y]\ntype = \"with_columns\"\ninput = \"t\"\ncolumns.z = \"boom(x)\"\n[sinks.out]\ninput = \"y\"\nformat = \"parquet\"\npath = \"{}/out\"\n",
        out.path().display()
    ));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let err = rt.block_on(kiln::run::run(&p, &Default::default())).unwrap_err();
    assert!(err.to_string().contains("#[kiln::udf] `boom` panicked") && err.to_string().contains("negative input"), "{err}");
    assert_eq!(kiln::cli::exit_code(&err), 1);
    assert!(!out.path().join("out").exists());
}
