//! First-token hedging on the paused clock (HG-1, HG-2, HG-3).

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::scripted::{bounded, hedged_router, plain, request, Scripted, Step, MINUTE};
use crate::{Answer, Hedge, RouteError, Router};

const AFTER: Duration = Duration::from_millis(100);

fn stream_after(head: Duration) -> Step {
    Step::Stream {
        head,
        chunks: vec![(Duration::ZERO, true)],
        complete: true,
    }
}

fn hedging(targets: Vec<crate::Target>, budget: f64) -> Router {
    hedged_router(
        targets,
        MINUTE,
        vec![],
        Some(Hedge::fixed(AFTER, 1, budget)),
    )
}

/// HG-1: a first attempt with no first token after the delay is hedged on
/// the same (only) target; the hedge's answer is served at about the delay
/// plus its own latency, marked hedged, and both attempts are counted.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn hg1_a_slow_first_attempt_is_hedged_and_the_hedge_wins() -> Result<(), RouteError> {
    for stream in [false, true] {
        let (slow, fast) = if stream {
            (
                stream_after(Duration::from_secs(5)),
                stream_after(Duration::from_millis(10)),
            )
        } else {
            (
                Step::Answer {
                    delay: Duration::from_secs(5),
                },
                Step::Answer {
                    delay: Duration::from_millis(10),
                },
            )
        };
        let upstream = Scripted::new("up", vec![slow, fast]);
        let started = Instant::now();
        let routed =
            bounded(hedging(vec![plain(&upstream)], 1.0).dispatch(request(stream))).await?;
        assert_eq!(
            started.elapsed(),
            AFTER + Duration::from_millis(10),
            "stream {stream}"
        );
        assert!(routed.hedged);
        assert_eq!((routed.attempts, upstream.calls()), (2, 2));
        assert_eq!(
            upstream.cancelled(),
            1,
            "the slow attempt was dropped at once"
        );
    }
    Ok(())
}

/// No hedge when the first attempt commits within the delay, and none once
/// a stream has committed, however slow its tail.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_attempt_that_commits_in_time_is_never_hedged() -> Result<(), RouteError> {
    let upstream = Scripted::new(
        "up",
        vec![Step::Stream {
            head: Duration::from_millis(50),
            chunks: vec![(Duration::ZERO, true), (Duration::from_secs(5), true)],
            complete: true,
        }],
    );
    let router = hedging(vec![plain(&upstream)], 1.0);
    let routed = router.dispatch(request(true)).await?;
    assert!(!routed.hedged);
    let Answer::Stream { rest, .. } = routed.answer else {
        panic!("expected a stream")
    };
    let _: Vec<_> = bounded(rest.collect()).await;
    assert_eq!((routed.attempts, upstream.calls()), (1, 1));
    Ok(())
}

/// HG-1: hedges are capped by their own budget, max(1, 10 % of the
/// model's requests in the trailing 10 s): 100 slow requests at once make
/// exactly 10 hedges.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn hg1_hedges_stay_within_their_budget() -> Result<(), RouteError> {
    let upstream = Scripted::new(
        "up",
        vec![Step::Answer {
            delay: Duration::from_millis(300),
        }],
    );
    let router = hedging(vec![plain(&upstream)], 0.1);
    let requests = (0..100).map(|_| router.dispatch(request(false)));
    let routed = bounded(futures_util::future::join_all(requests)).await;
    let hedged = routed
        .iter()
        .filter(|routed| routed.as_ref().is_ok_and(|routed| routed.attempts == 2))
        .count();
    assert_eq!(hedged, 10);
    assert_eq!(upstream.calls(), 110);
    Ok(())
}

/// HG-2: with two targets whose answers land within a millisecond of each
/// other, 1,000 races each give exactly one stream, from one provider only,
/// and the loser is cancelled unless it had already answered.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn hg2_exactly_one_winner_and_the_loser_is_dropped() -> Result<(), RouteError> {
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut hedge_wins, mut cancelled) = (0, 0);
    for _ in 0..1_000 {
        let first_head = AFTER + Duration::from_micros(rng.u64(0..2_000));
        let hedge_head = Duration::from_micros(rng.u64(0..2_000));
        let (a, b) = (
            Scripted::new("a", vec![stream_after(first_head)]),
            Scripted::new("b", vec![stream_after(hedge_head)]),
        );
        let routed =
            bounded(hedging(vec![plain(&a), plain(&b)], 1.0).dispatch(request(true))).await?;
        let Answer::Stream { head, rest } = routed.answer else {
            panic!("expected a stream")
        };
        let rest: Vec<_> = bounded(rest.collect()).await;
        let marker = format!(r#"{{"from":"{}"}}"#, routed.provider);
        for event in head.into_iter().map(Ok).chain(rest) {
            if let Ok(keel_providers::StreamEvent::Chunk { data, .. }) = event {
                assert_eq!(data, marker.as_bytes(), "tokens from one provider only");
            }
        }
        assert_eq!(
            routed.hedged,
            &*routed.provider == "b",
            "the hedge starts at the next target"
        );
        assert_eq!((a.calls(), b.calls()), (1, 1));
        let loser = if routed.hedged { &a } else { &b };
        assert!(loser.cancelled() <= 1);
        hedge_wins += usize::from(routed.hedged);
        cancelled += loser.cancelled();
    }
    assert!(
        hedge_wins > 100 && hedge_wins < 900,
        "both sides won races: {hedge_wins}"
    );
    assert!(cancelled > 900, "losers were dropped: {cancelled}");
    Ok(())
}

/// HG-3: an upstream that refuses the request itself (400) ends the race at
/// once, the slow attempt dropped; a failed hedge (503) leaves the first
/// attempt running to answer; a retryable failure before the delay moves
/// on to the next target at once, not at the delay.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn hg3_errors_in_a_race() -> Result<(), RouteError> {
    let upstream = Scripted::new(
        "up",
        vec![
            Step::Answer {
                delay: Duration::from_secs(5),
            },
            Step::Status {
                status: 400,
                retry_after: None,
            },
        ],
    );
    let started = Instant::now();
    let refused = hedging(vec![plain(&upstream)], 1.0)
        .dispatch(request(false))
        .await;
    assert!(
        matches!(refused, Err(RouteError::Rejected { attempts: 2, .. })),
        "the 400 is returned"
    );
    assert_eq!(started.elapsed(), AFTER);
    assert_eq!(upstream.cancelled(), 1);

    let upstream = Scripted::new(
        "up",
        vec![
            Step::Answer {
                delay: Duration::from_millis(300),
            },
            Step::Status {
                status: 503,
                retry_after: None,
            },
        ],
    );
    let started = Instant::now();
    let routed = hedging(vec![plain(&upstream)], 1.0)
        .dispatch(request(false))
        .await?;
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert!(!routed.hedged);
    assert_eq!(routed.attempts, 2);

    let (bad, good) = (
        Scripted::new(
            "bad",
            vec![Step::Status {
                status: 503,
                retry_after: None,
            }],
        ),
        Scripted::new(
            "good",
            vec![Step::Answer {
                delay: Duration::from_millis(10),
            }],
        ),
    );
    let started = Instant::now();
    let routed = hedging(vec![plain(&bad), plain(&good)], 1.0)
        .dispatch(request(false))
        .await?;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(10),
        "failed over at once"
    );
    assert_eq!((&*routed.provider, routed.hedged), ("good", false));
    Ok(())
}
