//! The job store: one trait, one implementation over SQL ([`SqlStore`])
//! on two backends (Postgres, shared by several instances, and embedded
//! SQLite for one), each with its [`Dialect`]. Every method that
//! compares or writes times takes `now` (Unix milliseconds) from the caller,
//! so tests move time by passing a later `now`, never by sleeping.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::job::{JobRecord, JobStatus, NewJob, WebhookStatus};

mod migrations;
mod postgres;
mod sql;
mod sql_store;
mod sqlite;

pub use migrations::migrate_url;
pub use postgres::PostgresDialect;
pub use sql_store::{Dialect, PostgresStore, SqlStore, SqliteStore};
pub use sqlite::SqliteDialect;

/// A store failure: the database could not be reached or refused a statement.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no supported backend.
    #[error("database.url: unsupported database URL (use sqlite:… or postgres://…)")]
    UnsupportedUrl,
    /// A statement or connection failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back.
    #[error("corrupt row in the job store: {0}")]
    Corrupt(String),
}

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// An `Idempotency-Key` presented with a submission.
#[derive(Clone, Debug)]
pub struct KeyClaim {
    /// The client's key (scoped by the job's tenant).
    pub key: String,
    /// Hex SHA-256 of method, path and body.
    pub request_hash: String,
}

/// A stored idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// The request hash it was first used with.
    pub request_hash: String,
    /// The status code of the stored response; `None` while in progress.
    pub response_status: Option<u16>,
    /// The stored response body.
    pub response_body: Option<String>,
    /// The stored response's headers of record (JSON `[[name, value], …]`).
    pub response_headers: Option<String>,
}

/// What an enqueue did.
#[derive(Clone, Debug)]
pub enum Enqueued {
    /// The job (and its key, when given) committed.
    Created(Box<JobRecord>),
    /// The key already exists; nothing was written.
    KeyExists(StoredKey),
}

/// A job a worker has claimed.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    /// The job id.
    pub id: String,
    /// Its tenant (whose rate limits the run counts against).
    pub tenant: String,
    /// The request JSON.
    pub request: String,
    /// Runs started, this one included.
    pub attempts: i64,
    /// The lease token: only its holder may heartbeat, finish or release it.
    pub token: String,
}

/// A lease on a job: only its token's holder may heartbeat, finish or
/// release the job, until it expires.
#[derive(Clone, Debug)]
pub struct Lease {
    /// The lease token.
    pub token: String,
    /// When the lease expires (Unix ms).
    pub until: i64,
}

// === impl Lease ===

