//! Routing strategies: how each orders a model's targets per request, and
//! that a target refused by its controls is skipped the same way under all.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use keel_config::Strategy;
use keel_providers::{Completion, Provider, ProviderError, Reply, UpstreamModel};
use keel_resilience::{BreakerPolicy, Outcome};
use keel_types::ChatRequest;

use super::scripted::{
    plain, request, strategy_router, table, target, Scripted, Step, BACKOFF, BREAKER, CLOCKS,
};
use crate::{Answer, ModelRoute, ProviderControls, RouteError, RouteTable, Target};

const PLANS: usize = 10_000;

fn named(name: &'static str) -> Target {
    plain(&Scripted::new(name, vec![]))
}

fn weighted(name: &'static str, weight: u32) -> Target {
    Target {
        weight,
        ..named(name)
    }
}

/// The provider names of one plan of `m`, in order.
fn plan_names(table: &RouteTable, rng: &mut fastrand::Rng) -> Result<Vec<String>, RouteError> {
    Ok(table
        .plan_with("m", rng)?
        .iter()
        .map(|target| target.provider_name.to_string())
        .collect())
}

/// How many of `PLANS` plans start with each of `names`.
fn first_picks(table: &RouteTable, names: &[&str], seed: u64) -> Result<Vec<usize>, RouteError> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut counts = vec![0; names.len()];
    for _ in 0..PLANS {
        let plan = plan_names(table, &mut rng)?;
        if let Some(position) = names
            .iter()
            .position(|name| Some(*name) == plan.first().map(String::as_str))
        {
            counts[position] += 1;
        }
    }
    Ok(counts)
}

fn share(count: usize) -> f64 {
    count as f64 / PLANS as f64
}

#[test]
fn weighted_first_picks_follow_the_weights_and_the_rest_keep_their_order() -> Result<(), RouteError>
{
    let table = table(
        Strategy::Weighted,
        vec![weighted("a", 1), weighted("b", 3), weighted("c", 6)],
    );
    let counts = first_picks(&table, &["a", "b", "c"], 7)?;
    for (count, expected) in counts.iter().zip([0.1, 0.3, 0.6]) {
        assert!(
            (share(*count) - expected).abs() < 0.02,
            "first picks {counts:?}, expected shares 10/30/60 %"
        );
    }
    let mut rng = fastrand::Rng::with_seed(8);
    for _ in 0..100 {
        let plan = plan_names(&table, &mut rng)?;
        let rest: Vec<&String> = ["a", "b", "c"]
            .iter()
            .filter_map(|name| plan.iter().skip(1).find(|other| other == name))
            .collect();
        assert_eq!(rest, plan.iter().skip(1).collect::<Vec<_>>(), "{plan:?}");
        assert_eq!(plan.len(), 3);
    }
    Ok(())
}

#[test]
fn weights_mean_nothing_to_the_other_strategies() -> Result<(), RouteError> {
    let table = table(
        Strategy::Ordered,
        vec![weighted("a", 1), weighted("b", 1000)],
    );
    assert_eq!(first_picks(&table, &["a", "b"], 1)?, vec![PLANS, 0]);
    Ok(())
}

/// Holds `calls` calls in flight on `target` until the guards are dropped.
fn busy(target: &Target, calls: usize) -> Vec<crate::stats::InFlight> {
    (0..calls).map(|_| target.stats.start_call()).collect()
}

#[test]
fn least_busy_never_puts_the_busier_of_two_first() -> Result<(), RouteError> {
    let (a, b) = (named("a"), named("b"));
    let _held = busy(&b, 2);
    let table = table(Strategy::LeastBusy, vec![a, b]);
    assert_eq!(first_picks(&table, &["a", "b"], 3)?, vec![PLANS, 0]);
    Ok(())
}

#[test]
fn least_busy_breaks_a_tie_at_random() -> Result<(), RouteError> {
    let table = table(Strategy::LeastBusy, vec![named("a"), named("b")]);
    let counts = first_picks(&table, &["a", "b"], 4)?;
    assert!(
        (share(counts[0]) - 0.5).abs() < 0.02,
        "idle targets share first picks: {counts:?}"
    );
    Ok(())
}

