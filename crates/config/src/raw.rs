//! Phase two: the expanded YAML tree deserialized into `Raw*` structs.
//!
//! Each section, each provider, each model, each tenant and each SLO is
//! deserialized on its own through `serde_path_to_error`, so an unknown key
//! in one does not hide the problems in the others; an unknown key is also
//! recorded and removed before its entry is read again, so it does not hide
//! the entry's other problems either. Leaves are [`Scalar`]s
//! (any YAML scalar, kept as text): their values are checked by
//! `validate`, which reports every bad value instead of serde's first one
//! and also accepts values produced by `${VAR}` (always strings).

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::error::{KeyPath, Problems};
use crate::interpolate::key_label;

mod keys;
mod sections;
mod shapes;

pub use keys::known_keys;

pub(crate) use sections::{
    RawAffinity, RawBreaker, RawCache, RawCors, RawDatabase, RawHealthCheck, RawHedge,
    RawIdempotency, RawJobs, RawMaxConcurrent, RawModel, RawModelCache, RawOnFailure, RawPrice,
    RawProvider, RawRedis, RawRetry, RawServer, RawSlo, RawTarget, RawTelemetry, RawTenant,
    RawTimeouts, RawWebhooks,
};
pub(crate) use shapes::{OrderedMap, Scalar, ScalarList};

/// The top-level keys, in the order error messages list them.
const SECTIONS: [&str; 12] = [
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
    "redis",
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
    pub(crate) redis: Option<RawRedis>,
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
            "redis" => self.redis = deserialize_at(section, &path, problems),
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

/// Unknown keys recorded in one entry before the rest of it is given up:
/// each one costs another pass over the entry.
const MAX_UNKNOWN_KEYS: usize = 64;

/// Deserializes `value` (found at `path`) into `T`; `None` (and a problem)
/// on failure. A null value is an absent section.
///
/// An unknown key is recorded, removed and the entry read again, so the
/// entry's other keys still reach `validate` and their problems are
/// reported beside it.
fn deserialize_at<T: DeserializeOwned>(
    mut value: Value,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<T> {
    if value.is_null() {
        return None;
    }
    for _ in 0..=MAX_UNKNOWN_KEYS {
        let error = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(parsed) => return Some(parsed),
            Err(error) => error,
        };
        let serde_message = error.inner().to_string();
        let Some(message) = unknown_field_message(&serde_message) else {
            problems.push(&path.join(error.path()), serde_message);
            return None;
        };
        problems.push(&path.join(error.path()), message);
        if !remove_key(&mut value, error.path()) {
            return None;
        }
    }
    None
}

/// Removes the key `path` ends with from `value`; `false` when the path
/// does not lead to a key of a mapping.
fn remove_key(value: &mut Value, path: &serde_path_to_error::Path) -> bool {
    let segments: Vec<_> = path.iter().collect();
    let Some((serde_path_to_error::Segment::Map { key }, parents)) = segments.split_last() else {
        return false;
    };
    let mut current = value;
    for segment in parents {
        let child = match segment {
            serde_path_to_error::Segment::Map { key } => entry_mut(current, key),
            serde_path_to_error::Segment::Seq { index } => current.get_mut(*index),
            _ => None,
        };
        let Some(child) = child else {
            return false;
        };
        current = child;
    }
    let Value::Mapping(entries) = current else {
        return false;
    };
    let before = entries.len();
    entries.retain(|entry_key, _| key_label(entry_key) != *key);
    entries.len() < before
}

/// The value of the mapping entry whose key reads `key`.
fn entry_mut<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let Value::Mapping(entries) = value else {
        return None;
    };
    entries
        .iter_mut()
        .find(|(entry_key, _)| key_label(entry_key) == key)
        .map(|(_, entry)| entry)
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

/// Serde's `unknown field` message rewritten into ours; `None` for any
/// other message.
fn unknown_field_message(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, expected) = rest.split_once('`')?;
    let expected: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    Some(if expected.is_empty() {
        format!("unknown key \"{key}\"")
    } else {
        unknown_key(key, &expected)
    })
}

#[cfg(test)]
mod tests {
    use super::unknown_field_message;

    #[test]
    fn serde_unknown_field_messages_become_unknown_key_messages() {
        let message = |serde: &str| unknown_field_message(serde);
        assert_eq!(
            message("unknown field `timeout`, expected one of `kind`, `base_url`").as_deref(),
            Some("unknown key \"timeout\" (expected one of: kind, base_url)")
        );
        assert_eq!(
            message("unknown field `x`, expected `a` or `b`").as_deref(),
            Some("unknown key \"x\" (expected one of: a, b)")
        );
        assert_eq!(
            message("unknown field `x`, there are no fields").as_deref(),
            Some("unknown key \"x\"")
        );
        assert_eq!(message("other"), None);
    }
}
