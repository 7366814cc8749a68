//! An OpenAI client served by an Anthropic target through `keel mock`:
//! content, tool calls (ids kept), finish reasons, usage, streams with one
//! id and the usage chunk, error classes and failover, in-band errors
//! before and after the first token, truncation and empty answers.

#[path = "anthropic/support.rs"]
mod support;

use keel_testkit::{FailNext, Faults};
use serde_json::{json, Value};
use support::{chunks, openai_weather_tool, Setup, TestResult, BACKUP, CLAUDE};

fn ask(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello, and mention Zürich ✓"}]})
}

/// The Anthropic request Keel should have sent for [`ask`].
fn ask_direct(stream: bool) -> Value {
    json!({"model": CLAUDE, "max_tokens": 1000, "system": "Be brief.", "stream": stream, "messages": [{"role": "user", "content": "Say hello, and mention Zürich ✓"}]})
}

#[tokio::test]
async fn a_text_answer_keeps_content_finish_usage_and_names_the_target() -> TestResult {
    let setup = Setup::start().await?;
    let response = setup.chat(&ask("claude-chat")).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(
        (
            response.headers()["x-keel-provider"].to_str()?,
            response.headers()["x-keel-model"].to_str()?
        ),
        ("claude", CLAUDE)
    );
    let answer: Value = response.json().await?;
    let direct: Value = setup
        .direct_messages(&ask_direct(false))
        .await?
        .json()
        .await?;
    assert_eq!(answer["object"], "chat.completion");
    assert!(
        answer["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_")),
        "{answer}"
    );
    assert_eq!(answer["model"], CLAUDE);
    let choice = &answer["choices"][0];
    assert_eq!(choice["message"]["content"], direct["content"][0]["text"]);
    // Fields OpenAI's schema requires, present as OpenAI sends them.
    let null = Some(&Value::Null);
    assert_eq!(choice["message"].get("refusal"), null, "{answer}");
    assert_eq!(choice.get("logprobs"), null, "{answer}");
    assert_eq!(answer.get("system_fingerprint"), null, "{answer}");
    assert_eq!(
        (
            choice["message"]["role"].as_str(),
            choice["finish_reason"].as_str()
        ),
        (Some("assistant"), Some("stop"))
    );
    assert_eq!(
        answer["usage"]["prompt_tokens"],
        direct["usage"]["input_tokens"]
    );
    assert_eq!(
        answer["usage"]["completion_tokens"],
        direct["usage"]["output_tokens"]
    );
    assert_eq!(answer["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    Ok(())
}

#[tokio::test]
async fn a_tool_call_keeps_its_id_name_and_arguments() -> TestResult {
    let setup = Setup::start().await?;
    let mut body = ask("claude-chat");
    body["tools"] = json!([openai_weather_tool()]);
    body["tool_choice"] = json!("required");
    let answer: Value = setup.chat(&body).await?.json().await?;
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null(), "{answer}");
    let call = &choice["message"]["tool_calls"][0];
    assert!(
        call["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("toolu_01")),
        "{call}"
    );
    assert_eq!(
        (call["type"].as_str(), call["function"]["name"].as_str()),
        (Some("function"), Some("get_weather"))
    );
    let arguments: Value = serde_json::from_str(
        call["function"]["arguments"]
            .as_str()
            .ok_or("no arguments")?,
    )?;
    assert_eq!(arguments, json!({"location": "Paris", "note": "café ☕"}));
    Ok(())
}

#[tokio::test]
async fn a_stream_has_one_id_every_token_and_the_usage_chunk() -> TestResult {
    let setup = Setup::start().await?;
    let mut body = ask("claude-chat");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = setup.chat(&body).await?;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (chunks, done) = chunks(&response.text().await?)?;
    assert!(done, "no [DONE]");
    let direct: Value = setup
        .direct_messages(&ask_direct(false))
        .await?
        .json()
        .await?;
    let id = &chunks[0]["id"];
    assert!(chunks
        .iter()
        .all(|chunk| &chunk["id"] == id && chunk["object"] == "chat.completion.chunk"));
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        direct["content"][0]["text"].as_str().ok_or("no text")?
    );
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|chunk| &chunk["choices"][0]["finish_reason"])
        .filter(|reason| !reason.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")]);
    let usage = &chunks.last().ok_or("no chunks")?["usage"];
    assert_eq!(chunks.last().ok_or("no chunks")?["choices"], json!([]));
    assert_eq!(
        (&usage["prompt_tokens"], &usage["completion_tokens"]),
        (
            &direct["usage"]["input_tokens"],
            &direct["usage"]["output_tokens"]
        )
    );
    Ok(())
}

