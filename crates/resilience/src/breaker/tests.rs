use super::*;

const POLICY: BreakerPolicy = BreakerPolicy {
    failure_rate: 0.5,
    window: Duration::from_secs(10),
    min_requests: 20,
    cooldown: Duration::from_secs(30),
    half_open_trials: 3,
};

fn call(breaker: &Arc<CircuitBreaker>, outcome: Outcome) -> bool {
    match breaker.try_acquire() {
        Ok(permit) => {
            permit.record(outcome);
            true
        }
        Err(_) => false,
    }
}

/// CB-1: closed for the first 19 failures, open on the 20th, then refusing
/// with the time left.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cb1_opens_on_the_twentieth_failure_and_refuses_calls() {
    let breaker = CircuitBreaker::new("t", POLICY);
    for _ in 0..19 {
        assert!(call(&breaker, Outcome::Failure));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
    assert!(call(&breaker, Outcome::Failure));
    assert_eq!(breaker.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(breaker.try_acquire().err(), Some(Duration::from_secs(20)));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failure_rate_below_the_threshold_keeps_it_closed() {
    let breaker = CircuitBreaker::new("t", POLICY);
    for index in 0..100 {
        call(
            &breaker,
            if index % 3 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            },
        );
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

/// CB-4: outcomes that say nothing of health never open it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cb4_ignored_outcomes_never_open_it() {
    let breaker = CircuitBreaker::new("t", POLICY);
    for _ in 0..1000 {
        assert!(call(&breaker, Outcome::Ignored));
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

/// Old failures slide out of the window.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failures_outside_the_window_do_not_count() {
    let breaker = CircuitBreaker::new("t", POLICY);
    for _ in 0..15 {
        call(&breaker, Outcome::Failure);
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    for _ in 0..10 {
        call(&breaker, Outcome::Failure);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

fn open_breaker() -> Arc<CircuitBreaker> {
    let breaker = CircuitBreaker::new("t", POLICY);
    for _ in 0..20 {
        call(&breaker, Outcome::Failure);
    }
    breaker
}

/// CB-2: half-open admits exactly the configured trials at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cb2_half_open_admits_exactly_the_configured_trials() {
    let breaker = open_breaker();
    tokio::time::advance(POLICY.cooldown).await;
    let permits: Vec<_> = (0..10).filter_map(|_| breaker.try_acquire().ok()).collect();
    assert_eq!(permits.len(), 3);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    for permit in permits {
        permit.record(Outcome::Success);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

/// CB-2: a failed trial re-opens it and the cooldown starts again.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cb2_a_failed_trial_reopens_it() {
    let breaker = open_breaker();
    tokio::time::advance(POLICY.cooldown).await;
    assert!(call(&breaker, Outcome::Success));
    assert!(call(&breaker, Outcome::Failure));
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(breaker.try_acquire().err(), Some(POLICY.cooldown));
}

/// CB-2: a trial dropped without an outcome frees its slot, so half-open
/// never sticks.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cb2_abandoned_trials_free_their_slot() {
    let breaker = open_breaker();
    tokio::time::advance(POLICY.cooldown).await;
    let permits: Vec<_> = (0..3).filter_map(|_| breaker.try_acquire().ok()).collect();
    assert!(breaker.try_acquire().is_err());
    drop(permits);
    assert!(breaker.try_acquire().is_ok());
    assert_eq!(breaker.transitions(), 2);
}
