//! `POST /v1/responses` end to end: the official openai SDK's
//! `responses.create` and `responses.stream` (whose helper checks the event
//! grammar) against OpenAI-kind and Anthropic-kind targets on `keel mock`,
//! and the 400s that name what Keel cannot honour.

use keel_testkit::{start_gateway, start_mock, FailNext, Faults, Gateway, Mock};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KEY: &str = "sk-acme";

fn yaml(mock: &Mock) -> String {
    let root = mock.base_url();
    let anthropic_root = root.trim_end_matches("/v1");
    format!(
        "tenants:\n  - {{name: acme, keys: [\"{KEY}\"]}}\n\
         providers:\n\
         \x20 openai: {{kind: openai, base_url: {root}, retry: {{attempts: 1}}}}\n\
         \x20 claude: {{kind: anthropic, base_url: {anthropic_root}, api_key: k, retry: {{attempts: 1}}}}\n\
         models:\n\
         \x20 chat: {{targets: [{{provider: openai, model: gpt-mock}}]}}\n\
         \x20 claude: {{targets: [{{provider: claude, model: claude-mock}}]}}\n\
         \x20 duo: {{targets: [{{provider: openai, model: gpt-down}}, {{provider: openai, model: gpt-mock}}]}}\n"
    )
}

async fn setup() -> Result<(Mock, Gateway), Box<dyn std::error::Error>> {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    Ok((mock, gateway))
}

#[tokio::test]
async fn the_official_sdk_creates_and_streams_responses_on_both_target_kinds() -> TestResult {
    let (_mock, gateway) = setup().await?;
    for model in ["chat", "claude"] {
        let args = vec![gateway.url("/v1"), KEY.to_owned(), model.to_owned()];
        let stdout = keel_testkit::sdk_check("responses_check.py", args).await?;
        assert!(stdout.starts_with("ok "), "{model}: {stdout}");
    }
    Ok(())
}

