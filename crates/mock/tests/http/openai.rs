//! OpenAI Chat Completions: JSON, streams, usage, tool calls, validation.

use serde_json::{json, Value};

use crate::support::{json, read_sse, Mock, ResponseJson, SseEvent};

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello to the gateway"}]})
}

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["location"]
        }}},
        {"type": "function", "function": {"name": "get_time", "parameters": {
            "type": "object", "properties": {"timezone": {"type": "string"}}
        }}}
    ])
}

fn stream_body(mut body: Value, include_usage: bool) -> Value {
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn content_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect()
}

fn chunks_before_done(events: &[SseEvent]) -> Vec<Value> {
    let (done, chunks) = events.split_last().unwrap();
    assert_eq!(done.data, "[DONE]");
    assert!(events.iter().all(|event| event.event.is_none()));
    chunks.iter().map(json).collect()
}

#[tokio::test]
async fn json_reply_is_a_chat_completion_echoing_the_model() {
    let mock = Mock::start().await;
    let response = mock.openai(chat("gpt-test")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json_body().await;
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-test");
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    assert!(body["system_fingerprint"].is_string());
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["refusal"], Value::Null);
    assert!(choice["message"].get("tool_calls").is_none());
    let content = choice["message"]["content"].as_str().unwrap();
    assert!(content.starts_with("Hello from the keel mock (model gpt-test). "));
    assert_eq!(content.split_whitespace().count(), 20);
    // "Say hello to the gateway" is 24 chars: 6 prompt tokens; one completion token per chunk.
    assert_eq!(body["usage"]["prompt_tokens"], 6);
    assert_eq!(body["usage"]["completion_tokens"], 20);
    assert_eq!(body["usage"]["total_tokens"], 26);
    assert_eq!(mock.state.stats("gpt-test").completed, 1);
}

#[tokio::test]
async fn stream_is_role_chunk_content_chunks_finish_chunk_and_done() {
    let mock = Mock::start().await;
    let events = read_sse(mock.openai(stream_body(chat("gpt-test"), false)).await).await;
    let chunks = chunks_before_done(&events);
    assert_eq!(chunks.len(), 1 + 20 + 1);
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-test");
        assert_eq!(chunk["id"], chunks[0]["id"]);
        assert!(
            chunk.get("usage").is_none(),
            "no usage key without include_usage"
        );
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "");
    for chunk in &chunks[1..21] {
        let word = chunk["choices"][0]["delta"]["content"].as_str().unwrap();
        assert!(
            word.ends_with(' ') && !word.trim().contains(' '),
            "one word per chunk: {word:?}"
        );
        assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
    }
    let finish = &chunks[21]["choices"][0];
    assert_eq!(finish["delta"], json!({}));
    assert_eq!(finish["finish_reason"], "stop");

    let body: Value = mock.openai(chat("gpt-test")).await.json_body().await;
    assert_eq!(
        content_of(&chunks),
        body["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(mock.state.stats("gpt-test").completed, 2);
}

#[tokio::test]
async fn include_usage_adds_a_usage_chunk_and_null_usage_elsewhere() {
    let mock = Mock::start().await;
    mock.state.set_faults(
        "m",
        keel_mock::Faults {
            chunks: Some(3),
            ..Default::default()
        },
    );
    let events = read_sse(mock.openai(stream_body(chat("m"), true)).await).await;
    let chunks = chunks_before_done(&events);
    assert_eq!(chunks.len(), 1 + 3 + 1 + 1);
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert!(rest
        .iter()
        .all(|chunk| chunk["usage"] == Value::Null && chunk.get("usage").is_some()));
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 3);
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 6);
    assert_eq!(usage_chunk["usage"]["total_tokens"], 9);
}

#[tokio::test]
async fn max_completion_tokens_truncates_with_finish_reason_length() {
    let mock = Mock::start().await;
    let mut body = chat("m");
    body["max_completion_tokens"] = json!(4);
    let reply: Value = mock.openai(body).await.json_body().await;
    assert_eq!(reply["choices"][0]["finish_reason"], "length");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "Hello from the keel "
    );
}

