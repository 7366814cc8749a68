//! Trust boundaries end to end: a hostile upstream of our own (an axum
//! server on 127.0.0.1) sends each bad answer Keel must survive, while
//! another tenant's normal load runs against `keel mock`; the process stays
//! up and the other tenant is served throughout. Hostile clients too:
//! duplicate keys, slow bodies, silent connections, too many requests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use keel_testkit::{sse_data, start_gateway, start_mock, Gateway, Mock};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const HOSTILE_KEY: &str = "sk-hostile-tenant";
const CALM_KEY: &str = "sk-calm-tenant";
const ADMIN: &str = "sk-admin";
/// What the hostile upstream's 401 body holds: it must never reach a client.
const LEAKED: &str = "sk-live-SECRETFRAGMENT";

/// A chunk of an OpenAI stream.
fn chunk(content: &str, finish: Option<&str>) -> String {
    json!({"id": "h", "object": "chat.completion.chunk", "created": 1, "model": "hostile",
           "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]})
    .to_string()
}

fn sse(body: String) -> Response {
    let mut response = Body::from(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// The hostile upstream: what it does is picked by the request's `model`.
async fn hostile(body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let model = request["model"].as_str().unwrap_or_default();
    match model {
        "usage-max" => axum::Json(json!({
            "id": "h", "object": "chat.completion", "created": 1, "model": "hostile",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": u64::MAX, "completion_tokens": u64::MAX, "total_tokens": u64::MAX}
        }))
        .into_response(),
        "retry-after-max" => {
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static("18446744073709551615"),
            );
            response
        }
        "unauthorized" => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"message": format!("Incorrect API key provided: {LEAKED}"), "type": "invalid_request_error"}})),
        )
            .into_response(),
        "huge-body" => {
            // 4 MiB of JSON, over the gateway's 1 MiB max_upstream_body.
            let padding = "x".repeat(4 << 20);
            axum::Json(json!({"choices": [{"message": {"content": padding}, "finish_reason": "stop"}], "usage": {"total_tokens": 1}}))
                .into_response()
        }
        "long-line" => sse(format!("data: {}\n\n", "x".repeat(2 << 20))),
        "multi-line" => {
            // One chunk whose JSON spans two `data:` lines (valid SSE).
            let first = chunk("multi", None);
            // Split between two members, so each line is a piece of JSON
            // text and the joined data (with its newline) is valid JSON.
            let cut = first.find(",\"created\"").map_or(0, |at| at + 1);
            let (head, tail) = first.split_at(cut);
            sse(format!(
                "data: {head}\ndata: {tail}\n\ndata: {}\n\ndata: [DONE]\n\n",
                chunk("", Some("stop"))
            ))
        }
        "done-no-finish" => sse(format!("data: {}\n\ndata: [DONE]\n\n", chunk("cut", None))),
        _ => (StatusCode::NOT_FOUND, "unknown hostile model").into_response(),
    }
}

/// An Anthropic stream whose content block index would once have sized a
/// vector of 32 GB.
async fn hostile_anthropic() -> Response {
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "c", "content": [], "usage": {"input_tokens": 1, "output_tokens": 0}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 4_000_000_000u64, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 4_000_000_000u64, "delta": {"type": "text_delta", "text": "boom"}}),
        ),
    ];
    let body: String = events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    sse(body)
}

async fn start_hostile() -> Result<std::net::SocketAddr, std::io::Error> {
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(hostile))
        .route("/v1/messages", axum::routing::post(hostile_anthropic));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

