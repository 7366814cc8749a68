//! Tenant rate limits: token buckets on requests and tokens per minute.
//! Tokens are reserved at admission (a prompt estimate plus `max_tokens`)
//! and settled from the real usage afterwards, so concurrent requests cannot
//! overrun a limit. With `redis:` the buckets are shared by every instance
//! (`keel-redis`); without it they are this instance's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use keel_redis::{RateBucket, Shared};
use keel_resilience::RateLimit;
use keel_types::{ChatRequest, Usage};

/// Every tenant's buckets, and the concurrency caps of those that have one.
#[derive(Default)]
pub struct TenantLimits {
    tenants: HashMap<Arc<str>, Arc<Buckets>>,
    concurrency: HashMap<Arc<str>, Concurrency>,
}

/// One tenant's `max_in_flight` and `max_queued_jobs`.
struct Concurrency {
    in_flight: Option<(u32, Arc<tokio::sync::Semaphore>)>,
    max_queued_jobs: Option<u64>,
}

/// A slot among the tenant's requests in flight; it rides on the response
/// body, so a stream holds it until it ends.
pub type InFlight = tokio::sync::OwnedSemaphorePermit;

/// One tenant's buckets.
pub struct Buckets {
    requests: Option<RateBucket>,
    tokens: Option<RateBucket>,
}

/// Tokens reserved for one admitted request. The usage reports it is
/// given are recorded, and when it is dropped (the answer or stream is
/// over) the bucket is settled once, from the last report, against what the
/// bucket really gave: a stream that repeats its running total on several
/// chunks is charged its final total once.
pub struct Reservation {
    buckets: Arc<Buckets>,
    /// What the token bucket really gave (at most its capacity).
    reserved: f64,
    /// The last reported total, or `NO_REPORT`.
    reported: AtomicU64,
}

const NO_REPORT: u64 = u64::MAX;

/// A refusal: which limit, and when to come back.
#[derive(Debug)]
pub struct Exceeded {
    /// `requests` or `tokens`.
    pub limit: &'static str,
    /// Time until the request would be admitted.
    pub retry_after: Duration,
    /// The rate-limit headers for the refusal.
    pub headers: Box<HeaderMap>,
}

const MINUTE: Duration = Duration::from_secs(60);

// === impl TenantLimits ===

