//! `providers.yaml`: schema, `${VAR}` interpolation, validation and the typed
//! [`Config`] value.
//!
//! Loading runs in phases so that every problem in a file is reported at once:
//!
//! 1. `interpolate` protects `${...}` references so YAML accepts them inside
//!    flow collections (`keys: [${ACME_KEY:-dev}]`), parses the text into a
//!    `serde_yaml_ng::Value` tree and expands every string scalar, remembering the
//!    key path of each unset variable.
//! 2. `raw` deserializes each section, each provider, each model, each tenant
//!    and each SLO separately into `Raw*` structs (`deny_unknown_fields`)
//!    through `serde_path_to_error`; an unknown key is recorded and removed,
//!    and the entry read again, so one typo does not hide the next one.
//! 3. `validate` turns the raw structs into the validated [`Config`], whose
//!    fields cannot hold invalid states, collecting every problem on the way.
//!
//! Callers load the file once, wrap the [`Config`] in an `Arc` and pass it on.

use std::collections::HashMap;
use std::path::Path;

mod error;
mod interpolate;
mod raw;
mod schema;
mod summary;
mod units;
mod validate;

pub use error::{ConfigError, Problem};
pub use keel_types::SecretString;
pub use raw::known_keys;
pub use schema::{
    Affinity, AffinityKey, BreakerPolicy, CacheConfig, Config, CorsOrigins, DatabaseConfig,
    DatabaseKind, HealthCheck, HedgeDelay, HedgePolicy, IdempotencyConfig, JobRetry, JobsConfig,
    MaxConcurrent, ModelCache, ModelConfig, ModelEndpoint, Price, ProviderConfig, ProviderKind,
    RedisConfig, RetryPolicy, ServerConfig, Sli, Slo, Strategy, Target, TelemetryConfig, Tenant,
    TenantLimits, Timeouts, WebhooksConfig,
};
pub use summary::summary;

/// Where `${VAR}` references get their values.
///
/// The binary passes [`ProcessEnv`]; tests pass a `HashMap<String, String>` so
/// they never touch the process environment.
pub trait VarSource {
    /// The value of variable `name`, or `None` when it is not set.
    fn var(&self, name: &str) -> Option<String>;
}

/// Reads variables from the process environment (`std::env::var`).
///
/// A variable whose value is not valid Unicode counts as unset.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

/// A loaded, validated configuration and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Non-fatal findings, one line each, for the log and `keel check`, e.g.
    /// `providers.openai: disabled: environment variable OPENAI_API_KEY is not set`.
    pub warnings: Vec<String>,
}

/// Reads and loads the configuration file at `path`.
///
/// # Errors
///
/// A [`ConfigError`] listing every problem found: the file cannot be read, is
/// not valid YAML, references unset variables, or does not validate.
pub fn load_file(path: &Path, vars: &dyn VarSource) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::single(
            path.display().to_string(),
            format!("cannot read the configuration file: {error}"),
        )
    })?;
    load_str(&text, vars)
}

/// Loads a configuration from YAML text.
///
/// # Errors
///
/// A [`ConfigError`] listing every problem found: the text is not valid YAML,
/// references unset variables, or does not validate.
pub fn load_str(yaml: &str, vars: &dyn VarSource) -> Result<Loaded, ConfigError> {
    let mut problems = error::Problems::default();
    let expanded = interpolate::parse_and_expand(yaml, vars, &mut problems)?;
    let raw = raw::RawConfig::from_value(expanded.value, &mut problems);
    validate::validate(raw, &expanded.disabled_providers, problems)
}

// === impl ProcessEnv ===

impl VarSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

// === impl HashMap ===

impl VarSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}
