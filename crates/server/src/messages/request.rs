//! An Anthropic Messages request body → the canonical request → the OpenAI
//! chat request the router takes.
//!
//! Each known field is parsed on its own, so a bad one is named in the 400.
//! This path serves models that may reach a target speaking OpenAI's chat
//! format, so every field is either carried exactly or refused with 400
//! naming it: `top_k` is carried (as the chat body's `top_k`, which
//! OpenAI-compatible servers such as vLLM take and the Anthropic adapter
//! reads back), `service_tier` too (`standard_only` is OpenAI's
//! `default`); `thinking` (enabled), `cache_control` anywhere and fields
//! Keel does not know are refused. Thinking blocks in an earlier assistant turn are left out, as
//! Anthropic's API itself ignores them when thinking is off; documents and
//! server tools are refused. (A model whose targets are all Anthropic-kind
//! never comes here: its bodies go through verbatim.)

use serde::Deserialize;
use serde_json::value::RawValue;

use keel_types::canonical::{
    Image, Message, Part, Request, Role, Tool, ToolCall, ToolChoice, ToolResult,
};
use keel_types::{ChatRequest, RawObject, RequestError};

const MESSAGES: &str = "an array of {role, content} messages whose content blocks are text, image, tool_use, tool_result or thinking";

#[derive(Deserialize)]
struct MessageIn {
    role: String,
    content: ContentIn,
}

/// A string or an array of blocks. Not `#[serde(untagged)]`: that buffers
/// the value, and the raw `input` of a `tool_use` block cannot be read back
/// from a buffer.
enum ContentIn {
    Text(String),
    Blocks(Vec<BlockIn>),
}

struct ContentVisitor;

#[derive(Deserialize)]
struct BlockIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    source: Option<SourceIn>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Box<RawValue>>,
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    content: Option<ContentIn>,
    #[serde(default)]
    is_error: bool,
    #[serde(default)]
    cache_control: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct SourceIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct ToolIn {
    name: String,
    #[serde(default)]
    description: Option<String>,
    input_schema: Box<RawValue>,
    #[serde(default)]
    cache_control: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ToolChoiceIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: bool,
}

#[derive(Deserialize)]
struct MetadataIn {
    #[serde(default)]
    user_id: Option<String>,
}

// === impl ContentIn ===

impl<'de> Deserialize<'de> for ContentIn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ContentVisitor)
    }
}

