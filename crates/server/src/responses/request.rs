//! An OpenAI Responses request body → the canonical request → the OpenAI
//! chat request the router takes.
//!
//! Each known field is read on its own, so a bad one is named in the 400.
//! Fields Keel cannot honour through a chat route are refused by name:
//! stored state (`previous_response_id`, `conversation`, `prompt`),
//! built-in tools (web search, file search, computer use, …), logprobs.
//! `store` is accepted and answered `false` (Keel keeps no responses);
//! `service_tier` is carried as chat's own; `include`, `truncation`,
//! `prompt_cache_key`,
//! `safety_identifier`, `max_tool_calls` and `reasoning.summary` are
//! accepted and have no effect; reasoning items in `input` are dropped.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use keel_types::canonical::openai::chat_request;
use keel_types::canonical::{
    Image, Message, Part, Request, Role, Tool, ToolCall, ToolChoice, ToolResult,
};
use keel_types::{ChatRequest, RawObject, RequestError};

/// Every top-level field the translation reads or knowingly ignores.
const KNOWN_FIELDS: [&str; 28] = [
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "text",
    "reasoning",
    "include",
    "truncation",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "max_tool_calls",
    "background",
    "previous_response_id",
    "conversation",
    "prompt",
    "top_logprobs",
    "webhook",
];

/// One item of `input`. Messages may come without `type`.
#[derive(Deserialize)]
struct ItemIn {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<ContentIn>,
    #[serde(default)]
    call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
    #[serde(default)]
    output: Option<ContentIn>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ContentIn {
    Text(String),
    Parts(Vec<PartIn>),
}

#[derive(Deserialize)]
struct PartIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image_url: Option<String>,
}

#[derive(Deserialize)]
struct ToolIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Box<RawValue>>,
    #[serde(default)]
    strict: Option<bool>,
}

/// `text`: only its `format` is read.
#[derive(Deserialize)]
struct TextIn<'a> {
    #[serde(default, borrow)]
    format: Option<&'a RawValue>,
}

/// `text.format`, its schema kept as raw text.
#[derive(Deserialize)]
struct FormatIn<'a> {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default, borrow)]
    name: Option<&'a RawValue>,
    #[serde(default, borrow)]
    schema: Option<&'a RawValue>,
    #[serde(default, borrow)]
    strict: Option<&'a RawValue>,
    #[serde(default, borrow)]
    description: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ReasoningIn {
    #[serde(default)]
    effort: Option<String>,
}

/// A Responses request the router can take, and the body as the client
/// sent it (for the cache key and for echoing settings in the answer).
pub(crate) struct Translated {
    /// The chat request routed.
    pub chat: ChatRequest,
    /// The client's body.
    pub raw: RawObject,
}

/// Reads a `POST /v1/responses` body as the router's chat request.
#[cfg(test)]
pub(crate) fn translate(body: &[u8]) -> Result<Translated, RequestError> {
    translate_object(keel_types::parse_object(body)?)
}

/// [`translate`] for a body already parsed.
pub(crate) fn translate_object(raw: RawObject) -> Result<Translated, RequestError> {
    let canonical = canonical(&raw)?;
    let chat = chat_request(&canonical)?;
    Ok(Translated { chat, raw })
}

/// The canonical request of a Responses body.
pub(crate) fn canonical(raw: &RawObject) -> Result<Request, RequestError> {
    refuse_unsupported(raw)?;
    let model = match raw.parse::<String>("model") {
        Some(Ok(model)) if !model.is_empty() => model,
        Some(Err(_)) => return Err(invalid("model", "a string")),
        _ => return Err(RequestError::MissingModel),
    };
    let instructions = optional::<String>(raw, "instructions", "a string")?;
    let mut messages = input(raw)?;
    if let Some(instructions) = instructions {
        messages.insert(
            0,
            Message {
                role: Role::System,
                parts: vec![Part::Text(instructions)],
            },
        );
    }
    let stream = optional::<bool>(raw, "stream", "a boolean")?.unwrap_or(false);
    Ok(Request {
        model,
        messages,
        tools: tools(raw)?,
        tool_choice: tool_choice(raw)?,
        parallel_tool_calls: optional(raw, "parallel_tool_calls", "a boolean")?,
        max_tokens: optional(raw, "max_output_tokens", "a positive integer")?,
        temperature: optional(raw, "temperature", "a number")?,
        top_p: optional(raw, "top_p", "a number")?,
        top_k: None,
        stop: Vec::new(),
        stream,
        // The terminal event carries the usage: always ask for it.
        include_usage: stream,
        user: optional(raw, "user", "a string")?,
        response_format: response_format(raw)?,
        reasoning_effort: optional::<ReasoningIn>(
            raw,
            "reasoning",
            "an object like {\"effort\": \"low\"}",
        )?
        .and_then(|reasoning| reasoning.effort),
        service_tier: optional(raw, "service_tier", "a string like \"auto\"")?,
    })
}

