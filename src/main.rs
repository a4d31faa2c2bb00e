//! The `invigil` binary: parse the command line and run it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = invigil::cli::Cli::parse();
    let system = actix_rt::System::new();
    match system.block_on(invigil::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("invigil: {e:#}");
            // Exit before the actor system is torn down: after a failed start (a port in use,
            // bad settings) nothing is left to flush, and actors started for the server would
            // only be dropped half-initialised.
            std::process::exit(2)
        }
    }
}