#[test]
fn least_busy_of_three_orders_a_random_pair_by_calls_in_flight() -> Result<(), RouteError> {
    let (a, b, c) = (named("a"), named("b"), named("c"));
    let (_b_calls, _c_calls) = (busy(&b, 5), busy(&c, 10));
    let table = table(Strategy::LeastBusy, vec![a, b, c]);
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..1000 {
        let plan = table.plan_with("m", &mut rng)?;
        let calls: Vec<usize> = plan.iter().map(|target| target.stats.in_flight()).collect();
        assert!(calls[0] < calls[1], "the pair's idler first: {calls:?}");
        assert_eq!(calls.len(), 3);
    }
    // The busiest is never first; the middle one is first only when drawn
    // with the busiest, one pair in three.
    let counts = first_picks(&table, &["a", "b", "c"], 6)?;
    assert_eq!(counts[2], 0, "{counts:?}");
    assert!((share(counts[1]) - 1.0 / 3.0).abs() < 0.02, "{counts:?}");
    Ok(())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_committed_stream_counts_in_flight_until_it_ends_and_least_busy_spreads_them(
) -> Result<(), RouteError> {
    let hanging = |name| {
        let provider = Scripted::new(
            name,
            vec![Step::Stream {
                head: Duration::from_millis(10),
                chunks: vec![(Duration::from_millis(5), true)],
                complete: false,
            }],
        );
        plain(&provider)
    };
    let (a, b) = (hanging("a"), hanging("b"));
    let (a_stats, b_stats) = (a.stats.clone(), b.stats.clone());
    let router = strategy_router(Strategy::LeastBusy, vec![a, b]);
    let mut open = Vec::new();
    for _ in 0..10 {
        let routed = router.dispatch(request(true)).await?;
        assert!(matches!(routed.answer, Answer::Stream { .. }));
        open.push(routed);
        let (a_calls, b_calls) = (a_stats.in_flight(), b_stats.in_flight());
        assert_eq!(a_calls + b_calls, open.len(), "every open stream counts");
        assert!(a_calls.abs_diff(b_calls) <= 1, "{a_calls} and {b_calls}");
    }
    drop(open);
    assert_eq!((a_stats.in_flight(), b_stats.in_flight()), (0, 0));
    Ok(())
}

/// Answers every call after a delay that can be changed between calls.
struct Tunable {
    name: &'static str,
    delay_ms: AtomicU64,
    calls: AtomicU32,
}

impl Tunable {
    fn new(name: &'static str, delay_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            name,
            delay_ms: AtomicU64::new(delay_ms),
            calls: AtomicU32::new(0),
        })
    }

    fn set_delay_ms(&self, delay_ms: u64) {
        self.delay_ms.store(delay_ms, Ordering::SeqCst);
    }
}

impl Provider for Tunable {
    fn name(&self) -> &str {
        self.name
    }

    fn chat(
        &self,
        _request: Arc<ChatRequest>,
        _model: UpstreamModel,
    ) -> BoxFuture<'static, Result<Reply, ProviderError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = Duration::from_millis(self.delay_ms.load(Ordering::SeqCst));
        async move {
            tokio::time::sleep(delay).await;
            Ok(Reply::Complete(Completion {
                body: Bytes::from_static(b"{}"),
                usage: None,
                written: None,
            }))
        }
        .boxed()
    }
}

fn tunable_target(provider: &Arc<Tunable>) -> Target {
    Target {
        provider_name: Arc::from(provider.name),
        provider: provider.clone(),
        ..named("placeholder")
    }
}

