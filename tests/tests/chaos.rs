//! The chaos suite: faults injected through `keel mock`'s fault API against a
//! real gateway on 127.0.0.1, each scenario bounded in time and count, each
//! asserting outcomes. Every scenario prints one row of the results table
//! (scenario, client errors, upstream requests, p99) to stderr.

use std::time::Duration;

use futures_util::future::join_all;
use keel_testkit::{
    sse_data, start_gateway, start_mock, FailNext, Faults, Gateway, Mock, TEST_KEY,
};
use tokio::time::Instant;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Two providers on two mocks, short clocks, a small breaker: `chat` tries
/// `primary` then `backup`; `other` is an unrelated model on `backup` only.
fn yaml(primary: &Mock, backup: &Mock, primary_extra: &str) -> String {
    format!(
        r#"tenants: [{{name: t, keys: ["{TEST_KEY}"]}}]
providers:
  primary:
    kind: openai
    base_url: "{}"
    timeouts: {{connect: 500ms, headers: 300ms, first_token: 400ms, inactivity: 300ms, total: 10s}}
    retry: {{attempts: 1}}
    breaker: {{failure_rate: 0.5, window: 2s, min_requests: 5, cooldown: 1s, half_open_trials: 2}}
{primary_extra}
  backup:
    kind: openai
    base_url: "{}"
    retry: {{attempts: 1}}
models:
  chat:
    targets: [{{provider: primary, model: gpt-mock}}, {{provider: backup, model: gpt-mock}}]
    timeout: 5s
  other:
    targets: [{{provider: backup, model: other-mock}}]
"#,
        primary.base_url(),
        backup.base_url()
    )
}

/// What a batch of requests saw.
struct Run {
    errors: usize,
    latencies: Vec<Duration>,
}

impl Run {
    fn p99(&self) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted
            .get((sorted.len() * 99).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    }
}

/// `count` requests, `concurrency` at a time; an error is a non-200 or a
/// stream that carries an error event.
async fn drive(
    gateway: &Gateway,
    model: &str,
    stream: bool,
    count: usize,
    concurrency: usize,
) -> Run {
    let client = reqwest::Client::new();
    let body = format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
    );
    let mut run = Run {
        errors: 0,
        latencies: Vec::new(),
    };
    for batch in (0..count).collect::<Vec<_>>().chunks(concurrency) {
        let calls = batch.iter().map(|_| {
            let (client, body, url) = (
                client.clone(),
                body.clone(),
                gateway.url("/v1/chat/completions"),
            );
            async move {
                let started = Instant::now();
                let response = client
                    .post(url)
                    .bearer_auth(TEST_KEY)
                    .body(body)
                    .send()
                    .await
                    .ok()?;
                let ok = response.status() == 200;
                let text = response.text().await.ok()?;
                let clean = ok
                    && !(stream
                        && (text.contains(r#""error""#)
                            || sse_data(&text).last().map(String::as_str) != Some("[DONE]")));
                clean.then(|| started.elapsed())
            }
        });
        for outcome in join_all(calls).await {
            match outcome {
                Some(latency) => run.latencies.push(latency),
                None => run.errors += 1,
            }
        }
    }
    run
}

fn report(scenario: &str, run: &Run, upstream_requests: u64) {
    eprintln!(
        "| {scenario} | {} | {upstream_requests} | {:.0} ms |",
        run.errors,
        run.p99().as_secs_f64() * 1000.0
    );
}

fn fail(status: u16, count: u32, retry_after: Option<&str>) -> Faults {
    Faults {
        fail: Some(FailNext {
            status,
            count,
            retry_after: retry_after.map(str::to_owned),
            body: None,
        }),
        ..Faults::default()
    }
}

#[tokio::test]
async fn latency_injection_is_hidden_by_the_first_token_clock() -> TestResult {
    let (primary, backup) = (start_mock().await?, start_mock().await?);
    primary.state.set_faults(
        "gpt-mock",
        Faults {
            first_token_delay_ms: 500,
            ..Faults::default()
        },
    );
    let gateway = start_gateway(&yaml(&primary, &backup, ""), &[]).await?;
    let run = drive(&gateway, "chat", true, 20, 5).await;
    report(
        "latency +500 ms on primary (stream)",
        &run,
        primary.state.stats("gpt-mock").requests + backup.state.stats("gpt-mock").requests,
    );
    assert_eq!(run.errors, 0);
    assert!(
        run.p99() < Duration::from_millis(1500),
        "p99 {:?}",
        run.p99()
    );
    Ok(())
}