#[tokio::test]
async fn a_streamed_tool_call_arrives_as_argument_deltas_at_index_zero() -> TestResult {
    let setup = Setup::start().await?;
    let mut body = ask("claude-chat");
    body["tools"] = json!([openai_weather_tool()]);
    body["stream"] = json!(true);
    let (chunks, done) = chunks(&setup.chat(&body).await?.text().await?)?;
    assert!(done);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert!(
        calls.len() > 2,
        "the arguments were not streamed: {chunks:?}"
    );
    assert!(calls.iter().all(|call| call["index"] == 0));
    assert!(
        calls[0]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("toolu_"))
            && calls[0]["function"]["name"] == "get_weather"
    );
    let arguments: String = calls
        .iter()
        .filter_map(|call| call["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments)?,
        json!({"location": "Paris", "note": "café ☕"})
    );
    let last_choice = chunks
        .iter()
        .rev()
        .find_map(|chunk| chunk["choices"][0]["finish_reason"].as_str());
    assert_eq!(last_choice, Some("tool_calls"));
    assert!(
        chunks.iter().all(|chunk| chunk.get("usage").is_none()),
        "usage without include_usage"
    );
    Ok(())
}

#[tokio::test]
async fn a_tool_result_turn_reaches_the_upstream_and_the_answer_is_text() -> TestResult {
    let setup = Setup::start().await?;
    let body = json!({"model": "claude-chat", "tools": [openai_weather_tool()], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_01abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_01abc", "content": "18°C"}]});
    let response = setup.chat(&body).await?;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await?;
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    assert!(answer["choices"][0]["message"]["content"]
        .as_str()
        .is_some_and(|text| text.starts_with("Hello from the keel mock")));
    Ok(())
}

#[tokio::test]
async fn max_tokens_becomes_length_and_empty_answers_stay_complete() -> TestResult {
    let setup = Setup::start().await?;
    let mut body = ask("claude-chat");
    body["max_tokens"] = json!(3);
    let answer: Value = setup.chat(&body).await?.json().await?;
    assert_eq!(
        (
            answer["choices"][0]["finish_reason"].as_str(),
            answer["usage"]["completion_tokens"].as_u64()
        ),
        (Some("length"), Some(3))
    );
    setup.mock.state.set_faults(
        CLAUDE,
        Faults {
            chunks: Some(0),
            ..Faults::default()
        },
    );
    let answer: Value = setup.chat(&ask("claude-chat")).await?.json().await?;
    assert_eq!(answer["choices"][0]["message"]["content"], "", "{answer}");
    body["stream"] = json!(true);
    let (chunks, done) = chunks(&setup.chat(&body).await?.text().await?)?;
    assert!(done, "an empty stream must still end with [DONE]");
    assert!(chunks.iter().all(|chunk| chunk["choices"][0]["delta"]
        .get("content")
        .is_none_or(|text| text == "")));
    Ok(())
}

#[tokio::test]
async fn client_errors_come_back_at_once_in_openai_shape() -> TestResult {
    for status in [400] {
        let setup = Setup::start().await?;
        setup.mock.state.set_faults(
            CLAUDE,
            Faults {
                fail: Some(FailNext {
                    status,
                    count: 5,
                    ..FailNext::default()
                }),
                ..Faults::default()
            },
        );
        let response = setup.chat(&ask("claude-then-gpt")).await?;
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["x-keel-attempts"], "1");
        let body: Value = response.json().await?;
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("injected by keel mock")),
            "{body}"
        );
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(
            body["error"]["code"]
                .as_str()
                .is_some_and(|code| code.ends_with("_error")),
            "{body}"
        );
        assert_eq!(
            setup.mock.state.stats(BACKUP).requests,
            0,
            "{status} must not fail over"
        );
    }
    Ok(())
}

/// Rate limits, overload, server errors, and the upstream statuses that
/// blame the gateway's side (401, 403: the key; 404: the model mapping)
/// all fail over; the Anthropic target is not tried twice.
#[tokio::test]
async fn rate_limits_overload_and_gateway_side_errors_fail_over_to_the_next_target() -> TestResult {
    for status in [429, 529, 500, 401, 403, 404] {
        let setup = Setup::start().await?;
        setup.mock.state.set_faults(
            CLAUDE,
            Faults {
                fail: Some(FailNext {
                    status,
                    count: 5,
                    ..FailNext::default()
                }),
                ..Faults::default()
            },
        );
        let response = setup.chat(&ask("claude-then-gpt")).await?;
        assert_eq!(response.status(), 200, "{status}");
        assert_eq!(
            (
                response.headers()["x-keel-provider"].to_str()?,
                response.headers()["x-keel-model"].to_str()?
            ),
            ("gpt", BACKUP)
        );
        assert_eq!(setup.mock.state.stats(CLAUDE).requests, 1);
    }
    Ok(())
}

