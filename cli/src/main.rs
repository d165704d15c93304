//! `bsvp2p`: the command-line face of bitcoinsv P2P.
//!
//! Each subcommand lives in its own module under `commands/` with a clap `Args` struct and a
//! `run` function; `main` only parses, dispatches, and turns errors into a one-line message and
//! a non-zero exit code (never a backtrace).

mod commands;
mod error;
mod output;

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
    /// See the whole project work in under a minute, on a simulated network (no internet).
    Demo(commands::demo::Args),
    /// Handshake with one peer and print every message it sends.
    Connect(commands::connect::Args),
    /// Run the connection manager and watch peers and events live.
    Monitor(commands::monitor::Args),
    /// Decode a captured frame (or a bare payload) given as hex or as a file, print it as JSON.
    Decode(commands::decode::Args),
    /// Run a simulated BSV network on loopback in the foreground until Ctrl-C.
    Simnet(commands::simnet::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), CliError> = match cli.command {
        Command::Connect(args) => commands::connect::run(args),
        Command::Decode(args) => commands::decode::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Monitor(args) => commands::monitor::run(args),
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
