//! A routed request as the gateway sees it (a chat completion, or an
//! embeddings request, which routes the same way): the few fields routing
//! needs, parsed and checked, and the rest kept raw for the upstream.

use std::sync::Arc;

use serde::Deserialize;

use crate::canonical::ResponseRef;
use crate::json_scan::Scan;
use crate::raw_object::{write_json_string, RawObject};

/// A parsed `POST /v1/chat/completions` body (or `POST /v1/embeddings`,
/// whose [`Endpoint`] says so).
#[derive(Debug)]
pub struct ChatRequest {
    raw: RawObject,
    model: String,
    stream: bool,
    include_usage: bool,
    body_len: usize,
    endpoint: Endpoint,
    /// The session the front end found for session affinity (a hash of
    /// the tenant and the affinity key's value); not part of the body.
    session: Option<u64>,
    /// Client headers the upstream gets as they came (`anthropic-beta`,
    /// `anthropic-version` of a Messages body passed through), as (name,
    /// value) pairs.
    forwarded_headers: Vec<(String, String)>,
    /// How the front end that sent the request writes its answer, when it
    /// translates it (see [`AnswerWriter`]).
    answer_writer: Option<AnswerWriter>,
}

/// How a translating front end writes a completion in its own shape. Given
/// to the adapter with the request, it lets one read of the completion
/// serve both the adapter's checks and the translation.
#[derive(Clone)]
pub struct AnswerWriter(Arc<AnswerWrite>);

/// What an [`AnswerWriter`] runs.
type AnswerWrite = dyn Fn(&ResponseRef<'_>) -> Vec<u8> + Send + Sync;

/// The upstream API a request is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Endpoint {
    /// Chat Completions (`/chat/completions`).
    #[default]
    Chat,
    /// Embeddings (`/embeddings`): never streamed.
    Embeddings,
    /// The Responses API passed through as it came (`/responses`), for
    /// targets that speak it natively.
    Responses,
    /// Anthropic's Messages API passed through as it came (`/v1/messages`),
    /// for models whose every target is Anthropic-kind.
    Messages,
}

