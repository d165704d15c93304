//! `bsvp2p`: the command-line face of bitcoinsv P2P.
//!
//! Each subcommand lives in its own module under `commands/` with a clap `Args` struct and a
//! `run` function; `main` only parses, dispatches, and turns errors into a one-line message and
//! a non-zero exit code (never a backtrace). Network subcommands share `--network` and
//! `--config FILE` ([`config_file`]) and talk to peers through the library: `crawl` through the
//! crawler, `connect` through a `PeerClient`, and `headers`/`getblock`/`broadcast`/`monitor`
//! through a manager and its services (header chain, block fetching, transaction broadcast).

mod commands;
mod config_file;
mod error;
mod interrupt;
mod logging;
mod output;
mod progress;
#[cfg(feature = "metrics")]
mod telemetry;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::error::CliError;

/// Connect to the Bitcoin SV peer-to-peer network, inspect it, and decode its messages.
#[derive(Debug, Parser)]
#[command(name = "bsvp2p", version, about, long_about = None)]
struct Cli {
    /// Log level or filter (trace, debug, info, warn, error, off, or a RUST_LOG-style filter such
    /// as `bitcoinsv=debug`); RUST_LOG overrides it [default: the config file's, else warn for
    /// simnet and monitor, off for the others].
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish tips, blocks, transactions and events into NATS JetStream, and broadcast from it.
    Bridge(commands::bridge::Args),
    /// Announce a transaction to peers, serve it when asked, and report rejects.
    Broadcast(commands::broadcast::Args),
    /// Print the default configuration as commented TOML.
    Config(commands::config::Args),
    /// Handshake with one peer and print every message it sends.
    Connect(commands::connect::Args),
    /// Discover the network breadth-first through getaddr and report every node.
    Crawl(commands::crawl::Args),
    /// Decode a captured frame (or a bare payload) given as hex or as a file, print it as JSON.
    Decode(commands::decode::Args),
    /// See the whole project work in under a minute, on a simulated network (no internet).
    Demo(commands::demo::Args),
    /// Download one block from a peer and verify its hash and merkle root.
    Getblock(commands::getblock::Args),
    /// Download block headers from a peer, checking links and proof of work.
    Headers(commands::headers::Args),
    /// Run the connection manager and watch peers and events live.
    Monitor(commands::monitor::Args),
    /// Run a simulated BSV network on loopback in the foreground until Ctrl-C.
    Simnet(commands::simnet::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let config = match &cli.command {
        Command::Bridge(a) => a.config.config.as_deref(),
        Command::Broadcast(a) => a.config.config.as_deref(),
        Command::Connect(a) => a.config.config.as_deref(),
        Command::Crawl(a) => a.config.config.as_deref(),
        Command::Getblock(a) => a.config.config.as_deref(),
        Command::Headers(a) => a.config.config.as_deref(),
        Command::Monitor(a) => a.config.config.as_deref(),
        _ => None,
    };
    let default_level = match &cli.command {
        Command::Monitor(a) if !a.plain && std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            "error"
        }
        Command::Monitor(_) | Command::Simnet(_) | Command::Bridge(_) => "warn",
        _ => "off",
    };
    logging::init(cli.log_level.as_deref(), config, default_level);
    let result: Result<(), CliError> = match cli.command {
        Command::Bridge(args) => commands::bridge::run(args),
        Command::Broadcast(args) => commands::broadcast::run(args),
        Command::Config(args) => commands::config::run(args),
        Command::Connect(args) => commands::connect::run(args),
        Command::Crawl(args) => commands::crawl::run(args),
        Command::Decode(args) => commands::decode::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Monitor(args) => commands::monitor::run(args),
        Command::Simnet(args) => commands::simnet::run(args),
        Command::Getblock(args) => commands::getblock::run(args),
        Command::Headers(args) => commands::headers::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors can quote a peer (a reject reason, a command name, a user agent).
            eprintln!("error: {}", bitcoinsv::p2p::text::printable(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go out as clap prints them; a usage error becomes one line (clap's message
/// without its blank lines, usage block and "For more information" footer) and exit status 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return if e.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = e.render().to_string();
    let mut parts: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line);
        }
    }
    let mut message = parts.join(" ");
    if let Some(rest) = message.strip_prefix("error: ") {
        message = rest.to_string();
    }
    // The subcommand, when one was named, so the hint points at the right help page.
    let command = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with('-') && Cli::command().find_subcommand(a).is_some());
    let help = match command {
        Some(c) => format!("bsvp2p {c} --help"),
        None => "bsvp2p --help".to_string(),
    };
    eprintln!("error: {message} (see {help})");
    ExitCode::from(2)
}
