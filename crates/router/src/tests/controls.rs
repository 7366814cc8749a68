//! Retries, backoff, Retry-After, the retry budget, breakers, bulkheads and
//! rate limits as the dispatch loop applies them.

use std::sync::Arc;
use std::time::Duration;

use keel_resilience::{Backoff, BreakerPolicy, Bulkhead, TokenBucket};
use tokio::time::Instant;

use super::scripted::{
    plain, request, router, target, Scripted, Step, BACKOFF, BREAKER, CLOCKS, MINUTE,
};
use crate::{Clocks, ProviderControls, RouteError};

fn retrying(attempts: u32, backoff: Backoff) -> Arc<ProviderControls> {
    ProviderControls::unlimited(CLOCKS, attempts, backoff)
}

fn gaps(provider: &Scripted) -> Vec<Duration> {
    let times = provider
        .call_times
        .lock()
        .map(|times| times.clone())
        .unwrap_or_default();
    times.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

/// RT-1 in place: retries of one target wait full-jitter backoff, each gap
/// below its ceiling (100 ms, 200 ms, 400 ms), then the next target serves.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rt1_retries_wait_full_jitter_backoff_then_fail_over() -> Result<(), RouteError> {
    let flaky = Scripted::new(
        "flaky",
        vec![Step::Status {
            status: 503,
            retry_after: None,
        }],
    );
    let good = Scripted::new("good", vec![]);
    let routed = router(
        vec![target(&flaky, retrying(4, BACKOFF), BREAKER), plain(&good)],
        MINUTE,
        vec![],
    )
    .dispatch(request(false))
    .await?;
    assert_eq!(
        (&*routed.provider, routed.attempts, flaky.calls()),
        ("good", 5, 4)
    );
    for (retry, gap) in gaps(&flaky).into_iter().enumerate() {
        // The timer rounds a sleep up to the next millisecond.
        assert!(
            gap <= BACKOFF.ceiling(retry as u32),
            "retry {retry} waited {gap:?}"
        );
    }
    Ok(())
}

/// RT-3: Retry-After is honoured exactly; one beyond the budget skips the
/// target instead of waiting.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rt3_retry_after_is_honoured_or_the_target_skipped() -> Result<(), RouteError> {
    let paced = Scripted::new(
        "paced",
        vec![
            Step::Status {
                status: 429,
                retry_after: Some(Duration::from_secs(2)),
            },
            Step::Answer {
                delay: Duration::ZERO,
            },
        ],
    );
    let routed = router(
        vec![target(&paced, retrying(3, BACKOFF), BREAKER)],
        MINUTE,
        vec![],
    )
    .dispatch(request(false))
    .await?;
    assert_eq!(&*routed.provider, "paced");
    assert_eq!(gaps(&paced), vec![Duration::from_secs(2)]);

    let slow = Scripted::new(
        "slow",
        vec![Step::Status {
            status: 503,
            retry_after: Some(Duration::from_secs(120)),
        }],
    );
    let good = Scripted::new("good", vec![]);
    let started = Instant::now();
    let routed = router(
        vec![target(&slow, retrying(3, BACKOFF), BREAKER), plain(&good)],
        MINUTE,
        vec![],
    )
    .dispatch(request(false))
    .await?;
    assert_eq!((&*routed.provider, slow.calls()), ("good", 1));
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no wait for a Retry-After past the budget"
    );
    Ok(())
}

/// RB-1 / RB-3: against a dead provider the retry budget keeps retries to
/// max(3, 20 % of first tries) in the window.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rb3_the_retry_budget_caps_amplification_against_a_dead_provider() {
    let dead = Scripted::new(
        "dead",
        vec![Step::Status {
            status: 503,
            retry_after: None,
        }],
    );
    let router = router(
        vec![target(
            &dead,
            retrying(
                3,
                Backoff {
                    base_delay: Duration::from_millis(1),
                    max_delay: Duration::from_millis(1),
                },
            ),
            BREAKER,
        )],
        MINUTE,
        vec![],
    );
    for _ in 0..100 {
        let _ = router.dispatch(request(false)).await;
    }
    assert_eq!(
        dead.calls(),
        120,
        "100 first tries + 20 budgeted retries, not 300"
    );
}

