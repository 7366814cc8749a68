//! Before the first token, a failing target is invisible to the client: the
//! next target answers and the headers name it.

use keel_testkit::{
    sse_data, start_gateway, start_mock, yaml_with_targets, FailNext, Faults, Mock, TEST_KEY,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn body(stream: bool) -> String {
    format!(r#"{{"model":"chat","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#)
}

fn fail_always(mock: &Mock, status: u16) {
    let fail = FailNext {
        status,
        count: 1000,
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
}

/// A base URL where nothing listens: bind a port, then free it.
async fn closed_port_url() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(format!("http://{addr}/v1"))
}

async fn assert_second_answers(first_url: &str, second: &Mock, stream: bool) -> TestResult {
    let gateway = start_gateway(
        &yaml_with_targets(&[("first", first_url), ("second", &second.base_url())]),
        &[],
    )
    .await?;
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(TEST_KEY)
        .body(body(stream))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-keel-provider"], "second");
    assert_eq!(response.headers()["x-keel-attempts"], "2");
    let text = response.text().await?;
    if stream {
        let events = sse_data(&text);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        assert!(
            !text.contains("\"error\""),
            "the failed attempt leaked: {text}"
        );
    } else {
        let answer: serde_json::Value = serde_json::from_str(&text)?;
        assert_eq!(answer["object"], "chat.completion");
    }
    Ok(())
}

#[tokio::test]
async fn a_503_on_the_first_target_is_invisible() -> TestResult {
    for stream in [false, true] {
        let (first, second) = (start_mock().await?, start_mock().await?);
        fail_always(&first, 503);
        assert_second_answers(&first.base_url(), &second, stream).await?;
        assert_eq!(first.state.stats("gpt-mock").requests, 1);
    }
    Ok(())
}

#[tokio::test]
async fn a_refused_connection_on_the_first_target_is_invisible() -> TestResult {
    for stream in [false, true] {
        let second = start_mock().await?;
        assert_second_answers(&closed_port_url().await?, &second, stream).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_stream_that_breaks_before_its_first_token_fails_over() -> TestResult {
    let cases = [
        Faults {
            drop_after_chunk: Some(0),
            ..Faults::default()
        },
        Faults {
            error_event_after_chunk: Some(0),
            ..Faults::default()
        },
    ];
    for faults in cases {
        let (first, second) = (start_mock().await?, start_mock().await?);
        first.state.set_faults("gpt-mock", faults);
        assert_second_answers(&first.base_url(), &second, true).await?;
    }
    Ok(())
}

#[tokio::test]
async fn fallback_models_serve_when_every_target_of_the_model_fails() -> TestResult {
    let (big, small) = (start_mock().await?, start_mock().await?);
    fail_always(&big, 500);
    let yaml = format!(
        "tenants: [{{name: t, keys: [\"{TEST_KEY}\"]}}]\nproviders:\n  big: {{kind: openai, base_url: \"{}\"}}\n  small: {{kind: openai, base_url: \"{}\"}}\nmodels:\n  chat:\n    targets: [{{provider: big, model: gpt-mock}}]\n    fallback: [chat-small]\n  chat-small:\n    targets: [{{provider: small, model: gpt-mini}}]\n",
        big.base_url(),
        small.base_url()
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(TEST_KEY)
        .body(body(false))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-keel-provider"], "small");
    assert_eq!(response.headers()["x-keel-model"], "gpt-mini");
    Ok(())
}
