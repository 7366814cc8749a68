//! The books of every live request for a model: how it counts in the
//! model's SLOs, and what its answer cost. A stream is booked when it ends
//! (or when its client leaves), from the last usage it reported.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt as _};
use keel_router::{Answer, EventStream, ProviderError, Routed, StreamEvent};
use keel_slo::{Outcome, Slos};
use keel_telemetry::{CostLabels, Metrics, TargetLabels};
use keel_types::Usage;
use tokio::time::Instant;

/// What one request will be booked under.
pub(crate) struct Ledger {
    slos: Arc<Slos>,
    metrics: Arc<Metrics>,
    tenant: Arc<str>,
    public_model: String,
    started: Instant,
    /// The `keel.request` span (disabled unless spans are exported): it
    /// gets the GenAI attributes, and a stream holds it open to its end.
    span: tracing::Span,
}

/// Who is billed for an answer, and at what price.
pub struct Bill<'a> {
    /// The tenant that asked.
    pub tenant: &'a str,
    /// The provider that answered.
    pub provider: &'a str,
    /// The upstream model that answered.
    pub model: &'a str,
    /// The target's price, when it has one.
    pub price: Option<keel_config::Price>,
}

/// Prices one upstream answer from its usage into
/// `keel_cost_usd_total{tenant,model,provider}` and returns the cost. An
/// answer without a price, or without usage to price, counts in
/// `keel_unpriced_requests_total` instead of silently costing $0.
pub fn charge(metrics: &Metrics, bill: &Bill<'_>, usage: Option<&Usage>) -> Option<f64> {
    let priced = bill
        .price
        .zip(usage)
        .map(|(price, usage)| price.cost_usd(usage));
    match priced {
        Some(cost) => {
            let labels = CostLabels {
                tenant: bill.tenant.to_owned(),
                model: bill.model.to_owned(),
                provider: bill.provider.to_owned(),
            };
            metrics.cost.usd.get_or_create(&labels).inc_by(cost);
        }
        None => {
            let labels = TargetLabels {
                provider: bill.provider.to_owned(),
                model: bill.model.to_owned(),
            };
            metrics.cost.unpriced.get_or_create(&labels).inc();
        }
    }
    priced
}

/// Why an answer cannot be a job's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotAJobResult {
    /// The upstream answered a non-stream request with a stream.
    Stream,
    /// The answer is not a JSON document.
    NotJson,
}

/// A whole answer as a job's result: its usage settles the tenant's token
/// reservation and is priced (only an answer that made its own upstream
/// call costs anything: a cache hit or a joined call did not).
pub fn job_output(
    metrics: &Metrics,
    tenant: &str,
    served: crate::Served,
) -> Result<keel_queue::JobOutput, NotAJobResult> {
    let routed = served.routed;
    let Answer::Complete(completion) = routed.answer else {
        return Err(NotAJobResult::Stream);
    };
    let usage = completion.usage.as_ref();
    crate::settle_usage(served.reservation.as_ref(), usage);
    let bill = Bill {
        tenant,
        provider: &routed.provider,
        model: &routed.model,
        price: routed.price,
    };
    let cost_usd = if routed.attempts > 0 {
        charge(metrics, &bill, usage)
    } else {
        None
    };
    let result = String::from_utf8(completion.body.to_vec()).map_err(|_| NotAJobResult::NotJson)?;
    serde_json::from_str::<&serde_json::value::RawValue>(&result)
        .map_err(|_| NotAJobResult::NotJson)?;
    Ok(keel_queue::JobOutput { result, cost_usd })
}

// === impl Ledger ===

impl Ledger {
    /// Starts the books of a request for `public_model`, its clock now.
    pub(crate) fn open(
        slos: &Arc<Slos>,
        metrics: &Arc<Metrics>,
        tenant: &Arc<str>,
        public_model: &str,
    ) -> Self {
        let span = tracing::Span::current();
        span.record("gen_ai.request.model", public_model);
        Self {
            slos: slos.clone(),
            metrics: metrics.clone(),
            tenant: tenant.clone(),
            public_model: public_model.to_owned(),
            started: Instant::now(),
            span,
        }
    }

    /// Books a committed answer: a whole one now; a stream, by wrapping its
    /// rest, when it ends.
    pub(crate) fn answered(self, routed: &mut Routed) {
        let first_token = self.started.elapsed();
        self.span
            .record("gen_ai.provider.name", &*routed.provider)
            .record("gen_ai.response.model", &*routed.model)
            .record("keel.attempts", i64::from(routed.attempts));
        // Only an answer that made its own upstream call costs anything:
        // cache hits and requests that joined another's call made none.
        let billed = routed.attempts > 0;
        let entry = Entry {
            ledger: self,
            provider: routed.provider.clone(),
            model: routed.model.clone(),
            price: routed.price,
            billed,
            first_token,
        };
        match &mut routed.answer {
            Answer::Complete(completion) => {
                entry.close(completion.usage.as_ref(), false);
            }
            Answer::Stream { head, rest } => {
                let usage = head.iter().rev().find_map(reported_usage);
                let stream = std::mem::replace(rest, futures_util::stream::empty().boxed());
                *rest = Metered {
                    inner: stream,
                    usage,
                    broken: false,
                    entry: Some(entry),
                }
                .boxed();
            }
        }
    }

