//! Each fault of a plan, observed over real HTTP.

use std::time::Duration;

use keel_mock::{FailNext, Faults, HeavyTail, ModelStats};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::support::{json, names, Mock, RequestJson, ResponseJson, SseReader};

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

fn messages(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]})
}

fn fail(status: u16, count: u32, retry_after: Option<&str>) -> Faults {
    let fail = FailNext {
        status,
        count,
        retry_after: retry_after.map(str::to_owned),
        body: None,
    };
    Faults {
        fail: Some(fail),
        ..Faults::default()
    }
}

#[tokio::test]
async fn fail_next_n_answers_status_with_retry_after_then_succeeds() {
    let mock = Mock::start().await;
    mock.state.set_faults("m", fail(429, 2, Some("7")));
    for _ in 0..2 {
        let response = mock.openai(chat("m", false)).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        let error: Value = response.json_body().await;
        assert_eq!(error["error"]["code"], "rate_limit_exceeded");
        assert!(error["error"]["message"].is_string());
    }
    assert_eq!(mock.openai(chat("m", false)).await.status(), 200);
    let expected = ModelStats {
        requests: 3,
        completed: 1,
        cancelled: 0,
        failed_injected: 2,
    };
    assert_eq!(mock.state.stats("m"), expected);
}

#[tokio::test]
async fn anthropic_529_is_an_overloaded_error_and_custom_bodies_are_sent_verbatim() {
    let mock = Mock::start().await;
    mock.state.set_faults("c", fail(529, 1, None));
    let response = mock.anthropic(messages("c", true)).await;
    assert_eq!(response.status(), 529);
    assert!(response.headers().get("retry-after").is_none());
    let error: Value = response.json_body().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "overloaded_error");

    let mut faults = fail(500, 1, None);
    faults.fail.as_mut().unwrap().body = Some(json!({"custom": true}));
    mock.state.set_faults("c", faults);
    let response = mock.anthropic(messages("c", false)).await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.json_body::<Value>().await, json!({"custom": true}));
}

#[tokio::test]
async fn wildcard_plan_applies_to_models_without_their_own() {
    let mock = Mock::start().await;
    mock.state.set_faults("*", fail(503, 5, None));
    mock.state.set_faults("healthy", Faults::default());
    let response = mock.openai(chat("any-model", false)).await;
    assert_eq!(response.status(), 503);
    let error: Value = response.json_body().await;
    assert_eq!(error["error"]["type"], "server_error");
    assert_eq!(mock.openai(chat("healthy", false)).await.status(), 200);
    assert_eq!(mock.state.stats("any-model").failed_injected, 1);
}

#[tokio::test]
async fn the_models_list_fails_under_its_own_plan_and_counts_under_its_name() {
    let mock = Mock::start().await;
    let list = |mock: &Mock| mock.client.get(mock.url("/v1/models")).send();
    mock.state
        .set_faults(keel_mock::MODELS_LIST, fail(503, 1, None));
    let response = list(&mock).await.unwrap();
    assert_eq!(response.status(), 503);
    let error: Value = response.json_body().await;
    assert_eq!(error["error"]["type"], "server_error");
    assert_eq!(list(&mock).await.unwrap().status(), 200);
    let expected = ModelStats {
        requests: 2,
        completed: 1,
        cancelled: 0,
        failed_injected: 1,
    };
    assert_eq!(mock.state.stats(keel_mock::MODELS_LIST), expected);
}

#[tokio::test]
async fn stall_stops_after_k_chunks_and_a_client_drop_counts_cancelled() {
    let mock = Mock::start().await;
    mock.state.set_faults(
        "m",
        Faults {
            stall_after_chunk: Some(3),
            ..Faults::default()
        },
    );
    let mut reader = SseReader::new(mock.openai(chat("m", true)).await);
    for expected in ["", "Hello ", "from ", "the "] {
        let event = reader.next().await.unwrap().unwrap();
        assert_eq!(json(&event)["choices"][0]["delta"]["content"], expected);
    }
    let more = tokio::time::timeout(Duration::from_millis(300), reader.next()).await;
    assert!(
        more.is_err(),
        "the stream stalls and the connection stays open"
    );
    assert_eq!(mock.state.stats("m").cancelled, 0);
    drop(reader);
    let stats = mock.wait_for_stats("m", |stats| stats.cancelled == 1).await;
    assert_eq!(stats.completed, 0);
}

#[tokio::test]
async fn drop_closes_the_connection_without_done() {
    let mock = Mock::start().await;
    mock.state.set_faults(
        "m",
        Faults {
            drop_after_chunk: Some(2),
            ..Faults::default()
        },
    );
    let (events, broke) = SseReader::new(mock.openai(chat("m", true)).await)
        .read_to_end()
        .await;
    assert!(broke, "the body ends with a connection error");
    assert_eq!(
        events.len(),
        3,
        "role chunk and two content chunks: {events:?}"
    );
    assert!(events.iter().all(|event| event.data != "[DONE]"));
    let stats = mock
        .wait_for_stats("m", |stats| stats.failed_injected == 1)
        .await;
    assert_eq!((stats.completed, stats.cancelled), (0, 0));
}

