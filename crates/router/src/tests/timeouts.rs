//! Each of the five clocks, alone, against a stalling scripted upstream
//! (TO-1 is the HTTP client's connect timeout, tested end to end).

use std::time::Duration;

use futures_util::StreamExt;
use keel_providers::{Clock, ProviderError};
use tokio::time::Instant;

use super::scripted::{
    bounded, request, router, target, Scripted, Step, BACKOFF, BREAKER, CLOCKS, MINUTE,
};
use crate::{Answer, Clocks, ProviderControls, RouteError};

fn with_clocks(provider: &std::sync::Arc<Scripted>, clocks: Clocks) -> crate::Target {
    target(
        provider,
        ProviderControls::unlimited(clocks, 1, BACKOFF),
        BREAKER,
    )
}

fn stream(head: Duration, chunks: Vec<(Duration, bool)>, complete: bool) -> Step {
    Step::Stream {
        head,
        chunks,
        complete,
    }
}

/// Dispatches with a failing first target; returns when the second target
/// was called.
async fn first_fails_with(
    first_step: Step,
    clocks: Clocks,
    stream_request: bool,
) -> Result<Duration, RouteError> {
    let first = Scripted::new("first", vec![first_step]);
    let second = Scripted::new(
        "second",
        vec![stream(Duration::ZERO, vec![(Duration::ZERO, true)], true)],
    );
    let second_plain = with_clocks(&second, CLOCKS);
    let started = Instant::now();
    let routed = router(
        vec![with_clocks(&first, clocks), second_plain],
        MINUTE,
        vec![],
    )
    .dispatch(request(stream_request))
    .await?;
    assert_eq!(&*routed.provider, "second");
    assert_eq!(routed.attempts, 2);
    let called_at = second
        .call_times
        .lock()
        .map(|times| times[0])
        .unwrap_or(started);
    Ok(called_at - started)
}

/// The headers clock: an upstream that accepts and says nothing is left
/// after `headers`, well before `first_token`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_headers_clock_detects_a_dead_lane() -> Result<(), RouteError> {
    let clocks = Clocks {
        headers: Duration::from_secs(2),
        ..CLOCKS
    };
    let failover_after = first_fails_with(
        stream(Duration::from_secs(3600), vec![], true),
        clocks,
        true,
    )
    .await?;
    assert_eq!(failover_after, Duration::from_secs(2));
    Ok(())
}

/// TO-2: 200 headers, then no token: the attempt is abandoned at the
/// first-token limit; role-only chunks do not count as tokens.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn to2_the_first_token_clock_ignores_role_only_chunks() -> Result<(), RouteError> {
    let clocks = Clocks {
        first_token: Duration::from_secs(5),
        ..CLOCKS
    };
    let keepalives = (0..100)
        .map(|_| (Duration::from_millis(500), false))
        .collect();
    let failover_after =
        first_fails_with(stream(Duration::ZERO, keepalives, true), clocks, true).await?;
    assert_eq!(failover_after, Duration::from_secs(5));
    Ok(())
}

/// For a non-stream request the whole answer must come within first_token.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_non_stream_answer_is_its_own_first_token() -> Result<(), RouteError> {
    let clocks = Clocks {
        first_token: Duration::from_secs(3),
        headers: Duration::from_millis(1),
        ..CLOCKS
    };
    let failover_after = first_fails_with(
        Step::Answer {
            delay: Duration::from_secs(10),
        },
        clocks,
        false,
    )
    .await?;
    assert_eq!(
        failover_after,
        Duration::from_secs(3),
        "headers does not apply to non-streams"
    );
    Ok(())
}

/// TO-3: after the first token, a stall longer than `inactivity` ends the
/// stream with an error at that moment; tokens before it reset the clock.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn to3_the_inactivity_clock_ends_a_stalled_stream() -> Result<(), RouteError> {
    let clocks = Clocks {
        inactivity: Duration::from_secs(4),
        ..CLOCKS
    };
    let chunks = vec![
        (Duration::ZERO, true),
        (Duration::from_secs(3), true),
        (Duration::from_secs(3), true),
    ];
    let provider = Scripted::new("p", vec![stream(Duration::ZERO, chunks, false)]);
    let routed = router(vec![with_clocks(&provider, clocks)], MINUTE, vec![])
        .dispatch(request(true))
        .await?;
    let started = Instant::now();
    let Answer::Stream { rest, .. } = routed.answer else {
        panic!("expected a stream")
    };
    let events: Vec<_> = bounded(rest.collect()).await;
    assert_eq!(events.len(), 3, "two more tokens, then the timeout");
    assert!(matches!(
        events.last(),
        Some(Err(ProviderError::Timeout {
            clock: Clock::Inactivity,
            ..
        }))
    ));
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(10),
        "3 s + 3 s of tokens, then 4 s of silence"
    );
    Ok(())
}

/// The total clock bounds one attempt, stream included.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_total_clock_bounds_a_trickling_stream() -> Result<(), RouteError> {
    let clocks = Clocks {
        total: Duration::from_secs(10),
        ..CLOCKS
    };
    let trickle = (0..100).map(|_| (Duration::from_secs(1), true)).collect();
    let provider = Scripted::new("p", vec![stream(Duration::ZERO, trickle, true)]);
    let started = Instant::now();
    let routed = router(vec![with_clocks(&provider, clocks)], MINUTE, vec![])
        .dispatch(request(true))
        .await?;
    let Answer::Stream { rest, .. } = routed.answer else {
        panic!("expected a stream")
    };
    let events: Vec<_> = bounded(rest.collect()).await;
    assert!(matches!(
        events.last(),
        Some(Err(ProviderError::Timeout {
            clock: Clock::Total,
            ..
        }))
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    Ok(())
}

/// TO-4: the request budget covers every attempt and backoff: an upstream
/// that hangs every time gets a 504 at the budget, not attempts × per-try.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn to4_the_request_budget_covers_every_attempt() {
    let clocks = Clocks {
        first_token: Duration::from_secs(3),
        ..CLOCKS
    };
    let hangs = Scripted::new(
        "hangs",
        vec![Step::Answer {
            delay: Duration::from_secs(3600),
        }],
    );
    let also_hangs = Scripted::new(
        "also",
        vec![Step::Answer {
            delay: Duration::from_secs(3600),
        }],
    );
    let controls = ProviderControls::unlimited(clocks, 5, BACKOFF);
    let targets = vec![
        target(&hangs, controls.clone(), BREAKER),
        target(&also_hangs, controls, BREAKER),
    ];
    let started = Instant::now();
    let result = router(targets, Duration::from_secs(10), vec![])
        .dispatch(request(false))
        .await;
    assert!(
        matches!(result, Err(RouteError::DeadlineExceeded { .. })),
        "{:?}",
        result.err()
    );
    assert!(
        started.elapsed() <= Duration::from_secs(10),
        "answered after {:?}",
        started.elapsed()
    );
}
