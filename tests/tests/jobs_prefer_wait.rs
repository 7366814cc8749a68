//! `Prefer: respond-async, wait=N` on chat completions (README, "Async
//! jobs"), on both stores: a fast answer is the normal 200; a slow one
//! becomes a job at the end of the wait, and the job's result is that same
//! upstream call; a request every target fails is queued at once and runs
//! when the upstream recovers; a request at fault stays a 4xx; a stream
//! ignores `wait`.

#[path = "jobs/support.rs"]
#[allow(dead_code, reason = "shared by the job test crates; each uses a part")]
#[macro_use]
mod support;

use std::time::{Duration, Instant};

use keel_testkit::{start_gateway, start_mock, FailNext, Faults, TestDatabase};
use serde_json::{json, Value};
use support::{chat_request, Options, Setup, Store, TestResult, ACME};

both_stores!(
    an_answer_within_the_wait_is_a_200,
    an_answer_after_the_wait_is_a_202_and_becomes_the_jobs_result_without_a_second_call,
    a_request_every_target_fails_is_queued_at_once_and_runs_when_the_upstream_recovers,
    a_request_while_every_breaker_is_open_is_queued_at_once_and_runs_after_the_cooldown,
    a_request_at_fault_stays_a_400_and_creates_no_job,
    a_stream_ignores_the_wait,
);

/// The upstream's delay before its answer.
fn slow_upstream(setup: &Setup, delay_ms: u64) {
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            first_token_delay_ms: delay_ms,
            ..Faults::default()
        },
    );
}

async fn send_waiting(
    setup: &Setup,
    body: &Value,
    key: Option<&str>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut request = setup
        .http
        .post(setup.gateway.url("/v1/chat/completions"))
        .bearer_auth(ACME)
        .header("prefer", "respond-async, wait=2");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.json(body).send().await
}

async fn job_count(setup: &Setup) -> Result<usize, Box<dyn std::error::Error>> {
    let list: Value = setup
        .http
        .get(setup.gateway.url("/v1/jobs"))
        .bearer_auth(ACME)
        .send()
        .await?
        .json()
        .await?;
    Ok(list["data"].as_array().ok_or("data")?.len())
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn an_answer_within_the_wait_is_a_200(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    slow_upstream(&setup, 500);
    let response = send_waiting(&setup, &chat_request(), None).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "preference-applied"), None);
    let body: Value = response.json().await?;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 1);
    assert_eq!(job_count(&setup).await?, 0);
    Ok(())
}

async fn an_answer_after_the_wait_is_a_202_and_becomes_the_jobs_result_without_a_second_call(
    store: Store,
) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    slow_upstream(&setup, 4_000);
    let started = Instant::now();
    let response = send_waiting(&setup, &chat_request(), Some("slow-1")).await?;
    let answered_after = started.elapsed();
    assert_eq!(response.status(), 202);
    assert!(
        // A 202 at all proves it came before the 4 s answer; the upper
        // bound is only a hang guard.
        answered_after >= Duration::from_millis(1_900) && answered_after < Duration::from_secs(10),
        "the 202 came after {answered_after:?}, not at the end of the 2 s wait"
    );
    assert_eq!(
        header(&response, "preference-applied"),
        Some("respond-async")
    );
    let location = header(&response, "location").ok_or("location")?.to_owned();
    let job: Value = response.json().await?;
    let id = job["id"].as_str().ok_or("id")?;
    assert_eq!(location, format!("/v1/jobs/{id}"));
    // Already running: the synchronous attempt goes on as the job's first run.
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_i64()),
        (Some("running"), Some(1)),
        "{job}"
    );
    let done = setup.wait_final(id).await?;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["object"], "chat.completion");
    assert_eq!(done["attempts"], 1);
    // The synchronous attempt's answer is the result: one upstream call in all.
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 1);
    // The same key replays the job instead of making another.
    let again = send_waiting(&setup, &chat_request(), Some("slow-1")).await?;
    assert_eq!(again.status(), 202);
    assert_eq!(header(&again, "idempotent-replayed"), Some("true"));
    let replayed: Value = again.json().await?;
    assert_eq!(replayed["id"].as_str(), Some(id));
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 1);
    assert_eq!(job_count(&setup).await?, 1);
    Ok(())
}

