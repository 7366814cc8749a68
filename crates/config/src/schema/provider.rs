//! `providers.<name>`: one upstream and its resilience policies.

use std::fmt;
use std::time::Duration;

use crate::SecretString;

/// One upstream provider (`providers.<name>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// The key under `providers:`; letters, digits, `_`, `-` and `.`.
    pub name: String,
    /// Which wire protocol it speaks.
    pub kind: ProviderKind,
    /// Base URL without a trailing `/`. Filled with the kind's default for
    /// openai (`https://api.openai.com/v1`) and anthropic
    /// (`https://api.anthropic.com`); required for azure; always `None` for mock.
    pub base_url: Option<String>,
    /// The API key; `None` for mock, for keyless OpenAI-compatible servers
    /// and for disabled providers.
    pub api_key: Option<SecretString>,
    /// `Some(reason)` when the provider is disabled, e.g.
    /// `environment variable OPENAI_API_KEY is not set` or `api_key is empty`.
    /// Disabled providers stay in the list so routes still resolve; the
    /// router skips them.
    pub disabled: Option<String>,
    /// Azure OpenAI `api-version` query parameter; `Some` exactly for azure.
    pub api_version: Option<String>,
    /// Extra request headers, in file order.
    pub headers: Vec<(String, String)>,
    /// Bulkhead: upstream calls in flight at once; `None` is unbounded.
    pub max_concurrent: Option<MaxConcurrent>,
    /// Requests per minute, at least 1; `None` is unlimited.
    pub rpm: Option<u32>,
    /// Tokens per minute, at least 1; `None` is unlimited.
    pub tpm: Option<u64>,
    /// `max_tokens` sent when the request has none and the upstream requires
    /// one (anthropic); key `max_tokens`, default 4096.
    pub default_max_tokens: u32,
    /// The five clocks of one attempt.
    pub timeouts: Timeouts,
    /// Retries on this provider.
    pub retry: RetryPolicy,
    /// The circuit breaker for each of this provider's targets.
    pub breaker: BreakerPolicy,
    /// `responses: native`: `/v1/responses` requests for models served
    /// only by such providers go through verbatim (OpenAI kind only);
    /// `translate` (the default) routes them through chat.
    pub responses_native: bool,
    /// Request fields the provider's API cannot express are left out
    /// (and named in `x-keel-dropped`) instead of refused with 400;
    /// default false. Only translating kinds (anthropic) ever drop.
    pub drop_unsupported: bool,
    /// Active health checks (`health_check`); `None`, the default, is off.
    pub health_check: Option<HealthCheck>,
}

/// `providers.<name>.max_concurrent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxConcurrent {
    /// A fixed cap, at least 1.
    Fixed(usize),
    /// `adaptive` or `{min, max}`: a cap that follows the provider's
    /// latency, within `1 <= min <= max` (defaults 1 and 1000).
    Adaptive {
        /// The lowest cap.
        min: usize,
        /// The highest cap.
        max: usize,
    },
}

/// `providers.<name>.health_check`: a request that costs no tokens (the
/// models list), sent while the provider is idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    /// Time between two probes, at least 1 s; a probe is skipped when an
    /// attempt on the provider ended within the last interval.
    pub interval: Duration,
}

/// `providers.<name>.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI or any OpenAI-compatible server (by `base_url`).
    Openai,
    /// Anthropic Messages API.
    Anthropic,
    /// Azure OpenAI.
    Azure,
    /// The in-process mock upstream.
    Mock,
}

/// `providers.<name>.timeouts`: every value is positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS handshake; default 5 s.
    pub connect: Duration,
    /// Request sent → response headers (streams); default 30 s.
    pub headers: Duration,
    /// Request sent → first content, tool-call or reasoning delta; default
    /// 120 s, generous for reasoning models.
    pub first_token: Duration,
    /// Longest gap between content deltas after the first; default 60 s.
    pub inactivity: Duration,
    /// Longest one attempt may take, stream included; default 600 s.
    pub total: Duration,
}

/// `providers.<name>.retry`: retries with exponential backoff and full jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries per target, the first included, 1 to 10; default 2.
    pub attempts: u32,
    /// Backoff base; default 100 ms.
    pub base_delay: Duration,
    /// Backoff cap, at least `base_delay`; default 10 s.
    pub max_delay: Duration,
    /// Retries allowed per first try over the trailing 10 s, in [0, 1]; default 0.2.
    pub budget_ratio: f64,
}

/// `providers.<name>.breaker`: the circuit breaker of each target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Failure rate that opens the breaker, in (0, 1]; default 0.5.
    pub failure_rate: f64,
    /// Sliding window the rate is measured over; default 10 s.
    pub window: Duration,
    /// Requests in the window before the rate counts, at least 1; default 20.
    pub min_requests: u32,
    /// How long the breaker stays open; default 30 s.
    pub cooldown: Duration,
    /// Requests let through when half-open, at least 1; default 3.
    pub half_open_trials: u32,
}

// === impl ProviderConfig ===

impl ProviderConfig {
    /// Whether the router may use this provider.
    pub fn is_enabled(&self) -> bool {
        self.disabled.is_none()
    }
}

// === impl ProviderKind ===

impl ProviderKind {
    /// Every kind, in the order they are listed in error messages.
    pub const ALL: [Self; 4] = [Self::Openai, Self::Anthropic, Self::Azure, Self::Mock];

    /// The name used in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Azure => "azure",
            Self::Mock => "mock",
        }
    }

    /// Whether its API has embeddings (`/embeddings`).
    pub fn serves_embeddings(self) -> bool {
        !matches!(self, Self::Anthropic)
    }

    /// The kind named `name` in `kind:`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The base URL used when none is given, if the kind has one.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::Openai => Some("https://api.openai.com/v1"),
            Self::Anthropic => Some("https://api.anthropic.com"),
            Self::Azure | Self::Mock => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

// === impl Timeouts ===

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            headers: Duration::from_secs(30),
            first_token: Duration::from_secs(120),
            inactivity: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

// === impl RetryPolicy ===

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 2,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            budget_ratio: 0.2,
        }
    }
}

// === impl BreakerPolicy ===

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_rate: 0.5,
            window: Duration::from_secs(10),
            min_requests: 20,
            cooldown: Duration::from_secs(30),
            half_open_trials: 3,
        }
    }
}
