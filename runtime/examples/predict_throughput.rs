//! Rows per second of a `predict` node, without file IO: bench/inference.sh runs
//! this next to numpy on the same features and weights.
//!
//!     predict_throughput FEATURES.parquet MODEL.safetensors LAYERS BATCH_SIZES [ROWS_FOR_SMALL_BATCHES]
//!     predict_throughput f.parquet m.safetensors 16,32,1 1,32,128,1024,8192 100000
//!
//! The features are read into memory first (as PARTITIONS (env, default 2)
//! partitions of 65,536-row batches, what a 2-core run of a pipeline sees); then, per batch size, the
//! model is applied through DataFusion exactly as a pipeline's `predict` node
//! is (the same function, the same plan), and the scores are summed so nothing
//! is optimized away. Prints `batch_size<TAB>rows<TAB>seconds<TAB>rows_per_s`.
//! Batch sizes below 1024 run on the first ROWS_FOR_SMALL_BATCHES rows.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{AsArray, RecordBatch};
use kiln_runtime as kiln;
use datafusion::arrow::datatypes::Float64Type;
use datafusion::datasource::MemTable;
use datafusion::prelude::*;
use kiln::plan::{Activation, Architecture, Features, Model, ModelDevice, Op};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    kiln::models::init_threads(); // as every generated binary does
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: predict_throughput FEATURES.parquet MODEL.safetensors LAYERS BATCH_SIZES [ROWS_FOR_SMALL_BATCHES]");
        std::process::exit(2);
    }
    let layers: Vec<usize> = args[3].split(',').map(|s| s.parse()).collect::<Result<_, _>>()?;
    let sizes: Vec<usize> = args[4].split(',').map(|s| s.parse()).collect::<Result<_, _>>()?;
    let small_rows: usize = args.get(5).map_or(Ok(usize::MAX), |s| s.parse())?;
    let partitions: usize = std::env::var("PARTITIONS").map_or(Ok(2), |p| p.parse())?;
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions).with_batch_size(65536));
    let all: Vec<RecordBatch> = ctx.read_parquet(&args[1], ParquetReadOptions::default()).await?.collect().await?;
    let schema = all[0].schema();
    let features: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let total: usize = all.iter().map(|b| b.num_rows()).sum();
    let model = Model {
        name: "bench".into(),
        path: args[2].clone(),
        architecture: Architecture::Mlp { layers: layers.clone(), activation: Activation::Relu, output_activation: Activation::Sigmoid },
        device: ModelDevice::Cpu,
        inputs: layers[0],
        outputs: *layers.last().unwrap_or(&1),
    };
    kiln::models::load(&model)?; // loading is not what is measured
    for size in sizes {
        let rows = if size < 1024 { small_rows.min(total) } else { total };
        // Two partitions of the first `rows` rows, batches as the scan made them.
        let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
        let mut taken = 0;
        for (i, b) in all.iter().enumerate() {
            if taken >= rows {
                break;
            }
            let b = b.slice(0, b.num_rows().min(rows - taken));
            taken += b.num_rows();
            parts[i % partitions].push(b);
        }
        let table = MemTable::try_new(schema.clone(), parts)?;
        let input = ctx.read_table(Arc::new(table))?.into_unoptimized_plan();
        let op = Op::Predict { input: "x".into(), model: model.clone(), features: Features::Columns(features.clone()), output: "score".into(), batch_size: size };
        let plan = kiln::transforms::build("scored", &op, &[input])?;
        let df = DataFrame::new(ctx.state(), plan).aggregate(vec![], vec![datafusion::functions_aggregate::expr_fn::sum(cast(col("score"), datafusion::arrow::datatypes::DataType::Float64)).alias("s")])?;
        let start = Instant::now();
        let out = df.collect().await?;
        let secs = start.elapsed().as_secs_f64();
        let checksum = out[0].column(0).as_primitive::<Float64Type>().value(0);
        println!("{size}\t{rows}\t{secs:.4}\t{:.0}\t(sum of scores {checksum:.3})", rows as f64 / secs);
    }
    Ok(())
}
