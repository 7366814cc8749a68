//! `POST /v1/responses`, in the wire format of OpenAI's Responses API.
//!
//! The reply is the chat endpoint's: the same words for the same chunk
//! count, the same tool choice, the same token estimates, so one prompt gets
//! the same answer through either API.

use std::cell::Cell;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};

use self::reply::{Content, Echo, ResponsesReply};
use crate::errors::Api;
use crate::reply::{content_chars, estimate_tokens, pick_tool, random_id, text_chunks, unix_now};
use crate::reply::{ToolCall, ToolChoice, ToolDef};
use crate::respond::{respond, Reply};
use crate::state::MockState;

mod reply;
mod wire;

/// The smallest `max_output_tokens` OpenAI accepts.
const MIN_OUTPUT_TOKENS: u64 = 16;

/// The roles a message input item may have.
const ROLES: [&str; 4] = ["user", "assistant", "system", "developer"];

/// The fields of a Responses request the mock acts on; others are ignored.
#[derive(Debug, Deserialize)]
struct ResponsesRequest {
    model: Option<String>,
    input: Option<Input>,
    instructions: Option<String>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    max_output_tokens: Option<u64>,
    stream: Option<bool>,
}

/// `input`: a user message as a string, or a list of input items.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a string or an array of input items")]
enum Input {
    Text(String),
    Items(Vec<Value>),
}

/// What the reply depends on in a valid request's input.
#[derive(Debug, Default, PartialEq, Eq)]
struct Prompt {
    /// Chars of text in messages, tool outputs and instructions.
    chars: usize,
    /// The last item is a function call's output: the answer is text.
    ends_with_tool_output: bool,
}

/// One input item, reduced to what the mock needs.
enum Item<'a> {
    /// A message, whose text counts toward the prompt.
    Text { content: &'a Value },
    /// A function call the assistant made earlier.
    FunctionCall,
    /// The output of a function call, which counts toward the prompt too.
    FunctionCallOutput { output: &'a Value },
    /// An item type the mock does not act on (reasoning, item references...).
    Other,
}

/// `POST /v1/responses`.
pub(crate) async fn responses(State(state): State<MockState>, body: Bytes) -> Response {
    let request = match parse(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    let Some(model) = request.model.clone().filter(|model| !model.is_empty()) else {
        return bad_request("Missing required parameter: 'model'.");
    };
    let (prompt, tools) = match validate(&request) {
        Ok(valid) => valid,
        Err(message) => return bad_request(&message),
    };
    let stream = request.stream.unwrap_or(false);
    respond(&state, Api::OpenAi, &model, |chunks| {
        let reply = build_reply(request, &prompt, &tools, model.clone(), chunks);
        if stream {
            Reply::Stream(Box::new(reply))
        } else {
            Reply::Json(reply.response_json())
        }
    })
    .await
}

/// Parses the body, or says what is wrong with it.
fn parse(body: &[u8]) -> Result<ResponsesRequest, String> {
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

/// Checks what serde cannot, and reads the prompt and the function tools.
fn validate(request: &ResponsesRequest) -> Result<(Prompt, Vec<ToolDef>), String> {
    if let Some(limit) = request.max_output_tokens {
        if limit < MIN_OUTPUT_TOKENS {
            return Err(format!(
                "Invalid 'max_output_tokens': integer below minimum value. \
                 Expected a value >= {MIN_OUTPUT_TOKENS}, but got {limit} instead."
            ));
        }
    }
    let mut prompt = prompt(request.input.as_ref())?;
    prompt.chars += request
        .instructions
        .as_deref()
        .map_or(0, |text| text.chars().count());
    let tools = function_tools(request.tools.as_deref().unwrap_or_default())?;
    Ok((prompt, tools))
}

/// Reads the input items, counting their text as the chat endpoint counts messages.
fn prompt(input: Option<&Input>) -> Result<Prompt, String> {
    let items = match input {
        None => return Ok(Prompt::default()),
        Some(Input::Text(text)) => {
            return Ok(Prompt {
                chars: text.chars().count(),
                ends_with_tool_output: false,
            })
        }
        Some(Input::Items(items)) => items,
    };
    let mut prompt = Prompt::default();
    for (index, item) in items.iter().enumerate() {
        let item = classify(index, item)?;
        prompt.ends_with_tool_output = matches!(item, Item::FunctionCallOutput { .. });
        prompt.chars += match item {
            Item::Text { content } | Item::FunctionCallOutput { output: content } => {
                content_chars(content)
            }
            Item::FunctionCall | Item::Other => 0,
        };
    }
    Ok(prompt)
}

/// Checks input item `index` and says what kind it is.
fn classify(index: usize, item: &Value) -> Result<Item<'_>, String> {
    let path = format!("input[{index}]");
    let Some(fields) = item.as_object() else {
        return Err(format!("Invalid type for '{path}': expected an object."));
    };
    // Items without a `type` but with a `role` are messages (the short form).
    match fields.get("type").and_then(Value::as_str) {
        None | Some("message") => message(&path, fields),
        Some("function_call") => {
            for field in ["call_id", "name", "arguments"] {
                required_string(&path, fields, field)?;
            }
            Ok(Item::FunctionCall)
        }
        Some("function_call_output") => {
            required_string(&path, fields, "call_id")?;
            match fields.get("output") {
                Some(output @ (Value::String(_) | Value::Array(_))) => {
                    Ok(Item::FunctionCallOutput { output })
                }
                Some(_) => Err(format!(
                    "Invalid type for '{path}.output': expected a string or an array."
                )),
                None => Err(missing(&format!("{path}.output"))),
            }
        }
        Some(_) => Ok(Item::Other),
    }
}

/// Checks a message item: a known role, and content as a string or parts.
fn message<'a>(path: &str, fields: &'a Map<String, Value>) -> Result<Item<'a>, String> {
    let role = required_string(path, fields, "role")?;
    if !ROLES.contains(&role) {
        return Err(format!(
            "Invalid value: '{role}'. Supported values are: 'assistant', 'system', 'developer', and 'user'."
        ));
    }
    let content = fields
        .get("content")
        .ok_or_else(|| missing(&format!("{path}.content")))?;
    match content {
        Value::String(_) => Ok(Item::Text { content }),
        Value::Array(parts) => {
            for (index, part) in parts.iter().enumerate() {
                content_part(&format!("{path}.content[{index}]"), part)?;
            }
            Ok(Item::Text { content })
        }
        _ => Err(format!(
            "Invalid type for '{path}.content': expected a string or an array of content parts."
        )),
    }
}

