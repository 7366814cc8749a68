//! SQL both backends run as it is (SQLite accepts `$N` parameters too).
//! Only the claims differ: Postgres adds `FOR UPDATE SKIP LOCKED`.

/// The columns every job query returns, in [`crate::job::JobRecord`]
/// order (a macro, so statements can be put together at compile time).
macro_rules! job_columns {
    () => {
        "id, tenant, status, model, metadata, created_at, started_at, finished_at, attempts, \
         result, error, webhook_url, webhook_status, webhook_attempts, webhook_last_error, cost_usd, response_request"
    };
}

pub(crate) use job_columns;

/// The columns every job query returns.
pub(crate) const JOB_COLUMNS: &str = job_columns!();

/// A tenant's job.
pub(crate) const GET: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM keel_jobs WHERE tenant = $1 AND id = $2"
);

/// Claims due webhook deliveries (`$1` next attempt, `$2` now, `$3` batch),
/// the rows locked as `$lock` says.
macro_rules! claim_deliveries {
    ($lock:literal) => {
        concat!(
            "UPDATE keel_jobs SET webhook_next_at = $1 WHERE id IN (SELECT id FROM keel_jobs \
             WHERE webhook_status = 'pending' AND webhook_next_at <= $2 ORDER BY webhook_next_at LIMIT $3",
            $lock,
            ") RETURNING ",
            $crate::store::sql::job_columns!()
        )
    };
}
pub(crate) use claim_deliveries;

/// Inserts a queued job.
pub(crate) const INSERT_JOB: &str = "INSERT INTO keel_jobs (id, tenant, status, model, request, metadata, created_at, run_at, webhook_url, response_request) \
     VALUES ($1, $2, 'queued', $3, $4, $5, $6, $6, $7, $8)";

/// Inserts a job already running under its submitter's lease (`$9` token,
/// `$10` expiry): its first attempt is under way, so no worker claims it.
pub(crate) const INSERT_RUNNING_JOB: &str = "INSERT INTO keel_jobs (id, tenant, status, model, request, metadata, created_at, run_at, webhook_url, response_request, \
     attempts, lease_token, lease_expires_at, started_at) \
     VALUES ($1, $2, 'running', $3, $4, $5, $6, $6, $7, $8, 1, $9, $10, $6)";

/// Inserts an idempotency key unless the tenant already has it.
pub(crate) const INSERT_KEY: &str =
    "INSERT INTO keel_idempotency_keys (tenant, key, request_hash, created_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, key) DO NOTHING";

/// Stores the response of a key.
pub(crate) const COMPLETE_KEY: &str = "UPDATE keel_idempotency_keys SET response_status = $3, response_body = $4, response_headers = $5 \
     WHERE tenant = $1 AND key = $2";

/// Reads a key.
pub(crate) const SELECT_KEY: &str = "SELECT request_hash, response_status, response_body, response_headers FROM keel_idempotency_keys WHERE tenant = $1 AND key = $2";

/// Extends a held lease.
pub(crate) const HEARTBEAT: &str = "UPDATE keel_jobs SET lease_expires_at = $3 WHERE id = $1 AND lease_token = $2 AND status = 'running'";

/// What a final state sets besides status and result or error: the end
/// time, the lease cleared, and the webhook made due when there is one.
macro_rules! final_state {
    ($status:literal, $assignments:literal) => {
        concat!(
            "UPDATE keel_jobs SET status = '",
            $status,
            "', ",
            $assignments,
            ", finished_at = $4, lease_token = NULL, lease_expires_at = NULL, \
             webhook_status = CASE WHEN webhook_url IS NULL THEN NULL ELSE 'pending' END, \
             webhook_next_at = CASE WHEN webhook_url IS NULL THEN NULL ELSE $4 END \
             WHERE id = $1 AND lease_token = $2 AND status = 'running'"
        )
    };
}

/// Marks a run succeeded.
pub(crate) const SUCCEED: &str = final_state!("succeeded", "result = $3, cost_usd = $5");

/// Marks a run failed for good.
pub(crate) const FAIL: &str = final_state!("failed", "error = $3");

/// Queues a job again after a failed run.
pub(crate) const RETRY: &str = "UPDATE keel_jobs SET status = 'queued', run_at = $3, error = $4, lease_token = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND lease_token = $2 AND status = 'running'";

/// Gives a claimed job back without counting the attempt.
pub(crate) const RELEASE: &str = "UPDATE keel_jobs SET status = 'queued', run_at = $3, attempts = attempts - 1, lease_token = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND lease_token = $2 AND status = 'running'";

/// Re-queues (or, attempts spent, fails) running jobs whose lease expired.
pub(crate) const RESCUE: &str = "UPDATE keel_jobs SET \
     status = CASE WHEN attempts >= $1 THEN 'failed' ELSE 'queued' END, \
     error = CASE WHEN attempts >= $1 THEN $2 ELSE error END, \
     finished_at = CASE WHEN attempts >= $1 THEN $3 ELSE NULL END, \
     webhook_status = CASE WHEN attempts >= $1 AND webhook_url IS NOT NULL THEN 'pending' ELSE webhook_status END, \
     webhook_next_at = CASE WHEN attempts >= $1 AND webhook_url IS NOT NULL THEN $3 ELSE webhook_next_at END, \
     run_at = $3, lease_token = NULL, lease_expires_at = NULL \
     WHERE status = 'running' AND lease_expires_at < $3";

