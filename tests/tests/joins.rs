//! `join`: every `how`, keys as shared names (kept once) or as conditions (both
//! columns kept), NULL keys never matching, and the strategy hint reaching the
//! physical hash join. Expected rows are worked out by hand.

use kiln_tests::{Cell, Row, f, i, node_rows, pipeline, row, s, sorted};

const DATA: &str = r#"
[pipeline]
name = "j"

[sources.orders]
format = "inline"
schema = { oid = "int64", cust = "string", amt = "float64" }
rows = [
  { oid = 1, cust = "a", amt = 10.0 },
  { oid = 2, cust = "b", amt = 20.0 },
  { oid = 3, cust = "c", amt = 30.0 },
  { oid = 4, amt = 40.0 },
  { oid = 5, cust = "a", amt = 50.0 },
]

[sources.customers]
format = "inline"
schema = { cust = "string", region = "string" }
rows = [
  { cust = "a", region = "north" },
  { cust = "b", region = "south" },
  { cust = "d", region = "east" },
  { region = "nowhere" },
]

[sources.accounts]
format = "inline"
schema = { id = "string", region = "string" }
rows = [
  { id = "a", region = "north" },
  { id = "b", region = "south" },
]

[sources.sizes]
format = "inline"
rows = [{ size = "S" }, { size = "L" }]
"#;

fn join(keys: &str) -> kiln::plan::Pipeline {
    pipeline(&format!("{DATA}\n[transforms.x]\ntype = \"join\"\n{keys}\n[sinks.out]\ninput = \"x\"\nformat = \"console\"\n"))
}

fn rows(keys: &str) -> Vec<Row> {
    sorted(node_rows(&join(keys), "x", &[]))
}

const N: Cell = Cell::Null;

fn o(oid: Cell, cust: Cell, amt: Cell, region: Cell) -> Row {
    row(&[("oid", oid), ("cust", cust), ("amt", amt), ("region", region)])
}

#[test]
fn inner_left_right_full_on_a_shared_column() {
    let on = "left = \"orders\"\nright = \"customers\"\non = [\"cust\"]";
    assert_eq!(
        rows(&format!("{on}\nhow = \"inner\"")),
        sorted(vec![
            o(i(1), s("a"), f(10.0), s("north")),
            o(i(2), s("b"), f(20.0), s("south")),
            o(i(5), s("a"), f(50.0), s("north")),
        ])
    );
    assert_eq!(
        rows(&format!("{on}\nhow = \"left\"")),
        sorted(vec![
            o(i(1), s("a"), f(10.0), s("north")),
            o(i(2), s("b"), f(20.0), s("south")),
            o(i(3), s("c"), f(30.0), N),
            o(i(4), N, f(40.0), N),
            o(i(5), s("a"), f(50.0), s("north")),
        ])
    );
    // A right join keeps the right side's key, a full join whichever side has it (Spark's USING).
    assert_eq!(
        rows(&format!("{on}\nhow = \"right\"")),
        sorted(vec![
            o(i(1), s("a"), f(10.0), s("north")),
            o(i(2), s("b"), f(20.0), s("south")),
            o(i(5), s("a"), f(50.0), s("north")),
            o(N, s("d"), N, s("east")),
            o(N, N, N, s("nowhere")),
        ])
    );
    assert_eq!(
        rows(&format!("{on}\nhow = \"full\"")),
        sorted(vec![
            o(i(1), s("a"), f(10.0), s("north")),
            o(i(2), s("b"), f(20.0), s("south")),
            o(i(3), s("c"), f(30.0), N),
            o(i(4), N, f(40.0), N),
            o(i(5), s("a"), f(50.0), s("north")),
            o(N, s("d"), N, s("east")),
            o(N, N, N, s("nowhere")),
        ])
    );
}

#[test]
fn semi_and_anti_keep_the_left_columns_and_null_keys_never_match() {
    let on = "left = \"orders\"\nright = \"customers\"\non = [\"cust\"]";
    let l = |oid, cust, amt| row(&[("oid", oid), ("cust", cust), ("amt", amt)]);
    assert_eq!(
        rows(&format!("{on}\nhow = \"semi\"")),
        sorted(vec![l(i(1), s("a"), f(10.0)), l(i(2), s("b"), f(20.0)), l(i(5), s("a"), f(50.0))])
    );
    assert_eq!(rows(&format!("{on}\nhow = \"anti\"")), sorted(vec![l(i(3), s("c"), f(30.0)), l(i(4), N, f(40.0))]));
}

