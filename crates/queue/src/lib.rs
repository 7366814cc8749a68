//! Keel's durable job queue: the job store (Postgres, shared by several
//! instances, or embedded SQLite for one) behind [`JobStore`], workers that
//! claim jobs under leases and run them through a [`JobHandler`],
//! idempotency keys for submissions, and signed webhook delivery with an
//! SSRF guard.
//!
//! The crate knows nothing of HTTP status codes or of the router: the
//! server maps [`SubmitError`] and [`CancelOutcome`] to responses, and the
//! binary passes a [`JobHandler`] that calls the router.

mod backoff;
mod held;
mod idempotency;
mod job;
mod store;
mod webhook;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch, Notify};

pub use backoff::{retry_ceiling, retry_delay};
pub use held::{Held, HeldJob, HELD_LEASE};
pub use idempotency::{request_hash, KeyState, LOCK_TIMEOUT, MAX_KEY_LENGTH};
pub use job::{new_job_id, JobRecord, JobStatus, NewJob, WebhookStatus};
pub use store::{
    migrate_url, millis, open, Backend, CancelOutcome, ClaimedJob, Delivery, DeliveryOutcome,
    Dialect, Enqueued, Finish, JobStore, KeyClaim, Lease, ListQuery, PostgresDialect,
    PostgresStore, RedeliverOutcome, SqlStore, SqliteDialect, SqliteStore, StoreError, StoredKey,
    SweepBefore, Swept, SWEEP_BATCH,
};
pub use webhook::{
    check_url, decode_secret, delivery_client, is_blocked, signature_header, verify,
    GuardedResolver, InvalidSecret, Refused, Unverified, WebhookPolicy, TIMESTAMP_TOLERANCE,
};
pub use worker::{JobFailure, JobHandler, JobOutput, Retry, WorkerPolicy};

/// The queue as the server and the binary see it: the store, the wake-ups
/// of this instance's workers and deliverer, and the jobs running here (so
/// a cancel can drop their upstream call at once).
pub struct Queue {
    store: Arc<dyn JobStore>,
    job_wake: Arc<Notify>,
    webhook_wake: Notify,
    running: Mutex<HashMap<String, oneshot::Sender<()>>>,
    allow_private_webhooks: bool,
    webhooks_enabled: bool,
    metrics: Option<Arc<keel_telemetry::Metrics>>,
    /// When the job gauges were last counted; `None` before the first count.
    /// Held across the count, so concurrent scrapes make one query.
    counted_at: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

/// How often scrapes may count the jobs table: a scrape in between reports
/// the last count (a `COUNT(*)` per scrape would let scrapers load the store).
pub const GAUGE_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// A job submission, validated by the server.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The job to insert.
    pub job: NewJob,
    /// The `Idempotency-Key`, if the client sent one.
    pub key: Option<KeyClaim>,
}

/// What a submission produced.
#[derive(Clone, Debug)]
pub enum Submitted {
    /// A new job, committed.
    Created(Box<JobRecord>),
    /// The stored response of an earlier submission with the same key and body.
    Replayed {
        /// The job id.
        id: String,
        /// The job object exactly as first returned.
        body: String,
    },
}

