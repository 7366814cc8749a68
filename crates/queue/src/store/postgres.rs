//! The Postgres store: shared by every Keel instance. Claims use
//! `FOR UPDATE SKIP LOCKED`. After enqueues the store sends one
//! `NOTIFY keel_jobs` per burst (not per job: a NOTIFY in every insert
//! serialises commits), which [`listen`](super::JobStore::listen) on every instance turns
//! into wake-ups of idle workers.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgQueryResult};
use tokio::sync::Notify;

use super::sql::claim_deliveries;
use super::sql_store::{Dialect, PostgresStore, SqlStore};
use super::{Backend, StoreError};

/// What Postgres does its own way: claims skip rows another claimer
/// holds, and enqueues wake every instance's idle workers.
#[derive(Clone, Debug, Default)]
pub struct PostgresDialect {
    /// A NOTIFY is already on its way.
    notify_pending: Arc<AtomicBool>,
}

/// The pool size when the URL does not say.
const DEFAULT_POOL_SIZE: u32 = 32;

/// How long a burst of enqueues is collected into one NOTIFY.
const NOTIFY_DELAY: Duration = Duration::from_millis(10);

impl Dialect for PostgresDialect {
    type Db = sqlx::Postgres;
    const BACKEND: Backend = Backend::Postgres;

    /// The due jobs, claimed fairly across tenants: each tenant's oldest
    /// due jobs (locked, skipping those another claimer holds) are taken in
    /// turns, every tenant's first before any tenant's second, so one
    /// tenant's backlog never delays another tenant's job past one claim
    /// round. The tenants with queued jobs are found by skipping through
    /// the `(tenant, run_at)` index one tenant at a time (a loose index
    /// scan), so the cost grows with the number of tenants, not with the
    /// backlog.
    const CLAIM: &'static str = "UPDATE keel_jobs SET status = 'running', attempts = attempts + 1, lease_token = $1, lease_expires_at = $2, \
         started_at = COALESCE(started_at, $3) \
         WHERE id IN (\
         WITH RECURSIVE tenants(tenant) AS (\
         (SELECT tenant FROM keel_jobs WHERE status = 'queued' ORDER BY tenant LIMIT 1) \
         UNION ALL \
         SELECT (SELECT next.tenant FROM keel_jobs AS next \
             WHERE next.status = 'queued' AND next.tenant > tenants.tenant ORDER BY next.tenant LIMIT 1) \
         FROM tenants WHERE tenants.tenant IS NOT NULL\
         ) \
         SELECT id FROM (\
         SELECT due.id, due.run_at, row_number() OVER (PARTITION BY tenants.tenant ORDER BY due.run_at) AS turn \
         FROM tenants \
         CROSS JOIN LATERAL (SELECT id, run_at FROM keel_jobs \
             WHERE tenant = tenants.tenant AND status = 'queued' AND run_at <= $3 \
             ORDER BY run_at LIMIT $4 FOR UPDATE SKIP LOCKED) AS due \
         WHERE tenants.tenant IS NOT NULL\
         ) AS turns ORDER BY turn, run_at LIMIT $4) \
         RETURNING id, tenant, request, attempts";

    const CLAIM_DELIVERIES: &'static str = claim_deliveries!(" FOR UPDATE SKIP LOCKED");

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    /// Sends `NOTIFY keel_jobs` shortly, once for every job committed
    /// until then; called after a commit, so the wake-up never precedes it.
    fn enqueued(&self, pool: &PgPool) {
        if self.notify_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, pending) = (pool.clone(), self.notify_pending.clone());
        tokio::spawn(async move {
            tokio::time::sleep(NOTIFY_DELAY).await;
            pending.store(false, Ordering::Release);
            if let Err(error) = sqlx::query("SELECT pg_notify('keel_jobs', '')")
                .execute(&pool)
                .await
            {
                tracing::debug!(%error, "NOTIFY keel_jobs failed; other instances fall back to polling");
            }
        });
    }

    async fn listen(&self, pool: &PgPool, wake: Arc<Notify>) -> Result<(), StoreError> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen("keel_jobs").await?;
        loop {
            // `recv` reconnects by itself after a lost connection; wake the
            // workers then too, since notifications may have been missed.
            listener.recv().await?;
            wake.notify_waiters();
        }
    }
}

// === impl PostgresStore ===

impl PostgresStore {
    /// Connects to `url` (nothing is migrated yet). The URL may carry
    /// `max_connections=N` (default 32), the pool size of this instance;
    /// the rest goes to Postgres as it is.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (url, max_connections) = pool_size(url);
        let options = PgConnectOptions::from_str(&url)?;
        // Many connections let Postgres group concurrent enqueue commits into
        // one WAL flush: the enqueue rate is bounded by flushes, not CPU.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await?;
        Ok(SqlStore {
            pool,
            dialect: PostgresDialect::default(),
        })
    }
}

/// Takes `max_connections=N` out of the URL's query.
fn pool_size(url: &str) -> (String, u32) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), DEFAULT_POOL_SIZE);
    };
    let mut size = DEFAULT_POOL_SIZE;
    let rest: Vec<&str> = query
        .split('&')
        .filter(
            |pair| match pair.strip_prefix("max_connections=").map(str::parse::<u32>) {
                Some(Ok(value)) if value > 0 => {
                    size = value;
                    false
                }
                _ => true,
            },
        )
        .collect();
    if rest.is_empty() {
        (base.to_owned(), size)
    } else {
        (format!("{base}?{}", rest.join("&")), size)
    }
}

#[cfg(test)]
mod tests {
    use super::pool_size;

    #[test]
    fn the_pool_size_comes_out_of_the_url() {
        assert_eq!(
            pool_size("postgres://h/db"),
            (String::from("postgres://h/db"), 32)
        );
        assert_eq!(
            pool_size("postgres://h/db?max_connections=64"),
            (String::from("postgres://h/db"), 64)
        );
        assert_eq!(
            pool_size("postgres://h/db?sslmode=disable&max_connections=8"),
            (String::from("postgres://h/db?sslmode=disable"), 8)
        );
        assert_eq!(
            pool_size("postgres://h/db?max_connections=x"),
            (String::from("postgres://h/db?max_connections=x"), 32)
        );
    }
}
