//! The job queue across real `keel serve` processes on one Postgres
//! (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`, a
//! fresh database per test): a process killed with SIGKILL mid-job loses
//! nothing (JQ-3), two processes share 1,000 jobs without double execution
//! outside lease expiry (JQ-2), and SIGTERM releases what it cannot finish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use keel_testkit::{start_mock, ConfigFile, Faults, KeelProcess, Mock, TestDatabase};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KEY: &str = "sk-acme";

/// A webhook receiver counting deliveries per `webhook-id`.
struct Receiver {
    url: String,
    deliveries: Arc<Mutex<HashMap<String, u32>>>,
}

/// The configuration of every process of a test.
fn config_file(
    database: &TestDatabase,
    mock: &Mock,
    workers: u32,
    grace: &str,
) -> std::io::Result<ConfigFile> {
    let yaml = format!(
        r#"server: {{listen: "127.0.0.1:0", shutdown_grace: {grace}}}
tenants:
  - {{name: acme, keys: ["{KEY}"]}}
providers:
  first: {{kind: openai, base_url: "{base}", timeouts: {{connect: 1s}}, retry: {{attempts: 1}}}}
models:
  chat: {{targets: [{{provider: first, model: gpt-mock}}]}}
database: {{url: "{url}"}}
jobs: {{workers: {workers}, lease: 2s, max_attempts: 5, retry: {{base_delay: 50ms, max_delay: 200ms}}}}
webhooks: {{secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", timeout: 2s, allow_private: true, retry_schedule: [100ms, 200ms, 400ms, 1s]}}
"#,
        base = mock.base_url(),
        url = database.url(),
    );
    ConfigFile::write("keel-jobs", &yaml)
}

async fn start_keel(config: &ConfigFile) -> Result<Keel, Box<dyn std::error::Error>> {
    KeelProcess::start(env!("CARGO_BIN_EXE_keel"), config).await
}

type Keel = KeelProcess;

impl Receiver {
    async fn start() -> std::io::Result<Self> {
        let deliveries: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let log = deliveries.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let log = log.clone();
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    if let Ok(mut log) = log.lock() {
                        *log.entry(id).or_default() += 1;
                    }
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, deliveries })
    }

    fn delivered(&self) -> HashMap<String, u32> {
        self.deliveries
            .lock()
            .map(|log| log.clone())
            .unwrap_or_default()
    }
}

/// Submits `count` jobs with a webhook, spread over `instances`, 32 at a time.
async fn submit_all(
    http: &reqwest::Client,
    instances: &[&Keel],
    hook: &str,
    count: usize,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut ids = Vec::with_capacity(count);
    let mut pending = tokio::task::JoinSet::new();
    for index in 0..count {
        let url = instances[index % instances.len()].url("/v1/jobs");
        let body = json!({"request": {"model": "chat", "messages": [{"role": "user", "content": format!("job {index}")}]}, "webhook": {"url": hook}});
        let request = http.post(url).bearer_auth(KEY).json(&body);
        pending.spawn(async move {
            let response = request.send().await?;
            let status = response.status();
            let job: Value = response.json().await?;
            Ok::<_, reqwest::Error>((status, job))
        });
        if pending.len() >= 32 {
            if let Some(done) = pending.join_next().await {
                ids.push(accepted(done??)?);
            }
        }
    }
    while let Some(done) = pending.join_next().await {
        ids.push(accepted(done??)?);
    }
    Ok(ids)
}

fn accepted(
    (status, job): (reqwest::StatusCode, Value),
) -> Result<String, Box<dyn std::error::Error>> {
    if status != reqwest::StatusCode::ACCEPTED {
        return Err(format!("submit answered {status}: {job}").into());
    }
    Ok(job["id"].as_str().ok_or("no id")?.to_owned())
}

/// Every job of the tenant, through the paginated list.
async fn all_jobs(
    http: &reqwest::Client,
    keel: &Keel,
) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let mut jobs = Vec::new();
    let mut after = String::new();
    loop {
        let page: Value = http
            .get(keel.url(&format!("/v1/jobs?limit=100&after={after}")))
            .bearer_auth(KEY)
            .send()
            .await?
            .json()
            .await?;
        let data = page["data"].as_array().ok_or("no data")?;
        jobs.extend(data.iter().cloned());
        if page["has_more"] != true {
            return Ok(jobs);
        }
        after = data
            .last()
            .and_then(|job| job["id"].as_str())
            .ok_or("no cursor")?
            .to_owned();
    }
}

