//! The prompt cache in front of dispatch, on the paused clock: TTL, the
//! stale window, single flight and shared failures.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use keel_providers::{Completion, Provider, ProviderError, Reply, UpstreamModel};
use keel_telemetry::Metrics;
use keel_types::{ChatRequest, ErrorBody, Usage};

use super::scripted::{BACKOFF, BREAKER, CLOCKS};
use crate::{
    Answer, CacheControl, CacheStatus, CacheTtl, ModelRoute, ProviderControls, RouteError,
    RouteTable, Router, Target,
};

/// Answers every call after `delay` with a numbered completion, or fails
/// with 503 while `down`.
struct Canned {
    delay: Duration,
    calls: AtomicU32,
    down: AtomicBool,
}

impl Provider for Canned {
    fn name(&self) -> &str {
        "canned"
    }

    fn chat(
        &self,
        _request: Arc<ChatRequest>,
        _model: UpstreamModel,
    ) -> BoxFuture<'static, Result<Reply, ProviderError>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let down = self.down.load(Ordering::SeqCst);
        let delay = self.delay;
        async move {
            tokio::time::sleep(delay).await;
            if down {
                return Err(ProviderError::Status {
                    provider: String::from("canned"),
                    status: 503,
                    body: ErrorBody::new("down", "server_error", None, None),
                    retry_after: None,
                });
            }
            let body = format!(
                r#"{{"id":"c{call}","object":"chat.completion","created":1,"model":"up","choices":[{{"index":0,"message":{{"role":"assistant","content":"answer {call}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}}}"#
            );
            Ok(Reply::Complete(Completion {
                body: Bytes::from(body),
                usage: Some(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 2,
                    total_tokens: 5,
                    prompt_tokens_details: None,
                }),
                written: None,
            }))
        }
        .boxed()
    }
}

const TTL: Duration = Duration::from_secs(60);
const STALE: Duration = Duration::from_secs(3600);

fn setup(delay: Duration) -> (Arc<Router>, Arc<Canned>) {
    let canned = Arc::new(Canned {
        delay,
        calls: AtomicU32::new(0),
        down: AtomicBool::new(false),
    });
    let target = Target {
        provider_name: Arc::from("canned"),
        model: Arc::from("up"),
        max_tokens: None,
        provider: canned.clone(),
        controls: ProviderControls::unlimited(CLOCKS, 1, BACKOFF),
        breaker: keel_resilience::CircuitBreaker::new("canned", BREAKER),
        stats: Arc::default(),
        price: None,
        weight: 1,
        context_window: None,
        handles: Arc::default(),
    };
    let model = ModelRoute {
        name: String::from("m"),
        endpoint: keel_types::Endpoint::Chat,
        strategy: keel_config::Strategy::Ordered,
        targets: vec![target],
        fallback: Vec::new(),
        budget: Duration::from_secs(600),
        hedge: None,
        cache: Some(CacheTtl {
            ttl: TTL,
            stale_if_error: STALE,
        }),
        last_resort: None,
        affinity: None,
    };
    let router = Router::new(RouteTable::new(vec![model]), Arc::new(Metrics::new()));
    (Arc::new(router), canned)
}

fn request() -> Arc<ChatRequest> {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    match ChatRequest::parse(body) {
        Ok(request) => Arc::new(request),
        Err(error) => panic!("test request is invalid: {error}"),
    }
}

/// Looks the request up, then routes it through the cache: what a front
/// end does. The answer's content and its cache status.
async fn ask(router: &Arc<Router>) -> Result<(String, Option<CacheStatus>), RouteError> {
    let request = request();
    let plan = router.cache_plan(
        "chat.completions",
        "tenant",
        &request,
        request.raw().fields(),
        CacheControl::default(),
    );
    let hit = match &plan {
        Some(plan) => router.cached(plan, &request).await,
        None => None,
    };
    let routed = match hit {
        Some(hit) => hit,
        None => router.dispatch_with_cache(request, plan).await?,
    };
    let Answer::Complete(completion) = routed.answer else {
        panic!("a non-stream request got a stream");
    };
    let body: serde_json::Value = serde_json::from_slice(&completion.body).unwrap_or_default();
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((content, routed.cache))
}

#[tokio::test(start_paused = true)]
async fn an_answer_is_fresh_for_its_ttl_and_no_longer() -> Result<(), RouteError> {
    let (router, canned) = setup(Duration::from_millis(10));
    assert_eq!(
        ask(&router).await?,
        (String::from("answer 1"), Some(CacheStatus::Miss))
    );
    tokio::time::advance(TTL - Duration::from_secs(1)).await;
    assert_eq!(
        ask(&router).await?,
        (String::from("answer 1"), Some(CacheStatus::Hit))
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        ask(&router).await?,
        (String::from("answer 2"), Some(CacheStatus::Miss)),
        "at the TTL the entry is no longer fresh"
    );
    assert_eq!(canned.calls.load(Ordering::SeqCst), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn past_its_ttl_an_entry_stands_in_for_a_failed_model_within_its_window(
) -> Result<(), RouteError> {
    let (router, canned) = setup(Duration::from_millis(10));
    ask(&router).await?;
    canned.down.store(true, Ordering::SeqCst);
    tokio::time::advance(TTL + Duration::from_secs(1)).await;
    assert_eq!(
        ask(&router).await?,
        (String::from("answer 1"), Some(CacheStatus::Stale))
    );
    tokio::time::advance(STALE).await;
    assert!(
        matches!(ask(&router).await, Err(RouteError::Exhausted { .. })),
        "past the stale window the failure is the answer"
    );
    assert_eq!(canned.calls.load(Ordering::SeqCst), 3);
    Ok(())
}

/// Twenty identical misses at once: one call, one answer for all.
#[tokio::test(start_paused = true)]
async fn identical_concurrent_misses_share_one_call() -> Result<(), RouteError> {
    let (router, canned) = setup(Duration::from_secs(1));
    let answers = futures_util::future::join_all((0..20).map(|_| ask(&router))).await;
    assert_eq!(canned.calls.load(Ordering::SeqCst), 1);
    for answer in answers {
        assert_eq!(answer?, (String::from("answer 1"), Some(CacheStatus::Miss)));
    }
    Ok(())
}

/// The leader's walk fails (and nothing is stored to stand in): every
/// follower gets the same error, from the one call.
#[tokio::test(start_paused = true)]
async fn followers_share_the_leaders_failure() {
    let (router, canned) = setup(Duration::from_secs(1));
    canned.down.store(true, Ordering::SeqCst);
    let answers = futures_util::future::join_all((0..20).map(|_| ask(&router))).await;
    assert_eq!(canned.calls.load(Ordering::SeqCst), 1);
    assert!(answers
        .iter()
        .all(|answer| matches!(answer, Err(RouteError::Exhausted { .. }))));
}
