//! `POST /v1/chat/completions` and `GET /v1/models`, in OpenAI's wire format.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use self::reply::{ChatReply, Content};
use self::wire::{ModelEntry, ModelList};
use crate::errors::{json_response, Api};
use crate::reply::{arguments_for, content_chars, estimate_tokens, pick_tool, random_id};
use crate::reply::{split_chars, text_chunks, unix_now};
use crate::reply::{ToolCall, ToolChoice, ToolDef};
use crate::respond::{respond, Reply};
use crate::state::MockState;
use crate::wire::to_json;

mod reply;
mod wire;

/// The models `GET /v1/models` lists; any other name works as well.
pub const LISTED_MODELS: [&str; 4] = [
    "mock-gpt-4o-mini",
    "mock-gpt-4o",
    "mock-claude-sonnet",
    "mock-claude-haiku",
];

/// The name `GET /v1/models` is counted and faulted under: its plan's
/// `fail` (or the `*` plan's) fails the list, so a test can take the whole
/// upstream down for health checks; no model is called that.
pub const MODELS_LIST: &str = "_models";

/// The fields of a chat completion request the mock acts on; others are ignored.
#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: Option<String>,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    tools: Option<Vec<ChatTool>>,
    tool_choice: Option<Value>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    response_format: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ChatTool {
    function: FunctionDef,
}

#[derive(Debug, Deserialize)]
struct FunctionDef {
    name: String,
    parameters: Option<Value>,
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(State(state): State<MockState>, body: Bytes) -> Response {
    let request = match parse(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    let Some(model) = request.model.clone().filter(|model| !model.is_empty()) else {
        return bad_request("you must provide a model parameter");
    };
    let stream = request.stream.unwrap_or(false);
    respond(&state, Api::OpenAi, &model, |chunks| {
        let reply = build_reply(request, model.clone(), chunks);
        if stream {
            Reply::Stream(Box::new(reply))
        } else {
            Reply::Json(reply.completion_json())
        }
    })
    .await
}

/// `GET /v1/models`, failed as the plan of [`MODELS_LIST`] says.
pub(crate) async fn models(State(state): State<MockState>) -> Response {
    let mut admission = state.admit(MODELS_LIST);
    if let Some(fail) = admission.fail {
        admission.guard.fail_injected();
        return Api::OpenAi.injected_failure(&fail);
    }
    admission.guard.complete();
    let data = LISTED_MODELS
        .iter()
        .map(|id| ModelEntry {
            id,
            object: "model",
            created: 1_700_000_000,
            owned_by: "keel-mock",
        })
        .collect();
    let list = ModelList {
        object: "list",
        data,
    };
    json_response(StatusCode::OK, Bytes::from(to_json(&list)))
}

/// Parses the body, or says what is wrong with it.
fn parse(body: &[u8]) -> Result<ChatRequest, String> {
    serde_json::from_slice(body).map_err(|error| {
        if error.is_data() {
            format!("Invalid request body: {error}")
        } else {
            format!("We could not parse the JSON body of your request: {error}")
        }
    })
}

fn bad_request(message: &str) -> Response {
    Api::OpenAi.error(StatusCode::BAD_REQUEST, message)
}

fn build_reply(request: ChatRequest, model: String, chunks: u32) -> ChatReply {
    let prompt_chars = request
        .messages
        .iter()
        .filter_map(|message| message.content.as_ref())
        .map(content_chars)
        .sum();
    let include_usage = request
        .stream_options
        .as_ref()
        .and_then(|options| options.include_usage)
        .unwrap_or(false);
    let (content, finish_reason) = match tool_to_call(&request) {
        Some(tool) => (
            Content::Tool(ToolCall::new(&tool, random_id("call_", 24), chunks)),
            "tool_calls",
        ),
        None if structured_schema(&request).is_some() => {
            let object = arguments_for(structured_schema(&request)).to_string();
            (Content::Text(split_chars(&object, chunks)), "stop")
        }
        None => {
            let limit = request
                .max_completion_tokens
                .or(request.max_tokens)
                .unwrap_or(u64::MAX);
            let truncated = limit < u64::from(chunks);
            let count = if truncated { limit as u32 } else { chunks };
            (
                Content::Text(text_chunks(&model, count)),
                if truncated { "length" } else { "stop" },
            )
        }
    };
    ChatReply {
        id: random_id("chatcmpl-", 29),
        created: unix_now(),
        model,
        content,
        finish_reason,
        prompt_tokens: estimate_tokens(prompt_chars),
        include_usage,
    }
}

/// The schema of `response_format: {type: json_schema, json_schema:
/// {schema}}`: the answer is then one JSON object that follows it.
fn structured_schema(request: &ChatRequest) -> Option<&Value> {
    let format = request.response_format.as_ref()?;
    if format.get("type").and_then(Value::as_str) != Some("json_schema") {
        return None;
    }
    format.get("json_schema")?.get("schema")
}

/// The tool to call: none after a tool result (the conversation goes on in text).
fn tool_to_call(request: &ChatRequest) -> Option<ToolDef> {
    let tools = request.tools.as_deref().unwrap_or_default();
    if request
        .messages
        .last()
        .is_some_and(|message| message.role == "tool")
    {
        return None;
    }
    let tools: Vec<ToolDef> = tools
        .iter()
        .map(|tool| ToolDef {
            name: tool.function.name.clone(),
            schema: tool.function.parameters.clone(),
        })
        .collect();
    pick_tool(&tools, &tool_choice(request.tool_choice.as_ref())).cloned()
}

/// OpenAI's `tool_choice`: `"none"`, `"auto"`, `"required"` or `{"type":"function","function":{"name"}}`.
fn tool_choice(choice: Option<&Value>) -> ToolChoice {
    match choice {
        Some(Value::String(mode)) if mode == "none" => ToolChoice::None,
        Some(Value::Object(object)) => object
            .get("function")
            .and_then(|function| function.get("name"))
            .and_then(Value::as_str)
            .map_or(ToolChoice::First, |name| ToolChoice::Named(name.to_owned())),
        _ => ToolChoice::First,
    }
}
