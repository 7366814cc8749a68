//! The job store over any SQL database sqlx speaks: every statement of
//! [`sql`] is run here once for both backends, and only what truly differs
//! (how jobs are claimed, how other instances are woken, how to connect) is
//! left to a backend's [`Dialect`].

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};
use tokio::sync::Notify;

use super::sql;
use super::{
    job_from_row, lease_token, Backend, CancelOutcome, ClaimedJob, Delivery, DeliveryOutcome,
    Enqueued, Finish, JobStore, KeyClaim, Lease, ListQuery, RedeliverOutcome, StoreError,
    StoredKey, SweepBefore, Swept, SWEEP_BATCH,
};
use crate::job::{JobRecord, NewJob};

/// What one backend does its own way.
pub trait Dialect: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The sqlx database.
    type Db: Database;
    /// Which backend this is.
    const BACKEND: Backend;
    /// Claims due jobs: `$1` lease token, `$2` lease end, `$3` now, `$4`
    /// batch size; returns `id, tenant, request, attempts`.
    const CLAIM: &'static str;
    /// Claims due webhook deliveries: `$1` next attempt, `$2` now, `$3`
    /// batch size; returns the job columns.
    const CLAIM_DELIVERIES: &'static str;

    /// Rows a statement changed.
    fn rows_affected(done: &<Self::Db as Database>::QueryResult) -> u64;

    /// A queued job committed: other instances may want to know.
    fn enqueued(&self, _pool: &Pool<Self::Db>) {}

    /// Wakes `wake` whenever another instance enqueues a job (see
    /// [`JobStore::listen`]).
    fn listen(
        &self,
        pool: &Pool<Self::Db>,
        wake: Arc<Notify>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A job store on `D`'s database.
#[derive(Clone, Debug)]
pub struct SqlStore<D: Dialect> {
    pub(crate) pool: Pool<D::Db>,
    pub(crate) dialect: D,
}

/// The Postgres job store (see [`super::postgres`]).
pub type PostgresStore = SqlStore<super::postgres::PostgresDialect>;

/// The embedded SQLite job store (see [`super::sqlite`]).
pub type SqliteStore = SqlStore<super::sqlite::SqliteDialect>;

// The bounds below say what the shared statements need of a database: to
// run on its connections, to bind text, integers and reals (and their
// NULLs), and to read them back by column name.
#[async_trait]
impl<D> JobStore for SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<&'q str>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> String: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<String>: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> i32: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<i32>: Decode<'q, D::Db> + Type<D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<i64>: Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<f64>: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'r> &'r str: sqlx::ColumnIndex<<D::Db as Database>::Row>,
    usize: sqlx::ColumnIndex<<D::Db as Database>::Row>,
    <D::Db as Database>::Connection: sqlx::migrate::Migrate,
{
    fn backend(&self) -> Backend {
        D::BACKEND
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = super::migrations::migrator(D::BACKEND).await?;
        let mut connection = self.pool.acquire().await?;
        migrator.run_direct(&mut *connection).await?;
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
        let insert_job = || {
            let statement = if lease.is_some() {
                sql::INSERT_RUNNING_JOB
            } else {
                sql::INSERT_JOB
            };
            let insert = sqlx::query(statement)
                .bind(&job.id)
                .bind(&job.tenant)
                .bind(&job.model)
                .bind(&job.request)
                .bind(&job.metadata)
                .bind(now)
                .bind(&job.webhook_url)
                .bind(&job.response_request);
            match lease {
                Some(lease) => insert.bind(&lease.token).bind(lease.until),
                None => insert,
            }
        };
        let Some(key) = key else {
            insert_job().execute(&self.pool).await?;
            if lease.is_none() {
                self.dialect.enqueued(&self.pool);
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
            .await?;
        if D::rows_affected(&inserted) == 0 {
            transaction.rollback().await?;
            let stored = self.key(&job.tenant, &key.key).await?;
            return stored
                .map(Enqueued::KeyExists)
                .ok_or_else(|| StoreError::Corrupt(String::from("an idempotency key vanished")));
        }
        insert_job().execute(&mut *transaction).await?;
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
            self.dialect.enqueued(&self.pool);
        }
        Ok(Enqueued::Created(Box::new(record)))
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(sql::GET)
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
        if let Some(row) = sqlx::query(sql::CANCEL)
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
        let rows = sqlx::query(D::CLAIM)
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
        Ok(D::rows_affected(&done) == 1)
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
                .bind(*cost_usd),
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
        let done = statement.execute(&self.pool).await?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn release(&self, id: &str, token: &str, run_at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::RELEASE)
            .bind(id)
            .bind(token)
            .bind(run_at)
            .execute(&self.pool)
            .await?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn rescue(&self, max_attempts: u32, error: &str, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(sql::RESCUE)
            .bind(i64::from(max_attempts))
            .bind(error)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(D::rows_affected(&done))
    }

    async fn claim_deliveries(
        &self,
        limit: u32,
        retry_at: i64,
        now: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(D::CLAIM_DELIVERIES)
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
        let row = sqlx::query(sql::ENDPOINT_DISABLED_AT)
            .bind(tenant)
            .bind(url)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(row.try_get::<Option<i64>, _>(0)?),
            None => Ok(None),
        }
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
        Ok(D::rows_affected(&disabled) == 1)
    }

    async fn redeliver(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<RedeliverOutcome, StoreError> {
        let Some(row) = sqlx::query(sql::REDELIVER)
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
        if D::rows_affected(&inserted) == 1 {
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
        if D::rows_affected(&taken) == 1 {
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
            .await?;
        let keys = sqlx::query(sql::SWEEP_KEYS)
            .bind(before.keys)
            .bind(before.abandoned_keys)
            .bind(SWEEP_BATCH)
            .execute(&self.pool)
            .await?;
        let endpoints = sqlx::query(sql::SWEEP_ENDPOINTS)
            .bind(before.jobs)
            .bind(SWEEP_BATCH)
            .execute(&self.pool)
            .await?;
        Ok(Swept {
            jobs: D::rows_affected(&jobs),
            keys: D::rows_affected(&keys),
            endpoints: D::rows_affected(&endpoints),
        })
    }

    async fn listen(&self, wake: Arc<Notify>) -> Result<(), StoreError> {
        self.dialect.listen(&self.pool, wake).await
    }
}
