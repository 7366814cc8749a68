//! The route table: public models, their ordered targets and fallbacks, and
//! the plan of targets one request walks through.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use std::time::Duration;

use keel_providers::Provider;
use keel_resilience::CircuitBreaker;
use keel_telemetry::{Counter, Histogram, Metrics};

use crate::{ProviderControls, RouteError};

/// One upstream that can serve a public model: a provider and its model name.
#[derive(Clone)]
pub struct Target {
    /// The provider's name, for headers, logs and metrics.
    pub provider_name: Arc<str>,
    /// The upstream model name.
    pub model: Arc<str>,
    /// The target's `max_tokens` default, when it sets one.
    pub max_tokens: Option<u32>,
    /// The adapter that reaches it.
    pub provider: Arc<dyn Provider>,
    /// The provider's clocks, retry policy, budget, bulkhead and rate limits.
    pub controls: Arc<ProviderControls>,
    /// The breaker of this provider + model.
    pub breaker: Arc<CircuitBreaker>,
    /// Recent outcomes of this provider + model, for `/admin/providers`.
    pub stats: Arc<crate::TargetStats>,
    /// USD per million tokens, when the target has a `price`.
    pub price: Option<keel_config::Price>,
    /// Its share of first picks when the model is `weighted` (at least 1).
    pub weight: u32,
    /// The upstream model's context window in tokens, when configured.
    pub context_window: Option<u32>,
    /// This target's metric handles, looked up once (a label lookup
    /// allocates its label strings and hashes them on every use).
    pub handles: Arc<OnceLock<TargetMetrics>>,
}

/// The metrics every attempt on a target records, resolved once.
pub struct TargetMetrics {
    /// `keel_upstream_attempts_total{outcome="ok"}`.
    pub ok_attempts: Counter,
    /// `keel_time_to_first_token_seconds`.
    pub first_token: Histogram,
    /// `keel_upstream_duration_seconds`.
    pub upstream_duration: Histogram,
}

// === impl Target ===

impl Target {
    /// The target's metric handles in `metrics` (a target belongs to one router).
    pub fn metrics(&self, metrics: &Metrics) -> &TargetMetrics {
        self.handles.get_or_init(|| {
            let labels = keel_telemetry::target(&self.provider_name, &self.model);
            let ok = keel_telemetry::AttemptLabels {
                provider: self.provider_name.to_string(),
                model: self.model.to_string(),
                outcome: String::from("ok"),
            };
            TargetMetrics {
                ok_attempts: metrics.upstream_attempts.get_or_create(&ok).clone(),
                first_token: metrics.first_token.get_or_create(&labels).clone(),
                upstream_duration: metrics.upstream_duration.get_or_create(&labels).clone(),
            }
        })
    }
}

/// A public model: its targets in the order to try them, then its fallbacks.
pub struct ModelRoute {
    /// The public name clients send.
    pub name: String,
    /// The API it serves.
    pub endpoint: keel_types::Endpoint,
    /// How each request orders `targets`.
    pub strategy: keel_config::Strategy,
    /// Enabled targets, in configured order (cheapest first for `cost`).
    pub targets: Vec<Target>,
    /// Public models to try, in order, when every target fails.
    pub fallback: Vec<String>,
    /// The whole request's time budget, all attempts included.
    pub budget: Duration,
    /// First-token hedging, when the model has `hedge:`.
    pub hedge: Option<crate::Hedge>,
    /// The prompt cache's TTLs, when the model has `cache:`.
    pub cache: Option<crate::CacheTtl>,
    /// The text answered when routing fails (`on_failure.respond.content`).
    pub last_resort: Option<Arc<str>>,
    /// Session pins, when the model has `affinity`.
    pub affinity: Option<crate::Affinity>,
}

/// Every public model, indexed by name.
pub struct RouteTable {
    models: Vec<ModelRoute>,
    /// Looked up several times a request, by a name a client sent, so
    /// hashed by foldhash rather than SipHash: the table is built from the
    /// config and never takes a client's key, so there is no flooding to
    /// resist (its seed is still random per process).
    index: HashMap<String, usize, foldhash::fast::RandomState>,
    cache: crate::CacheSettings,
    /// The prompt cache's level shared through Redis, when configured.
    cache_level: Option<keel_redis::CacheLevel>,
}

// === impl RouteTable ===

impl RouteTable {
    /// A table of the given models (names are unique; config checks it).
    pub fn new(models: Vec<ModelRoute>) -> Self {
        let index = models
            .iter()
            .enumerate()
            .map(|(position, model)| (model.name.clone(), position))
            .collect();
        Self {
            models,
            index,
            cache: crate::CacheSettings::default(),
            cache_level: None,
        }
    }

    /// The table with these prompt-cache settings (the defaults otherwise).
    pub fn with_cache(mut self, settings: crate::CacheSettings) -> Self {
        self.cache = settings;
        self
    }

    /// The table with the prompt cache's second level shared through Redis.
    pub fn with_cache_level(mut self, level: Option<keel_redis::CacheLevel>) -> Self {
        self.cache_level = level;
        self
    }

    /// The shared cache level, when configured.
    pub(crate) fn shared_cache_level(&self) -> Option<keel_redis::CacheLevel> {
        self.cache_level.clone()
    }

