fn main() -> std::process::ExitCode {
    kiln::models::init_threads();
    kiln_compiler::cli::main()
}
