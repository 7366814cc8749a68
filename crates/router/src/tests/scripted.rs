//! A provider whose every call follows a script, with delays on tokio's clock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{stream, FutureExt, StreamExt};
use keel_providers::{Completion, Provider, ProviderError, Reply, StreamEvent, UpstreamModel};
use keel_resilience::{Backoff, BreakerPolicy, CircuitBreaker};
use keel_telemetry::Metrics;
use keel_types::{ChatRequest, ErrorBody};
use tokio::time::Instant;

use crate::{Clocks, ModelRoute, ProviderControls, RouteTable, Router, Target};

/// What one call does.
#[derive(Clone, Debug)]
pub enum Step {
    /// Answers after `delay` (the whole body for non-streams).
    Answer { delay: Duration },
    /// Fails with `status` after `delay`.
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Fails with `status` and the upstream's error `body`.
    Error { status: u16, body: ErrorBody },
    /// Connection refused.
    Refused,
    /// Answers after `base` × (calls running / `knee`), at least `base`:
    /// an upstream that slows down under load.
    Loaded { base: Duration, knee: u32 },
    /// Sends the head after `head`, then chunks: each `(gap, token)`; ends
    /// with Done if `complete`, else hangs forever after the last chunk.
    Stream {
        head: Duration,
        chunks: Vec<(Duration, bool)>,
        complete: bool,
    },
}

/// What a health check does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Succeeds at once.
    Pass,
    /// Connection refused.
    Refuse,
    /// Never answers.
    Hang,
}

pub struct Scripted {
    pub name: &'static str,
    /// What its health checks do.
    pub probe: Mutex<Probe>,
    /// Health checks sent.
    pub probes: AtomicU32,
    steps: Mutex<VecDeque<Step>>,
    last: Mutex<Step>,
    pub calls: AtomicU32,
    pub call_times: Mutex<Vec<Instant>>,
    /// Calls dropped before their answer or stream head was ready.
    pub cancelled: Arc<AtomicU32>,
    /// Calls running now (until their answer or stream head is ready).
    running: Arc<AtomicU32>,
}

/// Counts a call as cancelled when dropped before it is disarmed.
struct CancelGuard(Option<Arc<AtomicU32>>);