    /// The prompt cache's settings, when some model is cached.
    pub(crate) fn cache_settings(&self) -> Option<crate::CacheSettings> {
        self.models
            .iter()
            .any(|model| model.cache.is_some())
            .then_some(self.cache)
    }

    /// The public model names, in configuration order.
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(|model| model.name.as_str())
    }

    /// The public models a request can be served for (an enabled target of
    /// their own or of a fallback), in configuration order.
    pub fn served_model_names(&self) -> impl Iterator<Item = &str> {
        self.models
            .iter()
            .filter(|model| self.plan(&model.name).is_ok_and(|plan| !plan.is_empty()))
            .map(|model| model.name.as_str())
    }

    /// The route of one public model.
    pub fn route(&self, name: &str) -> Option<&ModelRoute> {
        self.index.get(name).map(|&position| &self.models[position])
    }

    /// The route of one public model, to change in a test.
    #[cfg(test)]
    pub(crate) fn route_mut(&mut self, name: &str) -> Option<&mut ModelRoute> {
        let position = *self.index.get(name)?;
        self.models.get_mut(position)
    }

    /// Every target of every model (a target shared by models appears once
    /// per model).
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.models.iter().flat_map(|model| model.targets.iter())
    }

    /// Every target with the public model it is listed under.
    pub fn targets_by_model(&self) -> impl Iterator<Item = (&str, &Target)> {
        self.models.iter().flat_map(|model| {
            model
                .targets
                .iter()
                .map(move |target| (model.name.as_str(), target))
        })
    }

    /// The route of `model` when it serves `endpoint`.
    pub fn route_for(
        &self,
        model: &str,
        endpoint: keel_types::Endpoint,
    ) -> Result<&ModelRoute, RouteError> {
        let route = self.route(model).ok_or_else(|| RouteError::UnknownModel {
            model: model.to_owned(),
        })?;
        // A Responses or Messages body passed through goes to a chat
        // model's targets.
        let wanted = match endpoint {
            keel_types::Endpoint::Responses | keel_types::Endpoint::Messages => {
                keel_types::Endpoint::Chat
            }
            other => other,
        };
        if route.endpoint == wanted {
            return Ok(route);
        }
        let (serves, path) = match route.endpoint {
            keel_types::Endpoint::Chat
            | keel_types::Endpoint::Responses
            | keel_types::Endpoint::Messages => ("chat", "/v1/chat/completions"),
            keel_types::Endpoint::Embeddings => ("embeddings", "/v1/embeddings"),
        };
        Err(RouteError::WrongEndpoint {
            model: model.to_owned(),
            serves,
            path,
        })
    }

    /// The targets one request for `model` tries, in order: the model's own,
    /// then each fallback's (depth first, each model once), each model's
    /// ordered by its strategy for this request.
    pub fn plan(&self, model: &str) -> Result<Vec<&Target>, RouteError> {
        self.plan_with(model, &mut fastrand::Rng::new())
    }

    /// Whether [`Self::plan`] for `model` would have targets, every one of
    /// them passing `test`: the same targets (each model's, then its
    /// fallbacks', each model once), without ordering them into a plan.
    pub fn every_planned(&self, model: &str, test: impl Fn(&Target) -> bool) -> bool {
        let Some(route) = self.route(model) else {
            return false;
        };
        let mut visited = Vec::new();
        if !route.fallback.is_empty() {
            visited.push(route.name.as_str());
        }
        let mut any = false;
        self.every_of(route, &test, &mut visited, &mut any) && any
    }

    fn every_of<'a>(
        &'a self,
        route: &'a ModelRoute,
        test: &impl Fn(&Target) -> bool,
        visited: &mut Vec<&'a str>,
        any: &mut bool,
    ) -> bool {
        if !route.targets.iter().all(test) {
            return false;
        }
        *any |= !route.targets.is_empty();
        for name in &route.fallback {
            let Some(fallback) = self.unvisited(name, visited) else {
                continue;
            };
            if !self.every_of(fallback, test, visited, any) {
                return false;
            }
        }
        true
    }

    /// The fallback model called `name`, marked visited; `None` when it does
    /// not exist or a walk through the fallbacks has been there already.
    fn unvisited<'a>(&'a self, name: &str, visited: &mut Vec<&'a str>) -> Option<&'a ModelRoute> {
        let fallback = self.route(name)?;
        if visited.contains(&fallback.name.as_str()) {
            return None;
        }
        visited.push(fallback.name.as_str());
        Some(fallback)
    }

    /// [`Self::plan`] with the strategies drawing from `rng`.
    pub(crate) fn plan_with(
        &self,
        model: &str,
        rng: &mut fastrand::Rng,
    ) -> Result<Vec<&Target>, RouteError> {
        let route = self.route(model).ok_or_else(|| RouteError::UnknownModel {
            model: model.to_owned(),
        })?;
        let mut visited = vec![route.name.as_str()];
        let mut targets = Vec::new();
        self.collect(route, rng, &mut visited, &mut targets);
        Ok(targets)
    }

    fn collect<'a>(
        &'a self,
        route: &'a ModelRoute,
        rng: &mut fastrand::Rng,
        visited: &mut Vec<&'a str>,
        targets: &mut Vec<&'a Target>,
    ) {
        crate::strategy::order(route.strategy, &route.targets, rng, targets);
        for name in &route.fallback {
            let Some(fallback) = self.unvisited(name, visited) else {
                continue;
            };
            self.collect(fallback, rng, visited, targets);
        }
    }
}
