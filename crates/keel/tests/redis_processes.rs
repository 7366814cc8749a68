//! Two `keel serve` processes sharing one `redis-server` of the test's own
//! (never the machine's shared one): a tenant's `rpm` holds exactly across
//! both, tokens settled by one are seen by the other, an upstream 429 seen
//! by one pauses the provider for both; when Redis is killed mid-load no
//! request fails, the local fallback limits hold and `keel_redis_up` is 0,
//! and when it returns both go back to the shared limits by themselves. A
//! cache miss on one instance is a hit on the other, and a purge on one
//! empties both.

use std::time::Duration;

use keel_testkit::{start_mock, ConfigFile, FailNext, Faults, KeelProcess, Mock, RedisServer};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const ADMIN: &str = "admin-secret";

fn config(mock: &Mock, redis: &RedisServer) -> std::io::Result<ConfigFile> {
    let yaml = format!(
        r#"server: {{listen: "127.0.0.1:0", admin_key: "{ADMIN}"}}
database: {{url: "sqlite::memory:"}}
tenants:
  - {{name: acme, keys: ["sk-acme"], limits: {{rpm: 10}}}}
  - {{name: wordy, keys: ["sk-wordy"], limits: {{tpm: 600}}}}
  - {{name: free, keys: ["sk-free"], limits: {{rpm: 40}}}}
  - {{name: open, keys: ["sk-open"]}}
providers:
  mock: {{kind: openai, base_url: "{base}", retry: {{attempts: 1}}, rpm: 1000}}
  other: {{kind: openai, base_url: "{base}", retry: {{attempts: 1}}, rpm: 1000}}
models:
  chat: {{targets: [{{provider: mock, model: gpt-mock}}]}}
  paused: {{targets: [{{provider: other, model: gpt-paused}}]}}
  cached: {{targets: [{{provider: mock, model: gpt-cached}}], cache: {{ttl: 10m}}}}
redis: {{url: "{url}", expected_instances: 2, timeout: 50ms}}
"#,
        base = mock.base_url(),
        url = redis.url(),
    );
    ConfigFile::write("keel-redis", &yaml)
}

async fn two_instances(
    config: &ConfigFile,
) -> Result<(KeelProcess, KeelProcess), Box<dyn std::error::Error>> {
    let binary = env!("CARGO_BIN_EXE_keel");
    Ok((
        KeelProcess::start(binary, config).await?,
        KeelProcess::start(binary, config).await?,
    ))
}

