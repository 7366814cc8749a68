//! The controls an attempt passes before it is sent, in the order of
//! [`Controls`]: the target's circuit breaker, the provider's bulkhead, the
//! provider's rate limits, and the target's count of calls in flight.
//!
//! Each is one [`Control`]: it admits an attempt with a [`Permit`] or says
//! how long until it might, counting its own refusals. The permits of all
//! the controls together are the attempt's [`Admission`]; it hears when the
//! attempt reaches its commit point and how it ended, and each permit
//! records what its control learns (a breaker outcome, a latency sample,
//! real token usage). Dropping a permit releases what it holds. A new
//! control is one type and one entry in [`Controls`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_providers::{ErrorKind, ProviderError};
use keel_resilience::{BulkheadPermit, Outcome, RateLimit as _, TrialPermit};
use keel_telemetry::Metrics;

use crate::controls::ProviderControls;
use crate::stats::InFlight;
use crate::Target;

/// The controls an attempt passes, in order. A refusal releases the
/// permits already taken.
pub(crate) type Controls = (Breaker, Bulkhead, RateLimits, CallCount);

/// What an admitted attempt holds until it ends.
pub(crate) type Admission = <Controls as Control>::Permit;

/// One admission control.
pub(crate) trait Control {
    /// What an admitted attempt holds.
    type Permit: Permit;

    /// Admits an attempt on `target`, or says how long until it might be
    /// (and counts the refusal in `metrics`).
    fn admit(
        target: &Target,
        metrics: &Metrics,
    ) -> impl Future<Output = Result<Self::Permit, Duration>> + Send;
}

/// What a control learns from an attempt it admitted.
pub(crate) trait Permit: Send {
    /// The attempt reached its commit point (its first token, or its whole
    /// answer) `after` it was sent.
    fn committed(&mut self, _after: Duration) {}

    /// The attempt ended, before or after its commit point, having
    /// reported `tokens` of usage (`None`: none reported).
    fn ended(&mut self, _end: &End<'_>, _tokens: Option<u64>) {}
}

/// How an attempt ended.
pub(crate) enum End<'e> {
    /// The upstream answered in full.
    Served,
    /// It failed.
    Failed(&'e ProviderError),
    /// The client went away first.
    Left,
}

/// Several controls passed in order: a tuple of controls is a control.
macro_rules! controls_in_order {
    ($($control:ident),+) => {
        impl<$($control: Control),+> Control for ($($control,)+) {
            type Permit = ($($control::Permit,)+);

            async fn admit(target: &Target, metrics: &Metrics) -> Result<Self::Permit, Duration> {
                Ok(($($control::admit(target, metrics).await?,)+))
            }
        }

        #[allow(non_snake_case, reason = "each permit is named after its type")]
        impl<$($control: Permit),+> Permit for ($($control,)+) {
            fn committed(&mut self, after: Duration) {
                let ($($control,)+) = self;
                $($control.committed(after);)+
            }

            fn ended(&mut self, end: &End<'_>, tokens: Option<u64>) {
                let ($($control,)+) = self;
                $($control.ended(end, tokens);)+
            }
        }
    };
}

controls_in_order!(A, B, C, D);

/// The target's circuit breaker: a closed breaker admits, an open one
/// refuses until its cooldown ends, a half-open one admits its trials.
pub(crate) struct Breaker;

impl Control for Breaker {
    type Permit = Option<TrialPermit>;

    async fn admit(target: &Target, metrics: &Metrics) -> Result<Self::Permit, Duration> {
        target.breaker.try_acquire().map(Some).inspect_err(|_| {
            metrics
                .circuit_rejections
                .get_or_create(&keel_telemetry::target(
                    &target.provider_name,
                    &target.model,
                ))
                .inc();
        })
    }
}

impl Permit for Option<TrialPermit> {
    fn ended(&mut self, end: &End<'_>, _tokens: Option<u64>) {
        let outcome = match end {
            End::Served => Outcome::Success,
            End::Failed(error) => breaker_outcome(error),
            // A client that leaves says nothing about the upstream.
            End::Left => Outcome::Ignored,
        };
        if let Some(trial) = self.take() {
            trial.record(outcome);
        }
    }
}

/// How a failure counts for the breaker: a 429 says nothing of health and a
/// client error is the client's, not the upstream's (CB-4); a prompt longer
/// than the context window is the request's size, so it is not counted.
pub(crate) fn breaker_outcome(error: &ProviderError) -> Outcome {
    if error.is_context_length() {
        return Outcome::Ignored;
    }
    match error.kind() {
        ErrorKind::RateLimited => Outcome::Ignored,
        ErrorKind::Client => Outcome::Success,
        ErrorKind::Connect
        | ErrorKind::Server
        | ErrorKind::Broken
        | ErrorKind::Timeout
        | ErrorKind::Misconfigured => Outcome::Failure,
    }
}

/// The provider's bulkhead (`max_concurrent`): a slot per call in flight,
/// none waited for. An adaptive cap learns from each call's latency to its
/// commit point and from failures that say the upstream is overloaded.
pub(crate) struct Bulkhead;

/// A bulkhead slot, freed on drop.
pub(crate) struct Slot {
    slot: BulkheadPermit,
    committed: bool,
}

impl Control for Bulkhead {
    type Permit = Slot;

