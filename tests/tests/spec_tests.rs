//! `[[tests]]` with fixture files: inputs and expectations read from csv, json
//! and parquet files with the node's schema.

use kiln_tests::pipeline;

#[test]
fn fixtures_feed_inputs_and_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("orders.csv"), "id,amount\no1,50.0\no2,5.0\no3,20.0\n").unwrap();
    std::fs::write(d.join("big.json"), "{\"id\":\"o1\",\"amount\":50.0}\n{\"id\":\"o3\",\"amount\":20.0}\n").unwrap();
    std::fs::write(d.join("wrong.csv"), "id,amount\no1,50.0\n").unwrap();
    let spec = |expect_path: &str| {
        pipeline(&format!(
            r#"[pipeline]
name = "f"
[sources.orders]
format = "csv"
path = "unused.csv"
schema = {{ id = "string", amount = "float64" }}
[transforms.big]
type = "filter"
input = "orders"
predicate = "amount > 10"
[sinks.out]
input = "big"
format = "console"
[[tests]]
name = "from fixtures"
inputs.orders.path = "{d}/orders.csv"
expect.big.path = "{d}/{expect_path}"
expect.big.count = 2
"#,
            d = d.display()
        ))
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let outcomes = rt.block_on(kiln::testing::run_all(&spec("big.json")));
    assert!(outcomes[0].passed(), "{:?}", outcomes[0].failures);
    let outcomes = rt.block_on(kiln::testing::run_all(&spec("wrong.csv")));
    let failure = outcomes[0].failures.join("\n");
    assert!(failure.contains("0 row(s) missing, 1 extra") && failure.contains("extra:   {id: \"o3\", amount: 20}"), "{failure}");
}
