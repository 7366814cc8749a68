//! The canonical [`Request`] → an OpenAI chat request body, for front ends
//! in other formats whose requests go through the router.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::canonical::{Image, Message, Part, Request, Role, ToolCall, ToolChoice};

#[derive(Serialize)]
struct BodyOut<'a> {
    model: &'a str,
    messages: Vec<MessageOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptionsOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'a str>,
}

#[derive(Serialize)]
struct StreamOptionsOut {
    include_usage: bool,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Option<ContentOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ContentOut<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<PartOut<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PartOut<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrlOut<'a> },
}

#[derive(Serialize)]
struct ImageUrlOut<'a> {
    url: Cow<'a, str>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ToolOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionDefOut<'a>,
}

#[derive(Serialize)]
struct FunctionDefOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ToolChoiceOut<'a> {
    Mode(&'static str),
    Named {
        #[serde(rename = "type")]
        kind: &'static str,
        function: NamedOut<'a>,
    },
}

#[derive(Serialize)]
struct NamedOut<'a> {
    name: &'a str,
}

/// Writes `request` as an OpenAI chat request body. A user message's tool
/// results become `tool` messages ahead of it (images in tool results move
/// to the user message, since OpenAI tool messages hold only text); a
/// stream always asks for the usage chunk when `include_usage` is set.
pub fn request_body(request: &Request) -> Vec<u8> {
    // Held as JSON text; text that is somehow not JSON is left out.
    let response_format = request
        .response_format
        .as_deref()
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
    let body = BodyOut {
        model: &request.model,
        messages: request.messages.iter().flat_map(messages).collect(),
        tools: request
            .tools
            .iter()
            .map(|tool| ToolOut {
                kind: "function",
                function: FunctionDefOut {
                    name: &tool.name,
                    description: tool.description.as_deref(),
                    parameters: tool.parameters.as_deref(),
                    strict: tool.strict,
                },
            })
            .collect(),
        tool_choice: request.tool_choice.as_ref().map(tool_choice),
        parallel_tool_calls: request.parallel_tool_calls,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        stop: &request.stop,
        stream: request.stream,
        stream_options: (request.stream && request.include_usage).then_some(StreamOptionsOut {
            include_usage: true,
        }),
        user: request.user.as_deref(),
        response_format,
        reasoning_effort: request.reasoning_effort.as_deref(),
    };
    // Serialising these types into a Vec cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

fn messages(message: &Message) -> Vec<MessageOut<'_>> {
    match message.role {
        Role::System => vec![MessageOut::plain("system", content(message.parts.iter()))],
        Role::Assistant => vec![assistant(&message.parts)],
        Role::User => user(&message.parts),
    }
}

fn assistant(parts: &[Part]) -> MessageOut<'_> {
    let text: Vec<&str> = parts.iter().filter_map(Part::as_text).collect();
    let tool_calls: Vec<ToolCallOut<'_>> = parts
        .iter()
        .filter_map(|part| match part {
            Part::ToolUse(call) => Some(tool_call(call)),
            _ => None,
        })
        .collect();
    let content = match (text.as_slice(), tool_calls.is_empty()) {
        ([], false) => None,
        ([one], _) => Some(ContentOut::Text(Cow::Borrowed(*one))),
        (many, _) => Some(ContentOut::Text(Cow::Owned(many.concat()))),
    };
    MessageOut {
        role: "assistant",
        content,
        tool_calls,
        tool_call_id: None,
    }
}

fn tool_call(call: &ToolCall) -> ToolCallOut<'_> {
    ToolCallOut {
        id: &call.id,
        kind: "function",
        function: FunctionOut {
            name: &call.name,
            arguments: &call.arguments,
        },
    }
}

fn user(parts: &[Part]) -> Vec<MessageOut<'_>> {
    let mut out = Vec::new();
    let mut moved_images = Vec::new();
    for part in parts {
        let Part::ToolResult(result) = part else {
            continue;
        };
        let text: Vec<&str> = result.content.iter().filter_map(Part::as_text).collect();
        moved_images.extend(
            result
                .content
                .iter()
                .filter(|part| matches!(part, Part::Image(_))),
        );
        let message = MessageOut::plain("tool", Some(ContentOut::Text(Cow::Owned(text.concat()))));
        out.push(MessageOut {
            tool_call_id: Some(&result.tool_call_id),
            ..message
        });
    }
    let own = parts
        .iter()
        .filter(|part| !matches!(part, Part::ToolResult(_)));
    let rest: Vec<&Part> = moved_images.into_iter().chain(own).collect();
    if !rest.is_empty() || out.is_empty() {
        out.push(MessageOut::plain("user", content(rest.into_iter())));
    }
    out
}

/// A single text part as a string, anything else as a parts array.
fn content<'a>(parts: impl Iterator<Item = &'a Part>) -> Option<ContentOut<'a>> {
    let parts: Vec<&Part> = parts.collect();
    if let [Part::Text(text)] = parts.as_slice() {
        return Some(ContentOut::Text(Cow::Borrowed(text)));
    }
    let parts = parts.into_iter().filter_map(|part| match part {
        Part::Text(text) => Some(PartOut::Text { text }),
        Part::Image(image) => Some(PartOut::ImageUrl {
            image_url: ImageUrlOut {
                url: image_url(image),
            },
        }),
        Part::ToolUse(_) | Part::ToolResult(_) => None,
    });
    Some(ContentOut::Parts(parts.collect()))
}

fn image_url(image: &Image) -> Cow<'_, str> {
    match image {
        Image::Url(url) => Cow::Borrowed(url),
        Image::Base64 { media_type, data } => {
            Cow::Owned(format!("data:{media_type};base64,{data}"))
        }
    }
}

fn tool_choice(choice: &ToolChoice) -> ToolChoiceOut<'_> {
    match choice {
        ToolChoice::Auto => ToolChoiceOut::Mode("auto"),
        ToolChoice::None => ToolChoiceOut::Mode("none"),
        ToolChoice::Required => ToolChoiceOut::Mode("required"),
        ToolChoice::Named(name) => ToolChoiceOut::Named {
            kind: "function",
            function: NamedOut { name },
        },
    }
}

// === impl MessageOut ===

impl<'a> MessageOut<'a> {
    fn plain(role: &'static str, content: Option<ContentOut<'a>>) -> Self {
        Self {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}
