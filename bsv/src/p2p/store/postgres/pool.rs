//! The store's connections: a few PostgreSQL sessions reused across calls, opened on demand and
//! replaced when they break.
//!
//! There is no background health check. A session the server closed (restart, failover,
//! `pg_terminate_backend`) is noticed by tokio-postgres' connection task and skipped when the
//! next call picks one; the rare call that picks it in the instant before that retries once on
//! a fresh session, but only where repeating is harmless (a read, an update that writes the
//! same values again, or `BEGIN`). While the server is down every call fails at once with
//! `P2pError::StoreUnavailable` (connecting is refused, or times out after `connect_timeout`),
//! and the first call after it is back connects again.
//!
//! Each session caches its prepared statements, so a call costs one round trip after the first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};
use tracing::{debug, Instrument};

use crate::p2p::error::{P2pError, Result};

/// One session and the statements prepared on it.
pub(super) struct Session {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// The sessions; at most `permits` are in use at once.
pub(super) struct Pool {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<Session>>,
    permits: Semaphore,
    label: Arc<str>,
}

impl Pool {
    pub(super) fn new(config: tokio_postgres::Config, size: usize, label: Arc<str>) -> Self {
        Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
            label,
        }
    }

    /// A session for one call: an idle one that is still open, or a new one.
    pub(super) async fn get(&self) -> Result<Conn<'_>> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| P2pError::ChannelClosed {
                channel: "peer store connections".into(),
            })?;
        let reused = loop {
            let next = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match next {
                Some(s) if s.client.is_closed() => {
                    debug!(store = %self.label, "dropping a closed database session");
                }
                other => break other,
            }
        };
        let session = match reused {
            Some(s) => s,
            None => self.open().await?,
        };
        Ok(Conn {
            session: Some(session),
            pool: self,
            in_transaction: false,
            _permit: permit,
        })
    }

    async fn open(&self) -> Result<Session> {
        let client = connect(&self.config, &self.label).await?;
        Ok(Session {
            client,
            statements: HashMap::new(),
        })
    }
}

/// Opens a session and runs its connection task (which ends when the client is dropped).
pub(super) async fn connect(config: &tokio_postgres::Config, label: &Arc<str>) -> Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| unavailable(label, e))?;
    let task_label = label.clone();
    tokio::spawn(
        async move {
            if let Err(error) = connection.await {
                debug!(store = %task_label, %error, "database session ended");
            }
        }
        .in_current_span(),
    );
    debug!(store = %label, "opened a database session");
    Ok(client)
}

/// A session lent to one call; back to the pool when dropped, unless it broke or was left
/// inside a transaction (a call cancelled half-way), in which case it is closed and the server
/// rolls the transaction back.
pub(super) struct Conn<'a> {
    session: Option<Session>,
    pool: &'a Pool,
    in_transaction: bool,
    _permit: SemaphorePermit<'a>,
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if !self.in_transaction && !session.client.is_closed() {
                self.pool
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(session);
            }
        }
    }
}

impl Conn<'_> {
    fn session(&mut self) -> Result<&mut Session> {
        // Always Some until drop; an error rather than a panic keeps that a local promise.
        self.session
            .as_mut()
            .ok_or_else(|| P2pError::StoreUnavailable {
                store: self.pool.label.to_string(),
                source: "no database session".into(),
            })
    }

    /// Replaces the session with a new one.
    async fn reopen(&mut self) -> Result<()> {
        self.session = None;
        self.session = Some(self.pool.open().await?);
        Ok(())
    }

    async fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        let label = self.pool.label.clone();
        let session = self.session()?;
        if let Some(s) = session.statements.get(sql) {
            return Ok(s.clone());
        }
        let statement = session
            .client
            .prepare(sql)
            .await
            .map_err(|e| classify(&label, e))?;
        session.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs one statement.
    pub(super) async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let label = self.pool.label.clone();
        let statement = self.statement(sql).await?;
        self.session()?
            .client
            .query(&statement, params)
            .await
            .map_err(|e| classify(&label, e))
    }

    /// Runs one statement that may safely run twice (a read): if the session turns out to be
    /// closed, it is run again once on a new session.
    pub(super) async fn query_retrying(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        match self.query(sql, params).await {
            Err(P2pError::StoreUnavailable { .. }) if !self.in_transaction => {
                self.reopen().await?;
                self.query(sql, params).await
            }
            other => other,
        }
    }

    /// Starts a transaction; a session found closed is replaced once (nothing was done yet).
    pub(super) async fn begin(&mut self) -> Result<()> {
        let label = self.pool.label.clone();
        let first = self.session()?.client.batch_execute("BEGIN").await;
        match first {
            Ok(()) => {}
            Err(e) if e.is_closed() => {
                self.reopen().await?;
                self.session()?
                    .client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(|e| classify(&label, e))?;
            }
            Err(e) => return Err(classify(&label, e)),
        }
        self.in_transaction = true;
        Ok(())
    }

    /// Commits the transaction.
    pub(super) async fn commit(&mut self) -> Result<()> {
        let label = self.pool.label.clone();
        self.session()?
            .client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| classify(&label, e))?;
        self.in_transaction = false;
        Ok(())
    }

    /// Rolls the transaction back; if that fails the session is discarded (the server rolls
    /// back when it closes).
    pub(super) async fn rollback(&mut self) {
        let Ok(session) = self.session() else { return };
        if session.client.batch_execute("ROLLBACK").await.is_ok() {
            self.in_transaction = false;
        }
    }

    /// Runs `sql` (several statements, no parameters, no results).
    pub(super) async fn batch(&mut self, sql: &str) -> Result<()> {
        let label = self.pool.label.clone();
        self.session()?
            .client
            .batch_execute(sql)
            .await
            .map_err(|e| classify(&label, e))
    }
}

/// `StoreUnavailable` for an error that means the server cannot be reached or the session
/// broke; `StoreDatabase` for a statement the server refused.
pub(super) fn classify(label: &str, e: tokio_postgres::Error) -> P2pError {
    let lost_server = e.as_db_error().is_some_and(|db| {
        let code = db.code().code();
        // Class 08: connection exception; 57P01-57P03: the server is shutting down, crashed,
        // or is starting up ("Appendix A. PostgreSQL Error Codes").
        code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
    });
    if e.as_db_error().is_none() || lost_server {
        unavailable(label, e)
    } else {
        P2pError::StoreDatabase {
            store: label.to_string(),
            source: Box::new(e),
        }
    }
}

pub(super) fn unavailable(label: &str, e: tokio_postgres::Error) -> P2pError {
    P2pError::StoreUnavailable {
        store: label.to_string(),
        source: Box::new(e),
    }
}
