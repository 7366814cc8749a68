//! The store suite, run against both backends: SQLite in memory and a fresh
//! Postgres database per test (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped at the end. Time is
//! moved by passing a later `now`, never by sleeping.

use std::sync::Arc;

use sqlx::Connection as _;

use super::*;
use crate::job::{new_job_id, JobStatus, NewJob, WebhookStatus};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NOW: i64 = 1_800_000_000_000;
const LEASE: i64 = 30_000;

/// A store on a database of its own.
struct TestStore {
    store: Arc<dyn JobStore>,
    /// The database's URL, for statements the store does not make.
    url: String,
    /// The Postgres database, dropped with the store.
    postgres: Option<keel_testbase::TestDatabase>,
}

impl TestStore {
    async fn sqlite() -> Result<Self, StoreError> {
        // A named in-memory database with a shared cache, so a second
        // connection (see `execute`) sees the store's tables.
        let url = format!(
            "sqlite:file:keel_queue_test_{:016x}?mode=memory&cache=shared",
            fastrand::u64(..)
        );
        let store = open(&url).await?;
        store.migrate().await?;
        Ok(Self {
            store,
            url,
            postgres: None,
        })
    }

    async fn postgres() -> Result<Self, StoreError> {
        let database = keel_testbase::TestDatabase::postgres().await?;
        let url = database.url().to_owned();
        let store = open(&url).await?;
        store.migrate().await?;
        Ok(Self {
            store,
            url,
            postgres: Some(database),
        })
    }

    /// Runs `sql` on the store's database over a connection of its own.
    async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        if self.postgres.is_some() {
            let mut connection = sqlx::PgConnection::connect(&self.url).await?;
            sqlx::raw_sql(sql).execute(&mut connection).await?;
            connection.close().await
        } else {
            let mut connection = sqlx::SqliteConnection::connect(&self.url).await?;
            sqlx::raw_sql(sql).execute(&mut connection).await?;
            connection.close().await
        }
    }
}

fn new_job(tenant: &str, webhook: Option<&str>, now: i64) -> NewJob {
    NewJob {
        id: new_job_id(now),
        tenant: tenant.to_owned(),
        model: String::from("chat"),
        request: String::from(r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#),
        metadata: None,
        webhook_url: webhook.map(str::to_owned),
        response_request: None,
    }
}

async fn enqueue(
    store: &dyn JobStore,
    job: &NewJob,
    now: i64,
) -> Result<JobRecord, Box<dyn std::error::Error>> {
    match store.enqueue(job, None, now).await? {
        Enqueued::Created(record) => Ok(*record),
        Enqueued::KeyExists(_) => Err("unexpected key".into()),
    }
}

/// Claims the one due job and records its run as succeeded, at `NOW`.
async fn run_to_success(store: &dyn JobStore, id: &str) -> Result<(), Box<dyn std::error::Error>> {
    let claimed = store
        .claim(1, NOW + LEASE, NOW)
        .await?
        .pop()
        .ok_or("claim")?;
    store
        .finish(
            id,
            &claimed.token,
            &Finish::Succeeded {
                result: String::from("{}"),
                cost_usd: None,
            },
            NOW,
        )
        .await?;
    Ok(())
}

/// Instantiates each suite test for both backends.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test] async fn $name() -> super::TestResult { super::$name(super::TestStore::sqlite().await?).await })*
        }
        mod postgres_backend {
            $(#[tokio::test] async fn $name() -> super::TestResult { super::$name(super::TestStore::postgres().await?).await })*
        }
    };
}

both_backends!(
    jq1_enqueue_commits_a_queued_job_visible_to_its_tenant_only,
    jq1_an_idempotency_key_inserts_one_job_and_remembers_its_response,
    jq1_a_fault_between_insert_and_commit_leaves_no_job_and_no_key,
    jq2_sixteen_workers_share_ten_thousand_jobs_without_double_claims,
    jq3_an_expired_lease_is_rescued_and_the_old_holder_is_locked_out,
    jq3_a_rescued_job_with_attempts_spent_fails_and_its_webhook_becomes_due,
    jq4_a_retry_waits_for_its_run_at_and_counts_attempts,
    jq4_random_operations_never_leave_the_state_diagram,
    cancel_queued_then_final_jobs,
    release_gives_a_job_back_without_counting_the_attempt,
    a_job_enqueued_running_is_not_claimed_and_its_holder_finishes_it,
    a_job_enqueued_running_and_released_is_claimed_by_a_worker,
    a_job_enqueued_running_whose_holder_vanished_is_rescued,
    a_job_enqueued_running_keeps_its_idempotency_key,
    list_is_newest_first_with_a_cursor_and_a_status_filter,
    wh2_deliveries_are_claimed_once_retried_and_settled,
    sweep_removes_old_finished_jobs_and_keys_only,
    wh3_an_endpoint_failing_for_the_whole_window_is_disabled_and_a_success_resets_the_clock,
    wh3_failed_webhooks_are_listed_and_redelivered_with_the_same_id,
    id5_a_key_abandoned_in_progress_is_freed_after_the_lock_timeout_and_no_sooner,
    id5_expired_keys_are_swept_in_batches_and_then_run_anew,
    tb6_one_tenants_backlog_does_not_delay_another_tenants_job,
    tb6_queued_jobs_are_counted_per_tenant,
    tb5_webhook_endpoint_states_are_swept_after_the_retention,
);

