//! `POST /v1/messages` end to end through `keel mock`: an Anthropic client
//! served by an OpenAI target and by an Anthropic one, JSON and the exact
//! SSE event sequence, tool use, errors before and after the first token.

#[path = "anthropic/support.rs"]
mod support;

use keel_testkit::Faults;
use serde_json::{json, Value};
use support::{
    anthropic_weather_tool, named_events, streamed_input, streamed_text, Setup, TestResult, CLAUDE,
    GPT,
};

fn ask(model: &str) -> Value {
    json!({"model": model, "max_tokens": 1024, "system": "Be brief.", "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello, and mention Zürich ✓"}]}]})
}

/// The OpenAI request Keel should have sent for [`ask`].
fn ask_openai() -> Value {
    json!({"model": GPT, "max_tokens": 1024, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello, and mention Zürich ✓"}]})
}

#[tokio::test]
async fn an_openai_target_answers_as_an_anthropic_message() -> TestResult {
    let setup = Setup::start().await?;
    let response = setup.messages(&ask("gpt-chat")).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-keel-provider"], "gpt");
    let message: Value = response.json().await?;
    let direct: Value = setup.direct_chat(&ask_openai()).await?.json().await?;
    assert_eq!(
        (
            message["type"].as_str(),
            message["role"].as_str(),
            message["model"].as_str()
        ),
        (Some("message"), Some("assistant"), Some(GPT))
    );
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": direct["choices"][0]["message"]["content"]}])
    );
    assert_eq!(
        (message["stop_reason"].as_str(), &message["stop_sequence"]),
        (Some("end_turn"), &Value::Null)
    );
    assert_eq!(
        message["usage"]["input_tokens"],
        direct["usage"]["prompt_tokens"]
    );
    assert_eq!(
        message["usage"]["output_tokens"],
        direct["usage"]["completion_tokens"]
    );
    Ok(())
}

#[tokio::test]
async fn an_openai_tool_call_becomes_a_tool_use_block() -> TestResult {
    let setup = Setup::start().await?;
    let mut body = ask("gpt-chat");
    body["tools"] = json!([anthropic_weather_tool()]);
    body["tool_choice"] = json!({"type": "any"});
    let message: Value = setup.messages(&body).await?.json().await?;
    assert_eq!(message["stop_reason"], "tool_use");
    let block = &message["content"][0];
    assert_eq!(
        (block["type"].as_str(), block["name"].as_str()),
        (Some("tool_use"), Some("get_weather"))
    );
    assert!(
        block["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("call_")),
        "{block}"
    );
    assert_eq!(
        block["input"],
        json!({"location": "Paris", "note": "café ☕"})
    );
    Ok(())
}

#[tokio::test]
async fn an_openai_stream_becomes_the_documented_event_sequence() -> TestResult {
    let setup = Setup::start().await?;
    let mut body = ask("gpt-chat");
    body["stream"] = json!(true);
    let response = setup.messages(&body).await?;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = named_events(&response.text().await?)?;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    let mut expected = vec!["message_start", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", 20));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    assert!(
        events
            .iter()
            .all(|(name, data)| data["type"] == name.as_str()),
        "each event's type is its name"
    );
    let direct: Value = setup.direct_chat(&ask_openai()).await?.json().await?;
    assert_eq!(
        streamed_text(&events),
        direct["choices"][0]["message"]["content"]
            .as_str()
            .ok_or("no text")?
    );
    let (_, delta) = &events[events.len() - 2];
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "end_turn", "stop_sequence": null})
    );
    assert_eq!(
        (
            &delta["usage"]["input_tokens"],
            &delta["usage"]["output_tokens"]
        ),
        (&direct["usage"]["prompt_tokens"], &json!(20))
    );
    Ok(())
}

#[tokio::test]
async fn an_openai_streamed_tool_call_becomes_input_json_deltas() -> TestResult {
    let setup = Setup::start().await?;
    let mut body = ask("gpt-chat");
    body["tools"] = json!([anthropic_weather_tool()]);
    body["stream"] = json!(true);
    let events = named_events(&setup.messages(&body).await?.text().await?)?;
    let (_, start) = &events[1];
    assert_eq!(
        (
            start["content_block"]["type"].as_str(),
            start["content_block"]["name"].as_str()
        ),
        (Some("tool_use"), Some("get_weather"))
    );
    assert_eq!(start["content_block"]["input"], json!({}));
    assert_eq!(
        serde_json::from_str::<Value>(&streamed_input(&events))?,
        json!({"location": "Paris", "note": "café ☕"})
    );
    assert_eq!(
        events[events.len() - 2].1["delta"]["stop_reason"],
        "tool_use"
    );
    Ok(())
}

#[tokio::test]
async fn an_anthropic_target_round_trips_what_the_upstream_said() -> TestResult {
    let setup = Setup::start().await?;
    let mut body = ask("claude-chat");
    body["tools"] = json!([anthropic_weather_tool()]);
    let message: Value = setup.messages(&body).await?.json().await?;
    body["model"] = json!(CLAUDE);
    let direct: Value = setup.direct_messages(&body).await?.json().await?;
    let strip = |mut value: Value| {
        value["content"][0]["id"] = Value::Null;
        value["id"] = Value::Null;
        value
    };
    assert_eq!(strip(message), strip(direct));
    body["stream"] = json!(true);
    body["tools"] = json!([]);
    let ours = named_events(&setup.messages(&json!({"model": "claude-chat", "max_tokens": 1024, "stream": true, "messages": body["messages"]})).await?.text().await?)?;
    let theirs = named_events(&setup.direct_messages(&json!({"model": CLAUDE, "max_tokens": 1024, "stream": true, "messages": body["messages"]})).await?.text().await?)?;
    let names = |events: &[(String, Value)]| {
        events
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| name != "ping")
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&ours), names(&theirs));
    assert_eq!(streamed_text(&ours), streamed_text(&theirs));
    assert_eq!(
        ours.last().map(|(_, data)| data.clone()),
        Some(json!({"type": "message_stop"}))
    );
    Ok(())
}