impl Lease {
    /// A fresh lease until `until`.
    pub fn new(until: i64) -> Self {
        Self {
            token: lease_token(),
            until,
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub enum Finish {
    /// Succeeded with this result JSON.
    Succeeded {
        /// The result JSON.
        result: String,
        /// What the answer cost, when it was priced.
        cost_usd: Option<f64>,
    },
    /// Failed for good with this error JSON.
    Failed(String),
    /// Failed; run again at this time (Unix ms); the error JSON is kept.
    Retry {
        /// When the job may be claimed again.
        run_at: i64,
        /// The error of this run.
        error: String,
    },
}

/// What cancel found.
#[derive(Clone, Debug)]
pub enum CancelOutcome {
    /// The job is (now, or already) cancelled.
    Cancelled(JobRecord),
    /// The job had already succeeded or failed; it is left as it is.
    AlreadyFinal(JobRecord),
    /// No such job for this tenant.
    NotFound,
}

/// A due webhook delivery, claimed for one attempt.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The job as it is now (its object is the payload).
    pub job: JobRecord,
}

/// How one delivery attempt ended.
#[derive(Clone, Debug)]
pub enum DeliveryOutcome {
    /// 2xx.
    Delivered,
    /// Failed; try again at this time (Unix ms).
    Retry {
        /// When to try again.
        at: i64,
        /// Why it failed.
        error: String,
    },
    /// Failed for good.
    Failed {
        /// Why it failed.
        error: String,
    },
}

/// What a manual webhook redelivery found.
#[derive(Clone, Debug)]
pub enum RedeliverOutcome {
    /// The webhook is due again (same `webhook-id`, schedule from the start)
    /// and its endpoint is enabled again.
    Redelivering(JobRecord),
    /// The job has no webhook, is not final yet, or its webhook is still
    /// being delivered.
    NotRedeliverable(JobRecord),
    /// No such job for this tenant.
    NotFound,
}

/// Filters of the job list.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Only jobs in this state.
    pub status: Option<JobStatus>,
    /// Only jobs whose webhook is in this state.
    pub webhook_status: Option<WebhookStatus>,
    /// Only jobs older than this id (the cursor).
    pub after: Option<String>,
    /// At most this many jobs.
    pub limit: u32,
}

/// Rows one sweep statement deletes at most, so a sweep never holds locks
/// on a large part of a table.
pub const SWEEP_BATCH: i64 = 1_000;

/// The cut-offs of a sweep (Unix ms).
#[derive(Clone, Copy, Debug)]
pub struct SweepBefore {
    /// Finished jobs that finished before this (`jobs.retention`).
    pub jobs: i64,
    /// Keys created before this (`idempotency.ttl`).
    pub keys: i64,
    /// Keys still in progress since before this (the lock timeout).
    pub abandoned_keys: i64,
}

/// What one sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Finished jobs past retention.
    pub jobs: u64,
    /// Idempotency keys past their TTL.
    pub keys: u64,
    /// Webhook endpoint states older than the job retention.
    pub endpoints: u64,
}

