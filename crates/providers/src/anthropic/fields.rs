//! Every top-level field of an OpenAI chat request, as this adapter treats
//! it: carried through the canonical request, sent as an Anthropic field of
//! its own (`top_k`, `service_tier`), left out because its value changes
//! nothing (`n: 1`, `logprobs: false`, `store: false`, a zero penalty), or
//! unsupported: the Messages API cannot express it, and the request is
//! refused with 400 naming the field, or with `drop_unsupported` the field
//! is left out and named in `x-keel-dropped`. No field is left out silently,
//! unknown ones included.

use serde::Deserialize;

use keel_types::{ChatRequest, RawObject};

/// A field the Messages API cannot express.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unsupported {
    /// Its name, as `x-keel-dropped` lists it.
    pub field: String,
    /// The top-level request parameter it is in, for the 400's `param`.
    pub param: String,
    /// Which use of it, after its name: `json_schema`, `in messages`.
    pub qualifier: Option<&'static str>,
    /// Why the Messages API cannot take it.
    pub why: &'static str,
}

/// Anthropic fields read from the OpenAI request beside the canonical one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Extras {
    /// `top_k` as sent (OpenAI-compatible clients send it for vLLM; it is
    /// Anthropic's own field).
    pub top_k: Option<u64>,
    /// Anthropic's `service_tier` for OpenAI's `default`.
    pub service_tier: Option<&'static str>,
    /// `safety_identifier`, Anthropic's `metadata.user_id` when `user` is absent.
    pub user: Option<String>,
}

/// What the adapter makes of a request's fields.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    /// Sent beside the canonical request.
    pub extras: Extras,
    /// Not expressible, in request order.
    pub unsupported: Vec<Unsupported>,
}

/// How one field is treated.
enum Verdict {
    /// Carried, or left out because its value changes nothing.
    Exact,
    /// Not expressible: the use (`None`: any) and why.
    Unsupported(Option<&'static str>, &'static str),
}

const ONE_CHOICE: &str = "the Messages API returns one choice per request";
const NO_LOGPROBS: &str = "the Messages API returns no log probabilities";
const NO_PENALTIES: &str = "the Messages API has no frequency or presence penalty";
const NO_JSON_MODE: &str = "the Messages API version Keel speaks has no JSON mode; ask for JSON in the prompt, or route this request to an OpenAI target";
const NO_STRUCTURED_OUTPUT: &str = "the Messages API version Keel speaks has no structured output; send the schema as a tool and force it with tool_choice, or route this request to an OpenAI target";
const NO_THINKING_IN_CHAT: &str = "Anthropic's extended thinking needs its signed thinking blocks sent back on every tool turn, which OpenAI's chat format cannot carry";
const TEXT_ONLY: &str = "the Messages API answers in text only";
const UNKNOWN: &str = "Keel does not know this field, so it cannot translate it";
const NO_CACHE_CONTROL: &str = "OpenAI's chat format has no cache_control, so Keel cannot place Anthropic's cache breakpoints from it";

/// Reads every top-level field of `request` (and the `cache_control` marks
/// clients put on messages and tools).
pub(crate) fn read(request: &ChatRequest) -> Fields {
    let raw = request.raw();
    let mut fields = Fields::default();
    for (key, value) in raw.fields() {
        if value == "null" {
            continue;
        }
        match verdict(key, value, raw, &mut fields.extras) {
            Verdict::Exact => {}
            Verdict::Unsupported(qualifier, why) => fields.unsupported.push(Unsupported {
                field: key.to_owned(),
                param: key.to_owned(),
                qualifier,
                why,
            }),
        }
    }
    for param in ["messages", "tools"] {
        if raw
            .get(param)
            .is_some_and(|value| has_cache_control(param, value.get()))
        {
            fields.unsupported.push(Unsupported {
                field: String::from("cache_control"),
                param: param.to_owned(),
                qualifier: Some(if param == "messages" {
                    "in messages"
                } else {
                    "in tools"
                }),
                why: NO_CACHE_CONTROL,
            });
        }
    }
    fields
}

