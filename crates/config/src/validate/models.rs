//! `models:`: routes, their cross-references (target → provider, fallback →
//! model), fallback cycles, hedging and caching.

use std::collections::HashSet;

use super::{Checker, FractionRange, Names};
use crate::error::KeyPath;
use crate::raw::{
    RawAffinity, RawHedge, RawModel, RawModelCache, RawOnFailure, RawTarget, Scalar, ScalarList,
};
use crate::schema::{
    Affinity, AffinityKey, HedgeDelay, HedgePolicy, ModelCache, ModelConfig, ModelEndpoint, Price,
    ProviderConfig, ProviderKind, Strategy, Target,
};

mod fallback;

/// The largest `targets[i].weight`: a million to one is already a pin.
const MAX_WEIGHT: u32 = 1_000_000;

/// `affinity.ttl` when absent.
const DEFAULT_AFFINITY_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// `affinity.max_sessions` when absent, and its largest value: at about
/// 100 bytes a session, the default holds 10 MB at most.
const DEFAULT_MAX_SESSIONS: usize = 100_000;
const MOST_SESSIONS: u64 = 10_000_000;

/// The default hedge budget: 10 % of the model's requests.
const DEFAULT_HEDGE_BUDGET: f64 = 0.10;

// === impl Checker ===

