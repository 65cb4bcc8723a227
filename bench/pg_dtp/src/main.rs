//! `kiln-bench-pg-dtp PORT OUT_DIR`: the whole of `bench_orders` through
//! datafusion-table-providers' PostgreSQL table provider, written as Parquet
//! by DataFusion (as Kiln's `pg_read` job writes it).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::SessionContext;
use datafusion::common::TableReference;
use datafusion_table_providers::postgres::PostgresTableFactory;
use datafusion_table_providers::sql::db_connection_pool::postgrespool::PostgresConnectionPool;
use datafusion_table_providers::util::secrets::to_secret_map;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (port, out) = (&args[1], &args[2]);
    let params: HashMap<String, String> =
        [("host", "127.0.0.1"), ("user", "postgres"), ("db", "postgres"), ("port", port.as_str()), ("sslmode", "disable")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let pool = Arc::new(PostgresConnectionPool::new(to_secret_map(params)).await.expect("connect"));
    let table = PostgresTableFactory::new(pool).table_provider(TableReference::bare("bench_orders")).await.expect("table");
    let ctx = SessionContext::new();
    ctx.register_table("bench_orders", table).expect("register");
    let df = ctx.table("bench_orders").await.expect("plan");
    df.write_parquet(out, DataFrameWriteOptions::new(), None).await.expect("write");
}