async fn a_request_every_target_fails_is_queued_at_once_and_runs_when_the_upstream_recovers(
    store: Store,
) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    // The synchronous attempt and the first job run fail; the second run succeeds.
    let fail = FailNext {
        status: 503,
        count: 2,
        ..FailNext::default()
    };
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            fail: Some(fail),
            ..Faults::default()
        },
    );
    let started = Instant::now();
    let response = send_waiting(&setup, &chat_request(), None).await?;
    assert_eq!(response.status(), 202);
    assert!(
        // Before the 2 s wait could have run out: queued without waiting.
        started.elapsed() < Duration::from_millis(1_900),
        "queued after {:?}, not at once",
        started.elapsed()
    );
    assert_eq!(
        header(&response, "preference-applied"),
        Some("respond-async")
    );
    let location = header(&response, "location").ok_or("location")?.to_owned();
    let job: Value = response.json().await?;
    let id = job["id"].as_str().ok_or("id")?;
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert_eq!(job["status"], "queued", "{job}");
    let done = setup.wait_final(id).await?;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2);
    // The synchronous attempt, the failed run and the successful run.
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 3);
    Ok(())
}

/// A gateway whose one provider opens its breaker after two failures in a
/// row and tries again after 2 s; job runs back off by about a second, so a
/// run during the cooldown is retried rather than failed for good.
async fn start_with_breaker(store: Store) -> Result<Setup, Box<dyn std::error::Error>> {
    let database = match store {
        Store::Sqlite => TestDatabase::sqlite(),
        Store::Postgres => TestDatabase::postgres().await?,
    };
    let mock = start_mock().await?;
    let yaml = format!(
        r#"tenants:
  - {{name: acme, keys: ["{ACME}"]}}
providers:
  first:
    kind: openai
    base_url: "{base}"
    timeouts: {{connect: 1s}}
    retry: {{attempts: 1}}
    breaker: {{failure_rate: 0.5, window: 10s, min_requests: 2, cooldown: 2s, half_open_trials: 1}}
models:
  chat: {{targets: [{{provider: first, model: gpt-mock}}]}}
database: {{url: "{url}"}}
jobs: {{workers: 2, lease: 5s, max_attempts: 20, retry: {{base_delay: 500ms, max_delay: 1s}}}}
"#,
        base = mock.base_url(),
        url = database.url(),
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    Ok(Setup {
        mock,
        gateway,
        http: reqwest::Client::new(),
        _database: database,
    })
}

async fn a_request_while_every_breaker_is_open_is_queued_at_once_and_runs_after_the_cooldown(
    store: Store,
) -> TestResult {
    let setup = start_with_breaker(store).await?;
    let fail = FailNext {
        status: 503,
        count: 2,
        ..FailNext::default()
    };
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            fail: Some(fail),
            ..Faults::default()
        },
    );
    for _ in 0..2 {
        let failed = setup
            .http
            .post(setup.gateway.url("/v1/chat/completions"))
            .bearer_auth(ACME)
            .json(&chat_request())
            .send()
            .await?;
        assert!(failed.status().is_server_error(), "{}", failed.status());
    }
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 2);
    let started = Instant::now();
    let response = send_waiting(&setup, &chat_request(), None).await?;
    assert_eq!(response.status(), 202);
    assert!(
        // Before the 2 s wait could have run out: queued without waiting.
        started.elapsed() < Duration::from_millis(1_900),
        "queued after {:?}, not at once",
        started.elapsed()
    );
    // The breaker is open: the synchronous attempt made no upstream call.
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 2);
    let job: Value = response.json().await?;
    let done = setup.wait_final(job["id"].as_str().ok_or("id")?).await?;
    assert_eq!(done["status"], "succeeded", "{done}");
    // Only the run after the cooldown reached the (recovered) upstream.
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 3);
    let finished_after = done["finished_at"].as_i64().ok_or("finished_at")?
        - done["created_at"].as_i64().ok_or("created_at")?;
    // Job times are in seconds: the 2 s cooldown puts at least 1 s between them.
    assert!(
        finished_after >= 1,
        "the job finished {finished_after} s after it was queued, inside the breaker's cooldown: {done}"
    );
    Ok(())
}

async fn a_request_at_fault_stays_a_400_and_creates_no_job(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let fail = FailNext {
        status: 400,
        count: 1,
        ..FailNext::default()
    };
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            fail: Some(fail),
            ..Faults::default()
        },
    );
    let response = send_waiting(&setup, &chat_request(), None).await?;
    assert_eq!(response.status(), 400);
    let bad = json!({"model": "chat", "messages": "not a list"});
    assert_eq!(send_waiting(&setup, &bad, None).await?.status(), 400);
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 1);
    assert_eq!(job_count(&setup).await?, 0);
    Ok(())
}

async fn a_stream_ignores_the_wait(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let mut body = chat_request();
    body["stream"] = json!(true);
    let response = send_waiting(&setup, &body, None).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), Some("text/event-stream"));
    let text = response.text().await?;
    assert!(text.contains("[DONE]"), "{text}");
    assert_eq!(job_count(&setup).await?, 0);
    Ok(())
}
