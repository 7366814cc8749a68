//! `POST /v1/embeddings` end to end against `keel mock`: the official SDK
//! sees what the upstream sent (floats and base64), failover before the
//! answer is invisible, answers are cached, usage is priced, and a request
//! to a model of the other API is a 400 naming where to send it.

use keel_testkit::{header, start_gateway, start_mock, FailNext, Faults, Gateway, Mock};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KEY: &str = "sk-acme";

fn yaml(mock: &Mock) -> String {
    format!(
        "server: {{admin_key: sk-admin}}\n\
         tenants:\n  - {{name: acme, keys: [\"{KEY}\"]}}\n\
         providers:\n\
         \x20 primary: {{kind: openai, base_url: {base}, retry: {{attempts: 1}}}}\n\
         \x20 secondary: {{kind: openai, base_url: {base}, retry: {{attempts: 1}}}}\n\
         models:\n\
         \x20 embed:\n    endpoint: embeddings\n    targets:\n\
         \x20     - {{provider: primary, model: embed-primary, price: {{input: 0.02, output: 0}}}}\n\
         \x20     - {{provider: secondary, model: embed-secondary}}\n\
         \x20 embed-cached:\n    endpoint: embeddings\n    targets: [{{provider: primary, model: embed-cached}}]\n    cache: {{ttl: 1h}}\n\
         \x20 chat:\n    targets: [{{provider: primary, model: gpt-mock}}]\n",
        base = mock.base_url()
    )
}

async fn post(
    gateway: &Gateway,
    path: &str,
    body: &Value,
) -> Result<reqwest::Response, reqwest::Error> {
    reqwest::Client::new()
        .post(gateway.url(path))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
}

#[tokio::test]
async fn the_official_sdk_gets_the_upstreams_vectors_in_both_encodings() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    let args = vec![
        gateway.url("/v1"),
        KEY.to_owned(),
        mock.base_url(),
        String::from("embed"),
        String::from("embed-primary"),
    ];
    let stdout = keel_testkit::sdk_check("embeddings_check.py", args).await?;
    assert_eq!(
        stdout.trim(),
        "ok 8",
        "the last call asked for 8 dimensions"
    );
    Ok(())
}

#[tokio::test]
async fn a_failing_target_fails_over_and_the_answer_is_priced() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    let body = json!({"model": "embed", "input": "hello"});
    let first = post(&gateway, "/v1/embeddings", &body).await?;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-keel-provider"), "primary");
    let answer: Value = first.json().await?;
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["data"][0]["object"], "embedding");
    assert_eq!(
        answer["data"][0]["embedding"].as_array().map(Vec::len),
        Some(1536)
    );
    let tokens = answer["usage"]["prompt_tokens"].as_f64().ok_or("usage")?;

    mock.state.set_faults(
        "embed-primary",
        Faults {
            fail: Some(FailNext {
                status: 503,
                count: 1,
                retry_after: None,
                body: None,
            }),
            ..Faults::default()
        },
    );
    let failed_over = post(&gateway, "/v1/embeddings", &body).await?;
    assert_eq!(failed_over.status(), 200);
    assert_eq!(header(&failed_over, "x-keel-provider"), "secondary");
    assert_eq!(header(&failed_over, "x-keel-attempts"), "2");

    let metrics = reqwest::Client::new()
        .get(gateway.url("/metrics"))
        .bearer_auth("sk-admin")
        .send()
        .await?
        .text()
        .await?;
    let priced = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                r#"keel_cost_usd_total{tenant="acme",model="embed-primary",provider="primary"} "#,
            )
        })
        .and_then(|value| value.parse::<f64>().ok())
        .ok_or("keel_cost_usd_total")?;
    assert!((priced - tokens * 0.02 / 1e6).abs() < 1e-15, "{priced}");
    assert!(metrics.contains(
        r#"keel_unpriced_requests_total{provider="secondary",model="embed-secondary"} 1"#
    ));
    Ok(())
}

#[tokio::test]
async fn a_cached_embeddings_model_answers_the_same_input_from_the_cache() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    let body = json!({"model": "embed-cached", "input": ["a", "b"], "encoding_format": "base64"});
    let miss = post(&gateway, "/v1/embeddings", &body).await?;
    assert_eq!(header(&miss, "x-keel-cache"), "miss");
    let missed = miss.bytes().await?;
    let hit = post(&gateway, "/v1/embeddings", &body).await?;
    assert_eq!(header(&hit, "x-keel-cache"), "hit");
    assert_eq!(header(&hit, "x-keel-attempts"), "0");
    assert_eq!(
        hit.bytes().await?,
        missed,
        "a hit replays the answer byte for byte"
    );
    assert_eq!(mock.state.stats("embed-cached").requests, 1);
    let other = post(
        &gateway,
        "/v1/embeddings",
        &json!({"model": "embed-cached", "input": ["a", "c"]}),
    )
    .await?;
    assert_eq!(header(&other, "x-keel-cache"), "miss");
    Ok(())
}

#[tokio::test]
async fn a_request_to_the_other_api_is_a_400_naming_where_to_send_it() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    let chat_to_embed = post(
        &gateway,
        "/v1/chat/completions",
        &json!({"model": "embed", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await?;
    assert_eq!(chat_to_embed.status(), 400);
    let error: Value = chat_to_embed.json().await?;
    assert_eq!(
        error["error"]["message"],
        "the model 'embed' serves embeddings; send it to /v1/embeddings"
    );
    assert_eq!(error["error"]["param"], "model");

    let embed_to_chat = post(
        &gateway,
        "/v1/embeddings",
        &json!({"model": "chat", "input": "hi"}),
    )
    .await?;
    assert_eq!(embed_to_chat.status(), 400);
    let error: Value = embed_to_chat.json().await?;
    assert_eq!(
        error["error"]["message"],
        "the model 'chat' serves chat; send it to /v1/chat/completions"
    );

    let job = post(
        &gateway,
        "/v1/jobs",
        &json!({"request": {"model": "embed", "messages": [{"role": "user", "content": "hi"}]}}),
    )
    .await?;
    assert_eq!(
        job.status(),
        400,
        "a job for an embeddings model is refused at submit"
    );

    let no_input = post(&gateway, "/v1/embeddings", &json!({"model": "embed"})).await?;
    assert_eq!(no_input.status(), 400);
    let error: Value = no_input.json().await?;
    assert_eq!(error["error"]["param"], "input");
    assert_eq!(
        mock.state.stats("embed-primary").requests,
        0,
        "nothing reached the upstream"
    );
    Ok(())
}