fn yaml(hostile: std::net::SocketAddr, mock: &Mock) -> String {
    let models: String = [
        "usage-max",
        "retry-after-max",
        "unauthorized",
        "huge-body",
        "long-line",
        "multi-line",
        "done-no-finish",
    ]
    .iter()
    .map(|model| format!("  {model}:\n    targets: [{{provider: hostile, model: {model}}}]\n"))
    .collect();
    format!(
        "server: {{admin_key: {ADMIN}, max_upstream_body: 1MiB, body_timeout: 1s, max_body: 64KiB}}\n\
         jobs: {{workers: 1}}\n\
         tenants:\n  - {{name: hostile, keys: [\"{HOSTILE_KEY}\"], limits: {{tpm: 100000, max_in_flight: 4, max_queued_jobs: 2}}}}\n  - {{name: calm, keys: [\"{CALM_KEY}\"]}}\n\
         providers:\n  hostile:\n    kind: openai\n    base_url: http://{hostile}/v1\n    retry: {{attempts: 1}}\n\
         \x20 hostile-anthropic:\n    kind: anthropic\n    base_url: http://{hostile}\n    api_key: sk-ant\n    retry: {{attempts: 1}}\n\
         \x20 good:\n    kind: openai\n    base_url: {}\n    retry: {{attempts: 1}}\n\
         models:\n{models}\
         \x20 then-good:\n    targets: [{{provider: hostile, model: unauthorized}}, {{provider: hostile, model: retry-after-max}}, {{provider: good, model: gpt-mock}}]\n\
         \x20 anthropic-index:\n    targets: [{{provider: hostile-anthropic, model: c}}, {{provider: good, model: gpt-mock}}]\n\
         \x20 calm:\n    targets: [{{provider: good, model: gpt-mock}}]\n",
        mock.base_url()
    )
}

struct Setup {
    mock: Mock,
    gateway: Gateway,
    client: reqwest::Client,
}

impl Setup {
    async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let hostile = start_hostile().await?;
        let mock = start_mock().await?;
        let gateway = start_gateway(&yaml(hostile, &mock), &[]).await?;
        Ok(Self {
            mock,
            gateway,
            client: reqwest::Client::new(),
        })
    }

    async fn chat(&self, key: &str, body: String) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(self.gateway.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
    }
}

fn ask(model: &str, stream: bool) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
        .to_string()
}

/// Runs the calm tenant's requests until `stop`; counts the answers that
/// were not 200.
async fn calm_load(setup: &Setup, stop: Arc<AtomicBool>) -> (u64, u64) {
    let (mut ok, mut bad) = (0, 0);
    // Bounded: at most 2,000 requests, whatever happens.
    for _ in 0..2_000 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match setup.chat(CALM_KEY, ask("calm", false)).await {
            Ok(response) if response.status() == 200 => ok += 1,
            _ => bad += 1,
        }
    }
    (ok, bad)
}

/// Every hostile answer at once, while another tenant's load runs: each is
/// handled as the README's "Hostile clients and upstreams" says, the process stays up, and
/// the calm tenant gets every answer.
#[tokio::test]
async fn hostile_upstreams_cannot_crash_keel_or_disturb_another_tenant() -> TestResult {
    let setup = Setup::start().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let load = calm_load(&setup, stop.clone());
    let hostile = async {
        let result = hostile_round(&setup).await;
        stop.store(true, Ordering::SeqCst);
        result
    };
    let ((ok, bad), result) = tokio::join!(load, hostile);
    result?;
    assert!(ok > 0, "the calm tenant was served");
    assert_eq!(bad, 0, "the calm tenant never got an error ({ok} answered)");
    let healthy = setup
        .client
        .get(setup.gateway.url("/healthz"))
        .send()
        .await?;
    assert_eq!(healthy.status(), 200, "the process is alive");
    assert!(setup.mock.state.stats("gpt-mock").requests >= ok);
    Ok(())
}

