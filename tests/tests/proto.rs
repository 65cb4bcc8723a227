//! The plans Kiln builds are what Ballista executors will receive (issue 6): every
//! node's logical plan must survive datafusion-proto, with functions found by name
//! in Kiln's registry on the other side.

use kiln_tests::{pipeline, repo_root};

#[test]
fn etl_plans_round_trip_through_datafusion_proto() {
    let text = std::fs::read_to_string(repo_root().join("specs/etl.toml")).unwrap();
    let p = pipeline(&text);
    let input = repo_root().join("tests/fixtures/etl/transactions.csv");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let pairs = vec![("input".to_string(), input.display().to_string())];
        let values = kiln::params::resolve(&p.params, &pairs, |_| None).unwrap();
        let ctx = kiln::session::context(&Default::default()).unwrap();
        let plans = kiln::run::node_plans(&p, &ctx, &values).await.unwrap();
        for node in &p.nodes {
            let plan = &plans[&node.name];
            let bytes = datafusion_proto::bytes::logical_plan_to_bytes(plan).unwrap();
            let back = datafusion_proto::bytes::logical_plan_from_bytes(&bytes, &ctx.task_ctx()).unwrap();
            assert_eq!(format!("{}", back.display_indent()), format!("{}", plan.display_indent()), "node {}", node.name);
        }
    });
}

/// specs/broadcast_join.toml's node plans, and the local session that planned them.
async fn broadcast_join_plans() -> (datafusion::prelude::SessionContext, std::collections::HashMap<String, datafusion::logical_expr::LogicalPlan>) {
    let text = std::fs::read_to_string(repo_root().join("specs/broadcast_join.toml")).unwrap();
    let p = pipeline(&text.replace("default = \"data\"", "default = \"specs/data\""));
    let values = kiln::params::resolve(&p.params, &[], |_| None).unwrap();
    let ctx = kiln::session::context(&Default::default()).unwrap();
    let plans = kiln::run::node_plans(&p, &ctx, &values).await.unwrap();
    (ctx, plans)
}

/// Joins carry their strategy hint through datafusion-proto with Kiln's codec.
#[test]
fn join_hints_round_trip_with_kilns_codec() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (ctx, plans) = broadcast_join_plans().await;
        let plan = &plans["enriched"];
        assert!(format!("{}", plan.display_indent()).contains("JoinHint: broadcast"));
        let codec = kiln::codec::KilnLogicalCodec::default();
        let bytes = datafusion_proto::bytes::logical_plan_to_bytes_with_extension_codec(plan, &codec).unwrap();
        let back = datafusion_proto::bytes::logical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
        assert_eq!(format!("{}", back.display_indent()), format!("{}", plan.display_indent()));
    });
}

/// Node markers (`--metrics` on a cluster, issue 19) travel to the scheduler
/// (logical) and the executors (physical) with Kiln's codecs, node and sink intact.
#[test]
fn node_markers_round_trip_with_kilns_codecs() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (ctx, plans) = broadcast_join_plans().await;
        let plan = kiln::node_metrics::mark_top("enriched", "out", kiln::node_metrics::mark("enriched", plans["enriched"].clone()));
        let codec = kiln::codec::KilnLogicalCodec::default();
        let bytes = datafusion_proto::bytes::logical_plan_to_bytes_with_extension_codec(&plan, &codec).unwrap();
        let back = datafusion_proto::bytes::logical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
        assert_eq!(format!("{}", back.display_indent()), format!("{}", plan.display_indent()));
        let physical = ctx.state().create_physical_plan(&plan).await.unwrap();
        let shown = datafusion::physical_plan::displayable(physical.as_ref()).indent(false).to_string();
        assert!(shown.contains("KilnNodeExec: enriched (into sink out)") && shown.contains("KilnNodeExec: enriched\n"), "{shown}");
        let codec = kiln::codec::KilnPhysicalCodec::default();
        let bytes = datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(physical.clone(), &codec).unwrap();
        let back = datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
        assert_eq!(datafusion::physical_plan::displayable(back.as_ref()).indent(false).to_string(), shown);
    });
}