impl TenantLimits {
    /// Buckets in this instance for every tenant with limits: `(name, rpm, tpm)`.
    pub fn new<'a>(tenants: impl IntoIterator<Item = (&'a str, Option<u32>, Option<u64>)>) -> Self {
        Self::kept_in(&Shared::local(), tenants)
    }

    /// Buckets kept in `shared` (this instance, or Redis) for every tenant
    /// with limits: `(name, rpm, tpm)`.
    pub fn kept_in<'a>(
        shared: &Shared,
        tenants: impl IntoIterator<Item = (&'a str, Option<u32>, Option<u64>)>,
    ) -> Self {
        let tenants = tenants
            .into_iter()
            .filter(|(_, rpm, tpm)| rpm.is_some() || tpm.is_some())
            .map(|(name, rpm, tpm)| {
                let bucket = |limit: &str, capacity: u64| {
                    shared.bucket(&format!("tenant:{name}:{limit}"), capacity, MINUTE)
                };
                let buckets = Buckets {
                    requests: rpm.map(|rpm| bucket("rpm", u64::from(rpm))),
                    tokens: tpm.map(|tpm| bucket("tpm", tpm)),
                };
                (Arc::from(name), Arc::new(buckets))
            })
            .collect();
        Self {
            tenants,
            concurrency: HashMap::new(),
        }
    }

    /// These limits with each tenant's `(name, max_in_flight, max_queued_jobs)`.
    pub fn with_concurrency<'a>(
        mut self,
        tenants: impl IntoIterator<Item = (&'a str, Option<u32>, Option<u64>)>,
    ) -> Self {
        self.concurrency = tenants
            .into_iter()
            .filter(|(_, in_flight, queued)| in_flight.is_some() || queued.is_some())
            .map(|(name, in_flight, max_queued_jobs)| {
                let in_flight = in_flight.map(|max| {
                    let permits = usize::try_from(max).unwrap_or(usize::MAX);
                    (max, Arc::new(tokio::sync::Semaphore::new(permits)))
                });
                let concurrency = Concurrency {
                    in_flight,
                    max_queued_jobs,
                };
                (Arc::from(name), concurrency)
            })
            .collect();
        self
    }

    /// A slot among `tenant`'s requests in flight (`None`: no cap), or the
    /// cap that is reached.
    pub fn enter(&self, tenant: &str) -> Result<Option<InFlight>, u32> {
        let Some((max, slots)) = self
            .concurrency
            .get(tenant)
            .and_then(|concurrency| concurrency.in_flight.as_ref())
        else {
            return Ok(None);
        };
        slots
            .clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| *max)
    }

    /// `tenant`'s `max_queued_jobs`, if it has one.
    pub fn max_queued_jobs(&self, tenant: &str) -> Option<u64> {
        self.concurrency
            .get(tenant)
            .and_then(|concurrency| concurrency.max_queued_jobs)
    }

    /// Admits one request of `tenant` that will go upstream: its request
    /// and token limits at once, or which limit it hit.
    pub async fn admit(
        &self,
        tenant: &str,
        request: &ChatRequest,
        body_len: usize,
    ) -> Result<Option<Reservation>, Exceeded> {
        let Some(buckets) = self.tenants.get(tenant) else {
            return Ok(None);
        };
        let estimate = estimate_tokens(request, body_len);
        let reserved = match (&buckets.requests, &buckets.tokens) {
            // Both limits in one round trip when they are shared.
            (Some(requests), Some(tokens)) => {
                match keel_redis::take_both((requests, 1.0), (tokens, estimate)).await {
                    Ok((_, reserved)) => reserved,
                    Err((0, wait)) => return Err(buckets.exceeded("requests", wait)),
                    Err((_, wait)) => return Err(buckets.exceeded("tokens", wait)),
                }
            }
            (Some(requests), None) => {
                let taken = requests.take(1.0).await;
                taken.map_err(|wait| buckets.exceeded("requests", wait))?;
                0.0
            }
            (None, Some(tokens)) => {
                let taken = tokens.take(estimate).await;
                taken.map_err(|wait| buckets.exceeded("tokens", wait))?
            }
            (None, None) => 0.0,
        };
        Ok(Some(Reservation {
            buckets: buckets.clone(),
            reserved,
            reported: AtomicU64::new(NO_REPORT),
        }))
    }

    /// Takes one request from `tenant`'s request limit; tokens are reserved
    /// next, unless a cache hit answers first (a hit counts against `rpm`
    /// only). `None` for a tenant without limits.
    pub async fn take_request(&self, tenant: &str) -> Result<Option<Admitted>, Exceeded> {
        let Some(buckets) = self.tenants.get(tenant) else {
            return Ok(None);
        };
        if let Some(bucket) = &buckets.requests {
            bucket
                .take(1.0)
                .await
                .map_err(|wait| buckets.exceeded("requests", wait))?;
        }
        Ok(Some(Admitted {
            buckets: buckets.clone(),
        }))
    }
}

/// A request admitted by its tenant's request limit, tokens not yet reserved.
pub struct Admitted {
    buckets: Arc<Buckets>,
}

// === impl Admitted ===

impl Admitted {
    /// Reserves the request's estimated tokens, or gives the request slot
    /// back and says so when the token limit is reached.
    pub async fn reserve_tokens(
        self,
        request: &ChatRequest,
        body_len: usize,
    ) -> Result<Reservation, Exceeded> {
        let buckets = self.buckets;
        let estimate = estimate_tokens(request, body_len);
        let reserved = match &buckets.tokens {
            None => 0.0,
            Some(bucket) => match bucket.take(estimate).await {
                Ok(taken) => taken,
                Err(wait) => {
                    // The request slot taken above is given back: nothing was served.
                    if let Some(requests) = &buckets.requests {
                        requests.settle(-1.0);
                    }
                    return Err(buckets.exceeded("tokens", wait));
                }
            },
        };
        Ok(Reservation {
            buckets,
            reserved,
            reported: AtomicU64::new(NO_REPORT),
        })
    }

