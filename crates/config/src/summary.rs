//! [`summary`]: the one-screen description `keel check` prints.

use crate::schema::{Config, HedgeDelay, ModelConfig, ProviderConfig, Sli, Slo};
use crate::units::{format_duration, format_percent, format_size};

/// A one-screen, human-readable summary of a validated configuration: the
/// listener, the database, tenants, providers (enabled or disabled with the
/// reason), models with their targets (disabled ones marked), fallbacks,
/// hedging and caching, and SLOs. Secrets are never printed; a database
/// password is masked.
pub fn summary(config: &Config) -> String {
    let server = &config.server;
    let mut lines = vec![
        format!(
            "listen     {} (max_in_flight {}, request_timeout {}, max_body {}, shutdown_grace {})",
            server.listen,
            server.max_in_flight,
            format_duration(server.request_timeout),
            format_size(server.max_body),
            format_duration(server.shutdown_grace),
        ),
        format!(
            "admin      {}",
            if server.admin_key.is_some() {
                "enabled (admin_key set)"
            } else {
                "disabled (no admin_key)"
            }
        ),
        format!(
            "database   {} ({})",
            config.database.kind().as_str(),
            mask_password(&config.database.url)
        ),
        tenants_line(config),
    ];
    if let Some(workers) = server.workers {
        lines.insert(
            1,
            format!("workers    {workers} (one single-threaded runtime each)"),
        );
    }
    lines.push(format!("providers  {}", config.providers.len()));
    lines.extend(provider_lines(&config.providers));
    lines.push(format!("models     {}", config.models.len()));
    for model in &config.models {
        lines.extend(model_lines(model, config));
    }
    if !config.slos.is_empty() {
        lines.push(format!("slos       {}", config.slos.len()));
        lines.extend(config.slos.iter().map(slo_line));
    }
    lines.extend(other_sections_lines(config));
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn tenants_line(config: &Config) -> String {
    if config.tenants.is_empty() {
        return "tenants    0 (every request will be rejected with 401)".to_owned();
    }
    let names: Vec<&str> = config
        .tenants
        .iter()
        .map(|tenant| tenant.name.as_str())
        .collect();
    format!("tenants    {} ({})", names.len(), names.join(", "))
}

fn provider_lines(providers: &[ProviderConfig]) -> Vec<String> {
    let name_width = providers
        .iter()
        .map(|provider| provider.name.len())
        .max()
        .unwrap_or(0);
    let url_width = providers
        .iter()
        .map(|provider| provider.base_url.as_deref().unwrap_or("(in-process)").len())
        .max()
        .unwrap_or(0);
    providers
        .iter()
        .map(|provider| {
            let state = match &provider.disabled {
                Some(reason) => format!("disabled: {reason}"),
                None => "enabled".to_owned(),
            };
            format!(
                "  {:name_width$}  {:9}  {:url_width$}  {state}",
                provider.name,
                provider.kind.as_str(),
                provider.base_url.as_deref().unwrap_or("(in-process)"),
            )
        })
        .collect()
}

fn model_lines(model: &ModelConfig, config: &Config) -> Vec<String> {
    let mut lines = vec![format!(
        "  {} [{}] -> {}",
        model.name,
        model.strategy,
        targets_text(model, config)
    )];
    if model.endpoint != crate::ModelEndpoint::Chat {
        lines.push(format!("      endpoint: {}", model.endpoint.as_str()));
    }
    if !model.fallback.is_empty() {
        lines.push(format!("      fallback: {}", model.fallback.join(", ")));
    }
    if let Some(timeout) = model.timeout {
        lines.push(format!("      timeout: {}", format_duration(timeout)));
    }
    if let Some(hedge) = &model.hedge {
        let after = match hedge.after {
            HedgeDelay::Fixed(delay) => format_duration(delay),
            HedgeDelay::P95 => "p95".to_owned(),
        };
        let budget = format_percent(hedge.budget);
        lines.push(format!(
            "      hedge: after {after}, max {}, budget {budget}",
            hedge.max
        ));
    }
    if let Some(cache) = &model.cache {
        let stale = cache
            .stale_if_error
            .map(|stale| format!(", stale_if_error {}", format_duration(stale)))
            .unwrap_or_default();
        lines.push(format!(
            "      cache: ttl {}{stale}",
            format_duration(cache.ttl)
        ));
    }
    if let Some(affinity) = &model.affinity {
        let key = match &affinity.key {
            crate::AffinityKey::Header(name) => format!("header {name}"),
            crate::AffinityKey::User => String::from("user"),
        };
        lines.push(format!(
            "      affinity: {key}, ttl {}, max_sessions {}",
            format_duration(affinity.ttl),
            affinity.max_sessions
        ));
    }
    if model.last_resort.is_some() {
        lines.push(String::from(
            "      on_failure: responds with its configured text",
        ));
    }
    lines
}

/// `openai/gpt-4o (disabled), anthropic/claude-sonnet-4-5`.
fn targets_text(model: &ModelConfig, config: &Config) -> String {
    let targets: Vec<String> = model
        .targets
        .iter()
        .map(|target| {
            let disabled = config
                .provider(&target.provider)
                .is_some_and(|provider| !provider.is_enabled());
            let marker = if disabled { " (disabled)" } else { "" };
            let weight = if model.strategy == crate::Strategy::Weighted {
                format!(" (weight {})", target.weight)
            } else {
                String::new()
            };
            let window = target
                .context_window
                .map(|tokens| format!(" (context {tokens})"))
                .unwrap_or_default();
            format!(
                "{}/{}{weight}{window}{marker}",
                target.provider, target.model
            )
        })
        .collect();
    targets.join(", ")
}

fn slo_line(slo: &Slo) -> String {
    let sli = match slo.sli {
        Sli::Availability => "availability".to_owned(),
        Sli::FirstTokenUnder(threshold) => {
            format!("first token under {}", format_duration(threshold))
        }
    };
    format!(
        "  {}: model {}, {sli}, target {} over {}",
        slo.name,
        slo.model,
        format_percent(slo.target),
        format_duration(slo.window)
    )
}

fn other_sections_lines(config: &Config) -> Vec<String> {
    let jobs = &config.jobs;
    let webhooks = &config.webhooks;
    vec![
        format!("cache      {}", format_size(config.cache.max_bytes)),
        format!(
            "jobs       {} workers, lease {}, max_attempts {}, retention {}",
            jobs.workers,
            format_duration(jobs.lease),
            jobs.max_attempts,
            format_duration(jobs.retention),
        ),
        format!(
            "webhooks   {}, timeout {}, allow_private {}, {} retries",
            webhook_signing(config),
            format_duration(webhooks.timeout),
            webhooks.allow_private,
            webhooks.retry_schedule.len(),
        ),
        format!(
            "idempotency ttl {}",
            format_duration(config.idempotency.ttl)
        ),
        redis_line(config),
    ]
}

/// Where limits and a cache level are shared, if anywhere (the URL's
/// password masked).
fn redis_line(config: &Config) -> String {
    match &config.redis {
        None => String::from("redis      off (limits and cache per instance)"),
        Some(redis) => format!(
            "redis      {} ({} expected instances, timeout {})",
            mask_password(&redis.url),
            redis.expected_instances,
            format_duration(redis.timeout),
        ),
    }
}

/// Whether job webhooks are signed, in the words (and on the condition) of
/// the refusal a job with a `webhook` gets at submit when they are not.
fn webhook_signing(config: &Config) -> &'static str {
    if config.webhooks.secret.is_some() {
        "signed with webhooks.secret"
    } else {
        "off: this gateway has no webhooks.secret, so it cannot sign webhooks \
         (a job with a webhook is refused)"
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let Some((user, _password)) = rest[..at].split_once(':') else {
        return url.to_owned();
    };
    format!("{scheme}://{user}:***{}", &rest[at..])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{mask_password, summary};
    use crate::ConfigError;

    #[test]
    fn a_weighted_model_shows_its_strategy_and_each_weight() -> Result<(), ConfigError> {
        let yaml = "providers:\n  a: {kind: mock}\n  b: {kind: mock}\nmodels:\n  chat:\n    strategy: weighted\n    targets: [{provider: a, model: x, weight: 3}, {provider: b, model: y}]\n  fast:\n    strategy: latency\n    targets: [{provider: a, model: x}]\n";
        let loaded = crate::load_str(yaml, &HashMap::<String, String>::new())?;
        let text = summary(&loaded.config);
        for expected in [
            "  chat [weighted] -> a/x (weight 3), b/y (weight 1)",
            "  fast [latency] -> a/x",
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "missing {expected:?} in:\n{text}"
            );
        }
        Ok(())
    }

    #[test]
    fn database_passwords_are_masked() {
        assert_eq!(
            mask_password("postgres://keel:hunter2@db:5432/keel"),
            "postgres://keel:***@db:5432/keel"
        );
        assert_eq!(mask_password("sqlite://keel.db"), "sqlite://keel.db");
        assert_eq!(
            mask_password("postgres://keel@db/keel"),
            "postgres://keel@db/keel"
        );
    }
}