/// Checks a content part: typed, and text parts with their text.
fn content_part(path: &str, part: &Value) -> Result<(), String> {
    let Some(fields) = part.as_object() else {
        return Err(format!("Invalid type for '{path}': expected an object."));
    };
    match required_string(path, fields, "type")? {
        "input_text" | "output_text" => required_string(path, fields, "text").map(drop),
        _ => Ok(()),
    }
}

fn required_string<'a>(
    path: &str,
    fields: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a str, String> {
    match fields.get(field) {
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(format!(
            "Invalid type for '{path}.{field}': expected a string."
        )),
        None => Err(missing(&format!("{path}.{field}"))),
    }
}

fn missing(path: &str) -> String {
    format!("Missing required parameter: '{path}'.")
}

/// The function tools offered (other tool types are echoed but never called).
fn function_tools(tools: &[Value]) -> Result<Vec<ToolDef>, String> {
    let mut functions = Vec::new();
    for (index, tool) in tools.iter().enumerate() {
        let path = format!("tools[{index}]");
        let Some(fields) = tool.as_object() else {
            return Err(format!("Invalid type for '{path}': expected an object."));
        };
        if required_string(&path, fields, "type")? != "function" {
            continue;
        }
        functions.push(ToolDef {
            name: required_string(&path, fields, "name")?.to_owned(),
            schema: fields.get("parameters").cloned(),
        });
    }
    Ok(functions)
}

fn build_reply(
    request: ResponsesRequest,
    prompt: &Prompt,
    tools: &[ToolDef],
    model: String,
    chunks: u32,
) -> ResponsesReply {
    let choice = tool_choice(request.tool_choice.as_ref());
    // After a function's output the conversation goes on in text, as in chat.
    let tool = pick_tool(tools, &choice).filter(|_| !prompt.ends_with_tool_output);
    let (item_id, content, incomplete) = match tool {
        Some(tool) => (
            random_id("fc_", 48),
            Content::Tool(ToolCall::new(tool, random_id("call_", 24), chunks)),
            false,
        ),
        None => {
            // The chat endpoint's cut: one token per chunk, at most the limit.
            let limit = request.max_output_tokens.unwrap_or(u64::MAX);
            let incomplete = limit < u64::from(chunks);
            let count = if incomplete { limit as u32 } else { chunks };
            (
                random_id("msg_", 48),
                Content::Text(text_chunks(&model, count)),
                incomplete,
            )
        }
    };
    let echo = Echo {
        instructions: request.instructions,
        max_output_tokens: request.max_output_tokens,
        tool_choice: request.tool_choice.unwrap_or_else(|| "auto".into()),
        tools: request.tools.iter().flatten().map(echo_tool).collect(),
    };
    ResponsesReply {
        id: random_id("resp_", 48),
        created_at: unix_now(),
        model,
        echo,
        item_id,
        full: content.joined(),
        content,
        incomplete,
        input_tokens: estimate_tokens(prompt.chars),
        next_sequence: Cell::new(0),
    }
}

