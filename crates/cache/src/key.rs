//! The cache key: which requests are "the same request".
//!
//! Every field of the body counts, unknown ones included, except the short
//! deny-list [`IGNORED_FIELDS`] of fields that change how an answer is
//! delivered or recorded, never what it says. An allow-list of "fields that
//! matter" is how other gateways served one `reasoning_effort`'s answer to
//! another; a deny-list fails safe: a new field makes a miss, never a wrong hit.
//!
//! The canonical form of a body is its JSON with object keys sorted at every
//! depth, numbers in one spelling (`1`, `1.0` and `1e0` are all `1`) and
//! strings as their values (escapes decoded and re-encoded one way). The key
//! is SHA-256 over a version tag, the endpoint, the public model, the scope
//! (tenant or shared) and the canonical body, each length-prefixed so no two
//! different inputs run together into the same bytes.

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Top-level fields that never change an answer's content: how it is
/// delivered (`stream`, `stream_options`), or what the upstream records
/// about it (`user`, `metadata`, `store`, `service_tier`).
pub const IGNORED_FIELDS: [&str; 6] = [
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
];

/// Bumped whenever the canonical form or the hashed layout changes, so old
/// and new keys never meet (matters once entries outlive a process, in a
/// shared level).
const KEY_VERSION: &[u8] = b"keel-cache-v1";

/// A cache key: 32 bytes of SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

/// Who may share an entry.
#[derive(Clone, Copy, Debug)]
pub enum KeyScope<'a> {
    /// Only the named tenant.
    Tenant(&'a str),
    /// Every tenant (`cache.shared: true`).
    Shared,
}

// === impl Key ===

impl Key {
    /// The key of a request to `endpoint` for the public `model`, whose
    /// body's top-level fields are `fields` as (name, raw JSON text).
    pub fn new<'f>(
        endpoint: &str,
        model: &str,
        scope: KeyScope<'_>,
        fields: impl IntoIterator<Item = (&'f str, &'f str)>,
    ) -> Result<Self, serde_json::Error> {
        let body = canonical_body(fields)?;
        let mut hasher = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        part(KEY_VERSION);
        part(endpoint.as_bytes());
        part(model.as_bytes());
        match scope {
            KeyScope::Tenant(tenant) => {
                part(b"tenant");
                part(tenant.as_bytes());
            }
            KeyScope::Shared => part(b"shared"),
        }
        part(body.as_bytes());
        Ok(Self(hasher.finalize().into()))
    }

    /// The key as 64 hex digits (for logs and a shared level's key names).
    pub fn to_hex(&self) -> String {
        let mut text = String::with_capacity(64);
        for byte in self.0 {
            let _ = write!(text, "{byte:02x}");
        }
        text
    }
}

/// The canonical form of a body given as its top-level fields, the ignored
/// ones left out. Fields are sorted by name; a name given twice keeps both
/// values in their order (a body with duplicate keys is refused before it
/// gets here, but the key stays deterministic either way).
pub fn canonical_body<'f>(
    fields: impl IntoIterator<Item = (&'f str, &'f str)>,
) -> Result<String, serde_json::Error> {
    let mut kept: Vec<(&str, Value)> = Vec::new();
    for (name, raw) in fields {
        if IGNORED_FIELDS.contains(&name) {
            continue;
        }
        kept.push((name, serde_json::from_str(raw)?));
    }
    kept.sort_by_key(|(name, _)| *name);
    let mut out = String::with_capacity(256);
    out.push('{');
    for (index, (name, value)) in kept.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_string(&mut out, name);
        out.push(':');
        write_value(&mut out, value);
    }
    out.push('}');
    Ok(out)
}

