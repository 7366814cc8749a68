//! One try on one target, up to its commit point, under the attempt's clocks.
//!
//! The clocks are cut to the request's deadline, so no attempt outlives the
//! request's budget. Before the commit point every failure and timeout is
//! returned to the dispatch loop; after it the stream is wrapped in
//! [`Guarded`], which keeps the inactivity and total clocks running and holds
//! the breaker trial and bulkhead slot until the stream ends.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use keel_providers::{Clock, ProviderError, Reply, StreamEvent, UpstreamModel};
use keel_telemetry::{AttemptLabels, Metrics};
use keel_types::ChatRequest;
use tokio::time::Instant;
use tracing::Instrument;

use crate::admission::{Admission, End, Permit as _};
use crate::guarded::Guarded;
use crate::{Answer, Target};

/// The deadlines of one attempt, each with the clock it belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadlines {
    pub headers: (Instant, Clock),
    pub first_token: (Instant, Clock),
    pub total: (Instant, Clock),
}

// === impl Deadlines ===

impl Deadlines {
    /// The attempt's deadlines from `now`, each cut to the request `deadline`.
    pub fn start(target: &Target, deadline: Instant, now: Instant) -> Self {
        let clocks = &target.controls.clocks;
        let earliest = |a: (Instant, Clock), b: (Instant, Clock)| if b.0 < a.0 { b } else { a };
        let total = earliest(
            (now + clocks.total, Clock::Total),
            (deadline, Clock::Budget),
        );
        let first_token = earliest((now + clocks.first_token, Clock::FirstToken), total);
        let headers = earliest((now + clocks.headers, Clock::Headers), first_token);
        Self {
            headers,
            first_token,
            total,
        }
    }
}

/// Sends the request to `target` and reads until the commit point.
pub(crate) async fn attempt(
    target: &Target,
    request: Arc<ChatRequest>,
    number: u32,
    deadline: Instant,
    mut admission: Admission,
    metrics: Arc<Metrics>,
) -> Result<Answer, ProviderError> {
    let span = tracing::debug_span!(
        "keel.attempt",
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = %target.provider_name,
        gen_ai.request.model = %target.model,
        attempt = i64::from(number),
        error.type = tracing::field::Empty,
    );
    let started = Instant::now();
    let deadlines = Deadlines::start(target, deadline, started);
    let result = until_commit(target, request, deadlines)
        .instrument(span.clone())
        .await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) => error.kind().as_str(),
    };
    if outcome == "ok" {
        target.metrics(&metrics).ok_attempts.inc();
    } else {
        span.record("error.type", outcome);
        let labels = AttemptLabels {
            provider: target.provider_name.to_string(),
            model: target.model.to_string(),
            outcome: outcome.to_owned(),
        };
        metrics.upstream_attempts.get_or_create(&labels).inc();
    }
    let metrics = &metrics;
    match result {
        Err(error) => {
            admission.ended(&End::Failed(&error), None);
            Err(error)
        }
        Ok(Committed::Whole(completion)) => {
            // Headers, first token and end are one moment for a whole answer.
            let elapsed = started.elapsed();
            admission.committed(elapsed);
            let tokens = completion.usage.map(|usage| usage.total_tokens);
            admission.ended(&End::Served, tokens);
            observe(metrics, target, elapsed, Some(elapsed));
            Ok(Answer::Complete(completion))
        }
        Ok(Committed::Stream { head, rest }) => {
            let elapsed = started.elapsed();
            observe(metrics, target, elapsed, None);
            admission.committed(elapsed);
            let rest = Guarded::new(
                rest,
                target,
                deadlines.total,
                admission,
                started,
                metrics.clone(),
            )
            .boxed();
            Ok(Answer::Stream { head, rest })
        }
    }
}

enum Committed {
    Whole(keel_providers::Completion),
    Stream {
        head: Vec<StreamEvent>,
        rest: keel_providers::EventStream,
    },
}

async fn until_commit(
    target: &Target,
    request: Arc<ChatRequest>,
    deadlines: Deadlines,
) -> Result<Committed, ProviderError> {
    let provider = || target.provider_name.to_string();
    let timeout = |clock: Clock| ProviderError::Timeout {
        provider: provider(),
        clock,
    };
    let is_stream = request.stream();
    // A non-stream answer is its own first token: the whole body must come
    // before the first-token clock runs out.
    let head_deadline = if is_stream {
        deadlines.headers
    } else {
        deadlines.first_token
    };
    let reply = tokio::time::timeout_at(
        head_deadline.0,
        target.provider.chat(
            request,
            UpstreamModel {
                name: target.model.clone(),
                max_tokens: target.max_tokens,
            },
        ),
    )
    .await
    .map_err(|_| timeout(head_deadline.1))??;
    let mut stream = match reply {
        Reply::Complete(completion) => return Ok(Committed::Whole(completion)),
        Reply::Stream(stream) => stream,
    };
    let mut head = Vec::new();
    let mut held = 0usize;
    loop {
        let next = tokio::time::timeout_at(deadlines.first_token.0, stream.next())
            .await
            .map_err(|_| timeout(deadlines.first_token.1))?;
        let Some(event) = next else {
            return Err(ProviderError::Truncated {
                provider: provider(),
            });
        };
        let event = event?;
        let committed = matches!(
            event,
            StreamEvent::Chunk { token: true, .. } | StreamEvent::Done
        );
        if let StreamEvent::Chunk { data, .. } = &event {
            held = held.saturating_add(data.len());
        }
        if held > MAX_HEAD_BYTES || head.len() >= MAX_HEAD_EVENTS {
            // Chunks without a token (role, audio, pings in data) are held
            // until the first token: an upstream that only sends those is
            // failing, not slow.
            return Err(ProviderError::Protocol {
                provider: provider(),
                detail: format!(
                    "more than {MAX_HEAD_EVENTS} chunks or {MAX_HEAD_BYTES} bytes before the first token"
                ),
            });
        }
        head.push(event);
        if committed {
            return Ok(Committed::Stream { head, rest: stream });
        }
    }
}

/// The most chunks held before the first token, and their bytes.
const MAX_HEAD_EVENTS: usize = 1024;
const MAX_HEAD_BYTES: usize = 1 << 20;

fn observe(metrics: &Metrics, target: &Target, first_token: Duration, whole: Option<Duration>) {
    let handles = target.metrics(metrics);
    handles.first_token.observe(first_token.as_secs_f64());
    if let Some(whole) = whole {
        handles.upstream_duration.observe(whole.as_secs_f64());
    }
}
