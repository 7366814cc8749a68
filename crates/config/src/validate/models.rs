//! `models:` and `slos:`: routes, their cross-references (target → provider,
//! fallback → model, SLO → model), fallback cycles, hedging and caching.

use std::collections::HashSet;

use super::{Checker, FractionRange};
use crate::error::KeyPath;
use crate::raw::{RawHedge, RawModel, RawModelCache, RawSlo, RawTarget, Scalar, ScalarList};
use crate::schema::{
    HedgeDelay, HedgePolicy, ModelCache, ModelConfig, Price, ProviderConfig, Sli, Slo, Strategy,
    Target,
};

mod fallback;

/// The default hedge budget: 10 % of the model's requests.
const DEFAULT_HEDGE_BUDGET: f64 = 0.10;

/// The default SLO window.
const DEFAULT_SLO_WINDOW_DAYS: u64 = 30;

// === impl Checker ===

impl Checker {
    pub(super) fn models(
        &mut self,
        raw: Vec<(String, Option<RawModel>)>,
        provider_names: &[String],
        model_names: &[String],
    ) -> Vec<ModelConfig> {
        let section = KeyPath::root().key("models");
        if raw.is_empty() {
            self.problems.push(
                &section,
                "at least one model is required, e.g. chat: {targets: [{provider: openai, model: gpt-4o-mini}]}",
            );
        }
        let mut models = Vec::with_capacity(raw.len());
        for (name, model) in raw {
            let path = section.key(&name);
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                self.problems.push(&path, format!("invalid model name \"{name}\": spaces are not allowed"));
            }
            let Some(model) = model else {
                continue;
            };
            let strategy = self.strategy(model.strategy.as_ref(), &path.key("strategy"));
            let targets = self.targets(model.targets, strategy, provider_names, &path.key("targets"));
            models.push(ModelConfig {
                strategy,
                targets,
                fallback: self.fallback(model.fallback.as_ref(), &name, model_names, &path.key("fallback")),
                timeout: self.optional_duration(model.timeout.as_ref(), &path.key("timeout")),
                hedge: model.hedge.as_ref().and_then(|hedge| self.hedge(hedge, &path.key("hedge"))),
                cache: model.cache.as_ref().and_then(|cache| self.model_cache(cache, &path.key("cache"))),
                name,
            });
        }
        self.check_fallback_cycles(&models);
        models
    }

    /// A model whose every target is disabled still loads (its fallback or
    /// the stale cache may serve it), but deserves a warning.
    pub(super) fn warn_about_unservable_models(&mut self, models: &[ModelConfig], providers: &[ProviderConfig]) {
        for model in models {
            let all_disabled = model.targets.iter().all(|target| {
                providers
                    .iter()
                    .find(|provider| provider.name == target.provider)
                    .is_some_and(|provider| !provider.is_enabled())
            });
            if all_disabled && !model.targets.is_empty() {
                self.warn(format!(
                    "models.{}: every target's provider is disabled; requests fail unless a fallback model serves them",
                    model.name
                ));
            }
        }
    }

    fn strategy(&mut self, value: Option<&Scalar>, path: &KeyPath) -> Strategy {
        match value.map(Scalar::text) {
            None | Some("ordered") => Strategy::Ordered,
            Some("cost") => Strategy::Cost,
            Some(other) => {
                let message = format!("unknown strategy \"{other}\" (expected one of: ordered, cost)");
                self.problems.push(path, message);
                Strategy::Ordered
            }
        }
    }

    fn targets(
        &mut self,
        raw: Option<Vec<RawTarget>>,
        strategy: Strategy,
        provider_names: &[String],
        path: &KeyPath,
    ) -> Vec<Target> {
        let raw = raw.unwrap_or_default();
        if raw.is_empty() {
            self.problems.push(path, "at least one target is required, e.g. [{provider: openai, model: gpt-4o}]");
        }
        let mut targets = Vec::with_capacity(raw.len());
        for (index, target) in raw.iter().enumerate() {
            let target_path = path.index(index);
            let provider = self.text(target.provider.as_ref(), &target_path.key("provider"), "a provider name");
            if let Some(provider) = &provider {
                if !provider_names.contains(provider) {
                    let message = format!("unknown provider \"{provider}\"");
                    self.problems.push(&target_path.key("provider"), message);
                }
            }
            let model = self.text(target.model.as_ref(), &target_path.key("model"), "the upstream model name");
            let price = target.price.as_ref().and_then(|price| self.price(price, &target_path.key("price")));
            if strategy == Strategy::Cost && target.price.is_none() {
                self.problems.push(
                    &target_path.key("price"),
                    "required when strategy is cost, e.g. price: {input: 2.5, output: 10}",
                );
            }
            let max_tokens = self.whole(target.max_tokens.as_ref(), &target_path.key("max_tokens"), 1, u64::from(u32::MAX));
            if let (Some(provider), Some(model)) = (provider, model) {
                targets.push(Target { provider, model, price, max_tokens });
            }
        }
        targets
    }

    fn price(&mut self, raw: &crate::raw::RawPrice, path: &KeyPath) -> Option<Price> {
        let hint = "USD per million tokens, e.g. 2.5";
        let input = self.required(raw.input.as_ref(), &path.key("input"), hint);
        let output = self.required(raw.output.as_ref(), &path.key("output"), hint);
        let input = self.non_negative_number(input, &path.key("input"));
        let output = self.non_negative_number(output, &path.key("output"));
        Some(Price { input: input?, output: output? })
    }

    fn fallback(
        &mut self,
        raw: Option<&ScalarList>,
        own_name: &str,
        model_names: &[String],
        path: &KeyPath,
    ) -> Vec<String> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        let mut seen = HashSet::new();
        let mut fallback = Vec::with_capacity(raw.0.len());
        for (index, name) in raw.0.iter().enumerate() {
            let name = name.text();
            let message = if name == own_name {
                "a model cannot fall back to itself".to_owned()
            } else if !model_names.iter().any(|known| known == name) {
                format!("unknown model \"{name}\"")
            } else if !seen.insert(name) {
                format!("\"{name}\" is listed twice")
            } else {
                fallback.push(name.to_owned());
                continue;
            };
            self.problems.push(&path.index(index), message);
        }
        fallback
    }

    fn hedge(&mut self, raw: &RawHedge, path: &KeyPath) -> Option<HedgePolicy> {
        let after_path = path.key("after");
        let after = self.required(raw.after.as_ref(), &after_path, "a duration such as 2s, or p95");
        let after = match after.map(Scalar::text) {
            Some("p95") => Some(HedgeDelay::P95),
            Some(_) => self.optional_duration(after, &after_path).map(HedgeDelay::Fixed),
            None => None,
        };
        let max = self.whole(raw.max.as_ref(), &path.key("max"), 1, 10).unwrap_or(1);
        let budget = self.fraction(
            raw.budget.as_ref(),
            &path.key("budget"),
            FractionRange::AboveZeroUpToOne,
            DEFAULT_HEDGE_BUDGET,
        );
        Some(HedgePolicy { after: after?, max, budget })
    }

    fn model_cache(&mut self, raw: &RawModelCache, path: &KeyPath) -> Option<ModelCache> {
        let ttl_path = path.key("ttl");
        let ttl = self.required(raw.ttl.as_ref(), &ttl_path, "how long answers stay fresh, e.g. 10m");
        let ttl = self.optional_duration(ttl, &ttl_path);
        let stale_if_error = self.optional_duration(raw.stale_if_error.as_ref(), &path.key("stale_if_error"));
        Some(ModelCache { ttl: ttl?, stale_if_error })
    }

    pub(super) fn slos(&mut self, raw: Vec<Option<RawSlo>>, model_names: &[String]) -> Vec<Slo> {
        let section = KeyPath::root().key("slos");
        let mut names = HashSet::new();
        let mut slos = Vec::with_capacity(raw.len());
        for (index, slo) in raw.into_iter().enumerate() {
            let Some(slo) = slo else {
                continue;
            };
            let path = section.index(index);
            let name = self.text(slo.name.as_ref(), &path.key("name"), "the SLO's name");
            if let Some(name) = &name {
                if !names.insert(name.clone()) {
                    self.problems.push(&path.key("name"), format!("duplicate SLO \"{name}\""));
                }
            }
            let model = self.text(slo.model.as_ref(), &path.key("model"), "a model name");
            if let Some(model) = &model {
                if !model_names.contains(model) {
                    self.problems.push(&path.key("model"), format!("unknown model \"{model}\""));
                }
            }
            let sli = self.sli(&slo, &path);
            let target_path = path.key("target");
            let target = self.required(slo.target.as_ref(), &target_path, "the objective, e.g. 99.9%");
            let target = self.optional_fraction(target, &target_path, FractionRange::StrictlyBetween);
            let default_window = std::time::Duration::from_secs(DEFAULT_SLO_WINDOW_DAYS * 86_400);
            let window = self.duration(slo.window.as_ref(), &path.key("window"), default_window);
            if let (Some(name), Some(model), Some(sli), Some(target)) = (name, model, sli, target) {
                slos.push(Slo { name, model, sli, target, window });
            }
        }
        slos
    }

    fn sli(&mut self, slo: &RawSlo, path: &KeyPath) -> Option<Sli> {
        let sli_path = path.key("sli");
        let threshold_path = path.key("threshold");
        let sli = self.required(slo.sli.as_ref(), &sli_path, "availability or first_token_under")?;
        match sli.text() {
            "availability" => {
                if slo.threshold.is_some() {
                    self.problems.push(&threshold_path, "only used with sli: first_token_under; remove it");
                }
                Some(Sli::Availability)
            }
            "first_token_under" => {
                let hint = "sli first_token_under needs a threshold, e.g. threshold: 2s";
                let threshold = self.required(slo.threshold.as_ref(), &threshold_path, hint);
                self.optional_duration(threshold, &threshold_path).map(Sli::FirstTokenUnder)
            }
            other => {
                let message = format!("unknown sli \"{other}\" (expected one of: availability, first_token_under)");
                self.problems.push(&sli_path, message);
                None
            }
        }
    }
}
