//! The reference example (`tests/fixtures/spec-example.yaml`, every key of the
//! schema) loads and means what the README says it means.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use keel_config::{
    load_file, summary, BreakerPolicy, ConfigError, DatabaseKind, HealthCheck, HedgeDelay, Loaded,
    ProviderKind, RetryPolicy, Sli, Strategy, Timeouts,
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/spec-example.yaml"
);

fn load(vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    load_file(Path::new(FIXTURE), &vars)
}

fn secs(count: u64) -> Duration {
    Duration::from_secs(count)
}

#[test]
fn spec_example_without_variables_disables_keyed_providers_with_warnings() -> Result<(), ConfigError>
{
    let loaded = load(&[])?;
    assert_eq!(
        loaded.warnings,
        [
            "providers.openai: disabled: environment variable OPENAI_API_KEY is not set",
            "providers.anthropic: disabled: environment variable ANTHROPIC_API_KEY is not set",
            "models.chat-large: every target's provider is disabled; requests fail unless a fallback model serves them",
            "models.chat-small: every target's provider is disabled; requests fail unless a fallback model serves them",
        ]
    );
    let config = &loaded.config;
    let openai = config.provider("openai").ok_or_else(|| missing("openai"))?;
    assert_eq!(openai.kind, ProviderKind::Openai);
    assert_eq!(openai.api_key, None);
    assert_eq!(
        openai.disabled.as_deref(),
        Some("environment variable OPENAI_API_KEY is not set")
    );
    let anthropic = config
        .provider("anthropic")
        .ok_or_else(|| missing("anthropic"))?;
    assert_eq!(anthropic.kind, ProviderKind::Anthropic);
    assert!(!anthropic.is_enabled());
    assert_eq!(
        anthropic.max_concurrent,
        Some(keel_config::MaxConcurrent::Fixed(20))
    );
    assert_eq!(anthropic.default_max_tokens, 4096);
    Ok(())
}

#[test]
fn spec_example_server_database_and_tenants_match_the_file() -> Result<(), ConfigError> {
    let config = load(&[])?.config;
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.server.max_in_flight, 2048);
    assert_eq!(config.server.request_timeout, secs(300));
    assert_eq!(
        config.server.admin_key, None,
        "an empty default means no admin key"
    );
    assert_eq!(config.server.shutdown_grace, secs(30));
    assert_eq!(config.server.max_body, 8 << 20);
    assert_eq!(config.server.body_timeout, secs(30));
    assert_eq!(config.server.max_upstream_body, 64 << 20);
    assert_eq!(config.server.sse_keepalive, secs(15));
    assert_eq!(
        config
            .server
            .metrics_listen
            .map(|address| address.to_string()),
        Some(String::from("127.0.0.1:9464"))
    );
    assert_eq!(config.database.url, "sqlite://keel.db");
    assert_eq!(config.database.kind(), DatabaseKind::Sqlite);
    let [acme] = config.tenants.as_slice() else {
        return Err(missing("exactly one tenant"));
    };
    assert_eq!(acme.name, "acme");
    let dev_key_hash: [u8; 32] = sha2_of("sk-acme-dev");
    assert_eq!(acme.key_hashes, [dev_key_hash]);
    assert_eq!(acme.limits.rpm, Some(600));
    assert_eq!(acme.limits.tpm, Some(200_000));
    Ok(())
}