#[test]
fn conditions_keep_both_columns_and_may_filter() {
    let got = rows("left = \"orders\"\nright = \"accounts\"\non = [\"orders.cust = accounts.id\", \"orders.amt > 15\"]");
    let r = |oid, cust: &str, amt, id: &str, region: &str| {
        row(&[("oid", i(oid)), ("cust", s(cust)), ("amt", f(amt)), ("id", s(id)), ("region", s(region))])
    };
    assert_eq!(got, sorted(vec![r(2, "b", 20.0, "b", "south"), r(5, "a", 50.0, "a", "north")]));
    // Written the other way round, the same keys.
    let swapped = rows("left = \"orders\"\nright = \"accounts\"\non = [\"accounts.id = orders.cust\", \"orders.amt > 15\"]");
    assert_eq!(swapped, got);
}

#[test]
fn cross_join_pairs_every_row() {
    let got = rows("left = \"customers\"\nright = \"sizes\"\nhow = \"cross\"");
    assert_eq!(got.len(), 8);
    assert_eq!(got.iter().filter(|r| r["size"] == s("S")).count(), 4);
    assert_eq!(got.iter().filter(|r| r["region"] == s("east")).count(), 2);
}

fn explain(strategy: &str, how: &str) -> String {
    let p = join(&format!("left = \"orders\"\nright = \"customers\"\non = [\"cust\"]\nhow = \"{how}\"\nstrategy = \"{strategy}\""));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let opts = kiln::run::RunOptions {
        session: kiln::session::SessionOptions { target_partitions: Some(4), ..Default::default() },
        ..Default::default()
    };
    rt.block_on(kiln::run::explain(&p, &opts)).unwrap()
}

fn hash_join_line(plan: &str) -> &str {
    plan.lines().find(|l| l.contains("HashJoinExec")).unwrap_or_else(|| panic!("no hash join in\n{plan}"))
}

#[test]
fn broadcast_and_shuffle_hints_reach_the_physical_plan() {
    // Broadcast: the hinted (right) side is the build side, collected once.
    let plan = explain("broadcast", "inner");
    let line = hash_join_line(&plan);
    assert!(line.contains("mode=CollectLeft"), "{plan}");
    assert!(plan.contains("JoinHint: broadcast"), "the logical plan shows the hint: {plan}");
    assert!(!plan.contains("JoinHintExec"), "the physical markers are removed: {plan}");
    assert!(plan.contains("strategy broadcast"), "explain names the strategy: {plan}");
    // A left join broadcasts the right side: DataFusion runs it as a right join with the sides swapped.
    let plan = explain("broadcast", "left");
    assert!(hash_join_line(&plan).contains("mode=CollectLeft") && hash_join_line(&plan).contains("join_type=Right"), "{plan}");
    // Shuffle: both sides hash-partitioned on the key (DataFusion adds the
    // repartitioning wherever an input has more than one partition).
    let plan = explain("shuffle", "inner");
    assert!(hash_join_line(&plan).contains("mode=Partitioned"), "{plan}");
}

#[test]
fn hints_do_not_change_results() {
    for how in ["inner", "left", "right", "semi", "anti"] {
        let on = format!("left = \"orders\"\nright = \"customers\"\non = [\"cust\"]\nhow = \"{how}\"");
        let plain = rows(&on);
        for strategy in ["broadcast", "shuffle"] {
            assert_eq!(rows(&format!("{on}\nstrategy = \"{strategy}\"")), plain, "{how} {strategy}");
        }
    }
}

#[test]
fn sort_merge_joins_give_the_same_rows() {
    for how in ["inner", "left", "right", "full", "semi", "anti"] {
        let mut p = join(&format!("left = \"orders\"\nright = \"customers\"\non = [\"cust\"]\nhow = \"{how}\""));
        let plain = sorted(node_rows(&p, "x", &[]));
        for node in &mut p.nodes {
            if let kiln::plan::Op::Join { strategy, .. } = &mut node.op {
                *strategy = kiln::plan::JoinStrategy::SortMerge;
            }
        }
        assert_eq!(sorted(node_rows(&p, "x", &[])), plain, "{how}");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let plan = rt.block_on(kiln::run::explain(&p, &Default::default())).unwrap();
        assert!(plan.contains("SortMergeJoin"), "{plan}");
    }
}

