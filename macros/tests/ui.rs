//! Compile-fail tests: what a user sees for a bad `#[kiln::udf]` or
//! `#[kiln::model]`. Each case fails inside the macro, so the cases need no
//! runtime. `TRYBUILD=overwrite cargo test -p kiln-macros` refreshes the .stderr files.

#[test]
fn macro_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
