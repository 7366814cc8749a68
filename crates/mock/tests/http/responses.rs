//! OpenAI Responses API: response objects, the event stream, tools, limits,
//! faults and validation.

use keel_mock::{FailNext, Faults, ModelStats};
use serde_json::{json, Value};

use crate::support::{read_sse, Mock, ResponseJson, SseEvent, SseReader};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The events that end a Responses stream; exactly one is sent.
const TERMINAL: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

fn request(model: &str) -> Value {
    json!({"model": model, "input": [{"role": "user", "content": "Say hello to the gateway"}]})
}

fn streamed(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

fn weather_tools() -> Value {
    json!([
        {"type": "function", "name": "get_weather", "description": "Weather", "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["location"]
        }},
        {"type": "function", "name": "get_time", "parameters": {
            "type": "object", "properties": {"timezone": {"type": "string"}}
        }}
    ])
}

fn chunks(count: u32) -> Faults {
    Faults {
        chunks: Some(count),
        ..Faults::default()
    }
}

fn names(events: &[SseEvent]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event.event.as_deref().unwrap_or(""))
        .collect()
}

/// The events' JSON, after checking the grammar every Responses stream
/// keeps: each `event:` name equals its data's `type`, sequence numbers
/// count from 0 without gaps, and no `[DONE]` line.
fn checked(events: &[SseEvent]) -> Result<Vec<Value>, String> {
    let mut payloads = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let data: Value = serde_json::from_str(&event.data)
            .map_err(|error| format!("event {index} is not JSON ({error}): {event:?}"))?;
        if event.event.as_deref() != data["type"].as_str() {
            return Err(format!("event {index}: name and type differ: {event:?}"));
        }
        if data["sequence_number"] != json!(index) {
            return Err(format!(
                "event {index}: sequence_number is not {index}: {data}"
            ));
        }
        payloads.push(data);
    }
    Ok(payloads)
}

/// The single terminal event, which must be the last one.
fn terminal(events: &[SseEvent]) -> Result<&str, String> {
    let names = names(events);
    let terminals: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| TERMINAL.contains(name))
        .collect();
    match (terminals.as_slice(), names.last()) {
        ([only], Some(last)) if only == last => Ok(only),
        _ => Err(format!("not exactly one terminal event, last: {names:?}")),
    }
}

fn concat(payloads: &[Value], kind: &str) -> String {
    payloads
        .iter()
        .filter(|payload| payload["type"] == kind)
        .filter_map(|payload| payload["delta"].as_str())
        .collect()
}

fn find<'a>(payloads: &'a [Value], kind: &str) -> Result<&'a Value, String> {
    payloads
        .iter()
        .find(|payload| payload["type"] == kind)
        .ok_or_else(|| format!("no {kind} event"))
}

fn output_text(response: &Value) -> Result<&str, String> {
    response["output"][0]["content"][0]["text"]
        .as_str()
        .ok_or_else(|| format!("no output text in {response}"))
}

