//! The validated configuration. Every value here has passed validation:
//! durations are positive, references resolve, ranges hold.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::SecretString;

mod provider;
mod routing;

pub use provider::{
    BreakerPolicy, HealthCheck, MaxConcurrent, ProviderConfig, ProviderKind, RetryPolicy, Timeouts,
};
pub use routing::{
    Affinity, AffinityKey, HedgeDelay, HedgePolicy, ModelCache, ModelConfig, ModelEndpoint, Price,
    Sli, Slo, Strategy, Target,
};

/// The whole validated `providers.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `server:` the listener and instance-wide limits.
    pub server: ServerConfig,
    /// `database:` where jobs and idempotency keys live.
    pub database: DatabaseConfig,
    /// `tenants:` who may call the gateway; empty means every request gets 401.
    pub tenants: Vec<Tenant>,
    /// `providers:` upstreams, in file order; at least one.
    pub providers: Vec<ProviderConfig>,
    /// `models:` public model names and their routes, in file order; at least one.
    pub models: Vec<ModelConfig>,
    /// `cache:` the prompt cache.
    pub cache: CacheConfig,
    /// `jobs:` the async job workers.
    pub jobs: JobsConfig,
    /// `webhooks:` job completion webhooks.
    pub webhooks: WebhooksConfig,
    /// `idempotency:` `Idempotency-Key` handling.
    pub idempotency: IdempotencyConfig,
    /// `slos:` service level objectives, in file order.
    pub slos: Vec<Slo>,
    /// `telemetry:` trace export.
    pub telemetry: TelemetryConfig,
    /// `redis:` state shared by several instances; `None` keeps it all
    /// in this instance.
    pub redis: Option<RedisConfig>,
}

/// `server:` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Listen address; default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Requests in flight on this instance before load shedding (503); default 2048.
    pub max_in_flight: usize,
    /// Default whole-request budget for models without `timeout`; default 300 s.
    pub request_timeout: Duration,
    /// Bearer key for `/admin/*`; `None` (also when empty) keeps admin closed.
    pub admin_key: Option<SecretString>,
    /// How long in-flight requests and streams get after SIGTERM; default
    /// 30 s. Zero is allowed and cuts them at once.
    pub shutdown_grace: Duration,
    /// Largest accepted request body in bytes (413 beyond); default 8 MiB.
    pub max_body: u64,
    /// A second listener serving only `/metrics`, without auth (for a
    /// private scrape network); `None` serves it on `listen` (behind the
    /// admin key when one is set).
    pub metrics_listen: Option<SocketAddr>,
    /// How long a request body may take to arrive (408 beyond); default 30 s.
    pub body_timeout: Duration,
    /// Largest non-stream upstream answer read, in bytes; default 64 MiB.
    pub max_upstream_body: u64,
    /// The browser origins allowed to call the API (`server.cors.origins`);
    /// default off.
    pub cors: CorsOrigins,
    /// How long a stream waits for its first token before Keel sends the
    /// headers and then a keep-alive comment every such interval; default
    /// 20 s. Zero never sends them.
    pub sse_keepalive: Duration,
    /// `Some(n)`: HTTP served by `n` threads, each with a single-threaded
    /// runtime of its own, accepting from the one listening socket (on two
    /// cores, two workers cut a plain request's CPU by a fifth and did not
    /// help streams: bench/README.md). `None` (the default): one
    /// multi-threaded runtime with a worker per core.
    pub workers: Option<usize>,
}

/// `server.cors.origins`: which browser origins get CORS headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// No CORS headers: browsers refuse cross-origin calls.
    #[default]
    Off,
    /// `["*"]`: every origin.
    Any,
    /// These origins, each `scheme://host[:port]` in lower case.
    Only(Vec<String>),
}

/// `database:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `sqlite:…` or `postgres://…` / `postgresql://…`; default `sqlite://keel.db`.
    /// May hold a password: print it with care.
    pub url: String,
}

/// Which store a [`DatabaseConfig::url`] selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// Embedded SQLite (`sqlite:`), for one instance.
    Sqlite,
    /// PostgreSQL (`postgres:` or `postgresql:`), shared by several instances.
    Postgres,
}

/// One tenant (`tenants[i]`): a name, its API keys and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Unique tenant name.
    pub name: String,
    /// SHA-256 of each accepted key (from `keys:` hashed at load, and
    /// `key_hashes:`); at least one, unique across tenants.
    pub key_hashes: Vec<[u8; 32]>,
    /// Rate limits.
    pub limits: TenantLimits,
}

/// `tenants[i].limits`: token buckets per tenant; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantLimits {
    /// Requests per minute, at least 1.
    pub rpm: Option<u32>,
    /// Tokens per minute, at least 1.
    pub tpm: Option<u64>,
    /// Requests and streams in flight at once, at least 1 (429 beyond).
    pub max_in_flight: Option<u32>,
    /// Jobs queued at once, at least 1 (429 on submit beyond).
    pub max_queued_jobs: Option<u64>,
}

