//! Phase two: the expanded YAML tree deserialized into `Raw*` structs.
//!
//! Each section, each provider, each model, each tenant and each SLO is
//! deserialized on its own through `serde_path_to_error`, so an unknown key
//! in one does not hide the problems in the others. Leaves are [`Scalar`]s
//! (any YAML scalar, kept as text): their values are checked by
//! `validate`, which reports every bad value instead of serde's first one
//! and also accepts values produced by `${VAR}` (always strings).

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::error::{KeyPath, Problems};
use crate::interpolate::key_label;

mod sections;
mod shapes;

pub(crate) use sections::{
    RawBreaker, RawCache, RawDatabase, RawHedge, RawIdempotency, RawJobs, RawModel, RawModelCache,
    RawPrice, RawProvider, RawRetry, RawServer, RawSlo, RawTarget, RawTelemetry, RawTenant,
    RawTimeouts, RawWebhooks,
};
pub(crate) use shapes::{OrderedMap, Scalar, ScalarList};

/// The top-level keys, in the order error messages list them.
const SECTIONS: [&str; 11] = [
    "server",
    "database",
    "tenants",
    "providers",
    "models",
    "cache",
    "jobs",
    "webhooks",
    "idempotency",
    "slos",
    "telemetry",
];

/// The whole file after phase two. `None` entries failed to deserialize and
/// their problems are already recorded; their names still count, so that
/// references to them do not produce a second, misleading problem.
#[derive(Debug, Default)]
pub(crate) struct RawConfig {
    pub(crate) server: Option<RawServer>,
    pub(crate) database: Option<RawDatabase>,
    pub(crate) tenants: Vec<Option<RawTenant>>,
    pub(crate) providers: Vec<(String, Option<RawProvider>)>,
    pub(crate) models: Vec<(String, Option<RawModel>)>,
    pub(crate) cache: Option<RawCache>,
    pub(crate) jobs: Option<RawJobs>,
    pub(crate) webhooks: Option<RawWebhooks>,
    pub(crate) idempotency: Option<RawIdempotency>,
    pub(crate) slos: Vec<Option<RawSlo>>,
    pub(crate) telemetry: Option<RawTelemetry>,
}

// === impl RawConfig ===

impl RawConfig {
    /// Deserializes the expanded tree, recording every problem found.
    pub(crate) fn from_value(value: Value, problems: &mut Problems) -> Self {
        let mut raw = Self::default();
        let entries = match value {
            Value::Null => return raw,
            Value::Mapping(entries) => entries,
            _ => {
                problems.push(
                    &KeyPath::root(),
                    "the file must be a mapping of sections (server, providers, models, ...)",
                );
                // Saying that providers and models are missing would only repeat it.
                problems.poison(&KeyPath::root().key("providers"));
                problems.poison(&KeyPath::root().key("models"));
                return raw;
            }
        };
        for (key, section) in entries {
            let label = key_label(&key);
            raw.set_section(&label, section, problems);
        }
        raw
    }

    fn set_section(&mut self, label: &str, section: Value, problems: &mut Problems) {
        let path = KeyPath::root().key(label);
        match label {
            "server" => self.server = deserialize_at(section, &path, problems),
            "database" => self.database = deserialize_at(section, &path, problems),
            "tenants" => self.tenants = list_entries(section, &path, problems),
            "providers" => self.providers = named_entries(section, &path, problems),
            "models" => self.models = named_entries(section, &path, problems),
            "cache" => self.cache = deserialize_at(section, &path, problems),
            "jobs" => self.jobs = deserialize_at(section, &path, problems),
            "webhooks" => self.webhooks = deserialize_at(section, &path, problems),
            "idempotency" => self.idempotency = deserialize_at(section, &path, problems),
            "slos" => self.slos = list_entries(section, &path, problems),
            "telemetry" => self.telemetry = deserialize_at(section, &path, problems),
            _ => problems.push(&path, unknown_key(label, &SECTIONS)),
        }
    }
}

/// `unknown key "x" (expected one of: a, b)`.
pub(crate) fn unknown_key(key: &str, expected: &[&str]) -> String {
    format!(
        "unknown key \"{key}\" (expected one of: {})",
        expected.join(", ")
    )
}

/// Deserializes `value` (found at `path`) into `T`; `None` (and a problem)
/// on failure. A null value is an absent section.
fn deserialize_at<T: DeserializeOwned>(
    value: Value,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<T> {
    if value.is_null() {
        return None;
    }
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            let message = humanize_serde_message(&error.inner().to_string());
            problems.push(&path.join(error.path()), message);
            None
        }
    }
}

/// A mapping of name to settings (`providers:`, `models:`), in file order.
fn named_entries<T: DeserializeOwned>(
    value: Value,
    path: &KeyPath,
    problems: &mut Problems,
) -> Vec<(String, Option<T>)> {
    match value {
        Value::Null => Vec::new(),
        Value::Mapping(entries) => entries
            .into_iter()
            .map(|(key, entry)| {
                let name = key_label(&key);
                let entry_path = path.key(&name);
                let parsed = deserialize_at(entry, &entry_path, problems);
                (name, parsed)
            })
            .collect(),
        _ => {
            problems.push_and_poison(path, "expected a mapping of names to settings");
            Vec::new()
        }
    }
}

/// A list of entries (`tenants:`, `slos:`).
fn list_entries<T: DeserializeOwned>(
    value: Value,
    path: &KeyPath,
    problems: &mut Problems,
) -> Vec<Option<T>> {
    match value {
        Value::Null => Vec::new(),
        Value::Sequence(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| deserialize_at(item, &path.index(index), problems))
            .collect(),
        _ => {
            problems.push_and_poison(path, "expected a list");
            Vec::new()
        }
    }
}

/// Rewrites serde's `unknown field` message into ours; other messages pass.
fn humanize_serde_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_owned();
    };
    let Some((key, expected)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let expected: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    if expected.is_empty() {
        format!("unknown key \"{key}\"")
    } else {
        unknown_key(key, &expected)
    }
}

#[cfg(test)]
mod tests {
    use super::humanize_serde_message;

    #[test]
    fn serde_unknown_field_messages_become_unknown_key_messages() {
        assert_eq!(
            humanize_serde_message("unknown field `timeout`, expected one of `kind`, `base_url`"),
            "unknown key \"timeout\" (expected one of: kind, base_url)"
        );
        assert_eq!(
            humanize_serde_message("unknown field `x`, expected `a` or `b`"),
            "unknown key \"x\" (expected one of: a, b)"
        );
        assert_eq!(
            humanize_serde_message("unknown field `x`, there are no fields"),
            "unknown key \"x\""
        );
        assert_eq!(humanize_serde_message("other"), "other");
    }
}
