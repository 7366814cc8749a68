//! First-token hedging end to end against `keel mock`: a target that sits
//! on its first token is hedged on the next target after `hedge.after`; the
//! client gets the hedge's stream, marked, and the slow call is closed.

use std::time::{Duration, Instant};

use keel_testkit::{sse_data, start_gateway, start_mock, Faults, TEST_KEY};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[tokio::test]
async fn a_slow_first_token_is_hedged_on_the_next_target() -> TestResult {
    let mock = start_mock().await?;
    mock.state.set_faults(
        "gpt-slow",
        Faults {
            first_token_delay_ms: 5_000,
            ..Faults::default()
        },
    );
    let yaml = format!(
        "tenants:\n  - {{name: t, keys: [\"{TEST_KEY}\"]}}\nproviders:\n  up: {{kind: openai, base_url: \"{}\"}}\nmodels:\n  chat:\n    targets: [{{provider: up, model: gpt-slow}}, {{provider: up, model: gpt-mock}}]\n    hedge: {{after: 200ms, budget: 100%}}\n",
        mock.base_url()
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    for stream in [true, false] {
        let started = Instant::now();
        let response = reqwest::Client::new()
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth(TEST_KEY)
            .body(format!(
                r#"{{"model":"chat","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
            ))
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        let text = response.text().await?;
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "served by the hedge, not the 5 s target: {:?}",
            started.elapsed()
        );
        assert_eq!(headers["x-keel-hedged"], "true");
        assert_eq!(headers["x-keel-model"], "gpt-mock");
        assert_eq!(headers["x-keel-attempts"], "2");
        if stream {
            assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
        } else {
            assert!(text.contains("chat.completion"), "{text}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while mock.state.stats("gpt-slow").cancelled < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        mock.state.stats("gpt-slow").cancelled,
        2,
        "the losing calls were closed"
    );
    let metrics = reqwest::get(gateway.url("/metrics")).await?.text().await?;
    assert!(
        metrics.contains(r#"keel_hedges_total{model="chat"} 2"#)
            && metrics.contains(r#"keel_hedge_wins_total{model="chat"} 2"#),
        "{metrics}"
    );
    Ok(())
}
