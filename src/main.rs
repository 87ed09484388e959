fn main() -> std::process::ExitCode {
    stabspace::cli::main()
}
