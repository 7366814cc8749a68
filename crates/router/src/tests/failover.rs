//! Failover before the commit point, fallbacks and client errors.

use std::time::Duration;

use futures_util::StreamExt;
use keel_providers::ProviderError;

use super::scripted::{
    bounded, plain, request, router, target, Scripted, Step, BACKOFF, BREAKER, CLOCKS, MINUTE,
};
use crate::{Answer, ModelRoute, RouteError};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_5xx_429_or_refused_connection_moves_on_to_the_next_target() -> Result<(), RouteError> {
    for first in [
        Step::Status {
            status: 503,
            retry_after: None,
        },
        Step::Refused,
        Step::Status {
            status: 429,
            retry_after: None,
        },
    ] {
        let (bad, good) = (
            Scripted::new("bad", vec![first]),
            Scripted::new("good", vec![]),
        );
        let routed = router(vec![plain(&bad), plain(&good)], MINUTE, vec![])
            .dispatch(request(false))
            .await?;
        assert_eq!(&*routed.provider, "good");
        assert_eq!((routed.attempts, bad.calls()), (2, 1));
    }
    Ok(())
}

/// Trust boundary 3: 401, 403 and 404 are failures of the target, not of
/// the request: the next target answers, the failing one is not retried.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tb3_upstream_401_403_404_fail_over_at_once() -> Result<(), RouteError> {
    for status in [401, 403, 404] {
        let (bad, good) = (
            Scripted::new(
                "bad",
                vec![Step::Status {
                    status,
                    retry_after: None,
                }],
            ),
            Scripted::new("good", vec![]),
        );
        let controls = crate::ProviderControls::unlimited(CLOCKS, 3, BACKOFF);
        let bad_target = target(&bad, controls, BREAKER);
        let routed = router(vec![bad_target, plain(&good)], MINUTE, vec![])
            .dispatch(request(false))
            .await?;
        assert_eq!(&*routed.provider, "good", "{status}");
        assert_eq!((routed.attempts, bad.calls()), (2, 1), "{status}");
    }
    let only = Scripted::new(
        "only",
        vec![Step::Status {
            status: 401,
            retry_after: None,
        }],
    );
    let result = router(vec![plain(&only)], MINUTE, vec![])
        .dispatch(request(false))
        .await;
    assert!(
        matches!(result, Err(RouteError::Exhausted { .. })),
        "no target left: the gateway failed, not the request"
    );
    Ok(())
}

