//! Jobs their submitter runs itself: a live request that outlives the
//! client's `Prefer: wait` becomes a job without a second upstream call.
//! The job is inserted running under a lease this instance holds, the lease
//! is renewed while the request's routing goes on, and the job is finished
//! with its answer, or released to the workers (who run it under the job
//! policy) when the routing failed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::store::{millis, Finish, Lease};
use crate::{now_ms, JobOutput, JobRecord, Queue, Submission, SubmitError, Submitted};

/// The lease of a held job, renewed every third of it. Short, so a job
/// whose instance died is rescued soon; the renewals are cheap.
pub const HELD_LEASE: Duration = Duration::from_secs(30);

/// What a held submission produced.
pub enum Held {
    /// A new job, running here.
    Running {
        /// The job as committed.
        record: Box<JobRecord>,
        /// The lease on it.
        job: HeldJob,
    },
    /// The stored response of an earlier submission with the same key and
    /// body: nothing was inserted and nothing is held.
    Replayed {
        /// The job id.
        id: String,
        /// The job object exactly as first returned.
        body: String,
    },
}

/// A job running on this instance under its submitter's lease.
pub struct HeldJob {
    queue: Arc<Queue>,
    id: String,
    lease: Lease,
}

/// How held work ended.
enum Ended {
    Done(Option<JobOutput>),
    Cancelled,
    LeaseLost,
}

// === impl Queue ===

impl Queue {
    /// Checks and inserts a job that the caller is already running (see
    /// [`HeldJob::run`]); no worker claims it while the lease is renewed.
    pub async fn submit_running(
        self: &Arc<Self>,
        submission: &Submission,
    ) -> Result<Held, SubmitError> {
        let lease = Lease::new(now_ms() + millis(HELD_LEASE));
        Ok(match self.submit_with(submission, Some(&lease)).await? {
            Submitted::Created(record) => Held::Running {
                job: HeldJob {
                    queue: self.clone(),
                    id: record.id.clone(),
                    lease,
                },
                record,
            },
            Submitted::Replayed { id, body } => Held::Replayed { id, body },
        })
    }
}

// === impl HeldJob ===

impl HeldJob {
    /// The job id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Awaits `work`, renewing the lease, and records its outcome: an
    /// output is the job's result; `None` (the work failed) gives the job
    /// back to the queue, its attempt not counted, for a worker to run. A
    /// cancel, or a lost lease, drops the work.
    pub async fn run(self, work: impl Future<Output = Option<JobOutput>>) {
        let (cancel, cancelled) = oneshot::channel();
        self.queue.register_running(&self.id, cancel);
        let ended = self.renew_while(work, cancelled).await;
        self.queue.unregister_running(&self.id);
        self.record(ended).await;
    }