/// Unknown fields, and known ones that need state or tools Keel has not.
fn refuse_unsupported(raw: &RawObject) -> Result<(), RequestError> {
    for (key, value) in raw.fields() {
        if !KNOWN_FIELDS.contains(&key) {
            return Err(refused(
                "the field is not supported by Keel's Responses API",
                key,
            ));
        }
        let set = value != "null" && value != "false";
        let refusal = match key {
            "previous_response_id" | "conversation" if set => {
                "Keel keeps no conversation state: send the whole conversation in 'input'"
            }
            "prompt" if set => "stored prompt templates are not available through Keel",
            "background" if set && streamed(raw) => {
                "a background response is not streamed: create it, then poll GET /v1/responses/{id}"
            }
            "webhook" if set && !background(raw) => {
                "'webhook' (Keel's extension) is for background responses: set background: true"
            }
            "top_logprobs" if value != "0" && value != "null" => {
                "log probabilities are not returned through Keel's Responses API"
            }
            _ => continue,
        };
        return Err(refused(refusal, key));
    }
    Ok(())
}

/// Whether the body asks for a background response.
pub(crate) fn background(raw: &RawObject) -> bool {
    raw.get("background")
        .is_some_and(|value| value.get() == "true")
}

fn streamed(raw: &RawObject) -> bool {
    raw.get("stream").is_some_and(|value| value.get() == "true")
}

fn input(raw: &RawObject) -> Result<Vec<Message>, RequestError> {
    const EXPECTED: &str =
        "a string or an array of message, function_call and function_call_output items";
    let Some(value) = raw.get("input") else {
        return Err(invalid("input", EXPECTED));
    };
    if let Ok(text) = serde_json::from_str::<String>(value.get()) {
        return Ok(vec![Message {
            role: Role::User,
            parts: vec![Part::Text(text)],
        }]);
    }
    let items: Vec<ItemIn> =
        serde_json::from_str(value.get()).map_err(|_| invalid("input", EXPECTED))?;
    let mut messages: Vec<Message> = Vec::with_capacity(items.len());
    for item in items {
        if let Some(message) = item_message(item)? {
            push_merged(&mut messages, message);
        }
    }
    if messages.iter().all(|message| message.role == Role::System) {
        return Err(invalid("input", EXPECTED));
    }
    Ok(messages)
}

/// Appends `message`, joining consecutive tool calls (and tool results)
/// into one message, as chat formats expect them.
fn push_merged(messages: &mut Vec<Message>, message: Message) {
    let joins = |parts: &[Part]| {
        parts
            .iter()
            .all(|part| matches!(part, Part::ToolUse(_) | Part::ToolResult(_)))
    };
    if let Some(last) = messages.last_mut() {
        if last.role == message.role && joins(&last.parts) && joins(&message.parts) {
            last.parts.extend(message.parts);
            return;
        }
    }
    messages.push(message);
}

fn item_message(item: ItemIn) -> Result<Option<Message>, RequestError> {
    match item.kind.as_deref() {
        None | Some("message") => message(item).map(Some),
        Some("function_call") => {
            let call = ToolCall {
                id: item.call_id.ok_or_else(|| invalid("input", "function_call items with a call_id"))?,
                name: item.name.unwrap_or_default(),
                arguments: item.arguments.unwrap_or_else(|| String::from("{}")),
            };
            Ok(Some(Message {
                role: Role::Assistant,
                parts: vec![Part::ToolUse(call)],
            }))
        }
        Some("function_call_output") => {
            let tool_call_id = item
                .call_id
                .ok_or_else(|| invalid("input", "function_call_output items with a call_id"))?;
            let content = match item.output {
                Some(output) => parts(output)?,
                None => Vec::new(),
            };
            Ok(Some(Message {
                role: Role::User,
                parts: vec![Part::ToolResult(ToolResult {
                    tool_call_id,
                    content,
                    is_error: false,
                })],
            }))
        }
        // A previous answer's reasoning, replayed: it has no chat form.
        Some("reasoning") => Ok(None),
        Some(other) => Err(refused(
            &format!("'{other}' items are not supported by Keel's Responses API (it routes messages and function calls)"),
            "input",
        )),
    }
}

fn message(item: ItemIn) -> Result<Message, RequestError> {
    let role = match item.role.as_deref() {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system" | "developer") => Role::System,
        _ => {
            return Err(invalid(
                "input",
                "messages with role user, assistant, system or developer",
            ))
        }
    };
    let content = item
        .content
        .ok_or_else(|| invalid("input", "messages with content"))?;
    Ok(Message {
        role,
        parts: parts(content)?,
    })
}

fn parts(content: ContentIn) -> Result<Vec<Part>, RequestError> {
    match content {
        ContentIn::Text(text) => Ok(vec![Part::Text(text)]),
        ContentIn::Parts(parts) => parts.into_iter().map(part).collect(),
    }
}

