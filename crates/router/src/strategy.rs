//! The order in which one request tries a model's own targets, drawn per
//! request by the model's `strategy`. A strategy only orders: a target whose
//! breaker, bulkhead or rate limit refuses the call is skipped by the walk
//! the same way under every strategy.

use keel_config::Strategy;

use crate::Target;

/// The chance that a `latency` plan puts a random target first, so a slow
/// target keeps being measured and its recovery is noticed.
pub(crate) const LATENCY_EXPLORATION: f64 = 0.05;

/// Appends `targets` to `plan` in the order `strategy` picks for this request.
pub(crate) fn order<'t>(
    strategy: Strategy,
    targets: &'t [Target],
    rng: &mut fastrand::Rng,
    plan: &mut Vec<&'t Target>,
) {
    if targets.len() < 2 {
        plan.extend(targets);
        return;
    }
    match strategy {
        // `cost` targets were sorted cheapest first once, at start-up.
        Strategy::Ordered | Strategy::Cost => plan.extend(targets),
        Strategy::Weighted => lead_with(targets, &[weighted_pick(targets, rng)], plan),
        Strategy::LeastBusy => lead_with(targets, &least_busy_pair(targets, rng), plan),
        Strategy::Latency => fastest_first(targets, rng, plan),
    }
}

/// `leaders` first, then every other target in configured order.
fn lead_with<'t>(targets: &'t [Target], leaders: &[usize], plan: &mut Vec<&'t Target>) {
    plan.extend(leaders.iter().map(|&index| &targets[index]));
    let rest = targets
        .iter()
        .enumerate()
        .filter(|(index, _)| !leaders.contains(index))
        .map(|(_, target)| target);
    plan.extend(rest);
}

/// A target drawn with probability weight / sum of weights.
fn weighted_pick(targets: &[Target], rng: &mut fastrand::Rng) -> usize {
    let total: u64 = targets.iter().map(|target| u64::from(target.weight)).sum();
    // Config makes every weight at least 1; a zero total cannot be drawn from.
    if total == 0 {
        return 0;
    }
    let mut draw = rng.u64(..total);
    for (index, target) in targets.iter().enumerate() {
        let weight = u64::from(target.weight);
        if draw < weight {
            return index;
        }
        draw -= weight;
    }
    0
}

/// Two distinct targets drawn at random (there are at least two), the one
/// with fewer calls in flight first; a tie keeps the draw's order. Two
/// random choices rather than the least busy of all: every instance reads
/// counts that are a moment old, and all of them sending the next burst to
/// the one idlest target would make it the busiest.
fn least_busy_pair(targets: &[Target], rng: &mut fastrand::Rng) -> [usize; 2] {
    let first = rng.usize(..targets.len());
    let mut second = rng.usize(..targets.len() - 1);
    if second >= first {
        second += 1;
    }
    let busy = |index: usize| targets[index].stats.in_flight();
    if busy(second) < busy(first) {
        [second, first]
    } else {
        [first, second]
    }
}

/// Lowest first-token average first (a target without one counts as
/// fastest, so it gets measured; ties keep configured order), except on
/// [`LATENCY_EXPLORATION`] of requests, which put a random target first.
fn fastest_first<'t>(targets: &'t [Target], rng: &mut fastrand::Rng, plan: &mut Vec<&'t Target>) {
    let start = plan.len();
    plan.extend(targets);
    let average = |target: &Target| {
        target
            .stats
            .latency_ewma()
            .map_or(0.0, |average| average.as_secs_f64())
    };
    plan[start..].sort_by(|a, b| average(a).total_cmp(&average(b)));
    if rng.f64() < LATENCY_EXPLORATION {
        let explored = start + rng.usize(..targets.len());
        // The explored target goes first; the others keep their order.
        plan[start..=explored].rotate_right(1);
    }
}
