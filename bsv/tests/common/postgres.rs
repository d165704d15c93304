//! The PostgreSQL server for the tests of `PostgresPeerStore`.
//!
//! Contract with `.ci/run` (which starts the server with `scripts/postgres-test.sh start DIR`):
//!   BSV_TEST_POSTGRES_URL=postgres://...    the server; unset, every Postgres test prints
//!                                           `SKIPPED: ...` to stderr and passes
//!   BSV_TEST_POSTGRES_MARKER_DIR=DIR        each test that runs against the server writes
//!                                           DIR/<binary>.<test>.ran, so CI can prove none skipped
//!                                           (cargo hides the stderr of passing tests)
//! Each test works in a fresh PostgreSQL schema of its own, so the tests run in parallel on one
//! server without seeing each other's peers or ban notifications.

use std::time::Duration;

use bitcoinsv::p2p::{PostgresOptions, PostgresPeerStore};

/// The server's URL, or `None` after printing why the test is skipped. Records that `test`
/// (of the test binary `binary`) ran against the server.
pub fn url_or_skip(binary: &str, test: &str) -> Option<String> {
    let Ok(url) = std::env::var("BSV_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED: {binary}::{test}: BSV_TEST_POSTGRES_URL is unset (start a server with scripts/postgres-test.sh start DIR)");
        return None;
    };
    if let Ok(dir) = std::env::var("BSV_TEST_POSTGRES_MARKER_DIR") {
        let name = format!("{binary}.{}.ran", test.replace("::", "."));
        std::fs::write(std::path::Path::new(&dir).join(name), b"")
            .expect("writing the Postgres test marker");
    }
    Some(url)
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    format!("t_{}", uuid::Uuid::new_v4().simple())
}

/// Options for a store in `schema` bounded to `max_peers`.
pub fn options(schema: &str, max_peers: usize) -> PostgresOptions {
    PostgresOptions {
        schema: schema.to_string(),
        max_peers,
        ..PostgresOptions::default()
    }
}

/// A store on `url` in `schema`.
pub async fn store(url: &str, schema: &str, max_peers: usize) -> PostgresPeerStore {
    tokio::time::timeout(
        Duration::from_secs(30),
        PostgresPeerStore::connect(url, options(schema, max_peers)),
    )
    .await
    .expect("connecting to the test server timed out")
    .expect("connecting to the test server")
}
