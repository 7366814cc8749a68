//! Phase three: `Raw*` structs to the validated [`Config`], collecting every
//! problem in one pass.
//!
//! Each check records its problem and carries on with a default value, so a
//! bad duration in `server` does not hide an unknown provider in `models`.
//! Whether anything was recorded decides the result at the end.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{ConfigError, KeyPath, Problems};
use crate::raw::{RawConfig, Scalar};
use crate::schema::Config;
use crate::units::{parse_duration, parse_fraction, parse_size};
use crate::Loaded;

mod models;
mod providers;
mod sections;
mod slos;
mod tenants;

/// Validates `raw`, adding to the `problems` found in earlier phases.
/// `disabled_providers` maps provider names whose `api_key` referenced an
/// unset variable to the reason they are disabled.
pub(crate) fn validate(
    raw: RawConfig,
    disabled_providers: &HashMap<String, String>,
    problems: Problems,
) -> Result<Loaded, ConfigError> {
    let mut checker = Checker {
        problems,
        warnings: Vec::new(),
    };
    let provider_names: Vec<String> = raw.providers.iter().map(|(name, _)| name.clone()).collect();
    let model_names: Vec<String> = raw.models.iter().map(|(name, _)| name.clone()).collect();
    let server = checker.server(raw.server);
    let database = checker.database(raw.database);
    let tenants = checker.tenants(raw.tenants);
    let providers = checker.providers(raw.providers, disabled_providers);
    let names = Names {
        providers: &provider_names,
        models: &model_names,
    };
    let models = checker.models(raw.models, &names);
    checker.warn_about_unservable_models(&models, &providers);
    checker.check_model_endpoints(&models, &providers);
    let config = Config {
        server,
        database,
        tenants,
        providers,
        models,
        cache: checker.cache(raw.cache),
        jobs: checker.jobs(raw.jobs),
        webhooks: checker.webhooks(raw.webhooks),
        idempotency: checker.idempotency(raw.idempotency),
        slos: checker.slos(raw.slos, &model_names),
        telemetry: checker.telemetry(raw.telemetry),
        redis: checker.redis(raw.redis),
    };
    let Checker { problems, warnings } = checker;
    problems.finish(Loaded { config, warnings })
}

/// Every provider and model name in the file, including entries that
/// failed to deserialize, so references to them are not reported twice.
struct Names<'a> {
    providers: &'a [String],
    models: &'a [String],
}

/// Accepted ranges for fractions.
#[derive(Debug, Clone, Copy)]
enum FractionRange {
    /// (0, 1]
    AboveZeroUpToOne,
    /// [0, 1]
    ZeroToOne,
    /// (0, 1)
    StrictlyBetween,
}

/// The validation state: problems so far and warnings.
struct Checker {
    problems: Problems,
    warnings: Vec<String>,
}

// === impl Checker ===

