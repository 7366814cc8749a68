//! The prompt cache end to end against `keel mock`, whose request counter
//! says how many upstream calls were really made.

use std::time::Duration;

use futures_util::StreamExt as _;
use keel_testkit::{
    header, sse_data, start_gateway, start_mock, without_volatile_fields, FailNext, Faults,
    Gateway, Mock,
};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KEY_A: &str = "sk-tenant-a";
const KEY_B: &str = "sk-tenant-b";
const ADMIN: &str = "sk-admin";

/// Two tenants, one provider (one try), the model `chat` cached for ten
/// minutes with an hour's stale window; `cache_section` is the top-level
/// `cache:` block.
fn yaml(mock: &Mock, cache_section: &str) -> String {
    format!(
        "server: {{admin_key: {ADMIN}}}\n\
         tenants:\n  - {{name: a, keys: [\"{KEY_A}\"]}}\n  - {{name: b, keys: [\"{KEY_B}\"]}}\n\
         providers:\n  up:\n    kind: openai\n    base_url: {}\n    timeouts: {{connect: 1s}}\n    retry: {{attempts: 1}}\n\
         models:\n  chat:\n    targets: [{{provider: up, model: gpt-mock}}]\n    cache: {{ttl: 10m, stale_if_error: 1h}}\n  plain:\n    targets: [{{provider: up, model: gpt-mock}}]\n\
         {cache_section}\n",
        mock.base_url()
    )
}

struct Setup {
    mock: Mock,
    gateway: Gateway,
    client: reqwest::Client,
}

impl Setup {
    async fn start(cache_section: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let mock = start_mock().await?;
        let gateway = start_gateway(&yaml(&mock, cache_section), &[]).await?;
        Ok(Self {
            mock,
            gateway,
            client: reqwest::Client::new(),
        })
    }

    /// Upstream calls the mock has seen.
    fn upstream_calls(&self) -> u64 {
        self.mock.state.stats("gpt-mock").requests
    }

    async fn post_text(
        &self,
        key: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = self
            .client
            .post(self.gateway.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await
    }

    async fn chat(&self, key: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.post_text(key, &body.to_string(), &[]).await
    }

    async fn metrics(&self) -> reqwest::Result<String> {
        self.client
            .get(self.gateway.url("/metrics"))
            .bearer_auth(ADMIN)
            .send()
            .await?
            .text()
            .await
    }
}

fn ask(prompt: &str, stream: bool) -> Value {
    json!({"model": "chat", "messages": [{"role": "user", "content": prompt}], "stream": stream})
}

/// The text a stream's chunks carry, and the parsed chunks themselves.
fn stream_text(body: &str) -> Result<(String, Vec<Value>), serde_json::Error> {
    let mut text = String::new();
    let mut chunks = Vec::new();
    for data in sse_data(body) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(&data)?;
        if let Some(content) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(content);
        }
        chunks.push(chunk);
    }
    Ok((text, chunks))
}

/// The value of one sample line of the metrics text.
fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[tokio::test]
async fn a_hit_makes_no_upstream_call_and_says_so() -> TestResult {
    let setup = Setup::start("").await?;
    let first = setup.chat(KEY_A, &ask("hello", false)).await?;
    assert_eq!(header(&first, "x-keel-cache"), "miss");
    assert_eq!(header(&first, "x-keel-attempts"), "1");
    let first: Value = first.json().await?;
    let second = setup.chat(KEY_A, &ask("hello", false)).await?;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "x-keel-cache"), "hit");
    assert_eq!(header(&second, "x-keel-attempts"), "0");
    assert_eq!(header(&second, "x-keel-provider"), "up");
    assert_eq!(header(&second, "x-keel-model"), "gpt-mock");
    let second: Value = second.json().await?;
    assert_eq!(setup.upstream_calls(), 1, "the hit made no upstream call");
    assert_ne!(first["id"], second["id"], "a hit has a fresh id");
    assert_eq!(
        first["choices"][0]["message"]["content"],
        second["choices"][0]["message"]["content"]
    );
    assert_eq!(
        first["usage"]["total_tokens"],
        second["usage"]["total_tokens"]
    );
    assert_eq!(
        second["choices"][0]["finish_reason"], "stop",
        "the original finish reason"
    );
    let uncached = setup
        .chat(
            KEY_A,
            &json!({"model": "plain", "messages": [{"role": "user", "content": "hello"}]}),
        )
        .await?;
    assert!(
        uncached.headers().get("x-keel-cache").is_none(),
        "a model without cache: has no x-keel-cache"
    );
    let metrics = setup.metrics().await?;
    assert_eq!(
        metric(
            &metrics,
            r#"keel_cache_requests_total{model="chat",result="hit"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            r#"keel_cache_requests_total{model="chat",result="miss"}"#
        ),
        Some(1.0)
    );
    assert_eq!(metric(&metrics, "keel_cache_entries"), Some(1.0));
    assert!(metric(&metrics, "keel_cache_bytes").is_some_and(|bytes| bytes > 0.0));
    Ok(())
}

