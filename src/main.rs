//! The `invigil` binary: parse the command line and run it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = invigil::cli::Cli::parse();
    let system = actix_rt::System::new();
    match system.block_on(invigil::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("invigil: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