/// CB-1: once the breaker opens the target gets no calls, the fallback
/// serves everything, and with no fallback the client gets Unavailable
/// with the time left.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cb1_an_open_breaker_stops_calls_and_the_next_target_serves() -> Result<(), RouteError> {
    let policy = BreakerPolicy {
        min_requests: 5,
        ..BREAKER
    };
    let failing = Scripted::new(
        "failing",
        vec![Step::Status {
            status: 500,
            retry_after: None,
        }],
    );
    let good = Scripted::new("good", vec![]);
    let router = router(
        vec![target(&failing, retrying(1, BACKOFF), policy), plain(&good)],
        MINUTE,
        vec![],
    );
    for _ in 0..50 {
        assert_eq!(&*router.dispatch(request(false)).await?.provider, "good");
    }
    assert_eq!(
        failing.calls(),
        5,
        "the breaker opened on the fifth failure"
    );

    let alone = Scripted::new(
        "alone",
        vec![Step::Status {
            status: 500,
            retry_after: None,
        }],
    );
    let only = super::scripted::router(
        vec![target(&alone, retrying(1, BACKOFF), policy)],
        MINUTE,
        vec![],
    );
    for _ in 0..5 {
        let _ = only.dispatch(request(false)).await;
    }
    let refused = only.dispatch(request(false)).await;
    assert!(
        matches!(refused, Err(RouteError::Unavailable { retry_after, .. }) if retry_after == BREAKER.cooldown),
        "{:?}",
        refused.err()
    );
    Ok(())
}

/// CB-3: timeouts (slow first tokens) count as failures.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cb3_slow_first_tokens_open_the_breaker() {
    let policy = BreakerPolicy {
        min_requests: 3,
        ..BREAKER
    };
    let slow = Scripted::new(
        "slow",
        vec![Step::Answer {
            delay: Duration::from_secs(30),
        }],
    );
    let controls = ProviderControls::unlimited(
        Clocks {
            first_token: Duration::from_secs(1),
            ..CLOCKS
        },
        1,
        BACKOFF,
    );
    let router = router(vec![target(&slow, controls, policy)], MINUTE, vec![]);
    for _ in 0..10 {
        let _ = router.dispatch(request(false)).await;
    }
    assert_eq!(slow.calls(), 3);
}

/// CB-4: client errors and 429s never open the breaker.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cb4_client_errors_and_429_do_not_open_the_breaker() {
    let policy = BreakerPolicy {
        min_requests: 5,
        ..BREAKER
    };
    for status in [400, 413, 422, 429] {
        let provider = Scripted::new(
            "p",
            vec![Step::Status {
                status,
                retry_after: None,
            }],
        );
        let router = router(
            vec![target(&provider, retrying(1, BACKOFF), policy)],
            MINUTE,
            vec![],
        );
        for _ in 0..100 {
            let _ = router.dispatch(request(false)).await;
        }
        assert_eq!(provider.calls(), 100, "status {status} tripped the breaker");
    }
}

/// Trust boundary 3: 401, 403 and 404 blame the gateway's side (a wrong
/// key, no access, a wrong model mapping): they count in the breaker.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tb3_upstream_401_403_404_open_the_breaker() {
    let policy = BreakerPolicy {
        min_requests: 5,
        ..BREAKER
    };
    for status in [401, 403, 404] {
        let provider = Scripted::new(
            "p",
            vec![Step::Status {
                status,
                retry_after: None,
            }],
        );
        let router = router(
            vec![target(&provider, retrying(3, BACKOFF), policy)],
            MINUTE,
            vec![],
        );
        for _ in 0..100 {
            let _ = router.dispatch(request(false)).await;
        }
        assert_eq!(
            provider.calls(),
            5,
            "status {status}: one call per request (never retried on the same target) until the breaker opened"
        );
    }
}

/// CB-2: after the cooldown, half-open lets exactly `half_open_trials`
/// concurrent calls through.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cb2_half_open_lets_exactly_the_configured_trials_through() {
    let policy = BreakerPolicy {
        min_requests: 2,
        cooldown: Duration::from_secs(5),
        half_open_trials: 2,
        ..BREAKER
    };
    let steps = vec![
        Step::Status {
            status: 500,
            retry_after: None,
        },
        Step::Status {
            status: 500,
            retry_after: None,
        },
        Step::Answer {
            delay: Duration::from_secs(1),
        },
    ];
    let recovering = Scripted::new("recovering", steps);
    let router = Arc::new(router(
        vec![target(&recovering, retrying(1, BACKOFF), policy)],
        MINUTE,
        vec![],
    ));
    for _ in 0..2 {
        let _ = router.dispatch(request(false)).await;
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    let calls: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn({
                let router = router.clone();
                async move { router.dispatch(request(false)).await.is_ok() }
            })
        })
        .collect();
    let mut served = 0;
    for call in calls {
        served += usize::from(call.await.unwrap_or(false));
    }
    assert_eq!(
        (served, recovering.calls()),
        (2, 4),
        "two trials passed, eight were refused"
    );
    assert!(
        router.dispatch(request(false)).await.is_ok(),
        "two good trials closed the breaker"
    );
}