#[tokio::test]
async fn an_overloaded_event_before_the_first_token_fails_over_and_after_it_ends_the_stream(
) -> TestResult {
    let setup = Setup::start().await?;
    let mut body = ask("claude-then-gpt");
    body["stream"] = json!(true);
    setup.mock.state.set_faults(
        CLAUDE,
        Faults {
            error_event_after_chunk: Some(0),
            ..Faults::default()
        },
    );
    let response = setup.chat(&body).await?;
    assert_eq!(response.headers()["x-keel-model"], BACKUP);
    let (_, done) = chunks(&response.text().await?)?;
    assert!(done, "the failover stream is complete");
    for faults in [
        Faults {
            error_event_after_chunk: Some(3),
            ..Faults::default()
        },
        Faults {
            drop_after_chunk: Some(3),
            ..Faults::default()
        },
    ] {
        setup.mock.state.set_faults(CLAUDE, faults.clone());
        let response = setup.chat(&body).await?;
        assert_eq!(response.headers()["x-keel-model"], CLAUDE);
        let (chunks, done) = chunks(&response.text().await?)?;
        assert!(done, "{faults:?}");
        let error = chunks.last().ok_or("no chunks")?;
        assert_eq!(
            error["error"]["code"], "upstream_stream_error",
            "{faults:?}: {error}"
        );
        let text: String = chunks
            .iter()
            .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello from the ", "{faults:?}");
    }
    Ok(())
}

/// A field the Messages API cannot express is refused before any upstream
/// call, naming the field, the provider and its kind; a provider with
/// `drop_unsupported` leaves it out and says so in `x-keel-dropped`.
#[tokio::test]
async fn unsupported_fields_are_refused_or_dropped_and_named() -> TestResult {
    let mock = keel_testkit::start_mock().await?;
    let yaml = format!(
        "tenants: [{{name: t, keys: [\"{key}\"]}}]\nproviders:\n  claude: {{kind: anthropic, base_url: \"http://{addr}\", api_key: k}}\n  lenient: {{kind: anthropic, base_url: \"http://{addr}\", api_key: k, drop_unsupported: true}}\nmodels:\n  strict: {{targets: [{{provider: claude, model: {CLAUDE}}}]}}\n  loose: {{targets: [{{provider: lenient, model: {CLAUDE}}}]}}\n",
        key = keel_testkit::TEST_KEY,
        addr = mock.addr
    );
    let gateway = keel_testkit::start_gateway(&yaml, &[]).await?;
    let client = reqwest::Client::new();
    let send = |body: Value| {
        client
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth(keel_testkit::TEST_KEY)
            .json(&body)
            .send()
    };
    let schema = json!({"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}}});
    let mut body = ask("strict");
    body["response_format"] = schema.clone();
    let refused = send(body).await?;
    assert_eq!(refused.status(), 400);
    let error: Value = refused.json().await?;
    assert_eq!(error["error"]["param"], "response_format", "{error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "'response_format' json_schema cannot be sent to provider 'claude' (kind anthropic): "
        ),
        "{message}"
    );
    for (field, value) in [
        ("seed", json!(7)),
        ("logprobs", json!(true)),
        ("reasoning_effort", json!("high")),
    ] {
        let mut body = ask("strict");
        body[field] = value;
        let refused = send(body).await?;
        assert_eq!(refused.status(), 400, "{field}");
        let error: Value = refused.json().await?;
        assert_eq!(error["error"]["param"], field, "{error}");
    }
    assert_eq!(
        mock.state.stats(CLAUDE).requests,
        0,
        "no refused request is sent"
    );
    let mut body = ask("loose");
    body["seed"] = json!(7);
    body["logprobs"] = json!(true);
    body["response_format"] = schema;
    body["top_k"] = json!(5);
    for stream in [false, true] {
        body["stream"] = json!(stream);
        let answered = send(body.clone()).await?;
        assert_eq!(answered.status(), 200);
        assert_eq!(
            answered.headers()["x-keel-dropped"],
            // In the order of the body, whose keys serde_json sorts.
            "logprobs,response_format,seed",
            "stream: {stream}"
        );
    }
    let plain = send(ask("loose")).await?;
    assert!(plain.headers().get("x-keel-dropped").is_none());
    Ok(())
}
