//! The Postgres store: shared by every Keel instance. Claims use
//! `FOR UPDATE SKIP LOCKED`. After enqueues the store sends one
//! `NOTIFY keel_jobs` per burst (not per job: a NOTIFY in every insert
//! serialises commits), which [`JobStore::listen`] on every instance turns
//! into wake-ups of idle workers.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::Row;
use tokio::sync::Notify;

use super::sql;
use super::{
    job_from_row, lease_token, Backend, CancelOutcome, ClaimedJob, Delivery, DeliveryOutcome,
    Enqueued, Finish, JobStore, KeyClaim, Lease, ListQuery, RedeliverOutcome, StoreError,
    StoredKey, SweepBefore, Swept, JOB_COLUMNS, SWEEP_BATCH,
};
use crate::job::{JobRecord, NewJob};

/// A Postgres job store.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    notify_pending: Arc<AtomicBool>,
}

/// The pool size when the URL does not say.
const DEFAULT_POOL_SIZE: u32 = 32;

/// How long a burst of enqueues is collected into one NOTIFY.
const NOTIFY_DELAY: Duration = Duration::from_millis(10);

/// The due jobs to claim, fairly across tenants: each tenant's oldest due
/// jobs (locked, skipping those another claimer holds) are taken in turns,
/// every tenant's first before any tenant's second, so one tenant's backlog
/// never delays another tenant's job past one claim round. The tenants with
/// queued jobs are found by skipping through the `(tenant, run_at)` index
/// one tenant at a time (a loose index scan), so the cost grows with the
/// number of tenants, not with the backlog. `$3` is now, `$4` the batch size.
const FAIR_CLAIM: &str = "WITH RECURSIVE tenants(tenant) AS (\
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
     ) AS turns ORDER BY turn, run_at LIMIT $4";

// === impl PostgresStore ===

impl PostgresStore {
    /// Inserts a job (queued, or running under `lease`) with its key.
    async fn insert(
        &self,
        job: &NewJob,
        key: Option<&KeyClaim>,
        lease: Option<&Lease>,
        now: i64,
    ) -> Result<Enqueued, StoreError> {
        let record = match lease {
            None => super::queued_record(job, now),
            Some(_) => super::running_record(job, now),
        };
        let Some(key) = key else {
            insert_job(&self.pool, job, lease, now).await?;
            if lease.is_none() {
                self.notify_soon();
            }
            return Ok(Enqueued::Created(Box::new(record)));
        };
        let mut transaction = self.pool.begin().await?;
        let inserted = sqlx::query(sql::INSERT_KEY)
            .bind(&job.tenant)
            .bind(&key.key)
            .bind(&key.request_hash)
            .bind(now)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        if inserted == 0 {
            transaction.rollback().await?;
            let stored = self.key(&job.tenant, &key.key).await?;
            return stored
                .map(Enqueued::KeyExists)
                .ok_or_else(|| StoreError::Corrupt(String::from("an idempotency key vanished")));
        }
        insert_job(&mut *transaction, job, lease, now).await?;
        sqlx::query(sql::COMPLETE_KEY)
            .bind(&job.tenant)
            .bind(&key.key)
            .bind(202_i32)
            .bind(record.to_json())
            .bind(None::<&str>)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        if lease.is_none() {
            self.notify_soon();
        }
        Ok(Enqueued::Created(Box::new(record)))
    }

    /// Sends `NOTIFY keel_jobs` shortly, once for every job committed
    /// until then; called after a commit, so the wake-up never precedes it.
    fn notify_soon(&self) {
        if self.notify_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, pending) = (self.pool.clone(), self.notify_pending.clone());
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

