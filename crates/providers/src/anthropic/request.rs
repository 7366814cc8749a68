//! The canonical request → an Anthropic Messages request body.
//!
//! System messages become `system`; user, assistant and tool messages become
//! content blocks (`text`, `image`, `tool_use`, `tool_result`), consecutive
//! messages of one role merged into one turn, as Anthropic requires.

use serde::Serialize;
use serde_json::value::RawValue;

use keel_types::canonical::{
    Image, Part, Request, Role, ToolCall, ToolChoice, ToolResult, TranslateError,
};

use super::fields::Extras;

#[derive(Serialize)]
struct BodyOut<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<MessageOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<MetadataOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: ContentOut<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ContentOut<'a> {
    Text(&'a str),
    Blocks(Vec<BlockOut<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'a> {
    Text {
        text: &'a str,
    },
    Image {
        source: SourceOut<'a>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a RawValue,
    },
    ToolResult {
        tool_use_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<ContentOut<'a>>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum SourceOut<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Serialize)]
struct ToolOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: &'a RawValue,
}

#[derive(Serialize)]
struct ToolChoiceOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Serialize)]
struct MetadataOut<'a> {
    user_id: &'a str,
}

/// Writes the Messages body for `request` sent to `model`, with the
/// Anthropic fields of `extras`. `max_tokens` is required upstream: the
/// request's, else `default_max_tokens`.
pub(crate) fn request_body(
    request: &Request,
    extras: &Extras,
    model: &str,
    default_max_tokens: u32,
) -> Result<Vec<u8>, TranslateError> {
    let user = request.user.as_deref().or(extras.user.as_deref());
    let body = BodyOut {
        model,
        max_tokens: request.max_tokens.unwrap_or(default_max_tokens),
        system: request.system_text(),
        messages: messages(request)?,
        tools: tools(request)?,
        tool_choice: tool_choice(request),
        stop_sequences: &request.stop,
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: extras.top_k,
        metadata: user.map(|user_id| MetadataOut { user_id }),
        service_tier: extras.service_tier,
        stream: request.stream,
    };
    serde_json::to_vec(&body).map_err(|error| TranslateError::new("messages", error.to_string()))
}

/// The turns, consecutive messages of one role merged; empty text dropped
/// (Anthropic refuses empty text blocks), and turns left empty with it.
fn messages(request: &Request) -> Result<Vec<MessageOut<'_>>, TranslateError> {
    let mut turns: Vec<(&'static str, Vec<BlockOut<'_>>)> = Vec::new();
    for message in &request.messages {
        let role = match message.role {
            Role::System => continue,
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let blocks = blocks(&message.parts)?;
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, previous)) if *last == role => previous.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    Ok(turns
        .into_iter()
        .map(|(role, blocks)| MessageOut {
            role,
            content: content(blocks),
        })
        .collect())
}

/// One text block is sent as a plain string, as clients usually write it.
fn content(mut blocks: Vec<BlockOut<'_>>) -> ContentOut<'_> {
    match blocks.as_slice() {
        [BlockOut::Text { .. }] => match blocks.pop() {
            Some(BlockOut::Text { text }) => ContentOut::Text(text),
            _ => ContentOut::Blocks(blocks),
        },
        _ => ContentOut::Blocks(blocks),
    }
}

fn blocks(parts: &[Part]) -> Result<Vec<BlockOut<'_>>, TranslateError> {
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Part::Text(text) if text.is_empty() => {}
            Part::Text(text) => blocks.push(BlockOut::Text { text }),
            Part::Image(image) => blocks.push(BlockOut::Image {
                source: source(image),
            }),
            Part::ToolUse(call) => blocks.push(tool_use(call)?),
            Part::ToolResult(result) => blocks.push(tool_result(result)?),
        }
    }
    Ok(blocks)
}

fn source(image: &Image) -> SourceOut<'_> {
    match image {
        Image::Url(url) => SourceOut::Url { url },
        Image::Base64 { media_type, data } => SourceOut::Base64 { media_type, data },
    }
}

fn tool_use(call: &ToolCall) -> Result<BlockOut<'_>, TranslateError> {
    let input = json_object(&call.arguments, "{}").ok_or_else(|| {
        TranslateError::new(
            "messages",
            format!(
                "the arguments of tool call '{}' are not a JSON object",
                call.id
            ),
        )
    })?;
    Ok(BlockOut::ToolUse {
        id: &call.id,
        name: &call.name,
        input,
    })
}

fn tool_result(result: &ToolResult) -> Result<BlockOut<'_>, TranslateError> {
    let blocks = blocks(&result.content)?;
    let content = (!blocks.is_empty()).then(|| content(blocks));
    Ok(BlockOut::ToolResult {
        tool_use_id: &result.tool_call_id,
        content,
        is_error: result.is_error,
    })
}

fn tools(request: &Request) -> Result<Vec<ToolOut<'_>>, TranslateError> {
    const EMPTY_SCHEMA: &str = r#"{"type":"object","properties":{}}"#;
    request
        .tools
        .iter()
        .map(|tool| {
            let schema = tool
                .parameters
                .as_deref()
                .map_or(EMPTY_SCHEMA, RawValue::get);
            let input_schema = json_object(schema, EMPTY_SCHEMA).ok_or_else(|| {
                TranslateError::new(
                    "tools",
                    format!(
                        "the parameters of tool '{}' are not a JSON schema object",
                        tool.name
                    ),
                )
            })?;
            Ok(ToolOut {
                name: &tool.name,
                description: tool.description.as_deref(),
                input_schema,
            })
        })
        .collect()
}

/// `text` as a raw JSON object; blank text reads as `empty`.
fn json_object<'a>(text: &'a str, empty: &'static str) -> Option<&'a RawValue> {
    let text = if text.trim().is_empty() { empty } else { text };
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    raw.get().trim_start().starts_with('{').then_some(raw)
}

/// OpenAI's `required` is Anthropic's `any`; `parallel_tool_calls: false`
/// is `disable_parallel_tool_use`, which `none` does not take.
fn tool_choice(request: &Request) -> Option<ToolChoiceOut<'_>> {
    let serial =
        (request.parallel_tool_calls == Some(false) && !request.tools.is_empty()).then_some(true);
    let (kind, name) = match &request.tool_choice {
        None if serial.is_some() => ("auto", None),
        None => return None,
        Some(ToolChoice::Auto) => ("auto", None),
        Some(ToolChoice::None) => {
            return Some(ToolChoiceOut {
                kind: "none",
                name: None,
                disable_parallel_tool_use: None,
            })
        }
        Some(ToolChoice::Required) => ("any", None),
        Some(ToolChoice::Named(name)) => ("tool", Some(name.as_str())),
    };
    Some(ToolChoiceOut {
        kind,
        name,
        disable_parallel_tool_use: serial,
    })
}
