//! Lenient leaf shapes: [`Scalar`] (any YAML scalar as text), [`ScalarList`]
//! (a list of scalars, or one scalar) and [`OrderedMap`] (a mapping in file
//! order).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Any YAML scalar (string, number, boolean, null) kept as text. Typed
/// parsing happens in `validate`, which reports every bad value with its
/// path. Null becomes the empty string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar(pub(crate) String);

/// A list of scalars; a single scalar is a list of one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ScalarList(pub(crate) Vec<Scalar>);

/// A mapping of string keys, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrderedMap<T>(pub(crate) Vec<(String, T)>);

struct ScalarVisitor;

struct ScalarListVisitor;

struct OrderedMapVisitor<T>(PhantomData<T>);

// === impl Scalar ===

impl Scalar {
    /// The text, trimmed of surrounding whitespace.
    pub(crate) fn text(&self) -> &str {
        self.0.trim()
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a single value (a string or a number)")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Scalar, E> {
        Ok(Scalar(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Scalar, E> {
        Ok(Scalar(value))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Scalar, E> {
        Ok(Scalar(value.to_string()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Scalar, E> {
        Ok(Scalar(value.to_string()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Scalar, E> {
        Ok(Scalar(value.to_string()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Scalar, E> {
        Ok(Scalar(value.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar(String::new()))
    }
}

// === impl ScalarList ===

impl<'de> Deserialize<'de> for ScalarList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarListVisitor)
    }
}

impl<'de> Visitor<'de> for ScalarListVisitor {
    type Value = ScalarList;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a list of values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<ScalarList, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = items.next_element::<Scalar>()? {
            list.push(item);
        }
        Ok(ScalarList(list))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<ScalarList, E> {
        ScalarVisitor
            .visit_str(value)
            .map(|item| ScalarList(vec![item]))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<ScalarList, E> {
        ScalarVisitor
            .visit_bool(value)
            .map(|item| ScalarList(vec![item]))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<ScalarList, E> {
        ScalarVisitor
            .visit_i64(value)
            .map(|item| ScalarList(vec![item]))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<ScalarList, E> {
        ScalarVisitor
            .visit_u64(value)
            .map(|item| ScalarList(vec![item]))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<ScalarList, E> {
        ScalarVisitor
            .visit_f64(value)
            .map(|item| ScalarList(vec![item]))
    }

    fn visit_unit<E: de::Error>(self) -> Result<ScalarList, E> {
        Ok(ScalarList::default())
    }
}

// === impl OrderedMap ===

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrderedMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderedMapVisitor(PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for OrderedMapVisitor<T> {
    type Value = OrderedMap<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a mapping of names to values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<OrderedMap<T>, A::Error> {
        let mut map = Vec::new();
        while let Some((key, value)) = entries.next_entry::<String, T>()? {
            map.push((key, value));
        }
        Ok(OrderedMap(map))
    }
}

// === impl RawMaxConcurrent ===

impl<'de> Deserialize<'de> for super::sections::RawMaxConcurrent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MaxConcurrentVisitor)
    }
}

/// A scalar as [`Scalar`], a mapping as the adaptive bounds.
struct MaxConcurrentVisitor;

impl<'de> Visitor<'de> for MaxConcurrentVisitor {
    type Value = super::sections::RawMaxConcurrent;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a whole number, adaptive, or a mapping with min and max")
    }

    fn visit_map<A: MapAccess<'de>>(self, entries: A) -> Result<Self::Value, A::Error> {
        let bounds = Deserialize::deserialize(de::value::MapAccessDeserializer::new(entries))?;
        Ok(super::sections::RawMaxConcurrent::Adaptive(bounds))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        ScalarVisitor.visit_str(value).map(Self::Value::Scalar)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        ScalarVisitor.visit_bool(value).map(Self::Value::Scalar)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        ScalarVisitor.visit_i64(value).map(Self::Value::Scalar)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        ScalarVisitor.visit_u64(value).map(Self::Value::Scalar)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        ScalarVisitor.visit_f64(value).map(Self::Value::Scalar)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        ScalarVisitor.visit_unit().map(Self::Value::Scalar)
    }
}