    /// Connects to `url` (nothing is migrated yet).
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
        Ok(Self {
            pool,
            notify_pending: Arc::new(AtomicBool::new(false)),
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

#[async_trait]
impl JobStore for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        super::migrations::migrator(Backend::Postgres)
            .await?
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(sql::COUNT_BY_STATUS)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?)))
            .collect()
    }

    async fn queued_count(&self, tenant: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(sql::COUNT_QUEUED_FOR_TENANT)
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    async fn enqueue(
        &self,
        job: &NewJob,
        key: Option<&KeyClaim>,
        now: i64,
    ) -> Result<Enqueued, StoreError> {
        self.insert(job, key, None, now).await
    }

    async fn enqueue_running(
        &self,
        job: &NewJob,
        key: Option<&KeyClaim>,
        lease: &Lease,
        now: i64,
    ) -> Result<Enqueued, StoreError> {
        self.insert(job, key, Some(lease), now).await
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let query = format!("SELECT {JOB_COLUMNS} FROM keel_jobs WHERE tenant = $1 AND id = $2");
        let row = sqlx::query(&query)
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(job_from_row!(row)),
            None => None,
        })
    }

    async fn list(&self, tenant: &str, query: &ListQuery) -> Result<Vec<JobRecord>, StoreError> {
        let text = super::list_sql(query);
        let mut statement = sqlx::query(&text).bind(tenant).bind(i64::from(query.limit));
        if let Some(status) = query.status {
            statement = statement.bind(status.as_str());
        }
        if let Some(webhook_status) = query.webhook_status {
            statement = statement.bind(webhook_status.as_str());
        }
        if let Some(after) = &query.after {
            statement = statement.bind(after);
        }
        let rows = statement.fetch_all(&self.pool).await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            jobs.push(job_from_row!(row));
        }
        Ok(jobs)
    }

    async fn cancel(&self, tenant: &str, id: &str, now: i64) -> Result<CancelOutcome, StoreError> {
        let query = format!("{} RETURNING {JOB_COLUMNS}", sql::CANCEL);
        if let Some(row) = sqlx::query(&query)
            .bind(tenant)
            .bind(id)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?
        {
            return Ok(CancelOutcome::Cancelled(job_from_row!(row)));
        }
        Ok(super::cancel_outcome(self.get(tenant, id).await?))
    }

    async fn claim(
        &self,
        limit: u32,
        lease_until: i64,
        now: i64,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        let token = lease_token();
        let claim = format!(
            "UPDATE keel_jobs SET status = 'running', attempts = attempts + 1, lease_token = $1, lease_expires_at = $2, \
             started_at = COALESCE(started_at, $3) \
             WHERE id IN ({FAIR_CLAIM}) \
             RETURNING id, tenant, request, attempts"
        );
        let rows = sqlx::query(&claim)
            .bind(&token)
            .bind(lease_until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            claimed.push(ClaimedJob {
                id: row.try_get("id")?,
                tenant: row.try_get("tenant")?,
                request: row.try_get("request")?,
                attempts: row.try_get("attempts")?,
                token: token.clone(),
            });
        }
        Ok(claimed)
    }

    async fn heartbeat(&self, id: &str, token: &str, lease_until: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::HEARTBEAT)
            .bind(id)
            .bind(token)
            .bind(lease_until)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish(
        &self,
        id: &str,
        token: &str,
        finish: &Finish,
        now: i64,
    ) -> Result<bool, StoreError> {
        let statement = match finish {
            Finish::Succeeded { result, cost_usd } => sqlx::query(sql::SUCCEED)
                .bind(id)
                .bind(token)
                .bind(result)
                .bind(now)
                .bind(cost_usd),
            Finish::Failed(error) => sqlx::query(sql::FAIL)
                .bind(id)
                .bind(token)
                .bind(error)
                .bind(now),
            Finish::Retry { run_at, error } => sqlx::query(sql::RETRY)
                .bind(id)
                .bind(token)
                .bind(*run_at)
                .bind(error),
        };
        Ok(statement.execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn release(&self, id: &str, token: &str, run_at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::RELEASE)
            .bind(id)
            .bind(token)
            .bind(run_at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn rescue(&self, max_attempts: u32, error: &str, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(sql::RESCUE)
            .bind(i64::from(max_attempts))
            .bind(error)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn claim_deliveries(
        &self,
        limit: u32,
        retry_at: i64,
        now: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let query = format!(
            "UPDATE keel_jobs SET webhook_next_at = $1 WHERE id IN (SELECT id FROM keel_jobs \
             WHERE webhook_status = 'pending' AND webhook_next_at <= $2 ORDER BY webhook_next_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {JOB_COLUMNS}"
        );
        let rows = sqlx::query(&query)
            .bind(retry_at)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows {
            deliveries.push(Delivery {
                job: job_from_row!(row),
            });
        }
        Ok(deliveries)
    }

    async fn record_delivery(&self, id: &str, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        let statement = match outcome {
            DeliveryOutcome::Delivered => sqlx::query(sql::DELIVERED).bind(id),
            DeliveryOutcome::Retry { at, error } => sqlx::query(sql::DELIVERY_RETRY)
                .bind(id)
                .bind(error)
                .bind(*at),
            DeliveryOutcome::Failed { error } => {
                sqlx::query(sql::DELIVERY_FAILED).bind(id).bind(error)
            }
        };
        statement.execute(&self.pool).await?;
        Ok(())
    }

    async fn endpoint_disabled_at(
        &self,
        tenant: &str,
        url: &str,
    ) -> Result<Option<i64>, StoreError> {
        let disabled_at: Option<Option<i64>> = sqlx::query_scalar(sql::ENDPOINT_DISABLED_AT)
            .bind(tenant)
            .bind(url)
            .fetch_optional(&self.pool)
            .await?;
        Ok(disabled_at.flatten())
    }

    async fn endpoint_succeeded(&self, tenant: &str, url: &str) -> Result<(), StoreError> {
        sqlx::query(sql::ENDPOINT_RESET)
            .bind(tenant)
            .bind(url)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn endpoint_failed(
        &self,
        tenant: &str,
        url: &str,
        error: &str,
        now: i64,
        disable_if_failing_since: i64,
    ) -> Result<bool, StoreError> {
        sqlx::query(sql::ENDPOINT_FAILED)
            .bind(tenant)
            .bind(url)
            .bind(now)
            .bind(error)
            .execute(&self.pool)
            .await?;
        let disabled = sqlx::query(sql::ENDPOINT_DISABLE)
            .bind(tenant)
            .bind(url)
            .bind(now)
            .bind(disable_if_failing_since)
            .execute(&self.pool)
            .await?;
        Ok(disabled.rows_affected() == 1)
    }

    async fn redeliver(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<RedeliverOutcome, StoreError> {
        let query = format!("{} RETURNING {JOB_COLUMNS}", sql::REDELIVER);
        let Some(row) = sqlx::query(&query)
            .bind(tenant)
            .bind(id)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(super::redeliver_outcome(self.get(tenant, id).await?));
        };
        let job = job_from_row!(row);
        if let Some(url) = &job.webhook_url {
            self.endpoint_succeeded(tenant, url).await?;
        }
        Ok(RedeliverOutcome::Redelivering(job))
    }

    async fn key(&self, tenant: &str, key: &str) -> Result<Option<StoredKey>, StoreError> {
        let Some(row) = sqlx::query(sql::SELECT_KEY)
            .bind(tenant)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let status: Option<i32> = row.try_get("response_status")?;
        Ok(Some(StoredKey {
            request_hash: row.try_get("request_hash")?,
            response_status: status.and_then(|status| u16::try_from(status).ok()),
            response_body: row.try_get("response_body")?,
            response_headers: row.try_get("response_headers")?,
        }))
    }

    async fn begin_key(
        &self,
        tenant: &str,
        claim: &KeyClaim,
        now: i64,
        stale_before: i64,
    ) -> Result<Option<StoredKey>, StoreError> {
        let inserted = sqlx::query(sql::INSERT_KEY)
            .bind(tenant)
            .bind(&claim.key)
            .bind(&claim.request_hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
        if inserted.rows_affected() == 1 {
            return Ok(None);
        }
        let taken = sqlx::query(sql::TAKE_OVER_KEY)
            .bind(tenant)
            .bind(&claim.key)
            .bind(&claim.request_hash)
            .bind(now)
            .bind(stale_before)
            .execute(&self.pool)
            .await?;
        if taken.rows_affected() == 1 {
            return Ok(None);
        }
        // Released between the two statements: report it in progress, and
        // the caller's next try inserts it.
        let in_progress = StoredKey {
            request_hash: claim.request_hash.clone(),
            response_status: None,
            response_body: None,
            response_headers: None,
        };
        Ok(Some(
            self.key(tenant, &claim.key).await?.unwrap_or(in_progress),
        ))
    }

    async fn complete_key(
        &self,
        tenant: &str,
        key: &str,
        status: u16,
        body: &str,
        headers: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(sql::COMPLETE_KEY)
            .bind(tenant)
            .bind(key)
            .bind(i32::from(status))
            .bind(body)
            .bind(headers)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release_key(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query(sql::RELEASE_KEY)
            .bind(tenant)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn sweep(&self, before: &SweepBefore) -> Result<Swept, StoreError> {
        let jobs = sqlx::query(sql::SWEEP_JOBS)
            .bind(before.jobs)
            .bind(SWEEP_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let keys = sqlx::query(sql::SWEEP_KEYS)
            .bind(before.keys)
            .bind(before.abandoned_keys)
            .bind(SWEEP_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let endpoints = sqlx::query(sql::SWEEP_ENDPOINTS)
            .bind(before.jobs)
            .bind(SWEEP_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(Swept {
            jobs,
            keys,
            endpoints,
        })
    }

    async fn listen(&self, wake: Arc<Notify>) -> Result<(), StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen("keel_jobs").await?;
        loop {
            // `recv` reconnects by itself after a lost connection; wake the
            // workers then too, since notifications may have been missed.
            listener.recv().await?;
            wake.notify_waiters();
        }
    }
}

async fn insert_job<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    job: &NewJob,
    lease: Option<&Lease>,
    now: i64,
) -> Result<(), StoreError> {
    let statement = if lease.is_some() {
        sql::INSERT_RUNNING_JOB
    } else {
        sql::INSERT_JOB
    };
    let mut insert = sqlx::query(statement)
        .bind(&job.id)
        .bind(&job.tenant)
        .bind(&job.model)
        .bind(&job.request)
        .bind(&job.metadata)
        .bind(now)
        .bind(&job.webhook_url)
        .bind(&job.response_request);
    if let Some(lease) = lease {
        insert = insert.bind(&lease.token).bind(lease.until);
    }
    insert.execute(executor).await?;
    Ok(())
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
