//! Writing to stdout without panicking when the reader goes away (`bsvp2p decode … | head`):
//! a closed pipe ends the program quietly instead of printing a panic and a backtrace.

use std::io::{ErrorKind, Write};

/// Prints one line to stdout; exits with status 0 if stdout has been closed.
pub fn line(s: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{s}").and_then(|_| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}
