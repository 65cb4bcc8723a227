//! A program that embeds two pipelines, one through each path:
//!
//! - `etl` with `kiln::include_pipeline!`: checked while this crate compiles;
//! - `risk` through build.rs (`kiln_compiler::Build`) and `kiln::include_generated!`.
//!
//! `kiln-example-embed DATA_DIR OUT_DIR` runs both on DATA_DIR's
//! transactions.csv / transactions.parquet, then plans `etl` on a session of its
//! own and prints the node names, as a service composing Kiln plans would.

kiln::include_pipeline!("../../specs/etl.toml");
kiln::include_generated!("risk");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (data, out) = match args.as_slice() {
        [_, data, out] => (data.as_str(), out.as_str()),
        _ => {
            eprintln!("usage: kiln-example-embed DATA_DIR OUT_DIR");
            std::process::exit(2);
        }
    };
    let csv = format!("{data}/transactions.csv");
    let etl_out = format!("{out}/etl");
    let report = etl::run(&[("input", &csv), ("output", &etl_out)]).await?;
    println!("etl: {} sink(s) written", report.sinks.len());
    let risk_out = format!("{out}/risk");
    let report = risk::run(&[("data", data), ("output", &risk_out)]).await?;
    println!("risk: {} sink(s) written", report.sinks.len());

    let ctx = kiln::session::context(&Default::default())?;
    let plans = etl::build(&ctx, &[("input", &csv)]).await?;
    let mut names: Vec<_> = plans.keys().cloned().collect();
    names.sort();
    println!("etl nodes: {}", names.join(", "));
    Ok(())
}
