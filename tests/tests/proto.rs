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

/// Joins carry their strategy hint through datafusion-proto with Kiln's codec.
#[test]
fn join_hints_round_trip_with_kilns_codec() {
    let text = std::fs::read_to_string(repo_root().join("specs/broadcast_join.toml")).unwrap();
    let p = pipeline(&text.replace("default = \"data\"", "default = \"specs/data\""));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let values = kiln::params::resolve(&p.params, &[], |_| None).unwrap();
        let ctx = kiln::session::context(&Default::default()).unwrap();
        let plans = kiln::run::node_plans(&p, &ctx, &values).await.unwrap();
        let plan = &plans["enriched"];
        assert!(format!("{}", plan.display_indent()).contains("JoinHint: broadcast"));
        let codec = kiln::codec::KilnLogicalCodec;
        let bytes = datafusion_proto::bytes::logical_plan_to_bytes_with_extension_codec(plan, &codec).unwrap();
        let back = datafusion_proto::bytes::logical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
        assert_eq!(format!("{}", back.display_indent()), format!("{}", plan.display_indent()));
    });
}