/// Writes `value` canonically. Recursion is bounded by serde_json's own
/// nesting limit (128), enforced when the value was parsed.
fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => write_number(out, number),
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(name, _)| *name);
            out.push('{');
            for (index, (name, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// One spelling per number: integers (and floats with no fraction that fit
/// an i64) as integers, every other float in its shortest round-trip form.
fn write_number(out: &mut String, number: &serde_json::Number) {
    if let Some(integer) = number.as_i64() {
        let _ = write!(out, "{integer}");
    } else if let Some(integer) = number.as_u64() {
        let _ = write!(out, "{integer}");
    } else if let Some(float) = number.as_f64() {
        // 2^63 as f64: every integral float below it in magnitude is an i64.
        const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;
        if float.fract() == 0.0 && float.abs() < I64_BOUND {
            let _ = write!(out, "{}", float as i64);
        } else {
            // serde_json writes floats in their shortest round-trip form.
            out.push_str(
                &serde_json::Number::from_f64(float)
                    .map_or_else(|| String::from("null"), |number| number.to_string()),
            );
        }
    }
}

fn write_string(out: &mut String, text: &str) {
    // Serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields = Vec<(String, String)>;

    fn fields(body: &str) -> Fields {
        let map: serde_json::Map<String, Value> = serde_json::from_str(body).unwrap_or_default();
        map.into_iter()
            .map(|(name, value)| (name, value.to_string()))
            .collect()
    }

    fn key_of(body: &str) -> Result<Key, serde_json::Error> {
        let fields = fields(body);
        Key::new(
            "chat",
            "m",
            KeyScope::Tenant("t"),
            fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    fn canonical(body: &str) -> Result<String, serde_json::Error> {
        let fields = fields(body);
        canonical_body(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    #[test]
    fn keys_are_sorted_at_every_depth_and_numbers_have_one_spelling(
    ) -> Result<(), serde_json::Error> {
        assert_eq!(
            canonical(r#"{"z":1.0,"a":{"y":[1e0,2.50,-0.0],"b":"\u0041"},"stream":true}"#)?,
            r#"{"a":{"b":"A","y":[1,2.5,0]},"z":1}"#
        );
        assert_eq!(
            canonical(r#"{"big":1e300,"tiny":0.1,"neg":-3,"huge":18446744073709551615}"#)?,
            r#"{"big":1e+300,"huge":18446744073709551615,"neg":-3,"tiny":0.1}"#
        );
        Ok(())
    }

    #[test]
    fn ignored_fields_do_not_change_the_key_and_every_other_field_does(
    ) -> Result<(), serde_json::Error> {
        let base = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let same = r#"{"messages":[{"content":"hi","role":"user"}],"model":"m","stream":true,"stream_options":{"include_usage":true},"user":"u","metadata":{"a":1},"store":true,"service_tier":"flex"}"#;
        assert_eq!(key_of(base)?, key_of(same)?);
        for changed in [
            r#"{"model":"m","messages":[{"role":"user","content":"hi!"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"low"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"x_unknown":null}"#,
        ] {
            assert_ne!(key_of(base)?, key_of(changed)?, "{changed}");
        }
        Ok(())
    }

    #[test]
    fn endpoint_model_and_scope_are_part_of_the_key() -> Result<(), serde_json::Error> {
        let body = [("messages", "[]")];
        let key = |endpoint, model, scope| Key::new(endpoint, model, scope, body);
        let base = key("chat", "m", KeyScope::Tenant("a"))?;
        assert_ne!(base, key("messages", "m", KeyScope::Tenant("a"))?);
        assert_ne!(base, key("chat", "n", KeyScope::Tenant("a"))?);
        assert_ne!(base, key("chat", "m", KeyScope::Tenant("b"))?);
        assert_ne!(base, key("chat", "m", KeyScope::Shared)?);
        // Length prefixes: moving a byte from one part to the next changes the key.
        assert_ne!(
            key("chat", "ab", KeyScope::Tenant("c"))?,
            key("chat", "a", KeyScope::Tenant("bc"))?
        );
        assert_eq!(base.to_hex().len(), 64);
        Ok(())
    }

    /// A random JSON value of bounded depth.
    fn random_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
        let leaf = depth == 0 || rng.u8(..4) == 0;
        if leaf {
            return match rng.u8(..6) {
                0 => Value::Null,
                1 => Value::Bool(rng.bool()),
                2 => Value::from(rng.i64(-1000..1000)),
                3 => Value::from(f64::from(rng.i32(-1000..1000)) / 8.0),
                4 => Value::from(format!("s{}", rng.u16(..))),
                _ => Value::from(rng.u64(..)),
            };
        }
        if rng.bool() {
            Value::Array(
                (0..rng.usize(..4))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            )
        } else {
            Value::Object(
                (0..rng.usize(..4))
                    .map(|i| (format!("k{i}{}", rng.u8(..3)), random_value(rng, depth - 1)))
                    .collect(),
            )
        }
    }

    /// The value with object keys in reverse order and integral floats
    /// respelled, which must not change its canonical form.
    fn respelled(value: &Value) -> String {
        match value {
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(respelled).collect();
                format!("[{}]", items.join(" , "))
            }
            Value::Object(map) => {
                let entries: Vec<String> = map
                    .iter()
                    .rev()
                    .map(|(k, v)| format!("{} : {}", Value::from(k.as_str()), respelled(v)))
                    .collect();
                format!("{{{}}}", entries.join(","))
            }
            Value::Number(number) if number.as_i64().is_some_and(|n| n.abs() < 1 << 40) => {
                format!("{}.0", number)
            }
            other => other.to_string(),
        }
    }

    /// Flips one leaf somewhere in `value`; false when it has no leaf.
    fn mutate_one(value: &mut Value, rng: &mut fastrand::Rng) -> bool {
        match value {
            Value::Array(items) if !items.is_empty() => {
                let index = rng.usize(..items.len());
                mutate_one(&mut items[index], rng)
            }
            Value::Object(map) if !map.is_empty() => {
                let index = rng.usize(..map.len());
                map.values_mut()
                    .nth(index)
                    .is_some_and(|item| mutate_one(item, rng))
            }
            Value::Array(_) | Value::Object(_) => false,
            Value::Null => {
                *value = Value::Bool(false);
                true
            }
            Value::Bool(flag) => {
                *flag = !*flag;
                true
            }
            Value::Number(number) => {
                let next = number.as_f64().unwrap_or(0.0) + 1.5;
                *value = Value::from(next);
                true
            }
            Value::String(text) => {
                text.push('x');
                true
            }
        }
    }

    /// For random requests: canonicalisation is idempotent and blind to key
    /// order and number spelling, and any change of one field changes the key.
    #[test]
    fn canonical_form_property() -> Result<(), serde_json::Error> {
        for seed in 0..2_000 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut body = serde_json::Map::new();
            for index in 0..rng.usize(1..6) {
                body.insert(format!("f{index}"), random_value(&mut rng, 4));
            }
            let body = Value::Object(body);
            let text = body.to_string();
            let once = canonical(&text)?;
            assert_eq!(canonical(&once)?, once, "seed {seed}: not idempotent");
            assert_eq!(
                canonical(&respelled(&body))?,
                once,
                "seed {seed}: key order or number spelling changed the form"
            );
            let mut changed = body.clone();
            let Value::Object(map) = &mut changed else {
                continue;
            };
            let field = rng.usize(..map.len());
            let Some(value) = map.values_mut().nth(field) else {
                continue;
            };
            if !mutate_one(value, &mut rng) {
                *value = Value::from("replaced");
            }
            assert_ne!(
                key_of(&changed.to_string())?,
                key_of(&text)?,
                "seed {seed}: a changed field kept the key"
            );
        }
        Ok(())
    }
}
