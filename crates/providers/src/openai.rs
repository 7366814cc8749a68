//! The OpenAI Chat Completions adapter, for OpenAI itself and any
//! OpenAI-compatible server (vLLM, Ollama, Groq, …, and Keel's own mock).
//! The request body is forwarded verbatim with only `model` rewritten (and,
//! on a stream that did not ask for it, `stream_options.include_usage` set,
//! so usage can be settled).
//! Azure OpenAI (`azure.rs`) reuses it with a per-deployment URL.

mod convert;
mod responses;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::Uri;
use keel_types::ChatRequest;

use crate::http::HttpClient;
use crate::{Completion, ProviderError, Reply, UpstreamModel};

pub(crate) use convert::{error_from_status, event_stream, retry_after, send_error};

/// What an OpenAI-compatible provider needs to be reached.
#[derive(Clone, Debug)]
pub struct OpenAiSettings {
    /// The provider name in providers.yaml.
    pub name: String,
    /// The API root, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The bearer key; `None` for local servers that need none.
    pub api_key: Option<keel_types::SecretString>,
    /// Extra headers sent on every request.
    pub headers: Vec<(String, String)>,
    /// TCP + TLS handshake limit.
    pub connect_timeout: Duration,
    /// The longest non-stream answer read (`server.max_upstream_body`).
    pub max_body: usize,
    /// Upstream connection pools: one per HTTP worker thread
    /// (`server.workers`, see [`crate::set_http_worker`]) and one for the
    /// other threads; 1 without workers.
    pub pools: usize,
}

/// An OpenAI-compatible upstream with its own pooled HTTP client.
pub struct OpenAiProvider {
    name: Arc<str>,
    endpoint: Endpoint,
    client: HttpClient,
}

/// Where requests go: one URL per API, or one per Azure deployment (the
/// upstream model).
#[expect(
    clippy::large_enum_variant,
    reason = "one per provider, built once at start-up"
)]
pub(crate) enum Endpoint {
    /// `{base_url}/chat/completions` and `{base_url}/embeddings`, parsed
    /// once: parsing them per request showed up in profiles.
    Fixed {
        /// Chat Completions.
        chat: Uri,
        /// Embeddings.
        embeddings: Uri,
        /// The Responses API (for `responses: native`).
        responses: Uri,
        /// The models list (health checks).
        models: Uri,
    },
    /// `{base}/openai/deployments/{model}/{chat/completions|embeddings}?api-version={api_version}`.
    Deployments {
        /// The resource endpoint, without a trailing `/`.
        base: String,
        /// The `api-version` query value.
        api_version: String,
    },
}

// === impl OpenAiProvider ===

impl OpenAiProvider {
    /// Builds the provider and its HTTP client. Fails on an invalid header.
    pub fn new(settings: OpenAiSettings) -> Result<Self, String> {
        let headers = default_headers(&settings)?;
        let url = |path: &str| {
            format!("{}/{path}", settings.base_url.trim_end_matches('/'))
                .parse::<Uri>()
                .map_err(|error| {
                    format!(
                        "providers.{}.base_url: not a valid URL: {error}",
                        settings.name
                    )
                })
        };
        let endpoint = Endpoint::Fixed {
            chat: url("chat/completions")?,
            embeddings: url("embeddings")?,
            responses: url("responses")?,
            models: url("models")?,
        };
        Ok(Self::with_endpoint(
            &settings.name,
            endpoint,
            headers,
            settings.connect_timeout,
            settings.max_body,
            settings.pools,
        ))
    }

    /// Builds the provider for `endpoint` with its HTTP client sending `headers`.
    pub(crate) fn with_endpoint(
        name: &str,
        endpoint: Endpoint,
        headers: HeaderMap,
        connect_timeout: Duration,
        max_body: usize,
        pools: usize,
    ) -> Self {
        Self {
            name: Arc::from(name),
            endpoint,
            client: HttpClient::new(headers, connect_timeout, max_body, pools),
        }
    }
}

// === impl Endpoint ===

impl Endpoint {
    fn uri(&self, api: keel_types::Endpoint, upstream_model: &str) -> Result<Uri, String> {
        let path = match api {
            keel_types::Endpoint::Chat => "chat/completions",
            keel_types::Endpoint::Embeddings => "embeddings",
            keel_types::Endpoint::Responses => "responses",
            keel_types::Endpoint::Messages => {
                return Err(String::from("OpenAI-kind providers have no Messages API"))
            }
        };
        match self {
            Self::Fixed {
                chat,
                embeddings,
                responses,
                ..
            } => Ok(match api {
                keel_types::Endpoint::Chat => chat.clone(),
                keel_types::Endpoint::Embeddings => embeddings.clone(),
                keel_types::Endpoint::Responses => responses.clone(),
                keel_types::Endpoint::Messages => {
                    return Err(String::from("OpenAI-kind providers have no Messages API"))
                }
            }),
            Self::Deployments { base, api_version } => format!(
                "{base}/openai/deployments/{upstream_model}/{path}?api-version={api_version}"
            )
            .parse()
            .map_err(|error| format!("the deployment URL is not valid: {error}")),
        }
    }