/// Trust boundary 5: endpoint rows (one per failing receiver) do not pile up:
/// past the job retention they are swept, disabled ones included.
async fn tb5_webhook_endpoint_states_are_swept_after_the_retention(db: TestStore) -> TestResult {
    db.store
        .endpoint_failed("acme", "https://old.example/hook", "500", NOW, NOW)
        .await?;
    db.store
        .endpoint_failed(
            "acme",
            "https://new.example/hook",
            "500",
            NOW + 10,
            NOW + 10,
        )
        .await?;
    assert!(db
        .store
        .endpoint_disabled_at("acme", "https://old.example/hook")
        .await?
        .is_some());
    let swept = db
        .store
        .sweep(&SweepBefore {
            jobs: NOW + 5,
            keys: 0,
            abandoned_keys: 0,
        })
        .await?;
    assert_eq!(swept.endpoints, 1);
    assert_eq!(
        db.store
            .endpoint_disabled_at("acme", "https://old.example/hook")
            .await?,
        None
    );
    assert!(db
        .store
        .endpoint_disabled_at("acme", "https://new.example/hook")
        .await?
        .is_some());
    Ok(())
}

/// Trust boundary 6: a tenant with a thousand due jobs (all older) does not
/// delay another tenant's single job past the first claim round, and the
/// rounds take the tenants in turns.
async fn tb6_one_tenants_backlog_does_not_delay_another_tenants_job(db: TestStore) -> TestResult {
    for n in 0..1_000 {
        enqueue(
            &*db.store,
            &new_job("noisy", None, NOW - 10_000 + n),
            NOW - 10_000 + n,
        )
        .await?;
    }
    let quiet = enqueue(&*db.store, &new_job("quiet", None, NOW), NOW).await?;
    let first = db.store.claim(8, NOW + LEASE, NOW).await?;
    assert_eq!(first.len(), 8);
    assert!(
        first.iter().any(|job| job.id == quiet.id),
        "the quiet tenant's job is in the first round"
    );
    assert_eq!(first.iter().filter(|job| job.tenant == "noisy").count(), 7);
    let second = db.store.claim(8, NOW + LEASE, NOW).await?;
    assert!(second.iter().all(|job| job.tenant == "noisy"));
    Ok(())
}

async fn tb6_queued_jobs_are_counted_per_tenant(db: TestStore) -> TestResult {
    for n in 0..3 {
        enqueue(&*db.store, &new_job("a", None, NOW + n), NOW + n).await?;
    }
    enqueue(&*db.store, &new_job("b", None, NOW), NOW).await?;
    assert_eq!(db.store.queued_count("a").await?, 3);
    db.store.claim(1, NOW + LEASE, NOW + 10).await?;
    let remaining = db.store.queued_count("a").await? + db.store.queued_count("b").await?;
    assert_eq!(remaining, 3, "a claimed job is no longer queued");
    assert_eq!(db.store.queued_count("nobody").await?, 0);
    Ok(())
}

async fn jq1_enqueue_commits_a_queued_job_visible_to_its_tenant_only(db: TestStore) -> TestResult {
    let job = new_job("acme", None, NOW);
    let record = enqueue(&*db.store, &job, NOW).await?;
    assert_eq!(record.status, JobStatus::Queued);
    assert_eq!(db.store.get("acme", &job.id).await?, Some(record));
    assert_eq!(db.store.get("globex", &job.id).await?, None);
    Ok(())
}

/// JQ-1: a fault injected after the job row is inserted and before the
/// transaction commits (a trigger that fails the key's completion, the last
/// statement before COMMIT) fails the submission and leaves nothing: no job
/// to poll, list, run or send a webhook for, and no key, so the client's
/// retry with the same key goes through once the fault is gone.
async fn jq1_a_fault_between_insert_and_commit_leaves_no_job_and_no_key(
    db: TestStore,
) -> TestResult {
    let (fault, heal) = if db.postgres.is_some() {
        (
            "CREATE FUNCTION keel_fault() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$; \
             CREATE TRIGGER keel_fault BEFORE UPDATE ON keel_idempotency_keys \
             FOR EACH ROW EXECUTE FUNCTION keel_fault();",
            "DROP TRIGGER keel_fault ON keel_idempotency_keys; DROP FUNCTION keel_fault();",
        )
    } else {
        (
            "CREATE TRIGGER keel_fault BEFORE UPDATE ON keel_idempotency_keys \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
            "DROP TRIGGER keel_fault;",
        )
    };
    db.execute(fault).await?;
    let key = KeyClaim {
        key: String::from("k1"),
        request_hash: String::from("h1"),
    };
    let job = new_job("acme", Some("https://example.com/hook"), NOW);
    let failed = db.store.enqueue(&job, Some(&key), NOW).await;
    assert!(
        failed.is_err(),
        "the fault fails the submission: {failed:?}"
    );
    assert_eq!(
        db.store.get("acme", &job.id).await?,
        None,
        "no poll-visible id"
    );
    assert!(db
        .store
        .list(
            "acme",
            &ListQuery {
                limit: 10,
                ..ListQuery::default()
            }
        )
        .await?
        .is_empty());
    assert!(
        db.store.claim(10, NOW + LEASE, NOW).await?.is_empty(),
        "nothing to run"
    );
    assert!(
        db.store
            .claim_deliveries(10, NOW + 1_000, NOW + 1)
            .await?
            .is_empty(),
        "no webhook"
    );
    assert_eq!(db.store.key("acme", "k1").await?, None, "no key");
    db.execute(heal).await?;
    assert!(matches!(
        db.store.enqueue(&job, Some(&key), NOW).await?,
        Enqueued::Created(_)
    ));
    assert!(db.store.get("acme", &job.id).await?.is_some());
    Ok(())
}

