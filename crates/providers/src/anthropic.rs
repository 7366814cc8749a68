//! The Anthropic Messages adapter (`kind: anthropic`).
//!
//! The gateway's request is OpenAI's; this adapter reads it into the
//! canonical request, writes Anthropic's body (`request`), sends it with
//! `x-api-key` and `anthropic-version`, and turns the answer back into
//! OpenAI's completion JSON (`response`) or chunks (`stream`). Anthropic
//! errors become OpenAI-shape errors; 429 and 529 (`overloaded_error`) are
//! retryable, other 4xx are the client's. A request field the Messages API
//! cannot express (`fields`) is refused with 400 naming it, or left out
//! when the provider has `drop_unsupported` ([`crate::Provider::dropped_fields`]).
//! A Messages body from Keel's own `/v1/messages` (`Endpoint::Messages`) is
//! not translated: it goes as it came (`native`).

mod fields;
mod native;
mod request;
mod response;
pub(crate) mod stream;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::Uri;
use keel_types::canonical::openai::{completion_json, from_chat_request};
use keel_types::canonical::TranslateError;
use keel_types::{ChatRequest, ErrorBody};

use crate::http::HttpClient;

use crate::openai::{insert_extra_headers, read_error_body, send_error};
use crate::{Completion, ProviderError, Reply, UpstreamModel};

pub use native::ANTHROPIC_FORWARDED_HEADERS;

/// The Messages API version this adapter speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// What an Anthropic provider needs to be reached.
#[derive(Clone, Debug)]
pub struct AnthropicSettings {
    /// The provider name in providers.yaml.
    pub name: String,
    /// The API root, e.g. `https://api.anthropic.com` (a trailing `/v1` is
    /// accepted too).
    pub base_url: String,
    /// The `x-api-key`; `None` for servers that need none.
    pub api_key: Option<keel_types::SecretString>,
    /// Extra headers sent on every request (e.g. `anthropic-beta`); they
    /// override the defaults, `anthropic-version` included.
    pub headers: Vec<(String, String)>,
    /// `max_tokens` when the request has none (Anthropic requires one).
    pub default_max_tokens: u32,
    /// TCP + TLS handshake limit.
    pub connect_timeout: Duration,
    /// The longest non-stream answer read (`server.max_upstream_body`).
    pub max_body: usize,
    /// Upstream connection pools: one per HTTP worker thread
    /// (`server.workers`, see [`crate::set_http_worker`]) and one for the
    /// other threads; 1 without workers.
    pub pools: usize,
    /// Leave out request fields the Messages API cannot express instead of
    /// refusing the request (`drop_unsupported`).
    pub drop_unsupported: bool,
}

/// An Anthropic Messages upstream with its own pooled HTTP client.
pub struct AnthropicProvider {
    name: Arc<str>,
    url: Uri,
    /// `{base_url}/v1/models`, for health checks.
    models_url: Uri,
    default_max_tokens: u32,
    drop_unsupported: bool,
    /// The configured `anthropic-beta`, which a client's features join.
    beta: Option<String>,
    client: HttpClient,
}

// === impl AnthropicProvider ===

impl AnthropicProvider {
    /// Builds the provider and its HTTP client. Fails on an invalid header.
    pub fn new(settings: AnthropicSettings) -> Result<Self, String> {
        let client = HttpClient::new(
            default_headers(&settings)?,
            settings.connect_timeout,
            settings.max_body,
            settings.pools,
        );
        let base = settings.base_url.trim_end_matches('/');
        let api = base.strip_suffix("/v1").unwrap_or(base);
        let url = |path: &str| {
            format!("{api}/v1/{path}").parse::<Uri>().map_err(|error| {
                format!(
                    "providers.{}.base_url: not a valid URL: {error}",
                    settings.name
                )
            })
        };
        Ok(Self {
            name: Arc::from(settings.name.as_str()),
            url: url("messages")?,
            models_url: url("models")?,
            default_max_tokens: settings.default_max_tokens,
            drop_unsupported: settings.drop_unsupported,
            beta: settings
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("anthropic-beta"))
                .map(|(_, value)| value.clone()),
            client,
        })
    }

    /// The upstream body for one attempt, or the client's error.
    fn body(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
        default_max_tokens: u32,
    ) -> Result<Vec<u8>, ProviderError> {
        if request.endpoint() == keel_types::Endpoint::Messages {
            return Ok(native::body(request, upstream_model, default_max_tokens));
        }
        if request.endpoint() != keel_types::Endpoint::Chat {
            // Configuration refuses this; a request that still gets here
            // is the gateway's mistake, not the upstream's.
            let body = ErrorBody::new(
                "Anthropic has no embeddings or Responses API",
                "invalid_request_error",
                Some("model"),
                None,
            );
            return Err(ProviderError::Status {
                provider: self.name.to_string(),
                status: 400,
                body,
                retry_after: None,
            });
        }
        let fields = fields::read(request);
        if let (false, Some(unsupported)) = (self.drop_unsupported, fields.unsupported.first()) {
            return Err(self.unsupported(unsupported));
        }
        let canonical = from_chat_request(request).map_err(|error| self.refusal(error))?;
        request::request_body(
            &canonical,
            &fields.extras,
            upstream_model,
            default_max_tokens,
        )
        .map_err(|error| self.refusal(error))
    }

    /// A field the Messages API cannot express: a client error naming the
    /// field, the provider and its kind.
    fn unsupported(&self, unsupported: &fields::Unsupported) -> ProviderError {
        let qualifier = unsupported
            .qualifier
            .map(|qualifier| format!(" {qualifier}"))
            .unwrap_or_default();
        let message = format!(
            "'{}'{qualifier} cannot be sent to provider '{}' (kind anthropic): {}",
            unsupported.field, self.name, unsupported.why
        );
        let body = ErrorBody::new(
            message,
            "invalid_request_error",
            Some(&unsupported.param),
            Some("unsupported_parameter"),
        );
        ProviderError::Status {
            provider: self.name.to_string(),
            status: 400,
            body,
            retry_after: None,
        }
    }

    /// A request this provider cannot express: a client error, never retried.
    fn refusal(&self, error: TranslateError) -> ProviderError {
        let body = ErrorBody::new(
            error.message,
            "invalid_request_error",
            Some(error.param),
            None,
        );
        ProviderError::Status {
            provider: self.name.to_string(),
            status: 400,
            body,
            retry_after: None,
        }
    }
}

