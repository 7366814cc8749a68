//! The embedded SQLite store, for one instance. SQLite has one writer at a
//! time, so the store keeps one connection and every statement queues on
//! it: no `SQLITE_BUSY` retries, and a claim is a single
//! `UPDATE … RETURNING` that no other statement interleaves with.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use tokio::sync::Notify;

use super::sql::claim_deliveries;
use super::sql_store::{Dialect, SqlStore, SqliteStore};
use super::{Backend, StoreError};

/// What SQLite does its own way: one connection claims, so no row needs
/// skipping, and one instance per file needs no cross-instance wake-ups.
#[derive(Clone, Copy, Debug, Default)]
pub struct SqliteDialect;

impl Dialect for SqliteDialect {
    type Db = sqlx::Sqlite;
    const BACKEND: Backend = Backend::Sqlite;

    /// Fair across tenants: every tenant's oldest due job before any
    /// tenant's second. Tenants are found by skipping through the
    /// `(tenant, run_at)` index, and each contributes at most a batch of its
    /// oldest due jobs, so the cost grows with the number of tenants, not
    /// with a backlog. One connection: no claimer races another.
    const CLAIM: &'static str = "WITH RECURSIVE tenants(tenant) AS (\
         SELECT (SELECT tenant FROM keel_jobs WHERE status = 'queued' ORDER BY tenant LIMIT 1) \
         UNION ALL \
         SELECT (SELECT next.tenant FROM keel_jobs AS next \
             WHERE next.status = 'queued' AND next.tenant > tenants.tenant ORDER BY next.tenant LIMIT 1) \
         FROM tenants WHERE tenants.tenant IS NOT NULL) \
         UPDATE keel_jobs SET status = 'running', attempts = attempts + 1, lease_token = $1, lease_expires_at = $2, \
         started_at = COALESCE(started_at, $3) \
         WHERE id IN (SELECT id FROM (\
             SELECT due.id, due.run_at, row_number() OVER (PARTITION BY due.tenant ORDER BY due.run_at) AS turn \
             FROM tenants JOIN keel_jobs AS due ON due.id IN (\
                 SELECT id FROM keel_jobs WHERE tenant = tenants.tenant AND status = 'queued' AND run_at <= $3 \
                 ORDER BY run_at LIMIT $4)) \
             ORDER BY turn, run_at LIMIT $4) \
         RETURNING id, tenant, request, attempts";

    const CLAIM_DELIVERIES: &'static str = claim_deliveries!("");

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    async fn listen(&self, _pool: &SqlitePool, _wake: Arc<Notify>) -> Result<(), StoreError> {
        // One instance per SQLite file: the in-process wake-up is enough.
        std::future::pending().await
    }
}

// === impl SqliteStore ===

impl SqliteStore {
    /// Connects to `url` (nothing is migrated yet).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // WAL with FULL sync: a 202 means the job survives a crash of the
        // process and of the machine.
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        // One connection, kept for ever: an in-memory database lives as
        // long as its connection does.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Ok(SqlStore {
            pool,
            dialect: SqliteDialect,
        })
    }
}
