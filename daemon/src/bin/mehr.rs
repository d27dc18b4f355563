//! `mehr`: the operator's command line for a running mehrd.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mehrd::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mehr: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mehrd::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain ("cannot read X: No such file…").
            eprintln!("mehr: {e:#}");
            ExitCode::FAILURE
        }
    }
}
