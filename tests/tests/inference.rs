//! `[models.NAME]` and `predict`: specs/inference.toml against numpy, and the
//! function's contract (list features, several outputs, nulls, batch sizes,
//! one load per process) against values worked out by hand.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};
use kiln_tests::{Cell, Row, build_job, node_rows, pipeline, read_expected_csv, read_parquet_rows, repo_root, sorted};

/// specs/inference.toml on specs/data: the features equal DuckDB's and every
/// score equals numpy's float64 forward pass within 1e-5
/// (tests/fixtures/inference/make_expected.py).
#[test]
fn inference_spec_matches_numpy() {
    let binary = build_job("specs/inference.toml");
    let root = repo_root();
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(&binary)
        .arg("run")
        .arg("--param")
        .arg(format!("data={}", root.join("specs/data").display()))
        .arg("--param")
        .arg(format!("models={}", root.join("specs/models").display()))
        .arg("--param")
        .arg(format!("output={}", out.path().display()))
        .status()
        .unwrap();
    assert!(status.success());
    let got = sorted(read_parquet_rows(&out.path().join("scores.parquet")));
    let expected = sorted(read_expected_csv(&root.join("tests/fixtures/inference/scores.csv")));
    assert_eq!(got.len(), expected.len());
    let mut unsaturated = 0;
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.keys().collect::<Vec<_>>(), e.keys().collect::<Vec<_>>());
        for (k, v) in e {
            match (k.as_str(), &g[k], v) {
                ("score", Cell::Float(a), Cell::Float(b)) => {
                    assert!((a - b).abs() <= 1e-5, "{}: score {a} vs numpy {b}", e["customer_id"].clone().str());
                    unsaturated += usize::from(*b > 0.01 && *b < 0.99);
                }
                (_, got, want) => assert_eq!(got, want, "{k} of {:?}", e["customer_id"]),
            }
        }
    }
    // The comparison means something only if most scores are not pinned at 0 or 1.
    assert!(unsaturated * 2 > expected.len(), "{unsaturated} of {} scores unsaturated", expected.len());
}

trait CellStr {
    fn str(self) -> String;
}
impl CellStr for Cell {
    fn str(self) -> String {
        format!("{self:?}")
    }
}

fn save(dir: &Path, name: &str, tensors: &[(&str, Tensor)]) -> String {
    let path = dir.join(name);
    let map: HashMap<String, Tensor> = tensors.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
    candle_core::safetensors::save(&map, &path).unwrap();
    path.display().to_string()
}

fn spec(model: &str, data: &str, predict: &str) -> String {
    format!("[pipeline]\nname = \"m\"\n{data}\n{model}\n[transforms.scored]\ntype = \"predict\"\n{predict}\n[sinks.out]\ninput = \"scored\"\nformat = \"console\"\n")
}

fn by_id(rows: Vec<Row>) -> Vec<Row> {
    let mut rows = rows;
    rows.sort_by_key(|r| format!("{:?}", r["id"]));
    rows
}

/// y = 1a + 2b + 3c + 0.5, fed as three columns or as one list column: the same
/// scores, and a row with a null feature gets a null score.
#[test]
fn column_and_list_features_agree_with_hand_computation() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let path = save(
        dir.path(),
        "lin.safetensors",
        &[("weight", Tensor::new(&[[1f32, 2., 3.]], &dev).unwrap()), ("bias", Tensor::new(&[0.5f32], &dev).unwrap())],
    );
    let model = format!("[models.lin]\npath = \"{path}\"\narchitecture = \"linear\"\n");
    let data = "[sources.x]\nformat = \"inline\"\nschema = { id = \"int64\", a = \"float64\", b = \"int32\", c = \"float32\" }\nrows = [ { id = 1, a = 1.0, b = 1, c = 1.0 }, { id = 2, a = -2.0, b = 0, c = 0.5 }, { id = 3, a = 1.0, c = 2.0 } ]\n[transforms.v]\ntype = \"with_columns\"\ninput = \"x\"\ncolumns.vec = \"make_array(a, CAST(b AS DOUBLE), CAST(c AS DOUBLE))\"\n";
    let columns = pipeline(&spec(&model, data, "input = \"v\"\nmodel = \"lin\"\nfeatures = [\"a\", \"b\", \"c\"]\noutput = \"y\""));
    let list = pipeline(&spec(&model, data, "input = \"v\"\nmodel = \"lin\"\nfeatures = \"vec\"\noutput = \"y\""));
    // 1+2+3+0.5 = 6.5; -2+0+1.5+0.5 = 0; row 3 has no b.
    let want = [Cell::Float(6.5), Cell::Float(0.0), Cell::Null];
    for p in [&columns, &list] {
        let rows = by_id(node_rows(p, "scored", &[]));
        let got: Vec<Cell> = rows.iter().map(|r| r["y"].clone()).collect();
        assert_eq!(got, want);
        assert!(rows.iter().all(|r| r.contains_key("a") && r.contains_key("vec")), "the input's columns are kept");
    }
}

