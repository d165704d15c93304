//! The PostgreSQL store's schema and its versioned migrations.
//!
//! Table `schema_version` records each migration applied (version, description, time). On
//! connect, [`migrate`] takes a transaction-scoped advisory lock, reads the highest version,
//! refuses a database newer than this release, and applies the missing migrations in order,
//! each with its row in `schema_version`, all in that one transaction: an interrupted migration
//! leaves nothing behind, and instances starting together wait for each other on the lock, so
//! exactly one applies each migration and the others find it done. A release that changes the
//! schema appends a migration here; a migration, once released, never changes.

use tracing::info;

use super::pool::Conn;
use crate::p2p::error::{P2pError, Result};

/// One step of the schema.
pub(super) struct Migration {
    /// Its number: 1, 2, ... in order.
    pub version: i64,
    /// What it does, recorded in `schema_version`.
    pub description: &'static str,
    /// The statements (in the store's schema, which is first on the search path).
    pub sql: &'static str,
}

/// Every migration, in order.
pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "peers table: one row per (ip, port), indexed by status for eviction",
    // `ip` holds the canonical text form (`IpAddr`'s Display), so one address has one spelling
    // and the unique constraint enforces "one peer per address" across every instance.
    // `ban_until` holds the u64 bit for bit (a caller may saturate "now + duration" to
    // u64::MAX); SQL compares it only where it is non-negative (`expire_bans`).
    sql: "
CREATE TABLE peers (
    id               UUID    PRIMARY KEY,
    ip               TEXT    NOT NULL,
    port             INTEGER NOT NULL CHECK (port BETWEEN 0 AND 65535),
    status           TEXT    NOT NULL
                     CHECK (status IN ('unknown', 'valid', 'inaccessible', 'banned')),
    ban_reason       JSONB,
    ban_until        BIGINT,
    status_timestamp BIGINT  NOT NULL,
    CONSTRAINT peers_ip_port UNIQUE (ip, port)
);
CREATE INDEX peers_status ON peers (status, status_timestamp, id);
",
}];

/// The schema version this release creates and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// The key of the advisory lock that serializes migrations of `schema` (hashed by the server).
fn lock_name(schema: &str) -> String {
    format!("bitcoinsv.peer_store.migrate.{schema}")
}

/// Brings `schema` to [`SCHEMA_VERSION`]; returns the migrations applied (none if current).
pub(super) async fn migrate(conn: &mut Conn<'_>, schema: &str, label: &str) -> Result<Vec<i64>> {
    conn.begin().await?;
    let result = migrate_in_transaction(conn, schema, label).await;
    match result {
        Ok(applied) => {
            conn.commit().await?;
            if !applied.is_empty() {
                info!(store = %label, ?applied, schema_version = SCHEMA_VERSION, "Migrated peer store schema");
            }
            Ok(applied)
        }
        Err(e) => {
            conn.rollback().await;
            Err(e)
        }
    }
}

async fn migrate_in_transaction(
    conn: &mut Conn<'_>,
    schema: &str,
    label: &str,
) -> Result<Vec<i64>> {
    let lock = lock_name(schema);
    conn.query("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock])
        .await?;
    let exists = conn
        .query(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await?
        .first()
        .map(|r| r.try_get::<_, bool>(0))
        .transpose()
        .map_err(|e| super::pool::classify(label, e))?
        .unwrap_or(false);
    // The name was checked to be a plain identifier (`validate_schema_name`), so it needs no
    // quoting. Creating an existing schema would need CREATE on the database, which a user
    // given only a schema may lack: create it only when missing.
    if !exists {
        conn.batch(&format!("CREATE SCHEMA {schema}")).await?;
    }
    conn.batch(&format!(
        "SET LOCAL search_path = {schema};
         CREATE TABLE IF NOT EXISTS schema_version (
             version     BIGINT      PRIMARY KEY,
             description TEXT        NOT NULL,
             applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
         );"
    ))
    .await?;
    let found: i64 = conn
        .query("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await?
        .first()
        .map(|r| r.try_get::<_, i64>(0))
        .transpose()
        .map_err(|e| super::pool::classify(label, e))?
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(P2pError::UnsupportedStoreSchema {
            store: label.to_string(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        conn.batch(m.sql).await?;
        conn.query(
            "INSERT INTO schema_version (version, description) VALUES ($1, $2)",
            &[&m.version, &m.description],
        )
        .await?;
        applied.push(m.version);
    }
    Ok(applied)
}

/// Checks that `schema` is a plain lowercase SQL identifier, so it can be written into
/// statements and channel names without quoting, and leaves room for the channel's prefix
/// within PostgreSQL's 63-byte identifiers.
pub(super) fn validate_schema_name(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && !schema.starts_with("pg_")
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.bytes().next().is_some_and(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(P2pError::InvalidConfiguration(format!(
            "postgres schema {schema:?}: use 1 to 48 lowercase letters, digits and '_', not \
             starting with a digit or pg_"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_up_to_the_schema_version() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<i64> = (1..=SCHEMA_VERSION).collect();
        assert_eq!(versions, expected);
    }

    #[test]
    fn schema_names_must_be_plain_identifiers() {
        for good in ["public", "bsv_p2p", "t_12", "_x"] {
            assert!(validate_schema_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(49);
        for bad in [
            "",
            "Public",
            "1abc",
            "pg_temp",
            "a-b",
            "a;drop",
            "a b",
            long.as_str(),
        ] {
            assert!(validate_schema_name(bad).is_err(), "{bad}");
        }
    }
}