fn verdict(key: &str, value: &str, raw: &RawObject, extras: &mut Extras) -> Verdict {
    match key {
        // Carried by the canonical request.
        "model"
        | "messages"
        | "stream"
        | "stream_options"
        | "tools"
        | "tool_choice"
        | "parallel_tool_calls"
        | "max_tokens"
        | "max_completion_tokens"
        | "temperature"
        | "top_p"
        | "stop"
        | "user" => Verdict::Exact,
        // OpenAI attaches metadata to stored completions only, and storing
        // is refused below: without it, metadata changes nothing.
        "metadata" => Verdict::Exact,
        "store" => exact_unless(value != "false", "Anthropic does not store completions"),
        "n" => exact_unless(value != "1", ONE_CHOICE),
        "logprobs" => exact_unless(value != "false", NO_LOGPROBS),
        "top_logprobs" => Verdict::Unsupported(None, NO_LOGPROBS),
        "seed" => Verdict::Unsupported(None, "the Messages API has no seed"),
        "frequency_penalty" | "presence_penalty" => exact_unless(!is_zero(value), NO_PENALTIES),
        "logit_bias" => exact_unless(
            !is_empty_object(value),
            "the Messages API has no logit bias",
        ),
        "response_format" => response_format(value),
        "reasoning_effort" => exact_unless(!is_text(value, "none"), NO_THINKING_IN_CHAT),
        "verbosity" => exact_unless(
            !is_text(value, "medium"),
            "the Messages API has no verbosity setting",
        ),
        "modalities" => exact_unless(!is_text_only(value), TEXT_ONLY),
        "audio" => Verdict::Unsupported(None, TEXT_ONLY),
        "top_k" => top_k(value, extras),
        "service_tier" => service_tier(value, extras),
        "safety_identifier" => safety_identifier(value, raw, extras),
        "prediction" => Verdict::Unsupported(None, "the Messages API has no predicted outputs"),
        "web_search_options" => Verdict::Unsupported(
            None,
            "Anthropic's web search is a server tool, which OpenAI's chat format cannot describe",
        ),
        "functions" | "function_call" => Verdict::Unsupported(
            None,
            "the legacy function fields are not translated; send tools and tool_choice",
        ),
        "prompt_cache_key" => Verdict::Unsupported(
            None,
            "Anthropic caches prompts at cache_control breakpoints, not by key",
        ),
        _ => Verdict::Unsupported(None, UNKNOWN),
    }
}

fn exact_unless(unsupported: bool, why: &'static str) -> Verdict {
    if unsupported {
        Verdict::Unsupported(None, why)
    } else {
        Verdict::Exact
    }
}

/// Whether `value` is the JSON string `expected`.
fn is_text(value: &str, expected: &str) -> bool {
    serde_json::from_str::<String>(value).is_ok_and(|text| text == expected)
}

fn is_text_only(value: &str) -> bool {
    serde_json::from_str::<Vec<String>>(value).is_ok_and(|modalities| modalities == ["text"])
}

fn is_zero(value: &str) -> bool {
    value.parse::<f64>().is_ok_and(|number| number == 0.0)
}

fn is_empty_object(value: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(value)
        .is_ok_and(|object| object.is_empty())
}

#[derive(Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
}

fn response_format(value: &str) -> Verdict {
    match serde_json::from_str::<ResponseFormat>(value) {
        Ok(format) => match format.kind.as_str() {
            "text" => Verdict::Exact,
            "json_object" => Verdict::Unsupported(Some("json_object"), NO_JSON_MODE),
            "json_schema" => Verdict::Unsupported(Some("json_schema"), NO_STRUCTURED_OUTPUT),
            _ => Verdict::Unsupported(None, UNKNOWN),
        },
        Err(_) => Verdict::Unsupported(None, UNKNOWN),
    }
}

fn top_k(value: &str, extras: &mut Extras) -> Verdict {
    match value.parse::<u64>() {
        Ok(top_k) => {
            extras.top_k = Some(top_k);
            Verdict::Exact
        }
        Err(_) => Verdict::Unsupported(None, "it must be a whole number"),
    }
}

/// OpenAI's `auto` is Anthropic's default; its `default` (standard
/// capacity) is Anthropic's `standard_only`; `flex`, `scale` and
/// `priority` have no counterpart.
fn service_tier(value: &str, extras: &mut Extras) -> Verdict {
    let tier = serde_json::from_str::<String>(value).unwrap_or_default();
    match tier.as_str() {
        "auto" => Verdict::Exact,
        "default" => {
            extras.service_tier = Some("standard_only");
            Verdict::Exact
        }
        _ => Verdict::Unsupported(
            None,
            "Anthropic's tiers are auto and standard_only (OpenAI's auto and default)",
        ),
    }
}

