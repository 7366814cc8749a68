//! Workers: claim due jobs under a lease, run each through the
//! [`JobHandler`], keep the lease alive with heartbeats, and record the
//! outcome. One claimer per instance fills free worker slots with a single
//! batched claim; each job runs in its own task.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::backoff::retry_delay;
use crate::store::{millis, ClaimedJob, Finish, SweepBefore, Swept, SWEEP_BATCH};
use crate::LOCK_TIMEOUT;
use crate::{now_ms, Queue};

/// What runs a job: the binary passes one that sends the request through
/// the router.
#[async_trait]
pub trait JobHandler: Send + Sync {
    /// Runs `tenant`'s request (JSON text) and returns the result JSON.
    /// Dropping the future must abort the work (that is how cancellation
    /// works).
    async fn run(&self, tenant: &str, request: &str) -> Result<JobOutput, JobFailure>;
}

/// A successful run.
#[derive(Clone, Debug, PartialEq)]
pub struct JobOutput {
    /// The result, as JSON text.
    pub result: String,
    /// What it cost in USD, when it was priced.
    pub cost_usd: Option<f64>,
}

/// A failed run.
#[derive(Clone, Debug)]
pub struct JobFailure {
    /// The error, an OpenAI error object (`{"message","type","param","code"}`) as JSON text.
    pub error: String,
    /// Whether another run may succeed.
    pub retry: Retry,
}

/// Whether a failure is worth another run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Transient (upstream 5xx, timeouts, every target down): run again after backoff.
    Later,
    /// The request itself is at fault: fail now.
    Never,
    /// Not run at all (the tenant is over its rate limit): the job goes
    /// back to the queue, the attempt not counted, runnable after this.
    NotBefore(Duration),
}

/// How the workers of this instance behave (from `jobs:` and `server:`).
#[derive(Clone, Debug)]
pub struct WorkerPolicy {
    /// Jobs run at once on this instance; 0 runs none.
    pub workers: usize,
    /// The lease a claim takes and each heartbeat renews.
    pub lease: Duration,
    /// Runs before a job fails for good.
    pub max_attempts: u32,
    /// First backoff delay.
    pub retry_base: Duration,
    /// Longest backoff delay.
    pub retry_max: Duration,
    /// How long running jobs may finish after shutdown begins; the rest are released.
    pub grace: Duration,
    /// How long finished jobs are kept.
    pub retention: Duration,
    /// How long idempotency keys are kept.
    pub idempotency_ttl: Duration,
}

/// How long an idle claimer waits before looking for due retries when no
/// wake-up comes.
const POLL: Duration = Duration::from_millis(250);

/// The most jobs one claim takes.
const CLAIM_BATCH: usize = 64;

/// The error stored on a job whose last worker vanished with its attempts spent.
const LEASE_LOST: &str = r#"{"message":"the job's worker stopped before finishing (lease expired) and its attempts are spent","type":"server_error","param":null,"code":"lease_expired"}"#;

/// Claims and runs jobs until `stop` turns true, then lets running jobs
/// finish for up to `policy.grace` and releases the rest.
pub(crate) async fn run(
    queue: Arc<Queue>,
    handler: Arc<dyn JobHandler>,
    policy: Arc<WorkerPolicy>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(policy.workers));
    let (abandon, abandoned) = watch::channel(false);
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit,
            _ = stop.changed() => break,
        };
        let Ok(first) = first else { break };
        if *stop.borrow() {
            break;
        }
        let mut permits = vec![first];
        while permits.len() < CLAIM_BATCH {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            permits.push(permit);
        }
        let asked = permits.len();
        let now = now_ms();
        let claimed = match queue
            .store()
            .claim(
                u32::try_from(asked).unwrap_or(1),
                now + millis(policy.lease),
                now,
            )
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "cannot claim jobs");
                Vec::new()
            }
        };
        let full = claimed.len() == asked;
        for (job, permit) in claimed.into_iter().zip(permits.drain(..)) {
            let span = tracing::info_span!("queue.job", job = %job.id, attempt = job.attempts);
            let task = run_one(
                queue.clone(),
                handler.clone(),
                policy.clone(),
                job,
                abandoned.clone(),
                permit,
            );
            tasks.spawn(task.instrument(span));
        }
        drop(permits);
        if !full {
            tokio::select! {
                () = queue.job_wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }
    drain(tasks, &abandon, policy.grace).await;
}

/// Waits for running jobs up to `grace`, then tells the rest to release their lease.
async fn drain(mut tasks: JoinSet<()>, abandon: &watch::Sender<bool>, grace: Duration) {
    if !tasks.is_empty() {
        tracing::info!(
            running = tasks.len(),
            grace_seconds = grace.as_secs_f64(),
            "workers stopped claiming; waiting for running jobs"
        );
    }
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return },
            () = &mut deadline => break,
        }
    }
    tracing::warn!(
        running = tasks.len(),
        "shutdown grace over; releasing the jobs still running"
    );
    let _ = abandon.send(true);
    while tasks.join_next().await.is_some() {}
}

/// How a run ended, seen from its task.
enum Ended {
    Ran(Result<JobOutput, crate::JobFailure>),
    Cancelled,
    LeaseLost,
    Abandoned,
}

