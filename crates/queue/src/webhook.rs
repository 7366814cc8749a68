//! Webhook delivery per Standard Webhooks: the job object, signed, POSTed
//! to the job's URL when it reaches a final state; retried on non-2xx,
//! timeouts and connection errors per the retry schedule. Delivery state
//! lives on the job row, so a restart loses no pending delivery. Each
//! endpoint (tenant + URL) keeps a failure clock: 410 Gone, or failing for
//! `disable_after` without a success, disables it until a redelivery.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::redirect::Policy;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::backoff::plus_minus_ten_percent;
use crate::store::{millis, Delivery, DeliveryOutcome};
use crate::{now_ms, Queue};

mod guard;
mod sign;

pub use guard::{check_url, is_blocked, GuardedResolver, Refused};
pub use sign::{
    decode_secret, signature_header, verify, InvalidSecret, Unverified, TIMESTAMP_TOLERANCE,
};

/// How webhooks are delivered (from `webhooks:`). Its `Debug` shows how
/// many keys it holds, never the keys.
#[derive(Clone)]
pub struct WebhookPolicy {
    /// The HMAC keys (the decoded `whsec_` secrets), each of which signs
    /// every message (several during a rotation); none refuses webhooks.
    pub keys: Vec<Vec<u8>>,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Allow private and loopback receivers.
    pub allow_private: bool,
    /// The delay before each retry after the first attempt.
    pub retry_schedule: Vec<Duration>,
    /// Deliveries in flight at once on this instance.
    pub concurrency: usize,
    /// An endpoint failing this long without a success is disabled.
    pub disable_after: Duration,
}

impl std::fmt::Debug for WebhookPolicy {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WebhookPolicy")
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("timeout", &self.timeout)
            .field("allow_private", &self.allow_private)
            .field("retry_schedule", &self.retry_schedule)
            .field("concurrency", &self.concurrency)
            .field("disable_after", &self.disable_after)
            .finish()
    }
}

/// A webhook URL as it may be logged: scheme, host, port and path, without
/// credentials, query or fragment (where receivers put their tokens).
pub fn loggable_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => {
            let port = url
                .port()
                .map(|port| format!(":{port}"))
                .unwrap_or_default();
            format!(
                "{}://{}{port}{}",
                url.scheme(),
                url.host_str().unwrap_or_default(),
                url.path()
            )
        }
        Err(_) => String::from("[unparsable URL]"),
    }
}

/// How long an idle deliverer waits before looking for due retries.
const POLL: Duration = Duration::from_millis(200);

/// The webhook delivery client: no redirects, the attempt timeout, the
/// guarded resolver, and no proxy: proxy variables (`HTTP_PROXY`, …) are
/// ignored, since a proxy would resolve the host itself and the guard would
/// never see the address connected to.
pub fn delivery_client(
    timeout: std::time::Duration,
    allow_private: bool,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .timeout(timeout)
        .dns_resolver(Arc::new(GuardedResolver::new(allow_private)))
        .user_agent("keel-webhooks")
        .build()
}

