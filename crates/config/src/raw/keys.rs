//! [`known_keys`]: every key path the `Raw*` structs accept, read from
//! serde's own field lists, so documentation can be checked against the
//! schema instead of a second list that drifts.

use serde::de::value::{Error, StrDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess};
use serde::de::{Deserializer, Visitor};

use super::sections::{
    RawCache, RawDatabase, RawIdempotency, RawJobs, RawModel, RawProvider, RawRedis, RawServer,
    RawSlo, RawTelemetry, RawTenant, RawWebhooks,
};
use super::SECTIONS;

/// Every key path a configuration file may hold, sections first, then each
/// section's keys depth first in declaration order: `server.listen`,
/// `providers.<name>.timeouts.connect`, `models.<name>.targets[].price.input`.
/// `<name>` stands for any provider or model name and `[]` for any list item.
pub fn known_keys() -> Vec<String> {
    let mut keys: Vec<String> = SECTIONS.iter().map(|&section| section.to_owned()).collect();
    walk::<RawServer>("server", &mut keys);
    walk::<RawDatabase>("database", &mut keys);
    walk::<RawTenant>("tenants[]", &mut keys);
    walk::<RawProvider>("providers.<name>", &mut keys);
    walk::<RawModel>("models.<name>", &mut keys);
    walk::<RawCache>("cache", &mut keys);
    walk::<RawJobs>("jobs", &mut keys);
    walk::<RawWebhooks>("webhooks", &mut keys);
    walk::<RawIdempotency>("idempotency", &mut keys);
    walk::<RawSlo>("slos[]", &mut keys);
    walk::<RawTelemetry>("telemetry", &mut keys);
    walk::<RawRedis>("redis", &mut keys);
    keys
}

/// Records the keys of `T`, found at `path`, by deserializing it from a
/// [`Walker`]: each struct hands the walker its field list.
fn walk<T: DeserializeOwned>(path: &str, keys: &mut Vec<String>) {
    // Every field is optional, so the walk always builds a `T`; a failure
    // would only mean fewer keys, which the documentation check reports.
    let _ = T::deserialize(Walker { path, keys });
}

/// A deserializer that produces no data: it presents every field of every
/// struct once, records its path, and walks into its value.
struct Walker<'a> {
    path: &'a str,
    keys: &'a mut Vec<String>,
}

/// The fields of one struct, as a map whose values are walkers.
struct Fields<'a> {
    path: &'a str,
    fields: std::slice::Iter<'static, &'static str>,
    current: String,
    keys: &'a mut Vec<String>,
}

/// One item of a list, walked at `path[]`.
struct OneItem<'a> {
    path: String,
    keys: Option<&'a mut Vec<String>>,
}

/// The entries of a mapping of free names (`headers`): none to walk.
struct NoEntries;

// === impl Walker ===

impl<'de> Deserializer<'de> for Walker<'_> {
    type Error = Error;

    /// A leaf (a scalar or a list of them): nothing below it.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(OneItem {
            path: format!("{}[]", self.path),
            keys: Some(self.keys),
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(NoEntries)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Fields {
            path: self.path,
            fields: fields.iter(),
            current: String::new(),
            keys: self.keys,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct tuple tuple_struct
        enum identifier ignored_any
    }
}

// === impl Fields ===

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(&field) = self.fields.next() else {
            return Ok(None);
        };
        self.current = format!("{}.{field}", self.path);
        self.keys.push(self.current.clone());
        let name: StrDeserializer<'_, Error> = field.into_deserializer();
        seed.deserialize(name).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(Walker {
            path: &self.current,
            keys: self.keys,
        })
    }
}

// === impl OneItem ===

impl<'de> SeqAccess<'de> for OneItem<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(keys) = self.keys.take() else {
            return Ok(None);
        };
        let item = Walker {
            path: &self.path,
            keys,
        };
        seed.deserialize(item).map(Some)
    }
}

// === impl NoEntries ===

impl<'de> MapAccess<'de> for NoEntries {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        _seed: K,
    ) -> Result<Option<K::Value>, Error> {
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, _seed: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("a mapping of names has no fixed keys"))
    }
}

#[cfg(test)]
mod tests {
    use super::known_keys;

    #[test]
    fn keys_are_read_from_every_nested_struct_list_item_and_named_entry() {
        let keys = known_keys();
        for expected in [
            "server",
            "server.listen",
            "tenants[].limits.max_queued_jobs",
            "providers.<name>.headers",
            "providers.<name>.timeouts.first_token",
            "models.<name>.targets[].price.cached_input",
            "models.<name>.hedge.after",
            "jobs.retry.max_delay",
            "slos[].window",
            "telemetry.otlp_endpoint",
        ] {
            assert!(
                keys.iter().any(|key| key == expected),
                "{expected} not in {keys:?}"
            );
        }
        assert!(!keys
            .iter()
            .any(|key| key.starts_with("providers.<name>.headers.")));
    }
}
