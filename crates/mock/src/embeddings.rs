//! `POST /v1/embeddings` in OpenAI's wire format: one vector per input,
//! derived from the input's text so the same input always gets the same
//! vector (tests can compare a cached answer with a fresh one), unit length,
//! `dimensions` long (1,536 when not given, as text-embedding-3-small), as
//! floats or as base64 of little-endian f32 (`encoding_format`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::errors::Api;
use crate::reply::estimate_tokens;
use crate::respond::{respond, Reply};
use crate::state::MockState;
use crate::wire::to_json;

/// The vector length when the request names none.
const DEFAULT_DIMENSIONS: usize = 1536;

/// The longest vector the mock makes (text-embedding-3-large's size).
const MAX_DIMENSIONS: usize = 3072;

/// The most inputs one request may carry, as OpenAI allows.
const MAX_INPUTS: usize = 2048;

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: Option<String>,
    input: Option<Value>,
    encoding_format: Option<String>,
    dimensions: Option<usize>,
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Embedding>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    embedding: Value,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(State(state): State<MockState>, body: Bytes) -> Response {
    let request: EmbeddingsRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(&format!("Invalid request body: {error}")),
    };
    let Some(model) = request.model.clone().filter(|model| !model.is_empty()) else {
        return bad_request("you must provide a model parameter");
    };
    let inputs = match inputs(request.input.as_ref()) {
        Ok(inputs) => inputs,
        Err(message) => return bad_request(message),
    };
    let dimensions = request.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
    if dimensions == 0 || dimensions > MAX_DIMENSIONS {
        return bad_request("'dimensions' must be between 1 and 3072");
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => return bad_request("'encoding_format' must be 'float' or 'base64'"),
    };
    respond(&state, Api::OpenAi, &model, |_| {
        Reply::Json(list_json(&model, &inputs, dimensions, base64))
    })
    .await
}

/// The inputs as text: a string, strings, or token arrays (read as their
/// numbers' text).
fn inputs(input: Option<&Value>) -> Result<Vec<String>, &'static str> {
    const INVALID: &str =
        "'input' must be a non-empty string or a non-empty array of strings or token arrays";
    let items = match input {
        Some(Value::String(text)) if !text.is_empty() => return Ok(vec![text.clone()]),
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_INPUTS => items,
        _ => return Err(INVALID),
    };
    if items.iter().all(Value::is_number) {
        // One input given as a token array.
        return Ok(vec![Value::Array(items.clone()).to_string()]);
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(text) if !text.is_empty() => Ok(text.clone()),
            Value::Array(tokens) if !tokens.is_empty() => Ok(item.to_string()),
            _ => Err(INVALID),
        })
        .collect()
}

fn list_json(model: &str, inputs: &[String], dimensions: usize, base64: bool) -> Bytes {
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = vector(input, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Value::from(vector.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>())
            };
            Embedding {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let tokens: u64 = inputs
        .iter()
        .map(|input| estimate_tokens(input.len()))
        .sum();
    let list = EmbeddingList {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    Bytes::from(to_json(&list))
}

/// A unit vector from `input`: a 64-bit FNV-1a hash of the text seeds a
/// xorshift generator, one value in [-1, 1) per dimension.
pub fn vector(input: &str, dimensions: usize) -> Vec<f32> {
    let mut state = input.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut values: Vec<f32> = (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect();
    let norm = values
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    values.iter_mut().for_each(|x| *x /= norm);
    values
}

fn bad_request(message: &str) -> Response {
    Api::OpenAi.error(StatusCode::BAD_REQUEST, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_length_and_differ_by_input() {
        let one = vector("hello", 16);
        assert_eq!(one, vector("hello", 16));
        assert_ne!(one, vector("hello!", 16));
        let norm: f32 = one.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert!(one.iter().all(|x| x.abs() <= 1.0));
    }

    #[test]
    fn inputs_are_strings_strings_or_token_arrays() {
        assert_eq!(inputs(Some(&Value::from("a"))), Ok(vec![String::from("a")]));
        let many = serde_json::json!(["a", "b"]);
        assert_eq!(inputs(Some(&many)).map(|inputs| inputs.len()), Ok(2));
        let tokens = serde_json::json!([1, 2, 3]);
        assert_eq!(inputs(Some(&tokens)).map(|inputs| inputs.len()), Ok(1));
        for bad in [
            serde_json::json!(""),
            serde_json::json!([]),
            serde_json::json!(3),
            serde_json::json!([""]),
        ] {
            assert!(inputs(Some(&bad)).is_err(), "{bad}");
        }
        assert!(inputs(None).is_err());
    }
}
