//! The `brigade` command: a thin shell over `brigade_train::cli`.
fn main() -> std::process::ExitCode {
    brigade_train::cli::main()
}