#[tokio::test]
async fn in_band_error_event_ends_an_openai_stream() {
    let mock = Mock::start().await;
    mock.state.set_faults(
        "m",
        Faults {
            error_event_after_chunk: Some(2),
            ..Faults::default()
        },
    );
    let (events, broke) = SseReader::new(mock.openai(chat("m", true)).await)
        .read_to_end()
        .await;
    assert!(!broke);
    assert_eq!(events.len(), 4);
    let error = json(&events[3]);
    assert_eq!(error["error"]["type"], "server_error");
    assert!(error["error"]["message"].is_string());
    assert_eq!(mock.state.stats("m").failed_injected, 1);
}

#[tokio::test]
async fn in_band_error_event_ends_an_anthropic_stream() {
    let mock = Mock::start().await;
    mock.state.set_faults(
        "c",
        Faults {
            error_event_after_chunk: Some(1),
            ..Faults::default()
        },
    );
    let (events, broke) = SseReader::new(mock.anthropic(messages("c", true)).await)
        .read_to_end()
        .await;
    assert!(!broke);
    let expected = [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "error",
    ];
    assert_eq!(names(&events), expected);
    assert_eq!(json(&events[4])["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn first_token_delay_holds_the_json_head_but_not_the_stream_head() {
    let mock = Mock::start().await;
    let delay = Duration::from_millis(600);
    mock.state.set_faults(
        "m",
        Faults {
            first_token_delay_ms: 600,
            ..Faults::default()
        },
    );
    let started = Instant::now();
    assert_eq!(mock.openai(chat("m", false)).await.status(), 200);
    assert!(started.elapsed() >= delay);

    let started = Instant::now();
    let mut reader = SseReader::new(mock.openai(chat("m", true)).await);
    let role = reader.next().await.unwrap().unwrap();
    assert_eq!(json(&role)["choices"][0]["delta"]["role"], "assistant");
    assert!(
        started.elapsed() < delay,
        "head and role chunk come at once"
    );
    reader.next().await.unwrap().unwrap();
    assert!(started.elapsed() >= delay, "the first content chunk waits");
}

#[tokio::test]
async fn headers_delay_holds_the_stream_head() {
    let mock = Mock::start().await;
    mock.state.set_faults(
        "c",
        Faults {
            headers_delay_ms: 300,
            ..Faults::default()
        },
    );
    let started = Instant::now();
    let response = mock.anthropic(messages("c", true)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn chunk_delay_spaces_content_chunks_in_time() {
    let mock = Mock::start().await;
    mock.state.set_faults(
        "m",
        Faults {
            chunk_delay_ms: 60,
            chunks: Some(4),
            ..Faults::default()
        },
    );
    let mut reader = SseReader::new(mock.openai(chat("m", true)).await);
    reader.next().await.unwrap().unwrap();
    reader.next().await.unwrap().unwrap();
    let first_content = Instant::now();
    for _ in 0..3 {
        reader.next().await.unwrap().unwrap();
    }
    assert!(first_content.elapsed() >= Duration::from_millis(180));
    assert_eq!(reader.read_to_end().await.0.last().unwrap().data, "[DONE]");
}

#[tokio::test]
async fn client_leaving_during_first_token_delay_counts_cancelled() {
    let mock = Mock::start().await;
    mock.state.set_faults(
        "m",
        Faults {
            first_token_delay_ms: 60_000,
            ..Faults::default()
        },
    );
    let request = mock
        .client
        .post(mock.url("/v1/chat/completions"))
        .json_body(&chat("m", false));
    let result = request.timeout(Duration::from_millis(200)).send().await;
    assert!(result.unwrap_err().is_timeout());
    let stats = mock.wait_for_stats("m", |stats| stats.cancelled == 1).await;
    assert_eq!((stats.requests, stats.completed), (1, 0));
}

#[tokio::test]
async fn non_stream_stall_sends_the_head_then_nothing() {
    let mock = Mock::start().await;
    mock.state.set_faults(
        "m",
        Faults {
            stall_after_chunk: Some(0),
            ..Faults::default()
        },
    );
    let response = mock.openai(chat("m", false)).await;
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(Duration::from_millis(300), response.bytes()).await;
    assert!(body.is_err(), "the body never arrives");
    mock.wait_for_stats("m", |stats| stats.cancelled == 1).await;
}

#[tokio::test]
async fn heavy_tail_slows_exactly_one_request_in_n() {
    let mock = Mock::start().await;
    let tail = HeavyTail {
        one_in: 3,
        factor: 40.0,
    };
    mock.state.set_faults(
        "m",
        Faults {
            heavy_tail: Some(tail),
            ..Faults::default()
        },
    );
    let mut slow = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        assert_eq!(mock.openai(chat("m", false)).await.status(), 200);
        // The base is 10 ms without a first-token delay, so slow requests take 400 ms.
        slow.push(started.elapsed() >= Duration::from_millis(350));
    }
    assert_eq!(slow, [false, false, true, false, false, true]);
}

#[tokio::test]
async fn non_stream_drop_sends_the_head_then_breaks_the_body() {
    let mock = Mock::start().await;
    mock.state.set_faults(
        "c",
        Faults {
            drop_after_chunk: Some(0),
            ..Faults::default()
        },
    );
    let response = mock.anthropic(messages("c", false)).await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err());
    mock.wait_for_stats("c", |stats| stats.failed_injected == 1)
        .await;
}