#[tokio::test]
async fn json_reply_is_a_completed_response_object() -> TestResult {
    let mock = Mock::start().await;
    let response = mock.responses(request("gpt-test")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json_body().await;
    let id = body["id"].as_str().ok_or("no id")?;
    let item_id = body["output"][0]["id"].as_str().ok_or("no item id")?;
    let created_at = body["created_at"].as_u64().ok_or("no created_at")?;
    assert!(id.starts_with("resp_") && item_id.starts_with("msg_"));
    assert!(created_at > 1_700_000_000);
    let text = "Hello from the keel mock (model gpt-test). The quick brown fox jumps over \
                the lazy dog while a naïve café ";
    // "Say hello to the gateway" is 24 chars: 6 input tokens; one output token per chunk.
    let expected = json!({
        "id": id, "object": "response", "created_at": created_at, "status": "completed",
        "error": null, "incomplete_details": null, "instructions": null,
        "max_output_tokens": null, "model": "gpt-test",
        "output": [{"type": "message", "id": item_id, "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "parallel_tool_calls": true, "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null}, "store": true, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "truncation": "disabled",
        "usage": {"input_tokens": 6, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": 26},
        "user": null, "metadata": {}
    });
    assert_eq!(body, expected);
    let expected = ModelStats {
        requests: 1,
        completed: 1,
        ..ModelStats::default()
    };
    assert_eq!(mock.state.stats("gpt-test"), expected);
    Ok(())
}

#[tokio::test]
async fn the_same_prompt_gets_the_same_text_and_usage_as_chat() -> TestResult {
    let mock = Mock::start().await;
    let mut body = request("m");
    body["instructions"] = json!("Be brief.");
    let answer: Value = mock.responses(body).await.json_body().await;
    let chat = json!({"model": "m", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello to the gateway"}
    ]});
    let completion: Value = mock.openai(chat).await.json_body().await;
    assert_eq!(
        output_text(&answer)?,
        completion["choices"][0]["message"]["content"]
            .as_str()
            .ok_or("no chat content")?
    );
    assert_eq!(
        answer["usage"]["input_tokens"],
        completion["usage"]["prompt_tokens"]
    );
    assert_eq!(answer["instructions"], "Be brief.");
    assert_eq!(mock.state.stats("m").requests, 2);
    Ok(())
}

#[tokio::test]
async fn function_tools_get_a_function_call_item() -> TestResult {
    let mock = Mock::start().await;
    let mut body = request("m");
    body["tools"] = weather_tools();
    let answer: Value = mock.responses(body.clone()).await.json_body().await;
    assert_eq!(answer["status"], "completed");
    let output = answer["output"].as_array().ok_or("no output")?;
    assert_eq!(output.len(), 1);
    let call = &output[0];
    // serde_json's map sorts keys: this checks that no field is missing or extra.
    let keys: Vec<&str> = call
        .as_object()
        .ok_or("item is not an object")?
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["arguments", "call_id", "id", "name", "status", "type"]
    );
    assert_eq!(call["type"], "function_call");
    assert!(call["id"].as_str().ok_or("no id")?.starts_with("fc_"));
    assert!(call["call_id"]
        .as_str()
        .ok_or("no call_id")?
        .starts_with("call_"));
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["status"], "completed");
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().ok_or("no arguments")?)?;
    assert_eq!(arguments, json!({"location": "Paris", "unit": "celsius"}));
    // Function tools are listed back with the fields OpenAI fills in.
    assert_eq!(answer["tools"][1]["strict"], true);
    assert_eq!(answer["tools"][1]["description"], Value::Null);
    assert_eq!(
        answer["tools"][0]["parameters"],
        body["tools"][0]["parameters"]
    );

    body["tool_choice"] = json!({"type": "function", "name": "get_time"});
    let answer: Value = mock.responses(body.clone()).await.json_body().await;
    assert_eq!(answer["output"][0]["name"], "get_time");
    assert_eq!(answer["tool_choice"], body["tool_choice"]);

    body["tool_choice"] = json!("none");
    let answer: Value = mock.responses(body).await.json_body().await;
    assert_eq!(answer["output"][0]["type"], "message");
    Ok(())
}

#[tokio::test]
async fn a_function_output_last_gets_a_text_answer() -> TestResult {
    let mock = Mock::start().await;
    let body = json!({"model": "m", "tools": weather_tools(), "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
    ]});
    let answer: Value = mock.responses(body).await.json_body().await;
    assert_eq!(answer["output"][0]["type"], "message");
    assert!(output_text(&answer)?.starts_with("Hello"));
    // 17 chars of question and 5 of output: 5 tokens.
    assert_eq!(answer["usage"]["input_tokens"], 5);
    Ok(())
}

