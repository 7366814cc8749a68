//! The embedded SQLite store, for one instance. SQLite has one writer at a
//! time, so the store keeps one connection and every statement queues on
//! it: no `SQLITE_BUSY` retries, and a claim is a single
//! `UPDATE … RETURNING` that no other statement interleaves with.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use tokio::sync::Notify;

use super::sql;
use super::{
    job_from_row, lease_token, Backend, CancelOutcome, ClaimedJob, Delivery, DeliveryOutcome,
    Enqueued, Finish, JobStore, KeyClaim, Lease, ListQuery, RedeliverOutcome, StoreError,
    StoredKey, SweepBefore, Swept, JOB_COLUMNS, SWEEP_BATCH,
};
use crate::job::{JobRecord, NewJob};

/// A SQLite job store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

// === impl SqliteStore ===

impl SqliteStore {
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
        Ok(Enqueued::Created(Box::new(record)))
    }

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
        Ok(Self { pool })
    }
}

#[async_trait]
impl JobStore for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        super::migrations::migrator(Backend::Sqlite)
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
        // Fair across tenants: every tenant's oldest due job before any
        // tenant's second. Tenants are found by skipping through the
        // `(tenant, run_at)` index, and each contributes at most a batch of
        // its oldest due jobs, so the cost grows with the number of tenants,
        // not with a backlog. One connection: no claimer races another.
        let rows = sqlx::query(
            "WITH RECURSIVE tenants(tenant) AS (\
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
             RETURNING id, tenant, request, attempts",
        )
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
             WHERE webhook_status = 'pending' AND webhook_next_at <= $2 ORDER BY webhook_next_at LIMIT $3) \
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

    async fn listen(&self, _wake: Arc<Notify>) -> Result<(), StoreError> {
        // One instance per SQLite file: the in-process wake-up is enough.
        std::future::pending().await
    }
}

async fn insert_job<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
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