#[test]
fn auto_joins_are_decided_from_the_data_and_explained() {
    // customers.parquet (100k rows, ~3.4 MB) is under the default 10 MB threshold: broadcast.
    let spec = |extra: &str| {
        format!(
            "[pipeline]\nname = \"a\"\n{extra}\n[sources.orders]\nformat = \"parquet\"\npath = \"specs/data/orders_skewed.parquet\"\n[sources.customers]\nformat = \"parquet\"\npath = \"specs/data/customers.parquet\"\n[transforms.x]\ntype = \"join\"\nleft = \"orders\"\nright = \"customers\"\non = [\"customer_id\"]\nhow = \"right\"\n{{STRATEGY}}\n[sinks.out]\ninput = \"x\"\nformat = \"console\"\n"
        )
    };
    let p = pipeline(&spec("").replace("{STRATEGY}", ""));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cwd_relative = rt.block_on(async {
        let root = kiln_tests::repo_root();
        let values = kiln::params::resolve(&p.params, &[], |_| None).unwrap();
        let estimates = kiln::stats::estimate(&p, &values, &root);
        kiln::strategy::choose(&p, &estimates, None)
    });
    // A right join keeps every right row: only the left (orders, 1k rows) may be broadcast.
    assert_eq!(cwd_relative.strategies["x"], kiln::plan::JoinStrategy::Broadcast { side: kiln::plan::Side::Left });
    let notes: Vec<&str> = cwd_relative.notes.iter().map(|(_, n)| n.as_str()).collect();
    assert!(notes.iter().any(|n| n.starts_with("estimate: ~100 k rows, ~3.2 MB (Parquet footers of 1 file(s))")), "{notes:?}");
    assert!(notes.iter().any(|n| n.starts_with("join strategy: broadcast `orders`")), "{notes:?}");

    // A broadcast hint on a side far over the threshold is a warning at check time.
    let text = spec("[runtime]\nbroadcast_threshold = \"100KB\"").replace("{STRATEGY}", "strategy = \"broadcast\"").replace("how = \"right\"", "how = \"right\"");
    let text = text.replace("left = \"orders\"\nright = \"customers\"", "left = \"customers\"\nright = \"orders\"");
    let checked = kiln_compiler::check_text(std::path::Path::new("a.toml"), &text, &kiln_tests::repo_root());
    assert!(!checked.has_errors(), "{}", checked.render(false));
    let shown = checked.render(false);
    assert!(shown.contains("warning[kiln::suspicious-hint]") && shown.contains("broadcasting `customers`, estimated at ~100 k rows"), "{shown}");
}

/// Salting only moves hot-key rows around: every join type it supports gives
/// the unsalted rows, with NULL keys, hot keys missing on the right, and keys
/// missing everywhere.
#[test]
fn salted_joins_equal_unsalted_ones() {
    for how in ["inner", "left", "semi", "anti"] {
        let on = format!("left = \"orders\"\nright = \"customers\"\non = [\"cust\"]\nhow = \"{how}\"");
        let plain = rows(&on);
        for salt in [
            "strategy = \"salted\"\nsalt = { buckets = 3, hot_keys = [\"a\", \"c\", \"zz\"] }",
            "salt = { hot_keys = [\"a\"] }",
            "strategy = \"salted\"\nsalt = { buckets = 4, detect = true, threshold = 0.3 }",
        ] {
            assert_eq!(rows(&format!("{on}\n{salt}")), plain, "{how} with {salt}");
        }
        let keys = format!("left = \"orders\"\nright = \"accounts\"\non = [\"orders.cust = accounts.id\"]\nhow = \"{how}\"");
        assert_eq!(rows(&format!("{keys}\nstrategy = \"salted\"\nsalt = {{ buckets = 2, hot_keys = [\"a\", \"b\"] }}")), rows(&keys), "{how} on a condition");
    }
}

#[test]
fn salted_plans_split_hot_and_cold_keys() {
    let p = join("left = \"orders\"\nright = \"customers\"\non = [\"cust\"]\nstrategy = \"salted\"\nsalt = { buckets = 3, hot_keys = [\"a\"] }");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plan = rt.block_on(kiln::run::explain(&p, &Default::default())).unwrap();
    assert!(plan.contains("Union"), "{plan}");
    assert!(plan.contains("__kiln_salt"), "{plan}");
    assert!(plan.contains("join strategy: salted"), "{plan}");
}
