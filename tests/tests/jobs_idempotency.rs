//! `Idempotency-Key` on non-stream chat completions (README, "Idempotency-Key"),
//! on both stores: replay without a provider call (ID-1), bounded wait of
//! concurrent duplicates (ID-2), mismatch 422 (ID-3), nothing stored for
//! 5xx or rejections before execution (ID-4). Job submissions have their
//! own tests in `jobs_api`.

#[path = "jobs/support.rs"]
#[allow(dead_code, reason = "shared by the job test crates; each uses a part")]
#[macro_use]
mod support;

use keel_testkit::{FailNext, Faults};
use serde_json::{json, Value};
use support::{chat_request, Options, Setup, Store, TestResult, ACME, GLOBEX};

both_stores!(
    id1_a_replay_is_byte_identical_and_calls_no_provider,
    id2_concurrent_duplicates_make_one_upstream_call_and_share_its_answer,
    id3_the_same_key_with_another_body_is_422_without_a_call,
    id4_5xx_and_rejections_before_execution_are_not_stored,
    streams_with_a_key_pass_through,
);

async fn send(
    setup: &Setup,
    tenant: &str,
    key: &str,
    body: &Value,
) -> Result<reqwest::Response, reqwest::Error> {
    setup
        .http
        .post(setup.gateway.url("/v1/chat/completions"))
        .bearer_auth(tenant)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
}

async fn id1_a_replay_is_byte_identical_and_calls_no_provider(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let first = send(&setup, ACME, "chat-1", &chat_request()).await?;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let of_record = |response: &reqwest::Response| {
        [
            "x-keel-provider",
            "x-keel-model",
            "x-keel-attempts",
            "content-type",
        ]
        .map(|name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
    };
    let first_headers = of_record(&first);
    assert!(
        first_headers.iter().all(Option::is_some),
        "{first_headers:?}"
    );
    let first_body = first.text().await?;
    let replay = send(&setup, ACME, "chat-1", &chat_request()).await?;
    assert_eq!(replay.status(), 200);
    assert_eq!(
        of_record(&replay),
        first_headers,
        "the headers of record are replayed"
    );
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(replay.text().await?, first_body);
    assert_eq!(
        setup.mock.state.stats("gpt-mock").requests,
        1,
        "the replay made no upstream call"
    );
    // Another tenant's key of the same name is its own.
    assert!(send(&setup, GLOBEX, "chat-1", &chat_request())
        .await?
        .headers()
        .get("idempotent-replayed")
        .is_none());
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 2);
    Ok(())
}

async fn id2_concurrent_duplicates_make_one_upstream_call_and_share_its_answer(
    store: Store,
) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            first_token_delay_ms: 300,
            ..Faults::default()
        },
    );
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let request = setup
            .http
            .post(setup.gateway.url("/v1/chat/completions"))
            .bearer_auth(ACME)
            .header("idempotency-key", "together")
            .json(&chat_request());
        sends.spawn(async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        });
    }
    let mut bodies = std::collections::HashSet::new();
    while let Some(done) = sends.join_next().await {
        let (status, body) = done??;
        assert_eq!(status, 200, "{body}");
        bodies.insert(body);
    }
    assert_eq!(bodies.len(), 1, "every duplicate got the first answer");
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 1);
    Ok(())
}

async fn id3_the_same_key_with_another_body_is_422_without_a_call(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    assert_eq!(
        send(&setup, ACME, "k", &chat_request()).await?.status(),
        200
    );
    let other =
        json!({"model": "chat", "messages": [{"role": "user", "content": "something else"}]});
    let mismatch = send(&setup, ACME, "k", &other).await?;
    assert_eq!(mismatch.status(), 422);
    let error: Value = mismatch.json().await?;
    assert_eq!(error["error"]["code"], "idempotency_key_reused");
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 1);
    // The stored row is unchanged: the first body still replays.
    assert!(send(&setup, ACME, "k", &chat_request())
        .await?
        .headers()
        .get("idempotent-replayed")
        .is_some());
    Ok(())
}

async fn id4_5xx_and_rejections_before_execution_are_not_stored(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            fail: Some(FailNext {
                status: 503,
                count: 1,
                ..FailNext::default()
            }),
            ..Faults::default()
        },
    );
    let failed = send(&setup, ACME, "retry-me", &chat_request()).await?;
    assert!(failed.status().is_server_error(), "{}", failed.status());
    let retried = send(&setup, ACME, "retry-me", &chat_request()).await?;
    assert_eq!(retried.status(), 200);
    assert!(
        retried.headers().get("idempotent-replayed").is_none(),
        "the 5xx was not stored; the retry ran"
    );
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 2);
    // A validation failure is not stored either: the key is free afterwards.
    let invalid = send(&setup, ACME, "fix-me", &json!({"model": "chat"})).await?;
    assert_eq!(invalid.status(), 400);
    assert_eq!(
        send(&setup, ACME, "fix-me", &chat_request())
            .await?
            .status(),
        200
    );
    let too_long = send(&setup, ACME, &"k".repeat(256), &chat_request()).await?;
    assert_eq!(too_long.status(), 400);
    Ok(())
}

async fn streams_with_a_key_pass_through(store: Store) -> TestResult {
    let setup = Setup::start(store, Options::default()).await?;
    let stream =
        json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        let response = send(&setup, ACME, "stream", &stream).await?;
        assert_eq!(response.status(), 200);
        assert!(response.text().await?.contains("[DONE]"));
    }
    assert_eq!(setup.mock.state.stats("gpt-mock").requests, 2);
    Ok(())
}