fn part(part: PartIn) -> Result<Part, RequestError> {
    match part.kind.as_str() {
        "input_text" | "output_text" | "text" => Ok(Part::Text(part.text.unwrap_or_default())),
        "input_image" => {
            let url = part.image_url.ok_or_else(|| {
                refused(
                    "images must be given by 'image_url' (file ids need stored files)",
                    "input",
                )
            })?;
            Ok(Part::Image(image(url)))
        }
        "refusal" => Ok(Part::Text(part.text.unwrap_or_default())),
        other => Err(refused(
            &format!("'{other}' content is not supported by Keel's Responses API"),
            "input",
        )),
    }
}

/// A `data:` URL becomes inline base64; anything else stays a URL.
fn image(url: String) -> Image {
    let inline = url.strip_prefix("data:").and_then(|rest| {
        let (media_type, data) = rest.split_once(";base64,")?;
        Some(Image::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        })
    });
    inline.unwrap_or(Image::Url(url))
}

fn tools(raw: &RawObject) -> Result<Vec<Tool>, RequestError> {
    let tools = optional::<Vec<ToolIn>>(raw, "tools", "an array of function tools")?;
    tools
        .unwrap_or_default()
        .into_iter()
        .map(|tool| {
            if tool.kind != "function" {
                return Err(refused(
                    &format!(
                        "built-in tool '{}' is not supported by Keel's Responses API (function tools are)",
                        tool.kind
                    ),
                    "tools",
                ));
            }
            let name = tool
                .name
                .filter(|name| !name.is_empty())
                .ok_or_else(|| invalid("tools", "function tools with a name"))?;
            Ok(Tool {
                name,
                description: tool.description,
                parameters: tool.parameters,
                strict: tool.strict,
            })
        })
        .collect()
}

fn tool_choice(raw: &RawObject) -> Result<Option<ToolChoice>, RequestError> {
    const EXPECTED: &str =
        "\"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": …}";
    let Some(value) = optional::<Value>(raw, "tool_choice", EXPECTED)? else {
        return Ok(None);
    };
    let choice = match &value {
        Value::String(mode) => match mode.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(invalid("tool_choice", EXPECTED)),
        },
        Value::Object(choice) if choice.get("type") == Some(&Value::from("function")) => {
            match choice.get("name").and_then(Value::as_str) {
                Some(name) => ToolChoice::Named(name.to_owned()),
                None => return Err(invalid("tool_choice", EXPECTED)),
            }
        }
        Value::Object(_) => {
            return Err(refused(
                "only function tool choices are supported by Keel's Responses API",
                "tool_choice",
            ))
        }
        _ => return Err(invalid("tool_choice", EXPECTED)),
    };
    Ok(Some(choice))
}

/// `text.format` as chat's `response_format` (JSON text). The schema is
/// copied as its raw text: structured outputs are generated in the order
/// of its properties, which a JSON tree (keys sorted) would change.
fn response_format(raw: &RawObject) -> Result<Option<String>, RequestError> {
    const EXPECTED: &str =
        "an object like {\"format\": {\"type\": \"json_schema\", \"name\": …, \"schema\": …}}";
    let Some(text) = raw.get("text") else {
        return Ok(None);
    };
    let text: Option<TextIn<'_>> =
        serde_json::from_str(text.get()).map_err(|_| invalid("text", EXPECTED))?;
    let Some(format) = text.and_then(|text| text.format) else {
        return Ok(None);
    };
    let format: FormatIn<'_> = serde_json::from_str(format.get()).map_err(|_| {
        invalid(
            "text.format",
            "a format of type text, json_object or json_schema",
        )
    })?;
    match format.kind.as_deref() {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(String::from(r#"{"type":"json_object"}"#))),
        Some("json_schema") => {
            let (Some(name), Some(schema)) = (format.name, format.schema) else {
                return Err(invalid(
                    "text.format",
                    "a json_schema format with a name and a schema",
                ));
            };
            let mut out = format!(
                r#"{{"type":"json_schema","json_schema":{{"name":{},"schema":{}"#,
                name.get(),
                schema.get()
            );
            for (key, value) in [
                ("strict", format.strict),
                ("description", format.description),
            ] {
                if let Some(value) = value {
                    out.push_str(&format!(r#","{key}":{}"#, value.get()));
                }
            }
            out.push_str("}}");
            Ok(Some(out))
        }
        _ => Err(invalid(
            "text.format",
            "a format of type text, json_object or json_schema",
        )),
    }
}

/// A field that may be absent (or null), parsed when present.
fn optional<T: serde::de::DeserializeOwned>(
    raw: &RawObject,
    key: &'static str,
    expected: &'static str,
) -> Result<Option<T>, RequestError> {
    match raw.get(key) {
        None => Ok(None),
        Some(value) if value.get() == "null" => Ok(None),
        Some(value) => serde_json::from_str(value.get())
            .map(Some)
            .map_err(|_| invalid(key, expected)),
    }
}

fn invalid(param: &'static str, expected: &'static str) -> RequestError {
    RequestError::InvalidField { param, expected }
}

/// A field Keel understands but cannot honour: a 400 naming it.
fn refused(message: &str, param: &str) -> RequestError {
    RequestError::Unsupported {
        param: param.to_owned(),
        message: message.to_owned(),
    }
}