/// The Responses `tool_choice`: `"none"`, `"auto"`, `"required"` or `{"type":"function","name"}`.
fn tool_choice(choice: Option<&Value>) -> ToolChoice {
    match choice {
        Some(Value::String(mode)) if mode == "none" => ToolChoice::None,
        Some(Value::Object(object)) => object
            .get("name")
            .and_then(Value::as_str)
            .map_or(ToolChoice::First, |name| ToolChoice::Named(name.to_owned())),
        _ => ToolChoice::First,
    }
}

/// A tool as the response lists it: function tools with every field OpenAI
/// fills in (`strict` defaults to true in this API), other tools as given.
fn echo_tool(tool: &Value) -> Value {
    let Some(fields) = tool.as_object() else {
        return tool.clone();
    };
    if fields.get("type").and_then(Value::as_str) != Some("function") {
        return tool.clone();
    }
    let field = |name: &str| fields.get(name).cloned().unwrap_or(Value::Null);
    let mut echoed = Map::new();
    echoed.insert("type".into(), "function".into());
    echoed.insert("description".into(), field("description"));
    echoed.insert("name".into(), field("name"));
    echoed.insert("parameters".into(), field("parameters"));
    echoed.insert(
        "strict".into(),
        fields.get("strict").cloned().unwrap_or(Value::Bool(true)),
    );
    Value::Object(echoed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn prompt_of(input: Value) -> Result<Prompt, String> {
        let input: Input = serde_json::from_value(input).map_err(|error| error.to_string())?;
        prompt(Some(&input))
    }

    #[test]
    fn text_counts_like_chat_messages_and_a_trailing_output_is_noted() {
        let items = json!([
            {"role": "user", "content": "abcd"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "efgh"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"long\": true}"},
            {"type": "function_call_output", "call_id": "c", "output": "ijkl"},
        ]);
        let expected = Prompt {
            chars: 12,
            ends_with_tool_output: true,
        };
        assert_eq!(prompt_of(items), Ok(expected));
        assert_eq!(prompt_of(json!("naïve")).map(|p| p.chars), Ok(5));
    }

    #[test]
    fn malformed_items_are_named_by_path() {
        let cases = [
            (json!([{"role": "bot", "content": "x"}]), "'bot'"),
            (json!([{"role": "user"}]), "'input[0].content'"),
            (
                json!([{"role": "user", "content": [{"type": "input_text"}]}]),
                "'input[0].content[0].text'",
            ),
            (
                json!([{"type": "function_call", "call_id": "c", "name": "f"}]),
                "'input[0].arguments'",
            ),
            (json!(["hi"]), "'input[0]'"),
        ];
        for (input, named) in cases {
            let error = prompt_of(input.clone()).err().unwrap_or_default();
            assert!(error.contains(named), "{input}: {error:?}");
        }
    }

    #[test]
    fn tool_choice_reads_the_responses_shape() {
        assert_eq!(tool_choice(Some(&json!("none"))), ToolChoice::None);
        assert_eq!(tool_choice(Some(&json!("required"))), ToolChoice::First);
        assert_eq!(
            tool_choice(Some(&json!({"type": "function", "name": "b"}))),
            ToolChoice::Named("b".into())
        );
    }

    #[test]
    fn function_tools_are_echoed_with_defaults_and_others_verbatim() {
        let function = json!({"type": "function", "name": "f", "parameters": {"type": "object"}});
        assert_eq!(
            echo_tool(&function),
            json!({"type": "function", "description": null, "name": "f",
                   "parameters": {"type": "object"}, "strict": true})
        );
        let search = json!({"type": "web_search"});
        assert_eq!(echo_tool(&search), search);
    }
}