#[tokio::test]
async fn max_output_tokens_cuts_the_text_and_marks_the_response_incomplete() -> TestResult {
    let mock = Mock::start().await;
    let mut body = request("m");
    body["max_output_tokens"] = json!(16);
    let answer: Value = mock.responses(body.clone()).await.json_body().await;
    assert_eq!(answer["status"], "incomplete");
    assert_eq!(
        answer["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(answer["max_output_tokens"], 16);
    assert_eq!(answer["output"][0]["status"], "incomplete");
    let text = output_text(&answer)?;
    assert_eq!(text.split_whitespace().count(), 16);
    assert_eq!(answer["usage"]["output_tokens"], 16);

    let events = read_sse(mock.responses(streamed(body.clone())).await).await;
    let payloads = checked(&events)?;
    assert_eq!(terminal(&events)?, "response.incomplete");
    let last = payloads.last().ok_or("no events")?;
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(concat(&payloads, "response.output_text.delta"), text);

    // A limit the answer fits in changes nothing.
    body["max_output_tokens"] = json!(20);
    let answer: Value = mock.responses(body).await.json_body().await;
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["incomplete_details"], Value::Null);
    Ok(())
}

#[tokio::test]
async fn stream_events_come_in_openai_order_numbered_from_zero() -> TestResult {
    let mock = Mock::start().await;
    mock.state.set_faults("m", chunks(3));
    let response = mock.responses(streamed(request("m"))).await;
    let events = read_sse(response).await;
    let payloads = checked(&events)?;
    let expected = [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ];
    assert_eq!(names(&events), expected);
    assert_eq!(terminal(&events)?, "response.completed");

    let created = &payloads[0]["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["output"], json!([]));
    assert_eq!(created["usage"], Value::Null);
    assert_eq!(payloads[1]["response"], *created);
    let added = &payloads[2];
    assert_eq!(added["output_index"], 0);
    assert_eq!(added["item"]["status"], "in_progress");
    assert_eq!(added["item"]["content"], json!([]));
    let item_id = &added["item"]["id"];
    assert_eq!(
        payloads[3]["part"],
        json!({"type": "output_text", "text": "", "annotations": []})
    );
    for delta in &payloads[4..7] {
        assert_eq!(delta["item_id"], *item_id);
        assert_eq!(
            (&delta["output_index"], &delta["content_index"]),
            (&json!(0), &json!(0))
        );
        assert_eq!(delta["logprobs"], json!([]));
    }

    let text = concat(&payloads, "response.output_text.delta");
    assert_eq!(text, "Hello from the ");
    assert_eq!(payloads[7]["text"], text);
    assert_eq!(payloads[8]["part"]["text"], text);
    assert_eq!(payloads[9]["item"]["status"], "completed");
    assert_eq!(payloads[9]["item"]["content"][0]["text"], text);
    let completed = &payloads[10]["response"];
    assert_eq!(completed["id"], created["id"]);
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"][0], payloads[9]["item"]);
    assert_eq!(completed["usage"]["output_tokens"], 3);

    // The non-stream answer to the same prompt has the same text.
    let answer: Value = mock.responses(request("m")).await.json_body().await;
    assert_eq!(output_text(&answer)?, text);
    assert_eq!(mock.state.stats("m").completed, 2);
    Ok(())
}

#[tokio::test]
async fn function_call_argument_deltas_join_to_the_done_arguments() -> TestResult {
    let mock = Mock::start().await;
    let mut body = streamed(request("m"));
    body["tools"] = weather_tools();
    let events = read_sse(mock.responses(body).await).await;
    let payloads = checked(&events)?;
    assert_eq!(terminal(&events)?, "response.completed");
    let names = names(&events);
    let deltas = names
        .iter()
        .filter(|name| **name == "response.function_call_arguments.delta")
        .count();
    assert!(deltas > 5, "arguments come in several pieces: {names:?}");
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
    ];
    expected.extend(std::iter::repeat_n(
        "response.function_call_arguments.delta",
        deltas,
    ));
    expected.extend([
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, expected);

    let added = &payloads[2]["item"];
    assert_eq!(added["type"], "function_call");
    assert_eq!(added["arguments"], "");
    assert_eq!(added["status"], "in_progress");
    let arguments = concat(&payloads, "response.function_call_arguments.delta");
    let done = find(&payloads, "response.function_call_arguments.done")?;
    assert_eq!(done["arguments"], arguments);
    assert_eq!(done["name"], "get_weather");
    assert_eq!(done["item_id"], added["id"]);
    let item = &find(&payloads, "response.output_item.done")?["item"];
    assert_eq!(item["arguments"], arguments);
    assert_eq!(item["call_id"], added["call_id"]);
    assert_eq!(item["status"], "completed");
    let completed = &find(&payloads, "response.completed")?["response"];
    assert_eq!(completed["output"][0], *item);
    let parsed: Value = serde_json::from_str(&arguments)?;
    assert_eq!(parsed, json!({"location": "Paris", "unit": "celsius"}));
    Ok(())
}

#[tokio::test]
async fn an_injected_500_comes_before_any_answer() -> TestResult {
    let mock = Mock::start().await;
    let fail = FailNext {
        status: 500,
        count: 1,
        retry_after: None,
        body: None,
    };
    let faults = Faults {
        fail: Some(fail),
        ..Faults::default()
    };
    mock.state.set_faults("m", faults);
    let response = mock.responses(streamed(request("m"))).await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["content-type"], "application/json");
    let error: Value = response.json_body().await;
    assert_eq!(error["error"]["type"], "server_error");
    assert!(error["error"]["message"].is_string());
    assert_eq!(mock.responses(request("m")).await.status(), 200);
    let expected = ModelStats {
        requests: 2,
        completed: 1,
        cancelled: 0,
        failed_injected: 1,
    };
    assert_eq!(mock.state.stats("m"), expected);
    Ok(())
}

#[tokio::test]
async fn an_error_mid_stream_is_an_error_event_then_response_failed() -> TestResult {
    let mock = Mock::start().await;
    let faults = Faults {
        error_event_after_chunk: Some(2),
        ..Faults::default()
    };
    mock.state.set_faults("m", faults);
    let (events, broke) = SseReader::new(mock.responses(streamed(request("m"))).await)
        .read_to_end()
        .await;
    assert!(!broke, "the stream ends cleanly");
    let payloads = checked(&events)?;
    let expected = [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "error",
        "response.failed",
    ];
    assert_eq!(names(&events), expected);
    assert_eq!(terminal(&events)?, "response.failed");
    let error = &payloads[6];
    assert_eq!(error["code"], "server_error");
    assert_eq!(error["param"], Value::Null);
    let message = error["message"].as_str().ok_or("no message")?;
    let failed = &payloads[7]["response"];
    assert_eq!(failed["id"], payloads[0]["response"]["id"]);
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["error"],
        json!({"code": "server_error", "message": message})
    );
    let expected = ModelStats {
        requests: 1,
        failed_injected: 1,
        ..ModelStats::default()
    };
    assert_eq!(mock.state.stats("m"), expected);
    Ok(())
}

