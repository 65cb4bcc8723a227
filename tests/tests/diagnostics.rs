//! Every file in `tests/diagnostics/` is a spec with a mistake (an error, or a
//! hint that cannot be obeyed: a warning); its full rendered diagnostics (what
//! `kiln check` prints) are snapshot-tested. A spec there that checks clean,
//! without a warning, fails the test.

use std::path::Path;

#[test]
fn bad_specs() {
    insta::glob!("..", "diagnostics/*.toml", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let shown = Path::new("tests/diagnostics").join(path.file_name().unwrap());
        let checked = kiln_compiler::check_text(&shown, &text, path.parent().unwrap());
        assert!(!checked.diagnostics.is_empty(), "{} checks clean but is meant to be wrong", shown.display());
        insta::assert_snapshot!(checked.render(false));
    });
}

#[test]
fn there_are_at_least_twenty_bad_specs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("diagnostics");
    let count = std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "toml")).count();
    assert!(count >= 20, "only {count} bad specs");
}
