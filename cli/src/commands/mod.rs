//! One module per subcommand.

pub mod connect;
pub mod decode;
pub mod monitor;
pub mod summary;
pub mod simnet;
