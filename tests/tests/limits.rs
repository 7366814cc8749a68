//! Tenant rate limits, load shedding, the connect clock and /metrics, end
//! to end against real sockets.

use std::time::Duration;

use futures_util::future::join_all;
use keel_testkit::{start_gateway, start_mock, yaml_with_targets, Faults, TEST_KEY};
use tokio::time::Instant;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BODY: &str = r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#;

/// RL-1 end to end: the tenant gets exactly its rpm, then 429 with
/// Retry-After and OpenAI's x-ratelimit headers; another tenant is untouched.
#[tokio::test]
async fn rl1_a_tenant_over_its_rpm_gets_429_with_openai_headers() -> TestResult {
    let mock = start_mock().await?;
    let yaml = format!(
        "tenants:\n  - {{name: small, keys: [sk-small], limits: {{rpm: 3}}}}\n  - {{name: big, keys: [\"{TEST_KEY}\"]}}\nproviders:\n  up: {{kind: openai, base_url: \"{}\"}}\nmodels:\n  chat: {{targets: [{{provider: up, model: gpt-mock}}]}}\n",
        mock.base_url()
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let client = reqwest::Client::new();
    let url = gateway.url("/v1/chat/completions");
    for expected_remaining in ["2", "1", "0"] {
        let response = client
            .post(&url)
            .bearer_auth("sk-small")
            .body(BODY)
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit-requests"], "3");
        assert_eq!(
            response.headers()["x-ratelimit-remaining-requests"],
            expected_remaining
        );
    }
    let refused = client
        .post(&url)
        .bearer_auth("sk-small")
        .body(BODY)
        .send()
        .await?;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str()?.parse()?;
    assert!(
        (1..=20).contains(&retry_after),
        "one request comes back every 20 s: {retry_after}"
    );
    assert!(refused.headers().contains_key("x-ratelimit-reset-requests"));
    assert!(
        refused.headers().get("x-should-retry").is_none(),
        "a tenant's 429 may be retried after Retry-After"
    );
    let body: serde_json::Value = serde_json::from_slice(&refused.bytes().await?)?;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(
        mock.state.stats("gpt-mock").requests,
        3,
        "the refused request never reached the upstream"
    );
    let other = client
        .post(&url)
        .bearer_auth(TEST_KEY)
        .body(BODY)
        .send()
        .await?;
    assert_eq!(other.status(), 200);
    Ok(())
}

/// RL-2: beyond server.max_in_flight, requests are shed with 503 and
/// Retry-After before any work (the upstream never sees them); health is
/// never shed.
#[tokio::test]
async fn rl2_load_beyond_max_in_flight_is_shed_and_health_still_answers() -> TestResult {
    let mock = start_mock().await?;
    mock.state.set_faults(
        "gpt-mock",
        Faults {
            first_token_delay_ms: 1500,
            ..Faults::default()
        },
    );
    let yaml = format!(
        "server: {{max_in_flight: 3}}\n{}",
        yaml_with_targets(&[("up", &mock.base_url())])
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let client = reqwest::Client::new();
    let url = gateway.url("/v1/chat/completions");
    let held: Vec<_> = (0..3)
        .map(|_| client.post(&url).bearer_auth(TEST_KEY).body(BODY).send())
        .collect();
    let held = tokio::spawn(join_all(held));
    let deadline = Instant::now() + Duration::from_secs(2);
    while mock.state.stats("gpt-mock").requests < 3 {
        assert!(Instant::now() < deadline, "the held requests never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shed = client
        .post(&url)
        .bearer_auth(TEST_KEY)
        .body(BODY)
        .send()
        .await?;
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert!(
        shed.headers().get("x-should-retry").is_none(),
        "a shed request may be retried after Retry-After"
    );
    let health = client.get(gateway.url("/healthz")).send().await?;
    assert_eq!(health.status(), 200);
    let metrics = client
        .get(gateway.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(metrics.contains("keel_shed_requests_total 1"), "{metrics}");
    for response in held.await? {
        assert_eq!(response?.status(), 200);
    }
    assert_eq!(
        mock.state.stats("gpt-mock").requests,
        3,
        "the shed request never reached the upstream"
    );
    Ok(())
}

/// TO-1: an upstream whose listen queue is full never completes the TCP
/// handshake; the connect clock gives up on it and the next target serves.
#[tokio::test]
async fn to1_the_connect_clock_leaves_an_unreachable_upstream() -> TestResult {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let blackhole = socket.listen(1)?;
    let address = blackhole.local_addr()?;
    // Fill the accept queue: further SYNs are dropped and connects hang.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(address),
        )
        .await
        {
            fillers.push(stream);
        }
    }
    let backup = start_mock().await?;
    let yaml = format!(
        "tenants: [{{name: t, keys: [\"{TEST_KEY}\"]}}]\nproviders:\n  dead: {{kind: openai, base_url: \"http://{address}/v1\", timeouts: {{connect: 300ms}}, retry: {{attempts: 1}}}}\n  backup: {{kind: openai, base_url: \"{}\"}}\nmodels:\n  chat: {{targets: [{{provider: dead, model: gpt-mock}}, {{provider: backup, model: gpt-mock}}]}}\n",
        backup.base_url()
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(TEST_KEY)
        .body(BODY)
        .send()
        .await?;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-keel-provider"], "backup");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1500),
        "failed over after {elapsed:?}"
    );
    let metrics = reqwest::Client::new()
        .get(gateway.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(metrics.contains(r#"keel_upstream_attempts_total{provider="dead",model="gpt-mock",outcome="connect_error"} 1"#), "{metrics}");
    drop(fillers);
    Ok(())
}

/// The metrics the issue names are exported under keel_* names.
#[tokio::test]
async fn metrics_are_exported_in_prometheus_text_format() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml_with_targets(&[("up", &mock.base_url())]), &[]).await?;
    let client = reqwest::Client::new();
    let response = client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(TEST_KEY)
        .body(BODY)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let metrics = client
        .get(gateway.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for name in [
        r#"keel_upstream_attempts_total{provider="up",model="gpt-mock",outcome="ok"} 1"#,
        r#"keel_circuit_state{provider="up",model="gpt-mock"} 0"#,
        "keel_time_to_first_token_seconds_bucket",
        r#"keel_requests_total{route="/v1/chat/completions",status="200"} 1"#,
        "keel_shed_requests_total 0",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    Ok(())
}

/// `server.workers`: connections spread over several single-threaded HTTP
/// workers still share one tenant's rpm exactly, and each worker reaches the
/// upstream through its own pool.
#[tokio::test]
async fn http_workers_share_one_tenant_rpm_exactly() -> TestResult {
    let mock = start_mock().await?;
    let yaml = format!(
        "server: {{workers: 2}}\ntenants:\n  - {{name: small, keys: [sk-small], limits: {{rpm: 10}}}}\nproviders:\n  up: {{kind: openai, base_url: \"{}\"}}\nmodels:\n  chat: {{targets: [{{provider: up, model: gpt-mock}}]}}\n",
        mock.base_url()
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let url = gateway.url("/v1/chat/completions");
    // A client each: 24 connections, which the workers accept between them.
    let answers = join_all((0..24).map(|_| {
        reqwest::Client::new()
            .post(&url)
            .bearer_auth("sk-small")
            .body(BODY)
            .send()
    }))
    .await;
    let mut statuses = Vec::new();
    for answer in answers {
        statuses.push(answer?.status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|&&status| status == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&status| status == 429).count(),
        14,
        "{statuses:?}"
    );
    assert_eq!(mock.state.stats("gpt-mock").requests, 10);
    gateway.shut_down().await?;
    Ok(())
}
