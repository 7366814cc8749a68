//! Every client mistake gets an OpenAI-shaped error with an honest status
//! that names the problem.

use keel_testkit::{start_gateway, start_mock, yaml_with_targets, FailNext, Faults, TEST_KEY};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const GOOD: &str = r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#;

async fn error_of(response: reqwest::Response) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&response.bytes().await?)?;
    for field in ["message", "type", "param", "code"] {
        assert!(
            body["error"].get(field).is_some(),
            "error body lacks {field}: {body}"
        );
    }
    Ok((status, body["error"].clone()))
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_problem_named() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml_with_targets(&[("first", &mock.base_url())]), &[]).await?;
    let client = reqwest::Client::new();
    let url = gateway.url("/v1/chat/completions");
    let cases: &[(Option<&str>, String, u16, &str)] = &[
        (None, GOOD.to_owned(), 401, "invalid or missing API key"),
        (
            Some("sk-wrong"),
            GOOD.to_owned(),
            401,
            "invalid or missing API key",
        ),
        (
            Some(TEST_KEY),
            String::from("{\"model\":"),
            400,
            "not valid JSON",
        ),
        (
            Some(TEST_KEY),
            String::from(r#"{"messages":[{"role":"user","content":"hi"}]}"#),
            400,
            "you must provide a model parameter",
        ),
        (
            Some(TEST_KEY),
            GOOD.replace("chat", "gpt-nope"),
            400,
            "the model 'gpt-nope' does not exist",
        ),
        (
            Some(TEST_KEY),
            format!(
                r#"{{"model":"chat","messages":[{{"role":"user","content":"{}"}}]}}"#,
                "x".repeat(9 << 20)
            ),
            413,
            "larger than the limit",
        ),
    ];
    for (key, body, status, message) in cases {
        let mut builder = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(key) = key {
            builder = builder.bearer_auth(key);
        }
        let (got_status, error) = error_of(builder.send().await?).await?;
        assert_eq!(got_status, *status, "{error}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|text| text.contains(message)),
            "expected '{message}' in {error}"
        );
    }
    assert_eq!(
        mock.state.stats("gpt-mock").requests,
        0,
        "no bad request reaches the upstream"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_paths_and_methods_get_404_and_405() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml_with_targets(&[("first", &mock.base_url())]), &[]).await?;
    let client = reqwest::Client::new();
    let (status, error) = error_of(client.get(gateway.url("/v1/nothing")).send().await?).await?;
    assert_eq!((status, error["code"].as_str()), (404, Some("unknown_url")));
    let (status, error) = error_of(
        client
            .get(gateway.url("/v1/chat/completions"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        (status, error["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    Ok(())
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml_with_targets(&[("first", &mock.base_url())]), &[]).await?;
    let client = reqwest::Client::new();
    let echoed = client
        .get(gateway.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await?;
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    let made = client
        .post(gateway.url("/v1/chat/completions"))
        .body(GOOD)
        .send()
        .await?;
    assert_eq!(made.status(), 401);
    assert!(made.headers()["x-request-id"].to_str()?.starts_with("req_"));
    let ready = client.get(gateway.url("/readyz")).send().await?;
    assert_eq!(ready.status(), 200);
    Ok(())
}

#[tokio::test]
async fn an_upstream_client_error_is_returned_as_is_without_failover() -> TestResult {
    let (first, second) = (start_mock().await?, start_mock().await?);
    let fail = FailNext {
        status: 400,
        count: 1,
        retry_after: None,
        body: None,
    };
    first.state.set_faults(
        "gpt-mock",
        Faults {
            fail: Some(fail),
            ..Faults::default()
        },
    );
    let gateway = start_gateway(
        &yaml_with_targets(&[("first", &first.base_url()), ("second", &second.base_url())]),
        &[],
    )
    .await?;
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(TEST_KEY)
        .body(GOOD)
        .send()
        .await?;
    assert_eq!(response.headers()["x-keel-attempts"], "1");
    let (status, error) = error_of(response).await?;
    assert_eq!(status, 400, "{error}");
    assert_eq!(second.state.stats("gpt-mock").requests, 0);
    Ok(())
}

#[tokio::test]
async fn when_every_target_fails_the_client_gets_502_naming_the_last() -> TestResult {
    let mock = start_mock().await?;
    let fail = FailNext {
        status: 503,
        count: 10,
        retry_after: None,
        body: None,
    };
    mock.state.set_faults(
        "gpt-mock",
        Faults {
            fail: Some(fail),
            ..Faults::default()
        },
    );
    let gateway = start_gateway(&yaml_with_targets(&[("only", &mock.base_url())]), &[]).await?;
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(TEST_KEY)
        .body(GOOD)
        .send()
        .await?;
    assert_eq!(response.headers()["x-keel-attempts"], "1");
    assert_eq!(
        response.headers()["x-should-retry"],
        "false",
        "Keel has retried and failed over already"
    );
    let (status, error) = error_of(response).await?;
    assert_eq!(status, 502);
    assert_eq!(error["message"], "every target of the model 'chat' failed; the last, provider 'only', answered with status 503");
    Ok(())
}