async fn run_one(
    queue: Arc<Queue>,
    handler: Arc<dyn JobHandler>,
    policy: Arc<WorkerPolicy>,
    job: ClaimedJob,
    mut abandoned: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let (cancel, cancelled) = oneshot::channel();
    queue.register_running(&job.id, cancel);
    let ended = {
        let run = handler.run(&job.tenant, &job.request);
        tokio::pin!(run);
        let heartbeat = (policy.lease / 3).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        tokio::pin!(cancelled);
        loop {
            tokio::select! {
                result = &mut run => break Ended::Ran(result),
                _ = &mut cancelled => break Ended::Cancelled,
                _ = abandoned.changed() => break Ended::Abandoned,
                _ = ticks.tick() => {
                    let lease_until = now_ms() + millis(policy.lease);
                    match queue.store().heartbeat(&job.id, &job.token, lease_until).await {
                        Ok(true) => {}
                        // Cancelled elsewhere, or the lease lapsed and another worker has it.
                        Ok(false) => break Ended::LeaseLost,
                        Err(error) => tracing::warn!(%error, "cannot renew a job lease"),
                    }
                }
            }
        }
    };
    queue.unregister_running(&job.id);
    record(&queue, &policy, &job, ended).await;
}

async fn record(queue: &Queue, policy: &WorkerPolicy, job: &ClaimedJob, ended: Ended) {
    let now = now_ms();
    let finish = match ended {
        Ended::Ran(Ok(JobOutput { result, cost_usd })) => Finish::Succeeded { result, cost_usd },
        Ended::Ran(Err(crate::JobFailure {
            retry: crate::Retry::NotBefore(delay),
            ..
        })) => {
            tracing::debug!(
                delay_ms = millis(delay),
                "job deferred: its tenant is over its rate limit"
            );
            let run_at = now + millis(delay);
            if let Err(error) = queue.store().release(&job.id, &job.token, run_at).await {
                tracing::warn!(%error, "cannot defer a job; it runs again after its lease expires");
            }
            return;
        }
        Ended::Ran(Err(failure))
            if failure.retry == crate::Retry::Later
                && job.attempts < i64::from(policy.max_attempts) =>
        {
            let delay = retry_delay(job.attempts, policy.retry_base, policy.retry_max);
            tracing::info!(
                attempt = job.attempts,
                delay_ms = millis(delay),
                "job run failed; retrying later"
            );
            Finish::Retry {
                run_at: now + millis(delay),
                error: failure.error,
            }
        }
        Ended::Ran(Err(failure)) => Finish::Failed(failure.error),
        Ended::Cancelled => {
            return tracing::info!("job cancelled while running; its upstream call was dropped")
        }
        Ended::LeaseLost => {
            return tracing::warn!(
                "job lease lost (cancelled, or expired and taken over); its run was dropped"
            )
        }
        Ended::Abandoned => {
            if let Err(error) = queue.store().release(&job.id, &job.token, now).await {
                tracing::warn!(%error, "cannot release a job at shutdown; it is re-claimed when its lease expires");
            }
            return;
        }
    };
    let is_final = !matches!(finish, Finish::Retry { .. });
    match queue
        .store()
        .finish(&job.id, &job.token, &finish, now)
        .await
    {
        Ok(true) if is_final => queue.webhook_wake.notify_one(),
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(%error, "cannot record a job outcome; the job runs again after its lease expires")
        }
    }
}

/// Re-queues jobs of vanished workers and sweeps old rows until `stop`.
pub(crate) async fn maintain(
    queue: Arc<Queue>,
    policy: Arc<WorkerPolicy>,
    mut stop: watch::Receiver<bool>,
) {
    let rescue_every = (policy.lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let sweep_every = Duration::from_secs(60);
    let mut last_sweep: Option<tokio::time::Instant> = None;
    while !*stop.borrow() {
        let now = now_ms();
        match queue
            .store()
            .rescue(policy.max_attempts, LEASE_LOST, now)
            .await
        {
            Ok(0) => {}
            Ok(count) => {
                tracing::warn!(count, "re-queued jobs whose worker stopped (lease expired)");
                queue.job_wake.notify_one();
                queue.webhook_wake.notify_one();
            }
            Err(error) => tracing::warn!(%error, "cannot rescue expired jobs"),
        }
        if last_sweep.is_none_or(|at| at.elapsed() >= sweep_every) {
            last_sweep = Some(tokio::time::Instant::now());
            sweep(&queue, &policy, now).await;
        }
        tokio::select! {
            () = tokio::time::sleep(rescue_every) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Sweeps expired rows batch by batch until a batch comes back short (at
/// most 100 batches a round, so one round stays short).
async fn sweep(queue: &Queue, policy: &WorkerPolicy, now: i64) {
    let before = SweepBefore {
        jobs: now - millis(policy.retention),
        keys: now - millis(policy.idempotency_ttl),
        abandoned_keys: now - millis(LOCK_TIMEOUT),
    };
    let mut total = Swept::default();
    for _ in 0..100 {
        match queue.store().sweep(&before).await {
            Ok(swept) => {
                total.jobs += swept.jobs;
                total.keys += swept.keys;
                total.endpoints += swept.endpoints;
                let full = |count: u64| i64::try_from(count).is_ok_and(|n| n >= SWEEP_BATCH);
                if !full(swept.jobs) && !full(swept.keys) && !full(swept.endpoints) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot sweep expired rows");
                break;
            }
        }
    }
    if total.jobs + total.keys + total.endpoints > 0 {
        tracing::info!(
            jobs = total.jobs,
            keys = total.keys,
            endpoints = total.endpoints,
            "swept expired rows"
        );
    }
}
