//! The connection to Redis and whether it is usable. Every call is bounded
//! by the configured timeout; after [`FAILURES_TO_DOWN`] failures in a row
//! the link counts as down and calls are not even tried (so a request waits
//! for Redis at most one timeout, and not at all once it is known down)
//! until a background probe finds Redis answering again.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, ScriptInvocation};
use tokio::time::Instant;

/// Failures in a row after which Redis counts as down.
pub const FAILURES_TO_DOWN: u32 = 3;

/// How often a down link checks whether Redis answers again.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// At most one warning about Redis being down in this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A shared, self-healing connection to one Redis server.
pub struct RedisLink {
    client: redis::Client,
    manager: ConnectionManager,
    timeout: Option<Duration>,
    up: AtomicBool,
    failures: AtomicU32,
    probing: AtomicBool,
    warned: Mutex<Option<Instant>>,
    /// Calls that went without Redis: failed, timed out, or not tried
    /// while it was down.
    without: std::sync::atomic::AtomicU64,
}

// === impl RedisLink ===

impl RedisLink {
    /// A link to `url`; nothing is sent until the first call, so Keel
    /// starts whether Redis is up or not. Each call gets at most `timeout`
    /// (`None`: no limit, for tests on a paused clock).
    pub fn connect(url: &str, timeout: Option<Duration>) -> redis::RedisResult<Arc<Self>> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout.map(|timeout| timeout.max(Duration::from_millis(100))))
            .set_response_timeout(None)
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Arc::new(Self {
            client,
            manager,
            timeout,
            up: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            warned: Mutex::new(None),
            without: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// Whether calls go to Redis (`keel_redis_up`).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Counts one call made without Redis (its local fallback answered).
    pub fn went_without(&self) {
        self.without.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls made without Redis so far (`keel_redis_fallbacks_total`).
    pub fn fallbacks(&self) -> u64 {
        self.without.load(Ordering::Relaxed)
    }

    /// Runs a script call within the timeout; `None` when Redis failed or
    /// took too long (the caller goes on without it).
    pub async fn run<T: FromRedisValue>(
        self: &Arc<Self>,
        call: &ScriptInvocation<'_>,
    ) -> Option<T> {
        let mut connection = self.manager.clone();
        self.bounded(call.invoke_async(&mut connection)).await
    }

    /// Runs a pipeline (or one command) within the timeout, like [`Self::run`].
    pub async fn query<T: FromRedisValue>(
        self: &Arc<Self>,
        pipeline: &redis::Pipeline,
    ) -> Option<T> {
        let mut connection = self.manager.clone();
        self.bounded(pipeline.query_async(&mut connection)).await
    }

    /// The client, for connections of their own (subscriptions).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Awaits `reply` within the timeout, keeping count of failures.
    async fn bounded<T>(
        self: &Arc<Self>,
        reply: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        let outcome = match self.timeout {
            Some(timeout) => tokio::time::timeout(timeout, reply)
                .await
                .unwrap_or_else(|_| Err(timed_out())),
            None => reply.await,
        };
        match outcome {
            Ok(value) => {
                self.succeeded();
                Some(value)
            }
            Err(error) => {
                self.failed(&error);
                None
            }
        }
    }

    /// Sends `PING`; whether Redis answered within the timeout.
    pub async fn ping(&self) -> bool {
        let mut connection = self.manager.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        let timeout = self
            .timeout
            .unwrap_or(PROBE_EVERY)
            .max(Duration::from_millis(100));
        matches!(tokio::time::timeout(timeout, ping).await, Ok(Ok(_)))
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    fn failed(self: &Arc<Self>, error: &redis::RedisError) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        self.warn(&format!("a Redis call failed: {error}"));
        if failures >= FAILURES_TO_DOWN && self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(%error, "Redis is unreachable: using local limits and cache until it answers again");
            self.start_probing();
        }
    }

    /// While down, pings every [`PROBE_EVERY`] until Redis answers, then
    /// marks the link up.
    fn start_probing(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::Relaxed) {
            return;
        }
        let link = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let Some(link) = link.upgrade() else { return };
                if link.ping().await {
                    link.failures.store(0, Ordering::Relaxed);
                    link.probing.store(false, Ordering::Relaxed);
                    link.up.store(true, Ordering::Relaxed);
                    tracing::info!("Redis answers again: limits and cache are shared again");
                    return;
                }
                link.warn("Redis is still unreachable");
            }
        });
    }

    /// Logs `message` unless a warning went out within the last minute.
    fn warn(&self, message: &str) {
        let now = Instant::now();
        let mut warned = self
            .warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if warned.is_some_and(|at| now.saturating_duration_since(at) < WARN_EVERY) {
            return;
        }
        *warned = Some(now);
        tracing::warn!("{message} (said at most once a minute)");
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "timed out"))
}
