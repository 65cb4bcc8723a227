// Compiles specs/risk.toml (with its #[kiln::udf] file) into OUT_DIR/kiln/risk.rs;
// a spec error fails the build with kiln check's diagnostics.
fn main() {
    kiln_compiler::Build::new().spec("../../specs/risk.toml").compile();
}
