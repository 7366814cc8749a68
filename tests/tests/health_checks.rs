//! Active health checks end to end against `keel mock`: with its models
//! list failing, the probes of an idle provider open its breaker before
//! any user request and `/admin/providers` shows it unhealthy; once the
//! list answers again, probes close the breaker after its cooldown and the
//! provider shows healthy.

use std::time::Duration;

use keel_testkit::{start_gateway, start_mock, FailNext, Faults, Gateway, Mock};
use serde_json::{json, Value};
use tokio::time::Instant;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TENANT: &str = "sk-acme";
const ADMIN: &str = "sk-admin";

/// How long a state may take to show: a few probe intervals.
const PATIENCE: Duration = Duration::from_secs(15);

/// One provider probed every second, whose breaker opens after two
/// failures and closes after one trial once its 2 s cooldown is over.
fn yaml(mock: &Mock) -> String {
    format!(
        "server: {{admin_key: {ADMIN}}}\n\
         tenants:\n  - {{name: acme, keys: [\"{TENANT}\"]}}\n\
         providers:\n\
         \x20 up:\n    kind: openai\n    base_url: {base}\n    retry: {{attempts: 1}}\n\
         \x20   health_check: {{interval: 1s}}\n\
         \x20   breaker: {{failure_rate: 0.5, window: 60s, min_requests: 2, cooldown: 2s, half_open_trials: 1}}\n\
         models:\n\
         \x20 chat: {{targets: [{{provider: up, model: gpt-up}}]}}\n",
        base = mock.base_url()
    )
}

/// The `up/gpt-up` target of `/admin/providers`.
async fn target(
    http: &reqwest::Client,
    gateway: &Gateway,
) -> Result<Value, Box<dyn std::error::Error>> {
    let listed: Value = http
        .get(gateway.url("/admin/providers"))
        .bearer_auth(ADMIN)
        .send()
        .await?
        .json()
        .await?;
    Ok(listed["data"][0]["targets"][0].clone())
}

/// Polls the target until `done` holds, for at most [`PATIENCE`].
async fn until(
    http: &reqwest::Client,
    gateway: &Gateway,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let target = target(http, gateway).await?;
        if done(&target) {
            return Ok(target);
        }
        if Instant::now() >= deadline {
            return Err(format!("{what} never came: {target}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of one sample line of the metrics text.
fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[tokio::test]
async fn probes_open_the_breaker_of_a_down_provider_and_close_it_when_it_recovers() -> TestResult {
    let mock = start_mock().await?;
    let down = Faults {
        fail: Some(FailNext {
            status: 503,
            count: u32::MAX,
            retry_after: None,
            body: None,
        }),
        ..Faults::default()
    };
    mock.state.set_faults(keel_testkit::MODELS_LIST, down);
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    let http = reqwest::Client::new();

    let open = until(&http, &gateway, "an open breaker", |target| {
        target["breaker"]["state"] == "open"
    })
    .await?;
    assert_eq!(open["health"]["state"], "unhealthy", "{open}");
    let error = open["health"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("503"), "{open}");
    assert!(
        open["health"]["checked_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z')),
        "{open}"
    );
    assert_eq!(open["requests"], 0, "no user request was made");
    assert_eq!(mock.state.stats("gpt-up").requests, 0);

    // The first user after the outage is refused at once; the upstream
    // never sees the request.
    let response = http
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(TENANT)
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?;
    assert_eq!(response.status(), 503);
    assert_eq!(mock.state.stats("gpt-up").requests, 0);

    mock.state.remove_faults(keel_testkit::MODELS_LIST);
    let closed = until(&http, &gateway, "a closed breaker", |target| {
        target["breaker"]["state"] == "closed"
    })
    .await?;
    assert_eq!(closed["health"]["state"], "healthy", "{closed}");
    assert_eq!(closed["health"].get("error"), None, "{closed}");
    assert_eq!(mock.state.stats("gpt-up").requests, 0, "probes closed it");

    let metrics = http
        .get(gateway.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await?
        .text()
        .await?;
    let count = |outcome: &str| {
        metric(
            &metrics,
            &format!(r#"keel_health_checks_total{{provider="up",outcome="{outcome}"}}"#),
        )
    };
    assert!(
        count("unhealthy").is_some_and(|count| count >= 2.0),
        "{metrics}"
    );
    assert!(
        count("healthy").is_some_and(|count| count >= 1.0),
        "{metrics}"
    );
    Ok(())
}