    async fn renew_while(
        &self,
        work: impl Future<Output = Option<JobOutput>>,
        cancelled: oneshot::Receiver<()>,
    ) -> Ended {
        tokio::pin!(work);
        tokio::pin!(cancelled);
        let every = HELD_LEASE / 3;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                output = &mut work => return Ended::Done(output),
                _ = &mut cancelled => return Ended::Cancelled,
                _ = ticks.tick() => {
                    let until = now_ms() + millis(HELD_LEASE);
                    match self.queue.store().heartbeat(&self.id, &self.lease.token, until).await {
                        Ok(true) => {}
                        Ok(false) => return Ended::LeaseLost,
                        Err(error) => tracing::warn!(%error, "cannot renew a held job's lease"),
                    }
                }
            }
        }
    }

    async fn record(self, ended: Ended) {
        let store = self.queue.store();
        let (id, token, now) = (&self.id, &self.lease.token, now_ms());
        match ended {
            Ended::Done(Some(JobOutput { result, cost_usd })) => {
                let finish = Finish::Succeeded { result, cost_usd };
                match store.finish(id, token, &finish, now).await {
                    Ok(true) => self.queue.webhook_wake.notify_one(),
                    Ok(false) => {
                        tracing::warn!("a held job's lease was lost; its answer was dropped")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot record a held job's answer; a worker runs it after its lease expires")
                    }
                }
            }
            Ended::Done(None) => match store.release(id, token, now).await {
                Ok(_) => self.queue.job_wake.notify_one(),
                Err(error) => {
                    tracing::warn!(%error, "cannot release a held job; a worker runs it after its lease expires")
                }
            },
            Ended::Cancelled => tracing::info!("held job cancelled; its upstream call was dropped"),
            Ended::LeaseLost => {
                tracing::warn!("a held job's lease was lost; its upstream call was dropped")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{new_job_id, JobStatus, NewJob, WebhookPolicy};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    async fn queue() -> Result<Arc<Queue>, Box<dyn std::error::Error>> {
        let url = format!(
            "sqlite:file:keel_held_test_{:016x}?mode=memory&cache=shared",
            fastrand::u64(..)
        );
        let store = crate::open(&url).await?;
        store.migrate().await?;
        let webhooks = WebhookPolicy {
            keys: Vec::new(),
            timeout: Duration::from_secs(1),
            allow_private: false,
            retry_schedule: Vec::new(),
            concurrency: 1,
            disable_after: Duration::from_secs(60),
        };
        Ok(Arc::new(Queue::new(store, &webhooks)))
    }

    async fn hold(queue: &Arc<Queue>) -> Result<HeldJob, Box<dyn std::error::Error>> {
        let job = NewJob {
            id: new_job_id(now_ms()),
            tenant: String::from("acme"),
            model: String::from("chat"),
            request: String::from(r#"{"model":"chat","messages":[]}"#),
            metadata: None,
            webhook_url: None,
            response_request: None,
        };
        match queue.submit_running(&Submission { job, key: None }).await? {
            Held::Running { record, job } => {
                assert_eq!((record.status, record.attempts), (JobStatus::Running, 1));
                Ok(job)
            }
            Held::Replayed { .. } => Err("replayed without a key".into()),
        }
    }

    #[tokio::test]
    async fn a_held_job_is_not_claimed_and_finishes_with_its_holders_answer() -> TestResult {
        let queue = queue().await?;
        let job = hold(&queue).await?;
        let id = job.id().to_owned();
        let now = now_ms();
        assert!(queue.store().claim(10, now + 60_000, now).await?.is_empty());
        let output = JobOutput {
            result: String::from(r#"{"object":"chat.completion"}"#),
            cost_usd: Some(0.25),
        };
        job.run(async { Some(output) }).await;
        let done = queue.get("acme", &id).await?.ok_or("job")?;
        assert_eq!(
            (done.status, done.attempts, done.result.as_deref()),
            (
                JobStatus::Succeeded,
                1,
                Some(r#"{"object":"chat.completion"}"#)
            )
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_held_job_whose_work_failed_is_given_to_the_workers() -> TestResult {
        let queue = queue().await?;
        let job = hold(&queue).await?;
        let id = job.id().to_owned();
        job.run(async { None }).await;
        let queued = queue.get("acme", &id).await?.ok_or("job")?;
        assert_eq!((queued.status, queued.attempts), (JobStatus::Queued, 0));
        let now = now_ms();
        let claimed = queue.store().claim(10, now + 60_000, now).await?;
        assert_eq!(claimed.len(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn cancelling_a_held_job_drops_its_work() -> TestResult {
        let queue = queue().await?;
        let job = hold(&queue).await?;
        let id = job.id().to_owned();
        let running = tokio::spawn(job.run(std::future::pending()));
        // The holder registers its cancel hook once its task runs.
        tokio::task::yield_now().await;
        for _ in 0..100 {
            if queue
                .running
                .lock()
                .is_ok_and(|running| running.contains_key(&id))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(matches!(
            queue.cancel("acme", &id).await?,
            crate::CancelOutcome::Cancelled(_)
        ));
        tokio::time::timeout(Duration::from_secs(5), running).await??;
        let cancelled = queue.get("acme", &id).await?.ok_or("job")?;
        assert_eq!(cancelled.status, JobStatus::Cancelled);
        Ok(())
    }
}