async fn hostile_round(setup: &Setup) -> TestResult {
    // 4: a usage of u64::MAX is clamped: the tenant's bucket is in debt for
    // an hour at most, and answers with a sane 429 instead of panicking.
    let response = setup.chat(HOSTILE_KEY, ask("usage-max", false)).await?;
    assert_eq!(response.status(), 200);
    response.bytes().await?;
    let after = setup.chat(HOSTILE_KEY, ask("calm", false)).await?;
    assert_eq!(
        after.status(),
        429,
        "an hour of debt at most: refused, not broken"
    );
    let retry_after: u64 = after.headers()["retry-after"].to_str()?.parse()?;
    assert!(retry_after <= 24 * 3600, "a sane wait: {retry_after}");

    // 3 and 4: 401 (with a key fragment) and a 503 with Retry-After 2^64
    // fail over to the healthy target.
    let response = setup.chat(CALM_KEY, ask("then-good", false)).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-keel-provider"], "good");
    assert_eq!(response.headers()["x-keel-attempts"], "3");

    // 3: with no target left, 502 naming provider and status, no body.
    let response = setup.chat(CALM_KEY, ask("unauthorized", false)).await?;
    assert_eq!(response.status(), 502);
    let text = response.text().await?;
    assert!(
        !text.contains(LEAKED),
        "the upstream body stays in the log: {text}"
    );
    let error: Value = serde_json::from_str(&text)?;
    assert_eq!(error["error"]["type"], "upstream_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'hostile'") && m.contains("401")),
        "{error}"
    );

    // 4: Retry-After of 2^64 s is not passed on.
    let response = setup.chat(CALM_KEY, ask("retry-after-max", false)).await?;
    assert_eq!(response.status(), 502);
    if let Some(value) = response.headers().get("retry-after") {
        let seconds: u64 = value.to_str()?.parse()?;
        assert!((1..=60).contains(&seconds), "{seconds}");
    }

    // 5: a 4 MiB answer over max_upstream_body (1 MiB) and a 2 MiB SSE line.
    for model in ["huge-body", "long-line"] {
        let stream = model == "long-line";
        let response = setup.chat(CALM_KEY, ask(model, stream)).await?;
        assert_eq!(response.status(), 502, "{model}");
        let text = response.text().await?;
        assert!(text.contains("invalid response"), "{model}: {text}");
    }

    // 10: multi-line data reaches the client as several data lines of one event.
    let response = setup.chat(CALM_KEY, ask("multi-line", true)).await?;
    let body = response.text().await?;
    let first: Value = serde_json::from_str(&sse_data(&body)[0])?;
    assert_eq!(first["choices"][0]["delta"]["content"], "multi");

    // 11: [DONE] without a finish_reason is reported, not passed off as an end.
    let response = setup.chat(CALM_KEY, ask("done-no-finish", true)).await?;
    let body = response.text().await?;
    assert!(body.contains("upstream_stream_error"), "{body}");

    // 4: a block index of 4,000,000,000 ends that attempt; the next target answers.
    let response = setup.chat(CALM_KEY, ask("anthropic-index", true)).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-keel-provider"], "good");
    response.text().await?;
    Ok(())
}

/// 2: duplicate top-level keys are refused before anything is sent, so a
/// body read two ways cannot trip a breaker for everyone.
#[tokio::test]
async fn duplicate_keys_are_refused_and_never_reach_an_upstream() -> TestResult {
    let setup = Setup::start().await?;
    for _ in 0..20 {
        let body = r#"{"model":"calm","stream":false,"messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let response = setup.chat(HOSTILE_KEY, body.to_owned()).await?;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await?;
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("'stream' more than once")),
            "{error}"
        );
    }
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 0);
    let calm = setup.chat(CALM_KEY, ask("calm", false)).await?;
    assert_eq!(calm.status(), 200);
    Ok(())
}

/// 6: a body that trickles in is cut at `server.body_timeout` (408); a
/// connection that never sends its headers is closed after the header clock.
#[tokio::test]
async fn slow_bodies_get_408_and_silent_connections_are_closed() -> TestResult {
    let setup = Setup::start().await?;
    let mut socket = tokio::net::TcpStream::connect(setup.gateway.addr).await?;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {HOSTILE_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
    );
    socket.write_all(head.as_bytes()).await?;
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");

    let mut silent = tokio::net::TcpStream::connect(setup.gateway.addr).await?;
    let mut buffer = [0u8; 64];
    // The header clock is 10 s; a generous hang guard above it.
    let closed = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut buffer)).await?;
    assert!(
        matches!(closed, Ok(0) | Err(_)),
        "the silent connection was closed"
    );
    Ok(())
}

