//! A prompt longer than a target's context window moves on to a target with
//! a larger one, and only to such a target.

use keel_resilience::BreakerState;
use keel_types::ErrorBody;

use super::scripted::{plain, request, router, target, Scripted, Step, BACKOFF, CLOCKS, MINUTE};
use crate::{ModelRoute, ProviderControls, RouteError, Target};

/// OpenAI's refusal of a prompt longer than the model's context window.
fn too_long() -> Step {
    Step::Error {
        status: 400,
        body: ErrorBody::new(
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
            "invalid_request_error",
            Some("messages"),
            Some("context_length_exceeded"),
        ),
    }
}

fn windowed(provider: &std::sync::Arc<Scripted>, window: Option<u32>) -> Target {
    Target {
        context_window: window,
        ..plain(provider)
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_prompt_too_long_for_8k_goes_to_128k_skipping_4k_and_unknown() -> Result<(), RouteError> {
    let small = Scripted::new("8k", vec![too_long()]);
    let smaller = Scripted::new("4k", vec![]);
    let unknown = Scripted::new("unknown", vec![]);
    let large = Scripted::new("128k", vec![]);
    let routed = router(
        vec![
            windowed(&small, Some(8_192)),
            windowed(&smaller, Some(4_096)),
            windowed(&unknown, None),
            windowed(&large, Some(128_000)),
        ],
        MINUTE,
        vec![],
    )
    .dispatch(request(false))
    .await?;
    assert_eq!(&*routed.provider, "128k");
    assert_eq!(routed.attempts, 2);
    assert_eq!((smaller.calls(), unknown.calls()), (0, 0));
    Ok(())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fallback_model_with_a_larger_window_answers() -> Result<(), RouteError> {
    let small = Scripted::new("small", vec![too_long()]);
    let large = Scripted::new("large", vec![]);
    let fallback = ModelRoute {
        name: String::from("big"),
        endpoint: keel_types::Endpoint::Chat,
        strategy: keel_config::Strategy::Ordered,
        targets: vec![windowed(&large, Some(200_000))],
        fallback: Vec::new(),
        budget: MINUTE,
        hedge: None,
        cache: None,
        last_resort: None,
        affinity: None,
    };
    let routed = router(vec![windowed(&small, Some(8_192))], MINUTE, vec![fallback])
        .dispatch(request(false))
        .await?;
    assert_eq!(&*routed.provider, "large");
    Ok(())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn with_no_larger_window_the_400_comes_back_untouched() -> Result<(), RouteError> {
    for (failing, others) in [
        // Only smaller or unknown windows after it.
        (Some(8_192), [Some(4_096), None]),
        // The failing target's own window is unknown: nothing is known larger.
        (None, [Some(128_000), Some(200_000)]),
    ] {
        let small = Scripted::new("small", vec![too_long()]);
        let (a, b) = (Scripted::new("a", vec![]), Scripted::new("b", vec![]));
        let result = router(
            vec![
                windowed(&small, failing),
                windowed(&a, others[0]),
                windowed(&b, others[1]),
            ],
            MINUTE,
            vec![],
        )
        .dispatch(request(false))
        .await;
        let Err(RouteError::Rejected { error, attempts }) = result else {
            panic!("{failing:?}: expected the upstream's 400");
        };
        assert!(error.is_context_length(), "{error}");
        assert_eq!(attempts, 1);
        assert_eq!((a.calls(), b.calls()), (0, 0), "{failing:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn another_client_error_still_ends_the_walk() -> Result<(), RouteError> {
    let small = Scripted::new(
        "small",
        vec![Step::Error {
            status: 400,
            body: ErrorBody::new("bad temperature", "invalid_request_error", None, None),
        }],
    );
    let large = Scripted::new("large", vec![]);
    let result = router(
        vec![
            windowed(&small, Some(8_192)),
            windowed(&large, Some(128_000)),
        ],
        MINUTE,
        vec![],
    )
    .dispatch(request(false))
    .await;
    assert!(matches!(result, Err(RouteError::Rejected { .. })));
    assert_eq!(large.calls(), 0);
    Ok(())
}

/// The refusal is the request's size, not the target's health: it is not
/// retried on the same target and a breaker that opens on any failure stays
/// closed.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_refusing_target_is_neither_retried_nor_charged() -> Result<(), RouteError> {
    let small = Scripted::new("small", vec![too_long()]);
    let large = Scripted::new("large", vec![]);
    let hair_trigger = keel_resilience::BreakerPolicy {
        failure_rate: 0.01,
        window: MINUTE,
        min_requests: 1,
        cooldown: MINUTE,
        half_open_trials: 1,
    };
    let small_target = Target {
        context_window: Some(8_192),
        ..target(
            &small,
            ProviderControls::unlimited(CLOCKS, 3, BACKOFF),
            hair_trigger,
        )
    };
    let breaker = small_target.breaker.clone();
    router(
        vec![small_target, windowed(&large, Some(128_000))],
        MINUTE,
        vec![],
    )
    .dispatch(request(false))
    .await?;
    assert_eq!(small.calls(), 1, "not retried");
    assert_eq!(breaker.state(), BreakerState::Closed);
    Ok(())
}

/// A larger target that then fails for its own reasons lets the walk go on,
/// still only to larger windows.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn after_a_larger_target_fails_the_walk_keeps_to_larger_windows() -> Result<(), RouteError> {
    let small = Scripted::new("small", vec![too_long()]);
    let down = Scripted::new(
        "down",
        vec![Step::Status {
            status: 503,
            retry_after: None,
        }],
    );
    let between = Scripted::new("between", vec![]);
    let large = Scripted::new("large", vec![]);
    let routed = router(
        vec![
            windowed(&small, Some(8_192)),
            windowed(&down, Some(32_000)),
            windowed(&between, Some(4_096)),
            windowed(&large, Some(128_000)),
        ],
        MINUTE,
        vec![],
    )
    .dispatch(request(false))
    .await?;
    assert_eq!(&*routed.provider, "large");
    assert_eq!((down.calls(), between.calls()), (1, 0));
    Ok(())
}