impl<'de> serde::de::Visitor<'de> for ContentVisitor {
    type Value = ContentIn;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a string or an array of content blocks")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ContentIn, E> {
        Ok(ContentIn::Text(text.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<ContentIn, E> {
        Ok(ContentIn::Text(text))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ContentIn, A::Error> {
        let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(block) = seq.next_element()? {
            blocks.push(block);
        }
        Ok(ContentIn::Blocks(blocks))
    }
}

/// Parses a Messages body into the OpenAI request the router takes. The
/// stream asks for usage, which `message_delta` reports.
pub(crate) fn chat_request(body: &[u8]) -> Result<ChatRequest, RequestError> {
    chat_request_and_body(body).map(|(request, _)| request)
}

/// [`chat_request`], and the Messages body's own fields (the cache keys them).
pub(crate) fn chat_request_and_body(body: &[u8]) -> Result<(ChatRequest, RawObject), RequestError> {
    from_object(keel_types::parse_object(body)?)
}

/// [`chat_request_and_body`] of a body already read as an object.
pub(crate) fn from_object(raw: RawObject) -> Result<(ChatRequest, RawObject), RequestError> {
    let request = keel_types::canonical::openai::chat_request(&canonical(&raw)?)?;
    Ok((request, raw))
}

/// The canonical request of a Messages body.
pub(crate) fn canonical(raw: &RawObject) -> Result<Request, RequestError> {
    refuse_untranslatable_fields(raw)?;
    let model = field::<String>(raw, "model", "a string")?
        .filter(|model| !model.is_empty())
        .ok_or(RequestError::MissingModel)?;
    let mut messages = Vec::new();
    if let Some(system) = field::<ContentIn>(raw, "system", "a string or an array of text blocks")?
    {
        messages.push(system_message(system)?);
    }
    let turns = field::<Vec<MessageIn>>(raw, "messages", MESSAGES)?.unwrap_or_default();
    if turns.is_empty() {
        return Err(RequestError::MissingMessages);
    }
    for turn in turns {
        messages.push(message(turn)?);
    }
    let stream = field(raw, "stream", "a boolean")?.unwrap_or(false);
    let choice = field::<ToolChoiceIn>(raw, "tool_choice", "an object like {\"type\": \"auto\"}")?;
    Ok(Request {
        model,
        messages,
        tools: tools(raw)?,
        parallel_tool_calls: choice
            .as_ref()
            .and_then(|choice| choice.disable_parallel_tool_use.then_some(false)),
        tool_choice: choice.map(tool_choice).transpose()?,
        max_tokens: field(raw, "max_tokens", "a positive integer")?,
        temperature: field(raw, "temperature", "a number")?,
        top_p: field(raw, "top_p", "a number")?,
        top_k: field(raw, "top_k", "a positive integer")?,
        stop: field(raw, "stop_sequences", "an array of strings")?.unwrap_or_default(),
        stream,
        include_usage: stream,
        user: field::<MetadataIn>(raw, "metadata", "an object like {\"user_id\": \"…\"}")?
            .and_then(|metadata| metadata.user_id),
        response_format: None,
        reasoning_effort: None,
        service_tier: service_tier(raw)?,
    })
}

/// Top-level fields the canonical request carries.
const CARRIED: &[&str] = &[
    "model",
    "system",
    "messages",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
];

const NO_THINKING: &str = "Anthropic's extended thinking needs its signed thinking blocks sent back on every tool turn, which OpenAI's chat format cannot carry";
const UNKNOWN: &str = "Keel does not know this field, so it cannot translate it";
const NO_CACHE_CONTROL: &str =
    "OpenAI's chat format has no cache breakpoints (OpenAI caches long prompt prefixes by itself)";

/// Refuses a top-level field this translation cannot carry; `thinking`
/// turned off (the default) changes nothing.
fn refuse_untranslatable_fields(raw: &RawObject) -> Result<(), RequestError> {
    for (key, value) in raw.fields() {
        let why = match key {
            _ if value == "null" || CARRIED.contains(&key) => continue,
            "thinking" if is_disabled_thinking(value) => continue,
            "thinking" => NO_THINKING,
            "service_tier" => continue,
            "cache_control" => NO_CACHE_CONTROL,
            _ => UNKNOWN,
        };
        return Err(untranslatable(key, "", why));
    }
    Ok(())
}

/// Anthropic's `auto` is the default in both formats; `standard_only` is
/// OpenAI's `default` (standard capacity only).
fn service_tier(raw: &RawObject) -> Result<Option<String>, RequestError> {
    match field::<String>(raw, "service_tier", "auto or standard_only")?.as_deref() {
        None | Some("auto") => Ok(None),
        Some("standard_only") => Ok(Some(String::from("default"))),
        Some(_) => Err(invalid("service_tier", "auto or standard_only")),
    }
}

fn is_disabled_thinking(value: &str) -> bool {
    #[derive(Deserialize)]
    struct Thinking {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Thinking>(value).is_ok_and(|thinking| thinking.kind == "disabled")
}

/// The 400 for a field the translation to OpenAI's chat format cannot
/// carry; `place` says where it was when not at the top level.
fn untranslatable(param: &str, place: &str, why: &str) -> RequestError {
    RequestError::Unsupported {
        param: param.to_owned(),
        message: format!(
            "'{param}'{place} cannot be sent to an OpenAI-format target, and this model may be served by one: {why}. A model whose targets are all Anthropic-kind takes the body verbatim."
        ),
    }
}

/// Refuses a block's `cache_control` mark, found in `param`.
fn refuse_cache_control(mark: Option<&RawValue>, param: &'static str) -> Result<(), RequestError> {
    match mark {
        Some(mark) if mark.get() != "null" => Err(untranslatable(
            "cache_control",
            &format!(" (in {param})"),
            NO_CACHE_CONTROL,
        )),
        _ => Ok(()),
    }
}

/// Parses one field; absent and `null` are `None`.
fn field<'a, T: Deserialize<'a>>(
    raw: &'a RawObject,
    param: &'static str,
    expected: &'static str,
) -> Result<Option<T>, RequestError> {
    raw.parse::<T>(param)
        .transpose()
        .map_err(|_| RequestError::InvalidField { param, expected })
}

fn invalid(param: &'static str, expected: &'static str) -> RequestError {
    RequestError::InvalidField { param, expected }
}

fn system_message(system: ContentIn) -> Result<Message, RequestError> {
    let expected = "a string or an array of text blocks";
    let parts = match system {
        ContentIn::Text(text) => vec![Part::Text(text)],
        ContentIn::Blocks(blocks) => blocks
            .into_iter()
            .map(|block| {
                refuse_cache_control(block.cache_control.as_deref(), "system")?;
                match (block.kind.as_str(), block.text) {
                    ("text", Some(text)) => Ok(Part::Text(text)),
                    _ => Err(invalid("system", expected)),
                }
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Message {
        role: Role::System,
        parts,
    })
}

fn message(message: MessageIn) -> Result<Message, RequestError> {
    let role = match message.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        _ => {
            return Err(invalid(
                "messages",
                "an array of messages whose role is user or assistant",
            ))
        }
    };
    let parts = match message.content {
        ContentIn::Text(text) => vec![Part::Text(text)],
        ContentIn::Blocks(blocks) => blocks
            .into_iter()
            .filter_map(|block| part(block).transpose())
            .collect::<Result<_, _>>()?,
    };
    Ok(Message { role, parts })
}

/// One block as a canonical part; `None` for thinking blocks, which an
/// OpenAI request cannot carry.
fn part(block: BlockIn) -> Result<Option<Part>, RequestError> {
    refuse_cache_control(block.cache_control.as_deref(), "messages")?;
    let part = match block.kind.as_str() {
        "text" => Part::Text(block.text.ok_or(invalid("messages", MESSAGES))?),
        "image" => Part::Image(image(block.source)?),
        "tool_use" => {
            let (Some(id), Some(name)) = (block.id, block.name) else {
                return Err(invalid("messages", MESSAGES));
            };
            let arguments = block
                .input
                .map_or_else(|| String::from("{}"), |input| input.get().to_owned());
            Part::ToolUse(ToolCall {
                id,
                name,
                arguments,
            })
        }
        "tool_result" => {
            let tool_call_id = block.tool_use_id.ok_or(invalid("messages", MESSAGES))?;
            let content = match block.content {
                None => Vec::new(),
                Some(ContentIn::Text(text)) => vec![Part::Text(text)],
                Some(ContentIn::Blocks(blocks)) => blocks
                    .into_iter()
                    .filter_map(|block| part(block).transpose())
                    .collect::<Result<_, _>>()?,
            };
            Part::ToolResult(ToolResult {
                tool_call_id,
                content,
                is_error: block.is_error,
            })
        }
        "thinking" | "redacted_thinking" => return Ok(None),
        _ => return Err(invalid("messages", MESSAGES)),
    };
    Ok(Some(part))
}

fn image(source: Option<SourceIn>) -> Result<Image, RequestError> {
    let expected = "an array of messages whose image sources are base64 data or a URL";
    match source {
        Some(SourceIn {
            kind,
            media_type: Some(media_type),
            data: Some(data),
            ..
        }) if kind == "base64" => Ok(Image::Base64 { media_type, data }),
        Some(SourceIn {
            kind,
            url: Some(url),
            ..
        }) if kind == "url" => Ok(Image::Url(url)),
        _ => Err(invalid("messages", expected)),
    }
}

fn tools(raw: &RawObject) -> Result<Vec<Tool>, RequestError> {
    let expected = "an array of client tools, each with a name and an input_schema (server tools are not supported)";
    let tools = field::<Vec<ToolIn>>(raw, "tools", expected)?.unwrap_or_default();
    tools
        .into_iter()
        .map(|tool| {
            refuse_cache_control(tool.cache_control.as_deref(), "tools")?;
            Ok(Tool {
                name: tool.name,
                description: tool.description,
                parameters: Some(tool.input_schema),
                strict: None,
            })
        })
        .collect()
}

fn tool_choice(choice: ToolChoiceIn) -> Result<ToolChoice, RequestError> {
    match (choice.kind.as_str(), choice.name) {
        ("auto", _) => Ok(ToolChoice::Auto),
        ("any", _) => Ok(ToolChoice::Required),
        ("none", _) => Ok(ToolChoice::None),
        ("tool", Some(name)) => Ok(ToolChoice::Named(name)),
        _ => Err(invalid(
            "tool_choice",
            "an object whose type is auto, any, none, or tool with a name",
        )),
    }
}
