//! A JSON object kept as its keys and the raw text of each value, in order.
//!
//! Keel forwards request bodies to OpenAI-compatible upstreams verbatim except
//! for `model`; tokenising the body into this shape costs far less than a
//! `serde_json::Value` tree and keeps unknown fields byte for byte.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A JSON object whose values are left unparsed.
#[derive(Debug, Default)]
pub struct RawObject {
    /// Keys a client sent are owned; keys Keel writes are static.
    fields: Vec<(Cow<'static, str>, Box<RawValue>)>,
}

// === impl RawObject ===

impl RawObject {
    /// An object of these fields, in order (written by Keel, so with no
    /// key twice).
    pub(crate) fn from_fields(fields: Vec<(Cow<'static, str>, Box<RawValue>)>) -> Self {
        Self { fields }
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(name, _)| name.as_ref() == key)
            .map(|(_, value)| value.as_ref())
    }

    /// The first key that appears more than once, if any. Parsers disagree
    /// on which of two values wins (the first here, often the last
    /// upstream), so a body with one is refused rather than read two ways.
    pub fn duplicate_key(&self) -> Option<&str> {
        // Most bodies have a few fields: compared pairwise, with nothing to
        // allocate; a long object is sorted instead, so no body is quadratic.
        const PAIRWISE: usize = 16;
        if self.fields.len() <= PAIRWISE {
            let names = || self.fields.iter().map(|(name, _)| name.as_ref());
            // The first in sorted order, as the sort below finds it.
            return names()
                .enumerate()
                .filter(|&(at, name)| names().skip(at + 1).any(|later| later == name))
                .map(|(_, name)| name)
                .min();
        }
        let mut names: Vec<&str> = self.fields.iter().map(|(name, _)| name.as_ref()).collect();
        names.sort_unstable();
        names
            .windows(2)
            .find(|pair| pair[0] == pair[1])
            .map(|pair| pair[0])
    }

    /// Every field as (name, raw JSON text), in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|(name, value)| (name.as_ref(), value.get()))
    }

    /// Parses the value of `key` as `T`; `None` when absent or `null`.
    pub fn parse<'a, T: Deserialize<'a>>(
        &'a self,
        key: &str,
    ) -> Option<Result<T, serde_json::Error>> {
        let raw = self.get(key)?;
        if raw.get() == "null" {
            return None;
        }
        Some(serde_json::from_str(raw.get()))
    }

    /// Writes the object back as JSON with `replacements` substituted (or added
    /// at the end when absent). Values are the raw JSON text to write.
    pub fn to_json_with(&self, replacements: &[(&str, &str)]) -> Vec<u8> {
        let capacity = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>()
            + 2;
        let mut out = Vec::with_capacity(capacity + 64);
        out.push(b'{');
        let mut first = true;
        let mut write_field = |out: &mut Vec<u8>, key: &str, value: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            write_json_string(out, key);
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        };
        for (key, value) in &self.fields {
            let replaced = replacements.iter().find(|(name, _)| *name == key.as_ref());
            write_field(
                &mut out,
                key,
                replaced.map_or(value.get(), |(_, text)| text),
            );
        }
        for (key, value) in replacements {
            if self.get(key).is_none() {
                write_field(&mut out, key, value);
            }
        }
        out.push(b'}');
        out
    }
}

/// Writes `text` as a JSON string, byte for byte as serde_json writes it.
/// Most keys and names need no escape (none of `"`, `\` or a control
/// character, the only ones serde escapes): they are copied between quotes,
/// without serde's serialiser.
pub fn write_json_string(out: &mut impl std::io::Write, text: &str) {
    // Keel writes JSON into memory, where a write cannot fail.
    if crate::json_scan::plain_run(text.as_bytes()) == text.len() {
        let _ = out
            .write_all(b"\"")
            .and_then(|()| out.write_all(text.as_bytes()))
            .and_then(|()| out.write_all(b"\""));
        return;
    }
    let _ = serde_json::to_writer(out, text);
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RawObjectVisitor)
    }
}

struct RawObjectVisitor;

impl<'de> Visitor<'de> for RawObjectVisitor {
    type Value = RawObject;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
            fields.push((Cow::Owned(key), value));
        }
        Ok(RawObject { fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl RawObject {
        /// The object of these `"key":value` fields, in order.
        fn from_str_fields(fields: &[String]) -> Result<Self, serde_json::Error> {
            serde_json::from_str(&format!("{{{}}}", fields.join(",")))
        }
    }

    #[test]
    fn round_trips_unknown_fields_verbatim_and_replaces_model() -> Result<(), serde_json::Error> {
        let text = r#"{"model":"a","x_unknown":{"deep":[1, 2.50,"é"]},"stream":true}"#;
        let object: RawObject = serde_json::from_str(text)?;
        let out = object.to_json_with(&[("model", "\"b\"")]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"model":"b","x_unknown":{"deep":[1, 2.50,"é"]},"stream":true}"#
        );
        Ok(())
    }

    #[test]
    fn strings_are_written_as_serde_writes_them() -> Result<(), serde_json::Error> {
        let texts = [
            "",
            "model",
            "gpt-4o-mini",
            "naïve café ☕",
            "a\"quote",
            "back\\slash",
            "line\nbreak",
            "\u{1}\u{1f}\u{7f}",
            "tab\tend",
            "</script>",
        ];
        for text in texts {
            let mut written = Vec::new();
            write_json_string(&mut written, text);
            assert_eq!(written, serde_json::to_vec(text)?, "{text:?}");
        }
        Ok(())
    }

    #[test]
    fn finds_a_repeated_key() -> Result<(), serde_json::Error> {
        let once: RawObject = serde_json::from_str(r#"{"a":1,"b":{"a":2}}"#)?;
        assert_eq!(once.duplicate_key(), None);
        let twice: RawObject = serde_json::from_str(r#"{"stream":false,"a":1,"stream":true}"#)?;
        assert_eq!(twice.duplicate_key(), Some("stream"));
        // Short objects are compared pairwise, long ones sorted: the same
        // key is named either way.
        for fields in [4, 16, 17, 40] {
            let mut text: Vec<String> = (0..fields).map(|n| format!("\"k{n:02}\":{n}")).collect();
            assert_eq!(RawObject::from_str_fields(&text)?.duplicate_key(), None);
            // k03 is repeated first, k02 comes first in order.
            text.insert(1, String::from("\"k03\":0"));
            text.push(String::from("\"k02\":0"));
            assert_eq!(
                RawObject::from_str_fields(&text)?.duplicate_key(),
                Some("k02"),
                "{fields} fields"
            );
        }
        Ok(())
    }

    #[test]
    fn appends_replacement_when_key_is_absent() -> Result<(), serde_json::Error> {
        let object: RawObject = serde_json::from_str(r#"{"a":1}"#)?;
        assert_eq!(object.to_json_with(&[("b", "2")]), br#"{"a":1,"b":2}"#);
        Ok(())
    }
}
