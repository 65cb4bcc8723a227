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
    assert!(plan.contains("SplitExec: #") && plan.contains("input shared"), "{plan}");
    assert!(plan.contains("join strategy: salted"), "{plan}");
    // `explain --analyze` runs the plan: orders 1 and 5 (hot `a`) and 2 (`b`) match a customer.
    let opts = kiln::run::RunOptions { analyze: true, ..Default::default() };
    let analyzed = rt.block_on(kiln::run::explain(&p, &opts)).unwrap();
    assert!(analyzed.contains("(analyzed: 3 rows in "), "{analyzed}");
    assert!(analyzed.contains("metrics=[output_rows="), "{analyzed}");
}

const SKEWED: &str = r#"
[pipeline]
name = "skewed"

[params.dir]
default = "."

[sources.orders]
format = "csv"
path = "${params.dir}/orders"
schema = { oid = "int64", cust = "string", amt = "float64" }

[sources.customers]
format = "csv"
path = "${params.dir}/customers.csv"
schema = { cust = "string", region = "string" }

[transforms.x]
type = "join"
left = "orders"
right = "customers"
on = ["cust"]
how = "HOW"
strategy = "salted"
salt = { buckets = 3, hot_keys = ["h", "g"] }

[sinks.out]
input = "x"
format = "console"
"#;

/// Orders in three files: 90% on the hot key `h`, some on `g` (declared hot,
/// absent from customers), NULL keys, and cold keys of which a fifth have no
/// customer. Returns (orders, customers) as written.
#[allow(clippy::type_complexity)]
fn write_skewed(dir: &std::path::Path) -> (Vec<(i64, Option<String>, f64)>, Vec<(Option<String>, String)>) {
    let mut orders = Vec::new();
    for oid in 0..30_000i64 {
        let cust = match oid % 100 {
            0 => None,
            1 => Some("g".to_string()),
            2..=9 => Some(format!("k{}", oid % 500)),
            _ => Some("h".to_string()),
        };
        orders.push((oid, cust, (oid % 97) as f64 + 0.5));
    }
    std::fs::create_dir_all(dir.join("orders")).unwrap();
    for (n, chunk) in orders.chunks(10_000).enumerate() {
        let text: String = chunk.iter().map(|(o, c, a)| format!("{o},{},{a}\n", c.as_deref().unwrap_or(""))).collect();
        std::fs::write(dir.join(format!("orders/part-{n}.csv")), format!("oid,cust,amt\n{text}")).unwrap();
    }
    let mut customers: Vec<(Option<String>, String)> = (0..400).map(|k| (Some(format!("k{k}")), format!("r{}", k % 7))).collect();
    customers.push((Some("h".into()), "hot".into()));
    customers.push((None, "nowhere".into()));
    let text: String = customers.iter().map(|(c, r)| format!("{},{r}\n", c.as_deref().unwrap_or(""))).collect();
    std::fs::write(dir.join("customers.csv"), format!("cust,region\n{text}")).unwrap();
    (orders, customers)
}

/// The rows of `how`, computed with plain loops (NULL keys never match).
fn expected_join(how: &str, orders: &[(i64, Option<String>, f64)], customers: &[(Option<String>, String)]) -> Vec<Row> {
    let mut out = Vec::new();
    for (oid, cust, amt) in orders {
        let matches: Vec<&String> = customers.iter().filter(|(c, _)| c.is_some() && c == cust).map(|(_, r)| r).collect();
        let cust_cell = cust.as_deref().map_or(N, s);
        let left = |region: Cell| o(i(*oid), cust_cell.clone(), f(*amt), region);
        match how {
            "inner" | "left" => {
                out.extend(matches.iter().map(|r| left(s(r))));
                if how == "left" && matches.is_empty() {
                    out.push(left(N));
                }
            }
            "semi" | "anti" if matches.is_empty() == (how == "anti") => {
                out.push(row(&[("oid", i(*oid)), ("cust", cust_cell.clone()), ("amt", f(*amt))]))
            }
            _ => {}
        }
    }
    sorted(out)
}