#[tokio::test]
async fn a_503_storm_opens_the_breaker_and_the_backup_serves_everyone() -> TestResult {
    let (primary, backup) = (start_mock().await?, start_mock().await?);
    primary
        .state
        .set_faults("gpt-mock", fail(503, 10_000, None));
    let gateway = start_gateway(&yaml(&primary, &backup, ""), &[]).await?;
    let run = drive(&gateway, "chat", false, 60, 6).await;
    let primary_calls = primary.state.stats("gpt-mock").requests;
    report(
        "503 storm on primary",
        &run,
        primary_calls + backup.state.stats("gpt-mock").requests,
    );
    assert_eq!(run.errors, 0);
    assert!(
        primary_calls <= 5 + 6,
        "the breaker let {primary_calls} calls through (min_requests 5 + one batch in flight)"
    );
    Ok(())
}

#[tokio::test]
async fn a_429_with_retry_after_pauses_the_provider() -> TestResult {
    let (primary, backup) = (start_mock().await?, start_mock().await?);
    primary
        .state
        .set_faults("gpt-mock", fail(429, 10_000, Some("30")));
    let gateway = start_gateway(&yaml(&primary, &backup, "    rpm: 6000"), &[]).await?;
    let run = drive(&gateway, "chat", false, 30, 1).await;
    let primary_calls = primary.state.stats("gpt-mock").requests;
    report(
        "429 + Retry-After: 30 on primary",
        &run,
        primary_calls + backup.state.stats("gpt-mock").requests,
    );
    assert_eq!(run.errors, 0);
    assert_eq!(
        primary_calls, 1,
        "the drained bucket kept the primary paused for Retry-After"
    );
    Ok(())
}

#[tokio::test]
async fn a_stream_stalled_before_its_first_token_fails_over_and_one_stalled_after_it_ends_with_an_error(
) -> TestResult {
    let (primary, backup) = (start_mock().await?, start_mock().await?);
    primary.state.set_faults(
        "gpt-mock",
        Faults {
            stall_after_chunk: Some(0),
            ..Faults::default()
        },
    );
    let gateway = start_gateway(&yaml(&primary, &backup, ""), &[]).await?;
    let run = drive(&gateway, "chat", true, 10, 5).await;
    report(
        "stream stalls before first token",
        &run,
        primary.state.stats("gpt-mock").requests + backup.state.stats("gpt-mock").requests,
    );
    assert_eq!(run.errors, 0);

    // A fresh gateway: the first half opened the primary's breaker.
    let (primary, backup) = (start_mock().await?, start_mock().await?);
    primary.state.set_faults(
        "gpt-mock",
        Faults {
            stall_after_chunk: Some(3),
            ..Faults::default()
        },
    );
    let gateway = start_gateway(&yaml(&primary, &backup, ""), &[]).await?;
    let started = Instant::now();
    let run = drive(&gateway, "chat", true, 5, 5).await;
    report(
        "stream stalls after 3 chunks (committed)",
        &run,
        primary.state.stats("gpt-mock").requests,
    );
    assert_eq!(
        run.errors, 5,
        "a committed stall must reach the client as an error, never a silent hang"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the inactivity clock (300 ms) ended them"
    );
    Ok(())
}

#[tokio::test]
async fn connection_resets_mid_stream_are_reported_not_truncated() -> TestResult {
    let (primary, backup) = (start_mock().await?, start_mock().await?);
    primary.state.set_faults(
        "gpt-mock",
        Faults {
            drop_after_chunk: Some(3),
            ..Faults::default()
        },
    );
    let gateway = start_gateway(&yaml(&primary, &backup, ""), &[]).await?;
    let run = drive(&gateway, "chat", true, 20, 5).await;
    let primary_calls = primary.state.stats("gpt-mock").requests;
    report(
        "connection reset after 3 chunks",
        &run,
        primary_calls + backup.state.stats("gpt-mock").requests,
    );
    assert_eq!(
        run.errors as u64, primary_calls,
        "every stream cut after its commit point ends with an error event"
    );
    assert_eq!(
        primary_calls, 5,
        "cut streams count as failures: the breaker opened after 5 and the backup served the rest"
    );
    Ok(())
}