/// How many of `requests` sequential requests `provider` answered.
async fn answered_by(
    router: &crate::Router,
    provider: &str,
    requests: usize,
) -> Result<usize, RouteError> {
    let mut count = 0;
    for _ in 0..requests {
        let routed = router.dispatch(request(false)).await?;
        count += usize::from(&*routed.provider == provider);
    }
    Ok(count)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn latency_moves_traffic_off_a_target_that_turns_slow_and_back_when_it_recovers(
) -> Result<(), RouteError> {
    // The strategies draw from the thread's generator: seeded, the run
    // is the same every time.
    fastrand::seed(11);
    let (fast, steady) = (Tunable::new("fast", 100), Tunable::new("steady", 300));
    let router = strategy_router(
        Strategy::Latency,
        vec![tunable_target(&fast), tunable_target(&steady)],
    );
    let warm = answered_by(&router, "fast", 100).await?;
    assert!(warm >= 90, "fast answered {warm} of 100");

    // Ten times slower: within 100 requests the traffic has left it (but
    // for exploration).
    fast.set_delay_ms(1000);
    let _moving = answered_by(&router, "fast", 50).await?;
    let slow = answered_by(&router, "fast", 50).await?;
    assert!(slow <= 5, "the slow target still answered {slow} of 50");

    // Recovered: exploration measures it again and the traffic returns.
    fast.set_delay_ms(100);
    let _returning = answered_by(&router, "fast", 900).await?;
    let recovered = answered_by(&router, "fast", 100).await?;
    assert!(
        recovered >= 90,
        "the recovered target answered {recovered} of 100"
    );
    Ok(())
}

#[test]
fn latency_puts_an_unmeasured_target_first_then_the_fastest() -> Result<(), RouteError> {
    let (slow, quick, fresh) = (named("slow"), named("quick"), named("fresh"));
    slow.stats.record_first_token(Duration::from_millis(900));
    quick.stats.record_first_token(Duration::from_millis(90));
    let table = table(Strategy::Latency, vec![slow, quick, fresh]);
    let mut rng = fastrand::Rng::with_seed(9);
    let mut sorted = 0;
    for _ in 0..PLANS {
        sorted += usize::from(plan_names(&table, &mut rng)? == ["fresh", "quick", "slow"]);
    }
    // Exploration puts another target first on 5 % x 2/3 of plans.
    let explored = 1.0 - share(sorted);
    assert!(
        (explored - 0.05 * 2.0 / 3.0).abs() < 0.01,
        "explored {explored}"
    );
    Ok(())
}

/// A target whose breaker is open.
fn open_breaker(name: &'static str) -> Result<(Arc<Scripted>, Target), RouteError> {
    let provider = Scripted::new(name, vec![]);
    let policy = BreakerPolicy {
        min_requests: 1,
        ..BREAKER
    };
    let target = target(
        &provider,
        ProviderControls::unlimited(CLOCKS, 1, BACKOFF),
        policy,
    );
    match target.breaker.try_acquire() {
        Ok(trial) => trial.record(Outcome::Failure),
        Err(_) => return Err(RouteError::NoTargets { model: name.into() }),
    }
    Ok((provider, target))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_strategy_skips_a_target_whose_breaker_is_open() -> Result<(), RouteError> {
    for strategy in [
        Strategy::Ordered,
        Strategy::Cost,
        Strategy::Weighted,
        Strategy::LeastBusy,
        Strategy::Latency,
    ] {
        let (broken, broken_target) = open_breaker("broken")?;
        // Everything speaks for the broken target going first: it is listed
        // first, weighs the most, is idle and has never been measured.
        let broken_target = Target {
            weight: 1000,
            ..broken_target
        };
        let (a, b) = (Scripted::new("a", vec![]), Scripted::new("b", vec![]));
        let (a_target, b_target) = (plain(&a), plain(&b));
        a_target.stats.record_first_token(Duration::from_millis(50));
        b_target.stats.record_first_token(Duration::from_millis(60));
        let router = strategy_router(strategy, vec![broken_target, a_target, b_target]);
        for _ in 0..200 {
            let routed = router.dispatch(request(false)).await?;
            assert_ne!(&*routed.provider, "broken", "{strategy}");
            assert_eq!(routed.attempts, 1, "{strategy}: a skip is not an attempt");
        }
        assert_eq!(broken.calls(), 0, "{strategy}");
        assert_eq!(a.calls() + b.calls(), 200, "{strategy}");
    }
    Ok(())
}

#[test]
fn each_fallback_model_is_ordered_by_its_own_strategy() -> Result<(), RouteError> {
    let fallback = ModelRoute {
        name: String::from("f"),
        endpoint: keel_types::Endpoint::Chat,
        strategy: Strategy::Weighted,
        targets: vec![weighted("light", 1), weighted("heavy", 1_000_000)],
        fallback: Vec::new(),
        budget: super::scripted::MINUTE,
        hedge: None,
        cache: None,
        last_resort: None,
        affinity: None,
    };
    let own = ModelRoute {
        name: String::from("m"),
        endpoint: keel_types::Endpoint::Chat,
        strategy: Strategy::Ordered,
        targets: vec![named("first"), named("second")],
        fallback: vec![String::from("f")],
        budget: super::scripted::MINUTE,
        hedge: None,
        cache: None,
        last_resort: None,
        affinity: None,
    };
    let table = RouteTable::new(vec![own, fallback]);
    let mut rng = fastrand::Rng::with_seed(10);
    let mut heavy_first = 0;
    for _ in 0..100 {
        let plan = plan_names(&table, &mut rng)?;
        assert_eq!(plan[..2], ["first", "second"], "{plan:?}");
        heavy_first += usize::from(plan[2] == "heavy");
    }
    assert!(heavy_first >= 99, "{heavy_first}");
    Ok(())
}

/// `every_planned` answers what a plan would: the same targets (fallbacks
/// followed once each, cycles included), none for an unknown model or a
/// model without targets.
#[test]
fn every_planned_judges_the_targets_a_plan_holds() -> Result<(), RouteError> {
    let model = |name: &str, targets: Vec<Target>, fallback: &[&str]| ModelRoute {
        name: name.to_owned(),
        endpoint: keel_types::Endpoint::Chat,
        strategy: Strategy::Weighted,
        targets,
        fallback: fallback.iter().map(|name| (*name).to_owned()).collect(),
        budget: Duration::from_secs(60),
        hedge: None,
        cache: None,
        last_resort: None,
        affinity: None,
    };
    let table = RouteTable::new(vec![
        model("m", vec![named("a"), named("b")], &["n", "missing"]),
        model("n", vec![named("c")], &["m", "empty"]),
        model("empty", vec![], &[]),
        model("alone", vec![named("a")], &[]),
    ]);
    let subsets: [&[&str]; 6] = [
        &[],
        &["a"],
        &["a", "b"],
        &["a", "b", "c"],
        &["c"],
        &["b", "c"],
    ];
    for name in ["m", "n", "empty", "alone", "unknown"] {
        for passing in subsets {
            let test = |target: &Target| passing.contains(&&*target.provider_name);
            let planned = table
                .plan(name)
                .is_ok_and(|plan| !plan.is_empty() && plan.iter().all(|target| test(target)));
            assert_eq!(
                table.every_planned(name, test),
                planned,
                "{name} {passing:?}"
            );
        }
    }
    assert!(table.every_planned("m", |_| true));
    assert!(!table.every_planned("empty", |_| true));
    Ok(())
}