/// BH-1: a full bulkhead skips the target at once; with no other target
/// the client gets Unavailable, without waiting.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bh1_a_full_bulkhead_skips_the_target_without_queueing() -> Result<(), RouteError> {
    let slow = Scripted::new(
        "slow",
        vec![Step::Answer {
            delay: Duration::from_secs(60),
        }],
    );
    let good = Scripted::new("good", vec![]);
    let mut controls = ProviderControls::unlimited(CLOCKS, 1, BACKOFF);
    if let Some(controls) = Arc::get_mut(&mut controls) {
        controls.bulkhead = Bulkhead::new(2);
    }
    let router = Arc::new(router(
        vec![target(&slow, controls, BREAKER), plain(&good)],
        Duration::from_secs(600),
        vec![],
    ));
    let held: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn({
                let router = router.clone();
                async move {
                    router
                        .dispatch(request(false))
                        .await
                        .map(|routed| routed.provider)
                }
            })
        })
        .collect();
    // Let both held calls take their slots before the third arrives.
    for _ in 0..100 {
        if slow.calls() == 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    assert_eq!(&*router.dispatch(request(false)).await?.provider, "good");
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(slow.calls(), 2);
    for call in held {
        assert!(call
            .await
            .is_ok_and(|routed| routed.is_ok_and(|provider| &*provider == "slow")));
    }
    Ok(())
}

/// A provider's rpm bucket skips the target once empty, and an upstream 429
/// drains it for Retry-After.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_provider_rate_limit_skips_the_target_when_empty() -> Result<(), RouteError> {
    let limited = Scripted::new(
        "limited",
        vec![
            Step::Answer {
                delay: Duration::ZERO,
            },
            Step::Status {
                status: 429,
                retry_after: Some(Duration::from_secs(30)),
            },
            Step::Answer {
                delay: Duration::ZERO,
            },
        ],
    );
    let good = Scripted::new("good", vec![]);
    let mut controls = ProviderControls::unlimited(CLOCKS, 1, BACKOFF);
    if let Some(controls) = Arc::get_mut(&mut controls) {
        controls.requests = Some(keel_redis::RateBucket::Local(TokenBucket::new(600, MINUTE)));
    }
    let router = router(
        vec![target(&limited, controls, BREAKER), plain(&good)],
        MINUTE,
        vec![],
    );
    assert_eq!(&*router.dispatch(request(false)).await?.provider, "limited");
    assert_eq!(
        &*router.dispatch(request(false)).await?.provider,
        "good",
        "the 429 failed over"
    );
    assert_eq!(
        &*router.dispatch(request(false)).await?.provider,
        "good",
        "the bucket is paused for Retry-After"
    );
    assert_eq!(limited.calls(), 2);
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(&*router.dispatch(request(false)).await?.provider, "limited");
    Ok(())
}