/// Node `x` of `p` on a multi-threaded runtime with 4 partitions and small
/// batches; `as_on_a_cluster` runs the plan a Ballista client would send
/// (splits as plain filters). Returns the rows and the physical plan.
fn run_skewed(p: &kiln::plan::Pipeline, dir: &std::path::Path, as_on_a_cluster: bool) -> (Vec<Row>, String) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    rt.block_on(async {
        let values = kiln::params::resolve(&p.params, &[("dir".to_string(), dir.display().to_string())], |_| None).unwrap();
        let opts = kiln::session::SessionOptions { target_partitions: Some(4), batch_size: Some(1000), ..Default::default() };
        let ctx = kiln::session::context(&opts).unwrap();
        let mut plan = kiln::run::node_plans(p, &ctx, &values).await.unwrap()["x"].clone();
        if as_on_a_cluster {
            plan = kiln::cluster::without_hints(plan).unwrap();
        }
        let df = datafusion::dataframe::DataFrame::new(ctx.state(), plan);
        let physical = df.clone().create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(physical.as_ref()).indent(true).to_string();
        (sorted(kiln_tests::batches_to_rows(&df.collect().await.unwrap())), shown)
    })
}

/// The salted plan reads each side once (a shared split) and gives the rows
/// computed by hand, over many batches and partitions, for every join type
/// salting supports; so does the plan sent to a cluster (plain filters).
#[test]
fn salted_joins_over_many_batches_read_each_side_once() {
    let dir = tempfile::tempdir().unwrap();
    let (orders, customers) = write_skewed(dir.path());
    for how in ["inner", "left", "semi", "anti"] {
        let p = pipeline(&SKEWED.replace("HOW", how));
        let expected = expected_join(how, &orders, &customers);
        let (got, plan) = run_skewed(&p, dir.path(), false);
        assert_eq!(got.len(), expected.len(), "{how}");
        assert!(got == expected, "{how}: rows differ from the hand-computed join");
        assert_eq!(plan.matches("input shared").count(), 4, "{how}: both halves of both sides share their input:\n{plan}");
        assert!(plan.contains("mode=CollectLeft"), "{how}: hot rows join a broadcast of the right side's hot rows:\n{plan}");
        let (on_cluster, plan) = run_skewed(&p, dir.path(), true);
        assert!(!plan.contains("SplitExec"), "{plan}");
        assert!(on_cluster == expected, "{how}: the cluster form differs");
    }
}

/// `--memory-limit` given to the binary (not only `[runtime] memory_limit`)
/// reaches the join choice: a hash table of the smaller side that would not
/// fit makes an `auto` join sort-merge.
#[test]
fn memory_limit_flag_reaches_the_join_choice() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "k,a\n1,2\n").unwrap();
    let p = kiln_tests::pipeline(&format!(
        r#"
[pipeline]
name = "mem"

[sources.big]
format = "csv"
path = "{csv}"
schema = {{ k = "int64", a = "int64" }}
size = "8GB"

[sources.other]
format = "csv"
path = "{csv}"
schema = {{ k = "int64", b = "int64" }}
size = "2GB"

[transforms.j]
type = "join"
left = "big"
right = "other"
on = ["k"]

[sinks.out]
input = "j"
format = "console"
"#,
        csv = csv.display()
    ));
    let explain = |limit: Option<u64>| {
        let opts = kiln::run::RunOptions { session: kiln::session::SessionOptions { memory_limit: limit, ..Default::default() }, ..Default::default() };
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(kiln::run::explain(&p, &opts)).unwrap()
    };
    let unlimited = explain(None);
    assert!(!unlimited.contains("sort-merge"), "{unlimited}");
    let limited = explain(Some(1 << 30));
    assert!(limited.contains("sort-merge: a hash table of the smaller side"), "{limited}");
}
