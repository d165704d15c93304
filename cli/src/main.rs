//! `bsvp2p`: the command-line face of bitcoinsv P2P.
//!
//! Each subcommand lives in its own module under `commands/` with a clap `Args` struct and a
//! `run` function; `main` only parses, dispatches, and turns errors into a one-line message and
//! a non-zero exit code (never a backtrace).

mod commands;
mod error;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

/// Connect to the Bitcoin SV peer-to-peer network, inspect it, and decode its messages.
#[derive(Debug, Parser)]
#[command(name = "bsvp2p", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode a captured frame (or a bare payload) given as hex or as a file, print it as JSON.
    Decode(commands::decode::Args),
    /// Run a simulated BSV network on loopback in the foreground until Ctrl-C.
    Simnet(commands::simnet::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), CliError> = match cli.command {
        Command::Decode(args) => commands::decode::run(args),
        Command::Simnet(args) => commands::simnet::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