/// Cancels a queued or running job; the webhook becomes due.
pub(crate) const CANCEL: &str = concat!("UPDATE keel_jobs SET status = 'cancelled', finished_at = $3, lease_token = NULL, lease_expires_at = NULL, \
     webhook_status = CASE WHEN webhook_url IS NULL THEN NULL ELSE 'pending' END, \
     webhook_next_at = CASE WHEN webhook_url IS NULL THEN NULL ELSE $3 END \
     WHERE tenant = $1 AND id = $2 AND status IN ('queued', 'running') RETURNING ", job_columns!());

/// Records a delivered webhook.
pub(crate) const DELIVERED: &str =
    "UPDATE keel_jobs SET webhook_status = 'delivered', webhook_attempts = webhook_attempts + 1, \
     webhook_last_error = NULL, webhook_next_at = NULL WHERE id = $1";

/// Records a failed delivery attempt to be retried.
pub(crate) const DELIVERY_RETRY: &str = "UPDATE keel_jobs SET webhook_attempts = webhook_attempts + 1, webhook_last_error = $2, webhook_next_at = $3 \
     WHERE id = $1";

/// Records a delivery that failed for good.
pub(crate) const DELIVERY_FAILED: &str =
    "UPDATE keel_jobs SET webhook_status = 'failed', webhook_attempts = webhook_attempts + 1, \
     webhook_last_error = $2, webhook_next_at = NULL WHERE id = $1";

/// Deletes a batch (`$2` rows) of finished jobs past retention whose webhook is settled.
pub(crate) const SWEEP_JOBS: &str = "DELETE FROM keel_jobs WHERE id IN (SELECT id FROM keel_jobs \
     WHERE finished_at IS NOT NULL AND finished_at < $1 AND (webhook_status IS NULL OR webhook_status <> 'pending') LIMIT $2)";

/// Deletes a batch (`$2` rows) of webhook endpoint states whose last word
/// (disabled, or failing since) is older than `$1`: their jobs are swept by
/// then, and an endpoint seen again starts afresh.
pub(crate) const SWEEP_ENDPOINTS: &str = "DELETE FROM keel_webhook_endpoints WHERE (tenant, url) IN \
     (SELECT tenant, url FROM keel_webhook_endpoints WHERE COALESCE(disabled_at, failing_since) < $1 LIMIT $2)";

/// Deletes a batch (`$3` rows) of idempotency keys past their TTL, and of
/// keys left in progress past the lock timeout (their gateway died
/// mid-request), so none stays locked longer than the timeout and a sweep.
pub(crate) const SWEEP_KEYS: &str = "DELETE FROM keel_idempotency_keys WHERE (tenant, key) IN \
     (SELECT tenant, key FROM keel_idempotency_keys \
      WHERE created_at < $1 OR (response_status IS NULL AND created_at < $2) LIMIT $3)";

/// Takes over a key whose request was abandoned (in progress past the lock
/// timeout, e.g. the gateway was killed mid-request) for the same request.
pub(crate) const TAKE_OVER_KEY: &str = "UPDATE keel_idempotency_keys SET created_at = $4 \
     WHERE tenant = $1 AND key = $2 AND request_hash = $3 AND response_status IS NULL AND created_at < $5";

/// Releases an in-progress key so the request can be retried with it.
pub(crate) const RELEASE_KEY: &str =
    "DELETE FROM keel_idempotency_keys WHERE tenant = $1 AND key = $2 AND response_status IS NULL";

/// A tenant's queued jobs.
pub(crate) const COUNT_QUEUED_FOR_TENANT: &str =
    "SELECT COUNT(*) FROM keel_jobs WHERE tenant = $1 AND status = 'queued'";

/// Jobs per status.
pub(crate) const COUNT_BY_STATUS: &str = "SELECT status, COUNT(*) FROM keel_jobs GROUP BY status";

/// Makes a final job's settled webhook due again, its schedule from the start.
pub(crate) const REDELIVER: &str = concat!("UPDATE keel_jobs SET webhook_status = 'pending', webhook_attempts = 0, \
     webhook_last_error = NULL, webhook_next_at = $3 \
     WHERE tenant = $1 AND id = $2 AND webhook_url IS NOT NULL AND webhook_status IN ('delivered', 'failed') RETURNING ", job_columns!());

/// When an endpoint was disabled (no row: healthy; NULL: failing, not disabled).
pub(crate) const ENDPOINT_DISABLED_AT: &str =
    "SELECT disabled_at FROM keel_webhook_endpoints WHERE tenant = $1 AND url = $2";

/// Starts an endpoint's failure clock unless it runs, and keeps the last error.
pub(crate) const ENDPOINT_FAILED: &str = "INSERT INTO keel_webhook_endpoints (tenant, url, failing_since, last_error) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, url) DO UPDATE SET last_error = excluded.last_error";

/// Disables an endpoint whose failure clock started early enough.
pub(crate) const ENDPOINT_DISABLE: &str = "UPDATE keel_webhook_endpoints SET disabled_at = $3 \
     WHERE tenant = $1 AND url = $2 AND disabled_at IS NULL AND failing_since <= $4";

/// Forgets an endpoint's failures (a success, or a manual redelivery).
pub(crate) const ENDPOINT_RESET: &str =
    "DELETE FROM keel_webhook_endpoints WHERE tenant = $1 AND url = $2";
