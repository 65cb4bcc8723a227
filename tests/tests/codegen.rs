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
