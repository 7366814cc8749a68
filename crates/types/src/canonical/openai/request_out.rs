//! The canonical [`Request`] → an OpenAI chat request body, for front ends
//! in other formats whose requests go through the router.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::canonical::{Image, Message, Part, Request, Role, ToolCall, ToolChoice};
use crate::raw_object::RawObject;
use crate::request::{nests_deeper_than, too_deep, ChatRequest, RequestError, MAX_DEPTH};

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
    let fields = body_fields(request);
    let mut out = Vec::with_capacity(object_len(&fields));
    out.push(b'{');
    for (position, (key, value)) in fields.iter().enumerate() {
        if position > 0 {
            out.push(b',');
        }
        push_key(&mut out, key);
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
    out
}

/// `request` as the chat request the router takes: the same checks and
/// the same fields as parsing [`request_body`]'s output, without writing
/// the body and reading it back. Fields are kept as their JSON text, as a
/// parsed body keeps them.
pub fn chat_request(request: &Request) -> Result<ChatRequest, RequestError> {
    if request.model.is_empty() {
        return Err(RequestError::MissingModel);
    }
    if request.messages.is_empty() {
        return Err(RequestError::MissingMessages);
    }
    let fields = body_fields(request);
    // The body's own object is one level; each value nests below it. Only
    // tools (their parameters) and the response format hold the client's
    // JSON as it was sent; everything else Keel writes a few levels deep.
    if fields.iter().any(|(key, value)| {
        matches!(key.as_ref(), "tools" | "response_format")
            && nests_deeper_than(value.get().as_bytes(), MAX_DEPTH - 1)
    }) {
        return Err(too_deep());
    }
    let body_len = object_len(&fields);
    let include_usage = request.stream && request.include_usage;
    let raw = RawObject::from_fields(fields);
    Ok(ChatRequest::from_parts(
        raw,
        request.model.clone(),
        request.stream,
        include_usage,
        body_len,
    ))
}

/// The top-level fields of `request`'s chat body, in order, each written
/// as JSON text on its own.
fn body_fields(request: &Request) -> Vec<(Cow<'static, str>, Box<RawValue>)> {
    let mut fields = Fields(Vec::with_capacity(4));
    fields.push("model", &request.model);
    let messages: Vec<MessageOut<'_>> = request.messages.iter().flat_map(messages).collect();
    fields.push("messages", &messages);
    if !request.tools.is_empty() {
        let tools: Vec<ToolOut<'_>> = request
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
            .collect();
        fields.push("tools", &tools);
    }
    if let Some(choice) = &request.tool_choice {
        fields.push("tool_choice", &tool_choice(choice));
    }
    fields.push_some("parallel_tool_calls", request.parallel_tool_calls);
    fields.push_some("max_tokens", request.max_tokens);
    fields.push_some("temperature", request.temperature);
    fields.push_some("top_p", request.top_p);
    fields.push_some("top_k", request.top_k);
    if !request.stop.is_empty() {
        fields.push("stop", &request.stop);
    }
    if request.stream {
        fields.push("stream", &true);
        if request.include_usage {
            fields.push(
                "stream_options",
                &StreamOptionsOut {
                    include_usage: true,
                },
            );
        }
    }
    fields.push_some("user", request.user.as_deref());
    // Held as JSON text; text that is somehow not JSON is left out.
    if let Some(format) = request
        .response_format
        .as_deref()
        .and_then(|text| RawValue::from_string(text.to_owned()).ok())
    {
        fields.0.push((Cow::Borrowed("response_format"), format));
    }
    fields.push_some("reasoning_effort", request.reasoning_effort.as_deref());
    fields.push_some("service_tier", request.service_tier.as_deref());
    fields.0
}

/// The length of the object [`request_body`] writes from `fields`.
fn object_len(fields: &[(Cow<'static, str>, Box<RawValue>)]) -> usize {
    let commas = fields.len().saturating_sub(1);
    let pairs: usize = fields
        .iter()
        .map(|(key, value)| key.len() + 3 + value.get().len())
        .sum();
    2 + commas + pairs
}

/// `"key":` for a key that needs no escaping (every key written here).
fn push_key(out: &mut Vec<u8>, key: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// The fields of a body being written.
struct Fields(Vec<(Cow<'static, str>, Box<RawValue>)>);

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

// === impl Fields ===

impl Fields {
    /// Adds `key` with `value` written as JSON.
    fn push<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        // Serialising these types cannot fail.
        if let Ok(value) = serde_json::value::to_raw_value(value) {
            self.0.push((Cow::Borrowed(key), value));
        }
    }

    /// Adds `key` when `value` is set.
    fn push_some<T: Serialize>(&mut self, key: &'static str, value: Option<T>) {
        if let Some(value) = value {
            self.push(key, &value);
        }
    }
}
