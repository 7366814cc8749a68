//! Retry storm: `clients` clients each send one request at t = 0 to an
//! upstream that fails every call until `outage` has passed, then succeeds.
//! Each client retries with Keel's own `Backoff` (and, in the third policy,
//! Keel's own `RetryBudget`, shared as it is per provider). Time is tokio's
//! paused clock, so a 10-second outage runs in milliseconds and the numbers
//! depend only on the policies.
//!
//! Usage: `cargo run --release -p keel-bench-retry-storm -- [clients] [outage_seconds]`

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_resilience::{Backoff, RetryBudget, RetryBudgetPolicy};
use tokio::time::Instant;

/// How a client waits between tries.
#[derive(Clone, Copy)]
enum Policy {
    NoJitter,
    FullJitter,
    FullJitterAndBudget,
}

/// What the upstream saw and what the clients got.
#[derive(Default)]
struct Tally {
    calls: Vec<Duration>,
    served_at: Vec<Duration>,
    gave_up: usize,
}

const BACKOFF: Backoff = Backoff {
    base_delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(10),
};
const MAX_TRIES: u32 = 10;

fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(1000);
    let outage = Duration::from_secs(args.next().and_then(|arg| arg.parse().ok()).unwrap_or(10));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "retry storm: {clients} clients, upstream down for {outage:?}, backoff base {:?} cap {:?}, {MAX_TRIES} tries at most\n", BACKOFF.base_delay, BACKOFF.max_delay);
    let _ = writeln!(out, "| policy | upstream calls | calls per client | calls during outage | peak calls in 100 ms after recovery | clients served | gave up | time to serve all served |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (name, policy) in [
        ("(a) exponential, no jitter", Policy::NoJitter),
        ("(b) full jitter", Policy::FullJitter),
        (
            "(c) full jitter + retry budget",
            Policy::FullJitterAndBudget,
        ),
    ] {
        let tally = simulate(policy, clients, outage);
        let during = tally.calls.iter().filter(|at| **at < outage).count();
        let last = tally.served_at.iter().max().copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "| {name} | {} | {:.2} | {during} | {} | {} | {} | {:.2} s |",
            tally.calls.len(),
            tally.calls.len() as f64 / clients as f64,
            peak_after(&tally.calls, outage),
            tally.served_at.len(),
            tally.gave_up,
            last.as_secs_f64()
        );
    }
}

/// The most calls in any 100 ms window from the moment the upstream recovers.
fn peak_after(calls: &[Duration], from: Duration) -> usize {
    let mut slots = std::collections::HashMap::new();
    for at in calls.iter().filter(|at| **at >= from) {
        *slots.entry(at.as_millis() / 100).or_insert(0usize) += 1;
    }
    slots.values().copied().max().unwrap_or(0)
}

fn simulate(policy: Policy, clients: usize, outage: Duration) -> Tally {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("cannot build the runtime: {error}"),
    };
    runtime.block_on(async move {
        let start = Instant::now();
        let tally = Arc::new(Mutex::new(Tally::default()));
        let budget = Arc::new(RetryBudget::new(RetryBudgetPolicy {
            ratio: 0.2,
            min_retries: 3,
            window: Duration::from_secs(10),
        }));
        let tasks: Vec<_> = (0..clients)
            .map(|_| tokio::spawn(client(policy, start, outage, tally.clone(), budget.clone())))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        let mut tally = tally
            .lock()
            .map(|mut tally| std::mem::take(&mut *tally))
            .unwrap_or_default();
        tally.calls.sort();
        tally
    })
}

async fn client(
    policy: Policy,
    start: Instant,
    outage: Duration,
    tally: Arc<Mutex<Tally>>,
    budget: Arc<RetryBudget>,
) {
    budget.record_first_try();
    for retry in 0..MAX_TRIES {
        let now = start.elapsed();
        let served = now >= outage;
        if let Ok(mut tally) = tally.lock() {
            tally.calls.push(now);
            if served {
                tally.served_at.push(now);
            }
        }
        if served {
            return;
        }
        let delay = match policy {
            Policy::NoJitter => BACKOFF.ceiling(retry),
            Policy::FullJitter | Policy::FullJitterAndBudget => BACKOFF.delay(retry),
        };
        if matches!(policy, Policy::FullJitterAndBudget) && !budget.try_retry() {
            break;
        }
        tokio::time::sleep(delay).await;
    }
    if let Ok(mut tally) = tally.lock() {
        tally.gave_up += 1;
    }
}