/// 6: a tenant's `max_in_flight` and `max_queued_jobs`.
#[tokio::test]
async fn a_tenant_is_held_to_its_concurrency_and_queue_caps() -> TestResult {
    let setup = Setup::start().await?;
    setup.mock.state.set_faults(
        "gpt-mock",
        keel_testkit::Faults {
            first_token_delay_ms: 300,
            ..keel_testkit::Faults::default()
        },
    );
    let answers =
        futures_util::future::join_all((0..8).map(|_| setup.chat(HOSTILE_KEY, ask("calm", true))))
            .await;
    let mut statuses: Vec<u16> = Vec::new();
    for answer in answers {
        let response = answer?;
        statuses.push(response.status().as_u16());
        response.bytes().await?;
    }
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 429).count(),
        4,
        "{statuses:?}"
    );
    let calm = setup.chat(CALM_KEY, ask("calm", false)).await?;
    assert_eq!(calm.status(), 200, "another tenant is not held by it");

    let submit = || {
        setup
            .client
            .post(setup.gateway.url("/v1/jobs"))
            .bearer_auth(HOSTILE_KEY)
            .json(&json!({"request": {"model": "calm", "messages": [{"role": "user", "content": "hi"}]}}))
            .send()
    };
    // Workers may start jobs meanwhile; at most 2 are ever queued, so some
    // of 20 quick submissions are refused.
    let mut refused = 0;
    for _ in 0..20 {
        let response = submit().await?;
        match response.status().as_u16() {
            202 => {}
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0, "max_queued_jobs: 2 refused none of 20");
    Ok(())
}

/// 7: `/metrics` needs the admin key when one is set.
#[tokio::test]
async fn metrics_need_the_admin_key() -> TestResult {
    let setup = Setup::start().await?;
    let url = setup.gateway.url("/metrics");
    assert_eq!(setup.client.get(&url).send().await?.status(), 401);
    assert_eq!(
        setup
            .client
            .get(&url)
            .bearer_auth(CALM_KEY)
            .send()
            .await?
            .status(),
        401
    );
    let scraped = setup.client.get(&url).bearer_auth(ADMIN).send().await?;
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await?.contains("keel_requests_total"));
    Ok(())
}

/// 6: bodies that trickle in hold their tenant's slots, never the
/// instance's: with `server.max_in_flight: 2`, a tenant holding two slow
/// bodies open (and refused a third by its own cap) leaves the instance free
/// for everyone else.
#[tokio::test]
async fn slow_bodies_hold_their_tenants_slots_not_the_instances() -> TestResult {
    let mock = start_mock().await?;
    let yaml = format!(
        "server: {{max_in_flight: 2, body_timeout: 20s}}\n\
         tenants:\n  - {{name: slow, keys: [\"{HOSTILE_KEY}\"], limits: {{max_in_flight: 2}}}}\n  - {{name: calm, keys: [\"{CALM_KEY}\"]}}\n\
         providers:\n  good: {{kind: openai, base_url: \"{}\"}}\n\
         models:\n  calm: {{targets: [{{provider: good, model: gpt-mock}}]}}\n",
        mock.base_url()
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {HOSTILE_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut socket = tokio::net::TcpStream::connect(gateway.addr).await?;
        socket.write_all(head.as_bytes()).await?;
        held.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = reqwest::Client::new();
    let third = client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(HOSTILE_KEY)
        .body(ask("calm", false))
        .send()
        .await?;
    assert_eq!(third.status(), 429, "the slow tenant is at its own cap");
    for _ in 0..3 {
        let calm = client
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth(CALM_KEY)
            .body(ask("calm", false))
            .send()
            .await?;
        assert_eq!(calm.status(), 200, "the instance's slots are free");
    }
    drop(held);
    Ok(())
}

/// 11: a request with more header fields than Keel reads gets a 431 in
/// the error shape, not an empty one.
#[tokio::test]
async fn too_many_headers_get_a_431_that_says_so() -> TestResult {
    let setup = Setup::start().await?;
    let mut request = setup
        .client
        .post(setup.gateway.url("/v1/chat/completions"))
        .bearer_auth(CALM_KEY);
    for n in 0..150 {
        request = request.header(format!("x-extra-{n}"), "1");
    }
    let response = request.body(ask("calm", false)).send().await?;
    assert_eq!(response.status(), 431);
    let error: Value = response.json().await?;
    assert_eq!(error["error"]["code"], "too_many_headers");
    Ok(())
}
