//! What an operator sees, end to end against `keel mock`: the admin routes
//! and their auth, a failing provider in `/admin/providers`, exact SLO
//! figures in `/admin/slo` and `/metrics`, the cost of answers and jobs,
//! and the dashboard page.

use std::time::Duration;

use futures_util::StreamExt as _;
use keel_testkit::{start_gateway, start_mock, FailNext, Faults, Gateway, Mock};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TENANT: &str = "sk-acme";
const ADMIN: &str = "sk-admin";

/// `chat`: a priced primary with a breaker that opens after four calls at
/// half failures, and an unpriced secondary; `solo`: one priced target;
/// SLOs on both.
fn yaml(mock: &Mock, admin: bool) -> String {
    let server = if admin {
        format!("server: {{admin_key: {ADMIN}}}\n")
    } else {
        String::new()
    };
    format!(
        "{server}\
         tenants:\n  - {{name: acme, keys: [\"{TENANT}\"]}}\n\
         providers:\n\
         \x20 primary:\n    kind: openai\n    base_url: {base}\n    retry: {{attempts: 1}}\n\
         \x20   breaker: {{failure_rate: 0.5, window: 60s, min_requests: 4, cooldown: 10m, half_open_trials: 1}}\n\
         \x20 secondary: {{kind: openai, base_url: {base}, retry: {{attempts: 1}}}}\n\
         models:\n\
         \x20 chat:\n    targets:\n\
         \x20     - {{provider: primary, model: gpt-primary, price: {{input: 2.5, output: 10, cached_input: 1.25}}}}\n\
         \x20     - {{provider: secondary, model: gpt-secondary}}\n\
         \x20 solo:\n    targets: [{{provider: primary, model: gpt-solo, price: {{input: 1, output: 2}}}}]\n\
         slos:\n\
         \x20 - {{name: solo-availability, model: solo, sli: availability, target: 99%, window: 1d}}\n\
         \x20 - {{name: solo-ttft, model: solo, sli: first_token_under, threshold: 30s, target: 99%, window: 1d}}\n\
         \x20 - {{name: chat-availability, model: chat, sli: availability, target: 99.9%, window: 30d}}\n",
        base = mock.base_url()
    )
}

struct Setup {
    mock: Mock,
    gateway: Gateway,
    http: reqwest::Client,
}

impl Setup {
    async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let mock = start_mock().await?;
        let gateway = start_gateway(&yaml(&mock, true), &[]).await?;
        Ok(Self {
            mock,
            gateway,
            http: reqwest::Client::new(),
        })
    }

    async fn chat(&self, body: &Value) -> Result<(u16, String), reqwest::Error> {
        let response = self
            .http
            .post(self.gateway.url("/v1/chat/completions"))
            .bearer_auth(TENANT)
            .json(body)
            .send()
            .await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    async fn admin(&self, path: &str) -> Result<Value, Box<dyn std::error::Error>> {
        let response = self
            .http
            .get(self.gateway.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await?;
        assert_eq!(response.status(), 200, "{path}");
        Ok(response.json().await?)
    }

    async fn metrics(&self) -> Result<String, reqwest::Error> {
        self.http
            .get(self.gateway.url("/metrics"))
            .bearer_auth(ADMIN)
            .send()
            .await?
            .text()
            .await
    }

    fn fail(&self, model: &str, status: u16, count: u32) {
        self.mock.state.set_faults(
            model,
            Faults {
                fail: Some(FailNext {
                    status,
                    count,
                    retry_after: None,
                    body: None,
                }),
                ..Faults::default()
            },
        );
    }
}

fn ask(model: &str, prompt: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": prompt}]})
}

/// The value of one sample line of the metrics text.
fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0)
}

/// The cost of a completion's usage at `price` (input, output) per million.
fn cost_of(completion: &Value, input: f64, output: f64) -> f64 {
    let usage = &completion["usage"];
    let prompt = usage["prompt_tokens"].as_f64().unwrap_or(f64::NAN);
    let completion_tokens = usage["completion_tokens"].as_f64().unwrap_or(f64::NAN);
    (prompt * input + completion_tokens * output) / 1e6
}