impl Checker {
    /// A required value; records `required: <hint>` when it is absent.
    fn required<'a>(
        &mut self,
        value: Option<&'a Scalar>,
        path: &KeyPath,
        hint: &str,
    ) -> Option<&'a Scalar> {
        if value.is_none() {
            self.problems.push(path, format!("required: {hint}"));
        }
        value
    }

    /// A required, non-empty string.
    fn text(&mut self, value: Option<&Scalar>, path: &KeyPath, hint: &str) -> Option<String> {
        let value = self.required(value, path, hint)?;
        if value.text().is_empty() {
            self.problems
                .push(path, format!("must not be empty: {hint}"));
            return None;
        }
        Some(value.text().to_owned())
    }

    /// A positive duration, or `default` when absent (or invalid, with a problem).
    fn duration(&mut self, value: Option<&Scalar>, path: &KeyPath, default: Duration) -> Duration {
        self.optional_duration(value, path).unwrap_or(default)
    }

    /// A positive duration, or `None` when absent or invalid.
    fn optional_duration(&mut self, value: Option<&Scalar>, path: &KeyPath) -> Option<Duration> {
        let duration = self.any_duration(value, path)?;
        if duration.is_zero() {
            self.problems
                .push(path, "must be greater than zero, e.g. 250ms or 10s");
            return None;
        }
        Some(duration)
    }

    /// A duration that may be zero, or `None` when absent or invalid.
    fn any_duration(&mut self, value: Option<&Scalar>, path: &KeyPath) -> Option<Duration> {
        match parse_duration(value?.text()) {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.problems.push(path, message);
                None
            }
        }
    }

    /// A whole number within `min..=max` that fits `T`, or `None` when absent
    /// or invalid.
    fn whole<T: TryFrom<u64>>(
        &mut self,
        value: Option<&Scalar>,
        path: &KeyPath,
        min: u64,
        max: u64,
    ) -> Option<T> {
        let text = value?.text();
        let Ok(number) = text.parse::<u64>() else {
            let message = match text.parse::<i64>() {
                Ok(negative) => format!("must be at least {min}, got {negative}"),
                Err(_) => format!(
                    "invalid number \"{text}\": expected a whole number such as {}",
                    min.max(1) * 10
                ),
            };
            self.problems.push(path, message);
            return None;
        };
        let message = if number < min {
            format!("must be at least {min}, got {number}")
        } else if number > max {
            format!("must be at most {max}, got {number}")
        } else {
            return T::try_from(number).ok();
        };
        self.problems.push(path, message);
        None
    }

    /// A fraction (`10%` or `0.1`) in `range`, or `default` when absent or invalid.
    fn fraction(
        &mut self,
        value: Option<&Scalar>,
        path: &KeyPath,
        range: FractionRange,
        default: f64,
    ) -> f64 {
        self.optional_fraction(value, path, range)
            .unwrap_or(default)
    }

    /// A fraction (`10%` or `0.1`) in `range`, or `None` when absent or invalid.
    fn optional_fraction(
        &mut self,
        value: Option<&Scalar>,
        path: &KeyPath,
        range: FractionRange,
    ) -> Option<f64> {
        let text = value?.text();
        let fraction = match parse_fraction(text) {
            Ok(fraction) => fraction,
            Err(message) => {
                self.problems.push(path, message);
                return None;
            }
        };
        let (fits, expected) = match range {
            FractionRange::AboveZeroUpToOne => (
                fraction > 0.0 && fraction <= 1.0,
                "more than 0 and at most 1 (100%)",
            ),
            FractionRange::ZeroToOne => (
                (0.0..=1.0).contains(&fraction),
                "between 0 and 1 (0% to 100%)",
            ),
            FractionRange::StrictlyBetween => (
                fraction > 0.0 && fraction < 1.0,
                "strictly between 0 and 1 (0% and 100%), e.g. 99.9%",
            ),
        };
        if !fits {
            self.problems
                .push(path, format!("must be {expected}, got {text}"));
            return None;
        }
        Some(fraction)
    }

    /// A positive size (`4MiB`), or `default` when absent or invalid.
    fn size(&mut self, value: Option<&Scalar>, path: &KeyPath, default: u64) -> u64 {
        let Some(value) = value else {
            return default;
        };
        match parse_size(value.text()) {
            Ok(0) => self
                .problems
                .push(path, "must be greater than zero, e.g. 4MiB"),
            Ok(bytes) => return bytes,
            Err(message) => self.problems.push(path, message),
        }
        default
    }

    /// `true` or `false`, or `default` when absent or invalid.
    fn boolean(&mut self, value: Option<&Scalar>, path: &KeyPath, default: bool) -> bool {
        let Some(value) = value else {
            return default;
        };
        match bool::from_str(value.text()) {
            Ok(flag) => flag,
            Err(_) => {
                let message = format!("invalid boolean \"{}\": use true or false", value.text());
                self.problems.push(path, message);
                default
            }
        }
    }

    /// A finite, non-negative number (prices), or `None` when absent or invalid.
    fn non_negative_number(&mut self, value: Option<&Scalar>, path: &KeyPath) -> Option<f64> {
        let text = value?.text();
        match text.parse::<f64>() {
            Ok(number) if number.is_finite() && number >= 0.0 => Some(number),
            _ => {
                let message = format!(
                    "invalid number \"{text}\": expected a number of at least 0, such as 2.5"
                );
                self.problems.push(path, message);
                None
            }
        }
    }

    fn warn(&mut self, warning: String) {
        self.warnings.push(warning);
    }
}