#[tokio::test]
async fn a_drop_mid_stream_sends_no_terminal_event() -> TestResult {
    let mock = Mock::start().await;
    let faults = Faults {
        drop_after_chunk: Some(1),
        ..Faults::default()
    };
    mock.state.set_faults("m", faults);
    let (events, broke) = SseReader::new(mock.responses(streamed(request("m"))).await)
        .read_to_end()
        .await;
    assert!(broke, "the body ends with a connection error");
    checked(&events)?;
    assert_eq!(
        events.len(),
        5,
        "four head events and one delta: {events:?}"
    );
    assert!(terminal(&events).is_err());
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_openai_shaped_400s_and_are_not_counted() -> TestResult {
    let mock = Mock::start().await;
    let url = mock.url("/v1/responses");
    let bodies = [
        ("{not json", "parse"),
        (r#"{"input": "hi"}"#, "'model'"),
        (r#"{"model": "m", "input": 3}"#, "input"),
        (
            r#"{"model": "m", "input": [{"role": "robot", "content": "hi"}]}"#,
            "'robot'",
        ),
        (
            r#"{"model": "m", "input": "hi", "max_output_tokens": 4}"#,
            "max_output_tokens",
        ),
        (
            r#"{"model": "m", "input": "hi", "tools": [{"type": "function"}]}"#,
            "'tools[0].name'",
        ),
    ];
    for (body, named) in bodies {
        let response = mock.client.post(&url).body(body).send().await?;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json_body().await;
        assert_eq!(error["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(error["error"]["param"], Value::Null);
        let message = error["error"]["message"].as_str().ok_or("no message")?;
        assert!(message.contains(named), "{body}: {message}");
    }
    assert!(mock.state.all_stats().is_empty());
    Ok(())
}

#[test]
fn the_grammar_check_rejects_gaps_and_two_terminals() {
    let event = |name: &str, sequence: u32| SseEvent {
        event: Some(name.to_owned()),
        data: json!({"type": name, "sequence_number": sequence}).to_string(),
    };
    let gap = [
        event("response.created", 0),
        event("response.in_progress", 2),
    ];
    assert!(checked(&gap).is_err());
    let twice = [event("response.completed", 0), event("response.failed", 1)];
    assert!(checked(&twice).is_ok());
    assert!(terminal(&twice).is_err());
    assert!(terminal(&twice[..1]).is_ok());
}