/// Waits until every job is final with its webhook delivered (`limit` at most).
async fn wait_all_settled(
    http: &reqwest::Client,
    keel: &Keel,
    count: usize,
    limit: Duration,
) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let jobs = all_jobs(http, keel).await?;
        let settled = jobs
            .iter()
            .filter(|job| job["status"] == "succeeded" && job["webhook"]["status"] == "delivered")
            .count();
        if jobs.len() == count && settled == count {
            return Ok(jobs);
        }
        if tokio::time::Instant::now() > deadline {
            let stuck: Vec<&Value> = jobs
                .iter()
                .filter(|job| job["webhook"]["status"] != "delivered")
                .take(3)
                .collect();
            return Err(format!("{settled} of {count} settled in time; e.g. {stuck:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// JQ-3: SIGKILL a `keel serve` with jobs running; after a restart every
/// accepted job reaches a final state and every webhook is delivered.
#[tokio::test]
async fn jq3_a_killed_instance_loses_no_job_and_no_webhook() -> TestResult {
    let database = TestDatabase::postgres().await?;
    let mock = start_mock().await?;
    mock.state.set_faults(
        "gpt-mock",
        Faults {
            first_token_delay_ms: 400,
            ..Faults::default()
        },
    );
    let receiver = Receiver::start().await?;
    let config = config_file(&database, &mock, 8, "1s")?;
    let http = reqwest::Client::new();
    let mut first = start_keel(&config).await?;
    let ids = submit_all(&http, &[&first], &receiver.url, 40).await?;
    // Kill it while jobs are in flight upstream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mock.state.stats("gpt-mock").requests < 8 {
        if tokio::time::Instant::now() > deadline {
            return Err("no job started".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.signal("KILL")?;
    first.child.wait().await?;
    let second = start_keel(&config).await?;
    let jobs = wait_all_settled(&http, &second, ids.len(), Duration::from_secs(40)).await?;
    let rerun = jobs
        .iter()
        .filter(|job| job["attempts"].as_i64().unwrap_or(0) > 1)
        .count();
    let delivered = receiver.delivered();
    for id in &ids {
        assert!(delivered.contains_key(id), "webhook of {id} never arrived");
    }
    eprintln!(
        "crash test: {} jobs, {rerun} re-run after their lease expired, {} upstream calls",
        ids.len(),
        mock.state.stats("gpt-mock").requests
    );
    assert!(
        rerun > 0,
        "the jobs running at the kill were re-claimed after their lease"
    );
    Ok(())
}

/// JQ-2: two `keel serve` on one Postgres share 1,000 jobs; each is
/// executed and delivered; executions equal claims (attempts), so a
/// duplicate can only come from an expired lease; the test reports them.
#[tokio::test]
async fn jq2_two_instances_share_a_thousand_jobs_without_double_execution() -> TestResult {
    let database = TestDatabase::postgres().await?;
    let mock = start_mock().await?;
    let receiver = Receiver::start().await?;
    let config = config_file(&database, &mock, 16, "1s")?;
    let http = reqwest::Client::new();
    let (one, two) = (start_keel(&config).await?, start_keel(&config).await?);
    let count = 1000;
    let ids = submit_all(&http, &[&one, &two], &receiver.url, count).await?;
    assert_eq!(ids.len(), count);
    let jobs = wait_all_settled(&http, &one, count, Duration::from_secs(40)).await?;
    let claims: i64 = jobs
        .iter()
        .map(|job| job["attempts"].as_i64().unwrap_or(0))
        .sum();
    let executions = mock.state.stats("gpt-mock").requests;
    let delivered = receiver.delivered();
    let duplicates = claims - i64::try_from(count)?;
    let redeliveries: u32 = delivered.values().map(|n| n - 1).sum();
    eprintln!("two instances: {count} jobs, {executions} upstream calls, {duplicates} duplicate executions (lease expiry), {redeliveries} duplicate webhooks");
    assert_eq!(
        i64::try_from(executions)?,
        claims,
        "every upstream call belongs to a claim"
    );
    assert_eq!(delivered.len(), count, "every webhook delivered");
    assert!(ids.iter().all(|id| delivered.contains_key(id)));
    Ok(())
}

/// Graceful shutdown: SIGTERM stops claiming, running jobs get
/// `server.shutdown_grace`, the rest are released at once (not left to
/// their lease) and another instance finishes them.
#[tokio::test]
async fn sigterm_releases_running_jobs_to_another_instance() -> TestResult {
    let database = TestDatabase::postgres().await?;
    let mock = start_mock().await?;
    mock.state.set_faults(
        "gpt-mock",
        Faults {
            first_token_delay_ms: 3_000,
            ..Faults::default()
        },
    );
    let receiver = Receiver::start().await?;
    let config = config_file(&database, &mock, 4, "200ms")?;
    let http = reqwest::Client::new();
    let mut first = start_keel(&config).await?;
    let ids = submit_all(&http, &[&first], &receiver.url, 4).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mock.state.stats("gpt-mock").requests < 4 {
        if tokio::time::Instant::now() > deadline {
            return Err("jobs did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.signal("TERM")?;
    let exited = tokio::time::timeout(Duration::from_secs(10), first.child.wait()).await??;
    assert!(exited.success(), "keel exits cleanly on SIGTERM");
    // Released, not left running under a lease: queued again with the run
    // uncounted (the new instance may already have claimed it: attempts 1).
    let second = start_keel(&config).await?;
    let queued: Value = http
        .get(second.url(&format!("/v1/jobs/{}", ids[0])))
        .bearer_auth(KEY)
        .send()
        .await?
        .json()
        .await?;
    assert!(queued["attempts"].as_i64() <= Some(1), "{queued}");
    mock.state.set_faults("gpt-mock", Faults::default());
    let jobs = wait_all_settled(&http, &second, ids.len(), Duration::from_secs(30)).await?;
    assert!(
        jobs.iter().all(|job| job["attempts"] == 1),
        "released runs are not counted: {jobs:?}"
    );
    Ok(())
}