    /// Books a request answered with an error of `status`.
    pub(crate) fn refused_or_failed(self, status: u16) {
        let outcome = if status >= 500 {
            Outcome::Failed
        } else {
            Outcome::Refused
        };
        self.slos.record(&self.public_model, outcome);
    }
}

/// A committed answer waiting to be booked.
struct Entry {
    ledger: Ledger,
    provider: Arc<str>,
    model: Arc<str>,
    price: Option<keel_config::Price>,
    billed: bool,
    first_token: std::time::Duration,
}

impl Entry {
    fn close(self, usage: Option<&Usage>, broken: bool) {
        let Ledger {
            slos,
            metrics,
            tenant,
            public_model,
            span,
            ..
        } = &self.ledger;
        if let Some(usage) = usage {
            // As i64: OpenTelemetry attributes have no unsigned integers.
            let signed = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
            span.record("gen_ai.usage.input_tokens", signed(usage.prompt_tokens))
                .record(
                    "gen_ai.usage.output_tokens",
                    signed(usage.completion_tokens),
                );
        }
        let first_token = self.first_token;
        let outcome = if broken {
            Outcome::BrokenAfter { first_token }
        } else {
            Outcome::Answered { first_token }
        };
        slos.record(public_model, outcome);
        if self.billed {
            let bill = Bill {
                tenant,
                provider: &self.provider,
                model: &self.model,
                price: self.price,
            };
            if let Some(cost) = charge(metrics, &bill, usage) {
                span.record("keel.cost_usd", cost);
            }
        }
    }
}

fn reported_usage(event: &StreamEvent) -> Option<Usage> {
    match event {
        StreamEvent::Chunk { usage, .. } => *usage,
        StreamEvent::Done => None,
    }
}

/// The rest of a stream, booked when it is dropped: at its end, after its
/// failure, or when the client leaves (which counts as answered: the first
/// token was delivered; the cost is what usage was reported by then).
struct Metered {
    inner: EventStream,
    usage: Option<Usage>,
    broken: bool,
    entry: Option<Entry>,
}

impl Stream for Metered {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.poll_next_unpin(cx);
        match &item {
            Poll::Ready(Some(Ok(event))) => {
                if let Some(usage) = reported_usage(event) {
                    self.usage = Some(usage);
                }
            }
            Poll::Ready(Some(Err(_))) => self.broken = true,
            Poll::Ready(None) | Poll::Pending => {}
        }
        item
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            entry.close(self.usage.as_ref(), self.broken);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics_text(metrics: &Metrics) -> String {
        metrics.encode()
    }

    #[test]
    fn an_answer_is_priced_from_usage_with_cached_tokens_at_their_price() {
        let metrics = Metrics::new();
        let price = keel_config::Price {
            input: 2.5,
            output: 10.0,
            cached_input: Some(1.25),
        };
        let usage = Usage {
            prompt_tokens: 1_000,
            completion_tokens: 500,
            total_tokens: 1_500,
            prompt_tokens_details: Some(keel_types::PromptTokensDetails { cached_tokens: 400 }),
        };
        let bill = Bill {
            tenant: "acme",
            provider: "openai",
            model: "gpt-4o",
            price: Some(price),
        };
        let cost = charge(&metrics, &bill, Some(&usage)).unwrap_or_default();
        // 600 × 2.5 + 400 × 1.25 + 500 × 10, per million.
        let expected = (600.0 * 2.5 + 400.0 * 1.25 + 500.0 * 10.0) / 1e6;
        assert!((cost - expected).abs() < 1e-12, "{cost} != {expected}");
        charge(&metrics, &bill, Some(&usage));
        let text = metrics_text(&metrics);
        let line = text
            .lines()
            .find(|line| {
                line.starts_with(
                    r#"keel_cost_usd_total{tenant="acme",model="gpt-4o",provider="openai"} "#,
                )
            })
            .unwrap_or_default();
        let total: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|value| value.parse().ok())
            .unwrap_or_default();
        assert!((total - 2.0 * expected).abs() < 1e-12, "{line}");
    }

    #[test]
    fn no_price_or_no_usage_counts_as_unpriced_not_as_free() {
        let metrics = Metrics::new();
        let usage = Usage::default();
        let unpriced = Bill {
            tenant: "acme",
            provider: "local",
            model: "llama",
            price: None,
        };
        assert_eq!(charge(&metrics, &unpriced, Some(&usage)), None);
        let priced = Bill {
            price: Some(keel_config::Price {
                input: 1.0,
                output: 1.0,
                cached_input: None,
            }),
            ..unpriced
        };
        assert_eq!(charge(&metrics, &priced, None), None);
        let text = metrics_text(&metrics);
        assert!(
            text.contains(r#"keel_unpriced_requests_total{provider="local",model="llama"} 2"#),
            "{text}"
        );
        assert!(!text.contains("keel_cost_usd_total{"), "{text}");
    }
}