impl Checker {
    pub(super) fn models(
        &mut self,
        raw: Vec<(String, Option<RawModel>)>,
        names: &Names<'_>,
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
                let message = format!("invalid model name \"{name}\": spaces are not allowed");
                self.problems.push(&path, message);
            }
            if let Some(model) = model {
                models.push(self.model(name, model, names, &path));
            }
        }
        self.check_fallback_cycles(&models);
        models
    }

    fn model(
        &mut self,
        name: String,
        raw: RawModel,
        names: &Names<'_>,
        path: &KeyPath,
    ) -> ModelConfig {
        let endpoint = self.model_endpoint(raw.endpoint.as_ref(), &path.key("endpoint"));
        if endpoint == ModelEndpoint::Embeddings && raw.hedge.is_some() {
            self.problems.push(
                &path.key("hedge"),
                "embeddings are not hedged (an embeddings answer has no first token); remove it",
            );
        }
        let strategy = self.strategy(raw.strategy.as_ref(), &path.key("strategy"));
        let targets = self.targets(raw.targets, strategy, names.providers, &path.key("targets"));
        let fallback_path = path.key("fallback");
        let fallback = self.fallback(raw.fallback.as_ref(), &name, names.models, &fallback_path);
        ModelConfig {
            endpoint,
            strategy,
            targets,
            fallback,
            timeout: self.optional_duration(raw.timeout.as_ref(), &path.key("timeout")),
            hedge: raw
                .hedge
                .as_ref()
                .and_then(|hedge| self.hedge(hedge, &path.key("hedge"))),
            cache: raw
                .cache
                .as_ref()
                .and_then(|cache| self.model_cache(cache, &path.key("cache"))),
            last_resort: raw.on_failure.as_ref().and_then(|on_failure| {
                self.last_resort(on_failure, endpoint, &path.key("on_failure"))
            }),
            affinity: raw
                .affinity
                .as_ref()
                .and_then(|affinity| self.affinity(affinity, &path.key("affinity"))),
            name,
        }
    }

    /// A model whose every target is disabled still loads (its fallback or
    /// the stale cache may serve it), but deserves a warning.
    pub(super) fn warn_about_unservable_models(
        &mut self,
        models: &[ModelConfig],
        providers: &[ProviderConfig],
    ) {
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

    fn model_endpoint(&mut self, value: Option<&Scalar>, path: &KeyPath) -> ModelEndpoint {
        match value.map(Scalar::text) {
            None | Some("chat") => ModelEndpoint::Chat,
            Some("embeddings") => ModelEndpoint::Embeddings,
            Some(other) => {
                let message =
                    format!("unknown endpoint \"{other}\" (expected one of: chat, embeddings)");
                self.problems.push(path, message);
                ModelEndpoint::Chat
            }
        }
    }

    /// An embeddings model's targets must be able to embed (OpenAI-kind,
    /// Azure, mock), and its fallbacks must serve embeddings too; a chat
    /// model cannot fall back to an embeddings model.
    pub(super) fn check_model_endpoints(
        &mut self,
        models: &[ModelConfig],
        providers: &[ProviderConfig],
    ) {
        let section = KeyPath::root().key("models");
        for model in models {
            let path = section.key(&model.name);
            if model.endpoint == ModelEndpoint::Embeddings {
                for (index, target) in model.targets.iter().enumerate() {
                    let kind = providers
                        .iter()
                        .find(|provider| provider.name == target.provider)
                        .map(|provider| provider.kind);
                    if kind.is_some_and(|kind| !kind.serves_embeddings()) {
                        let message = format!(
                            "provider \"{}\" is {} and cannot serve embeddings (openai, azure or mock can)",
                            target.provider,
                            kind.map_or("", ProviderKind::as_str)
                        );
                        self.problems
                            .push(&path.key("targets").index(index).key("provider"), message);
                    }
                }
            }
            for (index, name) in model.fallback.iter().enumerate() {
                let other = models.iter().find(|other| &other.name == name);
                if let Some(other) = other.filter(|other| other.endpoint != model.endpoint) {
                    let message = format!(
                        "\"{name}\" serves {} and this model serves {}: a fallback must serve the same endpoint",
                        other.endpoint.as_str(),
                        model.endpoint.as_str()
                    );
                    self.problems
                        .push(&path.key("fallback").index(index), message);
                }
            }
        }
    }

    fn strategy(&mut self, value: Option<&Scalar>, path: &KeyPath) -> Strategy {
        match value.map(Scalar::text) {
            None | Some("ordered") => Strategy::Ordered,
            Some("cost") => Strategy::Cost,
            Some("weighted") => Strategy::Weighted,
            Some("least_busy") => Strategy::LeastBusy,
            Some("latency") => Strategy::Latency,
            Some(other) => {
                let message = format!(
                    "unknown strategy \"{other}\" (expected one of: ordered, cost, weighted, least_busy, latency)"
                );
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
            self.problems.push(
                path,
                "at least one target is required, e.g. [{provider: openai, model: gpt-4o}]",
            );
        }
        raw.iter()
            .enumerate()
            .filter_map(|(index, target)| {
                self.target(target, strategy, provider_names, &path.index(index))
            })
            .collect()
    }

    fn target(
        &mut self,
        raw: &RawTarget,
        strategy: Strategy,
        provider_names: &[String],
        path: &KeyPath,
    ) -> Option<Target> {
        let provider_path = path.key("provider");
        let provider = self.text(raw.provider.as_ref(), &provider_path, "a provider name");
        if let Some(provider) = provider
            .as_ref()
            .filter(|name| !provider_names.contains(name))
        {
            self.problems
                .push(&provider_path, format!("unknown provider \"{provider}\""));
        }
        let model = self.text(
            raw.model.as_ref(),
            &path.key("model"),
            "the upstream model name",
        );
        let price = raw
            .price
            .as_ref()
            .and_then(|price| self.price(price, &path.key("price")));
        if strategy == Strategy::Cost && raw.price.is_none() {
            self.problems.push(
                &path.key("price"),
                "required when strategy is cost, e.g. price: {input: 2.5, output: 10}",
            );
        }
        let max_tokens_path = path.key("max_tokens");
        let max_tokens = self.whole(
            raw.max_tokens.as_ref(),
            &max_tokens_path,
            1,
            u64::from(u32::MAX),
        );
        let weight = self.weight(raw.weight.as_ref(), strategy, &path.key("weight"));
        let context_window = self.whole(
            raw.context_window.as_ref(),
            &path.key("context_window"),
            1,
            u64::from(u32::MAX),
        );
        Some(Target {
            provider: provider?,
            model: model?,
            price,
            max_tokens,
            weight,
            context_window,
        })
    }

    /// `weight`, 1 when absent or invalid. Set on a model that is not
    /// weighted it is only a warning: it does nothing there, but switching a
    /// model's strategy back and forth should not mean deleting weights.
    fn weight(&mut self, value: Option<&Scalar>, strategy: Strategy, path: &KeyPath) -> u32 {
        let weight = self.whole(value, path, 1, u64::from(MAX_WEIGHT));
        if value.is_some() && strategy != Strategy::Weighted {
            self.warn(format!(
                "{path}: ignored, the model's strategy is {strategy} (weights apply to strategy: weighted)"
            ));
        }
        weight.unwrap_or(1)
    }

    fn price(&mut self, raw: &crate::raw::RawPrice, path: &KeyPath) -> Option<Price> {
        let hint = "USD per million tokens, e.g. 2.5";
        let input = self.required(raw.input.as_ref(), &path.key("input"), hint);
        let output = self.required(raw.output.as_ref(), &path.key("output"), hint);
        let input = self.non_negative_number(input, &path.key("input"));
        let output = self.non_negative_number(output, &path.key("output"));
        let cached_input = raw
            .cached_input
            .as_ref()
            .and_then(|value| self.non_negative_number(Some(value), &path.key("cached_input")));
        Some(Price {
            input: input?,
            output: output?,
            cached_input,
        })
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
        let after = self.required(
            raw.after.as_ref(),
            &after_path,
            "a duration such as 2s, or p95",
        );
        let after = match after.map(Scalar::text) {
            Some("p95") => Some(HedgeDelay::P95),
            Some(_) => self
                .optional_duration(after, &after_path)
                .map(HedgeDelay::Fixed),
            None => None,
        };
        let max = self
            .whole(raw.max.as_ref(), &path.key("max"), 1, 10)
            .unwrap_or(1);
        let budget = self.fraction(
            raw.budget.as_ref(),
            &path.key("budget"),
            FractionRange::AboveZeroUpToOne,
            DEFAULT_HEDGE_BUDGET,
        );
        Some(HedgePolicy {
            after: after?,
            max,
            budget,
        })
    }

    /// `on_failure.respond.content`: the text a chat model answers with
    /// when routing fails. Embeddings have no text answer to give.
    fn last_resort(
        &mut self,
        raw: &RawOnFailure,
        endpoint: ModelEndpoint,
        path: &KeyPath,
    ) -> Option<String> {
        if endpoint == ModelEndpoint::Embeddings {
            self.problems.push(
                path,
                "embeddings have no text answer to fall back on; remove it",
            );
            return None;
        }
        let respond_path = path.key("respond");
        let hint = "the answer's text, e.g. respond: {content: \"The assistant is unavailable; try again later.\"}";
        let Some(respond) = &raw.respond else {
            self.problems
                .push(&respond_path, format!("required: {hint}"));
            return None;
        };
        self.text(respond.content.as_ref(), &respond_path.key("content"), hint)
    }

    /// `affinity: {key, ttl, max_sessions}`.
    fn affinity(&mut self, raw: &RawAffinity, path: &KeyPath) -> Option<Affinity> {
        let key_path = path.key("key");
        let hint = "header:<name> (e.g. header:x-session-id) or user";
        let key = match self
            .required(raw.key.as_ref(), &key_path, hint)
            .map(Scalar::text)
        {
            None => None,
            Some("user") => Some(AffinityKey::User),
            Some(text) => match text.strip_prefix("header:").map(str::trim) {
                Some(name) if is_header_name(name) => {
                    Some(AffinityKey::Header(name.to_ascii_lowercase()))
                }
                _ => {
                    let message = format!("invalid key \"{text}\": expected {hint}");
                    self.problems.push(&key_path, message);
                    None
                }
            },
        };
        let ttl = self.duration(raw.ttl.as_ref(), &path.key("ttl"), DEFAULT_AFFINITY_TTL);
        let max_sessions = self
            .whole(
                raw.max_sessions.as_ref(),
                &path.key("max_sessions"),
                1,
                MOST_SESSIONS,
            )
            .unwrap_or(DEFAULT_MAX_SESSIONS);
        Some(Affinity {
            key: key?,
            ttl,
            max_sessions,
        })
    }

    fn model_cache(&mut self, raw: &RawModelCache, path: &KeyPath) -> Option<ModelCache> {
        let ttl_path = path.key("ttl");
        let ttl = self.required(
            raw.ttl.as_ref(),
            &ttl_path,
            "how long answers stay fresh, e.g. 10m",
        );
        let ttl = self.optional_duration(ttl, &ttl_path);
        let stale_if_error =
            self.optional_duration(raw.stale_if_error.as_ref(), &path.key("stale_if_error"));
        Some(ModelCache {
            ttl: ttl?,
            stale_if_error,
        })
    }
}

/// Whether `name` is an HTTP header name (RFC 9110 token characters).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}