#[tokio::test]
async fn a_failure_after_the_first_token_ends_with_an_anthropic_error_event() -> TestResult {
    let setup = Setup::start().await?;
    for (model, upstream, kind) in [
        ("claude-chat", CLAUDE, "overloaded_error"),
        ("gpt-chat", GPT, "api_error"),
    ] {
        setup.mock.state.set_faults(
            upstream,
            Faults {
                error_event_after_chunk: Some(2),
                ..Faults::default()
            },
        );
        let mut body = ask(model);
        body["stream"] = json!(true);
        let events = named_events(&setup.messages(&body).await?.text().await?)?;
        let (name, error) = events.last().ok_or("no events")?;
        assert_eq!(
            (
                name.as_str(),
                error["type"].as_str(),
                error["error"]["type"].as_str()
            ),
            ("error", Some("error"), Some(kind)),
            "{model}"
        );
        assert_eq!(streamed_text(&events), "Hello from ", "{model}");
        assert!(
            !events.iter().any(|(name, _)| name == "message_stop"),
            "{model}: a failed stream is never passed off as complete"
        );
    }
    Ok(())
}

/// An error as Anthropic writes it: status, `error.type`, its message, and
/// the `request-id` header equal to `x-request-id` and to `request_id`.
async fn anthropic_error(
    response: reqwest::Response,
) -> Result<(u16, String, String), Box<dyn std::error::Error>> {
    let status = response.status().as_u16();
    let id = response.headers()["request-id"].to_str()?.to_owned();
    assert_eq!(response.headers()["x-request-id"].to_str()?, id);
    let body: Value = response.json().await?;
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["request_id"].as_str(), Some(id.as_str()), "{body}");
    assert!(body.get("code").is_none() && body["error"].get("code").is_none());
    let kind = body["error"]["type"].as_str().ok_or("no type")?.to_owned();
    let message = body["error"]["message"].as_str().ok_or("no message")?;
    Ok((status, kind, message.to_owned()))
}

#[tokio::test]
async fn bad_requests_and_keys_are_refused_before_routing_in_anthropic_shape() -> TestResult {
    let setup = Setup::start().await?;
    let document = json!({"model": "gpt-chat", "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]});
    let (status, kind, message) = anthropic_error(setup.messages(&document).await?).await?;
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    assert!(message.contains("messages"), "{message}");
    let unknown =
        json!({"model": "nope", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]});
    let (status, kind, _) = anthropic_error(setup.messages(&unknown).await?).await?;
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    let client = reqwest::Client::new();
    let url = setup.gateway.url("/v1/messages");
    let not_json = client
        .post(&url)
        .header("x-api-key", keel_testkit::TEST_KEY)
        .body("{\"model\":")
        .send()
        .await?;
    let (status, kind, _) = anthropic_error(not_json).await?;
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    let anonymous = client.post(&url).json(&ask("gpt-chat")).send().await?;
    let (status, kind, message) = anthropic_error(anonymous).await?;
    assert_eq!((status, kind.as_str()), (401, "authentication_error"));
    assert!(message.contains("x-api-key"), "{message}");
    let wrong_method = client.get(&url).send().await?;
    let (status, kind, _) = anthropic_error(wrong_method).await?;
    assert_eq!((status, kind.as_str()), (405, "invalid_request_error"));
    assert_eq!(setup.mock.state.stats(GPT).requests, 0);
    Ok(())
}

#[tokio::test]
async fn a_routing_failure_is_an_anthropic_api_error_that_is_not_retried() -> TestResult {
    let setup = Setup::start().await?;
    let fail = keel_testkit::FailNext {
        status: 500,
        count: 10,
        retry_after: None,
        body: None,
    };
    setup.mock.state.set_faults(
        GPT,
        Faults {
            fail: Some(fail),
            ..Faults::default()
        },
    );
    let response = setup.messages(&ask("gpt-chat")).await?;
    assert_eq!(response.headers()["x-should-retry"], "false");
    let (status, kind, message) = anthropic_error(response).await?;
    assert_eq!((status, kind.as_str()), (502, "api_error"));
    assert!(message.contains("provider 'gpt'"), "{message}");
    let answered = setup.messages(&ask("claude-chat")).await?;
    assert_eq!(answered.status(), 200);
    assert_eq!(
        answered.headers()["request-id"],
        answered.headers()["x-request-id"]
    );
    Ok(())
}

#[tokio::test]
async fn max_tokens_becomes_the_max_tokens_stop_reason() -> TestResult {
    let setup = Setup::start().await?;
    for model in ["gpt-chat", "claude-chat"] {
        let mut body = ask(model);
        body["max_tokens"] = json!(4);
        let message: Value = setup.messages(&body).await?.json().await?;
        assert_eq!(
            (
                message["stop_reason"].as_str(),
                message["usage"]["output_tokens"].as_u64()
            ),
            (Some("max_tokens"), Some(4)),
            "{model}"
        );
    }
    Ok(())
}
