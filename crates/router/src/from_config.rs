//! Builds the route table from the validated configuration and the
//! providers the binary constructed (enabled ones only).

use std::collections::HashMap;
use std::sync::Arc;

use keel_config::{Config, ModelConfig, Strategy};
use keel_providers::Provider;

use crate::{ModelRoute, RouteTable, Target};

// === impl RouteTable ===

impl RouteTable {
    /// One route per configured model. Targets whose provider is absent from
    /// `providers` (disabled, e.g. for a missing key) are left out; with
    /// `strategy: cost` the targets are ordered cheapest first.
    pub fn from_config(config: &Config, providers: &HashMap<String, Arc<dyn Provider>>) -> Self {
        Self::new(config.models.iter().map(|model| model_route(model, providers)).collect())
    }
}

fn model_route(model: &ModelConfig, providers: &HashMap<String, Arc<dyn Provider>>) -> ModelRoute {
    let mut configured: Vec<_> = model.targets.iter().collect();
    if model.strategy == Strategy::Cost {
        // Config guarantees every target of a cost-routed model has a price.
        let cost = |target: &&keel_config::Target| target.price.map_or(f64::MAX, |price| price.input + price.output);
        configured.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
    }
    let targets = configured
        .into_iter()
        .filter_map(|target| {
            let provider = providers.get(&target.provider)?;
            Some(Target {
                provider_name: Arc::from(target.provider.as_str()),
                model: Arc::from(target.model.as_str()),
                provider: provider.clone(),
            })
        })
        .collect();
    ModelRoute { name: model.name.clone(), targets, fallback: model.fallback.clone() }
}
