//! `models.<name>` and `slos[i]`: public models, their routes and their SLOs.

use std::fmt;
use std::time::Duration;

/// One public model (`models.<name>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The public model name clients send.
    pub name: String,
    /// The API it serves (`chat` by default, or `embeddings`).
    pub endpoint: ModelEndpoint,
    /// How targets are ordered.
    pub strategy: Strategy,
    /// Where the model is served; at least one, each naming a known provider.
    pub targets: Vec<Target>,
    /// Models tried in order when every target fails; all exist, none is this
    /// model, no cycles.
    pub fallback: Vec<String>,
    /// The whole-request budget over every attempt; `None` uses
    /// `server.request_timeout`.
    pub timeout: Option<Duration>,
    /// First-token hedging, when set.
    pub hedge: Option<HedgePolicy>,
    /// Prompt caching, when set.
    pub cache: Option<ModelCache>,
    /// The answer given when every target, fallback and stale cache entry
    /// failed (`on_failure.respond.content`, non-empty; chat models only).
    pub last_resort: Option<String>,
    /// Session affinity, when set.
    pub affinity: Option<Affinity>,
}

/// `models.<name>.affinity`: requests of one session (per tenant) go to the
/// target that served its previous request, while that target answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    /// Where a request's session is read from.
    pub key: AffinityKey,
    /// How long a pin lasts after its last use.
    pub ttl: Duration,
    /// The most sessions remembered; the least recently used go first.
    pub max_sessions: usize,
}

/// `affinity.key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AffinityKey {
    /// `header:<name>`: a request header, its name lower-cased.
    Header(String),
    /// `user`: the body's `user` field.
    User,
}

/// `models.<name>.endpoint`: which API a model serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelEndpoint {
    /// Chat: `/v1/chat/completions`, `/v1/messages` and jobs (default).
    #[default]
    Chat,
    /// Embeddings: `/v1/embeddings`, on OpenAI-compatible, Azure and mock
    /// targets only; no hedging; fallbacks are embeddings models too.
    Embeddings,
}

// === impl ModelEndpoint ===

impl ModelEndpoint {
    /// The name used in `endpoint:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embeddings => "embeddings",
        }
    }
}

/// `models.<name>.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Targets in the order written (default).
    #[default]
    Ordered,
    /// Cheapest first, by `price`; every target has one.
    Cost,
    /// The first target drawn at random by `weight`, the rest in order.
    Weighted,
    /// Of two targets drawn at random, the one with fewer calls in flight
    /// first, then the other, then the rest in order.
    LeastBusy,
    /// Lowest recent first-token latency first, sometimes a random rotation
    /// so a slow target is still sampled.
    Latency,
}

/// `models.<name>.targets[i]`: a provider and its upstream model name.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// A provider name from `providers:`.
    pub provider: String,
    /// The model name sent upstream.
    pub model: String,
    /// USD per million tokens; required on every target with `strategy: cost`.
    pub price: Option<Price>,
    /// Upper bound on `max_tokens` for this target, at least 1.
    pub max_tokens: Option<u32>,
    /// Its share of first picks under `strategy: weighted`, at least 1;
    /// default 1.
    pub weight: u32,
    /// The upstream model's context window in tokens, at least 1: when this
    /// target refuses a prompt as too long, the walk moves on to a target
    /// with a larger one.
    pub context_window: Option<u32>,
}

/// `targets[i].price`: USD per million tokens, finite and non-negative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Per million input (prompt) tokens.
    pub input: f64,
    /// Per million output (completion) tokens.
    pub output: f64,
    /// Per million input tokens read from the provider's prompt cache, where
    /// it bills them differently; `None` bills them as `input`.
    pub cached_input: Option<f64>,
}

// === impl Price ===

impl Price {
    /// What an answer with `usage` costs, in USD: cached prompt tokens at
    /// `cached_input` (or `input`), the rest of the prompt at `input`, the
    /// completion at `output`.
    pub fn cost_usd(&self, usage: &keel_types::Usage) -> f64 {
        let cached = usage.cached_tokens();
        let uncached = usage.prompt_tokens - cached;
        let per_token = |per_million: f64| per_million / 1_000_000.0;
        uncached as f64 * per_token(self.input)
            + cached as f64 * per_token(self.cached_input.unwrap_or(self.input))
            + usage.completion_tokens as f64 * per_token(self.output)
    }
}

/// `models.<name>.hedge`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgePolicy {
    /// When the second attempt starts (required).
    pub after: HedgeDelay,
    /// Hedged attempts per request, at least 1; default 1.
    pub max: u32,
    /// Hedges per request of the model over the trailing 10 s, in (0, 1];
    /// default 0.10 (`10%`).
    pub budget: f64,
}

/// `hedge.after`: a fixed delay or the model's observed p95 first-token time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HedgeDelay {
    /// A positive duration, e.g. `2s`.
    Fixed(Duration),
    /// `p95`: the model's recent 95th percentile time to first token.
    P95,
}

/// `models.<name>.cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelCache {
    /// How long an answer is fresh (required, positive).
    pub ttl: Duration,
    /// How long past `ttl` an answer may still be served when every target fails.
    pub stale_if_error: Option<Duration>,
}

/// One service level objective (`slos[i]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// Unique SLO name.
    pub name: String,
    /// A model name from `models:`.
    pub model: String,
    /// What is measured.
    pub sli: Sli,
    /// Objective, strictly between 0 and 1 (`99.9%` is 0.999).
    pub target: f64,
    /// Window the objective is measured over; default 30 days.
    pub window: Duration,
}

/// `slos[i].sli`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sli {
    /// `availability`: the share of requests that did not end in a 5xx.
    Availability,
    /// `first_token_under` + `threshold`: the share of requests whose first
    /// token came within the threshold.
    FirstTokenUnder(Duration),
}

// === impl Strategy ===

impl Strategy {
    /// The name used in `strategy:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ordered => "ordered",
            Self::Cost => "cost",
            Self::Weighted => "weighted",
            Self::LeastBusy => "least_busy",
            Self::Latency => "latency",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}
