//! `POST /v1/messages`, in Anthropic's wire format.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use self::reply::{Content, MessageReply};
use crate::errors::Api;
use crate::reply::{content_chars, estimate_tokens, pick_tool, random_id, text_chunks};
use crate::reply::{ToolCall, ToolChoice, ToolDef};
use crate::respond::{respond, Reply};
use crate::state::MockState;

mod reply;
mod wire;

/// The fields of a messages request the mock acts on; others are ignored.
#[derive(Debug, Deserialize)]
struct MessagesRequest {
    model: Option<String>,
    max_tokens: Option<u64>,
    #[serde(default)]
    messages: Vec<InputMessage>,
    system: Option<Value>,
    stream: Option<bool>,
    tools: Option<Vec<ToolSpec>>,
    tool_choice: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct InputMessage {
    role: String,
    content: Value,
}

#[derive(Debug, Deserialize)]
struct ToolSpec {
    name: String,
    input_schema: Option<Value>,
}

/// `POST /v1/messages`.
pub(crate) async fn messages(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !headers.contains_key("anthropic-version") {
        return bad_request("anthropic-version: header is required");
    }
    let request = match parse(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    let Some(model) = request.model.clone().filter(|model| !model.is_empty()) else {
        return bad_request("model: Field required");
    };
    let Some(max_tokens) = request.max_tokens else {
        return bad_request("max_tokens: Field required");
    };
    let stream = request.stream.unwrap_or(false);
    respond(&state, Api::Anthropic, &model, |chunks| {
        let reply = build_reply(&request, model.clone(), max_tokens, chunks);
        if stream {
            Reply::Stream(Box::new(reply))
        } else {
            Reply::Json(reply.message_json())
        }
    })
    .await
}

/// Parses the body, or says what is wrong with it.
fn parse(body: &[u8]) -> Result<MessagesRequest, String> {
    serde_json::from_slice(body).map_err(|error| {
        if error.is_data() {
            format!("Invalid request body: {error}")
        } else {
            format!("There was an error parsing the body as JSON: {error}")
        }
    })
}

fn bad_request(message: &str) -> Response {
    Api::Anthropic.error(StatusCode::BAD_REQUEST, message)
}

fn build_reply(
    request: &MessagesRequest,
    model: String,
    max_tokens: u64,
    chunks: u32,
) -> MessageReply {
    let system_chars = request.system.as_ref().map_or(0, content_chars);
    let message_chars: usize = request
        .messages
        .iter()
        .map(|message| content_chars(&message.content))
        .sum();
    let (content, stop_reason) = match tool_to_call(request) {
        Some(tool) => (
            Content::Tool(ToolCall::new(&tool, random_id("toolu_01", 22), chunks)),
            "tool_use",
        ),
        None if max_tokens < u64::from(chunks) => (
            Content::Text(text_chunks(&model, max_tokens as u32)),
            "max_tokens",
        ),
        None => (Content::Text(text_chunks(&model, chunks)), "end_turn"),
    };
    MessageReply {
        id: random_id("msg_01", 22),
        model,
        content,
        stop_reason,
        input_tokens: estimate_tokens(system_chars + message_chars),
    }
}

/// The tool to call: none right after a tool result (the conversation goes on in text).
fn tool_to_call(request: &MessagesRequest) -> Option<ToolDef> {
    let tools = request.tools.as_deref().unwrap_or_default();
    if request.messages.last().is_some_and(is_tool_result) {
        return None;
    }
    let tools: Vec<ToolDef> = tools
        .iter()
        .map(|tool| ToolDef {
            name: tool.name.clone(),
            schema: tool.input_schema.clone(),
        })
        .collect();
    pick_tool(&tools, &tool_choice(request.tool_choice.as_ref())).cloned()
}

fn is_tool_result(message: &InputMessage) -> bool {
    message.role == "user"
        && message.content.as_array().is_some_and(|blocks| {
            blocks
                .iter()
                .any(|block| block.get("type").and_then(Value::as_str) == Some("tool_result"))
        })
}

/// Anthropic's `tool_choice`: `{"type": "auto" | "any" | "none"}` or `{"type": "tool", "name"}`.
fn tool_choice(choice: Option<&Value>) -> ToolChoice {
    let Some(choice) = choice else {
        return ToolChoice::First;
    };
    match choice.get("type").and_then(Value::as_str) {
        Some("none") => ToolChoice::None,
        Some("tool") => choice
            .get("name")
            .and_then(Value::as_str)
            .map_or(ToolChoice::First, |name| ToolChoice::Named(name.to_owned())),
        _ => ToolChoice::First,
    }
}
