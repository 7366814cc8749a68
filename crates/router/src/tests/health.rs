//! Active health checks on the paused clock: probes of an idle provider
//! feed its breakers, open them with no user request and close them again
//! through the half-open trials; a busy provider is not probed.

use std::sync::Arc;
use std::time::Duration;

use keel_resilience::{BreakerPolicy, BreakerState};

use super::scripted::{request, router, target, Probe, Scripted, Step, BACKOFF, CLOCKS, MINUTE};
use crate::{Health, HealthSchedule, HealthState, ProviderControls, RouteError, Router};

const SECOND: Duration = Duration::from_secs(1);

/// Opens after three failures in ten seconds; two trials close it.
const BREAKER: BreakerPolicy = BreakerPolicy {
    failure_rate: 0.5,
    window: Duration::from_secs(10),
    min_requests: 3,
    cooldown: Duration::from_secs(30),
    half_open_trials: 2,
};

/// Controls that probe every `interval`, each probe under `timeout`.
fn probed_every(interval: Duration, timeout: Duration) -> Arc<ProviderControls> {
    let mut controls = ProviderControls::unlimited(CLOCKS, 1, BACKOFF);
    if let Some(controls) = Arc::get_mut(&mut controls) {
        controls.health = Health::every(HealthSchedule { interval, timeout });
    }
    controls
}

/// A router over one target on `provider`, its health checks running.
fn checked_router(provider: &Arc<Scripted>, interval: Duration) -> Arc<Router> {
    let controls = probed_every(interval, SECOND);
    let router = Arc::new(router(
        vec![target(provider, controls, BREAKER)],
        MINUTE,
        vec![],
    ));
    tokio::spawn({
        let router = router.clone();
        async move { router.run_health_checks().await }
    });
    router
}

fn breaker_state(router: &Router) -> Option<BreakerState> {
    router
        .table
        .targets()
        .next()
        .map(|target| target.breaker.state())
}

fn health(router: &Router) -> Option<HealthState> {
    router
        .table
        .targets()
        .next()
        .map(|target| target.controls.health.state())
}

fn health_word(router: &Router) -> &'static str {
    health(router).map_or("none", |state| state.as_str())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failing_probes_open_the_breaker_and_passing_ones_close_it_after_the_cooldown(
) -> Result<(), RouteError> {
    let provider = Scripted::new("p", vec![]);
    provider.set_probe(Probe::Refuse);
    let router = checked_router(&provider, SECOND);

    // Probes at 0 s, 1 s and 2 s fail: three failures open the breaker.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(breaker_state(&router), Some(BreakerState::Open));
    assert_eq!(health_word(&router), "unhealthy");
    let error = health(&router).and_then(|state| state.error().map(str::to_owned));
    assert!(
        error
            .as_deref()
            .is_some_and(|error| error.contains("refused")),
        "{error:?}"
    );
    assert_eq!(provider.calls(), 0, "no user request was sent");
    // The first user after the outage is refused at once, not the probe.
    let refused = router.dispatch(request(false)).await.err();
    assert!(
        matches!(refused, Some(RouteError::Unavailable { .. })),
        "{refused:?}"
    );
    assert_eq!(provider.calls(), 0);

    // The provider recovers: probes pass, but an open breaker lends no
    // permit, so it stays open for its whole cooldown.
    provider.set_probe(Probe::Pass);
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(health_word(&router), "healthy");
    assert_ne!(breaker_state(&router), Some(BreakerState::Closed));

    // After the cooldown, two probes take the two half-open trials.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(breaker_state(&router), Some(BreakerState::Closed));
    assert_eq!(provider.calls(), 0, "probes closed it, not users");
    let probes = router
        .metrics
        .health_checks
        .get_or_create(&keel_telemetry::HealthCheckLabels {
            provider: String::from("p"),
            outcome: String::from("unhealthy"),
        })
        .get();
    assert_eq!(probes, 3);
    Ok(())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_busy_provider_is_not_probed_and_an_idle_one_is() -> Result<(), RouteError> {
    let provider = Scripted::new("p", vec![Step::Answer { delay: SECOND }]);
    let interval = Duration::from_secs(10);
    let router = {
        let router = Arc::new(router(
            vec![target(&provider, probed_every(interval, SECOND), BREAKER)],
            MINUTE,
            vec![],
        ));
        // Traffic first: the checker's first tick finds an attempt just ended.
        router.dispatch(request(false)).await?;
        tokio::spawn({
            let router = router.clone();
            async move { router.run_health_checks().await }
        });
        router
    };
    // A request every 5 s (each taking 1 s) for a minute.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        router.dispatch(request(false)).await?;
    }
    assert_eq!(provider.probes(), 0, "traffic within every interval");
    assert_eq!(health_word(&router), "pending");

    // Idle for two intervals: probed.
    tokio::time::sleep(interval * 2).await;
    assert!(provider.probes() >= 1, "{}", provider.probes());
    assert_eq!(health_word(&router), "healthy");
    Ok(())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_probe_that_outlasts_its_timeout_fails() {
    let provider = Scripted::new("p", vec![]);
    provider.set_probe(Probe::Hang);
    let router = checked_router(&provider, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(health_word(&router), "pending", "still within its second");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let error = health(&router).and_then(|state| state.error().map(str::to_owned));
    assert!(
        error
            .as_deref()
            .is_some_and(|error| error.contains("timed out")),
        "{error:?}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_a_schedule_nothing_is_probed() {
    let provider = Scripted::new("p", vec![]);
    let router = router(vec![super::scripted::plain(&provider)], MINUTE, vec![]);
    let ended = tokio::time::timeout(SECOND, router.run_health_checks()).await;
    assert!(
        ended.is_ok(),
        "no provider has a health check: nothing to run"
    );
    assert_eq!(provider.probes(), 0);
    assert_eq!(health_word(&router), "not_configured");
}