async fn jq1_an_idempotency_key_inserts_one_job_and_remembers_its_response(
    db: TestStore,
) -> TestResult {
    let key = KeyClaim {
        key: String::from("k1"),
        request_hash: String::from("h1"),
    };
    let first = new_job("acme", None, NOW);
    let Enqueued::Created(record) = db.store.enqueue(&first, Some(&key), NOW).await? else {
        return Err("first insert".into());
    };
    let second = new_job("acme", None, NOW);
    let Enqueued::KeyExists(stored) = db.store.enqueue(&second, Some(&key), NOW).await? else {
        return Err("second insert".into());
    };
    assert_eq!(stored.request_hash, "h1");
    assert_eq!(stored.response_status, Some(202));
    assert_eq!(stored.response_body, Some(record.to_json()));
    assert_eq!(db.store.get("acme", &second.id).await?, None);
    // The same key is another tenant's own.
    let other = new_job("globex", None, NOW);
    assert!(matches!(
        db.store.enqueue(&other, Some(&key), NOW).await?,
        Enqueued::Created(_)
    ));
    Ok(())
}

/// One claim in the claim log of the JQ-2 test.
#[derive(Clone, Debug)]
struct Claim {
    id: String,
    attempt: i64,
    worker: usize,
    executed: bool,
}

/// Sixteen workers claim and run jobs until none is left; when `dies`,
/// worker 0 stops without finishing after its first claim.
async fn claim_until_empty(
    store: &Arc<dyn JobStore>,
    claim_size: u32,
    now: i64,
    dies: bool,
) -> Result<Vec<Claim>, StoreError> {
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let store = store.clone();
        workers.spawn(async move {
            let mut log = Vec::new();
            loop {
                let claimed = store.claim(claim_size, now + LEASE, now).await?;
                if claimed.is_empty() {
                    return Ok::<_, StoreError>(log);
                }
                for job in claimed {
                    let dead = dies && worker == 0;
                    let executed = !dead
                        && store
                            .finish(
                                &job.id,
                                &job.token,
                                &Finish::Succeeded {
                                    result: String::from("{}"),
                                    cost_usd: None,
                                },
                                now,
                            )
                            .await?;
                    log.push(Claim {
                        id: job.id,
                        attempt: job.attempts,
                        worker,
                        executed,
                    });
                }
                if dies && worker == 0 {
                    return Ok(log);
                }
            }
        });
    }
    let mut log = Vec::new();
    while let Some(claims) = workers.join_next().await {
        log.extend(claims.map_err(|error| StoreError::Corrupt(error.to_string()))??);
    }
    Ok(log)
}

/// JQ-2 at its stated scale: 16 workers, 10,000 jobs. No (job, attempt) is
/// claimed twice; the only job claimed twice are the dead worker's, each
/// re-claimed once after its lease expired, with the next attempt number;
/// every job succeeds, executed exactly once.
async fn jq2_sixteen_workers_share_ten_thousand_jobs_without_double_claims(
    db: TestStore,
) -> TestResult {
    const JOBS: usize = 10_000;
    let mut inserts = tokio::task::JoinSet::new();
    for lane in 0..16 {
        let store = db.store.clone();
        inserts.spawn(async move {
            for index in (lane..JOBS).step_by(16) {
                let at = NOW + i64::try_from(index).unwrap_or(0);
                if let Enqueued::KeyExists(_) =
                    store.enqueue(&new_job("acme", None, at), None, NOW).await?
                {
                    return Err(StoreError::Corrupt(String::from("no key was given")));
                }
            }
            Ok::<_, StoreError>(())
        });
    }
    while let Some(inserted) = inserts.join_next().await {
        inserted??;
    }
    let mut log = claim_until_empty(&db.store, 8, NOW, true).await?;
    let stranded: Vec<&Claim> = log.iter().filter(|claim| claim.worker == 0).collect();
    assert_eq!(stranded.len(), 8, "the dead worker held one batch");
    // The dead worker's lease runs out; its jobs are rescued and run again.
    let later = NOW + LEASE + 1;
    assert_eq!(db.store.rescue(5, "{}", later).await?, 8);
    log.extend(claim_until_empty(&db.store, 8, later, false).await?);

    let mut per_job: std::collections::HashMap<&str, Vec<&Claim>> =
        std::collections::HashMap::new();
    for claim in &log {
        per_job.entry(&claim.id).or_default().push(claim);
    }
    assert_eq!(per_job.len(), JOBS, "every job was claimed");
    let mut reclaimed = 0;
    for (id, claims) in &per_job {
        let mut attempts: Vec<i64> = claims.iter().map(|claim| claim.attempt).collect();
        attempts.sort_unstable();
        attempts.dedup();
        assert_eq!(
            attempts.len(),
            claims.len(),
            "job {id}: one attempt claimed twice: {claims:?}"
        );
        let executions = claims.iter().filter(|claim| claim.executed).count();
        assert_eq!(executions, 1, "job {id} ran {executions} times: {claims:?}");
        if claims.len() > 1 {
            assert_eq!(attempts, vec![1, 2], "job {id}: {claims:?}");
            assert!(!claims[0].executed, "the first claim was the dead worker's");
            reclaimed += 1;
        }
    }
    assert_eq!(reclaimed, 8, "duplicates only where a lease expired");
    assert_eq!(log.len(), JOBS + 8, "claims = jobs + rescued");
    let counts = db.store.counts().await?;
    assert_eq!(counts, vec![(String::from("succeeded"), 10_000)]);
    Ok(())
}