fn default_headers(settings: &AnthropicSettings) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        "anthropic-version",
        HeaderValue::from_static(ANTHROPIC_VERSION),
    );
    if let Some(key) = &settings.api_key {
        let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
            format!(
                "providers.{}.api_key: not a valid header value",
                settings.name
            )
        })?;
        value.set_sensitive(true);
        headers.insert("x-api-key", value);
    }
    insert_extra_headers(&mut headers, &settings.name, &settings.headers)?;
    Ok(headers)
}

impl crate::Provider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn health_check(&self) -> Option<BoxFuture<'static, Result<(), ProviderError>>> {
        Some(crate::http::probe(
            &self.client,
            self.name.clone(),
            self.models_url.clone(),
            response::error_from_status,
        ))
    }

    fn dropped_fields(&self, request: &ChatRequest) -> Vec<String> {
        // A body passed through drops nothing.
        if !self.drop_unsupported || request.endpoint() == keel_types::Endpoint::Messages {
            return Vec::new();
        }
        let mut names: Vec<String> = fields::read(request)
            .unsupported
            .into_iter()
            .map(|unsupported| unsupported.field)
            .collect();
        names.dedup();
        names
    }

    fn chat(
        &self,
        request: Arc<ChatRequest>,
        upstream: UpstreamModel,
    ) -> BoxFuture<'static, Result<Reply, ProviderError>> {
        let max_tokens = upstream.max_tokens.unwrap_or(self.default_max_tokens);
        let body = match self.body(&request, &upstream.name, max_tokens) {
            Ok(body) => body,
            Err(error) => return futures_util::future::ready(Err(error)).boxed(),
        };
        let native = request.endpoint() == keel_types::Endpoint::Messages;
        let sent = if native {
            let headers = native::headers(&request, self.beta.as_deref());
            self.client.post_with(self.url.clone(), body, headers)
        } else {
            self.client.post(self.url.clone(), body)
        };
        let name = self.name.clone();
        let max_body = self.client.max_body;
        async move {
            let response = sent.await.map_err(|error| send_error(&name, error))?;
            if !response.status().is_success() {
                let (status, retry_after, body) = read_error_body(response).await;
                return Err(response::error_from_status(
                    &name,
                    status,
                    &body,
                    retry_after,
                ));
            }
            if native && request.stream() {
                return Ok(Reply::Stream(native::event_stream(
                    name,
                    crate::http::body_stream(response),
                )));
            }
            if request.stream() {
                let converter = stream::StreamConverter::new(unix_now(), request.include_usage());
                return Ok(Reply::Stream(stream::event_stream(
                    name,
                    crate::http::body_stream(response),
                    converter,
                )));
            }
            let body = crate::http::read_body(response, max_body)
                .await
                .map_err(|error| crate::http::body_failure(&name, &error))?;
            if native {
                let usage = native::message_usage(&name, &body)?;
                return Ok(Reply::Complete(Completion {
                    body,
                    usage: Some(usage),
                    written: None,
                }));
            }
            completion_from_body(&name, &body).map(Reply::Complete)
        }
        .boxed()
    }
}

/// A non-stream Messages body as an OpenAI completion.
pub(crate) fn completion_from_body(
    provider: &str,
    body: &[u8],
) -> Result<Completion, ProviderError> {
    let message = response::read_message(body).map_err(|error| ProviderError::Protocol {
        provider: provider.to_owned(),
        detail: format!("the message is not valid JSON: {error}"),
    })?;
    let usage = Some(message.usage.openai());
    Ok(Completion {
        body: Bytes::from(completion_json(&message, unix_now())),
        usage,
        written: None,
    })
}

/// Seconds since the Unix epoch, for OpenAI's `created`.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
#[path = "anthropic/tests.rs"]
mod tests;
