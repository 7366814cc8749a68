//! Spans over OTLP: with `telemetry.otlp_endpoint` set, a tiny OTLP/HTTP
//! receiver in the test gets Keel's request and attempt spans, with the
//! OpenTelemetry GenAI attribute names, one trace per request. (Its own
//! test binary: the exporting layer is the process's global subscriber.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use keel_testkit::{start_gateway, start_mock};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt as _;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Starts a receiver on 127.0.0.1:0 keeping every span POSTed to
/// `/v1/traces`; returns its base URL and the spans.
async fn receiver() -> std::io::Result<(String, Arc<Mutex<Vec<Span>>>)> {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: bytes::Bytes| {
            let kept = kept.clone();
            async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return axum::http::StatusCode::BAD_REQUEST;
                };
                let received = request
                    .resource_spans
                    .into_iter()
                    .flat_map(|resource| resource.scope_spans)
                    .flat_map(|scope| scope.spans);
                if let Ok(mut spans) = kept.lock() {
                    spans.extend(received);
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((base, spans))
}

fn attribute(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.clone()?.value)
}

fn text(span: &Span, key: &str) -> Option<String> {
    match attribute(span, key)? {
        AnyValue::StringValue(text) => Some(text),
        _ => None,
    }
}

fn number(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key)? {
        AnyValue::IntValue(number) => Some(number),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_attempt_spans_carry_the_gen_ai_attributes() -> TestResult {
    let (endpoint, spans) = receiver().await?;
    let telemetry = keel_config::TelemetryConfig {
        otlp_endpoint: Some(endpoint),
    };
    let (layer, otlp) = keel::otlp::layer(&telemetry)?.ok_or("a layer when an endpoint is set")?;
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;

    let mock = start_mock().await?;
    let yaml = format!(
        "tenants:\n  - {{name: acme, keys: [\"sk-acme\"]}}\n\
         providers:\n  up: {{kind: openai, base_url: {}, retry: {{attempts: 1}}}}\n\
         models:\n  chat:\n    targets: [{{provider: up, model: gpt-mock}}]\n",
        mock.base_url()
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let http = reqwest::Client::new();
    for stream in [false, true] {
        let response = http
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth("sk-acme")
            .json(&json!({"model": "chat", "stream": stream, "messages": [{"role": "user", "content": "trace me"}]}))
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            chunk?;
        }
    }

    // The stream's request span ends when its body is dropped; then flush.
    let mut exported = Vec::new();
    for _ in 0..100 {
        otlp_flush(&otlp).await;
        exported = spans.lock().map(|spans| spans.clone()).unwrap_or_default();
        let requests = exported
            .iter()
            .filter(|span| span.name == "keel.request")
            .count();
        if requests >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let requests: Vec<&Span> = exported
        .iter()
        .filter(|span| span.name == "keel.request")
        .collect();
    assert_eq!(
        requests.len(),
        2,
        "one request span per request: {exported:?}"
    );
    for request in &requests {
        assert_eq!(
            text(request, "gen_ai.request.model").as_deref(),
            Some("chat")
        );
        assert_eq!(
            text(request, "gen_ai.response.model").as_deref(),
            Some("gpt-mock")
        );
        assert_eq!(text(request, "gen_ai.provider.name").as_deref(), Some("up"));
        let input = number(request, "gen_ai.usage.input_tokens").ok_or("input tokens")?;
        let output = number(request, "gen_ai.usage.output_tokens").ok_or("output tokens")?;
        assert!(input > 0 && output > 0, "{request:?}");
        assert_eq!(number(request, "keel.attempts"), Some(1));

        let attempts: Vec<&Span> = exported
            .iter()
            .filter(|span| span.name == "keel.attempt" && span.trace_id == request.trace_id)
            .collect();
        assert_eq!(attempts.len(), 1, "the attempt is in the request's trace");
        let attempt = attempts[0];
        assert_eq!(attempt.kind, SpanKind::Client as i32);
        assert_eq!(text(attempt, "gen_ai.provider.name").as_deref(), Some("up"));
        assert_eq!(
            text(attempt, "gen_ai.request.model").as_deref(),
            Some("gpt-mock")
        );
        assert_eq!(
            text(attempt, "gen_ai.operation.name").as_deref(),
            Some("chat")
        );
    }
    assert_ne!(
        requests[0].trace_id, requests[1].trace_id,
        "a trace per request"
    );
    Ok(())
}

/// Exports what has finished (the SDK's flush blocks its caller).
async fn otlp_flush(otlp: &keel::otlp::Otlp) {
    tokio::task::block_in_place(|| otlp.flush());
}
