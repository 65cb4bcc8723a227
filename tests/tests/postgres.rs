//! PostgreSQL sources and sinks against a real server (issue 18): each test
//! starts its own cluster (Debian's `postgresql`, see `kiln_tests::postgres`)
//! and loads `tests/postgres/setup.sql` with psql. Expected rows are written by
//! hand from that file, or read back with psql.

use kiln_tests::postgres::{CERT_USER, PASSWORD, Postgres};
use kiln_tests::{Cell, f, i, node_rows, pipeline, repo_root, row, s, sorted};

fn setup() -> Postgres {
    let pg = Postgres::start();
    pg.psql_file(&repo_root().join("tests/postgres/setup.sql"));
    pg
}

fn run(p: &kiln::plan::Pipeline) -> kiln::Result<kiln::run::Report> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(kiln::run::run(p, &Default::default()))
}

fn check(text: &str) -> kiln_compiler::Checked {
    kiln_compiler::check_text(std::path::Path::new("test.toml"), text, &repo_root())
}

#[test]
fn reads_every_type_as_the_readme_maps_it() {
    let pg = setup();
    let p = pipeline(&format!(
        r#"
[pipeline]
name = "types"
[sources.t]
format = "postgres"
url = "{url}"
table = "kiln_types"
[transforms.shown]
type = "sql"
inputs = ["t"]
query = "SELECT id, small, big, price, ratio, r4, name, code, flag, day, ts, tstz, encode(blob, 'hex') AS blob, uid, doc, array_to_string(tags, '|') AS tags, array_length(nums) AS n_nums, nums[1] AS num1, nums[2] AS num2, anyn FROM t"
[sinks.out]
input = "shown"
format = "console"
"#,
        url = pg.url()
    ));
    let got = sorted(node_rows(&p, "shown", &[]));
    let expected = sorted(vec![
        row(&[
            ("id", i(1)), ("small", i(7)), ("big", i(9_000_000_000)), ("price", s("12345.67")), ("ratio", f(0.5)), ("r4", f(1.25)),
            ("name", s("ann")), ("code", s("A1")), ("flag", s("true")), ("day", s("2024-02-29")), ("ts", s("2024-03-01T10:00:00.123456")),
            // 10:00 at +02 is 08:00 UTC.
            ("tstz", s("2024-03-01T08:00:00Z")), ("blob", s("00ff10")), ("uid", s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
            ("doc", s(r#"{"k": [1, 2]}"#)), ("tags", s("x|y")), ("n_nums", i(3)), ("num1", i(1)), ("num2", Cell::Null), ("anyn", s("3.141590000000000000")),
        ]),
        row(&[
            ("id", i(2)), ("small", i(-7)), ("big", i(-1)), ("price", s("-0.05")), ("ratio", f(-1e300)), ("r4", f(-2.5)),
            ("name", s("bö")), ("code", s("B")), ("flag", s("false")), ("day", s("1969-12-31")), ("ts", s("1999-12-31T23:59:59")),
            ("tstz", s("1970-01-01T00:00:00Z")), ("blob", s("")), ("uid", s("00000000-0000-0000-0000-000000000000")),
            ("doc", s("[]")), ("tags", s("")), ("n_nums", i(0)), ("num1", Cell::Null), ("num2", Cell::Null), ("anyn", s("-0.000001000000000000")),
        ]),
        row(&[
            ("id", i(3)), ("small", Cell::Null), ("big", Cell::Null), ("price", Cell::Null), ("ratio", Cell::Null), ("r4", Cell::Null),
            ("name", Cell::Null), ("code", Cell::Null), ("flag", Cell::Null), ("day", Cell::Null), ("ts", Cell::Null),
            ("tstz", Cell::Null), ("blob", Cell::Null), ("uid", Cell::Null), ("doc", Cell::Null), ("tags", Cell::Null), ("n_nums", Cell::Null),
            ("num1", Cell::Null), ("num2", Cell::Null), ("anyn", Cell::Null),
        ]),
    ]);
    assert_eq!(got, expected);
    // The schema pinned at check time is the server's, mapped as the README says.
    let src = p.nodes.iter().find(|n| n.name == "t").unwrap();
    let kiln::plan::Op::Source(src) = &src.op else { panic!() };
    let types: Vec<String> = src.schema.fields().iter().map(|f| format!("{}:{}", f.name(), f.data_type())).collect();
    assert_eq!(
        types.join(" "),
        "id:Int32 small:Int16 big:Int64 price:Decimal128(10, 2) ratio:Float64 r4:Float32 name:Utf8 code:Utf8 flag:Boolean day:Date32 \
         ts:Timestamp(µs) tstz:Timestamp(µs, \"UTC\") blob:Binary uid:Utf8 doc:Utf8 tags:List(Utf8) nums:List(Int32) anyn:Decimal128(38, 18)"
    );
}

/// Sum, count and count of NULL customers, by psql, for comparison.
fn psql_totals(pg: &Postgres, relation: &str) -> String {
    pg.psql(&format!("SELECT sum(amount)::text, count(*), count(*) FILTER (WHERE customer_id IS NULL) FROM {relation}"))
}

#[test]
fn partitioned_reads_cover_every_row_once_and_push_filters_down() {
    let pg = setup();
    let p = pipeline(&format!(
        r#"
[pipeline]
name = "parts"
[sources.orders]
format = "postgres"
url = "{url}"
table = "public.orders"
partition_column = "id"
partitions = 4
[sources.sparse]
format = "postgres"
url = "{url}"
query = "SELECT k, v FROM sparse"
partition_column = "k"
partitions = 3
lower_bound = 0
upper_bound = 90
[transforms.totals]
type = "aggregate"
input = "orders"
aggregates.total = "sum(amount)"
aggregates.n = "count(*)"
aggregates.no_customer = "count(*) - count(customer_id)"
[transforms.mine]
type = "filter"
input = "orders"
predicate = "customer_id = 7 AND amount > 100"
[sinks.a]
input = "totals"
format = "console"
"#,
        url = pg.url()
    ));
    let totals = node_rows(&p, "totals", &[]);
    let psql: Vec<String> = psql_totals(&pg, "orders").split('|').map(String::from).collect();
    assert_eq!(totals, vec![row(&[("total", s(&psql[0])), ("n", i(psql[1].parse().unwrap())), ("no_customer", i(psql[2].parse().unwrap()))])]);
    // Four COPYs, one per range, the first taking the NULLs (Spark's JDBC ranges).
    let log = pg.log();
    let copies: Vec<&str> = log.lines().filter(|l| l.contains("COPY (SELECT") && l.contains("FROM \"public\".\"orders\"")).collect();
    assert_eq!(copies.len(), 4, "{copies:#?}");
    assert!(copies.iter().any(|c| c.contains("IS NULL")), "{copies:#?}");
    // Bounds only set the stride: NULL keys and keys outside them are read too.
    let sparse = sorted(node_rows(&p, "sparse", &[]));
    let vs: Vec<Cell> = sparse.iter().map(|r| r["v"].clone()).collect();
    assert_eq!(sparse.len(), 5, "{sparse:?}");
    for v in ["null-key", "one", "fifty", "hundred", "null-key-2"] {
        assert!(vs.contains(&s(v)), "{v} missing from {vs:?}");
    }
    // Filters on non-text columns reach the server; only the columns used are read.
    let mine = node_rows(&p, "mine", &[]);
    let expected: usize = pg.psql("SELECT count(*) FROM orders WHERE customer_id = 7 AND amount > 100").parse().unwrap();
    assert_eq!(mine.len(), expected);
    let log = pg.log();
    assert!(log.lines().any(|l| l.contains("COPY (SELECT") && l.contains("customer_id") && l.contains("= 7")), "no pushed-down filter in the server log");
    let totals_copy = log.lines().find(|l| l.contains("COPY (SELECT") && l.contains("orders") && !l.contains("status")).is_some();
    assert!(totals_copy, "the aggregate read every column");
}

#[test]
fn sinks_append_overwrite_and_upsert_in_one_transaction_each() {
    let pg = setup();
    let spec = |mode: &str, extra: &str, table: &str| {
        format!(
            r#"
[pipeline]
name = "sink_{mode}"
[sources.orders]
format = "postgres"
url = "{url}"
table = "orders"
[transforms.per_customer]
type = "aggregate"
input = "orders"
group_by = ["customer_id"]
aggregates.total = "sum(amount)"
aggregates.n = "count(*)"
[transforms.some]
type = "filter"
input = "per_customer"
predicate = "customer_id IS NOT NULL AND customer_id < 5"
[sinks.out]
input = "some"
format = "postgres"
url = "{url}"
table = "{table}"
mode = "{mode}"
{extra}
"#,
            url = pg.url()
        )
    };
    let expected = pg.psql("SELECT customer_id, sum(amount), count(*) FROM orders WHERE customer_id < 5 GROUP BY 1 ORDER BY 1");
    // overwrite: the old rows go, the defaults of columns the rows lack apply.
    let report = run(&pipeline(&spec("overwrite", "", "totals"))).unwrap();
    assert_eq!(report.sinks[0].rows, Some(5));
    assert!(!report.sinks[0].path.contains(PASSWORD), "{}", report.sinks[0].path);
    assert_eq!(pg.psql("SELECT customer_id, total, n FROM totals ORDER BY 1"), expected);
    assert_eq!(pg.psql("SELECT DISTINCT note FROM totals"), "from kiln");
    // upsert: matched keys updated, others inserted; rows not in the data kept.
    pg.psql("UPDATE totals SET total = 0, n = 0 WHERE customer_id = 1; DELETE FROM totals WHERE customer_id = 2; INSERT INTO totals VALUES (999, 9.99, 9, 'untouched')");
    run(&pipeline(&spec("upsert", "keys = [\"customer_id\"]", "totals"))).unwrap();
    assert_eq!(pg.psql("SELECT customer_id, total, n FROM totals WHERE customer_id < 5 ORDER BY 1"), expected);
    assert_eq!(pg.psql("SELECT total, n, note FROM totals WHERE customer_id = 999"), "9.99|9|untouched");
    // append to a table that does not exist: created from the rows' schema, twice the rows after two runs.
    let err = run(&pipeline(&spec("append", "", "kiln_new.totals_copy"))).unwrap_err().to_string();
    assert!(err.contains("kiln_new") && err.contains("does not exist"), "{err}");
    pg.psql("CREATE SCHEMA kiln_new");
    run(&pipeline(&spec("append", "", "kiln_new.totals_copy"))).unwrap();
    run(&pipeline(&spec("append", "", "kiln_new.totals_copy"))).unwrap();
    assert_eq!(pg.psql("SELECT count(*), count(DISTINCT customer_id) FROM kiln_new.totals_copy"), "10|5");
    assert_eq!(
        pg.psql("SELECT column_name || ':' || data_type FROM information_schema.columns WHERE table_name = 'totals_copy' ORDER BY ordinal_position"),
        "customer_id:integer\ntotal:numeric\nn:bigint"
    );
    // error_if_exists refuses an existing table before anything runs; ignore skips it.
    let err = run(&pipeline(&spec("error_if_exists", "", "totals"))).unwrap_err().to_string();
    assert!(err.contains("exists"), "{err}");
    let report = run(&pipeline(&spec("ignore", "", "totals"))).unwrap();
    assert_eq!(report.sinks[0].rows, None);
    run(&pipeline(&spec("error_if_exists", "", "fresh_totals"))).unwrap();
    assert_eq!(pg.psql("SELECT count(*) FROM fresh_totals"), "5");
}

#[test]
fn a_failed_run_leaves_every_table_as_it_was() {
    let pg = setup();
    // Two sinks: the first overwrites a table without constraints, the second breaks
    // a CHECK constraint; neither may commit.
    pg.psql("CREATE TABLE strict_totals (LIKE totals INCLUDING ALL); CREATE TABLE plain_totals (LIKE totals); INSERT INTO plain_totals SELECT * FROM totals");
    let before = pg.psql("SELECT * FROM plain_totals ORDER BY 1");
    let p = pipeline(&format!(
        r#"
[pipeline]
name = "atomic"
[sources.rows]
format = "inline"
schema = {{ customer_id = "int32", total = "float64", n = "int32" }}
rows = [{{ customer_id = 5, total = 1.5, n = 1 }}, {{ customer_id = 6, total = -3.0, n = 2 }}]
[sinks.good]
input = "rows"
format = "postgres"
url = "{url}"
table = "plain_totals"
mode = "overwrite"
[sinks.bad]
input = "rows"
format = "postgres"
url = "{url}"
table = "strict_totals"
mode = "append"
"#,
        url = pg.url()
    ));
    let err = run(&p).unwrap_err().to_string();
    assert!(err.contains("strict_totals") && err.contains("check constraint"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    assert_eq!(pg.psql("SELECT * FROM plain_totals ORDER BY 1"), before);
    assert_eq!(pg.psql("SELECT count(*) FROM strict_totals"), "0");
    // The same rows without the bad one commit.
    pg.psql("ALTER TABLE strict_totals DROP CONSTRAINT totals_total_check");
    run(&p).unwrap();
    assert_eq!(pg.psql("SELECT customer_id, total, n FROM plain_totals ORDER BY 1"), "5|1.50|1\n6|-3.00|2");
}

#[test]
fn values_are_cast_to_the_tables_column_types() {
    let pg = setup();
    let p = pipeline(&format!(
        r#"
[pipeline]
name = "casts"
[sources.rows]
format = "inline"
schema = {{ id = "string", payload = "string", at = "timestamp" }}
rows = [{{ id = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", payload = "{{\"a\": 1}}", at = "2024-01-02T03:04:05" }}]
[sinks.out]
input = "rows"
format = "postgres"
url = "{url}"
table = "events"
mode = "append"
"#,
        url = pg.url()
    ));
    run(&p).unwrap();
    assert_eq!(pg.psql("SET TIME ZONE 'UTC'; SELECT id, payload->>'a', at FROM events"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|1|2024-01-02 03:04:05+00");
    // An integer too wide for the column is an error, never a silent NULL.
    let p = pipeline(&format!(
        r#"
[pipeline]
name = "overflow"
[sources.rows]
format = "inline"
schema = {{ customer_id = "int64", total = "float64", n = "int64" }}
rows = [{{ customer_id = 7, total = 1.0, n = 9000000000 }}]
[sinks.out]
input = "rows"
format = "postgres"
url = "{url}"
table = "totals"
mode = "append"
"#,
        url = pg.url()
    ));
    let err = run(&p).unwrap_err().to_string();
    assert!(err.contains("`n`"), "{err}");
    assert_eq!(pg.psql("SELECT count(*) FROM totals WHERE customer_id = 7"), "0");
}

#[test]
fn bad_servers_passwords_and_tables_are_named_without_the_password() {
    let pg = setup();
    // A wrong password: `kiln check` cannot ask for the columns, says why, never echoes it.
    let wrong = "not-the-password-5b1e";
    // SAFETY: this variable is read by this test only.
    unsafe { std::env::set_var("KILN_TEST_PG_WRONG_PASSWORD", wrong) };
    let c = check(&format!(
        "[pipeline]\nname = \"w\"\n[sources.o]\nformat = \"postgres\"\nurl = \"{}\"\ntable = \"orders\"\n[sinks.c]\ninput = \"o\"\nformat = \"console\"\n",
        pg.url_with("${env.KILN_TEST_PG_WRONG_PASSWORD}")
    ));
    let text = c.render(false);
    assert!(c.has_errors() && text.contains("password authentication failed"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
    // A missing table names it.
    let c = check(&format!("[pipeline]\nname = \"m\"\n[sources.o]\nformat = \"postgres\"\nurl = \"{}\"\ntable = \"no_such\"\n[sinks.c]\ninput = \"o\"\nformat = \"console\"\n", pg.url()));
    let text = c.render(false);
    assert!(c.has_errors() && text.contains("no_such") && text.contains("does not exist"), "{text}");
    // A column of a type Kiln does not read is named, with the way out.
    pg.psql("CREATE TABLE odd (id int, span interval)");
    let c = check(&format!("[pipeline]\nname = \"i\"\n[sources.o]\nformat = \"postgres\"\nurl = \"{}\"\ntable = \"odd\"\n[sinks.c]\ninput = \"o\"\nformat = \"console\"\n", pg.url()));
    let text = c.render(false);
    assert!(c.has_errors() && text.contains("`span`") && text.contains("interval") && text.contains("cast it in a `query`"), "{text}");
    // A declared column the table lacks is a check error at its name.
    let c = check(&format!("[pipeline]\nname = \"u\"\n[sources.o]\nformat = \"postgres\"\nurl = \"{}\"\ntable = \"orders\"\nschema = {{ id = \"int64\", amount_usd = \"float64\" }}\n[sinks.c]\ninput = \"o\"\nformat = \"console\"\n", pg.url()));
    let text = c.render(false);
    assert!(c.has_errors() && text.contains("amount_usd"), "{text}");
    // A declared schema lets an unreachable server pass `kiln check` (a warning); the run
    // then fails before writing anything, naming the server, not the password.
    let dead = format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/postgres");
    let text = format!(
        "[pipeline]\nname = \"d\"\n[sources.o]\nformat = \"postgres\"\nurl = \"{dead}\"\ntable = \"orders\"\nschema = {{ id = \"int64\" }}\n[sinks.c]\ninput = \"o\"\nformat = \"parquet\"\npath = \"{}/out\"\n",
        pg_tmp().display()
    );
    let c = check(&text);
    assert!(!c.has_errors(), "{}", c.render(false));
    assert!(c.render(false).contains("using the declared `schema`"));
    let err = run(&c.pipeline.unwrap()).unwrap_err().to_string();
    assert!(err.contains("127.0.0.1:1") && !err.contains(PASSWORD), "{err}");
    assert!(!pg_tmp().join("out").exists());
    // A column the table lost since `kiln check` fails the run before any write.
    let p = pipeline(&format!("[pipeline]\nname = \"drift\"\n[sources.o]\nformat = \"postgres\"\nurl = \"{}\"\ntable = \"totals\"\n[sinks.c]\ninput = \"o\"\nformat = \"console\"\n", pg.url()));
    pg.psql("ALTER TABLE totals DROP COLUMN note");
    let err = run(&p).unwrap_err().to_string();
    assert!(err.contains("note") && err.contains("totals"), "{err}");
}

fn pg_tmp() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-pg-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_password_from_the_environment_is_never_printed() {
    let pg = setup();
    // SAFETY: this variable is read by this test only.
    unsafe { std::env::set_var("KILN_TEST_PG_PASSWORD_SECRET", PASSWORD) };
    let url = format!("postgres://postgres:${{env.KILN_TEST_PG_PASSWORD_SECRET}}@127.0.0.1:{}/postgres", pg.port);
    let p = pipeline(&format!(
        "[pipeline]\nname = \"env\"\n[sources.o]\nformat = \"postgres\"\nurl = \"{url}\"\ntable = \"orders\"\n[transforms.one]\ntype = \"limit\"\ninput = \"o\"\nn = 1\n[sinks.c]\ninput = \"one\"\nformat = \"postgres\"\nurl = \"{url}\"\ntable = \"no_schema.t\"\n"
    ));
    let err = run(&p).unwrap_err().to_string();
    assert!(err.contains("no_schema") && !err.contains(PASSWORD), "{err}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let explained = rt.block_on(kiln::run::explain(&p, &Default::default())).unwrap();
    assert!(!kiln::redact::text(&explained).contains(PASSWORD));
    assert!(!explained.contains(PASSWORD), "{explained}");
}

#[test]
fn timestamps_are_utc_whatever_the_servers_time_zone() {
    let pg = setup();
    pg.psql("ALTER DATABASE postgres SET timezone TO 'America/New_York'");
    // A declared `timestamp` over a timestamptz column, and a filter the server evaluates.
    let p = pipeline(&format!(
        "[pipeline]\nname = \"tz\"\n[sources.t]\nformat = \"postgres\"\nurl = \"{}\"\ntable = \"kiln_types\"\nschema = {{ id = \"int32\", tstz = \"timestamp\" }}\n\
         [transforms.late]\ntype = \"filter\"\ninput = \"t\"\npredicate = \"tstz >= CAST('2024-03-01T08:00:00' AS TIMESTAMP)\"\n[sinks.c]\ninput = \"late\"\nformat = \"console\"\n",
        pg.url()
    ));
    // 2024-03-01 10:00+02 is 08:00 UTC (03:00 in New York).
    assert_eq!(node_rows(&p, "late", &[]), vec![row(&[("id", i(1)), ("tstz", s("2024-03-01T08:00:00"))])]);
}

#[test]
fn a_spec_written_from_the_contract_alone_runs_and_reruns() {
    let pg = setup();
    // SAFETY: this variable is read by this test only.
    unsafe { std::env::set_var("PGPASSWORD", PASSWORD) };
    let text = std::fs::read_to_string(repo_root().join("tests/postgres/user_spec.toml")).unwrap().replace(":5432/", &format!(":{}/", pg.port));
    let p = pipeline(&text);
    let expected = pg.psql("SELECT customer_id, sum(amount), count(*) FROM orders WHERE status = 'done' AND customer_id IS NOT NULL GROUP BY 1 ORDER BY 1");
    // First run: the table does not exist and is created (keys as its primary key).
    run(&p).unwrap();
    assert_eq!(pg.psql("SELECT customer_id, total, orders FROM customer_totals ORDER BY 1"), expected);
    // A rerun after the source changed updates the matched keys, inserts nothing twice.
    pg.psql("UPDATE orders SET amount = amount + 1 WHERE customer_id = 3 AND status = 'done'");
    run(&p).unwrap();
    let expected = pg.psql("SELECT customer_id, sum(amount), count(*) FROM orders WHERE status = 'done' AND customer_id IS NOT NULL GROUP BY 1 ORDER BY 1");
    assert_eq!(pg.psql("SELECT customer_id, total, orders FROM customer_totals ORDER BY 1"), expected);
}

/// A spec reading `orders` in 4 ranges from `url` and writing its per-customer
/// totals back to `url`'s table `tls_totals`.
fn tls_spec(url: &str) -> String {
    format!(
        r#"
[pipeline]
name = "tls"
[sources.o]
format = "postgres"
url = "{url}"
table = "orders"
partition_column = "id"
partitions = 4
[transforms.done]
type = "aggregate"
input = "o"
group_by = ["customer_id"]
aggregates.n = "count(*)"
[sinks.t]
input = "done"
format = "postgres"
url = "{url}"
table = "tls_totals"
mode = "overwrite"
"#
    )
}

#[test]
fn tls_is_negotiated_and_verified_as_libpq_does() {
    let tls = Postgres::start_tls();
    let pg = &tls.pg;
    pg.psql_file(&repo_root().join("tests/postgres/setup.sql"));
    // SAFETY: this variable is read by this test only.
    unsafe { std::env::set_var("KILN_TEST_PG_TLS_PASSWORD", PASSWORD) };
    let url = |host: &str, query: &str| format!("postgres://postgres:${{env.KILN_TEST_PG_TLS_PASSWORD}}@{host}:{}/postgres{query}", pg.port);
    let expected = pg.psql("SELECT customer_id, count(*) FROM orders GROUP BY 1 ORDER BY 1 NULLS FIRST");
    let read_back = || pg.psql("SELECT customer_id, n FROM tls_totals ORDER BY 1 NULLS FIRST");

    // verify-full against the right CA and the certificate's name: reads in 4 ranges
    // (4 connections) and writes, all over TLS (the server takes nothing else).
    let ca = tls.ca.display().to_string();
    let p = pipeline(&tls_spec(&url("localhost", &format!("?sslmode=verify-full&sslrootcert={ca}"))));
    run(&p).unwrap();
    assert_eq!(read_back(), expected);
    assert!(pg.log().contains("SSL enabled (protocol=TLSv1.3"), "{}", pg.log());

    // libpq's default, `prefer`, encrypts when the server offers TLS; so does `require`,
    // checking no certificate (127.0.0.1 is not the certificate's name).
    for query in ["", "?sslmode=prefer", "?sslmode=require", "?sslmode=allow"] {
        pg.psql("DROP TABLE tls_totals");
        run(&pipeline(&tls_spec(&url("127.0.0.1", query)))).unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(read_back(), expected, "{query}");
    }
    // verify-ca checks the chain, not the name: 127.0.0.1 passes.
    pg.psql("DROP TABLE tls_totals");
    run(&pipeline(&tls_spec(&url("127.0.0.1", &format!("?sslmode=verify-ca&sslrootcert={ca}"))))).unwrap();
    assert_eq!(read_back(), expected);

    // What must be refused is refused at `kiln check`, saying why, without the password.
    let refused = |u: String, why: &[&str]| {
        let c = check(&tls_spec(&u));
        let text = c.render(false);
        assert!(c.has_errors(), "{u}: {text}");
        for w in why {
            assert!(text.contains(w), "{u}: expected `{w}` in {text}");
        }
        assert!(!text.contains(PASSWORD), "{text}");
    };
    // verify-full: 127.0.0.1 is not the name the certificate was issued for.
    refused(url("127.0.0.1", &format!("?sslmode=verify-full&sslrootcert={ca}")), &["not valid for name \"127.0.0.1\"", "connect by that name, or use sslmode=verify-ca"]);
    // Another CA signed nothing of this server's: verify-full, verify-ca, and require
    // with a root certificate (libpq verifies the chain then).
    let other = tls.other_ca.display().to_string();
    for mode in ["verify-full", "verify-ca", "require"] {
        refused(url("localhost", &format!("?sslmode={mode}&sslrootcert={other}")), &["invalid peer certificate", "not signed by a root in sslrootcert"]);
    }
    // Without TLS the server's pg_hba.conf refuses, and PostgreSQL's message says so.
    refused(url("127.0.0.1", "?sslmode=disable"), &["no pg_hba.conf entry", "no encryption"]);
    // A root certificate file that is not there is named.
    refused(url("localhost", "?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"), &["/nonexistent/ca.pem"]);
    // A mode libpq does not know.
    refused(url("localhost", "?sslmode=verify"), &["not one of"]);
    // An unverified run leaves the table as the last run wrote it.
    assert_eq!(read_back(), expected);

    // A Unix socket takes no TLS; the default (prefer) and `disable` both connect through it
    // (libpq's key = value form, with spaces around `=`).
    for mode in ["", " sslmode = disable"] {
        pg.psql("DROP TABLE IF EXISTS tls_totals");
        let conninfo = format!("host={} port={} user=postgres dbname=postgres{mode}", pg.socket_dir().display(), pg.port);
        run(&pipeline(&tls_spec(&conninfo))).unwrap_or_else(|e| panic!("unix socket{mode}: {e}"));
        assert_eq!(read_back(), expected, "unix socket{mode}");
    }

    // A client certificate: `certuser` has no password; the server's pg_hba.conf takes
    // its certificate (signed by the server's CA) as the login, and nothing else.
    let certs = tls.certs.display().to_string();
    let as_cert_user = |dir: &str| {
        format!("postgres://{CERT_USER}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}&sslcert={dir}/client.crt&sslkey={dir}/client.key", pg.port)
    };
    pg.psql("DROP TABLE tls_totals");
    run(&pipeline(&tls_spec(&as_cert_user(&certs)))).unwrap();
    assert_eq!(read_back(), expected);
    assert!(pg.log().contains(&format!("connection authorized: user={CERT_USER}")));
    // One signed by another CA is refused by the server; no certificate at all too.
    refused(as_cert_user(&format!("{certs}/other")), &["it does not trust the client certificate in sslcert"]);
    refused(format!("postgres://{CERT_USER}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}", pg.port), &["connection requires a valid client certificate"]);
}