async fn jq3_an_expired_lease_is_rescued_and_the_old_holder_is_locked_out(
    db: TestStore,
) -> TestResult {
    let job = new_job("acme", None, NOW);
    enqueue(&*db.store, &job, NOW).await?;
    let [first] = <[ClaimedJob; 1]>::try_from(db.store.claim(10, NOW + LEASE, NOW).await?)
        .map_err(|_| "one claim")?;
    assert_eq!(first.attempts, 1);
    // Within the lease nothing is rescued and nobody else can claim it.
    assert_eq!(db.store.rescue(5, "{}", NOW + LEASE - 1).await?, 0);
    assert!(db
        .store
        .claim(10, NOW + 2 * LEASE, NOW + 1)
        .await?
        .is_empty());
    // The worker died: after the lease the job is queued again.
    let later = NOW + LEASE + 1;
    assert_eq!(db.store.rescue(5, "{}", later).await?, 1);
    let [second] = <[ClaimedJob; 1]>::try_from(db.store.claim(10, later + LEASE, later).await?)
        .map_err(|_| "one re-claim")?;
    assert_eq!(second.attempts, 2);
    assert!(
        !db.store
            .heartbeat(&job.id, &first.token, later + LEASE)
            .await?
    );
    assert!(
        !db.store
            .finish(
                &job.id,
                &first.token,
                &Finish::Succeeded {
                    result: String::from("{}"),
                    cost_usd: None,
                },
                later
            )
            .await?
    );
    assert!(
        db.store
            .heartbeat(&job.id, &second.token, later + LEASE)
            .await?
    );
    assert!(
        db.store
            .finish(
                &job.id,
                &second.token,
                &Finish::Succeeded {
                    result: String::from("{\"ok\":1}"),
                    cost_usd: Some(0.003_75),
                },
                later
            )
            .await?
    );
    let done = db.store.get("acme", &job.id).await?.ok_or("job")?;
    assert_eq!(
        (done.status, done.attempts, done.result.as_deref()),
        (JobStatus::Succeeded, 2, Some("{\"ok\":1}"))
    );
    assert_eq!(
        done.cost_usd,
        Some(0.003_75),
        "the cost is kept with the result"
    );
    Ok(())
}

