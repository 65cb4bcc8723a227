//! Golden snapshots of the code generated for the shipped specs, and its determinism.

use std::path::Path;

use kiln_compiler::codegen::{CrateInfo, generate};

fn generated(spec: &str) -> std::collections::BTreeMap<std::path::PathBuf, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(spec);
    let checked = kiln_compiler::check_file(&path).unwrap();
    assert!(!checked.has_errors(), "{}", checked.render(false));
    let info = CrateInfo { spec_path: spec, runtime_path: "../../runtime", rust: &[] };
    generate(checked.pipeline.as_ref().unwrap(), &info).unwrap()
}

#[test]
fn etl_main_rs() {
    let files = generated("specs/etl.toml");
    insta::assert_snapshot!("etl_main_rs", files[Path::new("src/main.rs")]);
    insta::assert_snapshot!("etl_cargo_toml", files[Path::new("Cargo.toml")]);
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(generated("specs/etl.toml"), generated("specs/etl.toml"));
}

/// A job links the runtime's optional parts (delta-rs, librdkafka) only when its spec uses
/// them: `kiln build` writes them as the runtime dependency's features.
#[test]
fn a_job_switches_on_the_runtime_features_its_spec_uses() {
    let runtime = |spec: &str| {
        let files = generated(spec);
        files[Path::new("Cargo.toml")].lines().find(|l| l.starts_with("kiln = ")).unwrap().to_string()
    };
    assert_eq!(runtime("specs/etl.toml"), r#"kiln = { package = "kiln-runtime", path = "../../runtime", default-features = false }"#);
    // A Delta sink; a Kafka source.
    assert_eq!(runtime("tests/streaming/clicks_to_delta.toml"), r#"kiln = { package = "kiln-runtime", path = "../../runtime", default-features = false, features = ["delta"] }"#);
    assert_eq!(runtime("tests/streaming/kafka_clicks.toml"), r#"kiln = { package = "kiln-runtime", path = "../../runtime", default-features = false, features = ["kafka"] }"#);
    // A Delta source and sink on a cluster.
    assert_eq!(runtime("tests/delta/cluster.toml"), r#"kiln = { package = "kiln-runtime", path = "../../runtime", default-features = false, features = ["delta"] }"#);
}