/// The durable store behind the queue.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Which database this is.
    fn backend(&self) -> Backend;
    /// Applies the migrations that have not run yet.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// How many jobs are in each status (for the `keel_queue_jobs` gauge).
    async fn counts(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// How many of `tenant`'s jobs are queued (for `limits.max_queued_jobs`).
    async fn queued_count(&self, tenant: &str) -> Result<i64, StoreError>;
    /// Inserts a job, queued or (with `lease`) running, with its
    /// idempotency key and the response to replay (the job object as first
    /// returned), in one transaction. When the key already exists nothing
    /// is written and the stored key is returned. Callers say which with
    /// [`JobStore::enqueue`] or [`JobStore::enqueue_running`].
    async fn insert(
        &self,
        job: &NewJob,
        key: Option<&KeyClaim>,
        lease: Option<&Lease>,
        now: i64,
    ) -> Result<Enqueued, StoreError>;
    /// Inserts a queued job (see [`JobStore::insert`]).
    async fn enqueue(
        &self,
        job: &NewJob,
        key: Option<&KeyClaim>,
        now: i64,
    ) -> Result<Enqueued, StoreError> {
        self.insert(job, key, None, now).await
    }
    /// Like [`JobStore::enqueue`], for a job its submitter is already
    /// running: inserted `running`, its first attempt counted, under the
    /// `lease` the submitter holds (so it heartbeats, finishes or releases
    /// it like a worker, and a rescue re-queues it if the submitter dies).
    async fn enqueue_running(
        &self,
        job: &NewJob,
        key: Option<&KeyClaim>,
        lease: &Lease,
        now: i64,
    ) -> Result<Enqueued, StoreError> {
        self.insert(job, key, Some(lease), now).await
    }
    /// The tenant's job `id`.
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// The tenant's jobs, newest first; at most `query.limit`.
    async fn list(&self, tenant: &str, query: &ListQuery) -> Result<Vec<JobRecord>, StoreError>;
    /// Cancels a queued or running job.
    async fn cancel(&self, tenant: &str, id: &str, now: i64) -> Result<CancelOutcome, StoreError>;
    /// Claims up to `limit` due jobs under a lease ending at `lease_until`.
    async fn claim(
        &self,
        limit: u32,
        lease_until: i64,
        now: i64,
    ) -> Result<Vec<ClaimedJob>, StoreError>;
    /// Extends a lease; `false` when it is no longer held (expired and
    /// re-claimed, or the job was cancelled).
    async fn heartbeat(&self, id: &str, token: &str, lease_until: i64) -> Result<bool, StoreError>;
    /// Records how a run ended; `false` when the lease was no longer held
    /// (the outcome is then dropped).
    async fn finish(
        &self,
        id: &str,
        token: &str,
        finish: &Finish,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Gives a claimed job back unrun (shutdown, or its tenant over its
    /// rate limit): queued again from `run_at`, lease cleared, the attempt
    /// not counted.
    async fn release(&self, id: &str, token: &str, run_at: i64) -> Result<bool, StoreError>;
    /// Re-queues running jobs whose lease expired (or fails them when their
    /// attempts are spent, with `error`). Returns how many it touched.
    async fn rescue(&self, max_attempts: u32, error: &str, now: i64) -> Result<u64, StoreError>;
    /// Claims up to `limit` due webhook deliveries; the next attempt is
    /// pushed to `retry_at` so a crashed deliverer's attempt is retried.
    async fn claim_deliveries(
        &self,
        limit: u32,
        retry_at: i64,
        now: i64,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Records one delivery attempt.
    async fn record_delivery(&self, id: &str, outcome: &DeliveryOutcome) -> Result<(), StoreError>;
    /// When the tenant's endpoint `url` was disabled, if it is.
    async fn endpoint_disabled_at(
        &self,
        tenant: &str,
        url: &str,
    ) -> Result<Option<i64>, StoreError>;
    /// A delivery to the endpoint succeeded: its failure clock stops.
    async fn endpoint_succeeded(&self, tenant: &str, url: &str) -> Result<(), StoreError>;
    /// A delivery to the endpoint failed: its failure clock starts (if it
    /// is not running) and the endpoint is disabled when the clock started
    /// at or before `disable_if_failing_since`. `true` when this call
    /// disabled it.
    async fn endpoint_failed(
        &self,
        tenant: &str,
        url: &str,
        error: &str,
        now: i64,
        disable_if_failing_since: i64,
    ) -> Result<bool, StoreError>;
    /// Makes a final job's settled webhook due again at `now` and enables
    /// its endpoint again.
    async fn redeliver(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<RedeliverOutcome, StoreError>;
    /// The idempotency key `key` of `tenant`.
    async fn key(&self, tenant: &str, key: &str) -> Result<Option<StoredKey>, StoreError>;
    /// Marks `claim` in progress for `tenant`: `None` when this caller now
    /// owns it (new, or abandoned since before `stale_before`), else the
    /// stored key (in progress elsewhere, or complete).
    async fn begin_key(
        &self,
        tenant: &str,
        claim: &KeyClaim,
        now: i64,
        stale_before: i64,
    ) -> Result<Option<StoredKey>, StoreError>;
    /// Stores the response of a key this caller owns, with its headers of
    /// record (JSON `[[name, value], …]`) when it has some.
    async fn complete_key(
        &self,
        tenant: &str,
        key: &str,
        status: u16,
        body: &str,
        headers: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Deletes a key still in progress (its request failed before a
    /// response worth replaying).
    async fn release_key(&self, tenant: &str, key: &str) -> Result<(), StoreError>;
    /// Deletes one batch ([`SWEEP_BATCH`] rows at most) of each: finished
    /// jobs whose webhook is settled, and expired or abandoned keys.
    async fn sweep(&self, before: &SweepBefore) -> Result<Swept, StoreError>;
    /// Calls `wake.notify_waiters()` whenever another instance enqueues a
    /// job; runs until the connection fails for good. Stores without
    /// cross-instance notifications never return.
    async fn listen(&self, wake: Arc<Notify>) -> Result<(), StoreError>;
}

/// Opens the store `url` names (`sqlite:…`, `postgres://…`, `postgresql://…`).
pub async fn open(url: &str) -> Result<Arc<dyn JobStore>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// Milliseconds in `duration`, saturating.
pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Reads a [`JobRecord`] from a row of either backend (the columns of
/// [`sql::JOB_COLUMNS`]).
macro_rules! job_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        let status: String = row.try_get("status")?;
        let webhook_status: Option<String> = row.try_get("webhook_status")?;
        $crate::job::JobRecord {
            id: row.try_get("id")?,
            tenant: row.try_get("tenant")?,
            status: $crate::job::JobStatus::parse(&status).ok_or_else(|| {
                $crate::store::StoreError::Corrupt(format!("job status {status:?}"))
            })?,
            model: row.try_get("model")?,
            metadata: row.try_get("metadata")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            attempts: row.try_get("attempts")?,
            result: row.try_get("result")?,
            error: row.try_get("error")?,
            webhook_url: row.try_get("webhook_url")?,
            webhook_status: webhook_status
                .as_deref()
                .and_then($crate::job::WebhookStatus::parse),
            webhook_attempts: row.try_get("webhook_attempts")?,
            webhook_last_error: row.try_get("webhook_last_error")?,
            cost_usd: row.try_get("cost_usd")?,
            response_request: row.try_get("response_request")?,
        }
    }};
}
pub(crate) use job_from_row;

/// The record of a job just inserted by [`JobStore::enqueue_running`].
pub(crate) fn running_record(job: &NewJob, now: i64) -> JobRecord {
    JobRecord {
        status: JobStatus::Running,
        started_at: Some(now),
        attempts: 1,
        ..queued_record(job, now)
    }
}

/// The record of a job just inserted by [`JobStore::enqueue`].
pub(crate) fn queued_record(job: &NewJob, now: i64) -> JobRecord {
    JobRecord {
        id: job.id.clone(),
        tenant: job.tenant.clone(),
        status: JobStatus::Queued,
        model: job.model.clone(),
        metadata: job.metadata.clone(),
        created_at: now,
        started_at: None,
        finished_at: None,
        attempts: 0,
        result: None,
        error: None,
        webhook_url: job.webhook_url.clone(),
        webhook_status: job.webhook_url.as_ref().map(|_| WebhookStatus::Pending),
        webhook_attempts: 0,
        webhook_last_error: None,
        cost_usd: None,
        response_request: job.response_request.clone(),
    }
}

/// The list query; parameters: `$1` tenant, `$2` limit, then status,
/// webhook status and cursor when present, in that order.
pub(crate) fn list_sql(query: &ListQuery) -> String {
    let mut text = format!(
        "SELECT {} FROM keel_jobs WHERE tenant = $1",
        sql::JOB_COLUMNS
    );
    let mut next = 3;
    if query.status.is_some() {
        text.push_str(&format!(" AND status = ${next}"));
        next += 1;
    }
    if query.webhook_status.is_some() {
        text.push_str(&format!(" AND webhook_status = ${next}"));
        next += 1;
    }
    if query.after.is_some() {
        text.push_str(&format!(" AND id < ${next}"));
    }
    text.push_str(" ORDER BY id DESC LIMIT $2");
    text
}

/// What a redelivery that updated nothing found.
pub(crate) fn redeliver_outcome(job: Option<JobRecord>) -> RedeliverOutcome {
    job.map_or(
        RedeliverOutcome::NotFound,
        RedeliverOutcome::NotRedeliverable,
    )
}

/// What a cancel that updated nothing found.
pub(crate) fn cancel_outcome(job: Option<JobRecord>) -> CancelOutcome {
    match job {
        None => CancelOutcome::NotFound,
        Some(job) if job.status == JobStatus::Cancelled => CancelOutcome::Cancelled(job),
        // A job that is queued or running again here raced with a rescue;
        // it is reported as it is and the client may cancel again.
        Some(job) => CancelOutcome::AlreadyFinal(job),
    }
}

/// A fresh lease token.
pub(crate) fn lease_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

#[cfg(test)]
mod tests;