/// Anthropic has one user id, `metadata.user_id`, which `user` fills.
fn safety_identifier(value: &str, raw: &RawObject, extras: &mut Extras) -> Verdict {
    let Ok(identifier) = serde_json::from_str::<String>(value) else {
        return Verdict::Unsupported(None, "it must be a string");
    };
    match raw.parse::<String>("user") {
        Some(Ok(user)) if user != identifier => Verdict::Unsupported(
            None,
            "Anthropic takes one user id (metadata.user_id): send user or safety_identifier, not both",
        ),
        _ => {
            extras.user = Some(identifier);
            Verdict::Exact
        }
    }
}

/// Whether a message, one of its content parts, a tool or its function
/// carries `cache_control`. Only those levels are searched: a tool's
/// parameter schema may well have a property of that name.
fn has_cache_control(param: &str, value: &str) -> bool {
    // Most requests have none: skip the parse.
    if !value.contains(r#""cache_control""#) {
        return false;
    }
    let Ok(items) = serde_json::from_str::<Vec<serde_json::Value>>(value) else {
        return false;
    };
    let marked = |item: &serde_json::Value| item.get("cache_control").is_some();
    let nested = if param == "messages" {
        "content"
    } else {
        "function"
    };
    items.iter().any(|item| {
        marked(item)
            || match item.get(nested) {
                Some(serde_json::Value::Array(parts)) => parts.iter().any(marked),
                Some(object) => marked(object),
                None => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields_of(body: &str) -> Result<Fields, keel_types::RequestError> {
        Ok(read(&ChatRequest::parse(body.as_bytes())?))
    }

    fn names(fields: &Fields) -> Vec<&str> {
        fields
            .unsupported
            .iter()
            .map(|unsupported| unsupported.field.as_str())
            .collect()
    }

    #[test]
    fn neutral_values_are_exact_and_the_others_are_unsupported(
    ) -> Result<(), keel_types::RequestError> {
        let neutral = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":1,"logprobs":false,"store":false,"frequency_penalty":0,"presence_penalty":0.0,"logit_bias":{},"response_format":{"type":"text"},"reasoning_effort":"none","modalities":["text"],"service_tier":"auto","seed":null,"metadata":{"a":"b"}}"#;
        let fields = fields_of(neutral)?;
        assert_eq!(names(&fields), Vec::<&str>::new());
        assert_eq!(fields.extras, Extras::default());
        let unsupported = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2,"seed":7,"logprobs":true,"top_logprobs":2,"frequency_penalty":0.5,"logit_bias":{"1":2},"response_format":{"type":"json_schema","json_schema":{}},"reasoning_effort":"high","store":true,"service_tier":"flex","x_vendor":1}"#;
        let fields = fields_of(unsupported)?;
        assert_eq!(
            names(&fields),
            [
                "n",
                "seed",
                "logprobs",
                "top_logprobs",
                "frequency_penalty",
                "logit_bias",
                "response_format",
                "reasoning_effort",
                "store",
                "service_tier",
                "x_vendor"
            ]
        );
        let format = fields
            .unsupported
            .iter()
            .find(|unsupported| unsupported.field == "response_format");
        assert_eq!(
            format.and_then(|format| format.qualifier),
            Some("json_schema")
        );
        Ok(())
    }

    #[test]
    fn anthropic_fields_are_read_beside_the_canonical_request(
    ) -> Result<(), keel_types::RequestError> {
        let fields = fields_of(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_k":40,"service_tier":"default","safety_identifier":"u-1"}"#,
        )?;
        assert_eq!(names(&fields), Vec::<&str>::new());
        assert_eq!(
            fields.extras,
            Extras {
                top_k: Some(40),
                service_tier: Some("standard_only"),
                user: Some(String::from("u-1")),
            }
        );
        let both = fields_of(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"user":"a","safety_identifier":"b"}"#,
        )?;
        assert_eq!(names(&both), ["safety_identifier"]);
        Ok(())
    }

    #[test]
    fn cache_control_is_found_on_messages_parts_and_tools_but_not_in_schemas(
    ) -> Result<(), keel_types::RequestError> {
        let on_part = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}]}"#;
        let marked = fields_of(on_part)?;
        assert_eq!(names(&marked), ["cache_control"]);
        assert_eq!(marked.unsupported[0].param, "messages");
        let on_tool = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"},"cache_control":{"type":"ephemeral"}}]}"#;
        assert_eq!(names(&fields_of(on_tool)?), ["cache_control"]);
        let in_schema = r#"{"model":"m","messages":[{"role":"user","content":"\"cache_control\""}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"cache_control":{"type":"string"}}}}}]}"#;
        assert_eq!(names(&fields_of(in_schema)?), Vec::<&str>::new());
        Ok(())
    }
}