/// A logistic model with three outputs gives the argmax class and its softmax probability.
#[test]
fn several_outputs_give_class_and_probability() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let path = save(
        dir.path(),
        "three.safetensors",
        &[
            ("weight", Tensor::new(&[[1f32, 0.], [0., 1.], [-1., -1.]], &dev).unwrap()),
            ("bias", Tensor::new(&[0f32, 0., 0.], &dev).unwrap()),
        ],
    );
    let data = "[sources.x]\nformat = \"inline\"\nrows = [ { id = 1, a = 2.0, b = 1.0 }, { id = 2, a = 0.0, b = 3.0 }, { id = 3, a = -5.0, b = -5.0 } ]\n";
    // logistic ends in softmax; linear gives raw scores, whose softmax is the probability.
    for arch in ["logistic", "linear"] {
        let model = format!("[models.cls]\npath = \"{path}\"\narchitecture = \"{arch}\"\n");
        let p = pipeline(&spec(&model, data, "input = \"x\"\nmodel = \"cls\"\nfeatures = [\"a\", \"b\"]\noutput = \"label\""));
        let rows = by_id(node_rows(&p, "scored", &[]));
        let softmax_max = |l: [f64; 3]| {
            let m = l.iter().cloned().fold(f64::MIN, f64::max);
            1.0 / l.iter().map(|x| (x - m).exp()).sum::<f64>()
        };
        // logits (a, b, -a-b): (2, 1, -3) → 0; (0, 3, -3) → 1; (-5, -5, 10) → 2.
        let want = [(0, softmax_max([2., 1., -3.])), (1, softmax_max([0., 3., -3.])), (2, softmax_max([-5., -5., 10.]))];
        for (r, (class, prob)) in rows.iter().zip(want) {
            assert_eq!(r["label"], Cell::Int(class));
            let Cell::Float(p) = r["label_probability"] else { panic!("{r:?}") };
            assert!((p - prob).abs() < 1e-6, "{arch}: {p} vs {prob}");
        }
    }
}

/// Batch sizes 1, 7 and 1024 over 2,500 rows give the same scores, and the
/// model file is read once for all of them (one process, many batches).
#[test]
fn batch_sizes_agree_and_the_model_loads_once() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let path = save(
        dir.path(),
        "mlp.safetensors",
        &[
            ("layers.0.weight", Tensor::new(&[[0.5f32, -1.], [1., 1.], [-0.25, 2.]], &dev).unwrap()),
            ("layers.0.bias", Tensor::new(&[0.1f32, -0.2, 0.], &dev).unwrap()),
            ("layers.1.weight", Tensor::new(&[[1f32, -1., 0.5]], &dev).unwrap()),
            ("layers.1.bias", Tensor::new(&[0.3f32], &dev).unwrap()),
        ],
    );
    let model = format!("[models.net]\npath = \"{path}\"\narchitecture = \"mlp\"\nlayers = [2, 3, 1]\nactivation = \"tanh\"\n");
    let rows: Vec<String> = (0..2500).map(|i| format!("{{ id = {i}, a = {}, b = {} }}", (i % 17) as f64 / 4.0 - 2.0, (i % 11) as f64 / 3.0 - 1.5)).collect();
    let data = format!("[sources.x]\nformat = \"inline\"\nrows = [ {} ]\n", rows.join(", "));
    let reference = |a: f64, b: f64| {
        let h = [(0.5 * a - b + 0.1).tanh(), (a + b - 0.2).tanh(), (-0.25 * a + 2.0 * b).tanh()];
        h[0] - h[1] + 0.5 * h[2] + 0.3
    };
    let before = kiln::models::loads(&path);
    for batch in [1, 7, 1024] {
        let p = pipeline(&spec(&model, &data, &format!("input = \"x\"\nmodel = \"net\"\nfeatures = [\"a\", \"b\"]\nbatch_size = {batch}")));
        let got = by_id(node_rows(&p, "scored", &[]));
        assert_eq!(got.len(), 2500);
        for r in &got {
            let (Cell::Float(a), Cell::Float(b), Cell::Float(y)) = (&r["a"], &r["b"], &r["prediction"]) else { panic!("{r:?}") };
            assert!((y - reference(*a, *b)).abs() < 1e-5, "batch {batch}: {r:?} vs {}", reference(*a, *b));
        }
    }
    assert_eq!(kiln::models::loads(&path) - before, 1, "one load for every batch of every run");
}