#[tokio::test]
async fn admin_routes_need_the_admin_key_and_are_off_without_one() -> TestResult {
    let setup = Setup::start().await?;
    for path in ["/admin/providers", "/admin/slo"] {
        for (what, key) in [
            ("no key", None),
            ("a tenant key", Some(TENANT)),
            ("a wrong key", Some("sk-admin-wrong")),
        ] {
            let mut request = setup.http.get(setup.gateway.url(path));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await?;
            assert_eq!(response.status(), 401, "{path} with {what}");
            let body: Value = response.json().await?;
            assert!(body["error"]["message"].is_string(), "{body}");
        }
        let listed = setup.admin(path).await?;
        assert_eq!(listed["object"], "list", "{path}");
    }

    let mock = start_mock().await?;
    let open = start_gateway(&yaml(&mock, false), &[]).await?;
    for path in ["/admin/providers", "/admin/slo"] {
        let response = setup
            .http
            .get(open.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await?;
        assert_eq!(
            response.status(),
            404,
            "no admin key configured: {path} is off"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_dashboard_is_one_self_contained_page() -> TestResult {
    let setup = Setup::start().await?;
    let response = setup
        .http
        .get(setup.gateway.url("/dashboard"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let header = |name: &str| keel_testkit::header(&response, name);
    assert!(header("content-type").starts_with("text/html"));
    let policy = header("content-security-policy");
    assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"));
    let page = response.text().await?;
    assert!(page.contains(r#"id="admin-key""#), "it asks for the key");
    assert!(page.contains("admin/providers") && page.contains("admin/slo"));
    for external in [
        "<script src",
        "@import",
        "url(",
        "src=\"http",
        "href=\"http",
        "//",
    ] {
        let found = page.match_indices(external).count();
        // `//` may only start comments in the inline script.
        let allowed = if external == "//" {
            page.matches("// ").count()
        } else {
            0
        };
        assert!(found <= allowed, "the page loads nothing else: {external}");
    }
    Ok(())
}

#[tokio::test]
async fn a_failing_provider_shows_in_admin_providers() -> TestResult {
    let setup = Setup::start().await?;
    for prompt in ["one", "two"] {
        assert_eq!(setup.chat(&ask("chat", prompt)).await?.0, 200);
    }
    setup.fail("gpt-primary", 500, 100);
    for prompt in ["three", "four", "five", "six"] {
        let (status, _) = setup.chat(&ask("chat", prompt)).await?;
        assert_eq!(status, 200, "the secondary answers");
    }
    let listed = setup.admin("/admin/providers").await?;
    let providers = listed["data"].as_array().ok_or("data")?;
    let names: Vec<&str> = providers
        .iter()
        .filter_map(|provider| provider["provider"].as_str())
        .collect();
    assert_eq!(names, ["primary", "secondary"]);
    let primary = &providers[0];
    assert_eq!(primary["kind"], "openai");
    assert_eq!(primary["in_flight"], 0);
    assert_eq!(primary["max_concurrent"], Value::Null);
    let targets = primary["targets"].as_array().ok_or("targets")?;
    let failing = targets
        .iter()
        .find(|target| target["model"] == "gpt-primary")
        .ok_or("gpt-primary")?;
    assert_eq!(failing["public_models"], json!(["chat"]));
    assert_eq!(failing["breaker"]["state"], "open", "{failing}");
    assert!(failing["breaker"]["since"]
        .as_str()
        .is_some_and(|since| since.ends_with('Z')));
    // Two successes, then failures until the breaker opened (at 2 of 4).
    assert_eq!(
        (failing["requests"].as_u64(), failing["errors"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(failing["error_rate"], 0.5);
    assert_eq!(failing["last_error"]["kind"], "server_error");
    let message = failing["last_error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("primary") && message.contains("500"),
        "{message}"
    );
    assert!(failing["first_token_ms"]["p50"].is_number(), "{failing}");
    assert!(failing["latency_ewma_ms"].is_number(), "{failing}");
    assert_eq!(failing["in_flight"], 0, "no call is open");
    assert_eq!(failing["health"]["state"], "not_configured");
    let solo = targets
        .iter()
        .find(|target| target["model"] == "gpt-solo")
        .ok_or("gpt-solo")?;
    assert_eq!(solo["breaker"]["state"], "closed");
    assert_eq!(solo["requests"], 0);
    assert_eq!(solo["error_rate"], Value::Null);
    assert_eq!(solo["latency_ewma_ms"], Value::Null, "never measured");

    let secondary = &providers[1]["targets"][0];
    assert_eq!(secondary["model"], "gpt-secondary");
    assert_eq!(
        (secondary["requests"].as_u64(), secondary["errors"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(secondary["last_error"], Value::Null);
    for percentile in ["p50", "p95", "p99"] {
        assert!(
            secondary["first_token_ms"][percentile].is_number(),
            "{secondary}"
        );
    }
    let metrics = setup.metrics().await?;
    assert_eq!(
        metric(
            &metrics,
            r#"keel_circuit_transitions_total{provider="primary",model="gpt-primary"}"#
        ),
        Some(1.0),
        "the transition counter is a counter"
    );
    Ok(())
}

#[tokio::test]
async fn slo_figures_are_exact_in_admin_slo_and_metrics() -> TestResult {
    let setup = Setup::start().await?;
    for index in 0..8 {
        assert_eq!(setup.chat(&ask("solo", &format!("q{index}"))).await?.0, 200);
    }
    setup.fail("gpt-solo", 500, 2);
    for index in 0..2 {
        assert_eq!(setup.chat(&ask("solo", &format!("f{index}"))).await?.0, 502);
    }
    let slo = setup.admin("/admin/slo").await?;
    assert!(slo["since"]
        .as_str()
        .is_some_and(|since| since.ends_with('Z')));
    let data = slo["data"].as_array().ok_or("data")?;
    let by_name = |name: &str| data.iter().find(|slo| slo["name"] == name).cloned();
    let availability = by_name("solo-availability").ok_or("solo-availability")?;
    assert_eq!(availability["sli"], "availability");
    assert_eq!(availability["window_seconds"], 86_400);
    assert_eq!(
        availability["events"],
        json!({"total": 10, "good": 8, "bad": 2})
    );
    assert!(close(availability["sli_value"].as_f64().ok_or("sli")?, 0.8));
    let budget = &availability["error_budget"];
    let allowed = (1.0 - 0.99) * 10.0;
    assert!(close(budget["total"].as_f64().ok_or("total")?, allowed));
    assert!(close(budget["spent"].as_f64().ok_or("spent")?, 2.0));
    assert!(close(budget["left"].as_f64().ok_or("left")?, allowed - 2.0));
    let burn = 0.2 / (1.0 - 0.99);
    for window in ["5m", "30m", "1h", "6h"] {
        let rate = availability["burn_rates"][window].as_f64().ok_or(window)?;
        assert!(close(rate, burn), "{window}: {rate}");
    }
    assert_eq!(availability["alerts"]["page"]["firing"], true);
    assert_eq!(
        availability["alerts"]["page"]["windows"],
        json!(["1h", "5m"])
    );
    assert_eq!(availability["alerts"]["ticket"]["firing"], true);

    let latency = by_name("solo-ttft").ok_or("solo-ttft")?;
    assert_eq!(latency["threshold_ms"], 30_000);
    assert_eq!(latency["events"], json!({"total": 10, "good": 8, "bad": 2}));
    let untouched = by_name("chat-availability").ok_or("chat-availability")?;
    assert_eq!(untouched["events"]["total"], 0);
    assert_eq!(untouched["sli_value"], Value::Null);
    assert_eq!(untouched["alerts"]["page"]["firing"], false);

    let metrics = setup.metrics().await?;
    let labels = r#"slo="solo-availability",model="solo""#;
    for (line, value) in [
        (
            format!("keel_slo_events_total{{{labels},result=\"good\"}}"),
            8.0,
        ),
        (
            format!("keel_slo_events_total{{{labels},result=\"bad\"}}"),
            2.0,
        ),
        (
            format!("keel_slo_alert_firing{{{labels},alert=\"page\"}}"),
            1.0,
        ),
        (format!("keel_slo_objective{{{labels}}}"), 0.99),
    ] {
        let found = metric(&metrics, &line).ok_or_else(|| format!("{line} in\n{metrics}"))?;
        assert!(close(found, value), "{line} = {found}");
    }
    let exported = metric(
        &metrics,
        &format!("keel_slo_burn_rate{{{labels},window=\"1h\"}}"),
    );
    assert!(exported.is_some_and(|rate| close(rate, burn)));
    Ok(())
}

#[tokio::test]
async fn answers_and_jobs_are_priced_from_their_usage() -> TestResult {
    let setup = Setup::start().await?;
    let (status, body) = setup.chat(&ask("solo", "price me")).await?;
    assert_eq!(status, 200);
    let completion: Value = serde_json::from_str(&body)?;
    let one = cost_of(&completion, 1.0, 2.0);
    assert!(one > 0.0, "{completion}");

    // The same prompt streamed, without asking for usage: Keel asks the
    // upstream for it anyway and prices the stream when it ends.
    let mut stream = ask("solo", "price me");
    stream["stream"] = json!(true);
    let response = setup
        .http
        .post(setup.gateway.url("/v1/chat/completions"))
        .bearer_auth(TENANT)
        .json(&stream)
        .send()
        .await?;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        chunk?;
    }
    drop(body);

    // An answer from the unpriced secondary is counted, not priced as $0.
    setup.fail("gpt-primary", 500, 1);
    assert_eq!(setup.chat(&ask("chat", "unpriced")).await?.0, 200);

    let submitted: Value = setup
        .http
        .post(setup.gateway.url("/v1/jobs"))
        .bearer_auth(TENANT)
        .json(&json!({"request": ask("solo", "a job to price")}))
        .send()
        .await?
        .json()
        .await?;
    let id = submitted["id"].as_str().ok_or("job id")?;
    let job = wait_for_job(&setup, id).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    let job_cost = cost_of(&job["result"], 1.0, 2.0);
    assert!(
        job["cost_usd"]
            .as_f64()
            .is_some_and(|cost| close(cost, job_cost)),
        "cost_usd {} != {job_cost}",
        job["cost_usd"]
    );

    let metrics = setup.metrics().await?;
    let spent = metric(
        &metrics,
        r#"keel_cost_usd_total{tenant="acme",model="gpt-solo",provider="primary"}"#,
    )
    .ok_or("keel_cost_usd_total")?;
    assert!(
        close(spent, 2.0 * one + job_cost),
        "{spent} != 2 × {one} + {job_cost}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"keel_unpriced_requests_total{provider="secondary",model="gpt-secondary"}"#
        ),
        Some(1.0)
    );
    Ok(())
}

async fn wait_for_job(setup: &Setup, id: &str) -> Result<Value, Box<dyn std::error::Error>> {
    for _ in 0..200 {
        let job: Value = setup
            .http
            .get(setup.gateway.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(TENANT)
            .send()
            .await?
            .json()
            .await?;
        if matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("job {id} did not finish").into())
}