/// Delivers due webhooks until `stop` turns true; deliveries in flight then
/// finish (each is bounded by the attempt timeout).
pub(crate) async fn run(
    queue: Arc<Queue>,
    policy: Arc<WebhookPolicy>,
    mut stop: watch::Receiver<bool>,
) {
    let client = match delivery_client(policy.timeout, policy.allow_private) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client; webhooks are not delivered by this instance");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(policy.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    while !*stop.borrow() {
        while tasks.try_join_next().is_some() {}
        let free = u32::try_from(slots.available_permits())
            .unwrap_or(u32::MAX)
            .min(64);
        let now = now_ms();
        // A crashed deliverer's claim lapses after one attempt's timeout.
        let retry_at = now + millis(policy.timeout) + 5_000;
        let claimed = if free == 0 {
            Ok(Vec::new())
        } else {
            queue.store().claim_deliveries(free, retry_at, now).await
        };
        let claimed = claimed.unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot claim webhook deliveries");
            Vec::new()
        });
        let idle = claimed.is_empty();
        for delivery in claimed {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            let (queue, policy, client) = (queue.clone(), policy.clone(), client.clone());
            let span = tracing::info_span!("webhook.delivery", job = %delivery.job.id);
            tasks.spawn(
                async move {
                    deliver(&queue, &policy, &client, delivery).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        if idle {
            tokio::select! {
                () = queue.webhook_wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Makes one attempt and records it.
async fn deliver(
    queue: &Queue,
    policy: &WebhookPolicy,
    client: &reqwest::Client,
    delivery: Delivery,
) {
    let job = delivery.job;
    let outcome = match endpoint_disabled_at(queue, &job).await {
        Some(disabled_at) => DeliveryOutcome::Failed {
            error: format!(
                "the endpoint was disabled at {} (Unix ms) after failing continuously; \
                 POST /v1/jobs/{}/webhook/redeliver enables it again",
                disabled_at, job.id
            ),
        },
        None => {
            let result = attempt(policy, client, &job).await;
            let disabled = record_endpoint(queue, policy, &job, &result).await;
            judge_attempt(policy, &job, result, disabled)
        }
    };
    if let Some(metrics) = queue.metrics() {
        let outcome = match &outcome {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retry { .. } => "retry",
            DeliveryOutcome::Failed { .. } => "failed",
        };
        let labels = keel_telemetry::OutcomeLabels {
            outcome: outcome.to_owned(),
        };
        metrics.webhook_deliveries.get_or_create(&labels).inc();
    }
    match &outcome {
        DeliveryOutcome::Delivered => tracing::info!(job = %job.id, "webhook delivered"),
        DeliveryOutcome::Retry { error, .. } => {
            tracing::warn!(job = %job.id, %error, "webhook delivery failed; will retry")
        }
        DeliveryOutcome::Failed { error } => {
            tracing::warn!(job = %job.id, %error, "webhook delivery failed for good")
        }
    }
    if let Err(error) = queue.store().record_delivery(&job.id, &outcome).await {
        tracing::warn!(job = %job.id, %error, "cannot record a webhook delivery; it will be retried");
    }
}

/// When the job's endpoint was disabled, if it is (a store error counts
/// as enabled: the attempt is then simply made).
async fn endpoint_disabled_at(queue: &Queue, job: &crate::JobRecord) -> Option<i64> {
    let url = job.webhook_url.as_deref()?;
    match queue.store().endpoint_disabled_at(&job.tenant, url).await {
        Ok(disabled_at) => disabled_at,
        Err(error) => {
            tracing::warn!(job = %job.id, %error, "cannot read the webhook endpoint's state");
            None
        }
    }
}

/// Moves the endpoint's failure clock by one attempt's result; `true` when
/// this attempt disabled the endpoint (410 Gone at once, any other receiver
/// failure once the clock has run for `disable_after`). Refusals of ours
/// and `abort-message` say nothing of the endpoint's health.
async fn record_endpoint(
    queue: &Queue,
    policy: &WebhookPolicy,
    job: &crate::JobRecord,
    result: &Result<(), Failure>,
) -> bool {
    let Some(url) = job.webhook_url.as_deref() else {
        return false;
    };
    let now = now_ms();
    let recorded = match result {
        Ok(()) => queue
            .store()
            .endpoint_succeeded(&job.tenant, url)
            .await
            .map(|()| false),
        Err(Failure::Final(_)) => return false,
        Err(Failure::Gone(error)) => {
            queue
                .store()
                .endpoint_failed(&job.tenant, url, error, now, i64::MAX)
                .await
        }
        Err(Failure::Retryable(error) | Failure::RetryAfter(error, _)) => {
            let since = now.saturating_sub(millis(policy.disable_after));
            queue
                .store()
                .endpoint_failed(&job.tenant, url, error, now, since)
                .await
        }
    };
    match recorded {
        Ok(true) => {
            tracing::error!(
                tenant = %job.tenant,
                url = %loggable_url(url),
                "webhook endpoint disabled: it answered 410 Gone or has failed every delivery for {:?}; \
                 its webhooks fail until one is redelivered by hand",
                policy.disable_after
            );
            if let Some(metrics) = queue.metrics() {
                metrics.webhook_endpoints_disabled.inc();
            }
            true
        }
        Ok(false) => false,
        Err(error) => {
            tracing::warn!(job = %job.id, %error, "cannot record the webhook endpoint's state");
            false
        }
    }
}

/// The delivery outcome of one attempt.
fn judge_attempt(
    policy: &WebhookPolicy,
    job: &crate::JobRecord,
    result: Result<(), Failure>,
    endpoint_disabled: bool,
) -> DeliveryOutcome {
    match result {
        Ok(()) => DeliveryOutcome::Delivered,
        Err(Failure::Final(error) | Failure::Gone(error)) => DeliveryOutcome::Failed { error },
        Err(Failure::Retryable(error) | Failure::RetryAfter(error, _)) if endpoint_disabled => {
            DeliveryOutcome::Failed {
                error: format!("{error}; the endpoint is now disabled"),
            }
        }
        Err(Failure::Retryable(error)) => retry(policy, job, error, Duration::ZERO, now_ms()),
        Err(Failure::RetryAfter(error, at_least)) => retry(policy, job, error, at_least, now_ms()),
    }
}

/// The next attempt per the schedule (±10 %) after `now`, or failed when
/// it is spent; a receiver's longer `Retry-After` is honoured.
fn retry(
    policy: &WebhookPolicy,
    job: &crate::JobRecord,
    error: String,
    at_least: Duration,
    now: i64,
) -> DeliveryOutcome {
    let done = usize::try_from(job.webhook_attempts).unwrap_or(usize::MAX);
    match policy.retry_schedule.get(done) {
        Some(delay) => {
            let delay = plus_minus_ten_percent(*delay).max(at_least);
            DeliveryOutcome::Retry {
                at: now + millis(delay),
                error,
            }
        }
        None => DeliveryOutcome::Failed { error },
    }
}

enum Failure {
    /// Worth another attempt (non-2xx, timeout, connection error).
    Retryable(String),
    /// Worth another attempt, not before the receiver's `Retry-After`.
    RetryAfter(String, Duration),
    /// Never worth another attempt (refused address, no secret,
    /// `abort-message`).
    Final(String),
    /// 410 Gone: the endpoint is disabled at once.
    Gone(String),
}

async fn attempt(
    policy: &WebhookPolicy,
    client: &reqwest::Client,
    job: &crate::JobRecord,
) -> Result<(), Failure> {
    let Some(url) = job.webhook_url.as_deref() else {
        return Ok(());
    };
    if policy.keys.is_empty() {
        return Err(Failure::Final(String::from(
            "webhooks.secret is not set on this gateway",
        )));
    }
    let url = reqwest::Url::parse(url).map_err(|_| Failure::Final(Refused::NotHttp.to_string()))?;
    if !policy.allow_private {
        if let Some(address) = guard::literal_address(&url) {
            guard::check_address(url.host_str().unwrap_or_default(), address)
                .map_err(|refused| Failure::Final(refused.to_string()))?;
        }
    }
    let body = job.to_json();
    let timestamp = now_ms().div_euclid(1000);
    let signature = signature_header(&policy.keys, &job.id, timestamp, &body);
    let sent = client
        .post(url)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("webhook-id", job.id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(judge(&response)),
        Err(error) => Err(classify(&error)),
    }
}

/// A non-2xx answer: 410 Gone and `webhook-delivery: abort-message` stop
/// the retries (Standard Webhooks, Svix); anything else, redirects included
/// (they are never followed), is retried.
fn judge(response: &reqwest::Response) -> Failure {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    if status == 410 {
        return Failure::Gone(String::from(
            "the receiver answered 410 Gone; not retried, and the endpoint is disabled",
        ));
    }
    if header("webhook-delivery").is_some_and(|value| value.eq_ignore_ascii_case("abort-message")) {
        return Failure::Final(format!(
            "the receiver answered {status} with webhook-delivery: abort-message; not retried"
        ));
    }
    let error = format!("the receiver answered {status}");
    match header("retry-after").and_then(|value| value.trim().parse::<u64>().ok()) {
        Some(seconds) => Failure::RetryAfter(error, Duration::from_secs(seconds)),
        None => Failure::Retryable(error),
    }
}

fn classify(error: &reqwest::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<Refused>() {
            return Failure::Final(refused.to_string());
        }
        source = current.source();
    }
    if error.is_timeout() {
        Failure::Retryable(String::from("the receiver did not answer in time"))
    } else if error.is_connect() {
        Failure::Retryable(String::from("the receiver could not be reached"))
    } else {
        Failure::Retryable(String::from("the connection to the receiver failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobRecord, JobStatus};

    /// Trust boundary 9: neither the HMAC keys nor a URL's token reach a log.
    #[test]
    fn tb9_keys_and_url_tokens_are_not_printed() {
        let policy = WebhookPolicy {
            keys: vec![b"super-secret-hmac-key".to_vec()],
            timeout: Duration::from_secs(1),
            allow_private: false,
            retry_schedule: Vec::new(),
            concurrency: 1,
            disable_after: Duration::from_secs(1),
        };
        let printed = format!("{policy:?}");
        assert!(!printed.contains("super-secret"), "{printed}");
        assert!(printed.contains("[1 redacted]"), "{printed}");
        assert_eq!(
            loggable_url("https://user:pass@hooks.example.com:8443/in/abc?token=s3cret#frag"),
            "https://hooks.example.com:8443/in/abc"
        );
    }

    fn job(webhook_attempts: i64) -> JobRecord {
        JobRecord {
            id: String::from("job_1"),
            tenant: String::from("acme"),
            status: JobStatus::Succeeded,
            model: String::from("chat"),
            metadata: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
            attempts: 1,
            result: None,
            error: None,
            webhook_url: Some(String::from("https://example.com/hook")),
            webhook_status: None,
            webhook_attempts,
            webhook_last_error: None,
            cost_usd: None,
            response_request: None,
        }
    }

    /// WH-2: against a receiver that always fails, attempt n + 1 is due
    /// `retry_schedule[n]` (±10 %) after attempt n; after the first attempt
    /// and one retry per entry (8 with the default schedule), the delivery
    /// fails for good. A longer Retry-After wins over the schedule.
    #[test]
    fn wh2_failed_deliveries_follow_the_schedule_then_fail() {
        let schedule: Vec<Duration> = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
            .into_iter()
            .map(Duration::from_secs)
            .collect();
        let policy = WebhookPolicy {
            keys: Vec::new(),
            timeout: Duration::from_secs(10),
            allow_private: false,
            retry_schedule: schedule.clone(),
            concurrency: 1,
            disable_after: Duration::from_secs(120 * 3600),
        };
        const NOW: i64 = 1_800_000_000_000;
        for (done, delay) in schedule.iter().enumerate() {
            let DeliveryOutcome::Retry { at, .. } = retry(
                &policy,
                &job(i64::try_from(done).unwrap_or(0)),
                String::from("500"),
                Duration::ZERO,
                NOW,
            ) else {
                panic!("attempt {} should be retried", done + 1);
            };
            let waited = at - NOW;
            let (low, high) = (millis(delay.mul_f64(0.9)), millis(delay.mul_f64(1.1)));
            assert!(
                (low..=high).contains(&waited),
                "retry {done}: waited {waited} ms, expected {low}..={high}"
            );
        }
        let exhausted = retry(&policy, &job(7), String::from("500"), Duration::ZERO, NOW);
        assert!(
            matches!(exhausted, DeliveryOutcome::Failed { .. }),
            "8 attempts, then failed"
        );
        let DeliveryOutcome::Retry { at, .. } = retry(
            &policy,
            &job(0),
            String::from("503"),
            Duration::from_secs(60),
            NOW,
        ) else {
            panic!("a 503 is retried");
        };
        assert!(
            at - NOW >= 60_000,
            "Retry-After: 60 beats the 5 s schedule entry"
        );
    }
}
