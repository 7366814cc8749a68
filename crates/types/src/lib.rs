//! Keel's wire types: the OpenAI-compatible request the gateway reads only as far
//! as routing needs, the OpenAI error body, the probe that classifies one
//! streamed chunk without building a JSON tree of it, and the [`canonical`]
//! request, response and stream delta that translating adapters meet in.

mod answer;
pub mod canonical;
mod chunk;
mod error;
pub mod hostile;
mod json_scan;
mod raw_object;
mod request;
mod secret;

pub use answer::{inspect_answer, AnswerInfo, AnswerList};
pub use chunk::{inspect_chunk, ChunkInfo, ChunkReader, ChunkText, PromptTokensDetails, Usage};
pub use error::{ErrorBody, ErrorDetail};
pub use raw_object::{write_json_string, RawObject};
pub use request::{parse_object, AnswerWriter, ChatRequest, Endpoint, RequestError};
pub use secret::SecretString;