#[tokio::test]
async fn a_stream_miss_serves_a_non_stream_hit_and_the_reverse() -> TestResult {
    let setup = Setup::start("").await?;
    // A stream without include_usage: Keel asked the upstream for usage
    // anyway, and kept the usage chunk from this client.
    let streamed = setup.chat(KEY_A, &ask("one", true)).await?;
    assert_eq!(header(&streamed, "x-keel-cache"), "miss");
    let (streamed_text, chunks) = stream_text(&streamed.text().await?)?;
    assert!(
        chunks.iter().all(|chunk| chunk["usage"].is_null()),
        "no usage chunk for a client that did not ask"
    );
    let whole = setup.chat(KEY_A, &ask("one", false)).await?;
    assert_eq!(header(&whole, "x-keel-cache"), "hit");
    let whole: Value = whole.json().await?;
    assert_eq!(
        whole["choices"][0]["message"]["content"],
        streamed_text.as_str()
    );
    assert!(whole["usage"]["completion_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));

    let whole = setup.chat(KEY_A, &ask("two", false)).await?;
    assert_eq!(header(&whole, "x-keel-cache"), "miss");
    let whole: Value = whole.json().await?;
    let mut with_usage = ask("two", true);
    with_usage["stream_options"] = json!({"include_usage": true});
    let streamed = setup.chat(KEY_A, &with_usage).await?;
    assert_eq!(header(&streamed, "x-keel-cache"), "hit");
    assert_eq!(header(&streamed, "content-type"), "text/event-stream");
    let body = streamed.text().await?;
    assert_eq!(sse_data(&body).last().map(String::as_str), Some("[DONE]"));
    let (text, chunks) = stream_text(&body)?;
    assert_eq!(whole["choices"][0]["message"]["content"], text.as_str());
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let ids: std::collections::HashSet<_> =
        chunks.iter().map(|chunk| chunk["id"].clone()).collect();
    assert_eq!(ids.len(), 1, "one id on every chunk");
    let last = chunks.last().ok_or("no chunks")?;
    assert_eq!(last["choices"], json!([]), "the usage chunk comes last");
    assert_eq!(
        last["usage"]["total_tokens"],
        whole["usage"]["total_tokens"]
    );
    let finish: Vec<_> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["stop"]);
    assert_eq!(setup.upstream_calls(), 2);
    Ok(())
}

#[tokio::test]
async fn tenants_are_isolated_unless_the_cache_is_shared() -> TestResult {
    let setup = Setup::start("").await?;
    for key in [KEY_A, KEY_B, KEY_A, KEY_B] {
        setup
            .chat(key, &ask("same words", false))
            .await?
            .bytes()
            .await?;
    }
    assert_eq!(setup.upstream_calls(), 2, "one miss per tenant");

    let shared = Setup::start("cache: {shared: true}").await?;
    let first = shared.chat(KEY_A, &ask("same words", false)).await?;
    assert_eq!(header(&first, "x-keel-cache"), "miss");
    let second = shared.chat(KEY_B, &ask("same words", false)).await?;
    assert_eq!(header(&second, "x-keel-cache"), "hit");
    assert_eq!(shared.upstream_calls(), 1);
    Ok(())
}

#[tokio::test]
async fn one_changed_field_misses_and_respelled_bodies_hit() -> TestResult {
    let setup = Setup::start("").await?;
    let base = r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":1,"top_p":0.5}"#;
    let respelled = r#"{ "top_p": 5e-1, "temperature": 1.0, "messages": [{"content": "hi", "role": "user"}], "model": "chat", "user": "someone", "stream": false }"#;
    let changed = [
        r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":1,"top_p":0.6}"#,
        r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":1}"#,
        r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":1,"top_p":0.5,"reasoning_effort":"low"}"#,
        r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":1,"top_p":0.5,"x_unknown":true}"#,
    ];
    assert_eq!(
        header(&setup.post_text(KEY_A, base, &[]).await?, "x-keel-cache"),
        "miss"
    );
    assert_eq!(
        header(
            &setup.post_text(KEY_A, respelled, &[]).await?,
            "x-keel-cache"
        ),
        "hit"
    );
    for body in changed {
        let response = setup.post_text(KEY_A, body, &[]).await?;
        assert_eq!(header(&response, "x-keel-cache"), "miss", "{body}");
    }
    assert_eq!(setup.upstream_calls(), 5);
    Ok(())
}

#[tokio::test]
async fn requests_whose_answer_the_cache_cannot_hold_bypass_it() -> TestResult {
    let setup = Setup::start("").await?;
    for extra in [json!({"n": 2}), json!({"logprobs": true})] {
        let mut body = ask("several", false);
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        for _ in 0..2 {
            let response = setup.chat(KEY_A, &body).await?;
            assert_eq!(header(&response, "x-keel-cache"), "bypass", "{extra}");
        }
    }
    assert_eq!(setup.upstream_calls(), 4);
    Ok(())
}

#[tokio::test]
async fn cache_control_no_cache_no_store_and_max_age() -> TestResult {
    let setup = Setup::start("").await?;
    let body = ask("controls", false).to_string();
    let first = setup
        .post_text(KEY_A, &body, &[("cache-control", "no-store")])
        .await?;
    assert_eq!(header(&first, "x-keel-cache"), "miss");
    let second = setup.post_text(KEY_A, &body, &[]).await?;
    assert_eq!(
        header(&second, "x-keel-cache"),
        "miss",
        "no-store stored nothing"
    );
    let third = setup
        .post_text(KEY_A, &body, &[("cache-control", "no-cache")])
        .await?;
    assert_eq!(
        header(&third, "x-keel-cache"),
        "bypass",
        "no-cache skips the entry"
    );
    assert_eq!(setup.upstream_calls(), 3);
    let fourth = setup
        .post_text(KEY_A, &body, &[("cache-control", "max-age=3600")])
        .await?;
    assert_eq!(header(&fourth, "x-keel-cache"), "hit");
    let fifth = setup
        .post_text(KEY_A, &body, &[("cache-control", "max-age=0")])
        .await?;
    assert_eq!(
        header(&fifth, "x-keel-cache"),
        "miss",
        "the entry is older than 0 s"
    );
    assert_eq!(setup.upstream_calls(), 4);
    let sixth = setup
        .post_text(KEY_A, &body, &[("cache-control", "no-cache")])
        .await?;
    assert_eq!(header(&sixth, "x-keel-cache"), "bypass");
    assert_eq!(
        setup.upstream_calls(),
        5,
        "no-cache still asks the upstream"
    );
    Ok(())
}

#[tokio::test]
async fn failed_truncated_cancelled_and_oversized_answers_are_never_stored() -> TestResult {
    let setup = Setup::start("cache: {max_entry_bytes: 2KiB}").await?;
    let state = &setup.mock.state;
    let expect_miss = |response: &reqwest::Response, what: &str| {
        assert_eq!(header(response, "x-keel-cache"), "miss", "{what}");
    };

    // Failed: the upstream answers 500 (one target, one try).
    state.set_faults(
        "gpt-mock",
        Faults {
            fail: Some(FailNext {
                status: 500,
                count: 1,
                retry_after: None,
                body: None,
            }),
            ..Faults::default()
        },
    );
    let failed = setup.chat(KEY_A, &ask("failed", false)).await?;
    assert_eq!(failed.status(), 502);
    expect_miss(&failed, "an error answer is marked too");
    state.clear();
    expect_miss(
        &setup.chat(KEY_A, &ask("failed", false)).await?,
        "after a failure",
    );

    // Truncated: the connection drops after three chunks.
    state.set_faults(
        "gpt-mock",
        Faults {
            drop_after_chunk: Some(3),
            ..Faults::default()
        },
    );
    let truncated = setup.chat(KEY_A, &ask("truncated", true)).await?;
    let body = truncated.text().await?;
    assert!(body.contains("upstream_stream_error"), "{body}");
    state.clear();
    expect_miss(
        &setup.chat(KEY_A, &ask("truncated", true)).await?,
        "after a truncation",
    );

    // In-band error after the first chunks.
    state.set_faults(
        "gpt-mock",
        Faults {
            error_event_after_chunk: Some(2),
            ..Faults::default()
        },
    );
    setup
        .chat(KEY_A, &ask("in-band", true))
        .await?
        .text()
        .await?;
    state.clear();
    expect_miss(
        &setup.chat(KEY_A, &ask("in-band", true)).await?,
        "after an in-band error",
    );

    // Cancelled: the only client leaves mid-stream.
    state.set_faults(
        "gpt-mock",
        Faults {
            chunk_delay_ms: 50,
            ..Faults::default()
        },
    );
    let cancelled = setup.chat(KEY_A, &ask("cancelled", true)).await?;
    let mut bytes = cancelled.bytes_stream();
    bytes.next().await;
    drop(bytes);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state.stats("gpt-mock").cancelled == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        state.stats("gpt-mock").cancelled,
        1,
        "the upstream call was dropped"
    );
    state.clear();
    expect_miss(
        &setup.chat(KEY_A, &ask("cancelled", true)).await?,
        "after a cancel",
    );

    // Over the entry cap: 2 KiB, and the answer has 1,000 words of text.
    state.set_faults(
        "gpt-mock",
        Faults {
            chunks: Some(1000),
            ..Faults::default()
        },
    );
    for stream in [false, true, false] {
        let response = setup.chat(KEY_A, &ask("big", stream)).await?;
        expect_miss(&response, "an answer over max_entry_bytes");
        response.bytes().await?;
    }
    state.clear();
    let small = setup.chat(KEY_A, &ask("small", false)).await?;
    small.bytes().await?;
    assert_eq!(
        header(
            &setup.chat(KEY_A, &ask("small", false)).await?,
            "x-keel-cache"
        ),
        "hit",
        "a small answer is stored"
    );
    Ok(())
}

