//! The job queue's wiring: open and migrate the store named by
//! `database.url`, map `jobs:` / `webhooks:` onto the queue's policies, and
//! the [`JobHandler`] that runs a job through the router as a non-stream
//! request, under its tenant's rate limits.

use std::sync::Arc;

use async_trait::async_trait;
use keel_config::Config;
use keel_providers::ProviderError;
use keel_queue::{JobFailure, JobHandler, JobOutput, Queue, Retry, WebhookPolicy, WorkerPolicy};
use keel_router::{CacheControl, RouteError, Router};
use keel_server::{NotAJobResult, Served, TenantLimits, Unserved};
use keel_types::{ChatRequest, ErrorDetail};

/// Runs jobs through the router, each run admitted by its tenant's rate
/// limits like a live request (a run over the limit waits in the queue
/// instead of failing).
pub struct RouterHandler {
    router: Arc<Router>,
    limits: Arc<TenantLimits>,
}

/// Opens the store, applies migrations and builds the queue, recording into
/// `metrics`.
pub async fn open_queue(
    config: &Config,
    metrics: Arc<keel_telemetry::Metrics>,
) -> std::io::Result<Arc<Queue>> {
    let store = keel_queue::open(&config.database.url)
        .await
        .map_err(store_error)?;
    store.migrate().await.map_err(store_error)?;
    tracing::info!(backend = ?store.backend(), "job store ready (migrations applied)");
    Ok(Arc::new(
        Queue::new(store, &webhook_policy(config)?).with_metrics(metrics),
    ))
}

/// `keel migrate`: applies the migrations of `database.url`.
pub async fn migrate(config: &Config) -> Result<&'static str, keel_queue::StoreError> {
    Ok(match keel_queue::migrate_url(&config.database.url).await? {
        keel_queue::Backend::Postgres => "postgres",
        keel_queue::Backend::Sqlite => "sqlite",
    })
}

/// The worker policy of `jobs:` (and `server.shutdown_grace`, `idempotency.ttl`).
pub fn worker_policy(config: &Config) -> WorkerPolicy {
    WorkerPolicy {
        workers: config.jobs.workers,
        lease: config.jobs.lease,
        max_attempts: config.jobs.max_attempts,
        retry_base: config.jobs.retry.base_delay,
        retry_max: config.jobs.retry.max_delay,
        grace: config.server.shutdown_grace,
        retention: config.jobs.retention,
        idempotency_ttl: config.idempotency.ttl,
    }
}

/// The webhook policy of `webhooks:`; a secret that is not `whsec_<base64>` is an error.
pub fn webhook_policy(config: &Config) -> std::io::Result<WebhookPolicy> {
    let keys = match &config.webhooks.secret {
        Some(secrets) => secrets
            .expose()
            .split_whitespace()
            .map(keel_queue::decode_secret)
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?,
        None => Vec::new(),
    };
    Ok(WebhookPolicy {
        keys,
        timeout: config.webhooks.timeout,
        allow_private: config.webhooks.allow_private,
        retry_schedule: config.webhooks.retry_schedule.clone(),
        concurrency: 32,
        disable_after: config.webhooks.disable_after,
    })
}

fn store_error(error: keel_queue::StoreError) -> std::io::Error {
    std::io::Error::other(format!("database.url: {error}"))
}

// === impl RouterHandler ===

impl RouterHandler {
    /// A handler over `router`, admitting runs under `limits`.
    pub fn new(router: Arc<Router>, limits: Arc<TenantLimits>) -> Self {
        Self { router, limits }
    }
}

#[async_trait]
impl JobHandler for RouterHandler {
    /// A run is a live request without a client: admitted by the tenant's
    /// limits, answered from the prompt cache when the model is cached and
    /// a fresh entry exists (tokens are reserved only for an upstream call),
    /// and otherwise routed through the cache's single flight.
    async fn run(&self, tenant: &str, request: &str) -> Result<JobOutput, JobFailure> {
        let request = non_stream(request)
            .map_err(|message| failure(&message, "invalid_request_error", Retry::Never))?;
        // A job keeps its body, not its headers: only `key: user` applies.
        let request = keel_server::tag_session(&self.router, tenant, None, request);
        let plan = self.router.cache_plan(
            keel_server::CHAT_ENDPOINT,
            tenant,
            &request,
            request.raw().fields(),
            CacheControl::default(),
        );
        let served =
            keel_server::route_within_limits(&self.router, &self.limits, tenant, request, plan)
                .await;
        match served {
            Ok(served) => output(self.router.metrics(), tenant, served),
            Err(Unserved::Limited(exceeded)) => Err(over_limit(exceeded)),
            Err(Unserved::Failed { error, .. }) => Err(route_failure(&error)),
        }
    }
}