/// Why a request body was refused, with the parameter at fault.
#[derive(Debug)]
pub enum RequestError {
    /// The body is not valid JSON.
    InvalidJson(String),
    /// The body is JSON but not an object.
    NotAnObject,
    /// `model` is absent or empty.
    MissingModel,
    /// A known field has the wrong type.
    InvalidField {
        /// The field name.
        param: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// `messages` is absent or not a non-empty array.
    MissingMessages,
    /// `input` (embeddings) is absent, empty, or not a string or array.
    MissingInput,
    /// A top-level key appears more than once.
    DuplicateKey(String),
    /// A field this front end understands but cannot honour.
    Unsupported {
        /// The field.
        param: String,
        /// Why, and what to do instead.
        message: String,
    },
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Parses a client's JSON body as an object: invalid JSON (nesting deeper
/// than serde_json's limit of 128 included), a non-object, or a top-level
/// key given twice is refused.
pub fn parse_object(body: &[u8]) -> Result<RawObject, RequestError> {
    // Values Keel keeps raw are skipped by serde_json without its depth
    // check, so the depth is checked here, in one pass over the bytes.
    if nests_deeper_than(body, MAX_DEPTH) {
        return Err(too_deep());
    }
    let raw: RawObject = serde_json::from_slice(body).map_err(|error| {
        if error.classify() == serde_json::error::Category::Data {
            RequestError::NotAnObject
        } else {
            RequestError::InvalidJson(error.to_string())
        }
    })?;
    if let Some(key) = raw.duplicate_key() {
        return Err(RequestError::DuplicateKey(key.to_owned()));
    }
    Ok(raw)
}

/// The refusal of a body that nests deeper than [`MAX_DEPTH`].
pub(crate) fn too_deep() -> RequestError {
    RequestError::InvalidJson(format!(
        "the request body nests arrays and objects more than {MAX_DEPTH} deep"
    ))
}

/// The deepest nesting of arrays and objects accepted (serde_json's own
/// recursion limit).
pub const MAX_DEPTH: usize = 128;

/// Whether `json` opens more than `limit` arrays or objects at once,
/// brackets inside strings aside. Linear, a string's text passed over
/// eight bytes at a time; reads invalid JSON too (the parser refuses that
/// afterwards).
pub(crate) fn nests_deeper_than(json: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&byte) = json.get(at) {
        at += 1;
        match byte {
            b'"' => at = after_string(json, at),
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Where the string whose text starts at `at` ends: past its closing quote
/// (or at the end of `json`). A backslash hides the byte after it.
fn after_string(json: &[u8], mut at: usize) -> usize {
    loop {
        at += crate::json_scan::plain_run(json.get(at..).unwrap_or_default());
        match json.get(at) {
            None => return at,
            Some(b'"') => return at + 1,
            Some(b'\\') => at += 2,
            // A control character: not this scan's to refuse.
            Some(_) => at += 1,
        }
    }
}

/// Whether the JSON value `raw` (checked by the parser, so with no white
/// space around it) is an empty array; `None` when it is not an array
/// (`null` aside: that is an absent field).
fn array_is_empty(raw: &str) -> Option<bool> {
    let mut scan = Scan::new(raw);
    if scan.literal("null") {
        return Some(true);
    }
    scan.next_is(b'[').then(|| scan.next_is(b']'))
}

/// The request's `model`: a non-empty string.
fn required_model(raw: &RawObject) -> Result<String, RequestError> {
    match raw.parse::<String>("model") {
        Some(Ok(model)) if !model.is_empty() => Ok(model),
        Some(Err(_)) => Err(RequestError::InvalidField {
            param: "model",
            expected: "a string",
        }),
        _ => Err(RequestError::MissingModel),
    }
}

// === impl AnswerWriter ===

impl AnswerWriter {
    /// A writer that runs `write`.
    pub fn new(write: impl Fn(&ResponseRef<'_>) -> Vec<u8> + Send + Sync + 'static) -> Self {
        Self(Arc::new(write))
    }

    /// `answer` written in the front end's shape.
    pub fn write(&self, answer: &ResponseRef<'_>) -> Vec<u8> {
        (self.0)(answer)
    }
}

impl std::fmt::Debug for AnswerWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("AnswerWriter")
    }
}

// === impl ChatRequest ===

impl ChatRequest {
    /// Parses and checks a request body.
    pub fn parse(body: &[u8]) -> Result<Self, RequestError> {
        let raw = parse_object(body)?;
        let model = required_model(&raw)?;
        match raw
            .get("messages")
            .map(|messages| array_is_empty(messages.get()))
        {
            Some(Some(false)) => {}
            Some(None) => {
                return Err(RequestError::InvalidField {
                    param: "messages",
                    expected: "an array of messages",
                })
            }
            _ => return Err(RequestError::MissingMessages),
        }
        let stream = match raw.parse::<bool>("stream") {
            None => false,
            Some(Ok(stream)) => stream,
            Some(Err(_)) => {
                return Err(RequestError::InvalidField {
                    param: "stream",
                    expected: "a boolean",
                })
            }
        };
        let include_usage = match raw.parse::<StreamOptions>("stream_options") {
            None => false,
            Some(Ok(options)) => options.include_usage,
            Some(Err(_)) => {
                return Err(RequestError::InvalidField {
                    param: "stream_options",
                    expected: "an object like {\"include_usage\": true}",
                })
            }
        };
        Ok(Self {
            raw,
            model,
            stream,
            include_usage,
            body_len: body.len(),
            endpoint: Endpoint::Chat,
            session: None,
            forwarded_headers: Vec::new(),
            answer_writer: None,
        })
    }

    /// A chat request already checked, from its fields (a translating
    /// front end's, written from the canonical form).
    pub(crate) fn from_parts(
        raw: RawObject,
        model: String,
        stream: bool,
        include_usage: bool,
        body_len: usize,
    ) -> Self {
        Self {
            raw,
            model,
            stream,
            include_usage,
            body_len,
            endpoint: Endpoint::Chat,
            session: None,
            forwarded_headers: Vec::new(),
            answer_writer: None,
        }
    }

    /// Parses and checks a `POST /v1/embeddings` body: `model` and a
    /// non-empty `input` (a string, or an array of strings or of token
    /// arrays); every other field (`encoding_format`, `dimensions`, `user`)
    /// goes to the upstream as sent.
    pub fn parse_embeddings(body: &[u8]) -> Result<Self, RequestError> {
        let raw = parse_object(body)?;
        let model = required_model(&raw)?;
        let input = raw.parse::<serde_json::Value>("input").and_then(Result::ok);
        let usable = match &input {
            Some(serde_json::Value::String(text)) => !text.is_empty(),
            Some(serde_json::Value::Array(items)) => !items.is_empty(),
            _ => false,
        };
        if !usable {
            return Err(RequestError::MissingInput);
        }
        Ok(Self {
            raw,
            model,
            stream: false,
            include_usage: false,
            body_len: body.len(),
            endpoint: Endpoint::Embeddings,
            session: None,
            forwarded_headers: Vec::new(),
            answer_writer: None,
        })
    }

    /// Reads a `POST /v1/responses` body to pass through verbatim to a
    /// target that speaks the Responses API: `model` and `stream` are read,
    /// everything else goes as sent.
    pub fn parse_native_responses(body: &[u8]) -> Result<Self, RequestError> {
        Self::parse_verbatim(body, Endpoint::Responses)
    }

    /// Reads a `POST /v1/messages` body to pass through verbatim to
    /// Anthropic targets: `model` and `stream` are read, everything else
    /// goes as sent (the upstream judges it).
    pub fn parse_native_messages(body: &[u8]) -> Result<Self, RequestError> {
        Self::parse_verbatim(body, Endpoint::Messages)
    }

    /// A body passed through to `endpoint` with only `model` and `stream` read.
    fn parse_verbatim(body: &[u8], endpoint: Endpoint) -> Result<Self, RequestError> {
        let raw = parse_object(body)?;
        let model = required_model(&raw)?;
        let stream = match raw.parse::<bool>("stream") {
            None => false,
            Some(Ok(stream)) => stream,
            Some(Err(_)) => {
                return Err(RequestError::InvalidField {
                    param: "stream",
                    expected: "a boolean",
                })
            }
        };
        Ok(Self {
            raw,
            model,
            stream,
            include_usage: false,
            body_len: body.len(),
            endpoint,
            session: None,
            forwarded_headers: Vec::new(),
            answer_writer: None,
        })
    }

    /// The request with client headers the upstream is to get as they came.
    pub fn with_forwarded_headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.forwarded_headers = headers;
        self
    }

    /// Client headers the upstream gets as they came, as (name, value).
    pub fn forwarded_headers(&self) -> &[(String, String)] {
        &self.forwarded_headers
    }

    /// The request with the writer of its front end's answer.
    pub fn with_answer_writer(mut self, writer: AnswerWriter) -> Self {
        self.answer_writer = Some(writer);
        self
    }

    /// How the front end writes the answer, when it translates it.
    pub fn answer_writer(&self) -> Option<&AnswerWriter> {
        self.answer_writer.as_ref()
    }

    /// The upstream API this request is for.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The request tagged with the session it belongs to, for the
    /// router's session affinity.
    pub fn with_session(mut self, session: Option<u64>) -> Self {
        self.session = session;
        self
    }

    /// The session set by [`Self::with_session`].
    pub fn session(&self) -> Option<u64> {
        self.session
    }

    /// The public model the client asked for.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the client asked for a stream.
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// Whether the client asked for a final usage chunk in the stream.
    pub fn include_usage(&self) -> bool {
        self.include_usage
    }

    /// The size of the body it was parsed from, in bytes.
    pub fn body_len(&self) -> usize {
        self.body_len
    }

    /// The raw request, for adapters that translate it field by field.
    pub fn raw(&self) -> &RawObject {
        &self.raw
    }

    /// The body for an OpenAI-compatible upstream: the request verbatim with
    /// only `model` rewritten, and a stream always asking for its usage
    /// chunk (`stream_options.include_usage: true`), so every answer can be
    /// metered and cached with its usage. When the client did not ask for
    /// that chunk, the adapter keeps it from the client
    /// ([`Self::wants_usage_chunk`]).
    pub fn openai_body(&self, upstream_model: &str) -> Vec<u8> {
        let mut model = Vec::with_capacity(upstream_model.len() + 2);
        write_json_string(&mut model, upstream_model);
        // JSON text written from a str is UTF-8.
        let model = String::from_utf8(model).unwrap_or_default();
        // Chat streams ask for their usage chunk; a Responses stream ends
        // with the usage in its terminal event anyway.
        if self.stream && !self.include_usage && self.endpoint == Endpoint::Chat {
            let options = self.stream_options_with_usage();
            return self
                .raw
                .to_json_with(&[("model", &model), ("stream_options", &options)]);
        }
        self.raw.to_json_with(&[("model", &model)])
    }

    /// Whether the client reads the usage chunk of a stream: only when it
    /// asked for it, though Keel always asks the upstream.
    pub fn wants_usage_chunk(&self) -> bool {
        self.include_usage
    }

    /// The client's `stream_options` with `include_usage: true` set, its
    /// other options kept.
    fn stream_options_with_usage(&self) -> String {
        let mut options = self
            .raw
            .parse::<serde_json::Map<String, serde_json::Value>>("stream_options")
            .and_then(Result::ok)
            .unwrap_or_default();
        options.insert(String::from("include_usage"), serde_json::Value::Bool(true));
        serde_json::Value::Object(options).to_string()
    }
}

// === impl RequestError ===

impl RequestError {
    /// The request parameter at fault, for the error body's `param`.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::Unsupported { param, .. } => Some(param),
            Self::InvalidJson(_) | Self::NotAnObject => None,
            Self::MissingModel => Some("model"),
            Self::MissingMessages => Some("messages"),
            Self::MissingInput => Some("input"),
            Self::InvalidField { param, .. } => Some(param),
            Self::DuplicateKey(_) => None,
        }
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidJson(detail) => write!(f, "the request body is not valid JSON: {detail}"),
            Self::NotAnObject => f.write_str("the request body must be a JSON object"),
            Self::MissingModel => f.write_str("you must provide a model parameter"),
            Self::MissingMessages => {
                f.write_str("'messages' must be a non-empty array of messages")
            }
            Self::MissingInput => f.write_str(
                "'input' must be a non-empty string or a non-empty array of strings or token arrays",
            ),
            Self::InvalidField { param, expected } => write!(f, "'{param}' must be {expected}"),
            Self::DuplicateKey(key) => write!(
                f,
                "the request body names '{key}' more than once; send each field once"
            ),
            Self::Unsupported { param, message } => write!(f, "'{param}': {message}"),
        }
    }
}

