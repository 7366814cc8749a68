//! The deterministic content of a mock reply, shared by both wire formats.
//!
//! Text replies are "Hello from the keel mock (model X). " followed by filler
//! words, one word plus a trailing space per content chunk. Tool-call replies
//! call one tool with arguments derived from its JSON schema, and split the
//! arguments string on char boundaries into stream fragments.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// Filler words after the greeting; two are non-ASCII so clients exercise UTF-8.
const FILLER: [&str; 16] = [
    "The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "a", "naïve",
    "café", "serves", "fresh", "tea.",
];

/// A tool the request offered, in either wire format.
#[derive(Debug, Clone)]
pub(crate) struct ToolDef {
    /// The function name.
    pub(crate) name: String,
    /// The JSON schema of its arguments (`parameters` or `input_schema`).
    pub(crate) schema: Option<Value>,
}

/// The request's tool choice, reduced to what the mock acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolChoice {
    /// Never call a tool.
    None,
    /// Call the first tool (`auto`, `required`, `any`, or no choice given).
    First,
    /// Call the named tool.
    Named(String),
}

/// One tool call the mock makes.
#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    /// The call id (`call_...` or `toolu_...`).
    pub(crate) id: String,
    /// The tool's name.
    pub(crate) name: String,
    /// The arguments as a JSON value.
    pub(crate) input: Value,
    /// The arguments serialized, split into stream fragments on char boundaries.
    pub(crate) fragments: Vec<String>,
}

// === impl ToolCall ===

impl ToolCall {
    /// Calls `tool` with schema-derived arguments split into about `pieces` fragments.
    pub(crate) fn new(tool: &ToolDef, id: String, pieces: u32) -> Self {
        let input = arguments_for(tool.schema.as_ref());
        let arguments = input.to_string();
        Self {
            id,
            name: tool.name.clone(),
            fragments: split_chars(&arguments, pieces),
            input,
        }
    }

    /// The whole arguments string.
    pub(crate) fn arguments(&self) -> String {
        self.fragments.concat()
    }
}

/// The text content chunks of a reply: `count` words, each with a trailing space.
pub(crate) fn text_chunks(model: &str, count: u32) -> Vec<String> {
    let greeting = format!("Hello from the keel mock (model {model}).");
    greeting
        .split_whitespace()
        .chain(FILLER.iter().copied().cycle())
        .take(count as usize)
        .map(|word| format!("{word} "))
        .collect()
}

/// The tool to call, if any: the named one, else the first.
pub(crate) fn pick_tool<'a>(tools: &'a [ToolDef], choice: &ToolChoice) -> Option<&'a ToolDef> {
    match choice {
        ToolChoice::None => None,
        ToolChoice::First => tools.first(),
        ToolChoice::Named(name) => tools
            .iter()
            .find(|tool| tool.name == *name)
            .or(tools.first()),
    }
}

/// Deterministic arguments for a JSON schema: one value per declared property.
pub(crate) fn arguments_for(schema: Option<&Value>) -> Value {
    let properties = schema
        .and_then(|schema| schema.get("properties"))
        .and_then(Value::as_object);
    let mut arguments = Map::new();
    for (name, property) in properties.into_iter().flatten() {
        arguments.insert(name.clone(), value_for(name, property));
    }
    Value::Object(arguments)
}

/// Splits `text` into `pieces` parts of near-equal char counts (fewer when
/// `text` is shorter), never inside a UTF-8 sequence.
pub(crate) fn split_chars(text: &str, pieces: u32) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let pieces = (pieces as usize).clamp(1, chars.len().max(1));
    let mut parts = Vec::with_capacity(pieces);
    for index in 0..pieces {
        let start = chars.len() * index / pieces;
        let end = chars.len() * (index + 1) / pieces;
        parts.push(chars[start..end].iter().collect());
    }
    parts
}

/// Counts the chars of a message `content`: a string, or the `text` of each part.
pub(crate) fn content_chars(content: &Value) -> usize {
    match content {
        Value::String(text) => text.chars().count(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(|text| text.chars().count())
            .sum(),
        _ => 0,
    }
}

/// The deterministic prompt-token estimate: a quarter of the chars, at least 1.
pub(crate) fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64 / 4).max(1)
}

/// A random id: `prefix` and `len` ASCII letters and digits.
pub(crate) fn random_id(prefix: &str, len: usize) -> String {
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(len));
    id
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn value_for(name: &str, property: &Value) -> Value {
    if let Some(first) = property
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|values| values.first())
    {
        return first.clone();
    }
    let kind = match property.get("type") {
        // A type list such as ["string", "null"] takes its first entry.
        Some(Value::Array(kinds)) => kinds.first().and_then(Value::as_str),
        Some(kind) => kind.as_str(),
        None => None,
    };
    match kind {
        Some("integer") => Value::from(42),
        Some("number") => Value::from(21.5),
        Some("boolean") => Value::Bool(true),
        Some("array") => Value::Array(Vec::new()),
        Some("object") => Value::Object(Map::new()),
        Some("null") => Value::Null,
        _ if name.contains("location") || name.contains("city") => Value::from("Paris"),
        _ => Value::from("café ☕"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_has_exactly_count_chunks_each_one_word_and_a_space() {
        let chunks = text_chunks("gpt-x", 20);
        assert_eq!(chunks.len(), 20);
        assert!(chunks
            .iter()
            .all(|chunk| chunk.ends_with(' ') && chunk.trim().split(' ').count() == 1));
        assert!(chunks
            .concat()
            .starts_with("Hello from the keel mock (model gpt-x). The "));
        assert_eq!(text_chunks("m", 3).concat(), "Hello from the ");
        assert!(text_chunks("m", 0).is_empty());
    }

    #[test]
    fn arguments_follow_the_schema() {
        let schema = json!({"type": "object", "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"}
        }});
        let arguments = arguments_for(Some(&schema));
        assert_eq!(
            arguments,
            json!({"location": "Paris", "unit": "celsius", "days": 42})
        );
        assert_eq!(arguments_for(None), json!({}));
    }

    #[test]
    fn split_keeps_utf8_and_concatenates_back() {
        let text = r#"{"note":"café ☕ naïve"}"#;
        for pieces in [1, 2, 5, 20, 1000] {
            let parts = split_chars(text, pieces);
            assert_eq!(parts.concat(), text);
            assert_eq!(parts.len(), (pieces as usize).min(text.chars().count()));
        }
        assert_eq!(split_chars("", 5), [""]);
    }

    #[test]
    fn named_tool_choice_picks_that_tool() {
        let tools = [
            ToolDef {
                name: "a".into(),
                schema: None,
            },
            ToolDef {
                name: "b".into(),
                schema: None,
            },
        ];
        assert_eq!(
            pick_tool(&tools, &ToolChoice::Named("b".into())).map(|t| t.name.as_str()),
            Some("b")
        );
        assert_eq!(
            pick_tool(&tools, &ToolChoice::First).map(|t| t.name.as_str()),
            Some("a")
        );
        assert!(pick_tool(&tools, &ToolChoice::None).is_none());
    }

    #[test]
    fn estimate_is_a_quarter_of_chars_and_at_least_one() {
        assert_eq!(estimate_tokens(0), 1);
        assert_eq!(estimate_tokens(41), 10);
        assert_eq!(
            content_chars(&json!([{"type": "text", "text": "abcd"}, {"type": "image_url"}])),
            4
        );
    }
}
