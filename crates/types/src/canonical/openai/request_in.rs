//! A parsed OpenAI chat request → the canonical [`Request`].

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::canonical::{
    Image, Message, Part, Request, Role, Tool, ToolCall, ToolChoice, ToolResult, TranslateError,
};
use crate::{ChatRequest, RawObject};

#[derive(Deserialize)]
struct MessageIn {
    role: String,
    #[serde(default)]
    content: Option<ContentIn>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallIn>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
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
    refusal: Option<String>,
    #[serde(default)]
    image_url: Option<ImageUrlIn>,
}

#[derive(Deserialize)]
struct ImageUrlIn {
    url: String,
}

#[derive(Deserialize)]
struct ToolCallIn {
    id: String,
    function: FunctionIn,
}

#[derive(Deserialize)]
struct FunctionIn {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct ToolIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    function: Option<FunctionDefIn>,
}

#[derive(Deserialize)]
struct FunctionDefIn {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Box<RawValue>>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ToolChoiceIn {
    Mode(String),
    Named { function: NamedIn },
}

#[derive(Deserialize)]
struct NamedIn {
    name: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StopIn {
    One(String),
    Many(Vec<String>),
}

/// Reads the canonical request out of an OpenAI chat request. Fields that
/// have no canonical meaning (`seed`, penalties, `response_format`, `n`, …)
/// are not read: the adapter that translates decides whether it refuses
/// them or leaves them out.
pub fn from_chat_request(request: &ChatRequest) -> Result<Request, TranslateError> {
    let raw = request.raw();
    let messages = field::<Vec<MessageIn>>(raw, "messages")?.unwrap_or_default();
    let max_tokens = match field::<u32>(raw, "max_completion_tokens")? {
        Some(limit) => Some(limit),
        None => field::<u32>(raw, "max_tokens")?,
    };
    Ok(Request {
        model: request.model().to_owned(),
        messages: messages
            .into_iter()
            .map(message)
            .collect::<Result<_, _>>()?,
        tools: field::<Vec<ToolIn>>(raw, "tools")?
            .unwrap_or_default()
            .into_iter()
            .map(tool)
            .collect::<Result<_, _>>()?,
        tool_choice: field::<ToolChoiceIn>(raw, "tool_choice")?
            .map(tool_choice)
            .transpose()?,
        parallel_tool_calls: field(raw, "parallel_tool_calls")?,
        max_tokens,
        temperature: field(raw, "temperature")?,
        top_p: field(raw, "top_p")?,
        stop: match field::<StopIn>(raw, "stop")? {
            None => Vec::new(),
            Some(StopIn::One(stop)) => vec![stop],
            Some(StopIn::Many(stops)) => stops,
        },
        stream: request.stream(),
        include_usage: request.include_usage(),
        user: field(raw, "user")?,
        response_format: raw
            .get("response_format")
            .map(|value| value.get())
            .filter(|text| *text != "null")
            .map(str::to_owned),
        reasoning_effort: field(raw, "reasoning_effort")?,
        // The Anthropic adapter, the one reader of a chat body's canonical
        // form, judges these two as fields of its own.
        top_k: None,
        service_tier: None,
    })
}

/// Parses one field; absent and `null` are `None`.
fn field<'a, T: Deserialize<'a>>(
    raw: &'a RawObject,
    key: &'static str,
) -> Result<Option<T>, TranslateError> {
    raw.parse::<T>(key)
        .transpose()
        .map_err(|error| TranslateError::new(key, format!("'{key}' is invalid: {error}")))
}

fn message(message: MessageIn) -> Result<Message, TranslateError> {
    let MessageIn {
        role,
        content,
        tool_calls,
        tool_call_id,
        refusal,
    } = message;
    let mut parts = content.map(parts).transpose()?.unwrap_or_default();
    match role.as_str() {
        "system" | "developer" => {
            if parts.iter().any(|part| part.as_text().is_none()) {
                return Err(TranslateError::new(
                    "messages",
                    "system messages may only contain text",
                ));
            }
            Ok(Message {
                role: Role::System,
                parts,
            })
        }
        "user" => Ok(Message {
            role: Role::User,
            parts,
        }),
        "assistant" => {
            parts.extend(refusal.map(Part::Text));
            let calls = tool_calls.unwrap_or_default().into_iter();
            parts.extend(calls.map(|call| {
                Part::ToolUse(ToolCall {
                    id: call.id,
                    name: call.function.name,
                    arguments: call.function.arguments,
                })
            }));
            Ok(Message {
                role: Role::Assistant,
                parts,
            })
        }
        "tool" => {
            let tool_call_id = tool_call_id.ok_or_else(|| {
                TranslateError::new("messages", "a tool message must have a 'tool_call_id'")
            })?;
            let result = ToolResult {
                tool_call_id,
                content: parts,
                is_error: false,
            };
            Ok(Message {
                role: Role::User,
                parts: vec![Part::ToolResult(result)],
            })
        }
        other => Err(TranslateError::new(
            "messages",
            format!("messages with role '{other}' are not supported by this provider"),
        )),
    }
}

fn parts(content: ContentIn) -> Result<Vec<Part>, TranslateError> {
    match content {
        ContentIn::Text(text) => Ok(vec![Part::Text(text)]),
        ContentIn::Parts(parts) => parts.into_iter().map(part).collect(),
    }
}

fn part(part: PartIn) -> Result<Part, TranslateError> {
    match (part.kind.as_str(), part.text, part.refusal, part.image_url) {
        ("text", Some(text), _, _) => Ok(Part::Text(text)),
        ("refusal", _, Some(refusal), _) => Ok(Part::Text(refusal)),
        ("image_url", _, _, Some(image)) => Ok(Part::Image(image_from_url(image.url))),
        (kind, ..) => Err(TranslateError::new(
            "messages",
            format!("content parts of type '{kind}' are not supported by this provider"),
        )),
    }
}

/// A `data:<media type>;base64,<data>` URL becomes inline data; any other
/// URL stays a URL.
pub(crate) fn image_from_url(url: String) -> Image {
    let inline = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"));
    match inline {
        Some((media_type, data)) => Image::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        },
        None => Image::Url(url),
    }
}

fn tool(tool: ToolIn) -> Result<Tool, TranslateError> {
    match (tool.kind.as_str(), tool.function) {
        ("function", Some(function)) => Ok(Tool {
            name: function.name,
            description: function.description,
            parameters: function.parameters,
            strict: function.strict,
        }),
        (kind, _) => Err(TranslateError::new(
            "tools",
            format!("tools of type '{kind}' are not supported by this provider"),
        )),
    }
}

fn tool_choice(choice: ToolChoiceIn) -> Result<ToolChoice, TranslateError> {
    match choice {
        ToolChoiceIn::Named { function } => Ok(ToolChoice::Named(function.name)),
        ToolChoiceIn::Mode(mode) => match mode.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(TranslateError::new(
                "tool_choice",
                format!("'tool_choice' '{other}' is not one of auto, none, required"),
            )),
        },
    }
}
