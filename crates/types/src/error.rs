//! The OpenAI error body, `{"error":{"message","type","param","code"}}`, used for
//! every error Keel returns and for parsing the errors upstreams return.

use serde::{Deserialize, Serialize};

/// The whole error body as OpenAI sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself, boxed so that error enums carrying a body stay
    /// small on the happy path.
    pub error: Box<ErrorDetail>,
}

/// One error: a human message, a machine type, the offending parameter and a code.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// What went wrong, for a person.
    pub message: String,
    /// A low-cardinality class such as `invalid_request_error`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The request parameter at fault, when there is one.
    #[serde(default)]
    pub param: Option<String>,
    /// A machine-readable code such as `model_not_found`.
    #[serde(default, deserialize_with = "code_as_string")]
    pub code: Option<String>,
}

// === impl ErrorBody ===

impl ErrorBody {
    /// Builds an error body from its parts.
    pub fn new(
        message: impl Into<String>,
        kind: &str,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        Self {
            error: Box::new(ErrorDetail {
                message: message.into(),
                kind: kind.to_owned(),
                param: param.map(str::to_owned),
                code: code.map(str::to_owned),
            }),
        }
    }

    /// Serialises the body; an error body always serialises.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from(r#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#))
    }
}

/// Some OpenAI-compatible servers send a numeric `code`; keep it as text.
fn code_as_string<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(match value {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => Some(text),
        Some(other) => Some(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_in_openai_shape_with_nulls() {
        let body = ErrorBody::new("bad", "invalid_request_error", None, Some("x"));
        assert_eq!(
            body.to_json(),
            r#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":"x"}}"#
        );
    }

    #[test]
    fn parses_numeric_code_as_text() -> Result<(), serde_json::Error> {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":{"message":"m","type":"t","code":429}}"#)?;
        assert_eq!(body.error.code.as_deref(), Some("429"));
        Ok(())
    }
}
