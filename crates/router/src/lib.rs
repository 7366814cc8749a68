//! From a public model to an answer: the ordered targets of the model and its
//! fallbacks, each tried under its resilience controls until one reaches its
//! commit point.
//!
//! The commit point is the first token (or, for a non-stream request, the
//! whole answer). Before it, a retryable failure is retried on the same
//! target (full-jitter backoff or `Retry-After`, within the provider's retry
//! budget) up to `retry.attempts` tries, then the router moves on to the next
//! target; the client never sees it. A target whose breaker is open, whose
//! bulkhead is full or whose rate limit is empty is skipped, not waited on.
//! After the commit point the answer belongs to that target. A model with
//! `hedge:` races further walks against a slow one (see [`hedge`]).
//!
//! A client error ends the walk at once, except a prompt longer than the
//! target's `context_window`: the walk then goes on to the later targets
//! whose window is larger, and only to those.

mod admin;
mod admission;
mod affinity;
mod attempt;
mod cache;
mod controls;
mod error;
mod from_config;
mod guarded;
mod health;
mod hedge;
mod plan;
mod stats;
mod strategy;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt as _};

use keel_resilience::{BreakerState, RateLimit as _};
use keel_telemetry::Metrics;
use keel_types::ChatRequest;
use tokio::time::Instant;
use tracing::Instrument;

pub use admin::{ProviderView, TargetView};
use admission::{Admission, Control as _, Controls};
pub use affinity::{session, Affinity};
pub use cache::{CacheControl, CachePlan, CacheSettings, CacheStatus, CacheTtl};
pub use controls::{Clocks, ProviderControls};
pub use error::RouteError;
pub use health::{Health, HealthSchedule, HealthState};
pub use hedge::{Hedge, HedgeAfter};
/// The attempt-level types the server encodes, re-exported so the front end
/// depends on the router only, never on the provider adapters.
pub use keel_providers::{
    Clock, Completion, ErrorKind, EventStream, ProviderError, StreamEvent,
    ANTHROPIC_FORWARDED_HEADERS,
};
pub use plan::{ModelRoute, RouteTable, Target};
pub use stats::{LastError, Snapshot, TargetStats, RECENT};

/// The gateway's router: the route table, the dispatch loop and its metrics.
pub struct Router {
    table: RouteTable,
    metrics: Arc<Metrics>,
    /// The prompt cache, when some model is cached.
    cache: Option<cache::ResponseCache>,
}

/// A committed answer and who gave it.
pub struct Routed {
    /// The provider that answered.
    pub provider: Arc<str>,
    /// The upstream model that answered.
    pub model: Arc<str>,
    /// Upstream attempts made for this request, failed ones and hedges included.
    pub attempts: u32,
    /// Whether the answer came from a hedged attempt.
    pub hedged: bool,
    /// How the prompt cache took part, for a cached model.
    pub cache: Option<CacheStatus>,
    /// The answering target's price; `None` when it has none, and for
    /// answers that made no upstream call of their own (cache hits, and
    /// requests that joined another's call), which cost nothing.
    pub price: Option<keel_config::Price>,
    /// The answer.
    pub answer: Answer,
}

/// A committed answer.
pub enum Answer {
    /// A whole non-stream answer.
    Complete(Completion),
    /// A stream past its commit point: the events read so far (the first
    /// token last) and the rest of the upstream stream, still under its
    /// inactivity and total clocks.
    Stream {
        /// Events up to and including the first token, to send first.
        head: Vec<StreamEvent>,
        /// The rest of the stream.
        rest: EventStream,
    },
}

/// What one walk through a plan has seen so far (a request makes one
/// walk, more when it is hedged).
#[derive(Default)]
struct WalkState {
    last_failure: Option<ProviderError>,
    /// The shortest wait named by a control that refused a target.
    refused_for: Option<Duration>,
    /// The largest context window a target refused the prompt for, once
    /// one has: from then on only targets with a larger window are tried.
    too_long_for: Option<u32>,
}

enum TargetResult {
    Answered(Answer),
    Rejected(ProviderError),
    Next,
}

/// How a walk through a plan ended.
enum WalkEnd<'p> {
    /// A target reached its commit point.
    Answered(&'p Target, Answer),
    /// An upstream refused the request itself (never retried).
    Rejected(ProviderError),
    /// Every target failed or was skipped, or the budget ran out.
    Failed(WalkState),
}

// === impl Router ===

impl Router {
    /// A router over a route table, recording into `metrics`.
    pub fn new(table: RouteTable, metrics: Arc<Metrics>) -> Self {
        let shared = table.shared_cache_level();
        let cache = table
            .cache_settings()
            .map(|settings| cache::ResponseCache::new(settings, shared));
        Self {
            table,
            metrics,
            cache,
        }
    }

