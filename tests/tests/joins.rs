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