async fn chat(
    http: &reqwest::Client,
    keel: &KeelProcess,
    key: &str,
    model: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    let body =
        json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    http.post(keel.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
}

async fn redis_up(
    http: &reqwest::Client,
    keel: &KeelProcess,
) -> Result<Option<String>, reqwest::Error> {
    metric(http, keel, "keel_redis_up").await
}

/// The value of the unlabelled metric `name` in the instance's `/metrics`.
async fn metric(
    http: &reqwest::Client,
    keel: &KeelProcess,
    name: &str,
) -> Result<Option<String>, reqwest::Error> {
    let text = http
        .get(keel.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await?
        .text()
        .await?;
    let prefix = format!("{name} ");
    Ok(text
        .lines()
        .find(|line| line.starts_with(&prefix))
        .map(|line| line.trim_start_matches(&prefix).to_owned()))
}

#[tokio::test]
async fn a_tenants_rpm_is_exact_across_two_instances() -> TestResult {
    let (mock, redis) = (start_mock().await?, RedisServer::start()?);
    let config = config(&mock, &redis)?;
    let (one, two) = two_instances(&config).await?;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for number in 0..24 {
        let keel = if number % 2 == 0 { &one } else { &two };
        statuses.push(
            chat(&http, keel, "sk-acme", "chat")
                .await?
                .status()
                .as_u16(),
        );
    }
    let served = statuses.iter().filter(|&&status| status == 200).count();
    assert_eq!(served, 10, "rpm 10 across both instances: {statuses:?}");
    assert!(
        statuses[10..].iter().all(|&status| status == 429),
        "{statuses:?}"
    );
    assert_eq!(redis_up(&http, &one).await?.as_deref(), Some("1"));
    Ok(())
}

#[tokio::test]
async fn tokens_settled_on_one_instance_count_on_the_other() -> TestResult {
    let (mock, redis) = (start_mock().await?, RedisServer::start()?);
    let config = config(&mock, &redis)?;
    let (one, two) = two_instances(&config).await?;
    let http = reqwest::Client::new();
    // What the bucket has left after the request's own reservation, and
    // the tokens the answer used (which replace the reservation).
    async fn ask(
        http: &reqwest::Client,
        keel: &KeelProcess,
    ) -> Result<(u64, u64), Box<dyn std::error::Error>> {
        let response = chat(http, keel, "sk-wordy", "chat").await?;
        let left = response
            .headers()
            .get("x-ratelimit-remaining-tokens")
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .ok_or("no x-ratelimit-remaining-tokens")?;
        let body: serde_json::Value = response.json().await?;
        let used = body["usage"]["total_tokens"].as_u64().ok_or("no usage")?;
        // Let the settlement reach Redis before the next request.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok((left, used))
    }
    let started = tokio::time::Instant::now();
    let (left_before, used_first) = ask(&http, &two).await?;
    let mut used_elsewhere = 0;
    for _ in 0..3 {
        used_elsewhere += ask(&http, &one).await?.1;
    }
    let (left_after, _) = ask(&http, &two).await?;
    // One shared bucket: the other instance's usage is gone from it too (a
    // bucket of its own would read `left_before - used_first`), give or
    // take the refill meanwhile (600 a minute: 10 a second).
    let refill = (started.elapsed().as_secs_f64() * 10.0).ceil() as u64 + 1;
    let shared = left_before - used_first - used_elsewhere;
    assert!(
        used_elsewhere > refill,
        "the test cannot tell: {used_elsewhere} <= {refill}"
    );
    assert!(
        (shared..=shared + refill).contains(&left_after),
        "{left_after} not within {shared}..={}",
        shared + refill
    );
    Ok(())
}

#[tokio::test]
async fn an_upstream_429_on_one_instance_pauses_the_provider_for_both() -> TestResult {
    let (mock, redis) = (start_mock().await?, RedisServer::start()?);
    let config = config(&mock, &redis)?;
    let (one, two) = two_instances(&config).await?;
    let http = reqwest::Client::new();
    let fail = FailNext {
        status: 429,
        count: 1,
        retry_after: Some(String::from("30")),
        body: None,
    };
    mock.state.set_faults(
        "gpt-paused",
        Faults {
            fail: Some(fail),
            ..Faults::default()
        },
    );
    assert_eq!(chat(&http, &one, "sk-free", "paused").await?.status(), 429);
    let calls = mock.state.stats("gpt-paused").requests;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = chat(&http, &two, "sk-free", "paused").await?;
    assert_eq!(
        refused.status(),
        503,
        "the other instance called a paused provider"
    );
    assert_eq!(
        mock.state.stats("gpt-paused").requests,
        calls,
        "an upstream call went out"
    );
    Ok(())
}

#[tokio::test]
async fn killing_redis_mid_load_fails_no_request_and_it_comes_back() -> TestResult {
    let (mock, mut redis) = (start_mock().await?, RedisServer::start()?);
    let config = config(&mock, &redis)?;
    let (one, two) = two_instances(&config).await?;
    let http = reqwest::Client::new();
    // Shared: `free` gets 40 across both; use 10 of them.
    for number in 0..10 {
        let keel = if number % 2 == 0 { &one } else { &two };
        assert_eq!(chat(&http, keel, "sk-free", "chat").await?.status(), 200);
    }

    // Load from another tenant while Redis dies: every call also passes the
    // provider's shared rpm bucket, and none of them may fail.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = {
        let (http, sent) = (http.clone(), sent.clone());
        let urls = [
            one.url("/v1/chat/completions"),
            two.url("/v1/chat/completions"),
        ];
        tokio::spawn(async move {
            let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
            let mut statuses = Vec::new();
            for number in 0..300 {
                let response = http
                    .post(&urls[number % 2])
                    .bearer_auth("sk-open")
                    .json(&body)
                    .send()
                    .await;
                statuses.push(
                    response
                        .map(|response| response.status().as_u16())
                        .unwrap_or(0),
                );
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            statuses
        })
    };
    while sent.load(std::sync::atomic::Ordering::Relaxed) < 50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.stop();
    let stopped_at = sent.load(std::sync::atomic::Ordering::Relaxed);
    let during = load.await?;
    assert!(
        stopped_at < 250,
        "the load was nearly over when Redis died ({stopped_at})"
    );
    assert!(
        during.iter().all(|&status| status == 200),
        "failed while Redis died: {during:?}"
    );
    // Each instance now holds its own 40 / 2 = 20 (fresh local buckets):
    // 50 requests, 25 per instance, get exactly 40 answers and 10 refusals,
    // and no error of any other kind.
    let mut statuses = Vec::new();
    for number in 0..50 {
        let keel = if number % 2 == 0 { &one } else { &two };
        statuses.push(
            chat(&http, keel, "sk-free", "chat")
                .await?
                .status()
                .as_u16(),
        );
    }
    let count = |code: u16| statuses.iter().filter(|&&status| status == code).count();
    assert_eq!((count(200), count(429)), (40, 10), "{statuses:?}");
    assert_eq!(redis_up(&http, &one).await?.as_deref(), Some("0"));
    assert_eq!(redis_up(&http, &two).await?.as_deref(), Some("0"));
    let fallbacks = metric(&http, &one, "keel_redis_fallbacks_total").await?;
    assert!(
        fallbacks
            .as_deref()
            .and_then(|count| count.parse::<u64>().ok())
            > Some(0),
        "no fallback counted: {fallbacks:?}"
    );

    redis.restart()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for keel in [&one, &two] {
        while redis_up(&http, keel).await?.as_deref() != Some("1") {
            assert!(tokio::time::Instant::now() < deadline, "never shared again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The restarted Redis is empty: the shared 40 again, across both.
    let mut served = 0;
    for number in 0..60 {
        let keel = if number % 2 == 0 { &one } else { &two };
        if chat(&http, keel, "sk-free", "chat").await?.status() == 200 {
            served += 1;
        }
    }
    assert_eq!(served, 40);
    Ok(())
}

fn cache_status(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-keel-cache")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_miss_on_one_instance_is_a_hit_on_the_other_and_purges_reach_both() -> TestResult {
    let (mock, redis) = (start_mock().await?, RedisServer::start()?);
    let config = config(&mock, &redis)?;
    let (one, two) = two_instances(&config).await?;
    let http = reqwest::Client::new();
    let first = chat(&http, &one, "sk-open", "cached").await?;
    assert_eq!(cache_status(&first), "miss");
    let stored: serde_json::Value = first.json().await?;
    // The shared level is written without waiting for it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = chat(&http, &two, "sk-open", "cached").await?;
    assert_eq!(cache_status(&second), "hit", "the other instance missed");
    let replayed: serde_json::Value = second.json().await?;
    let answer = |body: &serde_json::Value| {
        let choice = &body["choices"][0];
        (
            choice["message"]["content"].clone(),
            choice["finish_reason"].clone(),
        )
    };
    assert_eq!(answer(&replayed), answer(&stored));
    assert_eq!(
        replayed["usage"]["total_tokens"],
        stored["usage"]["total_tokens"]
    );
    assert_eq!(
        mock.state.stats("gpt-cached").requests,
        1,
        "two upstream calls"
    );
    // Now in both local levels; a purge on one empties both and Redis.
    let purge = http
        .delete(one.url("/admin/cache"))
        .bearer_auth(ADMIN)
        .send()
        .await?;
    assert_eq!(purge.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        cache_status(&chat(&http, &two, "sk-open", "cached").await?),
        "miss"
    );
    assert_eq!(mock.state.stats("gpt-cached").requests, 2);
    Ok(())
}
