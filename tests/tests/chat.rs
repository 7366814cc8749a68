//! The OpenAI Chat Completions surface through Keel against `keel mock`:
//! what the client gets must be what the upstream sent.

use keel_testkit::{
    sse_data, start_gateway, start_mock, without_volatile_fields, yaml_with_targets, TEST_KEY,
};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn request(stream: bool, extra: Value) -> Value {
    let mut body = json!({"model": "chat", "messages": [{"role": "user", "content": "Say hello"}], "stream": stream});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .bearer_auth(key)
        .json_body(body)
        .send()
        .await
}

trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}

#[tokio::test]
async fn non_stream_answers_match_the_upstream_and_name_the_provider() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml_with_targets(&[("first", &mock.base_url())]), &[]).await?;
    let client = reqwest::Client::new();
    let body = request(false, json!({"seed": 7, "x_unknown_field": {"kept": true}}));
    let through = post(
        &client,
        &gateway.url("/v1/chat/completions"),
        TEST_KEY,
        &body,
    )
    .await?;
    assert_eq!(through.status(), 200);
    assert_eq!(through.headers()["x-keel-provider"], "first");
    assert_eq!(through.headers()["x-keel-model"], "gpt-mock");
    assert_eq!(through.headers()["x-keel-attempts"], "1");
    assert!(through.headers().contains_key("x-request-id"));
    let through: Value = serde_json::from_slice(&through.bytes().await?)?;

    let mut direct_body = body.clone();
    direct_body["model"] = json!("gpt-mock");
    let direct: Value = serde_json::from_slice(
        &post(
            &client,
            &format!("{}/chat/completions", mock.base_url()),
            "",
            &direct_body,
        )
        .await?
        .bytes()
        .await?,
    )?;
    assert_eq!(
        without_volatile_fields(through),
        without_volatile_fields(direct)
    );
    assert_eq!(mock.state.stats("gpt-mock").requests, 2);
    Ok(())
}

#[tokio::test]
async fn streams_carry_every_upstream_chunk_usage_and_done() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml_with_targets(&[("first", &mock.base_url())]), &[]).await?;
    let client = reqwest::Client::new();
    let body = request(true, json!({"stream_options": {"include_usage": true}}));
    let response = post(
        &client,
        &gateway.url("/v1/chat/completions"),
        TEST_KEY,
        &body,
    )
    .await?;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let through = sse_data(&response.text().await?);

    let mut direct_body = body.clone();
    direct_body["model"] = json!("gpt-mock");
    let direct = sse_data(
        &post(
            &client,
            &format!("{}/chat/completions", mock.base_url()),
            "",
            &direct_body,
        )
        .await?
        .text()
        .await?,
    );
    assert_eq!(through.len(), direct.len());
    assert_eq!(through.last().map(String::as_str), Some("[DONE]"));
    for (ours, theirs) in through
        .iter()
        .zip(&direct)
        .filter(|(ours, _)| *ours != "[DONE]")
    {
        let (ours, theirs): (Value, Value) =
            (serde_json::from_str(ours)?, serde_json::from_str(theirs)?);
        assert_eq!(
            without_volatile_fields(ours),
            without_volatile_fields(theirs)
        );
    }
    let usage: Value = serde_json::from_str(&through[through.len() - 2])?;
    assert!(
        usage["usage"]["total_tokens"]
            .as_u64()
            .is_some_and(|tokens| tokens > 0),
        "{usage}"
    );
    Ok(())
}

#[tokio::test]
async fn tool_call_deltas_arrive_intact() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml_with_targets(&[("first", &mock.base_url())]), &[]).await?;
    let tools = json!({"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]});
    let client = reqwest::Client::new();
    let streamed = post(
        &client,
        &gateway.url("/v1/chat/completions"),
        TEST_KEY,
        &request(true, tools.clone()),
    )
    .await?
    .text()
    .await?;
    let mut arguments = String::new();
    let mut finish = None;
    for data in sse_data(&streamed).iter().filter(|data| *data != "[DONE]") {
        let chunk: Value = serde_json::from_str(data)?;
        if let Some(piece) =
            chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        {
            arguments.push_str(piece);
        }
        if let Some(reason) = chunk["choices"][0]["finish_reason"].as_str() {
            finish = Some(reason.to_owned());
        }
    }
    let whole: Value = serde_json::from_slice(
        &post(
            &client,
            &gateway.url("/v1/chat/completions"),
            TEST_KEY,
            &request(false, tools),
        )
        .await?
        .bytes()
        .await?,
    )?;
    let call = &whole["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&arguments)?,
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap_or("null"))?
    );
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    Ok(())
}