impl std::error::Error for RequestError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ChatRequest, RequestError> {
        ChatRequest::parse(text.as_bytes())
    }

    /// The depth scan as one byte at a time, the way it was first written.
    fn deepest_byte_by_byte(json: &[u8], limit: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &byte in json {
            if in_string {
                match (escaped, byte) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > limit {
                        return true;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        false
    }

    #[test]
    fn the_depth_scan_judges_mutated_bodies_as_a_byte_by_byte_scan_does() {
        let seeds = [
            &br#"{"model":"m","messages":[{"role":"user","content":"a [ { \" \\ ] } b"}],"x":[[[{"y":"\u0041"}]]]}"#[..],
            br#"[[[[["\\\"[[[[",[[[[]]]]]]]]]"#,
            b"{\"a\":\"\x01[[\x1f\"}",
        ];
        for (index, seed) in seeds.iter().enumerate() {
            for round in 0..20_000_u64 {
                let body = crate::hostile::mutation(seed, round * 7 + index as u64);
                for limit in [0, 1, 2, 3, 5] {
                    assert_eq!(
                        nests_deeper_than(&body, limit),
                        deepest_byte_by_byte(&body, limit),
                        "{:?} at limit {limit}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
        }
    }

    #[test]
    fn reads_routing_fields_and_rewrites_only_model() -> Result<(), RequestError> {
        let request = parse(
            r#"{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"seed":7,"x":[1]}"#,
        )?;
        assert_eq!(request.model(), "demo");
        assert!(request.stream());
        assert!(request.include_usage());
        assert_eq!(
            String::from_utf8_lossy(&request.openai_body("gpt-\"4o")),
            r#"{"model":"gpt-\"4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"seed":7,"x":[1]}"#
        );
        Ok(())
    }

    #[test]
    fn a_stream_always_asks_the_upstream_for_usage() -> Result<(), RequestError> {
        let plain = parse(r#"{"model":"m","messages":[{}],"stream":true}"#)?;
        assert!(!plain.wants_usage_chunk());
        assert_eq!(
            String::from_utf8_lossy(&plain.openai_body("u")),
            r#"{"model":"u","messages":[{}],"stream":true,"stream_options":{"include_usage":true}}"#
        );
        let other_option = parse(
            r#"{"model":"m","messages":[{}],"stream":true,"stream_options":{"include_obfuscation":false}}"#,
        )?;
        assert_eq!(
            String::from_utf8_lossy(&other_option.openai_body("u")),
            r#"{"model":"u","messages":[{}],"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}"#
        );
        let non_stream = parse(r#"{"model":"m","messages":[{}]}"#)?;
        assert_eq!(
            String::from_utf8_lossy(&non_stream.openai_body("u")),
            r#"{"model":"u","messages":[{}]}"#
        );
        Ok(())
    }

    /// Trust boundary 2: nesting deeper than 128 levels is invalid JSON,
    /// wherever it is (an unknown field's raw value included).
    #[test]
    fn tb2_deep_nesting_is_refused() {
        let deep = format!(
            r#"{{"model":"m","messages":[{{}}],"x":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(matches!(
            parse(&deep),
            Err(RequestError::InvalidJson(message)) if message.contains("more than 128 deep")
        ));
        let in_a_string = format!(
            r#"{{"model":"m","messages":[{{}}],"x":"{}"}}"#,
            "[".repeat(200)
        );
        assert!(
            parse(&in_a_string).is_ok(),
            "brackets in strings do not nest"
        );
        let fine = format!(
            r#"{{"model":"m","messages":[{{}}],"x":{}1{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn refuses_bad_bodies_with_the_parameter_named() {
        let cases: &[(&str, &str)] = &[
            ("{", "the request body is not valid JSON: EOF while parsing an object at line 1 column 1"),
            ("[1]", "the request body must be a JSON object"),
            (r#"{"messages":[{}]}"#, "you must provide a model parameter"),
            (r#"{"model":"","messages":[{}]}"#, "you must provide a model parameter"),
            (r#"{"model":3,"messages":[{}]}"#, "'model' must be a string"),
            (r#"{"model":"m"}"#, "'messages' must be a non-empty array of messages"),
            (r#"{"model":"m","messages":[]}"#, "'messages' must be a non-empty array of messages"),
            ("{\"model\":\"m\",\"messages\":[ \n\t]}", "'messages' must be a non-empty array of messages"),
            (r#"{"model":"m","messages":null}"#, "'messages' must be a non-empty array of messages"),
            (r#"{"model":"m","messages":{"role":"user"}}"#, "'messages' must be an array of messages"),
            (r#"{"model":"m","messages":"[{}]"}"#, "'messages' must be an array of messages"),
            (r#"{"model":"m","messages":[{}],"stream":"yes"}"#, "'stream' must be a boolean"),
            (r#"{"model":"m","messages":[{}],"stream":false,"stream":true}"#, "the request body names 'stream' more than once; send each field once"),
            (r#"{"model":"m","max_tokens":1,"messages":[{}],"max_tokens":99999}"#, "the request body names 'max_tokens' more than once; send each field once"),
        ];
        for (body, expected) in cases {
            match parse(body) {
                Ok(_) => panic!("{body} was accepted"),
                Err(error) => assert_eq!(&error.to_string(), expected, "body {body}"),
            }
        }
    }

    #[test]
    fn embeddings_bodies_need_a_model_and_an_input() -> Result<(), RequestError> {
        let request = ChatRequest::parse_embeddings(
            br#"{"model":"embed","input":["a","b"],"encoding_format":"base64","dimensions":8}"#,
        )?;
        assert_eq!(request.endpoint(), Endpoint::Embeddings);
        assert!(!request.stream());
        assert_eq!(
            String::from_utf8_lossy(&request.openai_body("text-embedding-3-small")),
            r#"{"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"base64","dimensions":8}"#
        );
        for (body, message) in [
            (r#"{"input":"x"}"#, "you must provide a model parameter"),
            (r#"{"model":"e"}"#, "'input' must be a non-empty string or a non-empty array of strings or token arrays"),
            (r#"{"model":"e","input":""}"#, "'input' must be a non-empty string or a non-empty array of strings or token arrays"),
            (r#"{"model":"e","input":[]}"#, "'input' must be a non-empty string or a non-empty array of strings or token arrays"),
            (r#"{"model":"e","input":3}"#, "'input' must be a non-empty string or a non-empty array of strings or token arrays"),
        ] {
            let error = ChatRequest::parse_embeddings(body.as_bytes())
                .err()
                .map(|error| error.to_string());
            assert_eq!(error.as_deref(), Some(message), "{body}");
        }
        Ok(())
    }
}