/// Why a submission was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The key was used with a different request.
    #[error("this Idempotency-Key was already used with a different request")]
    KeyReused,
    /// The key's first request has not finished in time.
    #[error("a request with this Idempotency-Key is still in progress; retry later")]
    KeyInProgress,
    /// The webhook URL may not be used.
    #[error("webhook.url: {0}")]
    Webhook(#[from] Refused),
    /// Webhooks are not configured.
    #[error("webhook.url: this gateway has no webhooks.secret, so it cannot sign webhooks")]
    WebhooksDisabled,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

// === impl Queue ===

impl Queue {
    /// A queue over `store`. `webhooks` says whether webhooks can be signed
    /// and whether private receivers are allowed.
    pub fn new(store: Arc<dyn JobStore>, webhooks: &WebhookPolicy) -> Self {
        Self {
            store,
            job_wake: Arc::new(Notify::new()),
            webhook_wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            allow_private_webhooks: webhooks.allow_private,
            webhooks_enabled: !webhooks.keys.is_empty(),
            metrics: None,
            counted_at: tokio::sync::Mutex::new(None),
        }
    }

    /// Records webhook deliveries into `metrics` (and lets
    /// [`Queue::export_gauges`] set the job gauges there).
    pub fn with_metrics(mut self, metrics: Arc<keel_telemetry::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The metrics this queue records into, if any.
    pub fn metrics(&self) -> Option<&Arc<keel_telemetry::Metrics>> {
        self.metrics.as_ref()
    }

    /// Sets `keel_queue_jobs{state}` from the store (called at scrape time),
    /// at most once per [`GAUGE_REFRESH`]; scrapes in between, or while a
    /// count runs, keep the last figures.
    pub async fn export_gauges(&self) {
        let Some(metrics) = &self.metrics else { return };
        let Ok(mut counted_at) = self.counted_at.try_lock() else {
            return;
        };
        let now = tokio::time::Instant::now();
        if counted_at.is_some_and(|at| now.duration_since(at) < GAUGE_REFRESH) {
            return;
        }
        *counted_at = Some(now);
        match self.store.counts().await {
            Ok(counts) => {
                for state in ["queued", "running", "succeeded", "failed", "cancelled"] {
                    let count = counts
                        .iter()
                        .find(|(name, _)| name == state)
                        .map_or(0, |(_, count)| *count);
                    let labels = keel_telemetry::StateLabels {
                        state: state.to_owned(),
                    };
                    metrics.queue_jobs.get_or_create(&labels).set(count);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot count jobs for /metrics"),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    /// Checks and inserts a job; 202 may be sent once this returns `Ok`.
    pub async fn submit(&self, submission: &Submission) -> Result<Submitted, SubmitError> {
        self.submit_with(submission, None).await
    }

    /// Submits a job, queued, or running under `lease` (held by the caller).
    async fn submit_with(
        &self,
        submission: &Submission,
        lease: Option<&Lease>,
    ) -> Result<Submitted, SubmitError> {
        if let Some(url) = &submission.job.webhook_url {
            if !self.webhooks_enabled {
                return Err(SubmitError::WebhooksDisabled);
            }
            check_url(url, self.allow_private_webhooks).await?;
        }
        let deadline = tokio::time::Instant::now() + idempotency::WAIT;
        loop {
            let (job, key, now) = (&submission.job, submission.key.as_ref(), now_ms());
            let enqueued = match lease {
                None => self.store.enqueue(job, key, now).await?,
                Some(lease) => self.store.enqueue_running(job, key, lease, now).await?,
            };
            match enqueued {
                Enqueued::Created(record) => {
                    // A running job is its holder's: no worker needs waking.
                    if lease.is_none() {
                        self.job_wake.notify_one();
                    }
                    return Ok(Submitted::Created(record));
                }
                Enqueued::KeyExists(stored) => {
                    if let Some(replay) = idempotency::replay(submission, stored)? {
                        return Ok(replay);
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SubmitError::KeyInProgress);
            }
            tokio::time::sleep(idempotency::WAIT_STEP).await;
        }
    }

    /// How many of `tenant`'s jobs are queued.
    pub async fn queued(&self, tenant: &str) -> Result<i64, StoreError> {
        self.store.queued_count(tenant).await
    }

    /// The tenant's job `id`.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.store.get(tenant, id).await
    }

    /// The tenant's jobs, newest first, and whether more follow.
    pub async fn list(
        &self,
        tenant: &str,
        query: &ListQuery,
    ) -> Result<(Vec<JobRecord>, bool), StoreError> {
        let mut one_more = query.clone();
        one_more.limit = query.limit.saturating_add(1);
        let mut jobs = self.store.list(tenant, &one_more).await?;
        let has_more = jobs.len() > usize::try_from(query.limit).unwrap_or(usize::MAX);
        jobs.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
        Ok((jobs, has_more))
    }

    /// Cancels a queued or running job; a run on this instance is dropped
    /// at once (other instances notice at their next heartbeat).
    pub async fn cancel(&self, tenant: &str, id: &str) -> Result<CancelOutcome, StoreError> {
        let outcome = self.store.cancel(tenant, id, now_ms()).await?;
        if let CancelOutcome::Cancelled(_) = &outcome {
            let running = self
                .running
                .lock()
                .ok()
                .and_then(|mut running| running.remove(id));
            if let Some(cancel) = running {
                let _ = cancel.send(());
            }
            self.webhook_wake.notify_one();
        }
        Ok(outcome)
    }

    /// Makes a final job's webhook due again (same `webhook-id`, schedule
    /// from the start) and enables its endpoint again.
    pub async fn redeliver(&self, tenant: &str, id: &str) -> Result<RedeliverOutcome, StoreError> {
        let outcome = self.store.redeliver(tenant, id, now_ms()).await?;
        if let RedeliverOutcome::Redelivering(_) = &outcome {
            self.webhook_wake.notify_one();
        }
        Ok(outcome)
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn ready(&self) -> bool {
        self.store.ping().await.is_ok()
    }

    /// Runs this instance's workers, maintenance and webhook deliverer until
    /// `stop` turns true, then drains them (running jobs get `workers.grace`).
    pub async fn run(
        self: Arc<Self>,
        handler: Arc<dyn JobHandler>,
        workers: WorkerPolicy,
        webhooks: WebhookPolicy,
        stop: watch::Receiver<bool>,
    ) {
        let workers = Arc::new(workers);
        let listen = {
            let (store, wake) = (self.store.clone(), self.job_wake.clone());
            let mut stop = stop.clone();
            async move {
                tokio::select! {
                    result = store.listen(wake) => if let Err(error) = result {
                        tracing::warn!(%error, "LISTEN keel_jobs stopped; idle workers fall back to polling");
                    },
                    _ = stop.wait_for(|stopped| *stopped) => {}
                }
            }
        };
        let claim = async {
            if workers.workers > 0 {
                worker::run(self.clone(), handler, workers.clone(), stop.clone()).await;
            }
        };
        tokio::join!(
            listen,
            claim,
            worker::maintain(self.clone(), workers.clone(), stop.clone()),
            webhook::run(self.clone(), Arc::new(webhooks), stop.clone()),
        );
    }

    fn register_running(&self, id: &str, cancel: oneshot::Sender<()>) {
        if let Ok(mut running) = self.running.lock() {
            running.insert(id.to_owned(), cancel);
        }
    }

    fn unregister_running(&self, id: &str) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(id);
        }
    }
}
