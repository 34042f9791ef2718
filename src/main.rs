//! The `autonomy` binary: parse the command line, run it, map the outcome to an exit code.

use std::process::ExitCode;

use autonomy::{cli, exit::Exit};
use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("AUTONOMY_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            Exit::Ok.into()
        }
        Err(error) => {
            if let Some(output) = error.output().filter(|output| !output.is_empty()) {
                println!("{output}");
            }
            eprintln!("error: {error}");
            error.exit().into()
        }
    }
}
