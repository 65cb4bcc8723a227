fn main() -> std::process::ExitCode {
    kiln_compiler::cli::main()
}