async fn jq3_a_rescued_job_with_attempts_spent_fails_and_its_webhook_becomes_due(
    db: TestStore,
) -> TestResult {
    let job = new_job("acme", Some("http://example.com/hook"), NOW);
    enqueue(&*db.store, &job, NOW).await?;
    db.store.claim(1, NOW + LEASE, NOW).await?;
    let later = NOW + LEASE + 1;
    assert_eq!(db.store.rescue(1, r#"{"message":"lost"}"#, later).await?, 1);
    let failed = db.store.get("acme", &job.id).await?.ok_or("job")?;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some(r#"{"message":"lost"}"#));
    assert_eq!(failed.webhook_status, Some(WebhookStatus::Pending));
    assert_eq!(
        db.store
            .claim_deliveries(10, later + 1000, later)
            .await?
            .len(),
        1
    );
    Ok(())
}

async fn jq4_a_retry_waits_for_its_run_at_and_counts_attempts(db: TestStore) -> TestResult {
    let job = new_job("acme", None, NOW);
    enqueue(&*db.store, &job, NOW).await?;
    let claimed = db
        .store
        .claim(1, NOW + LEASE, NOW)
        .await?
        .pop()
        .ok_or("claim")?;
    let retry = Finish::Retry {
        run_at: NOW + 5_000,
        error: String::from(r#"{"message":"503"}"#),
    };
    assert!(
        db.store
            .finish(&job.id, &claimed.token, &retry, NOW)
            .await?
    );
    let queued = db.store.get("acme", &job.id).await?.ok_or("job")?;
    assert_eq!((queued.status, queued.attempts), (JobStatus::Queued, 1));
    assert_eq!(queued.error.as_deref(), Some(r#"{"message":"503"}"#));
    assert!(db
        .store
        .claim(1, NOW + LEASE, NOW + 4_999)
        .await?
        .is_empty());
    let again = db
        .store
        .claim(1, NOW + 5_000 + LEASE, NOW + 5_000)
        .await?
        .pop()
        .ok_or("re-claim")?;
    assert_eq!(again.attempts, 2);
    assert!(
        db.store
            .finish(
                &job.id,
                &again.token,
                &Finish::Failed(String::from("{}")),
                NOW + 5_001
            )
            .await?
    );
    let failed = db.store.get("acme", &job.id).await?.ok_or("job")?;
    assert_eq!(
        (failed.status, failed.finished_at),
        (JobStatus::Failed, Some(NOW + 5_001))
    );
    // Terminal states do not change: a stale token cannot touch the job.
    assert!(
        !db.store
            .finish(
                &job.id,
                &again.token,
                &Finish::Succeeded {
                    result: String::from("{}"),
                    cost_usd: None,
                },
                NOW + 6_000
            )
            .await?
    );
    Ok(())
}

async fn cancel_queued_then_final_jobs(db: TestStore) -> TestResult {
    let job = new_job("acme", None, NOW);
    enqueue(&*db.store, &job, NOW).await?;
    assert!(matches!(
        db.store.cancel("globex", &job.id, NOW).await?,
        CancelOutcome::NotFound
    ));
    let CancelOutcome::Cancelled(cancelled) = db.store.cancel("acme", &job.id, NOW + 1).await?
    else {
        return Err("cancel".into());
    };
    assert_eq!(
        (cancelled.status, cancelled.finished_at),
        (JobStatus::Cancelled, Some(NOW + 1))
    );
    assert!(matches!(
        db.store.cancel("acme", &job.id, NOW + 2).await?,
        CancelOutcome::Cancelled(_)
    ));
    assert!(db.store.claim(1, NOW + LEASE, NOW + 3).await?.is_empty());
    let done = new_job("acme", None, NOW);
    enqueue(&*db.store, &done, NOW).await?;
    run_to_success(&*db.store, &done.id).await?;
    assert!(matches!(
        db.store.cancel("acme", &done.id, NOW).await?,
        CancelOutcome::AlreadyFinal(_)
    ));
    // A running job's lease is gone once cancelled: its heartbeat fails.
    let running = new_job("acme", None, NOW);
    enqueue(&*db.store, &running, NOW).await?;
    let claimed = db
        .store
        .claim(1, NOW + LEASE, NOW)
        .await?
        .pop()
        .ok_or("claim")?;
    assert!(matches!(
        db.store.cancel("acme", &running.id, NOW).await?,
        CancelOutcome::Cancelled(_)
    ));
    assert!(
        !db.store
            .heartbeat(&running.id, &claimed.token, NOW + LEASE)
            .await?
    );
    Ok(())
}

async fn release_gives_a_job_back_without_counting_the_attempt(db: TestStore) -> TestResult {
    let job = new_job("acme", None, NOW);
    enqueue(&*db.store, &job, NOW).await?;
    let claimed = db
        .store
        .claim(1, NOW + LEASE, NOW)
        .await?
        .pop()
        .ok_or("claim")?;
    assert!(db.store.release(&job.id, &claimed.token, NOW).await?);
    let queued = db.store.get("acme", &job.id).await?.ok_or("job")?;
    assert_eq!((queued.status, queued.attempts), (JobStatus::Queued, 0));
    assert_eq!(db.store.claim(1, NOW + LEASE, NOW).await?.len(), 1);
    Ok(())
}

async fn enqueue_running(
    store: &dyn JobStore,
    job: &NewJob,
    lease: &Lease,
) -> Result<JobRecord, Box<dyn std::error::Error>> {
    match store.enqueue_running(job, None, lease, NOW).await? {
        Enqueued::Created(record) => Ok(*record),
        Enqueued::KeyExists(_) => Err("unexpected key".into()),
    }
}

async fn a_job_enqueued_running_is_not_claimed_and_its_holder_finishes_it(
    db: TestStore,
) -> TestResult {
    let job = new_job("acme", None, NOW);
    let lease = Lease::new(NOW + LEASE);
    let record = enqueue_running(&*db.store, &job, &lease).await?;
    assert_eq!((record.status, record.attempts), (JobStatus::Running, 1));
    let stored = db.store.get("acme", &job.id).await?.ok_or("job")?;
    assert_eq!(stored, record);
    assert_eq!(db.store.queued_count("acme").await?, 0);
    assert!(db.store.claim(10, NOW + LEASE, NOW).await?.is_empty());
    assert!(
        db.store
            .heartbeat(&job.id, &lease.token, NOW + 2 * LEASE)
            .await?
    );
    assert!(
        !db.store
            .heartbeat(&job.id, "another token", NOW + 2 * LEASE)
            .await?
    );
    let result = Finish::Succeeded {
        result: String::from(r#"{"id":"answer"}"#),
        cost_usd: Some(0.5),
    };
    assert!(
        db.store
            .finish(&job.id, &lease.token, &result, NOW + 1)
            .await?
    );
    let done = db.store.get("acme", &job.id).await?.ok_or("job")?;
    assert_eq!(
        (
            done.status,
            done.attempts,
            done.result.as_deref(),
            done.cost_usd
        ),
        (
            JobStatus::Succeeded,
            1,
            Some(r#"{"id":"answer"}"#),
            Some(0.5)
        )
    );
    Ok(())
}

async fn a_job_enqueued_running_and_released_is_claimed_by_a_worker(db: TestStore) -> TestResult {
    let job = new_job("acme", None, NOW);
    let lease = Lease::new(NOW + LEASE);
    enqueue_running(&*db.store, &job, &lease).await?;
    assert!(db.store.release(&job.id, &lease.token, NOW).await?);
    let queued = db.store.get("acme", &job.id).await?.ok_or("job")?;
    assert_eq!((queued.status, queued.attempts), (JobStatus::Queued, 0));
    let claimed = db.store.claim(10, NOW + LEASE, NOW).await?;
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].id.as_str(), claimed[0].attempts),
        (job.id.as_str(), 1)
    );
    assert!(
        !db.store
            .heartbeat(&job.id, &lease.token, NOW + LEASE)
            .await?
    );
    Ok(())
}

async fn a_job_enqueued_running_whose_holder_vanished_is_rescued(db: TestStore) -> TestResult {
    let job = new_job("acme", None, NOW);
    let lease = Lease::new(NOW + LEASE);
    enqueue_running(&*db.store, &job, &lease).await?;
    assert_eq!(db.store.rescue(3, "{}", NOW + LEASE - 1).await?, 0);
    assert_eq!(db.store.rescue(3, "{}", NOW + LEASE + 1).await?, 1);
    let claimed = db.store.claim(10, NOW + 3 * LEASE, NOW + LEASE + 1).await?;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 2);
    let late = Finish::Succeeded {
        result: String::from("{}"),
        cost_usd: None,
    };
    assert!(
        !db.store
            .finish(&job.id, &lease.token, &late, NOW + LEASE + 2)
            .await?
    );
    Ok(())
}

async fn a_job_enqueued_running_keeps_its_idempotency_key(db: TestStore) -> TestResult {
    let key = KeyClaim {
        key: String::from("k1"),
        request_hash: String::from("h1"),
    };
    let first = new_job("acme", None, NOW);
    let lease = Lease::new(NOW + LEASE);
    let Enqueued::Created(record) = db
        .store
        .enqueue_running(&first, Some(&key), &lease, NOW)
        .await?
    else {
        return Err("first insert".into());
    };
    let second = new_job("acme", None, NOW);
    let again = Lease::new(NOW + LEASE);
    let Enqueued::KeyExists(stored) = db
        .store
        .enqueue_running(&second, Some(&key), &again, NOW)
        .await?
    else {
        return Err("second insert".into());
    };
    assert_eq!(stored.response_status, Some(202));
    assert_eq!(stored.response_body, Some(record.to_json()));
    assert_eq!(db.store.get("acme", &second.id).await?, None);
    Ok(())
}

async fn list_is_newest_first_with_a_cursor_and_a_status_filter(db: TestStore) -> TestResult {
    let mut ids = Vec::new();
    for index in 0..5 {
        let job = new_job("acme", None, NOW + index);
        enqueue(&*db.store, &job, NOW + index).await?;
        ids.push(job.id);
    }
    enqueue(&*db.store, &new_job("globex", None, NOW + 9), NOW).await?;
    let page = |after: Option<&String>, limit| ListQuery {
        status: None,
        webhook_status: None,
        after: after.cloned(),
        limit,
    };
    let first: Vec<String> = db
        .store
        .list("acme", &page(None, 2))
        .await?
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(first, vec![ids[4].clone(), ids[3].clone()]);
    let second: Vec<String> = db
        .store
        .list("acme", &page(first.last(), 10))
        .await?
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(second, vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    db.store.cancel("acme", &ids[1], NOW).await?;
    let cancelled = ListQuery {
        status: Some(JobStatus::Cancelled),
        webhook_status: None,
        after: None,
        limit: 10,
    };
    let only: Vec<String> = db
        .store
        .list("acme", &cancelled)
        .await?
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(only, vec![ids[1].clone()]);
    Ok(())
}

async fn wh2_deliveries_are_claimed_once_retried_and_settled(db: TestStore) -> TestResult {
    let job = new_job("acme", Some("http://example.com/hook"), NOW);
    enqueue(&*db.store, &job, NOW).await?;
    assert!(
        db.store
            .claim_deliveries(10, NOW + 1000, NOW)
            .await?
            .is_empty(),
        "not due before the job is final"
    );
    run_to_success(&*db.store, &job.id).await?;
    assert_eq!(
        db.store.claim_deliveries(10, NOW + 1000, NOW).await?.len(),
        1
    );
    assert!(
        db.store
            .claim_deliveries(10, NOW + 1000, NOW)
            .await?
            .is_empty(),
        "claimed deliveries are not handed out twice"
    );
    db.store
        .record_delivery(
            &job.id,
            &DeliveryOutcome::Retry {
                at: NOW + 5_000,
                error: String::from("500"),
            },
        )
        .await?;
    assert!(db
        .store
        .claim_deliveries(10, NOW + 6_000, NOW + 4_999)
        .await?
        .is_empty());
    let again = db
        .store
        .claim_deliveries(10, NOW + 6_000, NOW + 5_000)
        .await?
        .pop()
        .ok_or("retry")?;
    assert_eq!(
        (
            again.job.webhook_attempts,
            again.job.webhook_last_error.as_deref()
        ),
        (1, Some("500"))
    );
    db.store
        .record_delivery(&job.id, &DeliveryOutcome::Delivered)
        .await?;
    let delivered = db.store.get("acme", &job.id).await?.ok_or("job")?;
    assert_eq!(
        (delivered.webhook_status, delivered.webhook_attempts),
        (Some(WebhookStatus::Delivered), 2)
    );
    assert!(db
        .store
        .claim_deliveries(10, NOW + 99_000, NOW + 90_000)
        .await?
        .is_empty());
    Ok(())
}

async fn sweep_removes_old_finished_jobs_and_keys_only(db: TestStore) -> TestResult {
    let old = new_job("acme", None, NOW);
    let key = KeyClaim {
        key: String::from("k"),
        request_hash: String::from("h"),
    };
    db.store.enqueue(&old, Some(&key), NOW).await?;
    run_to_success(&*db.store, &old.id).await?;
    let queued = new_job("acme", None, NOW);
    enqueue(&*db.store, &queued, NOW).await?;
    let swept = db
        .store
        .sweep(&SweepBefore {
            jobs: NOW + 1,
            keys: NOW + 1,
            abandoned_keys: NOW + 1,
        })
        .await?;
    assert_eq!(
        swept,
        Swept {
            jobs: 1,
            keys: 1,
            endpoints: 0
        }
    );
    assert_eq!(db.store.get("acme", &old.id).await?, None);
    assert!(db.store.get("acme", &queued.id).await?.is_some());
    assert!(db.store.key("acme", "k").await?.is_none());
    Ok(())
}

const HOUR: i64 = 3_600_000;
const WINDOW: i64 = 120 * HOUR;

/// One failed delivery to `url` at `now` with the 120 h window.
async fn fail_at(db: &TestStore, tenant: &str, url: &str, now: i64) -> Result<bool, StoreError> {
    db.store
        .endpoint_failed(tenant, url, "500", now, now - WINDOW)
        .await
}

async fn wh3_an_endpoint_failing_for_the_whole_window_is_disabled_and_a_success_resets_the_clock(
    db: TestStore,
) -> TestResult {
    let url = "https://hooks.example.com/keel";
    assert!(!fail_at(&db, "acme", url, NOW).await?);
    // A success inside the window stops the clock...
    db.store.endpoint_succeeded("acme", url).await?;
    assert!(!fail_at(&db, "acme", url, NOW + 119 * HOUR).await?);
    assert!(
        !fail_at(&db, "acme", url, NOW + WINDOW).await?,
        "the clock restarted at the first failure after the success"
    );
    // ...so it takes 120 h from the first failure after it.
    let start = NOW + 119 * HOUR;
    assert!(!fail_at(&db, "acme", url, start + WINDOW - 1).await?);
    assert_eq!(db.store.endpoint_disabled_at("acme", url).await?, None);
    assert!(fail_at(&db, "acme", url, start + WINDOW).await?, "disabled");
    assert_eq!(
        db.store.endpoint_disabled_at("acme", url).await?,
        Some(start + WINDOW)
    );
    assert!(
        !fail_at(&db, "acme", url, start + WINDOW + 1).await?,
        "disabled once, reported once"
    );
    // Endpoints are per tenant.
    assert_eq!(db.store.endpoint_disabled_at("globex", url).await?, None);
    // 410 Gone disables at once (the caller passes i64::MAX).
    let gone = "https://gone.example.com/keel";
    assert!(
        db.store
            .endpoint_failed("acme", gone, "410", NOW, i64::MAX)
            .await?
    );
    assert_eq!(
        db.store.endpoint_disabled_at("acme", gone).await?,
        Some(NOW)
    );
    Ok(())
}

async fn wh3_failed_webhooks_are_listed_and_redelivered_with_the_same_id(
    db: TestStore,
) -> TestResult {
    let url = "https://hooks.example.com/keel";
    let job = new_job("acme", Some(url), NOW);
    enqueue(&*db.store, &job, NOW).await?;
    assert!(
        matches!(
            db.store.redeliver("acme", &job.id, NOW).await?,
            RedeliverOutcome::NotRedeliverable(_)
        ),
        "a queued job has no webhook to redeliver yet"
    );
    run_to_success(&*db.store, &job.id).await?;
    db.store.claim_deliveries(1, NOW + 1_000, NOW).await?;
    db.store
        .record_delivery(
            &job.id,
            &DeliveryOutcome::Failed {
                error: String::from("410"),
            },
        )
        .await?;
    db.store
        .endpoint_failed("acme", url, "410", NOW, i64::MAX)
        .await?;
    let failed_only = ListQuery {
        webhook_status: Some(WebhookStatus::Failed),
        limit: 10,
        ..ListQuery::default()
    };
    let listed: Vec<String> = db
        .store
        .list("acme", &failed_only)
        .await?
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(listed, vec![job.id.clone()]);
    assert!(db.store.list("globex", &failed_only).await?.is_empty());
    assert!(matches!(
        db.store.redeliver("globex", &job.id, NOW).await?,
        RedeliverOutcome::NotFound
    ));
    let RedeliverOutcome::Redelivering(record) =
        db.store.redeliver("acme", &job.id, NOW + 10).await?
    else {
        return Err("redeliver".into());
    };
    assert_eq!(
        (
            record.webhook_status,
            record.webhook_attempts,
            record.webhook_last_error
        ),
        (Some(WebhookStatus::Pending), 0, None)
    );
    assert_eq!(
        db.store.endpoint_disabled_at("acme", url).await?,
        None,
        "a redelivery enables the endpoint again"
    );
    assert!(
        matches!(
            db.store.redeliver("acme", &job.id, NOW + 10).await?,
            RedeliverOutcome::NotRedeliverable(_)
        ),
        "not twice while the first redelivery is pending"
    );
    let due = db.store.claim_deliveries(5, NOW + 1_000, NOW + 10).await?;
    let ids: Vec<&str> = due
        .iter()
        .map(|delivery| delivery.job.id.as_str())
        .collect();
    assert_eq!(
        ids,
        vec![job.id.as_str()],
        "the same job, so the same webhook-id"
    );
    Ok(())
}

const LOCK: i64 = 600_000;

/// Takes `key` at `now` the way a live request does (abandoned locks are
/// those older than the lock timeout): `true` when this caller owns it.
async fn take_key(db: &TestStore, key: &str, now: i64) -> Result<bool, StoreError> {
    let claim = KeyClaim {
        key: key.to_owned(),
        request_hash: String::from("h"),
    };
    Ok(db
        .store
        .begin_key("acme", &claim, now, now - LOCK)
        .await?
        .is_none())
}

fn sweep_at(now: i64) -> SweepBefore {
    SweepBefore {
        jobs: now - 7 * 24 * HOUR,
        keys: now - 24 * HOUR,
        abandoned_keys: now - LOCK,
    }
}

/// ID-5: a gateway killed between the provider's answer and storing it
/// leaves its key in progress. Until the lock timeout the key still blocks
/// duplicates and the sweeper keeps it; after it, the next request with the
/// key takes it over (and runs once more: at-least-once), or the sweeper
/// deletes it. A key released on an error exit is free at once.
async fn id5_a_key_abandoned_in_progress_is_freed_after_the_lock_timeout_and_no_sooner(
    db: TestStore,
) -> TestResult {
    assert!(take_key(&db, "taken-over", NOW).await?);
    assert!(take_key(&db, "swept", NOW).await?);
    // The gateway dies here: neither key is completed nor released.
    let just_before = NOW + LOCK - 1;
    assert!(
        !take_key(&db, "taken-over", just_before).await?,
        "still locked"
    );
    assert_eq!(db.store.sweep(&sweep_at(just_before)).await?.keys, 0);
    let after = NOW + LOCK + 1;
    assert!(take_key(&db, "taken-over", after).await?, "taken over");
    assert!(
        !take_key(&db, "taken-over", after).await?,
        "only one request takes an abandoned key over"
    );
    assert_eq!(
        db.store.sweep(&sweep_at(after)).await?.keys,
        1,
        "the abandoned key is swept; the one just taken over is kept"
    );
    assert!(db.store.key("acme", "swept").await?.is_none());
    assert!(db.store.key("acme", "taken-over").await?.is_some());
    // A completed key is kept for the TTL, whatever its age against the lock.
    db.store
        .complete_key("acme", "taken-over", 200, "{}", None)
        .await?;
    assert_eq!(db.store.sweep(&sweep_at(after + 2 * LOCK)).await?.keys, 0);
    // An error exit releases the key at once.
    assert!(take_key(&db, "released", NOW).await?);
    db.store.release_key("acme", "released").await?;
    assert!(take_key(&db, "released", NOW).await?);
    Ok(())
}

/// ID-5: keys past the TTL go in batches of 1,000, and a key used again
/// after its sweep runs anew.
async fn id5_expired_keys_are_swept_in_batches_and_then_run_anew(db: TestStore) -> TestResult {
    for index in 0..=1_000 {
        let key = format!("k{index}");
        assert!(take_key(&db, &key, NOW).await?);
        db.store.complete_key("acme", &key, 200, "{}", None).await?;
    }
    let expired = NOW + 24 * HOUR + 1;
    assert_eq!(db.store.sweep(&sweep_at(expired)).await?.keys, 1_000);
    assert_eq!(db.store.sweep(&sweep_at(expired)).await?.keys, 1);
    assert_eq!(db.store.sweep(&sweep_at(expired)).await?.keys, 0);
    assert!(
        take_key(&db, "k7", expired).await?,
        "a fresh run, not a replay"
    );
    Ok(())
}

/// Whether `from → to` is an edge of the job state diagram (staying put is
/// always allowed): queued → running | cancelled; running → queued (retry,
/// release, rescue) | succeeded | failed | cancelled; final states never
/// change (there is no manual retry).
fn allowed(from: JobStatus, to: JobStatus) -> bool {
    use JobStatus::{Cancelled, Failed, Queued, Running, Succeeded};
    from == to
        || matches!(
            (from, to),
            (Queued, Running | Cancelled) | (Running, Queued | Succeeded | Failed | Cancelled)
        )
}

/// One random operation against the store, as a worker, a client or the
/// maintenance loop would make it, with stale lease tokens kept around.
async fn random_operation(
    store: &dyn JobStore,
    rng: &mut fastrand::Rng,
    now: &mut i64,
    ids: &mut Vec<String>,
    leases: &mut Vec<(String, String)>,
) -> Result<(), StoreError> {
    const MAX_ATTEMPTS: u32 = 3;
    let lease = |leases: &Vec<(String, String)>, rng: &mut fastrand::Rng| {
        (!leases.is_empty()).then(|| leases[rng.usize(..leases.len())].clone())
    };
    match rng.u8(..9) {
        0 => {
            let job = new_job("acme", None, *now);
            store.enqueue(&job, None, *now).await?;
            ids.push(job.id);
        }
        1 | 2 => {
            for job in store.claim(rng.u32(1..3), *now + LEASE, *now).await? {
                leases.push((job.id, job.token));
            }
        }
        3 => {
            if let Some((id, token)) = lease(leases, rng) {
                let finish = match rng.u8(..3) {
                    0 => Finish::Succeeded {
                        result: String::from("{}"),
                        cost_usd: None,
                    },
                    1 => Finish::Failed(String::from("{}")),
                    _ => Finish::Retry {
                        run_at: *now + rng.i64(0..LEASE),
                        error: String::from("{}"),
                    },
                };
                store.finish(&id, &token, &finish, *now).await?;
            }
        }
        4 => {
            if let Some((id, token)) = lease(leases, rng) {
                store.release(&id, &token, *now).await?;
            }
        }
        5 => {
            if let Some((id, token)) = lease(leases, rng) {
                store.heartbeat(&id, &token, *now + LEASE).await?;
            }
        }
        6 => {
            if !ids.is_empty() {
                store
                    .cancel("acme", &ids[rng.usize(..ids.len())], *now)
                    .await?;
            }
        }
        7 => {
            store.rescue(MAX_ATTEMPTS, "{}", *now).await?;
        }
        _ => *now += rng.i64(0..LEASE),
    }
    Ok(())
}

/// JQ-4: random sequences of claims, finishes, releases, heartbeats,
/// cancels, rescues and clock jumps (stale lease tokens included) never
/// move a job along an edge outside the state diagram, never change a
/// final job in any way, and set `finished_at` exactly on final jobs.
async fn jq4_random_operations_never_leave_the_state_diagram(db: TestStore) -> TestResult {
    for seed in 0..12_u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut now = NOW + i64::try_from(seed).unwrap_or(0) * 1_000_000;
        let (mut ids, mut leases) = (Vec::new(), Vec::new());
        let mut seen: std::collections::HashMap<String, JobRecord> = Default::default();
        for step in 0..150 {
            random_operation(&*db.store, &mut rng, &mut now, &mut ids, &mut leases).await?;
            for id in &ids {
                let job = db.store.get("acme", id).await?.ok_or("a job vanished")?;
                if let Some(before) = seen.insert(id.clone(), job.clone()) {
                    assert!(
                        allowed(before.status, job.status),
                        "seed {seed} step {step}: job {id} went {:?} → {:?}",
                        before.status,
                        job.status
                    );
                    if before.status.is_final() {
                        assert_eq!(before, job, "seed {seed} step {step}: a final job changed");
                    }
                }
                assert_eq!(
                    job.status.is_final(),
                    job.finished_at.is_some(),
                    "seed {seed} step {step}: {job:?}"
                );
            }
        }
    }
    Ok(())
}