/// RT-4: client errors are returned at once, never retried or failed over.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rt4_a_client_error_is_returned_at_once() {
    for status in [400, 413, 415, 422] {
        let (bad, good) = (
            Scripted::new(
                "bad",
                vec![Step::Status {
                    status,
                    retry_after: None,
                }],
            ),
            Scripted::new("good", vec![]),
        );
        let result = router(vec![plain(&bad), plain(&good)], MINUTE, vec![])
            .dispatch(request(false))
            .await;
        assert!(
            matches!(result, Err(RouteError::Rejected { attempts: 1, .. })),
            "{status}"
        );
        assert_eq!(good.calls(), 0);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stream_failing_before_its_first_token_fails_over_and_the_winner_keeps_its_head(
) -> Result<(), RouteError> {
    let cut = Scripted::new(
        "cut",
        vec![Step::Stream {
            head: Duration::ZERO,
            chunks: vec![(Duration::ZERO, false)],
            complete: true,
        }],
    );
    let good = Scripted::new(
        "good",
        vec![Step::Stream {
            head: Duration::ZERO,
            chunks: vec![(Duration::ZERO, false), (Duration::ZERO, true)],
            complete: true,
        }],
    );
    let routed = router(vec![plain(&cut), plain(&good)], MINUTE, vec![])
        .dispatch(request(true))
        .await?;
    assert_eq!(
        &*routed.provider, "cut",
        "a stream that completes without tokens is an empty answer, committed at its end"
    );
    let Answer::Stream { head, .. } = routed.answer else {
        panic!("expected a stream")
    };
    assert_eq!(head.len(), 2, "role chunk and Done");

    let broken = Scripted::new(
        "broken",
        vec![Step::Stream {
            head: Duration::ZERO,
            chunks: vec![(Duration::ZERO, false)],
            complete: false,
        }],
    );
    let routed = router(
        vec![plain(&broken), plain(&good)],
        Duration::from_secs(5),
        vec![],
    )
    .dispatch(request(true))
    .await;
    assert!(
        matches!(routed, Err(RouteError::DeadlineExceeded { .. })),
        "a silent stream with no first-token clock waits out the budget"
    );
    Ok(())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fallback_models_are_tried_after_every_target_failed() -> Result<(), RouteError> {
    let (bad, small) = (
        Scripted::new(
            "bad",
            vec![Step::Status {
                status: 500,
                retry_after: None,
            }],
        ),
        Scripted::new("small", vec![]),
    );
    let fallback = ModelRoute {
        name: String::from("s"),
        endpoint: keel_types::Endpoint::Chat,
        strategy: keel_config::Strategy::Ordered,
        targets: vec![plain(&small)],
        fallback: vec![String::from("m")],
        budget: MINUTE,
        hedge: None,
        cache: None,
        last_resort: None,
        affinity: None,
    };
    let routed = router(vec![plain(&bad)], MINUTE, vec![fallback])
        .dispatch(request(false))
        .await?;
    assert_eq!((&*routed.provider, routed.attempts), ("small", 2));
    Ok(())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn exhaustion_reports_the_last_failure_and_every_attempt() {
    let (a, b) = (
        Scripted::new(
            "a",
            vec![Step::Status {
                status: 502,
                retry_after: None,
            }],
        ),
        Scripted::new("b", vec![Step::Refused]),
    );
    let result = router(vec![plain(&a), plain(&b)], MINUTE, vec![])
        .dispatch(request(false))
        .await;
    assert!(matches!(
        result,
        Err(RouteError::Exhausted {
            attempts: 2,
            last: ProviderError::Connect { .. },
            ..
        })
    ));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn unknown_models_and_models_without_targets_are_named() {
    let Err(error) = router(vec![], MINUTE, vec![])
        .dispatch(request(false))
        .await
    else {
        panic!("no targets must fail")
    };
    assert_eq!(
        error.to_string(),
        "the model 'm' has no enabled provider (set the provider's api_key)"
    );
    let empty = crate::Router::new(
        crate::RouteTable::new(vec![]),
        std::sync::Arc::new(keel_telemetry::Metrics::new()),
    );
    assert!(matches!(
        empty.dispatch(request(false)).await,
        Err(RouteError::UnknownModel { .. })
    ));
}

/// TO-2: after the commit point nothing is retried: a stream that stalls
/// ends with an error, and the next target never hears of it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn to2_a_committed_stream_is_never_retried() -> Result<(), RouteError> {
    let stalls = Scripted::new(
        "stalls",
        vec![Step::Stream {
            head: Duration::ZERO,
            chunks: vec![(Duration::ZERO, true)],
            complete: false,
        }],
    );
    let other = Scripted::new("other", vec![]);
    let mut stalling = plain(&stalls);
    stalling.controls = crate::ProviderControls::unlimited(
        crate::Clocks {
            inactivity: Duration::from_secs(2),
            ..super::scripted::CLOCKS
        },
        3,
        super::scripted::BACKOFF,
    );
    let routed = router(vec![stalling, plain(&other)], MINUTE, vec![])
        .dispatch(request(true))
        .await?;
    let Answer::Stream { rest, .. } = routed.answer else {
        panic!("expected a stream")
    };
    let rest: Vec<_> = bounded(rest.collect()).await;
    assert!(matches!(
        rest.last(),
        Some(Err(ProviderError::Timeout {
            clock: keel_providers::Clock::Inactivity,
            ..
        }))
    ));
    assert_eq!((stalls.calls(), other.calls()), (1, 0));
    Ok(())
}

/// TO-2: across 1,000 randomised fault runs, a client never receives tokens
/// from two attempts: every chunk of a committed stream comes from the one
/// target the headers name.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn to2_no_client_ever_receives_tokens_from_two_attempts() {
    use super::scripted::{target, BACKOFF, BREAKER};
    use crate::{Clocks, ProviderControls};
    let clocks = Clocks {
        first_token: Duration::from_secs(1),
        inactivity: Duration::from_secs(1),
        ..super::scripted::CLOCKS
    };
    let step = |pick: u32| match pick % 5 {
        0 => Step::Status {
            status: 503,
            retry_after: None,
        },
        1 => Step::Refused,
        2 => Step::Stream {
            head: Duration::ZERO,
            chunks: vec![(Duration::ZERO, false)],
            complete: false,
        },
        3 => Step::Stream {
            head: Duration::ZERO,
            chunks: vec![(Duration::ZERO, true), (Duration::from_millis(10), true)],
            complete: false,
        },
        _ => Step::Stream {
            head: Duration::ZERO,
            chunks: vec![
                (Duration::ZERO, false),
                (Duration::ZERO, true),
                (Duration::ZERO, true),
            ],
            complete: true,
        },
    };
    let mut answered = 0;
    for _ in 0..1000 {
        let names = ["a", "b", "c"];
        let providers: Vec<_> = names
            .iter()
            .map(|name| Scripted::new(name, vec![step(fastrand::u32(..)), step(fastrand::u32(..))]))
            .collect();
        let targets = providers
            .iter()
            .map(|provider| {
                target(
                    provider,
                    ProviderControls::unlimited(clocks, 2, BACKOFF),
                    BREAKER,
                )
            })
            .collect();
        let Ok(routed) = router(targets, MINUTE, vec![])
            .dispatch(request(true))
            .await
        else {
            continue;
        };
        answered += 1;
        let Answer::Stream { head, rest } = routed.answer else {
            panic!("expected a stream")
        };
        let rest: Vec<_> = bounded(rest.collect()).await;
        let marker = format!(r#"{{"from":"{}"}}"#, routed.provider);
        for event in head.into_iter().map(Ok).chain(rest) {
            if let Ok(keel_providers::StreamEvent::Chunk { data, .. }) = event {
                assert_eq!(
                    data,
                    marker.as_bytes(),
                    "a chunk from another attempt reached the client"
                );
            }
        }
    }
    assert!(
        answered > 500,
        "only {answered} of 1,000 runs reached an answer"
    );
}

/// Trust boundary 5: chunks without a token are held until the first
/// token; an upstream that sends more than 1,024 of them fails that attempt
/// instead of growing the held buffer, and the next target answers.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tb5_endless_chunks_before_the_first_token_fail_the_attempt() -> Result<(), RouteError> {
    let mut chunks = vec![(Duration::ZERO, false); 2_000];
    chunks.push((Duration::ZERO, true));
    let chatty = Scripted::new(
        "chatty",
        vec![Step::Stream {
            head: Duration::ZERO,
            chunks,
            complete: true,
        }],
    );
    let good = Scripted::new(
        "good",
        vec![Step::Stream {
            head: Duration::ZERO,
            chunks: vec![(Duration::ZERO, true)],
            complete: true,
        }],
    );
    let routed = router(vec![plain(&chatty), plain(&good)], MINUTE, vec![])
        .dispatch(request(true))
        .await?;
    assert_eq!(&*routed.provider, "good");
    assert_eq!(routed.attempts, 2);
    Ok(())
}

/// The figures `/admin/providers` shows follow every attempt: the failed
/// target's error and last error, the answering one's first token.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn target_stats_see_failures_and_first_tokens() -> Result<(), RouteError> {
    let (bad, good) = (
        Scripted::new(
            "bad",
            vec![Step::Status {
                status: 503,
                retry_after: None,
            }],
        ),
        Scripted::new("good", vec![]),
    );
    let (bad_target, good_target) = (plain(&bad), plain(&good));
    let (bad_stats, good_stats) = (bad_target.stats.clone(), good_target.stats.clone());
    let routed = router(vec![bad_target, good_target], MINUTE, vec![])
        .dispatch(request(true))
        .await?;
    if let Answer::Stream { rest, .. } = routed.answer {
        let _ = rest.collect::<Vec<_>>().await;
    }
    let bad = bad_stats.snapshot();
    assert_eq!((bad.attempts, bad.errors, bad.first_token), (1, 1, None));
    let last = bad.last_error.map(|error| (error.kind, error.message));
    assert_eq!(last.as_ref().map(|(kind, _)| *kind), Some("server_error"));
    assert!(last.is_some_and(|(_, message)| message.contains("503")));
    let good = good_stats.snapshot();
    assert_eq!((good.attempts, good.errors, good.last_error), (1, 0, None));
    assert!(good.first_token.is_some());
    Ok(())
}