#[test]
fn spec_example_provider_policies_are_parsed_and_defaults_filled() -> Result<(), ConfigError> {
    let config = load(&[])?.config;
    let openai = config.provider("openai").ok_or_else(|| missing("openai"))?;
    assert_eq!(
        openai.base_url.as_deref(),
        Some("https://api.openai.com/v1")
    );
    assert_eq!(
        (openai.max_concurrent, openai.rpm, openai.tpm),
        (Some(keel_config::MaxConcurrent::Fixed(50)), Some(500), None)
    );
    let timeouts = Timeouts {
        connect: secs(2),
        headers: secs(15),
        first_token: secs(60),
        inactivity: secs(20),
        total: secs(300),
    };
    assert_eq!(openai.timeouts, timeouts);
    let retry = RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(100),
        max_delay: secs(10),
        budget_ratio: 0.2,
    };
    assert_eq!(openai.retry, retry);
    assert_eq!(openai.breaker, BreakerPolicy::default());
    let every_30s = HealthCheck { interval: secs(30) };
    assert_eq!(openai.health_check, Some(every_30s));
    let anthropic = config
        .provider("anthropic")
        .ok_or_else(|| missing("anthropic"))?;
    assert_eq!(
        anthropic.base_url.as_deref(),
        Some("https://api.anthropic.com")
    );
    assert_eq!(anthropic.timeouts, Timeouts::default());
    assert_eq!(anthropic.retry, RetryPolicy::default());
    assert_eq!(anthropic.health_check, None, "off unless configured");
    Ok(())
}

