//! A committed stream under its remaining clocks: `inactivity` between
//! tokens and the attempt's `total` (cut to the request budget). It holds the
//! breaker trial and bulkhead slot until the stream ends, records the
//! outcome, and charges real token usage to the provider's bucket.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Future, Stream};
use keel_providers::{Clock, EventStream, ProviderError, StreamEvent};
use keel_telemetry::Metrics;
use tokio::time::{Instant, Sleep};

use crate::admission::{Admission, End, Permit as _};
use crate::Target;

/// The rest of a committed stream, guarded.
pub(crate) struct Guarded {
    inner: EventStream,
    target: Target,
    inactivity: Duration,
    /// When the inactivity clock runs out: a token moves it on.
    idle_deadline: Instant,
    /// When the attempt's total clock (or the request budget) runs out.
    total_deadline: Instant,
    total_clock: Clock,
    /// One timer for both clocks, armed at or before the earlier deadline
    /// and moved only when it fires early: a token costs a clock read, not
    /// a timer-wheel update, and a wait polls one timer, not two.
    timer: Pin<Box<Sleep>>,
    admission: Option<Admission>,
    started: Instant,
    metrics: Arc<Metrics>,
    /// The latest usage the stream reported (a stream may report it on
    /// several chunks, each the running total): charged once, at the end.
    reported_tokens: Option<u64>,
}

// === impl Guarded ===

impl Guarded {
    pub(crate) fn new(
        inner: EventStream,
        target: &Target,
        total: (Instant, Clock),
        admission: Admission,
        started: Instant,
        metrics: Arc<Metrics>,
    ) -> Self {
        let inactivity = target.controls.clocks.inactivity;
        let idle_deadline = Instant::now() + inactivity;
        let (total_deadline, total_clock) = total;
        Self {
            inner,
            target: target.clone(),
            inactivity,
            idle_deadline,
            total_deadline,
            total_clock,
            timer: Box::pin(tokio::time::sleep_until(idle_deadline.min(total_deadline))),
            admission: Some(admission),
            started,
            metrics,
            reported_tokens: None,
        }
    }

    /// Ends the attempt, once.
    fn finish(&mut self, end: End<'_>) {
        if let Some(mut admission) = self.admission.take() {
            admission.ended(&end, self.reported_tokens);
            self.target
                .metrics(&self.metrics)
                .upstream_duration
                .observe(self.started.elapsed().as_secs_f64());
            tracing::debug!(provider = %self.target.provider_name, elapsed = ?self.started.elapsed(), "upstream stream ended");
        }
    }

    /// The clock that has run out (the total one first), if one has. Where
    /// the timer fired before both (tokens came meanwhile), it is moved to
    /// the earlier deadline.
    fn poll_clocks(&mut self, cx: &mut Context<'_>) -> Poll<Clock> {
        while self.timer.as_mut().poll(cx).is_ready() {
            let fired = self.timer.deadline();
            if fired >= self.total_deadline {
                return Poll::Ready(self.total_clock);
            }
            if fired >= self.idle_deadline {
                return Poll::Ready(Clock::Inactivity);
            }
            let next = self.idle_deadline.min(self.total_deadline);
            self.timer.as_mut().reset(next);
        }
        Poll::Pending
    }

    fn timed_out(&mut self, clock: Clock) -> Poll<Option<Result<StreamEvent, ProviderError>>> {
        let error = ProviderError::Timeout {
            provider: self.target.provider_name.to_string(),
            clock,
        };
        self.finish(End::Failed(&error));
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for Guarded {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.admission.is_none() {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(event))) => {
                if let StreamEvent::Chunk { token, usage, .. } = &event {
                    if *token {
                        self.idle_deadline = Instant::now() + self.inactivity;
                    }
                    if let Some(usage) = usage {
                        self.reported_tokens = Some(usage.total_tokens);
                    }
                }
                if event == StreamEvent::Done {
                    self.finish(End::Served);
                }
                Poll::Ready(Some(Ok(event)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.finish(End::Failed(&error));
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                self.finish(End::Served);
                Poll::Ready(None)
            }
            Poll::Pending => match self.poll_clocks(cx) {
                Poll::Ready(clock) => self.timed_out(clock),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.finish(End::Left);
    }
}