/// Twenty identical requests at once make one upstream call and get one
/// answer, for non-streams and for streams.
#[tokio::test]
async fn twenty_identical_concurrent_misses_make_one_upstream_call() -> TestResult {
    let setup = Setup::start("").await?;
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            first_token_delay_ms: 300,
            chunk_delay_ms: 5,
            ..Faults::default()
        },
    );
    for stream in [false, true] {
        let before = setup.upstream_calls();
        let prompt = format!("together {stream}");
        let answers = futures_util::future::join_all((0..20).map(|_| async {
            let response = setup.chat(KEY_A, &ask(&prompt, stream)).await?;
            let cache = header(&response, "x-keel-cache").to_owned();
            let text = response.text().await?;
            Ok::<_, reqwest::Error>((cache, text))
        }))
        .await;
        assert_eq!(setup.upstream_calls() - before, 1, "stream: {stream}");
        let mut contents = Vec::new();
        for answer in answers {
            let (cache, text) = answer?;
            // One that arrives after the flight ended finds the answer stored.
            assert!(cache == "miss" || cache == "hit", "{cache}");
            let content = if stream {
                let (content, _) = stream_text(&text)?;
                assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
                content
            } else {
                let value: Value = serde_json::from_str(&text)?;
                value["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            contents.push(content);
        }
        assert!(!contents[0].is_empty());
        assert!(
            contents.iter().all(|content| *content == contents[0]),
            "stream: {stream}"
        );
    }
    let metrics = setup.metrics().await?;
    let waiters = metric(&metrics, "keel_cache_single_flight_waiters_total").unwrap_or(0.0);
    assert!(waiters > 0.0 && waiters <= 38.0, "{waiters}");
    Ok(())
}

/// The leader's client leaves mid-stream: the call goes on for the others,
/// who get the whole answer, which is then stored.
#[tokio::test]
async fn a_leaving_leader_does_not_cancel_the_call_for_its_followers() -> TestResult {
    let setup = Setup::start("").await?;
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            chunk_delay_ms: 40,
            ..Faults::default()
        },
    );
    let leader = setup.chat(KEY_A, &ask("leader leaves", true)).await?;
    let mut leader = leader.bytes_stream();
    leader.next().await;
    let followers = futures_util::future::join_all((0..4).map(|_| async {
        let response = setup.chat(KEY_A, &ask("leader leaves", true)).await?;
        response.text().await
    }));
    let leave = async {
        // The leader leaves once all four followers are waiting on its call.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            let metrics = setup.metrics().await.unwrap_or_default();
            if metric(&metrics, "keel_cache_single_flight_waiters_total") == Some(4.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(leader);
    };
    let (followers, ()) = tokio::join!(followers, leave);
    let mut contents = Vec::new();
    for body in followers {
        let body = body?;
        assert_eq!(
            sse_data(&body).last().map(String::as_str),
            Some("[DONE]"),
            "{body}"
        );
        contents.push(stream_text(&body)?.0);
    }
    assert!(contents
        .iter()
        .all(|content| *content == contents[0] && !content.is_empty()));
    let stats = setup.mock.state.stats("gpt-mock");
    assert_eq!(
        (stats.requests, stats.cancelled, stats.completed),
        (1, 0, 1)
    );
    let after = setup.chat(KEY_A, &ask("leader leaves", false)).await?;
    assert_eq!(header(&after, "x-keel-cache"), "hit");
    let after: Value = after.json().await?;
    assert_eq!(
        after["choices"][0]["message"]["content"],
        contents[0].as_str()
    );
    Ok(())
}