#[test]
fn spec_example_models_routes_hedge_and_cache() -> Result<(), ConfigError> {
    let config = load(&[])?.config;
    let names: Vec<&str> = config
        .models
        .iter()
        .map(|model| model.name.as_str())
        .collect();
    assert_eq!(names, ["chat-large", "chat-small"]);
    let large = config
        .model("chat-large")
        .ok_or_else(|| missing("chat-large"))?;
    assert_eq!(large.strategy, Strategy::Ordered);
    let targets: Vec<(&str, &str)> = large
        .targets
        .iter()
        .map(|target| (target.provider.as_str(), target.model.as_str()))
        .collect();
    assert_eq!(
        targets,
        [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5")]
    );
    let price = large.targets[0].price.ok_or_else(|| missing("price"))?;
    assert_eq!((price.input, price.output), (2.5, 10.0));
    assert_eq!(large.targets[1].price, None);
    assert_eq!(large.fallback, ["chat-small"]);
    assert_eq!(large.timeout, Some(secs(120)));
    let hedge = large.hedge.ok_or_else(|| missing("hedge"))?;
    assert_eq!(hedge.after, HedgeDelay::Fixed(secs(2)));
    assert_eq!(hedge.max, 1);
    assert_eq!(hedge.budget, 0.10);
    let cache = large.cache.ok_or_else(|| missing("cache"))?;
    assert_eq!(
        (cache.ttl, cache.stale_if_error),
        (secs(600), Some(secs(3_600)))
    );
    let small = config
        .model("chat-small")
        .ok_or_else(|| missing("chat-small"))?;
    assert_eq!(
        (small.timeout, small.hedge, small.cache),
        (None, None, None)
    );
    assert!(small.fallback.is_empty());
    Ok(())
}

#[test]
fn spec_example_other_sections_and_slos() -> Result<(), ConfigError> {
    let config = load(&[])?.config;
    assert_eq!(config.cache.max_bytes, 256 << 20);
    assert_eq!(config.cache.max_entry_bytes, 1 << 20);
    assert!(!config.cache.shared);
    assert_eq!(config.jobs.workers, 16);
    assert_eq!(config.jobs.lease, secs(60));
    assert_eq!(config.jobs.max_attempts, 5);
    assert_eq!(config.jobs.retry.base_delay, secs(5));
    assert_eq!(config.jobs.retry.max_delay, secs(300));
    assert_eq!(config.jobs.retention, secs(7 * 86_400));
    assert_eq!(config.webhooks.secret, None);
    assert_eq!(config.webhooks.timeout, secs(10));
    assert!(!config.webhooks.allow_private);
    let hours = |count: u64| secs(count * 3_600);
    let schedule = [
        secs(5),
        secs(300),
        secs(1_800),
        hours(2),
        hours(5),
        hours(10),
        hours(10),
    ];
    assert_eq!(config.webhooks.retry_schedule, schedule);
    assert_eq!(config.webhooks.disable_after, hours(120), "the default");
    assert_eq!(config.idempotency.ttl, hours(24));
    let [availability, ttft] = config.slos.as_slice() else {
        return Err(missing("two SLOs"));
    };
    assert_eq!(availability.name, "chat-large-availability");
    assert_eq!(availability.model, "chat-large");
    assert_eq!(availability.sli, Sli::Availability);
    assert_eq!(availability.target, 0.999);
    assert_eq!(availability.window, secs(30 * 86_400));
    assert_eq!(ttft.sli, Sli::FirstTokenUnder(secs(2)));
    assert_eq!(ttft.target, 0.99);
    Ok(())
}

#[test]
fn spec_example_with_variables_enables_providers_and_uses_them() -> Result<(), ConfigError> {
    let loaded = load(&[
        ("OPENAI_API_KEY", "sk-openai"),
        ("ANTHROPIC_API_KEY", "sk-ant"),
        ("KEEL_ADMIN_KEY", "admin-secret"),
        ("DATABASE_URL", "postgres://keel:pw@localhost/keel"),
        ("ACME_KEY", "sk-acme-prod"),
        (
            "KEEL_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
    ])?;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = &loaded.config;
    let openai = config.provider("openai").ok_or_else(|| missing("openai"))?;
    assert_eq!(
        openai.api_key.as_ref().map(|key| key.expose()),
        Some("sk-openai")
    );
    assert!(openai.is_enabled());
    assert_eq!(
        config.server.admin_key.as_ref().map(|key| key.expose()),
        Some("admin-secret")
    );
    assert_eq!(config.database.kind(), DatabaseKind::Postgres);
    assert_eq!(config.tenants[0].key_hashes, [sha2_of("sk-acme-prod")]);
    assert!(config.webhooks.secret.is_some());
    Ok(())
}

#[test]
fn summary_shows_providers_models_and_disabled_targets_without_secrets() -> Result<(), ConfigError>
{
    let loaded = load(&[
        ("ANTHROPIC_API_KEY", "sk-ant-secret"),
        ("DATABASE_URL", "postgres://keel:pw@db/keel"),
    ])?;
    let text = summary(&loaded.config);
    for expected in [
        "listen     127.0.0.1:8080 (max_in_flight 2048, request_timeout 5m, max_body 8MiB, shutdown_grace 30s)",
        "database   postgres (postgres://keel:***@db/keel)",
        "tenants    1 (acme)",
        "  openai     openai     https://api.openai.com/v1  disabled: environment variable OPENAI_API_KEY is not set",
        "  anthropic  anthropic  https://api.anthropic.com  enabled",
        "  chat-large [ordered] -> openai/gpt-4o (disabled), anthropic/claude-sonnet-4-5",
        "      fallback: chat-small",
        "      hedge: after 2s, max 1, budget 10%",
        "      cache: ttl 10m, stale_if_error 1h",
        "  chat-large-availability: model chat-large, availability, target 99.9% over 30d",
        "  chat-large-ttft: model chat-large, first token under 2s, target 99% over 30d",
        "jobs       16 workers, lease 1m, max_attempts 5, retention 7d",
    ] {
        assert!(text.lines().any(|line| line == expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("sk-ant-secret") && !text.contains(":pw@"));
    Ok(())
}

fn sha2_of(key: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(key.as_bytes()).into()
}

fn missing(what: &str) -> ConfigError {
    ConfigError {
        problems: vec![keel_config::Problem {
            path: String::new(),
            message: format!("test expected {what}"),
        }],
    }
}

/// `server.workers` is absent by default (one multi-threaded runtime) and,
/// when set, is kept and shown by `keel check`.
#[test]
fn server_workers_is_kept_and_shown() -> Result<(), ConfigError> {
    let yaml = "server: {workers: 4}\nproviders:\n  up: {kind: openai, base_url: \"http://127.0.0.1:1/v1\"}\nmodels:\n  chat: {targets: [{provider: up, model: m}]}\n";
    let config = keel_config::load_str(yaml, &HashMap::new())?.config;
    assert_eq!(config.server.workers, Some(4));
    assert!(
        summary(&config).contains("\nworkers    4 (one single-threaded runtime each)\n"),
        "{}",
        summary(&config)
    );
    let default =
        keel_config::load_str(&yaml.replace("server: {workers: 4}\n", ""), &HashMap::new())?;
    assert_eq!(default.config.server.workers, None);
    assert!(!summary(&default.config).contains("workers    "));
    Ok(())
}
