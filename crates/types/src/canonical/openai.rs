//! OpenAI Chat Completions ↔ canonical: the request a client sends, the
//! completion and the chunks a client reads. Provider adapters write OpenAI
//! completions and chunks from what their upstream sent; front ends in other
//! formats read them back.

mod chunk;
mod request_in;
mod request_out;
mod response;
mod scan;

pub use crate::json_scan::plain_run;
pub use chunk::{read_chunk, ChunkMeta, ChunkWriter};
pub use request_in::from_chat_request;
pub use request_out::{chat_request, request_body};
pub(crate) use response::optional_text;
pub use response::{
    completion_json, completion_json_with_id, read_checked_completion, read_completion,
    read_completion_borrowed,
};

#[cfg(test)]
#[path = "openai/tests.rs"]
mod tests;