    /// The public model names, in configuration order.
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.table.model_names()
    }

    /// The public models with an enabled target (their own or a
    /// fallback's), in configuration order.
    pub fn served_model_names(&self) -> impl Iterator<Item = &str> {
        self.table.served_model_names()
    }

    /// Whether `model` serves `endpoint`: `UnknownModel` or
    /// `WrongEndpoint` when not (checked before a job is stored).
    pub fn check_endpoint(
        &self,
        model: &str,
        endpoint: keel_types::Endpoint,
    ) -> Result<(), RouteError> {
        self.table.route_for(model, endpoint).map(|_| ())
    }

    /// Whether every target `model` may be routed to (its fallbacks'
    /// included) takes Responses API bodies natively: then they go through
    /// verbatim; otherwise they are translated for the chat route.
    pub fn serves_responses_natively(&self, model: &str) -> bool {
        self.table
            .every_planned(model, |target| target.controls.responses_native)
    }

    /// Whether every target `model` may be routed to (its fallbacks'
    /// included) is Anthropic-kind: then `/v1/messages` bodies go through
    /// verbatim; otherwise they are translated for the chat route.
    pub fn serves_messages_natively(&self, model: &str) -> bool {
        self.table.plan(model).is_ok_and(|plan| {
            !plan.is_empty()
                && plan.iter().all(|target| {
                    target.controls.kind == keel_config::ProviderKind::Anthropic.as_str()
                })
        })
    }

    /// The request fields `provider` leaves out of `request` instead of
    /// refusing them (its `drop_unsupported`), for `x-keel-dropped`; the
    /// same for a cached answer as for the call that produced it, since
    /// the cache key holds every field.
    pub fn dropped_fields(&self, provider: &str, request: &ChatRequest) -> Vec<String> {
        self.table
            .targets()
            .find(|target| &*target.provider_name == provider)
            .map(|target| target.provider.dropped_fields(request))
            .unwrap_or_default()
    }

    /// The text `model` answers with when routing fails, when it has
    /// `on_failure.respond`.
    pub fn last_resort(&self, model: &str) -> Option<&Arc<str>> {
        self.table.route(model)?.last_resort.as_ref()
    }

    /// Where `model` reads a request's session from, when it has
    /// `affinity`.
    pub fn affinity_key(&self, model: &str) -> Option<&keel_config::AffinityKey> {
        Some(&self.table.route(model)?.affinity.as_ref()?.key)
    }

    /// Whether `model` is a public model name.
    pub fn knows(&self, model: &str) -> bool {
        self.table.route(model).is_some()
    }

    /// The metrics the router records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Routes one request to its first target that reaches the commit point.
    pub async fn dispatch(&self, request: Arc<ChatRequest>) -> Result<Routed, RouteError> {
        let span = tracing::debug_span!("keel.route", gen_ai.request.model = request.model());
        self.dispatch_inner(request).instrument(span).await
    }

    async fn dispatch_inner(&self, request: Arc<ChatRequest>) -> Result<Routed, RouteError> {
        let model = request.model();
        let route = self.table.route_for(model, request.endpoint())?;
        let started = Instant::now();
        let deadline = started + route.budget;
        let mut plan = self.table.plan(model)?;
        let pinning = route.affinity.as_ref().zip(request.session());
        if let Some((affinity, session)) = pinning {
            affinity.lead_with_pin(session, &mut plan);
        }
        let attempts = AtomicU32::new(0);
        let (walked, hedged) = match &route.hedge {
            Some(hedge) => {
                self.hedged(hedge, route, &plan, &request, deadline, &attempts)
                    .await
            }
            None => (self.walk(&plan, &request, deadline, &attempts).await, false),
        };
        let attempts = attempts.load(Ordering::Relaxed);
        match walked {
            WalkEnd::Answered(target, answer) => {
                if let Some(hedge) = &route.hedge {
                    hedge.record_commit(started.elapsed());
                }
                if let Some((affinity, session)) = pinning {
                    affinity.pin(session, target);
                }
                Ok(Routed {
                    provider: target.provider_name.clone(),
                    model: target.model.clone(),
                    attempts,
                    hedged,
                    cache: None,
                    price: target.price,
                    answer,
                })
            }
            WalkEnd::Rejected(error) => Err(RouteError::Rejected { error, attempts }),
            WalkEnd::Failed(walk) => Err(walk.into_error(model, deadline, attempts)),
        }
    }

    /// Walks `plan` in order until a target commits.
    async fn walk<'p>(
        &self,
        plan: &[&'p Target],
        request: &Arc<ChatRequest>,
        deadline: Instant,
        attempts: &AtomicU32,
    ) -> WalkEnd<'p> {
        let mut walk = WalkState::default();
        for (position, &target) in plan.iter().enumerate() {
            if !walk.may_fit(target) {
                continue;
            }
            match self
                .try_target(target, request, deadline, &mut walk, attempts)
                .await
            {
                TargetResult::Answered(answer) => return WalkEnd::Answered(target, answer),
                TargetResult::Rejected(error) => {
                    if !walk.outgrow(target, &error, &plan[position + 1..]) {
                        return WalkEnd::Rejected(error);
                    }
                    tracing::info!(provider = %target.provider_name, model = %target.model, %error, "prompt longer than the target's context window; trying a larger one");
                }
                TargetResult::Next => {}
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        WalkEnd::Failed(walk)
    }

    /// Races the walk of `plan` against hedges: each `hedge.delay()` without
    /// a commit, while the request has hedges left and the budget allows,
    /// another walk starts at the next target of the plan. The first walk
    /// to commit wins and the others are dropped (their upstream calls are
    /// closed); a request the upstream refuses ends the race at once; a
    /// failed walk leaves the others running. `true` when a hedge won.
    async fn hedged<'p>(
        &self,
        hedge: &Hedge,
        route: &ModelRoute,
        plan: &[&'p Target],
        request: &Arc<ChatRequest>,
        deadline: Instant,
        attempts: &AtomicU32,
    ) -> (WalkEnd<'p>, bool) {
        hedge.record_request();
        let labels = keel_telemetry::ModelLabels {
            model: route.name.clone(),
        };
        let walk_from = |first: usize| {
            let rotated: Vec<&'p Target> = plan
                .iter()
                .cycle()
                .skip(first % plan.len().max(1))
                .take(plan.len())
                .copied()
                .collect();
            async move {
                let walked = self.walk(&rotated, request, deadline, attempts).await;
                (first, walked)
            }
        };
        let mut running = FuturesUnordered::new();
        running.push(walk_from(0));
        let mut hedges = 0;
        // Off for good once the budget or the deadline says no more.
        let mut may_hedge = true;
        loop {
            let next_hedge = hedge
                .delay()
                .filter(|_| may_hedge && hedges < hedge.max())
                .map(|delay| (Instant::now() + delay).min(deadline));
            tokio::select! {
                Some((index, walked)) = running.next() => match walked {
                    // The last walk to fail speaks for the request.
                    WalkEnd::Failed(walk) if running.is_empty() => {
                        return (WalkEnd::Failed(walk), false);
                    }
                    WalkEnd::Failed(_) => {}
                    committed => {
                        let hedged = index > 0;
                        if hedged && matches!(committed, WalkEnd::Answered(..)) {
                            self.metrics.hedge_wins.get_or_create(&labels).inc();
                        }
                        return (committed, hedged);
                    }
                },
                () = sleep_until_some(next_hedge) => {
                    if Instant::now() >= deadline {
                        // No budget left to hedge with; the walks end on
                        // the deadline by themselves.
                        may_hedge = false;
                        continue;
                    }
                    hedges += 1;
                    if hedge.try_hedge() {
                        self.metrics.hedges.get_or_create(&labels).inc();
                        tracing::debug!(model = %route.name, hedge = hedges, "no commit yet; hedging");
                        running.push(walk_from(hedges as usize));
                    } else {
                        self.metrics.hedge_budget_exhausted.get_or_create(&labels).inc();
                        may_hedge = false;
                    }
                }
            }
        }
    }

    /// Up to `retry.attempts` tries on one target.
    async fn try_target(
        &self,
        target: &Target,
        request: &Arc<ChatRequest>,
        deadline: Instant,
        walk: &mut WalkState,
        attempts: &AtomicU32,
    ) -> TargetResult {
        let controls = &target.controls;
        for retry in 0..controls.attempts {
            if retry > 0
                && !self
                    .wait_before_retry(target, retry - 1, deadline, walk)
                    .await
            {
                return TargetResult::Next;
            }
            if Instant::now() >= deadline {
                return TargetResult::Next;
            }
            let Some(admission) = self.admit(target, walk).await else {
                return TargetResult::Next;
            };
            if retry == 0 {
                controls.budget.record_first_try();
            }
            let number = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            match attempt::attempt(
                target,
                request.clone(),
                number,
                deadline,
                admission,
                self.metrics.clone(),
            )
            .await
            {
                Ok(answer) => return TargetResult::Answered(answer),
                Err(error) if !error.is_retryable() => return TargetResult::Rejected(error),
                Err(error) => {
                    self.note_rate_limit(target, &error);
                    tracing::warn!(provider = %target.provider_name, model = %target.model, %error, "attempt failed");
                    let skip = error.skips_target();
                    walk.last_failure = Some(error);
                    if skip {
                        return TargetResult::Next;
                    }
                }
            }
        }
        TargetResult::Next
    }

    /// Sleeps before retry number `retry` (0 = first retry) of `target`:
    /// `Retry-After` when the upstream sent one, else full-jitter backoff.
    /// `false` when the target should be left instead: the wait would
    /// outlast the request's budget, or the provider's retry budget is spent.
    async fn wait_before_retry(
        &self,
        target: &Target,
        retry: u32,
        deadline: Instant,
        walk: &WalkState,
    ) -> bool {
        let controls = &target.controls;
        let retry_after = walk
            .last_failure
            .as_ref()
            .and_then(ProviderError::retry_after);
        let delay = retry_after.unwrap_or_else(|| controls.backoff.delay(retry));
        let resume = Instant::now().checked_add(delay);
        if resume.is_none_or(|resume| resume >= deadline) {
            return false;
        }
        if !controls.budget.try_retry() {
            self.metrics
                .retry_budget_exhausted
                .get_or_create(&keel_telemetry::provider(&target.provider_name))
                .inc();
            return false;
        }
        self.metrics
            .retries
            .get_or_create(&keel_telemetry::provider(&target.provider_name))
            .inc();
        tokio::time::sleep(delay).await;
        true
    }

    /// Passes the target's admission controls, or notes how long until it
    /// might.
    async fn admit(&self, target: &Target, walk: &mut WalkState) -> Option<Admission> {
        Controls::admit(target, &self.metrics)
            .await
            .inspect_err(|wait| walk.refused(*wait))
            .ok()
    }

    /// An upstream 429 drains the provider's request bucket and pauses it
    /// for the upstream's Retry-After (1 s when it sent none).
    fn note_rate_limit(&self, target: &Target, error: &ProviderError) {
        if error.kind() != ErrorKind::RateLimited {
            return;
        }
        if let Some(bucket) = &target.controls.requests {
            bucket.drain_and_pause(error.retry_after().unwrap_or(Duration::from_secs(1)));
        }
    }

    /// Sets the gauges read from live state: breaker states and bulkheads.
    pub fn export_gauges(&self) {
        for target in self.table.targets() {
            let labels = keel_telemetry::target(&target.provider_name, &target.model);
            let state = match target.breaker.state() {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            };
            self.metrics.circuit_state.get_or_create(&labels).set(state);
            // The breaker counts its own transitions; the counter catches up
            // to it, monotonically even when two scrapes race.
            self.metrics
                .circuit_transitions
                .get_or_create(&labels)
                .inner()
                .fetch_max(
                    target.breaker.transitions(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            let provider = keel_telemetry::provider(&target.provider_name);
            let bulkhead = &target.controls.bulkhead;
            self.metrics
                .bulkhead_in_flight
                .get_or_create(&provider)
                .set(bulkhead.in_flight() as i64);
            if bulkhead.is_bounded() {
                self.metrics
                    .bulkhead_limit
                    .get_or_create(&provider)
                    .set(bulkhead.capacity() as i64);
            }
        }
    }
}

// === impl WalkState ===

impl WalkState {
    fn refused(&mut self, wait: Duration) {
        self.refused_for = Some(self.refused_for.map_or(wait, |shortest| shortest.min(wait)));
    }

    /// Whether `target` may take the prompt: any target until one refused it
    /// as too long, then only targets with a known, larger context window
    /// (a target without `context_window` is not known to be larger).
    fn may_fit(&self, target: &Target) -> bool {
        self.too_long_for
            .is_none_or(|refused| target.context_window.is_some_and(|window| window > refused))
    }

    /// After `target` refused the request with `error`: whether the walk
    /// goes on, because `error` says the prompt exceeds the target's known
    /// context window and a target of `rest` has a larger one.
    fn outgrow(&mut self, target: &Target, error: &ProviderError, rest: &[&Target]) -> bool {
        let Some(window) = target.context_window else {
            return false;
        };
        if !error.is_context_length() {
            return false;
        }
        self.too_long_for = Some(window);
        rest.iter().any(|next| self.may_fit(next))
    }

    fn into_error(self, model: &str, deadline: Instant, attempts: u32) -> RouteError {
        let model = model.to_owned();
        if Instant::now() >= deadline {
            return RouteError::DeadlineExceeded { model, attempts };
        }
        match (self.last_failure, self.refused_for) {
            (Some(last), _) => RouteError::Exhausted {
                model,
                last,
                attempts,
            },
            (None, Some(retry_after)) => RouteError::Unavailable {
                model,
                retry_after,
                attempts,
            },
            (None, None) => RouteError::NoTargets { model },
        }
    }
}

/// Sleeps until `at`, or for ever when there is no `at`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