/// ORC tables and their scans travel to a scheduler and executors with Kiln's
/// codecs, and the decoded scan reads the same rows (issue 18).
#[test]
fn orc_scans_round_trip_through_kilns_codecs() {
    let p = pipeline(&format!(
        "[pipeline]\nname = \"o\"\n[sources.items]\nformat = \"orc\"\npath = \"{}\"\n[transforms.v]\ntype = \"with_columns\"\ninput = \"items\"\ncolumns.value = \"price * qty\"\n[sinks.c]\ninput = \"v\"\nformat = \"console\"\n",
        repo_root().join("tests/conformance/data/src_items.orc").display()
    ));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let values = kiln::params::resolve(&p.params, &[], |_| None).unwrap();
        // One partition: nothing between the projection and the scan, so DataFusion's
        // physical optimizer would push the computed column into the ORC scan.
        let ctx = kiln::session::context(&kiln::session::SessionOptions { target_partitions: Some(1), ..Default::default() }).unwrap();
        let plans = kiln::run::node_plans(&p, &ctx, &values).await.unwrap();
        let logical = kiln::codec::KilnLogicalCodec::default();
        let bytes = datafusion_proto::bytes::logical_plan_to_bytes_with_extension_codec(&plans["v"], &logical).unwrap();
        let back = datafusion_proto::bytes::logical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &logical).unwrap();
        let df = datafusion::dataframe::DataFrame::new(ctx.state(), back);
        let physical = df.create_physical_plan().await.unwrap();
        let codec = kiln::codec::KilnPhysicalCodec::default();
        let bytes = datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(physical.clone(), &codec).unwrap();
        let decoded = datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
        // A scheduler decodes and encodes again for its executors.
        let bytes = datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(decoded, &codec).unwrap();
        let decoded = datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
        let shown = datafusion::physical_plan::displayable(decoded.as_ref()).indent(true).to_string();
        // Kiln's last physical rule keeps computed columns out of ORC scans (`OrcColumnsOnly`).
        assert!(shown.contains("ProjectionExec") && !shown.contains("as value], file_type=orc"), "{shown}");
        let rows = |plan| async { kiln_tests::sorted(kiln_tests::batches_to_rows(&datafusion::physical_plan::collect(plan, ctx.task_ctx()).await.unwrap())) };
        let (before, after) = (rows(physical).await, rows(decoded).await);
        assert_eq!(before.len(), 3);
        assert_eq!(after, before);
    });
}

/// ORC sources on Ballista (standalone: an in-process scheduler and executor that
/// exchange serialized plans) write the rows a local run writes.
#[test]
fn orc_sources_run_on_ballista_standalone() {
    let items = repo_root().join("tests/conformance/data/src_items.orc");
    for transform in ["", "[transforms.v]\ntype = \"with_columns\"\ninput = \"items\"\ncolumns.value = \"price * qty\"\n"] {
        let input = if transform.is_empty() { "items" } else { "v" };
        let p = pipeline(&format!(
            "[pipeline]\nname = \"o\"\n[params.out]\ndefault = \"x\"\n[sources.items]\nformat = \"orc\"\npath = \"{}\"\n{transform}[sinks.s]\ninput = \"{input}\"\nformat = \"parquet\"\npath = \"${{params.out}}/s\"\n",
            items.display()
        ));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        for (dir, cluster) in dirs.iter().zip([None, Some(kiln::cluster::Cluster::Standalone)]) {
            let opts = kiln::run::RunOptions { params: vec![("out".into(), dir.path().display().to_string())], cluster, ..Default::default() };
            rt.block_on(kiln::run::run(&p, &opts)).unwrap_or_else(|e| panic!("{input}: {e}"));
        }
        let local = kiln_tests::sorted(kiln_tests::read_parquet_rows(&dirs[0].path().join("s")));
        assert_eq!(local.len(), 3);
        assert_eq!(kiln_tests::sorted(kiln_tests::read_parquet_rows(&dirs[1].path().join("s"))), local, "{input}");
    }
}
