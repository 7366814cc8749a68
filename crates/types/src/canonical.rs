//! The one internal representation of a chat request, a response and a stream
//! delta that every front end converts into and every provider adapter
//! converts out of: N front ends plus M providers, not N × M translators.
//!
//! The types are plain data ([`Request`], [`Response`], [`Delta`]); the
//! conversions are pure functions beside each wire format. OpenAI's format is
//! the gateway's client-side lingua franca, so its codec lives here
//! ([`openai`]); the Anthropic codecs live with the Anthropic adapter and the
//! `/v1/messages` front end. OpenAI → OpenAI passthrough does not come here
//! at all: it forwards the raw body.

pub mod openai;
mod request;
mod response;

pub use request::{Image, Message, Part, Request, Role, Tool, ToolCall, ToolChoice, ToolResult};
pub use response::{Delta, FinishReason, Response, ResponseRef, TokenUsage, ToolCallRef};

/// A request that cannot be expressed in the target format, with the
/// parameter at fault; front ends and adapters turn it into a 400.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslateError {
    /// The request parameter at fault, e.g. `messages`.
    pub param: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

// === impl TranslateError ===

impl TranslateError {
    /// An error about `param`.
    pub fn new(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            param,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TranslateError {}
