//! Serialization helpers shared by both wire formats: JSON bytes and SSE framing.

use bytes::Bytes;
use serde::Serialize;

/// Serializes as JSON `null`; for fields the providers always send as null.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Null;

/// Serializes `value` to JSON.
///
/// The mock's own types cannot fail to serialize; should one ever fail, the
/// error is logged and `{}` sent rather than panicking on a client's request.
pub(crate) fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|error| {
        tracing::error!(%error, "keel mock: failed to serialize a response");
        b"{}".to_vec()
    })
}

/// An SSE event with only a data line: `data: <json>\n\n` (OpenAI framing).
pub(crate) fn data_event(value: &impl Serialize) -> Bytes {
    frame(None, &to_json(value))
}

/// An SSE event with an event name: `event: <name>\ndata: <json>\n\n` (Anthropic framing).
pub(crate) fn named_event(name: &str, value: &impl Serialize) -> Bytes {
    frame(Some(name), &to_json(value))
}

/// Frames raw data bytes as one SSE event.
pub(crate) fn frame(name: Option<&str>, data: &[u8]) -> Bytes {
    let name_len = name.map_or(0, |name| name.len() + 8);
    let mut event = Vec::with_capacity(name_len + data.len() + 8);
    if let Some(name) = name {
        event.extend_from_slice(b"event: ");
        event.extend_from_slice(name.as_bytes());
        event.push(b'\n');
    }
    event.extend_from_slice(b"data: ");
    event.extend_from_slice(data);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn frames_follow_sse_syntax() {
        assert_eq!(data_event(&json!({"a": 1})), "data: {\"a\":1}\n\n");
        assert_eq!(
            named_event("ping", &json!({"type": "ping"})),
            "event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
        assert_eq!(frame(None, b"[DONE]"), "data: [DONE]\n\n");
    }
}