    /// The models list: `{base_url}/models`, or Azure's
    /// `{base}/openai/models?api-version=…` (the resource's models, which
    /// needs no deployment name).
    fn models_uri(&self) -> Result<Uri, String> {
        match self {
            Self::Fixed { models, .. } => Ok(models.clone()),
            Self::Deployments { base, api_version } => {
                format!("{base}/openai/models?api-version={api_version}")
                    .parse()
                    .map_err(|error| format!("the models list URL is not valid: {error}"))
            }
        }
    }
}

fn default_headers(settings: &OpenAiSettings) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(key) = &settings.api_key {
        let bearer = format!("Bearer {}", key.expose());
        let mut value = HeaderValue::from_str(&bearer).map_err(|_| {
            format!(
                "providers.{}.api_key: not a valid header value",
                settings.name
            )
        })?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    insert_extra_headers(&mut headers, &settings.name, &settings.headers)?;
    Ok(headers)
}

/// Adds a provider's configured extra headers, replacing defaults of the same name.
pub(crate) fn insert_extra_headers(
    headers: &mut HeaderMap,
    provider: &str,
    extra: &[(String, String)],
) -> Result<(), String> {
    for (name, value) in extra {
        let invalid = || format!("providers.{provider}.headers.{name}: not a valid header");
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        headers.insert(name, value);
    }
    Ok(())
}

impl crate::Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn health_check(&self) -> Option<BoxFuture<'static, Result<(), ProviderError>>> {
        Some(match self.endpoint.models_uri() {
            Ok(uri) => crate::http::probe(&self.client, self.name.clone(), uri, error_from_status),
            Err(detail) => {
                let error = ProviderError::Transport {
                    provider: self.name.to_string(),
                    detail,
                };
                futures_util::future::ready(Err(error)).boxed()
            }
        })
    }

    fn chat(
        &self,
        request: Arc<ChatRequest>,
        upstream: UpstreamModel,
    ) -> BoxFuture<'static, Result<Reply, ProviderError>> {
        let upstream_model = upstream.name;
        let uri = match self.endpoint.uri(request.endpoint(), &upstream_model) {
            Ok(uri) => uri,
            Err(detail) => {
                let error = ProviderError::Transport {
                    provider: self.name.to_string(),
                    detail,
                };
                return futures_util::future::ready(Err(error)).boxed();
            }
        };
        let sent = self.client.post(uri, request.openai_body(&upstream_model));
        let name = self.name.clone();
        let max_body = self.client.max_body;
        async move {
            let response = sent
                .await
                .map_err(|error| convert::send_error(&name, error))?;
            let status = response.status();
            if !status.is_success() {
                return Err(read_error(&name, response).await);
            }
            let native = request.endpoint() == keel_types::Endpoint::Responses;
            if request.stream() && native {
                Ok(Reply::Stream(responses::event_stream(
                    name,
                    crate::http::body_stream(response),
                )))
            } else if request.stream() {
                Ok(Reply::Stream(convert::event_stream(
                    name,
                    crate::http::body_stream(response),
                    request.wants_usage_chunk(),
                )))
            } else {
                let body = crate::http::read_body(response, max_body)
                    .await
                    .map_err(|error| crate::http::body_failure(&name, &error))?;
                let (usage, written) = match request.endpoint() {
                    keel_types::Endpoint::Chat => {
                        convert::checked_completion(&name, &body, request.answer_writer())?
                    }
                    keel_types::Endpoint::Embeddings => {
                        (convert::embeddings_usage(&name, &body)?, None)
                    }
                    keel_types::Endpoint::Responses => {
                        (responses::response_usage(&name, &body)?, None)
                    }
                    // Never sent: the URI above refused it.
                    keel_types::Endpoint::Messages => (None, None),
                };
                Ok(Reply::Complete(Completion {
                    body,
                    usage,
                    written,
                }))
            }
        }
        .boxed()
    }
}

/// Reads a bounded error body and classifies it.
async fn read_error(name: &str, response: http::Response<crate::http::Body>) -> ProviderError {
    let (status, retry_after, body) = read_error_body(response).await;
    error_from_status(name, status, &body, retry_after)
}

/// The status, `Retry-After` and (at most 64 KiB of) the body of an error response.
pub(crate) async fn read_error_body(
    response: http::Response<crate::http::Body>,
) -> (u16, Option<Duration>, Vec<u8>) {
    const MAX_ERROR_BODY: usize = 64 * 1024;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let mut body = Vec::new();
    let mut chunks = std::pin::pin!(crate::http::body_stream(response));
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ERROR_BODY {
            break;
        }
    }
    (status, retry_after, body)
}

#[cfg(test)]
mod tests {
    /// Trust boundary 9: a provider's settings print no key.
    #[test]
    fn tb9_settings_debug_hides_the_key() {
        let settings = super::OpenAiSettings {
            name: String::from("p"),
            base_url: String::from("http://127.0.0.1:1/v1"),
            api_key: Some(keel_types::SecretString::new("sk-live-abcdef")),
            headers: Vec::new(),
            connect_timeout: std::time::Duration::from_secs(1),
            max_body: 1,
            pools: 1,
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("sk-live"), "{printed}");
        assert!(printed.contains("[redacted]"), "{printed}");
    }
}
