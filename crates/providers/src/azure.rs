//! Azure OpenAI (`kind: azure`): the OpenAI adapter with Azure's URL and key
//! header. Each target's upstream model is a deployment name:
//! `POST {base_url}/openai/deployments/{deployment}/chat/completions?api-version=…`
//! with `api-key: <key>`. The body is the client's, verbatim but for `model`.

use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};

use crate::openai::{insert_extra_headers, Endpoint};
use crate::OpenAiProvider;

/// What an Azure OpenAI resource needs to be reached.
#[derive(Clone, Debug)]
pub struct AzureSettings {
    /// The provider name in providers.yaml.
    pub name: String,
    /// The resource endpoint, e.g. `https://my-resource.openai.azure.com`.
    pub base_url: String,
    /// The `api-version` query value, e.g. `2024-10-21`.
    pub api_version: String,
    /// The `api-key` header value.
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

// === impl OpenAiProvider ===

impl OpenAiProvider {
    /// An Azure OpenAI provider. Fails on an invalid header.
    pub fn azure(settings: AzureSettings) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &settings.api_key {
            let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
                format!(
                    "providers.{}.api_key: not a valid header value",
                    settings.name
                )
            })?;
            value.set_sensitive(true);
            headers.insert("api-key", value);
        }
        insert_extra_headers(&mut headers, &settings.name, &settings.headers)?;
        let endpoint = Endpoint::Deployments {
            base: settings.base_url.trim_end_matches('/').to_owned(),
            api_version: settings.api_version,
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
}