/// `cache:` the in-memory prompt cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Capacity in bytes; default 256 MiB.
    pub max_bytes: u64,
    /// The largest answer stored, in bytes; default 1 MiB.
    pub max_entry_bytes: u64,
    /// Entries are shared by every tenant instead of kept per tenant; default false.
    pub shared: bool,
}

/// `jobs:` async job workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobsConfig {
    /// Worker tasks on this instance; default 16. Zero runs no workers here
    /// (an API-only instance sharing Postgres with workers elsewhere).
    pub workers: usize,
    /// How long a claimed job stays leased before another worker may take it; default 60 s.
    pub lease: Duration,
    /// Runs before a job fails for good, at least 1; default 5.
    pub max_attempts: u32,
    /// Backoff between runs.
    pub retry: JobRetry,
    /// How long finished jobs are kept; default 7 days.
    pub retention: Duration,
}

/// `jobs.retry`: exponential backoff between job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRetry {
    /// First delay; default 5 s.
    pub base_delay: Duration,
    /// Longest delay, at least `base_delay`; default 5 min.
    pub max_delay: Duration,
}

/// `webhooks:` job completion webhooks (Standard Webhooks).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhooksConfig {
    /// Signing secret `whsec_<base64>`; `None` when absent or empty.
    pub secret: Option<SecretString>,
    /// Timeout of one delivery attempt; default 10 s.
    pub timeout: Duration,
    /// Allow loopback, private, link-local and metadata addresses; default false.
    pub allow_private: bool,
    /// Delay before each retry after the first delivery; default
    /// `[5s, 5m, 30m, 2h, 5h, 10h, 10h]`. Empty means no retries.
    pub retry_schedule: Vec<Duration>,
    /// An endpoint (tenant + URL) whose deliveries have failed without a
    /// single success for this long is disabled; default 120 h (5 days).
    pub disable_after: Duration,
}

/// `idempotency:` `Idempotency-Key` handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// How long keys are remembered; default 24 h.
    pub ttl: Duration,
}

/// `telemetry:` where spans go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector base URL (`http://host:4318`); spans are
    /// POSTed to `<endpoint>/v1/traces`. `None` (the default, or an empty
    /// value) exports nothing and records no spans for export.
    pub otlp_endpoint: Option<String>,
}

/// `redis:` where several instances share rate limits and a cache level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port[/db]` (or `rediss://`).
    pub url: String,
    /// How many instances share the limits: each one's local fallback
    /// while Redis is unreachable is the limit divided by this (default 1).
    pub expected_instances: u32,
    /// The longest one Redis call may take before the instance goes on
    /// without it (default 10 ms).
    pub timeout: Duration,
}

// === impl Config ===

impl Config {
    /// The provider called `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|provider| provider.name == name)
    }

    /// The public model called `name`.
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|model| model.name == name)
    }

    /// The tenant called `name`.
    pub fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|tenant| tenant.name == name)
    }
}

// === impl ServerConfig ===

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            max_in_flight: 2048,
            request_timeout: Duration::from_secs(300),
            admin_key: None,
            shutdown_grace: Duration::from_secs(30),
            max_body: 8 << 20,
            metrics_listen: None,
            body_timeout: Duration::from_secs(30),
            max_upstream_body: 64 << 20,
            cors: CorsOrigins::Off,
            sse_keepalive: Duration::from_secs(20),
            workers: None,
        }
    }
}

// === impl DatabaseConfig ===

impl DatabaseConfig {
    /// The store the URL selects (validated at load, so always one of them).
    pub fn kind(&self) -> DatabaseKind {
        if self.url.starts_with("sqlite:") {
            DatabaseKind::Sqlite
        } else {
            DatabaseKind::Postgres
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://keel.db".to_owned(),
        }
    }
}

// === impl DatabaseKind ===

impl DatabaseKind {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

// === impl CacheConfig ===

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            max_entry_bytes: 1 << 20,
            shared: false,
        }
    }
}

// === impl JobsConfig ===

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 16,
            lease: Duration::from_secs(60),
            max_attempts: 5,
            retry: JobRetry::default(),
            retention: Duration::from_secs(7 * 86_400),
        }
    }
}

impl Default for JobRetry {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(300),
        }
    }
}

// === impl WebhooksConfig ===

impl Default for WebhooksConfig {
    fn default() -> Self {
        let minutes = |count: u64| Duration::from_secs(count * 60);
        Self {
            secret: None,
            timeout: Duration::from_secs(10),
            allow_private: false,
            retry_schedule: vec![
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
            ],
            disable_after: Duration::from_secs(120 * 3600),
        }
    }
}

// === impl IdempotencyConfig ===

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(86_400),
        }
    }
}