#[tokio::test]
async fn fields_keel_cannot_honour_are_refused_by_name() -> TestResult {
    let (mock, gateway) = setup().await?;
    let http = reqwest::Client::new();
    for (extra, param) in [
        (
            json!({"previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (json!({"conversation": "conv_1"}), "conversation"),
        (json!({"tools": [{"type": "web_search"}]}), "tools"),
        (json!({"background": true, "stream": true}), "background"),
        (
            json!({"webhook": {"url": "https://example.com/hook"}}),
            "webhook",
        ),
        (json!({"frobnicate": 1}), "frobnicate"),
        (
            json!({"input": [{"type": "file_search_call", "id": "x"}]}),
            "input",
        ),
    ] {
        let mut body = json!({"model": "chat", "input": "hi"});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let response = http
            .post(gateway.url("/v1/responses"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await?;
        assert_eq!(response.status(), 400, "{param}");
        let error: Value = response.json().await?;
        assert_eq!(error["error"]["param"], param, "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.len() > 20),
            "{error}"
        );
    }
    assert_eq!(
        mock.state.stats("gpt-mock").requests,
        0,
        "nothing reached the upstream"
    );
    Ok(())
}

/// The events of a streamed Responses request, checking that each event
/// line names its data's type.
async fn stream_events(
    gateway: &Gateway,
    body: &Value,
) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let text = reqwest::Client::new()
        .post(gateway.url("/v1/responses"))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await?
        .text()
        .await?;
    let mut events = Vec::new();
    for frame in text.split("\n\n").filter(|frame| !frame.trim().is_empty()) {
        let mut lines = frame.lines();
        let name = lines
            .next()
            .and_then(|line| line.strip_prefix("event: "))
            .ok_or("event line")?;
        let data = lines
            .next()
            .and_then(|line| line.strip_prefix("data: "))
            .ok_or("data line")?;
        let data: Value = serde_json::from_str(data)?;
        assert_eq!(data["type"], name, "the event line names the data's type");
        events.push(data);
    }
    Ok(events)
}

#[tokio::test]
async fn failover_before_the_first_event_is_invisible_and_a_later_failure_is_response_failed(
) -> TestResult {
    let (mock, gateway) = setup().await?;
    let fail = Faults {
        fail: Some(FailNext {
            status: 503,
            count: 1,
            retry_after: None,
            body: None,
        }),
        ..Faults::default()
    };
    mock.state.set_faults("gpt-down", fail);
    let body = json!({"model": "duo", "input": "hello", "stream": true});
    let events = stream_events(&gateway, &body).await?;
    let types: Vec<&str> = events
        .iter()
        .filter_map(|event| event["type"].as_str())
        .collect();
    assert_eq!(types.first().copied(), Some("response.created"));
    assert_eq!(types.last().copied(), Some("response.completed"));
    assert_eq!(
        types
            .iter()
            .filter(|name| **name == "response.created")
            .count(),
        1
    );
    assert_eq!(
        mock.state.stats("gpt-down").requests,
        1,
        "the first target was tried"
    );

    let broken = Faults {
        error_event_after_chunk: Some(2),
        ..Faults::default()
    };
    mock.state.set_faults("gpt-mock", broken);
    let body = json!({"model": "chat", "input": "hello", "stream": true});
    let events = stream_events(&gateway, &body).await?;
    let last = events.last().ok_or("events")?;
    assert_eq!(last["type"], "response.failed", "{events:?}");
    assert_eq!(last["response"]["status"], "failed");
    assert!(last["response"]["error"]["message"].is_string(), "{last}");
    assert!(
        events
            .iter()
            .any(|event| event["type"] == "response.output_text.delta"),
        "it failed after it started"
    );
    Ok(())
}

#[tokio::test]
async fn a_stream_has_one_increasing_sequence_and_exactly_one_terminal_event() -> TestResult {
    let (_mock, gateway) = setup().await?;
    let body = json!({"model": "chat", "input": "hello", "stream": true, "max_output_tokens": 3});
    let events = stream_events(&gateway, &body).await?;
    let numbers: Vec<u64> = events
        .iter()
        .filter_map(|event| event["sequence_number"].as_u64())
        .collect();
    assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
    let last = events.last().ok_or("events")?;
    assert_eq!(
        last["type"], "response.incomplete",
        "cut by max_output_tokens"
    );
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    let terminal = events
        .iter()
        .filter(|event| {
            matches!(
                event["type"].as_str(),
                Some("response.completed" | "response.incomplete" | "response.failed")
            )
        })
        .count();
    assert_eq!(terminal, 1);
    Ok(())
}

/// Background responses: stored as jobs, answered at once as `queued`,
/// polled until completed, tenant-scoped, cancellable while not finished.
#[tokio::test]
async fn a_background_response_is_queued_then_polled_to_completion() -> TestResult {
    let mock = start_mock().await?;
    let yaml = yaml(&mock).replace(
        "tenants:\n",
        "tenants:\n  - {name: other, keys: [\"sk-other\"]}\n",
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let http = reqwest::Client::new();
    let body = json!({"model": "chat", "input": "hello", "background": true,
                      "instructions": "Be brief.", "metadata": {"ticket": "T-1"}});
    let created: Value = http
        .post(gateway.url("/v1/responses"))
        .bearer_auth(KEY)
        .header("idempotency-key", "bg-1")
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(created["object"], "response");
    assert_eq!(created["status"], "queued", "{created}");
    assert_eq!(created["background"], true);
    assert_eq!(created["instructions"], "Be brief.");
    let id = created["id"].as_str().ok_or("id")?.to_owned();
    let again: Value = http
        .post(gateway.url("/v1/responses"))
        .bearer_auth(KEY)
        .header("idempotency-key", "bg-1")
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        again["id"],
        id.as_str(),
        "the same key is the same response"
    );

    let mut done = Value::Null;
    for _ in 0..200 {
        done = http
            .get(gateway.url(&format!("/v1/responses/{id}")))
            .bearer_auth(KEY)
            .send()
            .await?
            .json()
            .await?;
        if done["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["id"], id.as_str());
    assert_eq!(done["output"][0]["type"], "message");
    assert!(done["usage"]["output_tokens"]
        .as_u64()
        .is_some_and(|tokens| tokens > 0));
    assert_eq!(done["metadata"]["ticket"], "T-1");

    let cancel = http
        .post(gateway.url(&format!("/v1/responses/{id}/cancel")))
        .bearer_auth(KEY)
        .send()
        .await?;
    assert_eq!(
        cancel.status(),
        409,
        "a completed response is left as it is"
    );
    let foreign = http
        .get(gateway.url(&format!("/v1/responses/{id}")))
        .bearer_auth("sk-other")
        .send()
        .await?;
    assert_eq!(
        foreign.status(),
        404,
        "another tenant's response does not exist for it"
    );

    let job: Value = http
        .post(gateway.url("/v1/jobs"))
        .bearer_auth(KEY)
        .json(
            &json!({"request": {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}}),
        )
        .send()
        .await?
        .json()
        .await?;
    let job_id = job["id"].as_str().ok_or("job id")?;
    let not_a_response = http
        .get(gateway.url(&format!("/v1/responses/{job_id}")))
        .bearer_auth(KEY)
        .send()
        .await?;
    assert_eq!(not_a_response.status(), 404, "a chat job is not a response");

    mock.state.set_faults(
        "gpt-mock",
        Faults {
            first_token_delay_ms: 5_000,
            ..Faults::default()
        },
    );
    let slow: Value = http
        .post(gateway.url("/v1/responses"))
        .bearer_auth(KEY)
        .json(&json!({"model": "chat", "input": "slow", "background": true}))
        .send()
        .await?
        .json()
        .await?;
    let slow_id = slow["id"].as_str().ok_or("id")?;
    let cancelled: Value = http
        .post(gateway.url(&format!("/v1/responses/{slow_id}/cancel")))
        .bearer_auth(KEY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    Ok(())
}

/// `responses: native`: the body goes through verbatim (fields a
/// translation would refuse included) and the upstream's answer and events
/// come back as it sent them; the official SDK reads both.
#[tokio::test]
async fn a_native_target_gets_the_body_verbatim_and_its_events_come_back() -> TestResult {
    let mock = start_mock().await?;
    let yaml = format!(
        "tenants:\n  - {{name: acme, keys: [\"{KEY}\"]}}\n\
         providers:\n  native: {{kind: openai, base_url: {}, responses: native, retry: {{attempts: 1}}}}\n\
         models:\n  gpt: {{targets: [{{provider: native, model: gpt-native}}]}}\n",
        mock.base_url()
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let http = reqwest::Client::new();
    let body = json!({"model": "gpt", "input": "hello", "previous_response_id": null,
                      "include": ["reasoning.encrypted_content"], "store": false});
    let response = http
        .post(gateway.url("/v1/responses"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("x-keel-provider")
            .and_then(|v| v.to_str().ok()),
        Some("native")
    );
    let answer: Value = response.json().await?;
    assert_eq!(answer["object"], "response");
    assert_eq!(answer["model"], "gpt-native", "the upstream's own object");
    assert_eq!(mock.state.stats("gpt-native").requests, 1);

    let stream = json!({"model": "gpt", "input": "hello", "stream": true});
    let events = stream_events(&gateway, &stream).await?;
    assert_eq!(
        events.first().map(|event| &event["type"]),
        Some(&json!("response.created"))
    );
    assert_eq!(
        events.last().map(|event| &event["type"]),
        Some(&json!("response.completed"))
    );
    let numbers: Vec<u64> = events
        .iter()
        .filter_map(|event| event["sequence_number"].as_u64())
        .collect();
    assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());

    mock.state.set_faults(
        "gpt-native",
        Faults {
            drop_after_chunk: Some(2),
            ..Faults::default()
        },
    );
    let events = stream_events(&gateway, &stream).await?;
    let last = events.last().ok_or("events")?;
    assert_eq!(
        last["type"], "response.failed",
        "a cut stream ends with response.failed"
    );
    assert_eq!(
        last["sequence_number"].as_u64(),
        Some(events.len() as u64 - 1)
    );
    mock.state.clear();

    let args = vec![gateway.url("/v1"), String::from("gpt"), KEY.to_owned()];
    let stdout = keel_testkit::sdk_check("responses_mock_check.py", args).await?;
    assert!(stdout.starts_with("ok"), "{stdout}");
    Ok(())
}

/// A completion the adapter refuses is refused on the translated path
/// too, though there one read of the completion serves the check and the
/// translation: an error beside the choices fails over, and without
/// another target it is a 502, never a response object.
#[tokio::test]
async fn an_error_beside_the_choices_fails_over_as_on_the_chat_path() -> TestResult {
    let (mock, gateway) = setup().await?;
    let in_band = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-down",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "not this"}, "finish_reason": "stop"}],
        "error": {"message": "overloaded", "type": "server_error"}
    });
    let answers_in_band = |count| Faults {
        fail: Some(FailNext {
            status: 200,
            count,
            retry_after: None,
            body: Some(in_band.clone()),
        }),
        ..Faults::default()
    };
    mock.state.set_faults("gpt-down", answers_in_band(1));
    let http = reqwest::Client::new();
    let ask = |model: &str| {
        http.post(gateway.url("/v1/responses"))
            .bearer_auth(KEY)
            .json(&json!({"model": model, "input": "hello"}))
            .send()
    };
    let answer = ask("duo").await?;
    assert_eq!(answer.status(), 200);
    let object: Value = answer.json().await?;
    assert_eq!(object["object"], "response", "{object}");
    assert_eq!(object["status"], "completed", "{object}");
    let text = object["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(text.starts_with("Hello from the keel mock"), "{object}");
    assert_eq!(mock.state.stats("gpt-down").requests, 1);
    assert_eq!(mock.state.stats("gpt-mock").requests, 1);

    mock.state.set_faults("gpt-mock", answers_in_band(1));
    let refused = ask("chat").await?;
    assert_eq!(refused.status(), 502);
    let body: Value = refused.json().await?;
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(mock.state.stats("gpt-mock").requests, 2);
    Ok(())
}