    /// The tenant's rate-limit headers now.
    pub fn headers(&self) -> HeaderMap {
        self.buckets.headers()
    }
}

/// The prompt estimate (4 bytes a token, the usual rule of thumb for
/// English text) plus the completion cap the client asked for.
fn estimate_tokens(request: &ChatRequest, body_len: usize) -> f64 {
    let raw = request.raw();
    let cap = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|key| raw.parse::<u64>(key).and_then(Result::ok))
        .unwrap_or(0);
    (body_len / 4) as f64 + cap as f64
}

// === impl Buckets ===

impl Buckets {
    fn exceeded(&self, limit: &'static str, retry_after: Duration) -> Exceeded {
        Exceeded {
            limit,
            retry_after,
            headers: Box::new(self.headers()),
        }
    }

    /// OpenAI's `x-ratelimit-*` headers for this tenant's current state.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, bucket) in [("requests", &self.requests), ("tokens", &self.tokens)] {
            let Some(bucket) = bucket else { continue };
            let mut insert = |field: &str, value: String| {
                if let (Ok(name), Ok(value)) = (
                    axum::http::HeaderName::try_from(format!("x-ratelimit-{field}-{name}")),
                    HeaderValue::from_str(&value),
                ) {
                    headers.insert(name, value);
                }
            };
            insert("limit", bucket.capacity().to_string());
            insert("remaining", bucket.remaining().to_string());
            insert("reset", format_reset(bucket.time_to_full()));
        }
        headers
    }
}

/// OpenAI writes resets like `1s`, `6m0s`, `120ms`.
fn format_reset(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let seconds = duration.as_secs_f64().ceil() as u64;
    match seconds {
        0..=59 => format!("{seconds}s"),
        _ => format!("{}m{}s", seconds / 60, seconds % 60),
    }
}

/// Charges `reservation` (when the tenant has limits) the real token count
/// of `usage` (when the upstream reported one) in place of the estimate.
pub fn settle_usage(reservation: Option<&Reservation>, usage: Option<&Usage>) {
    if let (Some(reservation), Some(usage)) = (reservation, usage) {
        reservation.settle(usage.total_tokens);
    }
}

// === impl Reservation ===

impl Reservation {
    /// Records the answer's real token count (a later report replaces an
    /// earlier one); the bucket is charged it when the reservation drops.
    pub fn settle(&self, total_tokens: u64) {
        self.reported
            .store(total_tokens.min(NO_REPORT - 1), Ordering::Relaxed);
    }

