//! One module per subcommand.

pub mod connect;
pub mod decode;
pub mod demo;
pub mod monitor;
pub mod simnet;
pub mod summary;
