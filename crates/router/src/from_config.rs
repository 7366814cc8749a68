//! Builds the route table from the validated configuration and the
//! providers the binary constructed (enabled ones only): per provider one
//! set of controls, per provider + model one circuit breaker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_config::{Config, HedgeDelay, ModelConfig, Strategy};
use keel_providers::Provider;
use keel_resilience::{BreakerPolicy, CircuitBreaker};

use crate::{Hedge, ModelRoute, ProviderControls, RouteTable, Target, TargetStats};

/// What targets are built from, shared across models.
struct Parts<'a> {
    config: &'a Config,
    providers: &'a HashMap<String, Arc<dyn Provider>>,
    shared: &'a keel_redis::Shared,
    controls: HashMap<String, Arc<ProviderControls>>,
    breakers: HashMap<(String, String), Arc<CircuitBreaker>>,
    stats: HashMap<(String, String), Arc<TargetStats>>,
}

// === impl RouteTable ===

impl RouteTable {
    /// One route per configured model. Targets whose provider is absent from
    /// `providers` (disabled, e.g. for a missing key) are left out; with
    /// `strategy: cost` the targets are ordered cheapest first, once (the
    /// other strategies order them per request). Provider rate limits are
    /// kept in `shared`.
    pub fn from_config(
        config: &Config,
        providers: &HashMap<String, Arc<dyn Provider>>,
        shared: &keel_redis::Shared,
    ) -> Self {
        let mut parts = Parts {
            config,
            providers,
            shared,
            controls: HashMap::new(),
            breakers: HashMap::new(),
            stats: HashMap::new(),
        };
        Self::new(
            config
                .models
                .iter()
                .map(|model| parts.model_route(model))
                .collect(),
        )
        .with_cache(crate::CacheSettings {
            max_bytes: config.cache.max_bytes,
            max_entry_bytes: config.cache.max_entry_bytes,
            shared: config.cache.shared,
        })
        .with_cache_level(shared.cache_level())
    }
}

// === impl Parts ===

impl Parts<'_> {
    fn model_route(&mut self, model: &ModelConfig) -> ModelRoute {
        let mut configured: Vec<_> = model.targets.iter().collect();
        if model.strategy == Strategy::Cost {
            // Config guarantees every target of a cost-routed model has a price.
            let cost = |target: &&keel_config::Target| {
                target
                    .price
                    .map_or(f64::MAX, |price| price.input + price.output)
            };
            configured.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
        }
        let targets = configured
            .into_iter()
            .filter_map(|target| self.target(target))
            .collect();
        let budget = model.timeout.unwrap_or(self.config.server.request_timeout);
        ModelRoute {
            name: model.name.clone(),
            endpoint: match model.endpoint {
                keel_config::ModelEndpoint::Chat => keel_types::Endpoint::Chat,
                keel_config::ModelEndpoint::Embeddings => keel_types::Endpoint::Embeddings,
            },
            strategy: model.strategy,
            targets,
            fallback: model.fallback.clone(),
            budget,
            hedge: model.hedge.map(|hedge| match hedge.after {
                HedgeDelay::Fixed(after) => Hedge::fixed(after, hedge.max, hedge.budget),
                HedgeDelay::P95 => Hedge::p95(hedge.max, hedge.budget),
            }),
            cache: model.cache.map(|cache| crate::CacheTtl {
                ttl: cache.ttl,
                stale_if_error: cache.stale_if_error.unwrap_or(Duration::ZERO),
            }),
            last_resort: model.last_resort.as_deref().map(Arc::from),
            affinity: model.affinity.as_ref().map(|affinity| {
                crate::Affinity::new(affinity.key.clone(), affinity.ttl, affinity.max_sessions)
            }),
        }
    }

    fn target(&mut self, configured: &keel_config::Target) -> Option<Target> {
        let (provider_name, model) = (configured.provider.as_str(), configured.model.as_str());
        let provider = self.providers.get(provider_name)?.clone();
        let settings = self.config.provider(provider_name)?;
        let controls = self
            .controls
            .entry(provider_name.to_owned())
            .or_insert_with(|| ProviderControls::from_config(settings, self.shared))
            .clone();
        let key = (provider_name.to_owned(), model.to_owned());
        let stats = self.stats.entry(key.clone()).or_default().clone();
        let breaker = self
            .breakers
            .entry(key)
            .or_insert_with(|| {
                let policy = &settings.breaker;
                let policy = BreakerPolicy {
                    failure_rate: policy.failure_rate,
                    window: policy.window,
                    min_requests: policy.min_requests,
                    cooldown: policy.cooldown,
                    half_open_trials: policy.half_open_trials,
                };
                CircuitBreaker::new(format!("{provider_name}/{model}"), policy)
            })
            .clone();
        Some(Target {
            provider_name: Arc::from(provider_name),
            model: Arc::from(model),
            max_tokens: configured.max_tokens,
            provider,
            controls,
            breaker,
            stats,
            price: configured.price,
            weight: configured.weight,
            context_window: configured.context_window,
            handles: Arc::default(),
        })
    }
}