    /// The tenant's rate-limit headers after this request.
    pub fn headers(&self) -> HeaderMap {
        self.buckets.headers()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let reported = self.reported.load(Ordering::Relaxed);
        if reported == NO_REPORT {
            // No usage came back (the call failed): the estimate stands.
            return;
        }
        if let Some(bucket) = &self.buckets.tokens {
            bucket.settle(reported as f64 - self.reserved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of `tries` requests `tenant` gets admitted.
    async fn admitted(
        limits: &TenantLimits,
        tenant: &str,
        request: &ChatRequest,
        body_len: usize,
        tries: usize,
    ) -> usize {
        let mut admitted = 0;
        for _ in 0..tries {
            if limits.admit(tenant, request, body_len).await.is_ok() {
                admitted += 1;
            }
        }
        admitted
    }

    fn request(max_tokens: u64) -> Result<ChatRequest, keel_types::RequestError> {
        ChatRequest::parse(format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"max_tokens":{max_tokens}}}"#).as_bytes())
    }

    /// RL-1: a burst gets exactly the limit; the refusal names the wait;
    /// another tenant is untouched.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn rl1_requests_per_minute_are_exact_and_isolated() -> Result<(), keel_types::RequestError>
    {
        let limits = TenantLimits::new([("a", Some(10), None), ("b", Some(10), None)]);
        let request = request(1)?;
        assert_eq!(admitted(&limits, "a", &request, 100, 15).await, 10);
        let Err(refusal) = limits.admit("a", &request, 100).await else {
            panic!("an 11th request passed")
        };
        assert_eq!(
            (refusal.limit, refusal.retry_after),
            ("requests", Duration::from_secs(6))
        );
        assert_eq!(refusal.headers["x-ratelimit-remaining-requests"], "0");
        assert_eq!(admitted(&limits, "b", &request, 100, 10).await, 10);
        assert!(limits
            .admit("unlimited", &request, 100)
            .await
            .is_ok_and(|reservation| reservation.is_none()));
        Ok(())
    }

    /// A request answered without tokens (a cache hit) takes only from the
    /// request limit.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_request_that_reserves_no_tokens_spends_only_its_request(
    ) -> Result<(), keel_types::RequestError> {
        let limits = TenantLimits::new([("a", Some(2), Some(100))]);
        let admitted = limits.take_request("a").await.ok().flatten();
        let headers = admitted.as_ref().map(Admitted::headers);
        assert_eq!(
            headers
                .as_ref()
                .map(|h| h["x-ratelimit-remaining-tokens"].clone()),
            Some(axum::http::HeaderValue::from_static("100"))
        );
        assert!(
            limits.admit("a", &request(50)?, 40).await.is_ok(),
            "the tokens are all there"
        );
        assert!(
            limits.take_request("a").await.is_err(),
            "two requests spent the rpm of 2"
        );
        Ok(())
    }

    /// Tokens are reserved up front (so concurrent requests cannot overrun)
    /// and settled from usage.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn tokens_are_reserved_then_settled() -> Result<(), keel_types::RequestError> {
        let limits = TenantLimits::new([("a", None, Some(1000))]);
        let first = limits
            .admit("a", &request(600)?, 40)
            .await
            .ok()
            .flatten()
            .ok_or(keel_types::RequestError::MissingModel)?;
        assert!(
            limits.admit("a", &request(600)?, 40).await.is_err(),
            "the reservation of 610 leaves 390"
        );
        first.settle(10);
        drop(first);
        assert!(
            limits.admit("a", &request(600)?, 40).await.is_ok(),
            "settling to 10 real tokens freed the rest"
        );
        Ok(())
    }

    /// Trust boundary 1: `max_tokens: 64000` against `tpm: 10000` takes the
    /// whole bucket and is charged what it really used; usage reported on
    /// several chunks is charged once, from the last report.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn tb1_a_large_max_tokens_cannot_make_usage_free() -> Result<(), keel_types::RequestError>
    {
        let limits = TenantLimits::new([("a", None, Some(10_000))]);
        let big = limits
            .admit("a", &request(64_000)?, 40)
            .await
            .ok()
            .flatten()
            .ok_or(keel_types::RequestError::MissingModel)?;
        for running_total in [3_000, 6_000, 9_000] {
            big.settle(running_total);
        }
        drop(big);
        let headers = limits
            .take_request("a")
            .await
            .ok()
            .flatten()
            .map(|admitted| admitted.headers());
        assert_eq!(
            headers.map(|headers| headers["x-ratelimit-remaining-tokens"].clone()),
            Some(HeaderValue::from_static("1000")),
            "9,000 charged once"
        );
        let again = request(64_000)?;
        assert_eq!(
            admitted(&limits, "a", &again, 40, 20).await,
            0,
            "the bucket has 1,000 left: nothing as big passes"
        );
        Ok(())
    }

    #[test]
    fn resets_are_written_as_openai_does() {
        assert_eq!(format_reset(Duration::from_millis(120)), "120ms");
        assert_eq!(format_reset(Duration::from_secs(6)), "6s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
    }
}
