//! Session affinity: pins, their expiry, failover moving them, the cap.

use std::sync::Arc;
use std::time::Duration;

use keel_config::{AffinityKey, Strategy};
use keel_telemetry::Metrics;
use keel_types::ChatRequest;

use super::scripted::{plain, request, table, Scripted, Step};
use crate::{session, Affinity, RouteError, Router};

const TTL: Duration = Duration::from_secs(600);

/// A router for model `m` over `targets` by `strategy`, with affinity.
/// A provider whose first call fails with 503 and whose later calls answer.
fn fails_once(name: &'static str) -> Arc<Scripted> {
    Scripted::new(
        name,
        vec![
            Step::Status {
                status: 503,
                retry_after: None,
            },
            Step::Answer {
                delay: Duration::ZERO,
            },
        ],
    )
}

fn pinning_router(strategy: Strategy, targets: &[&Arc<Scripted>], max_sessions: usize) -> Router {
    let mut table = table(
        strategy,
        targets.iter().map(|target| plain(target)).collect(),
    );
    if let Some(route) = table.route_mut("m") {
        route.affinity = Some(Affinity::new(AffinityKey::User, TTL, max_sessions));
    }
    Router::new(table, Arc::new(Metrics::new()))
}

fn in_session(value: &str) -> Arc<ChatRequest> {
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    match ChatRequest::parse(body.as_bytes()) {
        Ok(request) => Arc::new(request.with_session(Some(session("tenant", value.as_bytes())))),
        Err(error) => panic!("test request is invalid: {error}"),
    }
}

async fn provider_of(router: &Router, request: Arc<ChatRequest>) -> Result<String, RouteError> {
    Ok(router.dispatch(request).await?.provider.to_string())
}

fn pins(router: &Router) -> usize {
    router
        .table
        .route("m")
        .and_then(|route| route.affinity.as_ref())
        .map_or(0, Affinity::len)
}

/// A session's requests all go where its first one was answered, while
/// requests without a session keep being spread by the strategy.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_session_sticks_to_the_target_that_served_it() -> Result<(), RouteError> {
    let targets = [
        Scripted::new("a", vec![]),
        Scripted::new("b", vec![]),
        Scripted::new("c", vec![]),
    ];
    let router = pinning_router(Strategy::Weighted, &targets.iter().collect::<Vec<_>>(), 100);
    for value in ["alice", "bob", "carol", "dave"] {
        let first = provider_of(&router, in_session(value)).await?;
        for _ in 0..30 {
            assert_eq!(
                provider_of(&router, in_session(value)).await?,
                first,
                "{value} moved"
            );
        }
    }
    assert_eq!(pins(&router), 4);
    let mut unpinned = std::collections::HashSet::new();
    for _ in 0..60 {
        unpinned.insert(provider_of(&router, request(false)).await?);
    }
    assert_eq!(
        unpinned.len(),
        3,
        "requests without a session were not spread"
    );
    Ok(())
}

/// The same value from two tenants is two sessions.
#[test]
fn sessions_are_scoped_per_tenant() {
    assert_ne!(session("one", b"x"), session("two", b"x"));
    assert_eq!(session("one", b"x"), session("one", b"x"));
}

/// A pin lasts `ttl` after its last use: used within it, it holds; left
/// unused past it, the session starts over in the strategy's order.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pin_expires_ttl_after_its_last_use() -> Result<(), RouteError> {
    // `a` fails once, so the session is pinned to `b`.
    let a = fails_once("a");
    let b = Scripted::new("b", vec![]);
    let router = pinning_router(Strategy::Ordered, &[&a, &b], 100);
    assert_eq!(provider_of(&router, in_session("s")).await?, "b");
    for _ in 0..3 {
        tokio::time::advance(TTL - Duration::from_secs(1)).await;
        assert_eq!(
            provider_of(&router, in_session("s")).await?,
            "b",
            "a used pin expired"
        );
    }
    tokio::time::advance(TTL).await;
    assert_eq!(
        provider_of(&router, in_session("s")).await?,
        "a",
        "the pin outlived its ttl"
    );
    assert_eq!(
        provider_of(&router, in_session("s")).await?,
        "a",
        "not pinned again"
    );
    Ok(())
}

/// When the pinned target fails, the request fails over and the pin moves
/// to the target that answered; it stays there when the first recovers.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failing_pin_moves_to_the_target_that_answered() -> Result<(), RouteError> {
    let a = Scripted::new("a", vec![]);
    let b = Scripted::new("b", vec![]);
    let router = pinning_router(Strategy::Ordered, &[&a, &b], 100);
    assert_eq!(provider_of(&router, in_session("s")).await?, "a");
    a.set_script(Step::Status {
        status: 503,
        retry_after: None,
    });
    assert_eq!(provider_of(&router, in_session("s")).await?, "b");
    a.set_script(Step::Answer {
        delay: Duration::ZERO,
    });
    let calls_on_a = a.calls();
    for _ in 0..10 {
        assert_eq!(provider_of(&router, in_session("s")).await?, "b");
    }
    assert_eq!(a.calls(), calls_on_a, "the moved session went back to a");
    // A session that never failed stays where the strategy put it.
    assert_eq!(provider_of(&router, in_session("other")).await?, "a");
    Ok(())
}

/// However many sessions come, at most `max_sessions` are remembered, the
/// least recently used forgotten first.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pins_stay_within_their_cap() -> Result<(), RouteError> {
    let a = fails_once("a");
    let b = Scripted::new("b", vec![]);
    let router = pinning_router(Strategy::Ordered, &[&a, &b], 64);
    // The first session is pinned to `b` (a failed once), then kept in use.
    assert_eq!(provider_of(&router, in_session("kept")).await?, "b");
    for number in 0..2_000 {
        provider_of(&router, in_session(&format!("s{number}"))).await?;
        assert!(
            pins(&router) <= 64,
            "{} pins after {number} sessions",
            pins(&router)
        );
        if number % 2 == 0 {
            assert_eq!(
                provider_of(&router, in_session("kept")).await?,
                "b",
                "a session in use was evicted"
            );
        }
    }
    assert!(pins(&router) >= 48, "only {} pins kept", pins(&router));
    Ok(())
}