/// A run over its tenant's limit waits in the queue, without spending an attempt.
fn over_limit(exceeded: keel_server::Exceeded) -> JobFailure {
    let message = format!(
        "the tenant is over its {} per minute limit; the job waits in the queue",
        exceeded.limit
    );
    let wait = exceeded
        .retry_after
        .max(std::time::Duration::from_millis(1));
    failure(&message, "rate_limit_error", Retry::NotBefore(wait))
}

/// The job's result and cost (`keel_server::job_output`), or the failure
/// that sends the job back to be run again.
fn output(
    metrics: &keel_telemetry::Metrics,
    tenant: &str,
    served: Served,
) -> Result<JobOutput, JobFailure> {
    keel_server::job_output(metrics, tenant, served).map_err(|not_a_result| {
        let message = match not_a_result {
            NotAJobResult::Stream => "the upstream answered with a stream",
            NotAJobResult::NotJson => "the upstream answer is not JSON",
        };
        failure(message, "server_error", Retry::Later)
    })
}

/// The request with `stream: false` (a job's answer is one JSON document).
fn non_stream(request: &str) -> Result<ChatRequest, String> {
    let parsed = ChatRequest::parse(request.as_bytes()).map_err(|error| error.to_string())?;
    if !parsed.stream() && parsed.raw().get("stream_options").is_none() {
        return Ok(parsed);
    }
    let mut replacements = vec![("stream", "false")];
    if parsed.raw().get("stream_options").is_some() {
        replacements.push(("stream_options", "null"));
    }
    ChatRequest::parse(&parsed.raw().to_json_with(&replacements)).map_err(|error| error.to_string())
}

fn route_failure(error: &RouteError) -> JobFailure {
    match error {
        RouteError::Rejected {
            error: ProviderError::Status { body, .. },
            ..
        } => JobFailure {
            error: detail_json(&body.error),
            retry: Retry::Never,
        },
        RouteError::Rejected { .. }
        | RouteError::UnknownModel { .. }
        | RouteError::WrongEndpoint { .. } => {
            failure(&error.to_string(), "invalid_request_error", Retry::Never)
        }
        RouteError::NoTargets { .. } => failure(&error.to_string(), "server_error", Retry::Never),
        RouteError::DeadlineExceeded { .. } => failure(&error.to_string(), "timeout", Retry::Later),
        RouteError::Unavailable { .. } => failure(&error.to_string(), "server_error", Retry::Later),
        RouteError::Exhausted { model, last, .. } => {
            let message = format!(
                "every target of the model '{model}' failed; the last, provider '{}', {}",
                last.provider(),
                summary(last)
            );
            let kind = if last.is_retryable() {
                Retry::Later
            } else {
                Retry::Never
            };
            failure(&message, "server_error", kind)
        }
    }
}

/// A short description without upstream detail (as the live API gives).
fn summary(error: &ProviderError) -> String {
    match error {
        ProviderError::Status { status, .. } => format!("answered with status {status}"),
        ProviderError::Connect { .. } => String::from("could not be reached"),
        _ => String::from("failed"),
    }
}

fn failure(message: &str, kind: &str, retry: Retry) -> JobFailure {
    let detail = ErrorDetail {
        message: message.to_owned(),
        kind: kind.to_owned(),
        param: None,
        code: None,
    };
    JobFailure {
        error: detail_json(&detail),
        retry,
    }
}

fn detail_json(detail: &ErrorDetail) -> String {
    serde_json::to_string(detail).unwrap_or_else(|_| {
        String::from(r#"{"message":"job failed","type":"server_error","param":null,"code":null}"#)
    })
}

/// Runs `serve` (the HTTP server, given the shutdown signal) and this
/// instance's job workers and webhook deliverer together. On `shutdown`
/// both stop: the server drains its requests, the workers stop claiming,
/// let running jobs finish for `server.shutdown_grace` and release the rest.
pub async fn serve_with_workers<F>(
    config: &Config,
    queue: Arc<Queue>,
    handler: Arc<dyn JobHandler>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    serve: impl FnOnce(futures_util::future::BoxFuture<'static, ()>) -> F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = std::io::Result<()>>,
{
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    let signal = {
        let stop = stop.clone();
        Box::pin(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
    };
    let background = queue.run(
        handler,
        worker_policy(config),
        webhook_policy(config)?,
        stopped,
    );
    let serving = async {
        let result = serve(signal).await;
        // The server also stops on an error: take the workers down with it.
        let _ = stop.send(true);
        result
    };
    let (result, ()) = tokio::join!(serving, background);
    result
}