/// Every target failing: an entry serves instead, marked `stale` (here a
/// fresh one that `no-cache` skipped; the paused-clock router tests cover
/// an entry past its TTL).
#[tokio::test]
async fn when_every_target_fails_an_entry_stands_in() -> TestResult {
    let setup = Setup::start("").await?;
    let original: Value = setup.chat(KEY_A, &ask("down", false)).await?.json().await?;
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            fail: Some(FailNext {
                status: 503,
                count: 10,
                retry_after: None,
                body: None,
            }),
            ..Faults::default()
        },
    );
    let body = ask("down", false).to_string();
    let stale = setup
        .post_text(KEY_A, &body, &[("cache-control", "no-cache")])
        .await?;
    assert_eq!(stale.status(), 200);
    assert_eq!(header(&stale, "x-keel-cache"), "stale");
    let stale: Value = stale.json().await?;
    assert_eq!(
        stale["choices"][0]["message"]["content"],
        original["choices"][0]["message"]["content"]
    );
    let unknown = setup.chat(KEY_A, &ask("never seen", false)).await?;
    assert_eq!(unknown.status(), 502, "nothing to stand in");
    let metrics = setup.metrics().await?;
    assert_eq!(
        metric(
            &metrics,
            r#"keel_cache_requests_total{model="chat",result="stale"}"#
        ),
        Some(1.0)
    );
    Ok(())
}