#[tokio::test]
async fn a_provider_that_hangs_before_headers_is_left_after_the_headers_clock() -> TestResult {
    let (primary, backup) = (start_mock().await?, start_mock().await?);
    primary.state.set_faults(
        "gpt-mock",
        Faults {
            headers_delay_ms: 60_000,
            ..Faults::default()
        },
    );
    let gateway = start_gateway(&yaml(&primary, &backup, ""), &[]).await?;
    let run = drive(&gateway, "chat", true, 10, 5).await;
    report(
        "primary hangs before headers",
        &run,
        primary.state.stats("gpt-mock").requests + backup.state.stats("gpt-mock").requests,
    );
    assert_eq!(run.errors, 0);
    assert!(
        run.p99() < Duration::from_millis(1000),
        "p99 {:?}",
        run.p99()
    );
    Ok(())
}

/// The outage story, compressed: the primary fails for 3 s then recovers.
/// No client sees an error; the primary stops getting traffic within the
/// breaker window; after recovery it gets half-open trials, then traffic.
#[tokio::test]
async fn a_compressed_outage_is_invisible_and_recovery_is_gradual() -> TestResult {
    let (primary, backup) = (start_mock().await?, start_mock().await?);
    let gateway = start_gateway(&yaml(&primary, &backup, ""), &[]).await?;
    primary
        .state
        .set_faults("gpt-mock", fail(503, 100_000, None));
    let outage = drive(&gateway, "chat", false, 150, 5).await;
    let during = primary.state.stats("gpt-mock").requests;
    primary.state.set_faults("gpt-mock", Faults::default());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let recovery = drive(&gateway, "chat", false, 40, 1).await;
    let after = primary.state.stats("gpt-mock").requests;
    report(
        "outage: primary 503 for 150 requests",
        &outage,
        during + backup.state.stats("gpt-mock").requests,
    );
    report("outage: recovery", &recovery, after - during);
    assert_eq!(outage.errors + recovery.errors, 0);
    assert!(
        during <= 5 + 5 + 3 * 2,
        "the primary got {during} calls during the outage"
    );
    assert!(
        after - during >= 2,
        "half-open trials reached the recovered primary"
    );
    Ok(())
}

/// A saturated provider does not hold up an unrelated model on another
/// provider: every request of it is answered while the primary's slots are
/// held, and the saturated model's excess is refused at once instead of
/// queueing (the p99s of both runs are reported, not asserted).
#[tokio::test]
async fn an_unrelated_model_keeps_its_latency_while_one_provider_is_saturated() -> TestResult {
    let (primary, unrelated) = (start_mock().await?, start_mock().await?);
    let yaml = format!(
        "tenants: [{{name: t, keys: [\"{TEST_KEY}\"]}}]\nproviders:\n  primary: {{kind: openai, base_url: \"{}\", max_concurrent: 4}}\n  unrelated: {{kind: openai, base_url: \"{}\"}}\nmodels:\n  chat: {{targets: [{{provider: primary, model: gpt-mock}}]}}\n  other: {{targets: [{{provider: unrelated, model: other-mock}}]}}\n",
        primary.base_url(),
        unrelated.base_url()
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let baseline = drive(&gateway, "other", false, 200, 4).await;
    primary.state.set_faults(
        "gpt-mock",
        Faults {
            first_token_delay_ms: 3000,
            ..Faults::default()
        },
    );
    let saturating = tokio::spawn({
        let url = gateway.url("");
        async move {
            let client = reqwest::Client::new();
            let body = r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#;
            let calls = (0..40).map(|_| {
                client
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(TEST_KEY)
                    .body(body)
                    .send()
            });
            join_all(calls)
                .await
                .into_iter()
                .map(|response| response.map(|r| r.status().as_u16()).unwrap_or(0))
                .collect::<Vec<_>>()
        }
    });
    // Measure while the primary's four slots are held by stalled calls.
    let deadline = Instant::now() + Duration::from_secs(2);
    while primary.state.stats("gpt-mock").requests < 4 {
        assert!(
            Instant::now() < deadline,
            "the saturating calls never reached the primary"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let loaded = drive(&gateway, "other", false, 200, 4).await;
    let statuses = saturating.await?;
    report("unrelated model, no fault", &baseline, 200);
    report("unrelated model, primary saturated", &loaded, 200);
    assert_eq!(loaded.errors, 0);
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        4,
        "the bulkhead admitted its 4"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 503).count(),
        36,
        "and refused the rest at once"
    );
    // Its latency under the fault is reported above, not asserted: timing
    // on a shared 2-core machine belongs to the benchmarks.
    assert_eq!(baseline.errors, 0);
    Ok(())
}
