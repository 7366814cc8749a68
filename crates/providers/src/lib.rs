//! The `Provider` trait and one adapter per upstream API.
//!
//! An adapter turns the gateway's request into the upstream's body, sends it,
//! and turns the bytes that come back into [`Reply`]: one complete body or a
//! stream of [`StreamEvent`]s. Conversion lives in pure functions beside each
//! adapter; the I/O loop stays short. Adapters never retry and never time out
//! on their own (beyond the connect timeout of their HTTP client): policy
//! belongs to the router.

mod anthropic;
mod azure;
mod error;
mod http;
mod openai;
mod reply;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use keel_types::ChatRequest;

pub use anthropic::{
    AnthropicProvider, AnthropicSettings, ANTHROPIC_FORWARDED_HEADERS, ANTHROPIC_VERSION,
};
pub use azure::AzureSettings;
pub use error::{Clock, ErrorKind, ProviderError};
pub use http::set_http_worker;
pub use openai::{OpenAiProvider, OpenAiSettings};
pub use reply::{Completion, EventStream, Reply, StreamEvent};

pub mod replay;

/// The upstream model one call is for, with its target's own settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamModel {
    /// The model name the upstream knows.
    pub name: Arc<str>,
    /// The target's `max_tokens` default, which overrides the provider's
    /// for upstreams that require one (Anthropic).
    pub max_tokens: Option<u32>,
}

impl From<&str> for UpstreamModel {
    fn from(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            max_tokens: None,
        }
    }
}

/// One upstream API behind one provider name.
pub trait Provider: Send + Sync + 'static {
    /// The provider's name in providers.yaml.
    fn name(&self) -> &str;

    /// Sends one chat completion attempt for `upstream`. The future
    /// resolves when the response head (or, for a non-stream request, the
    /// whole body) has arrived; dropping it, or the stream it returns, aborts
    /// the upstream call.
    fn chat(
        &self,
        request: Arc<ChatRequest>,
        upstream: UpstreamModel,
    ) -> BoxFuture<'static, Result<Reply, ProviderError>>;

    /// The request fields this provider leaves out of `request` rather than
    /// refusing it (its `drop_unsupported`), in request order; none for an
    /// adapter that forwards every field.
    fn dropped_fields(&self, _request: &ChatRequest) -> Vec<String> {
        Vec::new()
    }

    /// A request that costs no tokens (the upstream's models list), for
    /// active health checks: `Ok` when the upstream answered it with a
    /// success and its body was read. `None` for an adapter that knows no
    /// such request: it is never probed rather than reported healthy
    /// without asking.
    fn health_check(&self) -> Option<BoxFuture<'static, Result<(), ProviderError>>> {
        None
    }
}