#[tokio::test]
async fn the_admin_purges_the_cache_and_nobody_else_can() -> TestResult {
    let setup = Setup::start("").await?;
    for prompt in ["x", "y", "z"] {
        setup
            .chat(KEY_A, &ask(prompt, false))
            .await?
            .bytes()
            .await?;
    }
    let purge = |key: &'static str, query: &'static str| {
        setup
            .client
            .delete(setup.gateway.url(&format!("/admin/cache{query}")))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(
        purge(KEY_A, "").await?.status(),
        401,
        "a tenant key is not the admin key"
    );
    let other: Value = purge(ADMIN, "?model=plain").await?.json().await?;
    assert_eq!(other["removed"], 0);
    let purged: Value = purge(ADMIN, "?model=chat").await?.json().await?;
    assert_eq!(purged["removed"], 3);
    let after = setup.chat(KEY_A, &ask("x", false)).await?;
    assert_eq!(
        header(&after, "x-keel-cache"),
        "miss",
        "never a stale read after a purge"
    );

    let mock = start_mock().await?;
    let yaml = yaml(&mock, "").replace(&format!("server: {{admin_key: {ADMIN}}}\n"), "");
    let open = start_gateway(&yaml, &[]).await?;
    let response = setup
        .client
        .delete(open.url("/admin/cache"))
        .bearer_auth(ADMIN)
        .send()
        .await?;
    assert_eq!(
        response.status(),
        404,
        "no admin key configured: no admin routes"
    );
    Ok(())
}

/// The byte bound: three times `max_bytes` of answers go in, the cache's
/// accounted size never goes past the bound, and the oldest are evicted.
#[tokio::test]
async fn the_cache_stays_within_max_bytes() -> TestResult {
    let setup = Setup::start("cache: {max_bytes: 16KiB, max_entry_bytes: 4KiB}").await?;
    let mut inserted = 0.0;
    let mut prompt = 0;
    while inserted < 3.0 * 16384.0 {
        prompt += 1;
        setup
            .chat(KEY_A, &ask(&format!("fill {prompt}"), false))
            .await?
            .bytes()
            .await?;
        let metrics = setup.metrics().await?;
        let bytes = metric(&metrics, "keel_cache_bytes").ok_or("no keel_cache_bytes")?;
        assert!(
            bytes <= 16384.0,
            "{bytes} bytes cached after {prompt} answers"
        );
        inserted += 700.0;
    }
    let metrics = setup.metrics().await?;
    assert!(
        metric(&metrics, "keel_cache_evictions_total").is_some_and(|n| n > 0.0),
        "{metrics}"
    );
    Ok(())
}

/// Messages requests are cached under their own endpoint and replayed in
/// Anthropic's format, JSON and stream.
#[tokio::test]
async fn messages_answers_are_cached_and_replayed_as_anthropic_messages() -> TestResult {
    let setup = Setup::start("").await?;
    let body = json!({"model": "chat", "max_tokens": 100, "messages": [{"role": "user", "content": "hello"}]});
    let send = |body: Value| {
        setup
            .client
            .post(setup.gateway.url("/v1/messages"))
            .header("x-api-key", KEY_A)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    let first = send(body.clone()).await?;
    assert_eq!(header(&first, "x-keel-cache"), "miss");
    let first: Value = first.json().await?;
    let second = send(body.clone()).await?;
    assert_eq!(header(&second, "x-keel-cache"), "hit");
    let second: Value = second.json().await?;
    assert_eq!(
        without_volatile_fields(first.clone()),
        without_volatile_fields(second)
    );
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let stream = send(streamed).await?;
    assert_eq!(header(&stream, "x-keel-cache"), "hit");
    let text = stream.text().await?;
    let events: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
    assert!(events.contains(&"content_block_delta"));
    assert_eq!(setup.upstream_calls(), 1);
    let chat = setup.chat(KEY_A, &ask("hello", false)).await?;
    assert_eq!(
        header(&chat, "x-keel-cache"),
        "miss",
        "another endpoint, another key"
    );
    Ok(())
}

/// A job whose request is in the cache completes without an upstream call.
#[tokio::test]
async fn a_job_is_answered_from_the_cache() -> TestResult {
    let setup = Setup::start("").await?;
    setup
        .chat(KEY_A, &ask("for a job", false))
        .await?
        .bytes()
        .await?;
    let submitted = setup
        .client
        .post(setup.gateway.url("/v1/jobs"))
        .bearer_auth(KEY_A)
        .json(&json!({"request": ask("for a job", false)}))
        .send()
        .await?;
    assert_eq!(submitted.status(), 202);
    let job: Value = submitted.json().await?;
    let id = job["id"].as_str().ok_or("no job id")?.to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let finished = loop {
        let job: Value = setup
            .client
            .get(setup.gateway.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(KEY_A)
            .send()
            .await?
            .json()
            .await?;
        if job["status"] == "succeeded" || tokio::time::Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert!(
        finished["result"]["choices"][0]["message"]["content"].is_string(),
        "{finished}"
    );
    assert_eq!(setup.upstream_calls(), 1, "the job made no upstream call");
    Ok(())
}

/// The official `openai` and `anthropic` SDKs read replayed streams (and
/// the JSON replay of a streamed answer) exactly as they read the original:
/// content, tool calls, finish and usage.
#[tokio::test]
async fn the_official_sdks_read_a_replay_as_they_read_the_original() -> TestResult {
    let setup = Setup::start("").await?;
    let args = vec![
        setup.gateway.url(""),
        KEY_A.to_owned(),
        String::from("chat"),
    ];
    let stdout = keel_testkit::sdk_check("cache_replay_check.py", args).await?;
    assert!(stdout.contains("12 passed, 0 failed"), "{stdout}");
    assert_eq!(setup.upstream_calls(), 4, "one call per distinct request");
    Ok(())
}

/// A hit counts against the tenant's `rpm` and not its `tpm`.
#[tokio::test]
async fn a_hit_counts_against_the_request_limit_but_not_the_token_limit() -> TestResult {
    let mock = start_mock().await?;
    let limits = "tenants:\n  - {name: a, keys: [\"sk-tenant-a\"]}\n  - {name: tokens, keys: [\"sk-tokens\"], limits: {tpm: 1}}\n  - {name: requests, keys: [\"sk-requests\"], limits: {rpm: 2}}\n";
    let yaml = yaml(&mock, "").replace(
        &format!("tenants:\n  - {{name: a, keys: [\"{KEY_A}\"]}}\n  - {{name: b, keys: [\"{KEY_B}\"]}}\n"),
        limits,
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    let setup = Setup {
        mock,
        gateway,
        client: reqwest::Client::new(),
    };

    // tpm 1: the first answer's real usage empties the token bucket.
    let miss = setup.chat("sk-tokens", &ask("tokens", false)).await?;
    assert_eq!(
        (miss.status().as_u16(), header(&miss, "x-keel-cache")),
        (200, "miss")
    );
    for _ in 0..3 {
        let hit = setup.chat("sk-tokens", &ask("tokens", false)).await?;
        assert_eq!(
            (hit.status().as_u16(), header(&hit, "x-keel-cache")),
            (200, "hit")
        );
    }
    let other = setup.chat("sk-tokens", &ask("another", false)).await?;
    assert_eq!(other.status(), 429, "a miss needs tokens");

    // rpm 2: a miss and a hit spend both requests.
    assert_eq!(
        setup
            .chat("sk-requests", &ask("requests", false))
            .await?
            .status(),
        200
    );
    assert_eq!(
        setup
            .chat("sk-requests", &ask("requests", false))
            .await?
            .status(),
        200
    );
    let third = setup.chat("sk-requests", &ask("requests", false)).await?;
    assert_eq!(third.status(), 429, "a hit counts against rpm");
    assert_eq!(setup.upstream_calls(), 2);
    Ok(())
}

/// Responses requests that share a flight share the upstream's one answer,
/// but each gets a response object of its own: its own id.
#[tokio::test]
async fn responses_sharing_a_flight_each_get_their_own_response_id() -> TestResult {
    let setup = Setup::start("").await?;
    setup.mock.state.set_faults(
        "gpt-mock",
        Faults {
            first_token_delay_ms: 300,
            ..Faults::default()
        },
    );
    let answers = futures_util::future::join_all((0..8).map(|_| async {
        let response = setup
            .client
            .post(setup.gateway.url("/v1/responses"))
            .bearer_auth(KEY_A)
            .json(&json!({"model": "chat", "input": "one flight"}))
            .send()
            .await?;
        response.json::<Value>().await
    }))
    .await;
    assert_eq!(setup.upstream_calls(), 1);
    let mut ids = std::collections::HashSet::new();
    for answer in answers {
        let object = answer?;
        assert_eq!(object["status"], "completed", "{object}");
        let text = object["output"][0]["content"][0]["text"].as_str();
        assert!(
            text.is_some_and(|text| text.starts_with("Hello")),
            "{object}"
        );
        ids.insert(object["id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(ids.len(), 8, "{ids:?}");
    Ok(())
}