#[tokio::test]
async fn models_are_listed_in_openai_shape() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml_with_targets(&[("first", &mock.base_url())]), &[]).await?;
    let response = reqwest::Client::new()
        .get(gateway.url("/v1/models"))
        .bearer_auth(TEST_KEY)
        .send()
        .await?;
    let list: Value = serde_json::from_slice(&response.bytes().await?)?;
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], "chat");
    assert_eq!(list["data"][0]["object"], "model");
    Ok(())
}

#[tokio::test]
async fn one_model_is_retrieved_in_openai_shape_and_others_are_404() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml_with_targets(&[("first", &mock.base_url())]), &[]).await?;
    let client = reqwest::Client::new();
    let found = client
        .get(gateway.url("/v1/models/chat"))
        .bearer_auth(TEST_KEY)
        .send()
        .await?;
    assert_eq!(found.status(), 200);
    let model: Value = serde_json::from_slice(&found.bytes().await?)?;
    assert_eq!(
        model,
        serde_json::json!({"id": "chat", "object": "model", "created": 0, "owned_by": "keel"})
    );
    for id in ["gpt-mock", "org/chat"] {
        let missing = client
            .get(gateway.url(&format!("/v1/models/{id}")))
            .bearer_auth(TEST_KEY)
            .send()
            .await?;
        assert_eq!(missing.status(), 404, "{id}");
        let error: Value = serde_json::from_slice(&missing.bytes().await?)?;
        assert_eq!(error["error"]["code"], "model_not_found", "{error}");
        assert_eq!(error["error"]["param"], "model", "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    }
    let anonymous = client.get(gateway.url("/v1/models/chat")).send().await?;
    assert_eq!(anonymous.status(), 401);
    Ok(())
}

#[tokio::test]
async fn models_whose_providers_are_all_disabled_are_not_listed() -> TestResult {
    let mock = start_mock().await?;
    let base_url = mock.base_url();
    // `keyed` is disabled: its api_key variable is unset. `solo` has only
    // that provider; `backed` has it too, but falls back to a served model;
    // `mixed` has an enabled target beside the disabled one.
    let yaml = format!(
        "tenants: [{{name: test, keys: [\"{TEST_KEY}\"]}}]
providers:
  keyed: {{kind: openai, base_url: \"{base_url}\", api_key: \"${{UNSET_KEY}}\"}}
  open: {{kind: openai, base_url: \"{base_url}\"}}
models:
  solo: {{targets: [{{provider: keyed, model: m}}]}}
  backed: {{targets: [{{provider: keyed, model: m}}], fallback: [mixed]}}
  mixed: {{targets: [{{provider: keyed, model: m}}, {{provider: open, model: m}}]}}
"
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let response = reqwest::Client::new()
        .get(gateway.url("/v1/models"))
        .bearer_auth(TEST_KEY)
        .send()
        .await?;
    let list: Value = serde_json::from_slice(&response.bytes().await?)?;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .ok_or("no data")?
        .iter()
        .filter_map(|model| model["id"].as_str())
        .collect();
    assert_eq!(ids, ["backed", "mixed"], "{list}");
    Ok(())
}

/// The routes that carry model traffic are served straight through their
/// steps, or through axum's router when CORS is on (its layer wraps every
/// route): both answer each kind of request alike, refusals, streams, the
/// other front ends and an idempotent replay included.
#[tokio::test]
async fn the_direct_path_and_the_router_answer_alike() -> TestResult {
    let mock = start_mock().await?;
    let targets = format!(
        "{}  embed:\n    endpoint: embeddings\n    targets: [{{provider: up, model: embed-mock}}]\n",
        yaml_with_targets(&[("up", &mock.base_url())])
    );
    let direct = start_gateway(&format!("server: {{max_body: 2KiB}}\n{targets}"), &[]).await?;
    let routed = format!(
        "server: {{max_body: 2KiB, cors: {{origins: [\"https://app.example\"]}}}}\n{targets}"
    );
    let routed = start_gateway(&routed, &[]).await?;
    let client = reqwest::Client::new();
    let chat = "/v1/chat/completions";
    let answer = request(false, json!({})).to_string();
    let messages =
        json!({"model": "chat", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    let mut messages_stream = messages.clone();
    messages_stream["stream"] = json!(true);
    let cases = [
        ("an answer", chat, Some(TEST_KEY), answer.clone(), None),
        (
            "a stream",
            chat,
            Some(TEST_KEY),
            request(true, json!({})).to_string(),
            None,
        ),
        ("no key", chat, None, answer.clone(), None),
        ("not JSON", chat, Some(TEST_KEY), String::from("{"), None),
        (
            "over max_body",
            chat,
            Some(TEST_KEY),
            request(false, json!({"user": "x".repeat(3000)})).to_string(),
            None,
        ),
        (
            "an unknown model",
            chat,
            Some(TEST_KEY),
            json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
            None,
        ),
        (
            "an idempotency key",
            chat,
            Some(TEST_KEY),
            answer.clone(),
            Some("k-1"),
        ),
        (
            "its replay",
            chat,
            Some(TEST_KEY),
            answer.clone(),
            Some("k-1"),
        ),
        (
            "a message",
            "/v1/messages",
            Some(TEST_KEY),
            messages.to_string(),
            None,
        ),
        (
            "a message streamed",
            "/v1/messages",
            Some(TEST_KEY),
            messages_stream.to_string(),
            None,
        ),
        (
            "a message without a key",
            "/v1/messages",
            None,
            messages.to_string(),
            None,
        ),
        (
            "a response",
            "/v1/responses",
            Some(TEST_KEY),
            json!({"model": "chat", "input": "hi"}).to_string(),
            None,
        ),
        (
            "embeddings",
            "/v1/embeddings",
            Some(TEST_KEY),
            json!({"model": "embed", "input": "hi"}).to_string(),
            None,
        ),
    ];
    for (case, path, key, body, idempotency_key) in cases {
        let mut answers = Vec::new();
        for gateway in [&direct, &routed] {
            let mut post = client
                .post(gateway.url(path))
                .header("content-type", "application/json")
                .body(body.clone());
            if let Some(key) = key {
                post = post.bearer_auth(key);
            }
            if let Some(idempotency_key) = idempotency_key {
                post = post.header("idempotency-key", idempotency_key);
            }
            answers.push(comparable(post.send().await?).await?);
        }
        assert_eq!(answers[0], answers[1], "{case}");
    }
    // Two of each answer made upstream: the chat answer, stream and
    // idempotent first try, two messages, a response; one embedding.
    assert_eq!(mock.state.stats("gpt-mock").requests, 12);
    assert_eq!(mock.state.stats("embed-mock").requests, 2);
    Ok(())
}

/// A response's status, headers and body, without what differs from one
/// response to the next (ids and times, whose presence is kept; CORS's
/// `vary`).
async fn comparable(
    response: reqwest::Response,
) -> Result<(u16, Vec<(String, String)>, Vec<Value>), Box<dyn std::error::Error>> {
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str() != "vary")
        .map(|(name, value)| {
            let value = match name.as_str() {
                "x-request-id" | "request-id" | "date" => "(varies)",
                _ => value.to_str()?,
            };
            Ok((name.to_string(), value.to_owned()))
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    headers.sort();
    let text = response.text().await?;
    let body = match serde_json::from_str::<Value>(&text) {
        Ok(value) => vec![value],
        Err(_) => sse_data(&text)
            .iter()
            .map(|data| serde_json::from_str(data).unwrap_or(Value::String(data.clone())))
            .collect(),
    };
    let body = body.into_iter().map(without_varying).collect();
    Ok((status, headers, body))
}

/// [`without_volatile_fields`], and the Responses API's `created_at` and
/// the request id in Anthropic's error body.
fn without_varying(value: Value) -> Value {
    let mut value = without_volatile_fields(value);
    remove_varying(&mut value);
    value
}

fn remove_varying(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("created_at");
            map.remove("request_id");
            map.values_mut().for_each(remove_varying);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_varying),
        _ => {}
    }
}