impl CancelGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(cancelled) = self.0.take() {
            cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Scripted {
    /// Follows `steps` in order, then repeats the last one.
    pub fn new(name: &'static str, steps: Vec<Step>) -> Arc<Self> {
        let last = steps.last().cloned().unwrap_or(Step::Answer {
            delay: Duration::ZERO,
        });
        Arc::new(Self {
            name,
            probe: Mutex::new(Probe::Pass),
            probes: AtomicU32::new(0),
            steps: Mutex::new(steps.into()),
            last: Mutex::new(last),
            calls: AtomicU32::new(0),
            call_times: Mutex::new(Vec::new()),
            cancelled: Arc::new(AtomicU32::new(0)),
            running: Arc::new(AtomicU32::new(0)),
        })
    }

    /// From now on every call follows `step`.
    pub fn set_script(&self, step: Step) {
        let mut steps = self
            .steps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        steps.clear();
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = step;
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn probes(&self) -> u32 {
        self.probes.load(Ordering::SeqCst)
    }

    pub fn set_probe(&self, probe: Probe) {
        *self
            .probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = probe;
    }

    pub fn cancelled(&self) -> u32 {
        self.cancelled.load(Ordering::SeqCst)
    }

    fn next_step(&self) -> Step {
        let mut steps = self
            .steps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        steps.pop_front().unwrap_or_else(|| {
            self.last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
    }
}

/// One call counted as running until dropped.
struct Running(Arc<AtomicU32>);

impl Running {
    fn start(running: &Arc<AtomicU32>) -> Self {
        running.fetch_add(1, Ordering::SeqCst);
        Self(running.clone())
    }

    fn count(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A chunk that names the provider it came from, so tests can tell whose
/// tokens a client received.
fn chunk(provider: &str, token: bool) -> StreamEvent {
    StreamEvent::Chunk {
        data: Bytes::from(format!("{{\"from\":\"{provider}\"}}")),
        token,
        usage: None,
        text: None,
    }
}

impl Provider for Scripted {
    fn name(&self) -> &str {
        self.name
    }

    fn health_check(&self) -> Option<BoxFuture<'static, Result<(), ProviderError>>> {
        self.probes.fetch_add(1, Ordering::SeqCst);
        let probe = *self
            .probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let provider = self.name.to_owned();
        Some(
            async move {
                match probe {
                    Probe::Pass => Ok(()),
                    Probe::Refuse => Err(ProviderError::Connect {
                        provider,
                        detail: String::from("refused"),
                    }),
                    Probe::Hang => std::future::pending().await,
                }
            }
            .boxed(),
        )
    }

    fn chat(
        &self,
        _request: Arc<ChatRequest>,
        _model: UpstreamModel,
    ) -> BoxFuture<'static, Result<Reply, ProviderError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.call_times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Instant::now());
        let provider = self.name.to_owned();
        let step = self.next_step();
        let guard = CancelGuard(Some(self.cancelled.clone()));
        let running = Running::start(&self.running);
        async move {
            match step {
                Step::Loaded { base, knee } => {
                    let load = running.count().div_ceil(knee.max(1)).max(1);
                    tokio::time::sleep(base * load).await;
                    guard.disarm();
                    Ok(Reply::Complete(Completion {
                        body: Bytes::from_static(b"{}"),
                        usage: None,
                        written: None,
                    }))
                }
                Step::Answer { delay } => {
                    tokio::time::sleep(delay).await;
                    guard.disarm();
                    Ok(Reply::Complete(Completion {
                        body: Bytes::from_static(b"{}"),
                        usage: None,
                        written: None,
                    }))
                }
                Step::Status {
                    status,
                    retry_after,
                } => {
                    guard.disarm();
                    Err(ProviderError::Status {
                        provider,
                        status,
                        body: ErrorBody::new("no", "t", None, None),
                        retry_after,
                    })
                }
                Step::Error { status, body } => {
                    guard.disarm();
                    Err(ProviderError::Status {
                        provider,
                        status,
                        body,
                        retry_after: None,
                    })
                }
                Step::Refused => {
                    guard.disarm();
                    Err(ProviderError::Connect {
                        provider,
                        detail: String::from("refused"),
                    })
                }
                Step::Stream {
                    head,
                    chunks,
                    complete,
                } => {
                    tokio::time::sleep(head).await;
                    guard.disarm();
                    let chunks = stream::iter(chunks).then(move |(gap, token)| {
                        let provider = provider.clone();
                        async move {
                            tokio::time::sleep(gap).await;
                            Ok(chunk(&provider, token))
                        }
                    });
                    let end = if complete {
                        stream::iter(vec![Ok(StreamEvent::Done)]).boxed()
                    } else {
                        stream::pending().boxed()
                    };
                    Ok(Reply::Stream(chunks.chain(end).boxed()))
                }
            }
        }
        .boxed()
    }
}

/// Clocks generous enough to stay out of the way unless a test sets one.
pub const CLOCKS: Clocks = Clocks {
    headers: Duration::from_secs(100),
    first_token: Duration::from_secs(100),
    inactivity: Duration::from_secs(100),
    total: Duration::from_secs(1000),
};

pub const BACKOFF: Backoff = Backoff {
    base_delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(10),
};

pub const BREAKER: BreakerPolicy = BreakerPolicy {
    failure_rate: 0.5,
    window: Duration::from_secs(10),
    min_requests: 1000,
    cooldown: Duration::from_secs(30),
    half_open_trials: 3,
};

/// A target on `provider` with the given controls and breaker policy.
pub fn target(
    provider: &Arc<Scripted>,
    controls: Arc<ProviderControls>,
    breaker: BreakerPolicy,
) -> Target {
    Target {
        provider_name: Arc::from(provider.name),
        model: Arc::from("up"),
        max_tokens: None,
        provider: provider.clone(),
        controls,
        breaker: CircuitBreaker::new(provider.name, breaker),
        stats: Arc::default(),
        price: None,
        weight: 1,
        context_window: None,
        handles: Arc::default(),
    }
}

/// A target with one try, no limits and generous clocks.
pub fn plain(provider: &Arc<Scripted>) -> Target {
    target(
        provider,
        ProviderControls::unlimited(CLOCKS, 1, BACKOFF),
        BREAKER,
    )
}

/// A router with one model `m` (budget `budget`) over `targets` and the
/// given fallbacks, plus any extra models.
pub fn router(targets: Vec<Target>, budget: Duration, extra: Vec<ModelRoute>) -> Router {
    hedged_router(targets, budget, extra, None)
}

/// [`router`] with `hedge` on the model `m`.
pub fn hedged_router(
    targets: Vec<Target>,
    budget: Duration,
    extra: Vec<ModelRoute>,
    hedge: Option<crate::Hedge>,
) -> Router {
    let fallback = extra.iter().map(|model| model.name.clone()).collect();
    let mut models = vec![ModelRoute {
        name: String::from("m"),
        endpoint: keel_types::Endpoint::Chat,
        strategy: keel_config::Strategy::Ordered,
        targets,
        fallback,
        budget,
        hedge,
        cache: None,
        last_resort: None,
        affinity: None,
    }];
    models.extend(extra);
    Router::new(RouteTable::new(models), Arc::new(Metrics::new()))
}

/// A table with one model `m` over `targets`, ordered by `strategy`.
pub fn table(strategy: keel_config::Strategy, targets: Vec<Target>) -> RouteTable {
    RouteTable::new(vec![ModelRoute {
        name: String::from("m"),
        endpoint: keel_types::Endpoint::Chat,
        strategy,
        targets,
        fallback: Vec::new(),
        budget: MINUTE,
        hedge: None,
        cache: None,
        last_resort: None,
        affinity: None,
    }])
}

/// A router over [`table`].
pub fn strategy_router(strategy: keel_config::Strategy, targets: Vec<Target>) -> Router {
    Router::new(table(strategy, targets), Arc::new(Metrics::new()))
}

pub fn request(stream: bool) -> Arc<ChatRequest> {
    let body = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
    );
    match ChatRequest::parse(body.as_bytes()) {
        Ok(request) => Arc::new(request),
        Err(error) => panic!("test request is invalid: {error}"),
    }
}

pub const MINUTE: Duration = Duration::from_secs(60);

/// Awaits `future` for at most an hour of (paused) time, so a stream that
/// a broken control fails to end makes its test fail instead of hang.
pub async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(3600), future).await {
        Ok(value) => value,
        Err(_) => panic!("nothing ended the stream within an hour"),
    }
}
