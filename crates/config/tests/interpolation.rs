//! `${VAR}` and `${VAR:-default}` through the whole loader: defaults, set
//! variables, the `$${` escape, malformed references, and references inside
//! YAML flow collections (which plain YAML rejects).

use std::collections::HashMap;
use std::time::Duration;

use keel_config::{load_str, ConfigError, Loaded};

fn load(yaml: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    load_str(yaml, &vars)
}

fn document(extra: &str) -> String {
    format!(
        "{extra}
providers:
  openai: {{kind: openai, api_key: ${{OPENAI_API_KEY:-sk-default}}, headers: {{X-Template: \"$${{NOT_A_VAR}}\", X-Cost: \"$5 and $$\"}}}}
models:
  chat: {{targets: [{{provider: openai, model: gpt-4o}}]}}
tenants:
  - {{name: acme, keys: [${{ACME_KEY:-sk-acme-dev}}, \"${{SECOND_KEY:-sk-second}}\"]}}
"
    )
}

fn error_text(result: Result<Loaded, ConfigError>) -> String {
    match result {
        Ok(loaded) => format!("unexpectedly loaded with warnings {:?}", loaded.warnings),
        Err(error) => error.to_string(),
    }
}

#[test]
fn defaults_apply_when_variables_are_unset() -> Result<(), ConfigError> {
    let config = load(&document(""), &[])?.config;
    let openai = &config.providers[0];
    assert_eq!(
        openai.api_key.as_ref().map(|key| key.expose()),
        Some("sk-default")
    );
    assert_eq!(config.tenants[0].key_hashes.len(), 2);
    Ok(())
}

#[test]
fn set_variables_replace_defaults_and_empty_ones_fall_back_to_them() -> Result<(), ConfigError> {
    let config = load(
        &document(""),
        &[("OPENAI_API_KEY", "sk-real"), ("ACME_KEY", "")],
    )?
    .config;
    assert_eq!(
        config.providers[0].api_key.as_ref().map(|key| key.expose()),
        Some("sk-real")
    );
    let with_default = load(&document(""), &[])?.config;
    assert_eq!(
        config.tenants[0].key_hashes,
        with_default.tenants[0].key_hashes
    );
    Ok(())
}

#[test]
fn double_dollar_brace_keeps_a_literal_reference_and_lone_dollars_stay() -> Result<(), ConfigError>
{
    let config = load(&document(""), &[("NOT_A_VAR", "expanded")])?.config;
    assert_eq!(
        config.providers[0].headers,
        [
            ("X-Template".to_owned(), "${NOT_A_VAR}".to_owned()),
            ("X-Cost".to_owned(), "$5 and $$".to_owned()),
        ]
    );
    Ok(())
}

#[test]
fn references_work_inside_flow_sequences_and_flow_mappings() -> Result<(), ConfigError> {
    let yaml = document("webhooks: {secret: ${KEEL_WEBHOOK_SECRET:-}, timeout: ${HOOK_TIMEOUT:-3s}, allow_private: false}");
    let config = load(&yaml, &[])?.config;
    assert_eq!(config.webhooks.secret, None);
    assert_eq!(config.webhooks.timeout, Duration::from_secs(3));
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let config = load(&yaml, &[("KEEL_WEBHOOK_SECRET", secret)])?.config;
    assert_eq!(
        config.webhooks.secret.as_ref().map(|key| key.expose()),
        Some(secret)
    );
    Ok(())
}

#[test]
fn numbers_and_booleans_can_come_from_variables() -> Result<(), ConfigError> {
    let yaml = document(
        "server: {max_in_flight: \"${MAX_IN_FLIGHT:-64}\"}\nwebhooks: {allow_private: \"${ALLOW_PRIVATE:-false}\"}",
    );
    let config = load(&yaml, &[("ALLOW_PRIVATE", "true")])?.config;
    assert_eq!(config.server.max_in_flight, 64);
    assert!(config.webhooks.allow_private);
    Ok(())
}

#[test]
fn unset_api_key_in_a_flow_mapping_disables_only_that_provider() -> Result<(), ConfigError> {
    let yaml = "
providers:
  openai: {kind: openai, api_key: ${OPENAI_API_KEY}}
  demo: {kind: mock}
models:
  chat: {targets: [{provider: openai, model: gpt-4o}, {provider: demo, model: demo}]}
tenants: [{name: acme, keys: [k]}]
";
    let loaded = load(yaml, &[])?;
    assert_eq!(
        loaded.warnings,
        ["providers.openai: disabled: environment variable OPENAI_API_KEY is not set"]
    );
    assert!(loaded.config.providers[1].is_enabled());
    Ok(())
}

#[test]
fn malformed_references_name_the_key() {
    let cases = [
        (
            "server:\n  admin_key: ${KEEL_ADMIN_KEY",
            "server.admin_key: unterminated \"${\": close it with \"}\", or write \"$${\" for a literal \"${\"",
        ),
        (
            "database: {url: \"${1DB}\"}",
            "database.url: invalid reference \"${1DB}\": write ${NAME} or ${NAME:-default}, where NAME is letters, digits and _ and does not start with a digit",
        ),
        (
            "database:\n  url: ${DB:-${OTHER}}",
            "database.url: nested reference in \"${DB:-${OTHER}\": a default cannot contain \"${\"",
        ),
    ];
    for (extra, expected) in cases {
        assert_eq!(error_text(load(&document(extra), &[])), expected, "{extra}");
    }
}

#[test]
fn unset_variables_outside_api_key_are_errors_naming_every_key() {
    let yaml = document(
        "server: {admin_key: \"${KEEL_ADMIN_KEY}\"}\ndatabase: {url: \"${DATABASE_URL}\"}",
    );
    assert_eq!(
        error_text(load(&yaml, &[])),
        "server.admin_key: environment variable KEEL_ADMIN_KEY is not set\n\
         database.url: environment variable DATABASE_URL is not set"
    );
}