    async fn admit(target: &Target, metrics: &Metrics) -> Result<Slot, Duration> {
        let Some(slot) = target.controls.bulkhead.try_acquire() else {
            metrics
                .bulkhead_rejections
                .get_or_create(&keel_telemetry::provider(&target.provider_name))
                .inc();
            return Err(Duration::from_secs(1));
        };
        Ok(Slot {
            slot,
            committed: false,
        })
    }
}

impl Permit for Slot {
    fn committed(&mut self, after: Duration) {
        self.committed = true;
        self.slot.record_success(after);
    }

    fn ended(&mut self, end: &End<'_>, _tokens: Option<u64>) {
        if let End::Failed(error) = end {
            if !self.committed && signals_overload(error) {
                self.slot.record_overload();
            }
        }
    }
}

/// Whether a failure says the upstream has more calls than it can take
/// (an adaptive concurrency cap shrinks on it): a clock ran out, it said
/// it is rate limited, or it answered 5xx.
fn signals_overload(error: &ProviderError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Timeout | ErrorKind::RateLimited | ErrorKind::Server
    )
}

/// The provider's `rpm` and `tpm`: one token of each is taken at
/// admission, both or neither (one round trip when they are shared through
/// Redis); `tpm` is charged the real usage when the attempt ends.
pub(crate) struct RateLimits;

/// The provider whose `tpm` bucket an attempt's usage is charged to.
pub(crate) struct TokenCharge(Option<Arc<ProviderControls>>);

impl Control for RateLimits {
    type Permit = TokenCharge;

    async fn admit(target: &Target, metrics: &Metrics) -> Result<TokenCharge, Duration> {
        let controls = &target.controls;
        let taken = match (&controls.requests, &controls.tokens) {
            (Some(requests), Some(tokens)) => keel_redis::take_both((requests, 1.0), (tokens, 1.0))
                .await
                .map(drop)
                .map_err(|(_, wait)| wait),
            (Some(bucket), None) | (None, Some(bucket)) => bucket.take(1.0).await.map(drop),
            (None, None) => Ok(()),
        };
        if let Err(wait) = taken {
            let labels = keel_telemetry::LimitLabels {
                scope: String::from("provider"),
                name: target.provider_name.to_string(),
            };
            metrics.rate_limited.get_or_create(&labels).inc();
            return Err(wait);
        }
        Ok(TokenCharge(
            controls.tokens.is_some().then(|| controls.clone()),
        ))
    }
}

impl Permit for TokenCharge {
    fn ended(&mut self, _end: &End<'_>, tokens: Option<u64>) {
        // One token was taken at admission; usage is charged once.
        if let (Some(controls), Some(tokens)) = (self.0.take(), tokens) {
            if let Some(bucket) = &controls.tokens {
                bucket.settle(tokens as f64 - 1.0);
            }
        }
    }
}

/// The target's own record of its calls (`/admin/providers`, the
/// least-busy strategies): counted in flight while admitted, their
/// first-token times and outcomes recorded. Never refuses.
pub(crate) struct CallCount;

impl Control for CallCount {
    type Permit = InFlight;

    async fn admit(target: &Target, _metrics: &Metrics) -> Result<InFlight, Duration> {
        Ok(target.stats.start_call())
    }
}

impl Permit for InFlight {
    fn committed(&mut self, after: Duration) {
        self.stats().record_first_token(after);
    }

    fn ended(&mut self, end: &End<'_>, _tokens: Option<u64>) {
        self.stats().record_end(match end {
            End::Failed(error) => Err(error),
            End::Served | End::Left => Ok(()),
        });
    }
}