/// Retries against a recovering upstream are spread in time, not in
/// lockstep: 100 clients fail at the same instant; their retries land
/// uniformly across the first backoff window (measured: no 10 ms slice holds
/// more than a fifth of them, and they cover most of the window).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_to_a_recovering_upstream_are_spread_in_time() {
    // The jitter draws from this thread's generator: seeded, the draw is
    // the same every run (unseeded, 1 run in about 100 put 21 of the 100
    // retries in one slice).
    fastrand::seed(0x6b65_656c);
    let mut steps: Vec<Step> = (0..100)
        .map(|_| Step::Status {
            status: 503,
            retry_after: None,
        })
        .collect();
    steps.push(Step::Answer {
        delay: Duration::ZERO,
    });
    let recovering = Scripted::new("recovering", steps);
    let controls = retrying(
        2,
        Backoff {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        },
    );
    if let Some(budget) = Some(&controls.budget) {
        for _ in 0..1000 {
            budget.record_first_try();
        }
    }
    let router = Arc::new(router(
        vec![target(&recovering, controls, BREAKER)],
        MINUTE,
        vec![],
    ));
    let started = Instant::now();
    let clients: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn({
                let router = router.clone();
                async move { router.dispatch(request(false)).await.is_ok() }
            })
        })
        .collect();
    for client in clients {
        assert!(client.await.unwrap_or(false));
    }
    let times = recovering
        .call_times
        .lock()
        .map(|times| times.clone())
        .unwrap_or_default();
    let retries: Vec<Duration> = times[100..].iter().map(|at| *at - started).collect();
    assert_eq!(retries.len(), 100);
    let mut per_slice = [0usize; 10];
    for at in &retries {
        per_slice[(at.as_millis() / 10).min(9) as usize] += 1;
    }
    let busiest = per_slice.iter().copied().max().unwrap_or(0);
    let spread = retries.iter().max().copied().unwrap_or_default()
        - retries.iter().min().copied().unwrap_or_default();
    assert!(busiest <= 20, "retries bunched: {per_slice:?}");
    assert!(
        spread >= Duration::from_millis(80),
        "retries spread over only {spread:?}"
    );
}

/// The cap after each request, with the calls `provider` had by then,
/// while `clients` each send `requests` requests to `router`.
async fn load(
    router: &Arc<crate::Router>,
    provider: &Arc<Scripted>,
    bulkhead: &Bulkhead,
    clients: usize,
    requests: usize,
) -> Vec<(u32, usize)> {
    let trace = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (router, provider) = (router.clone(), provider.clone());
            let (bulkhead, trace) = (bulkhead.clone(), trace.clone());
            tokio::spawn(async move {
                for _ in 0..requests {
                    let answered = router.dispatch(request(false)).await.is_ok();
                    trace
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((provider.calls(), bulkhead.capacity()));
                    assert!(answered, "a request failed");
                }
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.is_ok(), "a client panicked");
    }
    let trace = trace
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    trace
}

/// BH-3: with `max_concurrent: adaptive`, a provider whose latency doubles
/// once more than 4 calls run gets its cap lowered from 20 towards where
/// its latency holds, the excess going to the next target; when it stops
/// slowing down under load, the cap grows back to its ceiling. The cap
/// stays within its bounds throughout.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bh3_an_adaptive_cap_follows_latency_under_load() -> Result<(), RouteError> {
    let base = Duration::from_millis(100);
    let loaded = Scripted::new("loaded", vec![Step::Loaded { base, knee: 4 }]);
    let spare = Scripted::new("spare", vec![Step::Answer { delay: base }]);
    let bulkhead = Bulkhead::adaptive(keel_resilience::AdaptivePolicy { min: 3, max: 80 });
    let mut controls = ProviderControls::unlimited(CLOCKS, 1, BACKOFF);
    if let Some(controls) = Arc::get_mut(&mut controls) {
        controls.bulkhead = bulkhead.clone();
    }
    let router = Arc::new(router(
        vec![target(&loaded, controls, BREAKER), plain(&spare)],
        MINUTE,
        vec![],
    ));
    assert_eq!(bulkhead.capacity(), 20);

    let trace = load(&router, &loaded, &bulkhead, 60, 10).await;
    let lowered_after = trace
        .iter()
        .find(|&&(_, cap)| cap <= 10)
        .map(|&(calls, _)| calls);
    assert!(
        lowered_after.is_some_and(|calls| calls <= 60),
        "lowered to 10 only after {lowered_after:?} calls"
    );
    assert!(
        trace.iter().all(|&(_, cap)| (3..=20).contains(&cap)),
        "the cap left 3..=20: {trace:?}"
    );
    assert!(
        spare.calls() > 0,
        "nothing over the cap went to the next target"
    );

    // The provider now takes any load at its base latency.
    loaded.set_script(Step::Loaded { base, knee: 1_000 });
    let trace = load(&router, &loaded, &bulkhead, 60, 20).await;
    assert_eq!(
        bulkhead.capacity(),
        80,
        "the cap came back only to {}",
        bulkhead.capacity()
    );
    assert!(
        trace.iter().all(|&(_, cap)| cap <= 80),
        "above the ceiling: {trace:?}"
    );
    Ok(())
}