#[tokio::test]
async fn tools_get_one_tool_call_whose_streamed_arguments_match_the_json_reply() {
    let mock = Mock::start().await;
    let mut body = chat("m");
    body["tools"] = weather_tools();
    let reply: Value = mock.openai(body.clone()).await.json_body().await;
    let choice = &reply["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"location": "Paris", "unit": "celsius"}));

    let events = read_sse(mock.openai(stream_body(body, false)).await).await;
    let chunks = chunks_before_done(&events);
    let opening = &chunks[0]["choices"][0]["delta"];
    assert_eq!(opening["role"], "assistant");
    assert_eq!(opening["tool_calls"][0]["index"], 0);
    assert_eq!(opening["tool_calls"][0]["type"], "function");
    assert_eq!(opening["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(opening["tool_calls"][0]["function"]["arguments"], "");
    let fragments: Vec<&str> = chunks[1..chunks.len() - 1]
        .iter()
        .map(|chunk| {
            chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(
        fragments.len() > 5,
        "arguments are split across several chunks"
    );
    let streamed: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(streamed, arguments);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn tool_choice_names_the_tool_or_disables_tools() {
    let mock = Mock::start().await;
    let mut body = chat("m");
    body["tools"] = weather_tools();
    body["tool_choice"] = json!({"type": "function", "function": {"name": "get_time"}});
    let reply: Value = mock.openai(body.clone()).await.json_body().await;
    assert_eq!(
        reply["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_time"
    );

    body["tool_choice"] = json!("none");
    let reply: Value = mock.openai(body).await.json_body().await;
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    assert!(reply["choices"][0]["message"]["content"].is_string());
}

#[tokio::test]
async fn a_tool_result_last_gets_a_text_reply() {
    let mock = Mock::start().await;
    let body = json!({"model": "m", "tools": weather_tools(), "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ]});
    let reply: Value = mock.openai(body).await.json_body().await;
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    assert!(reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Hello"));
}

#[tokio::test]
async fn bad_bodies_get_openai_shaped_400s_and_are_not_counted() {
    let mock = Mock::start().await;
    let url = mock.url("/v1/chat/completions");
    for body in [
        "{not json",
        r#"{"messages": []}"#,
        r#"{"model": "m", "messages": "x"}"#,
    ] {
        let response = mock.client.post(&url).body(body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json_body().await;
        assert_eq!(error["error"]["type"], "invalid_request_error", "{body}");
        assert!(error["error"]["message"].as_str().unwrap().len() > 10);
        assert_eq!(error["error"]["param"], Value::Null);
        assert!(error["error"].get("code").is_some());
    }
    assert!(mock.state.all_stats().is_empty());
}

#[tokio::test]
async fn models_lists_mock_models() {
    let mock = Mock::start().await;
    let list: Value = mock
        .client
        .get(mock.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json_body()
        .await;
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().unwrap();
    assert!(!data.is_empty());
    assert!(data
        .iter()
        .all(|model| model["object"] == "model" && model["id"].is_string()));
}

#[tokio::test]
async fn a_json_schema_response_format_is_answered_with_one_object_that_follows_it() {
    let mock = Mock::start().await;
    let mut body = chat("gpt-test");
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "Weather", "strict": true, "schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
        "required": ["city", "celsius"]
    }}});
    let reply: Value = mock.openai(body.clone()).await.json_body().await;
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    let content = reply["choices"][0]["message"]["content"].as_str().unwrap();
    let object: Value = serde_json::from_str(content).unwrap();
    assert_eq!(object, json!({"city": "Paris", "celsius": 42}));

    let events = read_sse(mock.openai(stream_body(body, false)).await).await;
    assert_eq!(content_of(&chunks_before_done(&events)), content);
}
